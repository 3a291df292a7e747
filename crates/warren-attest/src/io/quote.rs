//! Making a quote: reading the log and the register under the log's lock, having the root sign
//! them with the qualifying value (`crate::evidence::quote::qualifying`), and attaching the
//! event log and the AK certificate.

use std::path::Path;

pub use crate::evidence::quote::{
    BootEvidence, FORMAT, MAX_CALLER_DATA, Quote, Subject, qualifying,
};
use crate::evidence::record::EVENT_LAUNCH;
use crate::io::config::{DEFAULT_BOOT_LOG, DEFAULT_IMA_LOG, RootConfig};
use crate::io::log::{EventLog, LogError};
use crate::io::root::RootError;

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
    /// The UEFI event log could not be read.
    #[error("read the UEFI event log {}", path.display())]
    BootLog {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file could not be read.
    #[error("read the attestation key certificate")]
    Certificate(#[source] std::io::Error),
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
    log.repair_locked(root.as_mut())?;
    let mut anew = false;
    let (records, subject, evidence) = loop {
        let records = log.records()?;
        let subject = match env {
            None => None,
            Some(name) => {
                let rec = records
                    .iter()
                    .rev()
                    .find(|r| r.content.name == name && r.content.event == EVENT_LAUNCH)
                    .ok_or_else(|| QuoteError::NoRecord(name.to_owned()))?;
                let digest = rec.sha256().unwrap_or([0; 32]);
                Some((rec.recnum, digest))
            }
        };
        let q = qualifying(nonce, subject.as_ref().map(|(n, d)| (*n, d, data)));
        match root.quote_after(&q, records.len() as u64) {
            Ok(evidence) => break (records, subject, evidence),
            // The TPM was reset since the log's last record: its anchor holds none of them.
            // The log starts again (the old one kept beside it), as the next launch would.
            Err(RootError::AnchorReset) if !anew => {
                log.start_anew_locked()?;
                anew = true;
            }
            Err(e) => return Err(e.into()),
        }
    };
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
        boot: match evidence.boot {
            None => None,
            Some(b) => Some(BootEvidence {
                attest: hex::encode(&b.attest),
                signature: hex::encode(&b.signature),
                pcrs: b.pcrs.iter().map(|(n, v)| (*n, hex::encode(v))).collect(),
                event_log: read_boot_log(&config)?.map(hex::encode),
                warren_log: b.warren_log,
                // Read after the quote: the list can only have grown since, and a verifier
                // replays the prefix that gives the quoted PCR 10.
                ima_log: read_optional(config.ima_log.as_deref(), DEFAULT_IMA_LOG)?
                    .map(hex::encode),
            }),
        },
    })
}

/// A file the configuration names (which must exist), else `default` if it exists.
fn read_optional(named: Option<&Path>, default: &str) -> Result<Option<Vec<u8>>, QuoteError> {
    let path = named.unwrap_or(Path::new(default)).to_owned();
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if named.is_none() && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(QuoteError::BootLog { path, source }),
    }
}

/// The UEFI event log the configuration names; `None` when the default one does not exist (a
/// host whose firmware exposes none). A log named explicitly must exist.
fn read_boot_log(config: &RootConfig) -> Result<Option<Vec<u8>>, QuoteError> {
    let (path, named) = match &config.boot_log {
        Some(p) => (p.clone(), true),
        None => (Path::new(DEFAULT_BOOT_LOG).to_owned(), false),
    };
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(QuoteError::BootLog { path, source }),
    }
}
