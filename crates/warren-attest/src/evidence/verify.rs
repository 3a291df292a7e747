//! Verifying a quote, in pure Rust: the certificate chain to the CA, the attestation key, the
//! signature, the nonce, the event log against the signed register, and golden values.
//!
//! Every rejection is a [`Rejection`] with a stable [`Rejection::code`], so tests and scripts
//! can tell *why* a quote was refused.

use std::collections::BTreeMap;

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;
use x509_parser::prelude::*;

use crate::evidence::bootlog::{self, BOOT_PCRS, BootFacts, BootPolicy};
use crate::evidence::ima::{self, IMA_PCR, ImaFacts, ImaPolicy};
use crate::evidence::kind::{RootKind, SOFTWARE_MAGIC};
use crate::evidence::quote::{BootEvidence, FORMAT, Quote, qualifying};
use crate::evidence::record::{
    CONTENT_TYPE, EVENT_LAUNCH, EVENT_REFUSED, NV_INDEX, Outcome, REDACTED_CONTENT_TYPE, Record,
    content_digest, outcomes, replay,
};
use crate::evidence::selfpcr::{self, WARREN_PCR, WarrenFacts, WarrenPolicy};
use crate::evidence::tpm_wire::{
    AK_FORBIDDEN, AK_REQUIRED, ANCHOR_ATTRIBUTES, BOUND_PCRS, USER_WITH_AUTH, ak_bound_policy,
    anchor_policy, name, parse_ak_public, parse_nv_attest, parse_nv_public, parse_quote_attest,
};

/// Why a quote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The quote file or a field of it does not parse.
    #[error("malformed quote: {0}")]
    Malformed(String),
    /// The quote is software-rooted and the verifier did not opt in.
    #[error(
        "software-rooted quote refused: this verifier requires a TPM (pass --allow-software to accept `root: software`)"
    )]
    SoftwareRoot,
    /// The key that signed has no certificate from the CA.
    #[error("attestation key not enrolled: {0}")]
    NotEnrolled(String),
    /// The certificate does not chain to the CA.
    #[error("certificate chain: {0}")]
    Chain(String),
    /// The certificate and the quote disagree about the root of trust.
    #[error("root mismatch: the certificate is for a {cert} root, the quote claims {quote}")]
    RootMismatch {
        /// What the certificate says.
        cert: String,
        /// What the quote says.
        quote: String,
    },
    /// The attestation key's attributes are not those of an attestation key.
    #[error("attestation key attributes: {0}")]
    KeyAttributes(String),
    /// The attestation key is not bound to the quoted PCR state (no PCR policy, a password
    /// path around it, or a policy over other values), so root on a host that booted
    /// something else could have used it.
    #[error(
        "attestation key not bound to the measured state: {0} (re-provision with `warren attest init --reprovision` and enroll the new key)"
    )]
    AkUnbound(String),
    /// The signature does not verify.
    #[error("bad signature: the signed evidence was altered or not signed by the enrolled key")]
    Signature,
    /// The quote answers another nonce (a replay), or its binding was altered.
    #[error("nonce mismatch: {0}")]
    Nonce(String),
    /// The anchor (NV index) is not the one Warren defines.
    #[error("anchor: {0}")]
    Anchor(String),
    /// A spawned environment's launch record names a spawner's record that is not in the log,
    /// comes after it, is another environment's, or has another digest.
    #[error("provenance: {0}")]
    Provenance(String),
    /// Records are missing, out of order or numbered wrongly.
    #[error("event log order: record at position {position} has recnum {recnum}")]
    Order {
        /// Position in the log.
        position: usize,
        /// The number it claims.
        recnum: u64,
    },
    /// A record's content does not hash to its digest.
    #[error("event log record {0} was altered: its content does not match its digest")]
    RecordDigest(u64),
    /// Replaying the log does not give the signed register.
    #[error("event log replay gives {replayed}, the signed register is {signed}")]
    Replay {
        /// The replayed value, hex.
        replayed: String,
        /// The signed value, hex.
        signed: String,
    },
    /// The quote's subject does not name a launch record of that environment.
    #[error("subject: {0}")]
    Subject(String),
    /// A record whose content the verifier needs (the subject's, one of its lineage, or any
    /// record when golden values must be checked over the whole log) is redacted.
    #[error("redacted: {0}")]
    Redacted(String),
    /// A record does not match the golden values.
    #[error("golden-value mismatch: {0}")]
    Golden(String),
    /// The attestation key's certificate is on the CA's revocation list.
    #[error("attestation key revoked: certificate serial {0} is on the CA's revocation list")]
    Revoked(String),
    /// The revocation list given is not the CA's, is not signed by it, or is out of date.
    #[error("revocation list: {0}")]
    Crl(String),
    /// The boot PCR quote is not over the boot PCRs, or its values do not hash to the digest
    /// the TPM signed.
    #[error("boot PCRs: {0}")]
    PcrDigest(String),
    /// The UEFI event log does not parse.
    #[error("{0}")]
    BootLog(String),
    /// Replaying the UEFI event log does not give the quoted PCRs (an event removed, altered
    /// or added, or a PCR extended outside the log).
    #[error("boot log replay: {0}")]
    BootReplay(String),
    /// Warren's PCR 15 is not explained by its records; `code` is `self-log` or
    /// `self-replay`.
    #[error("Warren's PCR ({code}): {detail}")]
    SelfPcr {
        /// The stable reason.
        code: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The IMA measurement list does not parse.
    #[error("{0}")]
    ImaLog(String),
    /// No prefix of the IMA measurement list replays to the quoted PCR 10.
    #[error("IMA replay: {0}")]
    ImaReplay(String),
    /// The `[ima]` policy is not met.
    #[error("ima policy: {0}")]
    ImaPolicy(String),
    /// The Warren binary, agent or configuration measured into PCR 15 is not one the
    /// `[warren]` policy allows.
    #[error("warren policy: {0}")]
    WarrenDigest(String),
    /// The verifier's policy has a `[boot]` table and the quote shows no boot state.
    #[error("no boot state: {0}")]
    NoBootState(String),
    /// The boot does not satisfy the measured-boot policy; `code` is `secure-boot`, `dbx`,
    /// `db`, `boot-digest` or `cmdline`.
    #[error("measured-boot policy ({code}): {detail}")]
    BootPolicy {
        /// The stable reason.
        code: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl Rejection {
    /// A stable, short name for the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::SoftwareRoot => "software-root",
            Rejection::NotEnrolled(_) => "not-enrolled",
            Rejection::Chain(_) => "chain",
            Rejection::RootMismatch { .. } => "root-mismatch",
            Rejection::KeyAttributes(_) => "key-attributes",
            Rejection::AkUnbound(_) => "ak-unbound",
            Rejection::Signature => "signature",
            Rejection::Nonce(_) => "nonce",
            Rejection::Anchor(_) => "anchor",
            Rejection::Provenance(_) => "provenance",
            Rejection::Order { .. } => "log-order",
            Rejection::RecordDigest(_) => "record-digest",
            Rejection::Replay { .. } => "log-replay",
            Rejection::Subject(_) => "subject",
            Rejection::Redacted(_) => "redacted",
            Rejection::Golden(_) => "golden",
            Rejection::Revoked(_) => "revoked",
            Rejection::Crl(_) => "crl",
            Rejection::PcrDigest(_) => "pcr-digest",
            Rejection::BootLog(_) => "boot-log",
            Rejection::BootReplay(_) => "boot-replay",
            Rejection::NoBootState(_) => "no-boot-state",
            Rejection::SelfPcr { code, .. } => code,
            Rejection::WarrenDigest(_) => "warren-digest",
            Rejection::ImaLog(_) => "ima-log",
            Rejection::ImaReplay(_) => "ima-replay",
            Rejection::ImaPolicy(_) => "ima-policy",
            Rejection::BootPolicy { code, .. } => code,
        }
    }
}

/// Golden values: what each named environment must have been launched from and with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Refuse records of environments the policy does not name.
    #[serde(default)]
    pub strict: bool,
    /// Per environment name.
    #[serde(default)]
    pub env: BTreeMap<String, Golden>,
    /// The measured-boot policy; when present, a quote must carry the host's boot state.
    #[serde(default)]
    pub boot: Option<BootPolicy>,
    /// What Warren must have measured into its PCR 15; when present, a quote must carry the
    /// host's boot state (PCR 15 is quoted with it).
    #[serde(default)]
    pub warren: Option<WarrenPolicy>,
    /// What the IMA measurement list (PCR 10) must show; when present, a quote must carry the
    /// host's boot state and an IMA list.
    #[serde(default)]
    pub ima: Option<ImaPolicy>,
}

/// The golden values of one environment; an absent field is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    /// The image tree digest (`blake3:...`).
    pub image_digest: Option<String>,
    /// The OCI manifest digest.
    pub manifest_digest: Option<String>,
    /// The command.
    pub command: Option<Vec<String>>,
    /// The config digest (`sha256:...`).
    pub config_digest: Option<String>,
    /// The seccomp profile digest.
    pub seccomp_profile: Option<String>,
}

impl Policy {
    /// Parses a golden-values TOML file.
    pub fn from_toml(text: &str) -> Result<Policy, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// What the verifier requires.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The nonce the verifier sent.
    pub nonce: &'a [u8],
    /// The issuing CA's certificate (PEM).
    pub ca_pem: &'a str,
    /// Accept `root: software` quotes.
    pub allow_software: bool,
    /// Golden values.
    pub policy: Option<&'a Policy>,
    /// The time to check certificate validity at (seconds since the epoch).
    pub now: i64,
    /// The issuing CA's certificate revocation list (PEM), if the verifier has one.
    pub crl_pem: Option<&'a str>,
}

/// What a verified quote proves.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The root that signed.
    pub root: RootKind,
    /// The register value.
    pub register: [u8; 32],
    /// How many records the log holds.
    pub records: usize,
    /// How many of them are redacted (replayed by their digest, their content not shown).
    pub redacted: usize,
    /// The subject's environment and data, for a subject quote.
    pub subject: Option<(String, Vec<u8>)>,
    /// What the verified boot log says, when the quote carries the boot state.
    pub boot: Option<BootFacts>,
    /// What Warren measured into PCR 15, when the quote carries the boot state.
    pub warren: Option<WarrenFacts>,
    /// What the IMA list says up to the quoted PCR 10, when the quote carries one.
    pub ima: Option<ImaFacts>,
    /// What became of each launch: `ran` or `refused`.
    pub outcomes: Vec<Outcome>,
    /// For a subject quote: the subject's launch record, then (for a spawned environment) its
    /// spawner's, and so on up to an environment the administrator declared.
    pub lineage: Vec<Ancestor>,
}

/// One launch record of a subject's lineage ([`Verified::lineage`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ancestor {
    /// The launch record.
    pub recnum: u64,
    /// The environment it launched.
    pub name: String,
    /// For a spawned environment, the template it was made from; `None` for one the
    /// administrator declared (or ran).
    pub template: Option<String>,
    /// For a spawned environment whose record does not name its spawner's record: the
    /// spawner's name, which the log cannot confirm. The lineage stops there.
    pub unconfirmed_parent: Option<String>,
}

fn hexfield(what: &str, s: &str) -> Result<Vec<u8>, Rejection> {
    hex::decode(s).map_err(|_| Rejection::Malformed(format!("{what} is not hex")))
}

/// The marker an AK certificate carries in its subject's organisational unit.
pub fn root_marker(root: RootKind) -> String {
    format!("warren root: {root}")
}

/// Parses a PEM certificate.
fn parse_pem(pem_text: &str, what: &str) -> Result<Vec<u8>, Rejection> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| Rejection::Malformed(format!("{what}: {e}")))?;
    Ok(pem.contents)
}

/// The P-256 key of a certificate.
fn cert_key(cert: &X509Certificate<'_>, what: &str) -> Result<VerifyingKey, Rejection> {
    VerifyingKey::from_sec1_bytes(&cert.public_key().subject_public_key.data)
        .map_err(|_| Rejection::Chain(format!("{what} does not hold a P-256 key")))
}

/// Verifies `child` was signed by `issuer`'s key (ECDSA P-256 with SHA-256).
pub fn check_signed_by(
    child: &X509Certificate<'_>,
    issuer_key: &VerifyingKey,
) -> Result<(), String> {
    let sig = Signature::from_der(&child.signature_value.data)
        .map_err(|_| "the signature is not ECDSA P-256".to_owned())?;
    issuer_key
        .verify(child.tbs_certificate.as_ref(), &sig)
        .map_err(|_| "not signed by the given CA".to_owned())
}

/// Checks the CA's revocation list: issued and signed by the CA, current at `now`, and not
/// listing the attestation key's certificate.
fn check_crl(
    crl_pem: &str,
    ca: &X509Certificate<'_>,
    ca_key: &VerifyingKey,
    ak_cert: &X509Certificate<'_>,
    now: i64,
) -> Result<(), Rejection> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes())
        .map_err(|e| Rejection::Crl(format!("not PEM: {e}")))?;
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents)
        .map_err(|e| Rejection::Crl(format!("does not parse: {e}")))?;
    if crl.tbs_cert_list.issuer != *ca.subject() {
        return Err(Rejection::Crl(format!(
            "issued by {}, not by the CA {}",
            crl.tbs_cert_list.issuer,
            ca.subject()
        )));
    }
    let sig = Signature::from_der(&crl.signature_value.data)
        .map_err(|_| Rejection::Crl("the signature is not ECDSA P-256".into()))?;
    ca_key
        .verify(crl.tbs_cert_list.as_ref(), &sig)
        .map_err(|_| Rejection::Crl("not signed by the CA".into()))?;
    if crl.last_update().timestamp() > now {
        return Err(Rejection::Crl("issued in the future".into()));
    }
    match crl.next_update() {
        Some(t) if t.timestamp() >= now => {}
        _ => {
            return Err(Rejection::Crl(
                "out of date (past its next update): fetch a current one from the CA".into(),
            ));
        }
    }
    let serial = ak_cert.tbs_certificate.serial.clone();
    if crl
        .iter_revoked_certificates()
        .any(|r| *r.serial() == serial)
    {
        return Err(Rejection::Revoked(
            ak_cert.tbs_certificate.raw_serial_as_string(),
        ));
    }
    Ok(())
}

/// Verifies a quote.
pub fn verify(quote: &Quote, opts: &Options<'_>) -> Result<Verified, Rejection> {
    if quote.format != FORMAT {
        return Err(Rejection::Malformed(format!(
            "format {:?}, expected {FORMAT:?}",
            quote.format
        )));
    }
    if quote.root == RootKind::Software && !opts.allow_software {
        return Err(Rejection::SoftwareRoot);
    }

    // The attestation key's certificate, and its chain to the CA.
    let cert_pem = quote.ak_certificate.as_deref().ok_or_else(|| {
        Rejection::NotEnrolled("the quote carries no attestation key certificate".into())
    })?;
    let ca_der = parse_pem(opts.ca_pem, "CA certificate")?;
    let (_, ca) = X509Certificate::from_der(&ca_der)
        .map_err(|e| Rejection::Malformed(format!("CA certificate: {e}")))?;
    let ak_der = parse_pem(cert_pem, "attestation key certificate")?;
    let (_, ak_cert) = X509Certificate::from_der(&ak_der)
        .map_err(|e| Rejection::Malformed(format!("attestation key certificate: {e}")))?;
    if !ca.is_ca() {
        return Err(Rejection::Chain(
            "the given CA certificate is not a CA".into(),
        ));
    }
    if ak_cert.issuer() != ca.subject() {
        return Err(Rejection::Chain(format!(
            "the attestation key certificate was issued by {}, not by {}; pass the issuing CA \
             that certifies the kind of root you trust (`warren ca init` makes tpm-ca.crt and \
             software-ca.crt; the Privacy CA's root is not accepted directly)",
            ak_cert.issuer(),
            ca.subject()
        )));
    }
    let ca_key = cert_key(&ca, "the CA certificate")?;
    check_signed_by(&ak_cert, &ca_key).map_err(Rejection::Chain)?;
    for (c, what) in [(&ca, "CA"), (&ak_cert, "attestation key")] {
        let v = c.validity();
        if opts.now < v.not_before.timestamp() || opts.now > v.not_after.timestamp() {
            return Err(Rejection::Chain(format!(
                "the {what} certificate is not valid now"
            )));
        }
    }
    if let Some(crl) = opts.crl_pem {
        check_crl(crl, &ca, &ca_key, &ak_cert, opts.now)?;
    }
    let marker = ak_cert
        .subject()
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .find_map(|s| s.strip_prefix("warren root: "))
        .ok_or_else(|| {
            Rejection::KeyAttributes("the certificate names no Warren root of trust".into())
        })?;
    if marker != quote.root.as_str() {
        return Err(Rejection::RootMismatch {
            cert: marker.to_owned(),
            quote: quote.root.to_string(),
        });
    }
    let ak_key = cert_key(&ak_cert, "the attestation key certificate")?;

    // The key that signed must be the enrolled one.
    let attest = hexfield("attest", &quote.attest)?;
    let signature = hexfield("signature", &quote.signature)?;
    let (signed_qualifying, register) = match quote.root {
        RootKind::Software => {
            let signer = quote.ak_public.as_deref().ok_or_else(|| {
                Rejection::Malformed("a software quote names its key in ak_public".into())
            })?;
            let signer = hexfield("ak_public", signer)?;
            if signer != ak_cert.public_key().raw {
                return Err(Rejection::NotEnrolled(
                    "the key that signed is not the key the certificate was issued for".into(),
                ));
            }
            let sig = Signature::from_der(&signature).map_err(|_| Rejection::Signature)?;
            ak_key
                .verify(&attest, &sig)
                .map_err(|_| Rejection::Signature)?;
            parse_software_attest(&attest)?
        }
        RootKind::Tpm => check_tpm_evidence(quote, &attest, &signature, &ak_key)?,
    };

    // The nonce, and the subject the nonce is bound to.
    let nonce_in_quote = hexfield("nonce", &quote.nonce)?;
    if nonce_in_quote != opts.nonce {
        return Err(Rejection::Nonce(format!(
            "the quote answers nonce {}, not {}",
            quote.nonce,
            hex::encode(opts.nonce)
        )));
    }
    let subject = match &quote.subject {
        None => None,
        Some(s) => {
            let rec = quote
                .event_log
                .iter()
                .find(|r| r.recnum == s.recnum)
                .ok_or_else(|| Rejection::Subject(format!("no record {}", s.recnum)))?;
            let content = rec.content.as_ref().ok_or_else(|| {
                Rejection::Redacted(format!(
                    "the subject's launch record {} is redacted, so nothing shows what was launched",
                    s.recnum
                ))
            })?;
            if content.event != EVENT_LAUNCH {
                return Err(Rejection::Subject(format!(
                    "record {} is not a launch record",
                    s.recnum
                )));
            }
            if content.name != s.env {
                return Err(Rejection::Subject(format!(
                    "record {} is environment {:?}, not {:?}",
                    s.recnum, content.name, s.env
                )));
            }
            let data = hexfield("subject data", &s.data)?;
            Some((rec.recnum, rec.sha256().unwrap_or([0; 32]), data))
        }
    };
    let expected = qualifying(
        opts.nonce,
        subject
            .as_ref()
            .map(|(n, d, data)| (*n, d, data.as_slice())),
    );
    if expected != signed_qualifying {
        return Err(Rejection::Nonce(
            "the signed value does not bind this nonce and subject".into(),
        ));
    }

    // The boot chain: the PCR quote, signed by the same key over the same qualifying value,
    // and the UEFI event log replayed against it.
    let boot = match &quote.boot {
        None => None,
        Some(_) if quote.root == RootKind::Software => {
            return Err(Rejection::Malformed(
                "a software root has no PCRs, yet the quote carries a boot state".into(),
            ));
        }
        Some(b) => Some(check_boot(b, &ak_key, &signed_qualifying)?),
    };
    if quote.root == RootKind::Tpm {
        check_ak_binding(quote, boot.as_ref().map(|(_, _, _, v)| v))?;
    }
    let (boot, warren, ima_facts) = match boot {
        Some((facts, warren, ima, _)) => (Some(facts), Some(warren), ima),
        None => (None, None, None),
    };

    // The log: numbering, record digests, and the replay against the signed register.
    check_log(&quote.event_log, &register)?;
    check_provenance(&quote.event_log)?;

    if let Some(bp) = opts.policy.and_then(|p| p.boot.as_ref()) {
        let facts = boot.as_ref().ok_or_else(|| {
            Rejection::NoBootState(match quote.root {
                RootKind::Software => {
                    "a software root cannot show how the host booted (root: software)".into()
                }
                RootKind::Tpm => "the quote carries no boot PCR quote".into(),
            })
        })?;
        bp.check(facts).map_err(|f| Rejection::BootPolicy {
            code: f.code,
            detail: f.detail,
        })?;
    }
    if let Some(wp) = opts.policy.and_then(|p| p.warren.as_ref()) {
        let facts = warren.as_ref().ok_or_else(|| {
            Rejection::NoBootState(
                "the quote carries no PCR quote, so nothing shows what Warren measured".into(),
            )
        })?;
        wp.check(facts).map_err(Rejection::WarrenDigest)?;
    }
    if let Some(ip) = opts.policy.and_then(|p| p.ima.as_ref()) {
        let facts = ima_facts.as_ref().ok_or_else(|| match &quote.boot {
            None => Rejection::NoBootState(
                "the quote carries no PCR quote, so nothing shows what IMA measured".into(),
            ),
            Some(_) => Rejection::ImaPolicy("the quote carries no IMA measurement list".into()),
        })?;
        let binaries = warren
            .as_ref()
            .map(|w| w.binary.clone())
            .unwrap_or_default();
        ip.check(facts, &binaries).map_err(Rejection::ImaPolicy)?;
    }

    if let Some(policy) = opts.policy {
        check_golden(
            &quote.event_log,
            policy,
            quote.subject.as_ref().map(|s| s.recnum),
        )?;
    }
    Ok(Verified {
        root: quote.root,
        register,
        records: quote.event_log.len(),
        redacted: quote.event_log.iter().filter(|r| r.is_redacted()).count(),
        subject: quote
            .subject
            .as_ref()
            .zip(subject)
            .map(|(s, (_, _, data))| (s.env.clone(), data)),
        boot,
        warren,
        ima: ima_facts,
        outcomes: outcomes(&quote.event_log),
        lineage: quote
            .subject
            .as_ref()
            .map(|s| lineage(&quote.event_log, s.recnum))
            .unwrap_or_default(),
    })
}

/// Checks every spawned environment's provenance (`spawn` in its launch record): the
/// spawner's record it names is an earlier launch record of the environment it names, with the
/// digest it names. A record that names no spawner record is left unconfirmed, not refused.
pub fn check_provenance(records: &[Record]) -> Result<(), Rejection> {
    for rec in records {
        let Some(c) = rec.content.as_ref() else {
            continue;
        };
        let Some(p) = c.spawn.as_ref() else {
            continue;
        };
        let (Some(n), Some(digest)) = (p.parent_recnum, p.parent_digest.as_deref()) else {
            continue;
        };
        let fail = |why: String| {
            Rejection::Provenance(format!(
                "record {} ({:?}, spawned by {:?} from template {:?}) {why}",
                rec.recnum, c.name, p.parent, p.template
            ))
        };
        if n >= rec.recnum {
            return Err(fail(format!("names record {n}, which is not earlier")));
        }
        let parent = records
            .iter()
            .find(|r| r.recnum == n)
            .ok_or_else(|| fail(format!("names record {n}, which is not in the log")))?;
        let Some(pc) = parent.content.as_ref() else {
            return Err(Rejection::Redacted(format!(
                "record {} ({:?}) names its spawner's record {n}, which is redacted, so its \
                 provenance cannot be checked",
                rec.recnum, c.name
            )));
        };
        if pc.event != EVENT_LAUNCH || pc.name != p.parent {
            return Err(fail(format!(
                "names record {n}, which launched {:?} ({}), not {:?}",
                pc.name, pc.event, p.parent
            )));
        }
        let actual = parent.sha256().map(hex::encode).unwrap_or_default();
        if digest.strip_prefix("sha256:") != Some(actual.as_str()) {
            return Err(fail(format!(
                "names record {n} with digest {digest}, but that record's digest is sha256:{actual}"
            )));
        }
    }
    Ok(())
}

/// The lineage of launch record `recnum`: it, then each spawner's record it names (checked by
/// [`check_provenance`]), in order.
pub fn lineage(records: &[Record], recnum: u64) -> Vec<Ancestor> {
    let mut out: Vec<Ancestor> = Vec::new();
    let mut next = Some(recnum);
    while let Some(n) = next.take() {
        let Some(c) = records
            .iter()
            .find(|r| r.recnum == n)
            .and_then(|r| r.content.as_ref())
        else {
            break;
        };
        if out.iter().any(|a| a.recnum == n) {
            break;
        }
        let spawn = c.spawn.as_ref();
        next = spawn.and_then(|p| p.parent_recnum);
        out.push(Ancestor {
            recnum: n,
            name: c.name.clone(),
            template: spawn.map(|p| p.template.clone()),
            unconfirmed_parent: spawn
                .filter(|p| p.parent_recnum.is_none())
                .map(|p| p.parent.clone()),
        });
    }
    out
}

fn parse_software_attest(attest: &[u8]) -> Result<([u8; 32], [u8; 32]), Rejection> {
    let rest = attest
        .strip_prefix(SOFTWARE_MAGIC.as_slice())
        .ok_or_else(|| {
            Rejection::Malformed("the signed bytes are not a software attestation".into())
        })?;
    if rest.len() != 64 {
        return Err(Rejection::Malformed(
            "the software attestation has the wrong length".into(),
        ));
    }
    let mut q = [0; 32];
    let mut r = [0; 32];
    q.copy_from_slice(&rest[..32]);
    r.copy_from_slice(&rest[32..]);
    Ok((q, r))
}

/// Checks numbering and digests of `records` and that they replay to `register`.
pub fn check_log(records: &[Record], register: &[u8; 32]) -> Result<(), Rejection> {
    let mut digests = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        if rec.recnum != i as u64 {
            return Err(Rejection::Order {
                position: i,
                recnum: rec.recnum,
            });
        }
        if let Some(c) = &rec.content {
            if ![EVENT_LAUNCH, EVENT_REFUSED].contains(&c.event.as_str()) {
                return Err(Rejection::Malformed(format!(
                    "record {} has event {:?}, neither {EVENT_LAUNCH:?} nor {EVENT_REFUSED:?}",
                    rec.recnum, c.event
                )));
            }
        }
        // A record with content is a launch record; a record without is a redacted one. Any
        // other pairing (content with the redacted type, none with the launch type, another
        // type) is refused.
        let type_fits = match &rec.content {
            Some(_) => rec.content_type == CONTENT_TYPE,
            None => rec.content_type == REDACTED_CONTENT_TYPE,
        };
        if rec.nv_index != NV_INDEX {
            return Err(Rejection::Malformed(format!(
                "record {} is for index {:#x}, not Warren's anchor {NV_INDEX:#x}",
                rec.recnum, rec.nv_index
            )));
        }
        if !type_fits {
            return Err(Rejection::Malformed(format!(
                "record {} has content type {:?} {}: a record with content is {CONTENT_TYPE:?}, \
                 one without (redacted) {REDACTED_CONTENT_TYPE:?}",
                rec.recnum,
                rec.content_type,
                if rec.content.is_some() {
                    "and content"
                } else {
                    "and no content"
                }
            )));
        }
        let claimed = rec.sha256().ok_or_else(|| {
            Rejection::Malformed(format!("record {} has no sha256 digest", rec.recnum))
        })?;
        // A redacted record's digest is extended as stated: the replay below binds it.
        if let Some(c) = &rec.content {
            if content_digest(c) != claimed {
                return Err(Rejection::RecordDigest(rec.recnum));
            }
        }
        digests.push(claimed);
    }
    let replayed = replay(digests.iter());
    if &replayed != register {
        return Err(Rejection::Replay {
            replayed: hex::encode(replayed),
            signed: hex::encode(register),
        });
    }
    Ok(())
}

/// Checks the records (only `only`, when given) against the golden values. For each named
/// environment, its latest record counts.
pub fn check_golden(
    records: &[Record],
    policy: &Policy,
    only: Option<u64>,
) -> Result<(), Rejection> {
    // Over the whole log (a host quote), a redacted record could be any environment's latest
    // launch, so no listed environment's values, nor `strict`, can be decided: refuse rather
    // than accept what was not checked. A subject quote's own record is never redacted (see
    // `verify`).
    let redacted = records.iter().filter(|r| r.is_redacted()).count();
    if only.is_none() && redacted > 0 && (policy.strict || !policy.env.is_empty()) {
        return Err(Rejection::Redacted(format!(
            "golden values cannot be checked: {redacted} of the log's records are redacted, and \
             any of them could be a launch of an environment the policy {}",
            if policy.strict {
                "does not list (strict)"
            } else {
                "lists"
            }
        )));
    }
    let mut latest: BTreeMap<&str, &Record> = BTreeMap::new();
    for r in records {
        let Some(c) = r.content.as_ref() else {
            continue;
        };
        if only.is_none_or(|n| n == r.recnum) && c.event == EVENT_LAUNCH {
            latest.insert(&c.name, r);
        }
    }
    for (name, rec) in &latest {
        let Some(g) = policy.env.get(*name) else {
            if policy.strict {
                return Err(Rejection::Golden(format!(
                    "environment {name:?} is not in the policy"
                )));
            }
            continue;
        };
        let Some(c) = rec.content.as_ref() else {
            continue;
        };
        let mismatch = |field: &str, want: &dyn std::fmt::Debug, got: &dyn std::fmt::Debug| {
            Rejection::Golden(format!(
                "environment {name:?} {field}: expected {want:?}, launched with {got:?}"
            ))
        };
        if let Some(want) = &g.image_digest {
            if *want != c.image.digest {
                return Err(mismatch("image_digest", want, &c.image.digest));
            }
        }
        if let Some(want) = &g.manifest_digest {
            if Some(want) != c.image.manifest_digest.as_ref() {
                return Err(mismatch("manifest_digest", want, &c.image.manifest_digest));
            }
        }
        if let Some(want) = &g.command {
            if *want != c.command {
                return Err(mismatch("command", want, &c.command));
            }
        }
        if let Some(want) = &g.config_digest {
            if *want != c.config_digest {
                return Err(mismatch("config_digest", want, &c.config_digest));
            }
        }
        if let Some(want) = &g.seccomp_profile {
            if Some(want) != c.config.seccomp_profile.as_ref() {
                return Err(mismatch("seccomp_profile", want, &c.config.seccomp_profile));
            }
        }
    }
    for name in policy.env.keys() {
        if only.is_none() && !latest.contains_key(name.as_str()) {
            return Err(Rejection::Golden(format!(
                "environment {name:?} has no launch record"
            )));
        }
    }
    Ok(())
}

fn tpm_hexfield(what: &str, s: Option<&str>) -> Result<Vec<u8>, Rejection> {
    let s = s.ok_or_else(|| Rejection::Malformed(format!("a tpm quote carries {what}")))?;
    hex::decode(s).map_err(|_| Rejection::Malformed(format!("{what} is not hex")))
}

/// Checks TPM evidence against the certified key `ak` and returns (signed qualifying value,
/// register).
fn check_tpm_evidence(
    quote: &Quote,
    attest: &[u8],
    signature: &[u8],
    ak: &VerifyingKey,
) -> Result<([u8; 32], [u8; 32]), Rejection> {
    let ak_public = tpm_hexfield("ak_public", quote.ak_public.as_deref())?;
    let key = parse_ak_public(&ak_public).map_err(Rejection::KeyAttributes)?;
    if key.attributes & AK_REQUIRED != AK_REQUIRED || key.attributes & AK_FORBIDDEN != 0 {
        return Err(Rejection::KeyAttributes(format!(
            "attributes {:#010x} are not those of a restricted signing key that never leaves the TPM",
            key.attributes
        )));
    }
    if key.point.as_slice() != ak.to_encoded_point(false).as_bytes() {
        return Err(Rejection::NotEnrolled(
            "the key that signed is not the key the certificate was issued for".into(),
        ));
    }
    let sig = Signature::from_der(signature).map_err(|_| Rejection::Signature)?;
    ak.verify(attest, &sig).map_err(|_| Rejection::Signature)?;
    // `qualifiedSigner` is the key's Qualified Name, which depends on its parents; what
    // matters is that the certified key signed a TPM-generated structure, which a restricted
    // key only does for structures the TPM itself made (the magic value checked below).
    let a = parse_nv_attest(attest).map_err(Rejection::Malformed)?;
    let ak_name = name(&ak_public);
    let nv_bytes = tpm_hexfield("nv_public", quote.nv_public.as_deref())?;
    let nv = parse_nv_public(&nv_bytes).map_err(Rejection::Malformed)?;
    if name(&nv_bytes) != a.index_name {
        return Err(Rejection::Anchor(
            "the certified index is not the one the quote describes".into(),
        ));
    }
    if nv.index != NV_INDEX {
        return Err(Rejection::Anchor(format!(
            "index {:#010x}, not Warren's {NV_INDEX:#010x}",
            nv.index
        )));
    }
    if nv.name_alg != 0x000b || nv.size != 32 {
        return Err(Rejection::Anchor("not a 32-byte SHA-256 index".into()));
    }
    if nv.attributes != ANCHOR_ATTRIBUTES {
        return Err(Rejection::Anchor(format!(
            "attributes {:#010x}, expected {ANCHOR_ATTRIBUTES:#010x} (an extend index only the attestation key's holder can write)",
            nv.attributes
        )));
    }
    if nv.auth_policy != anchor_policy(&ak_name) {
        return Err(Rejection::Anchor(
            "its write policy is not bound to the attestation key".into(),
        ));
    }
    if a.offset != 0 || a.contents.len() != 32 {
        return Err(Rejection::Anchor(
            "the certified range is not the whole index".into(),
        ));
    }
    let extra: [u8; 32] = a
        .extra
        .as_slice()
        .try_into()
        .map_err(|_| Rejection::Nonce("the signed qualifying value is not 32 bytes".into()))?;
    let mut register = [0u8; 32];
    register.copy_from_slice(&a.contents);
    Ok((extra, register))
}

/// Checks that the attestation key can only be used in the state the quote shows: it has no
/// `userWithAuth` (no password path) and its authPolicy is `PolicyPCR` over [`BOUND_PCRS`]
/// with exactly the quoted values, then `PolicyAuthValue`.
fn check_ak_binding(
    quote: &Quote,
    pcrs: Option<&BTreeMap<u32, [u8; 32]>>,
) -> Result<(), Rejection> {
    let ak_public = tpm_hexfield("ak_public", quote.ak_public.as_deref())?;
    let key = parse_ak_public(&ak_public).map_err(Rejection::KeyAttributes)?;
    if key.attributes & USER_WITH_AUTH != 0 {
        return Err(Rejection::AkUnbound(
            "the key has userWithAuth: its authValue alone authorises it, whatever the PCRs".into(),
        ));
    }
    let pcrs = pcrs.ok_or_else(|| {
        Rejection::AkUnbound(
            "the quote carries no PCR quote, so nothing shows the state the key is bound to".into(),
        )
    })?;
    let mut values = Vec::with_capacity(BOUND_PCRS.len());
    for p in BOUND_PCRS {
        values.push(pcrs.get(&p).ok_or_else(|| {
            Rejection::AkUnbound(format!("the PCR quote does not cover PCR {p}"))
        })?);
    }
    if key.auth_policy != ak_bound_policy(values) {
        return Err(Rejection::AkUnbound(format!(
            "its authPolicy {} is not PolicyPCR(0-9, 14, 15 as quoted) + PolicyAuthValue",
            hex::encode(&key.auth_policy)
        )));
    }
    Ok(())
}

/// What the boot part of a quote says: the UEFI log's facts, Warren's PCR's, and the quoted
/// PCR values.
type CheckedBoot = (
    BootFacts,
    WarrenFacts,
    Option<ImaFacts>,
    BTreeMap<u32, [u8; 32]>,
);

/// Checks the boot part of a TPM quote: the attestation key signed a PCR quote of the SHA-256
/// bank covering at least PCRs 0–9, over `qualifying`; the PCR values hash to the signed
/// digest; the UEFI event log replays to each of them. Returns what the log says.
fn check_boot(
    b: &BootEvidence,
    ak: &VerifyingKey,
    qualifying: &[u8; 32],
) -> Result<CheckedBoot, Rejection> {
    let attest = hexfield("boot.attest", &b.attest)?;
    let signature = hexfield("boot.signature", &b.signature)?;
    let sig = Signature::from_der(&signature).map_err(|_| Rejection::Signature)?;
    ak.verify(&attest, &sig).map_err(|_| Rejection::Signature)?;
    let q = parse_quote_attest(&attest)
        .map_err(|e| Rejection::Malformed(format!("boot.attest: {e}")))?;
    if q.extra != qualifying {
        return Err(Rejection::Nonce(
            "the boot PCR quote does not bind this nonce".into(),
        ));
    }
    let [(bootlog::ALG_SHA256, selected)] = q.selection.as_slice() else {
        return Err(Rejection::PcrDigest(
            "the quote does not select exactly the SHA-256 bank".into(),
        ));
    };
    if !BOOT_PCRS[..10].iter().all(|p| selected.contains(p)) {
        return Err(Rejection::PcrDigest(format!(
            "the quote covers PCRs {selected:?}, not all of 0-9"
        )));
    }
    let mut values = Vec::new();
    for p in selected {
        let v = b
            .pcrs
            .get(p)
            .ok_or_else(|| Rejection::PcrDigest(format!("no value for quoted PCR {p}")))?;
        let v: [u8; 32] = hex::decode(v)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Rejection::Malformed(format!("PCR {p} is not 32 bytes of hex")))?;
        values.push((*p, v));
    }
    if bootlog::pcr_digest(values.iter().map(|(_, v)| v)).as_slice() != q.pcr_digest {
        return Err(Rejection::PcrDigest(
            "the PCR values do not hash to the digest the TPM signed".into(),
        ));
    }
    // No log (a host whose firmware exposes none) is an empty log: it explains zero PCRs only.
    let log = match b.event_log.as_deref() {
        None => bootlog::BootLog {
            events: Vec::new(),
            algorithms: vec![(bootlog::ALG_SHA256, 32)],
        },
        Some(text) => {
            let bytes = hex::decode(text)
                .map_err(|_| Rejection::Malformed("boot.event_log is not hex".into()))?;
            bootlog::parse(&bytes).map_err(|e| Rejection::BootLog(e.to_string()))?
        }
    };
    log.check_bindings()
        .map_err(|e| Rejection::BootLog(e.to_string()))?;
    let replayed = log.replay();
    // Warren's PCR is explained by Warren's records, every other one by the UEFI log.
    let warren_pcr = values
        .iter()
        .find(|(p, _)| *p == WARREN_PCR)
        .map(|(_, v)| *v)
        .unwrap_or([0; 32]);
    let warren = selfpcr::check(&b.warren_log, &warren_pcr).map_err(|f| Rejection::SelfPcr {
        code: f.code,
        detail: f.detail,
    })?;
    // With an IMA list, PCR 10 is explained by it: the prefix that replays to the quoted
    // value (the list was read after the quote). Without one, the UEFI log must explain it.
    let ima_facts = match b.ima_log.as_deref() {
        None => None,
        Some(text) => {
            let bytes = hex::decode(text)
                .map_err(|_| Rejection::Malformed("boot.ima_log is not hex".into()))?;
            let entries = ima::parse(&bytes).map_err(|e| Rejection::ImaLog(e.to_string()))?;
            let pcr10 = values
                .iter()
                .find(|(p, _)| *p == IMA_PCR)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    Rejection::ImaReplay("the PCR quote does not cover PCR 10".into())
                })?;
            Some(ima::replay_to(&entries, &pcr10).ok_or_else(|| {
                Rejection::ImaReplay(format!(
                    "no prefix of the {} entries replays to PCR 10 = {}",
                    entries.len(),
                    hex::encode(pcr10)
                ))
            })?)
        }
    };
    for (p, v) in values
        .iter()
        .filter(|(p, _)| *p != WARREN_PCR && !(*p == IMA_PCR && ima_facts.is_some()))
    {
        let r = replayed.get(p).copied().unwrap_or([0; 32]);
        if &r != v {
            return Err(Rejection::BootReplay(format!(
                "PCR {p}: the event log replays to {}, the TPM holds {}",
                hex::encode(r),
                hex::encode(v)
            )));
        }
    }
    Ok((log.facts(), warren, ima_facts, values.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::launch::{
        ImageMeasurement, LaunchConfig, LaunchContent, SpawnProvenance, TREE_FORMAT,
    };
    use crate::evidence::quote::{disclosed, redact_for_subject};

    /// Launch record `recnum` of `name`, with `spawn`, its digest computed as the log does.
    fn record(recnum: u64, name: &str, spawn: Option<SpawnProvenance>) -> Record {
        let config = LaunchConfig {
            memory: None,
            pids: Some(1),
            cpu_micros: None,
            tmpfs_size: 1,
            seccomp_profile: None,
            capabilities: vec![],
            no_new_privs: true,
            landlock_abi: None,
            namespaces: vec![],
            network: "none".into(),
            degraded: vec![],
            mounts: vec![],
            writable_root: None,
            etc_files: None,
        };
        let content = LaunchContent {
            event: EVENT_LAUNCH.into(),
            name: name.into(),
            image: ImageMeasurement {
                kind: "rootfs".into(),
                digest: "blake3:00".into(),
                format: TREE_FORMAT.into(),
                manifest_digest: None,
                digest_source: None,
            },
            command: vec!["/bin/true".into()],
            env: vec![],
            config_digest: config.digest(),
            config,
            uid_base: 0,
            uid_count: 1,
            launched_at: 0,
            spawn,
        };
        Record::launch(recnum, content)
    }

    fn from(parent: &Record, template: &str) -> SpawnProvenance {
        SpawnProvenance {
            parent: parent.content.as_ref().unwrap().name.clone(),
            template: template.into(),
            parent_recnum: Some(parent.recnum),
            parent_digest: Some(format!("sha256:{}", parent.digests[0].digest)),
        }
    }

    #[test]
    fn a_spawn_chain_is_followed_to_the_declared_environment() {
        let front = record(0, "front", None);
        let other = record(1, "other", None);
        let req = record(2, "req-1", Some(from(&front, "req")));
        let sub = record(3, "sub-1", Some(from(&req, "sub")));
        let log = vec![front, other, req, sub];
        assert!(check_provenance(&log).is_ok());
        let found = lineage(&log, 3);
        let chain: Vec<(u64, &str, Option<&str>)> = found
            .iter()
            .map(|a| (a.recnum, a.name.as_str(), a.template.as_deref()))
            .collect();
        assert_eq!(
            chain,
            [
                (3, "sub-1", Some("sub")),
                (2, "req-1", Some("req")),
                (0, "front", None)
            ]
        );
        assert_eq!(
            lineage(&log, 1).len(),
            1,
            "a declared environment is its own lineage"
        );

        // A record that names its spawner only by name: kept, but marked unconfirmed.
        let mut vague = from(&log[0], "req");
        vague.parent_recnum = None;
        vague.parent_digest = None;
        let mut log2 = log.clone();
        log2.push(record(4, "req-2", Some(vague)));
        assert!(check_provenance(&log2).is_ok());
        let l = lineage(&log2, 4);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].unconfirmed_parent.as_deref(), Some("front"));
    }

    #[test]
    fn a_spawn_record_naming_the_wrong_parent_record_is_refused() {
        let front = record(0, "front", None);
        let other = record(1, "other", None);
        let good = from(&front, "req");
        let cases: Vec<(SpawnProvenance, &str)> = vec![
            (
                SpawnProvenance {
                    parent_digest: Some(format!("sha256:{}", "00".repeat(32))),
                    ..good.clone()
                },
                "but that record's digest is",
            ),
            (
                SpawnProvenance {
                    parent: "other".into(),
                    ..good.clone()
                },
                "which launched \"front\"",
            ),
            (
                SpawnProvenance {
                    parent_recnum: Some(9),
                    ..good.clone()
                },
                "not earlier",
            ),
            (
                SpawnProvenance {
                    parent_recnum: Some(1),
                    ..good.clone()
                },
                "which launched \"other\"",
            ),
        ];
        for (p, why) in cases {
            let log = vec![front.clone(), other.clone(), record(2, "req-1", Some(p))];
            let err = check_provenance(&log).unwrap_err();
            assert_eq!(err.code(), "provenance");
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
        // Positive control: the right record passes.
        let log = vec![front, other, record(2, "req-1", Some(good))];
        assert!(check_provenance(&log).is_ok());
    }

    /// The `refused` record of `launch` (identical content but for `event`).
    fn refusal(recnum: u64, launch: &Record) -> Record {
        let mut c = launch.content.clone().unwrap();
        c.event = EVENT_REFUSED.into();
        Record::launch(recnum, c)
    }

    fn register_of(log: &[Record]) -> [u8; 32] {
        replay(
            log.iter()
                .map(|r| r.sha256().unwrap())
                .collect::<Vec<_>>()
                .iter(),
        )
    }

    /// front (0) spawns req-1 (2), which spawns sub-1 (4); other (1) and a refused launch of
    /// `other` (3, paired with 1) and an earlier run of sub-1 are not sub-1's lineage.
    fn family() -> Vec<Record> {
        let front = record(0, "front", None);
        let mut other = record(1, "other", None);
        other.content.as_mut().unwrap().env = vec![("SECRET".into(), "hunter2".into())];
        let other = Record::launch(1, other.content.unwrap());
        let req = record(2, "req-1", Some(from(&front, "req")));
        let other_refused = refusal(3, &other);
        let sub = record(4, "sub-1", Some(from(&req, "sub")));
        let sub_refused = refusal(5, &sub);
        vec![front, other, req, other_refused, sub, sub_refused]
    }

    #[test]
    fn a_subject_quote_keeps_its_lineage_and_refusals_and_redacts_the_rest() {
        let log = family();
        let keep: Vec<u64> = disclosed(&log, 4).into_iter().collect();
        assert_eq!(keep, [0, 2, 4, 5]);
        let redacted = redact_for_subject(log.clone(), 4);
        let text = serde_json::to_string(&redacted).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("\"other\""), "{text}");
        // Positive control: the whole log shows the secret.
        assert!(serde_json::to_string(&log).unwrap().contains("hunter2"));
        // The redacted form: CEL's fields but `content`, the digest kept, the type changed.
        let r1 = serde_json::to_value(&redacted[1]).unwrap();
        assert_eq!(
            r1,
            serde_json::json!({"recnum": 1, "nv_index": NV_INDEX,
                "digests": [{"hashAlg": "sha256", "digest": log[1].digests[0].digest}],
                "content_type": REDACTED_CONTENT_TYPE})
        );
        // It replays to the same register, with the same provenance and lineage.
        let reg = register_of(&log);
        check_log(&redacted, &reg).unwrap();
        check_provenance(&redacted).unwrap();
        assert_eq!(lineage(&redacted, 4), lineage(&log, 4));
        let o = outcomes(&redacted);
        assert_eq!(
            o.iter().map(|o| (o.recnum, o.outcome)).collect::<Vec<_>>(),
            [(0, "ran"), (2, "ran"), (4, "refused")]
        );
        // A declared environment's quote keeps only its own record.
        let keep: Vec<u64> = disclosed(&log, 1).into_iter().collect();
        assert_eq!(keep, [1, 3]);
    }

    #[test]
    fn a_redacted_record_is_replayed_by_its_digest_and_a_changed_digest_fails() {
        let log = family();
        let reg = register_of(&log);
        let mut bad = redact_for_subject(log.clone(), 4);
        bad[1].digests[0].digest = "00".repeat(32);
        assert_eq!(check_log(&bad, &reg).unwrap_err().code(), "log-replay");
        // Content under the redacted type, no content under the launch type, another type
        // without content: malformed.
        let mut with_content = log.clone();
        with_content[1].content_type = REDACTED_CONTENT_TYPE.into();
        let mut no_content = redact_for_subject(log.clone(), 4);
        no_content[1].content_type = CONTENT_TYPE.into();
        let mut other_type = redact_for_subject(log.clone(), 4);
        other_type[1].content_type = "warren_secret".into();
        for l in [with_content, no_content, other_type] {
            assert_eq!(check_log(&l, &reg).unwrap_err().code(), "malformed");
        }
        // Positive control.
        check_log(&redact_for_subject(log, 4), &reg).unwrap();
    }

    #[test]
    fn a_redacted_spawner_record_is_refused() {
        let log = family();
        let mut bad = redact_for_subject(log.clone(), 4);
        bad[2] = bad[2].redacted();
        assert_eq!(check_provenance(&bad).unwrap_err().code(), "redacted");
        check_provenance(&redact_for_subject(log, 4)).unwrap();
    }

    #[test]
    fn golden_values_over_a_redacted_log_are_refused_not_passed() {
        let log = family();
        let redacted = redact_for_subject(log.clone(), 4);
        let listing = Policy::from_toml("[env.other]\ncommand = [\"/bin/true\"]\n").unwrap();
        let strict = Policy::from_toml("strict = true\n[env.sub-1]\n").unwrap();
        let empty = Policy::default();
        for p in [&listing, &strict] {
            let err = check_golden(&redacted, p, None).unwrap_err();
            assert_eq!(err.code(), "redacted", "{err}");
            // Control: a subject quote's golden values concern its own record only.
            check_golden(&redacted, p, Some(4)).unwrap();
        }
        check_golden(&log, &listing, None).unwrap();
        check_golden(&redacted, &empty, None).unwrap();
        check_golden(&redacted, &listing, Some(4)).unwrap();
    }
}
