//! A swtpm on loopback for the attestation tests, the `warren-tpm` agent, and a simulated UEFI
//! boot (a crypto-agile event log and the PCR extends firmware would make), shared by
//! `attest_tpm.rs` and `attest_gate.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The `warren-tpm` agent: `WARREN_TPM_AGENT`, else built (dynamically linked) into
/// `target/tpm` as scripts/test.sh does.
pub fn agent() -> PathBuf {
    if let Some(p) = std::env::var_os("WARREN_TPM_AGENT") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = root.join("target/tpm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        // glibc: tpm2-tss exists only as glibc shared libraries (the workspace's own target,
        // musl, is set in .cargo/config.toml).
        .args([
            "build",
            "-q",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--manifest-path",
        ])
        .arg(root.join("crates/warren-tpm/Cargo.toml"))
        .env("RUSTFLAGS", "-C target-feature=-crt-static")
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(st.success(), "cannot build the warren-tpm agent");
    target.join("x86_64-unknown-linux-gnu/debug/warren-tpm")
}

/// A swtpm on loopback with an EK certificate, killed when dropped.
pub struct Swtpm {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// Two free loopback ports in a row: tss's swtpm TCTI finds the control port at port + 1.
pub fn free_ports() -> (u16, u16) {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return (port, port + 1);
        }
    }
}

impl Swtpm {
    pub fn start(tag: &str) -> Swtpm {
        let dir = PathBuf::from(format!(
            "/run/warren-attest-{}-{tag}-swtpm",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        ok(Command::new("swtpm_setup")
            .args(["--tpm2", "--create-ek-cert", "--overwrite", "--tpmstate"])
            .arg(dir.join("state"))
            .stdout(Stdio::null())
            .output()
            .expect("swtpm_setup (scripts/setup.sh installs swtpm-tools)"));
        Self::spawn(dir)
    }

    /// A reboot: the same TPM state (EK, AK, anchor definition), PCRs and the anchor cleared.
    pub fn reboot(self) -> Swtpm {
        // An orderly shutdown first, as an operating system does: after a disorderly one the
        // TPM counts an authorisation failure against the (dictionary-attack protected) AK.
        ok(Command::new("tpm2_shutdown")
            .env("TPM2TOOLS_TCTI", self.spec())
            .output()
            .expect("tpm2_shutdown"));
        let mut me = std::mem::ManuallyDrop::new(self);
        let _ = me.child.kill();
        let _ = me.child.wait();
        let dir = std::mem::take(&mut me.dir);
        // `me` is never dropped: its directory lives on in the new instance.
        Self::spawn(dir)
    }

    pub fn spawn(dir: PathBuf) -> Swtpm {
        let (port, ctrl) = free_ports();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.join("state").display()))
            .args([
                "--server",
                &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            ])
            .args([
                "--ctrl",
                &format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm");
        let tpm = Swtpm { child, dir, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return tpm;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("swtpm did not listen on {port}");
    }

    pub fn spec(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The certificates of swtpm-localca, which issued the EK certificate.
pub fn localca_certs() -> Vec<PathBuf> {
    let conf = std::fs::read_to_string("/etc/swtpm-localca.conf").unwrap_or_default();
    let dir = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("statedir"))
        .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
        .unwrap_or_else(|| "/var/lib/swtpm-localca".into());
    let dir = PathBuf::from(dir);
    vec![
        dir.join("issuercert.pem"),
        dir.join("swtpm-localca-rootca-cert.pem"),
    ]
}

pub fn sha2_256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// What a simulated machine boots.
#[derive(Clone)]
pub struct Boot {
    pub secure_boot: u8,
    pub kernel: &'static [u8],
    pub dbx: Vec<[u8; 32]>,
}

pub fn good_boot() -> Boot {
    Boot {
        secure_boot: 1,
        kernel: b"vmlinuz-6.1.0-warren",
        dbx: vec![[0xdb; 32]],
    }
}

/// A UEFI event log as firmware, shim and GRUB write it: S-CRTM, firmware blobs, secure boot
/// variables, boot variables, separators, GPT, boot services applications (shim, GRUB, the
/// kernel), the authority that verified them, the kernel command line and the initrd.
pub fn firmware_events(b: &Boot) -> Vec<warren_attest::evidence::bootlog::NewEvent> {
    use warren_attest::evidence::bootlog::*;
    let e = |pcr, event_type, data: Vec<u8>, digest: Option<[u8; 32]>| NewEvent {
        pcr,
        event_type,
        data,
        digest,
    };
    let var = |guid: &[u8; 16], name: &str, data: &[u8]| efi_variable_data(guid, name, data);
    let owner = [0x77u8; 16];
    let db_cert = b"db certificate (DER)".to_vec();
    let mut db = EFI_CERT_X509.to_vec();
    db.extend_from_slice(&((28 + 16 + db_cert.len()) as u32).to_le_bytes());
    db.extend_from_slice(&0u32.to_le_bytes());
    db.extend_from_slice(&((16 + db_cert.len()) as u32).to_le_bytes());
    db.extend_from_slice(&owner);
    db.extend_from_slice(&db_cert);
    let mut v = vec![
        e(
            0,
            ev::S_CRTM_VERSION,
            "1.0".encode_utf16().flat_map(u16::to_le_bytes).collect(),
            None,
        ),
        e(
            0,
            ev::S_CRTM_CONTENTS,
            [2u8; 16].to_vec(),
            Some(sha2_256(b"crtm code")),
        ),
        e(
            0,
            ev::EFI_PLATFORM_FIRMWARE_BLOB,
            [0u8; 16].to_vec(),
            Some(sha2_256(b"firmware volume 1")),
        ),
        e(
            0,
            ev::EFI_PLATFORM_FIRMWARE_BLOB,
            [1u8; 16].to_vec(),
            Some(sha2_256(b"firmware volume 2")),
        ),
        e(
            7,
            ev::EFI_VARIABLE_DRIVER_CONFIG,
            var(&EFI_GLOBAL_VARIABLE, "SecureBoot", &[b.secure_boot]),
            None,
        ),
        e(
            7,
            ev::EFI_VARIABLE_DRIVER_CONFIG,
            var(&EFI_GLOBAL_VARIABLE, "PK", b"pk"),
            None,
        ),
        e(
            7,
            ev::EFI_VARIABLE_DRIVER_CONFIG,
            var(&EFI_GLOBAL_VARIABLE, "KEK", b"kek"),
            None,
        ),
        e(
            7,
            ev::EFI_VARIABLE_DRIVER_CONFIG,
            var(&EFI_IMAGE_SECURITY_DATABASE, "db", &db),
            None,
        ),
        e(
            7,
            ev::EFI_VARIABLE_DRIVER_CONFIG,
            var(
                &EFI_IMAGE_SECURITY_DATABASE,
                "dbx",
                &sha256_signature_list(&owner, &b.dbx),
            ),
            None,
        ),
        e(
            1,
            ev::EFI_VARIABLE_BOOT,
            var(&EFI_GLOBAL_VARIABLE, "BootOrder", &[0, 0]),
            None,
        ),
    ];
    for pcr in 0..8 {
        v.push(e(pcr, ev::SEPARATOR, vec![0; 4], None));
    }
    v.push(e(5, ev::EFI_GPT_EVENT, gpt(), None));
    v.push(e(
        4,
        ev::EFI_ACTION,
        b"Calling EFI Application from Boot Option".to_vec(),
        None,
    ));
    for app in [&b"shimx64.efi"[..], b"grubx64.efi", b.kernel] {
        v.push(e(
            4,
            ev::EFI_BOOT_SERVICES_APPLICATION,
            vec![0; 32],
            Some(sha2_256(app)),
        ));
    }
    v.push(e(
        7,
        ev::EFI_VARIABLE_AUTHORITY,
        var(&EFI_IMAGE_SECURITY_DATABASE, "db", &db_cert),
        None,
    ));
    let cmdline = "/boot/vmlinuz root=/dev/vda1 ro lockdown=integrity";
    v.push(e(
        8,
        ev::IPL,
        format!("kernel_cmdline: {cmdline}\0").into_bytes(),
        Some(sha2_256(cmdline.as_bytes())),
    ));
    v.push(e(
        9,
        ev::IPL,
        b"/boot/initrd.img-6.1.0-warren\0".to_vec(),
        Some(sha2_256(b"initrd contents")),
    ));
    v
}

/// `UEFI_GPT_DATA`: the GPT header and one partition (the EFI system partition).
pub fn gpt() -> Vec<u8> {
    let mut h = b"EFI PART".to_vec();
    h.extend_from_slice(&0x0001_0000u32.to_le_bytes());
    h.extend_from_slice(&92u32.to_le_bytes());
    h.extend_from_slice(&[0; 8]); // header CRC, reserved
    for lba in [1u64, 2047, 34, 2014] {
        h.extend_from_slice(&lba.to_le_bytes());
    }
    h.extend_from_slice(&[0x5a; 16]); // disk GUID
    h.extend_from_slice(&2u64.to_le_bytes());
    h.extend_from_slice(&128u32.to_le_bytes());
    h.extend_from_slice(&128u32.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    assert_eq!(h.len(), 92);
    h.extend_from_slice(&1u64.to_le_bytes());
    let mut part = [0x28u8; 16].to_vec(); // partition type
    part.extend_from_slice(&[0x11; 16]);
    part.extend_from_slice(&34u64.to_le_bytes());
    part.extend_from_slice(&1000u64.to_le_bytes());
    part.extend_from_slice(&0u64.to_le_bytes());
    let mut name: Vec<u8> = "EFI".encode_utf16().flat_map(u16::to_le_bytes).collect();
    name.resize(72, 0);
    part.extend_from_slice(&name);
    h.extend_from_slice(&part);
    h
}

/// Boots `b` on a freshly reset TPM: writes the log to `path` and extends the PCRs exactly as
/// the log says, through the agent (`scratch` is its working directory).
pub fn boot(agent: &Path, tpm: &Swtpm, scratch: &Path, path: &Path, b: &Boot) -> Vec<u8> {
    use warren_attest::evidence::bootlog::{build, ev};
    let events = firmware_events(b);
    let (bytes, digests) = build(&events);
    std::fs::write(path, &bytes).unwrap();
    std::fs::create_dir_all(scratch).unwrap();
    for (e, d) in events.iter().zip(&digests) {
        if e.event_type == ev::NO_ACTION {
            continue;
        }
        let o = Command::new(agent)
            .args(["--tpm", &tpm.spec(), "--dir"])
            .arg(scratch)
            .args(["diag-pcr-extend", &e.pcr.to_string(), &hex::encode(d)])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "extend PCR {}: {}",
            e.pcr,
            String::from_utf8_lossy(&o.stdout)
        );
    }
    bytes
}
