//! The host's boot chain: the UEFI event log in the TCG PC Client "crypto agile" format (what
//! the kernel exposes as `/sys/kernel/security/tpm0/binary_bios_measurements`), its replay into
//! SHA-256 PCR values, what it says about the boot (secure boot, `db`/`dbx`, boot applications,
//! initrd, kernel command line), and the measured-boot policy a verifier checks it against.
//!
//! Layout (TCG PC Client Platform Firmware Profile, little-endian):
//!
//! ```text
//! TCG_PCR_EVENT   (first, SHA-1 format)  u32 pcr, u32 type (EV_NO_ACTION), [20] digest,
//!                                        u32 size, TCG_EfiSpecIDEvent ("Spec ID Event03\0",
//!                                        u32 platformClass, u8 minor, u8 major, u8 errata,
//!                                        u8 uintnSize, u32 n, n × (u16 alg, u16 size),
//!                                        u8 vendorSize, vendor bytes)
//! TCG_PCR_EVENT2  (each further event)   u32 pcr, u32 type, u32 count,
//!                                        count × (u16 alg, digest of that alg's size),
//!                                        u32 size, event bytes
//! ```
//!
//! Replay: every PCR starts at zero (PCR 0 at the locality of an `EV_NO_ACTION`
//! `StartupLocality` event, if any), and each event except `EV_NO_ACTION` extends its PCR with
//! its SHA-256 digest. [`build`] writes the same format (used by the tests and by anyone who
//! needs a reference log).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The PCRs a boot-chain quote covers (SHA-256 bank): 0–9 (firmware, its configuration,
/// option ROMs, the boot loader and its configuration, secure boot policy, the kernel, its
/// command line and initrd) and 14 (shim's MOK lists).
pub const BOOT_PCRS: [u32; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14];

/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000b;

/// Event types (TCG PC Client PFP, section 10.4.1).
pub mod ev {
    /// `EV_PREBOOT_CERT`.
    pub const PREBOOT_CERT: u32 = 0x0;
    /// `EV_POST_CODE` (firmware blobs, older firmware).
    pub const POST_CODE: u32 = 0x1;
    /// `EV_NO_ACTION`: never extended.
    pub const NO_ACTION: u32 = 0x3;
    /// `EV_SEPARATOR`.
    pub const SEPARATOR: u32 = 0x4;
    /// `EV_ACTION`.
    pub const ACTION: u32 = 0x5;
    /// `EV_EVENT_TAG`.
    pub const EVENT_TAG: u32 = 0x6;
    /// `EV_S_CRTM_CONTENTS`.
    pub const S_CRTM_CONTENTS: u32 = 0x7;
    /// `EV_S_CRTM_VERSION`.
    pub const S_CRTM_VERSION: u32 = 0x8;
    /// `EV_IPL` (boot loader: command lines, files it loaded).
    pub const IPL: u32 = 0xd;
    /// `EV_EFI_VARIABLE_DRIVER_CONFIG` (secure boot variables, PCR 7).
    pub const EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
    /// `EV_EFI_VARIABLE_BOOT`.
    pub const EFI_VARIABLE_BOOT: u32 = 0x8000_0002;
    /// `EV_EFI_BOOT_SERVICES_APPLICATION` (shim, boot loader, kernel; PCR 4).
    pub const EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
    /// `EV_EFI_ACTION`.
    pub const EFI_ACTION: u32 = 0x8000_0007;
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB`.
    pub const EFI_PLATFORM_FIRMWARE_BLOB: u32 = 0x8000_0008;
    /// `EV_EFI_GPT_EVENT`.
    pub const EFI_GPT_EVENT: u32 = 0x8000_0006;
    /// `EV_EFI_VARIABLE_AUTHORITY` (the `db` entry that verified an image, PCR 7).
    pub const EFI_VARIABLE_AUTHORITY: u32 = 0x8000_00e0;
}

/// `EFI_GLOBAL_VARIABLE` (`SecureBoot`, `PK`, `KEK`, `BootOrder`, …).
pub const EFI_GLOBAL_VARIABLE: [u8; 16] = guid(
    0x8be4df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);
/// `EFI_IMAGE_SECURITY_DATABASE_GUID` (`db`, `dbx`).
pub const EFI_IMAGE_SECURITY_DATABASE: [u8; 16] = guid(
    0xd719b2cb,
    0x3d3a,
    0x4596,
    [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
);
/// `EFI_CERT_SHA256_GUID`: a signature list of SHA-256 image digests.
pub const EFI_CERT_SHA256: [u8; 16] = guid(
    0xc1c41626,
    0x504c,
    0x4092,
    [0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28],
);
/// `EFI_CERT_X509_GUID`: a signature list of X.509 certificates.
pub const EFI_CERT_X509: [u8; 16] = guid(
    0xa5c059a1,
    0x94e4,
    0x4aa7,
    [0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72],
);
/// The `EV_EVENT_TAG` id under which Linux's EFI stub measures the initrd into PCR 9.
pub const LINUX_INITRD_TAG: u32 = 0x8F3B_22ED;

/// An EFI GUID in its on-disk (mixed-endian) byte order.
pub const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// Why a boot log does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootLogError {
    /// The log ends inside an event.
    #[error("boot event log: truncated at byte {0}")]
    Truncated(usize),
    /// The first event is not a crypto-agile Spec ID event.
    #[error("boot event log: not a crypto-agile log ({0})")]
    NotAgile(String),
    /// An event names a hash algorithm the Spec ID event did not declare.
    #[error("boot event log: event {event} uses undeclared algorithm {alg:#06x}")]
    Algorithm {
        /// The event's index.
        event: usize,
        /// The algorithm.
        alg: u16,
    },
    /// An event has no SHA-256 digest.
    #[error("boot event log: event {0} has no SHA-256 digest")]
    NoSha256(usize),
    /// An event whose data the verifier reads (a secure boot variable, a separator, the kernel
    /// command line) does not hash to the digest that was extended.
    #[error("boot event log: the data of event {event} ({what}) does not match its digest")]
    Binding {
        /// The event's index (1 = the first after the Spec ID event).
        event: usize,
        /// What it is.
        what: &'static str,
    },
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEvent {
    /// The PCR it extends.
    pub pcr: u32,
    /// Its type ([`ev`]).
    pub event_type: u32,
    /// Its SHA-256 digest (for the Spec ID event: zeros).
    pub sha256: [u8; 32],
    /// The event data.
    pub data: Vec<u8>,
}

/// A parsed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootLog {
    /// The events after the Spec ID event, in order.
    pub events: Vec<BootEvent>,
    /// The digest sizes the Spec ID event declares.
    pub algorithms: Vec<(u16, u16)>,
}

struct Le<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Le<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BootLogError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(BootLogError::Truncated(self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, BootLogError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, BootLogError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Parses a crypto-agile log.
pub fn parse(bytes: &[u8]) -> Result<BootLog, BootLogError> {
    let mut r = Le { b: bytes, at: 0 };
    let _pcr = r.u32()?;
    let ty = r.u32()?;
    r.take(20)?;
    let size = r.u32()? as usize;
    let spec = r.take(size)?;
    if ty != ev::NO_ACTION || spec.len() < 24 || &spec[..16] != b"Spec ID Event03\0" {
        return Err(BootLogError::NotAgile(
            "the first event is not the \"Spec ID Event03\" event".into(),
        ));
    }
    let mut s = Le { b: spec, at: 16 };
    s.take(8)?; // platformClass, version, errata, uintnSize
    let n = s.u32()?;
    let mut algorithms = Vec::new();
    for _ in 0..n.min(16) {
        algorithms.push((s.u16()?, s.u16()?));
    }
    if !algorithms
        .iter()
        .any(|(a, sz)| *a == ALG_SHA256 && *sz == 32)
    {
        return Err(BootLogError::NotAgile(
            "the log declares no SHA-256 bank".into(),
        ));
    }
    let mut events = Vec::new();
    while r.at < bytes.len() {
        let index = events.len() + 1;
        let pcr = r.u32()?;
        let event_type = r.u32()?;
        let count = r.u32()?;
        let mut sha256 = None;
        for _ in 0..count {
            let alg = r.u16()?;
            let size = algorithms
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, s)| *s as usize)
                .ok_or(BootLogError::Algorithm { event: index, alg })?;
            let d = r.take(size)?;
            if alg == ALG_SHA256 {
                sha256 = Some(<[u8; 32]>::try_from(d).map_err(|_| BootLogError::NoSha256(index))?);
            }
        }
        let size = r.u32()? as usize;
        let data = r.take(size)?.to_vec();
        events.push(BootEvent {
            pcr,
            event_type,
            sha256: sha256.ok_or(BootLogError::NoSha256(index))?,
            data,
        });
    }
    Ok(BootLog { events, algorithms })
}

impl BootLog {
    /// The SHA-256 PCR values the log produces, for every PCR it touches and every PCR in
    /// [`BOOT_PCRS`] (zero when untouched).
    pub fn replay(&self) -> BTreeMap<u32, [u8; 32]> {
        let mut pcrs: BTreeMap<u32, [u8; 32]> = BOOT_PCRS.iter().map(|p| (*p, [0; 32])).collect();
        for e in &self.events {
            if e.event_type == ev::NO_ACTION {
                if e.pcr == 0 && e.data.len() >= 17 && &e.data[..16] == b"StartupLocality\0" {
                    let mut init = [0u8; 32];
                    init[31] = e.data[16];
                    pcrs.insert(0, init);
                }
                continue;
            }
            let cur = pcrs.entry(e.pcr).or_insert([0; 32]);
            let mut h = Sha256::new();
            h.update(*cur);
            h.update(e.sha256);
            *cur = h.finalize().into();
        }
        pcrs
    }

    /// Checks that every event whose data [`BootLog::facts`] reads is bound to its digest: the
    /// digest is what the PCR holds, the data is only a claim until it hashes to it. (Boot
    /// applications and initrds are judged by their digests, so their data need no binding.)
    pub fn check_bindings(&self) -> Result<(), BootLogError> {
        for (i, e) in self.events.iter().enumerate() {
            let (what, bound): (&'static str, Option<Vec<u8>>) = match e.event_type {
                ev::EFI_VARIABLE_DRIVER_CONFIG => ("a secure boot variable", Some(e.data.clone())),
                ev::SEPARATOR => ("a separator", Some(e.data.clone())),
                ev::IPL if e.pcr == 8 => {
                    let text = String::from_utf8_lossy(&e.data);
                    let text = text.trim_end_matches('\0');
                    match text.strip_prefix("kernel_cmdline: ") {
                        // GRUB extends the command line itself; the event names it.
                        Some(c) => ("the kernel command line", Some(c.as_bytes().to_vec())),
                        None => ("", None),
                    }
                }
                _ => ("", None),
            };
            if let Some(b) = bound {
                if <[u8; 32]>::from(Sha256::digest(&b)) != e.sha256 {
                    return Err(BootLogError::Binding { event: i + 1, what });
                }
            }
        }
        Ok(())
    }

    /// What the log says about the boot (call [`BootLog::check_bindings`] first).
    pub fn facts(&self) -> BootFacts {
        let mut f = BootFacts::default();
        let mut apps = Vec::new();
        for e in &self.events {
            match (e.pcr, e.event_type) {
                (7, ev::EFI_VARIABLE_DRIVER_CONFIG) => {
                    let Some((guid, name, data)) = efi_variable(&e.data) else {
                        continue;
                    };
                    match (
                        guid == EFI_GLOBAL_VARIABLE,
                        guid == EFI_IMAGE_SECURITY_DATABASE,
                        name.as_str(),
                    ) {
                        (true, _, "SecureBoot") => f.secure_boot = data == [1],
                        (_, true, "db") => f.db = signature_digests(&data),
                        (_, true, "dbx") => f.dbx = signature_digests(&data),
                        _ => {}
                    }
                }
                (4, ev::EFI_BOOT_SERVICES_APPLICATION) => apps.push(hex::encode(e.sha256)),
                (8, ev::IPL) => {
                    let text = String::from_utf8_lossy(&e.data);
                    let text = text.trim_end_matches('\0');
                    if let Some(c) = text.strip_prefix("kernel_cmdline: ") {
                        f.cmdline = Some(c.to_owned());
                    }
                }
                (9, ev::IPL) => {
                    let text = String::from_utf8_lossy(&e.data);
                    if text.contains("initrd") {
                        f.initrd.push(hex::encode(e.sha256));
                    }
                }
                (9, ev::EVENT_TAG)
                    if e.data.len() >= 4
                        && u32::from_le_bytes([e.data[0], e.data[1], e.data[2], e.data[3]])
                            == LINUX_INITRD_TAG =>
                {
                    f.initrd.push(hex::encode(e.sha256));
                }
                _ => {}
            }
        }
        // PCR 4's boot applications in load order: shim, the boot loader(s), the kernel.
        match apps.len() {
            0 => {}
            1 => f.kernel = apps.pop(),
            2 => {
                f.kernel = apps.pop();
                f.bootloader = apps;
            }
            _ => {
                f.kernel = apps.pop();
                f.shim = Some(apps.remove(0));
                f.bootloader = apps;
            }
        }
        f
    }
}

/// Parses `UEFI_VARIABLE_DATA`: GUID, u64 name length (UTF-16 units), u64 data length, the
/// name, the data.
fn efi_variable(b: &[u8]) -> Option<([u8; 16], String, Vec<u8>)> {
    let guid: [u8; 16] = b.get(..16)?.try_into().ok()?;
    let nlen = u64::from_le_bytes(b.get(16..24)?.try_into().ok()?) as usize;
    let dlen = u64::from_le_bytes(b.get(24..32)?.try_into().ok()?) as usize;
    let name_end = 32usize.checked_add(nlen.checked_mul(2)?)?;
    let units: Vec<u16> = b
        .get(32..name_end)?
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let name = String::from_utf16(&units).ok()?;
    let data = b.get(name_end..name_end.checked_add(dlen)?)?.to_vec();
    Some((guid, name, data))
}

/// The entries of an `EFI_SIGNATURE_LIST` sequence, each as a hex SHA-256: for an
/// `EFI_CERT_SHA256` list the image digest itself, for any other type the SHA-256 of the
/// signature data (an X.509 certificate's DER, say).
pub fn signature_digests(b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 28 <= b.len() {
        let ty: [u8; 16] = b[at..at + 16].try_into().unwrap_or([0; 16]);
        let list = u32::from_le_bytes(b[at + 16..at + 20].try_into().unwrap_or([0; 4])) as usize;
        let header = u32::from_le_bytes(b[at + 20..at + 24].try_into().unwrap_or([0; 4])) as usize;
        let size = u32::from_le_bytes(b[at + 24..at + 28].try_into().unwrap_or([0; 4])) as usize;
        if list < 28 || at + list > b.len() || size <= 16 {
            break;
        }
        let mut s = at + 28 + header;
        while s + size <= at + list {
            let data = &b[s + 16..s + size]; // after the owner GUID
            out.push(if ty == EFI_CERT_SHA256 && data.len() == 32 {
                hex::encode(data)
            } else {
                hex::encode(Sha256::digest(data))
            });
            s += size;
        }
        at += list;
    }
    out
}

/// What a boot log says about the boot; also the shape of a learnt policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootFacts {
    /// The `SecureBoot` variable measured into PCR 7 is 1.
    pub secure_boot: bool,
    /// The first of three or more boot applications in PCR 4 (hex SHA-256 Authenticode digest).
    pub shim: Option<String>,
    /// The boot applications between shim and the kernel (or the first of two).
    pub bootloader: Vec<String>,
    /// The last boot application in PCR 4.
    pub kernel: Option<String>,
    /// The initrd digests in PCR 9.
    pub initrd: Vec<String>,
    /// The kernel command line the boot loader measured into PCR 8.
    pub cmdline: Option<String>,
    /// The `db` entries (hex SHA-256, see [`signature_digests`]).
    pub db: Vec<String>,
    /// The `dbx` entries.
    pub dbx: Vec<String>,
}

/// A measured-boot policy (the `[boot]` table of a verifier's policy file). An absent field is
/// not checked; a list means "one of these".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootPolicy {
    /// Require the `SecureBoot` variable to be 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
    /// Allowed shim digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim: Option<Vec<String>>,
    /// Allowed boot loader digests (every boot loader application must be one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootloader: Option<Vec<String>>,
    /// Allowed kernel digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Vec<String>>,
    /// Allowed initrd digests (every initrd measured must be one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<Vec<String>>,
    /// Allowed kernel command lines, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Vec<String>>,
    /// Allowed `db` entries: a `db` entry not listed is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<Vec<String>>,
    /// Required `dbx` entries: each must be in the host's `dbx` (revocations it must carry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbx: Option<Vec<String>>,
}

/// Why a boot log does not satisfy a [`BootPolicy`]: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFailure {
    /// `secure-boot`, `dbx`, `db`, `boot-digest` or `cmdline`.
    pub code: &'static str,
    /// What was wrong.
    pub detail: String,
}

fn fail(code: &'static str, detail: String) -> Result<(), PolicyFailure> {
    Err(PolicyFailure { code, detail })
}

impl BootPolicy {
    /// The policy that accepts exactly this host's boot (`warren attest policy learn`).
    pub fn learn(f: &BootFacts) -> BootPolicy {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        BootPolicy {
            secure_boot: Some(f.secure_boot),
            shim: f.shim.clone().map(|s| vec![s]),
            bootloader: some(&f.bootloader),
            kernel: f.kernel.clone().map(|s| vec![s]),
            initrd: some(&f.initrd),
            cmdline: f.cmdline.clone().map(|s| vec![s]),
            db: some(&f.db),
            dbx: some(&f.dbx),
        }
    }

    /// The policy as a `[boot]` TOML table (strings as JSON-escaped basic strings, which TOML
    /// reads identically).
    pub fn to_toml(&self) -> String {
        let q = |s: &String| serde_json::to_string(s).unwrap_or_default();
        let mut out = String::from("[boot]\n");
        if let Some(b) = self.secure_boot {
            out.push_str(&format!("secure_boot = {b}\n"));
        }
        for (k, v) in [
            ("shim", &self.shim),
            ("bootloader", &self.bootloader),
            ("kernel", &self.kernel),
            ("initrd", &self.initrd),
            ("cmdline", &self.cmdline),
            ("db", &self.db),
            ("dbx", &self.dbx),
        ] {
            if let Some(v) = v {
                let items: Vec<String> = v.iter().map(q).collect();
                out.push_str(&format!("{k} = [{}]\n", items.join(", ")));
            }
        }
        out
    }

    /// Checks the facts of a (replayed, verified) log. Whatever the policy says, a boot
    /// application whose digest is in the host's own `dbx` is refused.
    pub fn check(&self, f: &BootFacts) -> Result<(), PolicyFailure> {
        if self.secure_boot == Some(true) && !f.secure_boot {
            return fail(
                "secure-boot",
                "secure boot is not enabled (the SecureBoot variable in PCR 7 is not 1)".into(),
            );
        }
        let dbx: BTreeSet<&String> = f.dbx.iter().collect();
        let apps = f
            .shim
            .iter()
            .map(|d| ("shim", d))
            .chain(f.bootloader.iter().map(|d| ("boot loader", d)))
            .chain(f.kernel.iter().map(|d| ("kernel", d)));
        for (what, d) in apps.clone() {
            if dbx.contains(d) {
                return fail("dbx", format!("the {what} {d} is listed in dbx"));
            }
        }
        if let Some(required) = &self.dbx {
            if let Some(missing) = required.iter().find(|d| !dbx.contains(d)) {
                return fail(
                    "dbx",
                    format!("the host's dbx lacks the revocation {missing}"),
                );
            }
        }
        if let Some(allowed) = &self.db {
            if let Some(extra) = f.db.iter().find(|d| !allowed.contains(d)) {
                return fail(
                    "db",
                    format!("db holds {extra}, which the policy does not allow"),
                );
            }
        }
        let check_one = |what: &str, got: &[String], allowed: &Option<Vec<String>>| {
            let Some(allowed) = allowed else {
                return Ok(());
            };
            if got.is_empty() {
                return fail("boot-digest", format!("the log measures no {what}"));
            }
            match got.iter().find(|d| !allowed.contains(d)) {
                Some(d) => fail("boot-digest", format!("{what} {d} is not allowed")),
                None => Ok(()),
            }
        };
        check_one("shim", f.shim.as_slice(), &self.shim)?;
        check_one("boot loader", &f.bootloader, &self.bootloader)?;
        check_one("kernel", f.kernel.as_slice(), &self.kernel)?;
        check_one("initrd", &f.initrd, &self.initrd)?;
        if let Some(allowed) = &self.cmdline {
            match &f.cmdline {
                Some(c) if allowed.contains(c) => {}
                Some(c) => {
                    return fail(
                        "cmdline",
                        format!("kernel command line {c:?} is not allowed"),
                    );
                }
                None => return fail("cmdline", "the log measures no kernel command line".into()),
            }
        }
        Ok(())
    }
}

/// One event to write with [`build`].
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The PCR.
    pub pcr: u32,
    /// The type.
    pub event_type: u32,
    /// The event data.
    pub data: Vec<u8>,
    /// The digest to record; `None`: SHA-256 of `data` (as firmware does for most types).
    pub digest: Option<[u8; 32]>,
}

/// Writes a crypto-agile log holding SHA-256 digests only. Returns the log and, per event,
/// the digest it carries (what firmware would have extended).
pub fn build(events: &[NewEvent]) -> (Vec<u8>, Vec<[u8; 32]>) {
    let mut out = Vec::new();
    let mut spec = b"Spec ID Event03\0".to_vec();
    spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass: client
    spec.extend_from_slice(&[0, 2, 0, 2]); // version 2.0, errata 0, uintnSize 2 (u64)
    spec.extend_from_slice(&1u32.to_le_bytes());
    spec.extend_from_slice(&ALG_SHA256.to_le_bytes());
    spec.extend_from_slice(&32u16.to_le_bytes());
    spec.push(0);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&ev::NO_ACTION.to_le_bytes());
    out.extend_from_slice(&[0; 20]);
    out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    out.extend_from_slice(&spec);
    let mut digests = Vec::new();
    for e in events {
        let d = e.digest.unwrap_or_else(|| Sha256::digest(&e.data).into());
        out.extend_from_slice(&e.pcr.to_le_bytes());
        out.extend_from_slice(&e.event_type.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&ALG_SHA256.to_le_bytes());
        out.extend_from_slice(&d);
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
        digests.push(d);
    }
    (out, digests)
}

/// `UEFI_VARIABLE_DATA` for a variable (for [`build`]).
pub fn efi_variable_data(guid: &[u8; 16], name: &str, data: &[u8]) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut b = guid.to_vec();
    b.extend_from_slice(&(units.len() as u64).to_le_bytes());
    b.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for u in units {
        b.extend_from_slice(&u.to_le_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// One `EFI_SIGNATURE_LIST` of SHA-256 image digests (for [`build`]).
pub fn sha256_signature_list(owner: &[u8; 16], digests: &[[u8; 32]]) -> Vec<u8> {
    let size = 16 + 32;
    let mut b = EFI_CERT_SHA256.to_vec();
    b.extend_from_slice(&((28 + size * digests.len()) as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&(size as u32).to_le_bytes());
    for d in digests {
        b.extend_from_slice(owner);
        b.extend_from_slice(d);
    }
    b
}

/// `SHA-256` over the concatenation of PCR values, as `TPMS_QUOTE_INFO.pcrDigest` is formed.
pub fn pcr_digest<'a>(values: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kernel: &[u8], secure: u8) -> Vec<NewEvent> {
        let e = |pcr, ty, data: &[u8]| NewEvent {
            pcr,
            event_type: ty,
            data: data.to_vec(),
            digest: None,
        };
        let mut v = vec![
            e(0, ev::S_CRTM_VERSION, b"1.0"),
            e(
                7,
                ev::EFI_VARIABLE_DRIVER_CONFIG,
                &efi_variable_data(&EFI_GLOBAL_VARIABLE, "SecureBoot", &[secure]),
            ),
            e(
                7,
                ev::EFI_VARIABLE_DRIVER_CONFIG,
                &efi_variable_data(
                    &EFI_IMAGE_SECURITY_DATABASE,
                    "dbx",
                    &sha256_signature_list(&[0; 16], &[[9; 32]]),
                ),
            ),
        ];
        for p in 0..8 {
            v.push(e(p, ev::SEPARATOR, &[0; 4]));
        }
        for app in [&b"shim"[..], b"grub", kernel] {
            v.push(NewEvent {
                pcr: 4,
                event_type: ev::EFI_BOOT_SERVICES_APPLICATION,
                data: vec![0; 8],
                digest: Some(Sha256::digest(app).into()),
            });
        }
        v.push(NewEvent {
            pcr: 8,
            event_type: ev::IPL,
            data: b"kernel_cmdline: /vmlinuz root=/dev/sda1 ro\0".to_vec(),
            digest: Some(Sha256::digest(b"/vmlinuz root=/dev/sda1 ro").into()),
        });
        v
    }

    #[test]
    fn build_parse_replay_and_facts_round_trip() {
        let (bytes, digests) = build(&sample(b"linux", 1));
        let log = parse(&bytes).unwrap();
        assert_eq!(log.events.len(), digests.len());
        assert_eq!(log.check_bindings(), Ok(()));
        // Secure boot claimed on while the digest extended says off: the data is not bound.
        let mut forged = log.clone();
        forged.events[1].sha256 = parse(&build(&sample(b"linux", 0)).0).unwrap().events[1].sha256;
        assert!(matches!(
            forged.check_bindings(),
            Err(BootLogError::Binding { event: 2, .. })
        ));
        let pcrs = log.replay();
        let mut pcr4 = [0u8; 32];
        for (ev, d) in log.events.iter().zip(&digests) {
            if ev.pcr == 4 {
                pcr4 = Sha256::digest([pcr4, *d].concat()).into();
            }
        }
        assert_eq!(pcrs[&4], pcr4);
        assert_eq!(pcrs[&9], [0; 32]);
        let f = log.facts();
        assert!(f.secure_boot);
        assert_eq!(f.kernel, Some(hex::encode(Sha256::digest(b"linux"))));
        assert_eq!(f.shim, Some(hex::encode(Sha256::digest(b"shim"))));
        assert_eq!(f.bootloader, vec![hex::encode(Sha256::digest(b"grub"))]);
        assert_eq!(f.cmdline.as_deref(), Some("/vmlinuz root=/dev/sda1 ro"));
        assert_eq!(f.dbx, vec![hex::encode([9u8; 32])]);
        // The learnt policy accepts this boot (positive control) and refuses a changed kernel,
        // secure boot off, and a kernel listed in dbx.
        let p = BootPolicy::learn(&f);
        assert_eq!(p.check(&f), Ok(()));
        let text = p.to_toml();
        #[derive(Deserialize)]
        struct File {
            boot: BootPolicy,
        }
        assert_eq!(toml::from_str::<File>(&text).unwrap().boot, p, "{text}");
        let other = parse(&build(&sample(b"evil", 1)).0).unwrap().facts();
        assert_eq!(p.check(&other).unwrap_err().code, "boot-digest");
        let off = parse(&build(&sample(b"linux", 0)).0).unwrap().facts();
        assert_eq!(p.check(&off).unwrap_err().code, "secure-boot");
        let mut listed = f.clone();
        listed.dbx.push(f.kernel.clone().unwrap());
        assert_eq!(
            BootPolicy::default().check(&listed).unwrap_err().code,
            "dbx"
        );
    }

    #[test]
    fn truncated_and_non_agile_logs_are_refused() {
        let (bytes, _) = build(&sample(b"linux", 1));
        assert!(matches!(
            parse(&bytes[..bytes.len() - 3]),
            Err(BootLogError::Truncated(_))
        ));
        let mut bad = bytes.clone();
        bad[32] ^= 1; // inside "Spec ID Event03"
        assert!(matches!(parse(&bad), Err(BootLogError::NotAgile(_))));
    }

    proptest::proptest! {
        /// The parser never panics: any bytes, and any valid log with bytes changed or cut,
        /// parse or fail with an error (the log comes from the host being verified).
        #[test]
        fn parse_never_panics(junk in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
                              at in 0usize..4096, byte in proptest::num::u8::ANY, cut in 0usize..4096) {
            let _ = parse(&junk).map(|l| (l.replay(), l.facts(), l.check_bindings()));
            let (mut good, _) = build(&sample(b"linux", 1));
            let i = at % good.len();
            good[i] = byte;
            good.truncate(cut.max(1).min(good.len()));
            let _ = parse(&good).map(|l| (l.replay(), l.facts(), l.check_bindings()));
        }
    }
}
