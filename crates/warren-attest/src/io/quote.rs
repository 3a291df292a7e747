//! Quotes: the root's signature over the register and the verifier's nonce, with the event log
//! that explains the register and the certificate of the key that signed.
//!
//! The root signs a 32-byte *qualifying* value, not the nonce alone:
//!
//! ```text
//! SHA-256( "warren-quote/1\0" || u32 len(nonce) || nonce
//!          || 0x00                                          (a host quote)
//!          || 0x01 || u64 recnum || record digest (32) || u32 len(data) || data )  (a subject)
//! ```
//!
//! so a quote for a program inside an environment binds that program's own launch record and
//! the data it chose (a public key, say) to the verifier's nonce.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::log::{EventLog, LogError, Record};
use crate::root::{RootConfig, RootError, RootKind};

/// The format tag of a quote file.
pub const FORMAT: &str = "warren-quote/1";

/// The most caller data a subject quote may bind.
pub const MAX_CALLER_DATA: usize = 1024;

/// A quote as written by `warren attest quote` and returned by the kernel's `Attest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quote {
    /// [`FORMAT`].
    pub format: String,
    /// The root of trust that signed.
    pub root: RootKind,
    /// The nonce the verifier chose, hex.
    pub nonce: String,
    /// The environment (and its launch record) the quote is about, for a subject quote.
    pub subject: Option<Subject>,
    /// The signed bytes, hex.
    pub attest: String,
    /// The signature, hex (ECDSA P-256 SHA-256, DER).
    pub signature: String,
    /// The attestation key that signed, hex: its `TPMT_PUBLIC` (tpm) or DER
    /// `SubjectPublicKeyInfo` (software).
    pub ak_public: Option<String>,
    /// The NV index's `TPMS_NV_PUBLIC`, hex (tpm only).
    pub nv_public: Option<String>,
    /// The attestation key's certificate from the Privacy CA (PEM), if the host is enrolled.
    pub ak_certificate: Option<String>,
    /// The event log at the time of the quote.
    pub event_log: Vec<Record>,
}

/// What a subject quote is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// The environment's name.
    pub env: String,
    /// Its launch record.
    pub recnum: u64,
    /// The data it bound, hex.
    pub data: String,
}

/// Why a quote could not be made.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The root failed.
    #[error(transparent)]
    Root(#[from] RootError),
    /// No launch record for the environment.
    #[error("no launch record for environment {0:?} in the event log")]
    NoRecord(String),
    /// The caller data is too long.
    #[error("caller data is {0} bytes; at most {MAX_CALLER_DATA}")]
    DataTooLong(usize),
    /// The certificate file could not be read.
    #[error("read the attestation key certificate")]
    Certificate(#[source] std::io::Error),
}

/// The qualifying value (see the module documentation).
pub fn qualifying(nonce: &[u8], subject: Option<(u64, &[u8; 32], &[u8])>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"warren-quote/1\0");
    h.update((nonce.len() as u32).to_le_bytes());
    h.update(nonce);
    match subject {
        None => h.update([0]),
        Some((recnum, digest, data)) => {
            h.update([1]);
            h.update(recnum.to_le_bytes());
            h.update(digest);
            h.update((data.len() as u32).to_le_bytes());
            h.update(data);
        }
    }
    h.finalize().into()
}

/// The host's attestation key certificate, installed by enrollment.
pub fn certificate_path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("attest").join("ak.crt")
}

/// Makes a quote over the state directory's log and root. With `env`, the quote's subject is
/// the latest launch record of that environment and `data`.
pub fn make_quote(
    state_dir: &Path,
    nonce: &[u8],
    env: Option<&str>,
    data: &[u8],
) -> Result<Quote, QuoteError> {
    if data.len() > MAX_CALLER_DATA {
        return Err(QuoteError::DataTooLong(data.len()));
    }
    let config = RootConfig::resolve(state_dir)?;
    let mut root = config.open(state_dir)?;
    let log = EventLog::new(state_dir);
    // The log and the register are read under the lock that appends take, so they agree.
    let lock = log.lock()?;
    let records = log.records()?;
    let subject = match env {
        None => None,
        Some(name) => {
            let rec = records
                .iter()
                .rev()
                .find(|r| r.content.name == name)
                .ok_or_else(|| QuoteError::NoRecord(name.to_owned()))?;
            let digest = rec.sha256().unwrap_or([0; 32]);
            Some((rec.recnum, digest))
        }
    };
    let q = qualifying(nonce, subject.as_ref().map(|(n, d)| (*n, d, data)));
    let evidence = root.quote(&q)?;
    drop(lock);
    let cert = match std::fs::read_to_string(certificate_path(state_dir)) {
        Ok(c) => Some(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(QuoteError::Certificate(e)),
    };
    Ok(Quote {
        format: FORMAT.into(),
        root: root.kind(),
        nonce: hex::encode(nonce),
        subject: subject.map(|(recnum, _)| Subject {
            env: env.unwrap_or_default().to_owned(),
            recnum,
            data: hex::encode(data),
        }),
        attest: hex::encode(&evidence.attest),
        signature: hex::encode(&evidence.signature),
        ak_public: evidence.ak_public.map(hex::encode),
        nv_public: evidence.nv_public.map(hex::encode),
        ak_certificate: cert,
        event_log: records,
    })
}
