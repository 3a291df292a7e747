//! Warren measures itself: the first Warren process that uses a TPM root after a TPM reset
//! (`warren daemon` at start, `warren attest init`, or the first launch or quote) extends PCR 15
//! ([`crate::evidence::selfpcr::WARREN_PCR`]) with the SHA-256 of its own executable
//! (`/proc/self/exe`), of the `warren-tpm` agent, and of its attestation configuration, and
//! writes the records to `<state>/attest/self.jsonl` for verifiers to replay. The attestation
//! key is bound to the PCR state after this (docs/attestation.md, "Warren's PCR").

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::evidence::selfpcr::SelfRecord;
use crate::io::root::RootError;

/// The records of Warren's PCR for the attestation directory `dir`.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("self.jsonl")
}

/// The records written when Warren last measured itself (none when it never did).
pub fn read_log(dir: &Path) -> Result<Vec<SelfRecord>, RootError> {
    let path = log_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RootError::Io {
                what: "read",
                path,
                source,
            });
        }
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| RootError::Malformed {
                path: path.clone(),
                detail: e.to_string(),
            })
        })
        .collect()
}

fn sha256_file(path: &Path) -> Result<[u8; 32], RootError> {
    let io = |source| RootError::Io {
        what: "measure",
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// The configuration text Warren measures: what decides how its attestations are made (the
/// root, the agent that holds the key's authValue, the attestation directory with the log and
/// the key's authValue), as compact JSON with the keys in this order. How the TPM is reached
/// is left out: the quote itself proves which TPM answered.
pub fn config_text(agent: &Path, dir: &Path) -> String {
    let s = |v: &str| serde_json::to_string(v).unwrap_or_default();
    format!(
        "{{\"root\":\"tpm\",\"agent\":{},\"attest_dir\":{}}}",
        s(&agent.display().to_string()),
        s(&dir.display().to_string())
    )
}

/// The records of this process measuring itself: its executable as running
/// (`/proc/self/exe`, whatever has since been written at its path), the agent, the
/// configuration.
pub fn records(agent: &Path, config: &str) -> Result<Vec<SelfRecord>, RootError> {
    let exe_path = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/proc/self/exe".into());
    Ok(vec![
        SelfRecord::new(
            "binary",
            sha256_file(Path::new("/proc/self/exe"))?,
            Some(exe_path),
            None,
        ),
        SelfRecord::new(
            "agent",
            sha256_file(agent)?,
            Some(agent.display().to_string()),
            None,
        ),
        SelfRecord::config(config),
    ])
}

/// Writes `records` to a temporary file next to the log; [`commit`] renames it into place
/// once the PCR is extended.
pub fn write_pending(dir: &Path, records: &[SelfRecord]) -> Result<PathBuf, RootError> {
    let tmp = dir.join(format!("self.jsonl.{}", std::process::id()));
    let io = |source| RootError::Io {
        what: "write",
        path: tmp.clone(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    for r in records {
        let mut line = serde_json::to_vec(r).map_err(|e| RootError::Tpm(e.to_string()))?;
        line.push(b'\n');
        f.write_all(&line).map_err(io)?;
    }
    f.sync_data().map_err(io)?;
    Ok(tmp)
}

/// Renames the pending log into place.
pub fn commit(dir: &Path, pending: &Path) -> Result<(), RootError> {
    std::fs::rename(pending, log_path(dir)).map_err(|source| RootError::Io {
        what: "rename",
        path: pending.to_owned(),
        source,
    })
}
