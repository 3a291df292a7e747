//! The append-only event log: one launch record per line, in the TCG Canonical Event Log (CEL)
//! JSON encoding, under `<state>/attest/events.jsonl`.
//!
//! Every record carries the SHA-256 of its content's canonical bytes; the root of trust's
//! register is extended with it (`reg = SHA-256(reg || digest)`, starting from 32 zero bytes),
//! exactly as a TPM extends a SHA-256 NV extend index or PCR. Appending takes an exclusive
//! `flock` on `<state>/attest/lock`, so the launchers of parallel launches and the kernel
//! daemon never interleave records, and the record and its extension happen under one lock.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::measure::LaunchContent;
use crate::root::{RootError, RootOfTrust};

pub use crate::evidence::record::{
    CONTENT_TYPE, DigestEntry, NV_INDEX, Record, content_digest, extend, replay,
};

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file of the log could not be opened, read or written.
    #[error("event log {}: {what}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A line of the log is not a record.
    #[error("event log {}: line {line} is not a record", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The root of trust refused to extend or read.
    #[error("root of trust")]
    Root(#[from] RootError),
}

/// The event log of one state directory.
#[derive(Debug, Clone)]
pub struct EventLog {
    dir: PathBuf,
}

/// An exclusive hold on the attestation directory (the log, its register and the key).
#[derive(Debug)]
pub struct LogLock {
    _file: File,
}

impl EventLog {
    /// The log under `<state>/attest` (created, mode 0700, when first written).
    pub fn new(state_dir: &Path) -> Self {
        EventLog {
            dir: state_dir.join("attest"),
        }
    }

    /// The attestation directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    fn io(&self, path: PathBuf, what: &'static str) -> impl FnOnce(io::Error) -> LogError {
        move |source| LogError::Io { path, what, source }
    }

    /// Creates the directory (0700) if needed.
    pub fn ensure_dir(&self) -> Result<(), LogError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(self.io(self.dir.clone(), "create the directory"))
    }

    /// Takes the exclusive lock.
    pub fn lock(&self) -> Result<LogLock, LogError> {
        self.ensure_dir()?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(self.io(path.clone(), "open the lock"))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| self.io(path, "lock")(e.into()))?;
        Ok(LogLock { _file: file })
    }

    /// Every record, in order. A missing log is an empty one.
    pub fn records(&self) -> Result<Vec<Record>, LogError> {
        let path = self.path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(path, "open")(e)),
        };
        let mut out = Vec::new();
        for (i, line) in io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(self.io(path.clone(), "read"))?;
            if line.is_empty() {
                continue;
            }
            let rec = serde_json::from_str(&line).map_err(|source| LogError::Malformed {
                path: path.clone(),
                line: i + 1,
                source,
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Appends a record for `content` and extends `root` with its digest, under the lock. If
    /// the extension fails the record is removed again, so the log never runs ahead of the
    /// register.
    pub fn append(
        &self,
        content: LaunchContent,
        root: &mut dyn RootOfTrust,
    ) -> Result<Record, LogError> {
        let _lock = self.lock()?;
        let path = self.path();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(self.io(path.clone(), "open"))?;
        let start = file
            .seek(SeekFrom::End(0))
            .map_err(self.io(path.clone(), "seek"))?;
        let recnum = self.count_locked(start)?;
        let digest = content_digest(&content);
        let record = Record {
            recnum,
            nv_index: NV_INDEX,
            digests: vec![DigestEntry {
                hash_alg: "sha256".into(),
                digest: hex::encode(digest),
            }],
            content_type: CONTENT_TYPE.into(),
            content,
        };
        let mut line = serde_json::to_vec(&record).unwrap_or_default();
        line.push(b'\n');
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(self.io(path.clone(), "append"))?;
        if let Err(e) = root.extend(&digest) {
            let _ = file.set_len(start);
            return Err(e.into());
        }
        let count = self.dir.join("events.count");
        let _ = std::fs::write(
            &count,
            format!("{} {}\n", recnum + 1, start + line.len() as u64),
        );
        Ok(record)
    }

    /// How many records a log of `len` bytes holds: from the count file when it matches the
    /// length, else by counting lines.
    fn count_locked(&self, len: u64) -> Result<u64, LogError> {
        if len == 0 {
            return Ok(0);
        }
        if let Ok(s) = std::fs::read_to_string(self.dir.join("events.count")) {
            let mut it = s.split_whitespace().map(|v| v.parse::<u64>());
            if let (Some(Ok(n)), Some(Ok(l))) = (it.next(), it.next()) {
                if l == len {
                    return Ok(n);
                }
            }
        }
        let bytes = std::fs::read(self.path()).map_err(self.io(self.path(), "read"))?;
        Ok(bytes.iter().filter(|b| **b == b'\n').count() as u64)
    }
}
