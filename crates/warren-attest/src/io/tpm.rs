//! The TPM root of trust, reached through the `warren-tpm` agent: a separate, dynamically
//! linked binary (tpm2-tss exists only as shared libraries on Debian, `warren` is linked
//! statically). Each operation runs the agent once: `warren-tpm --tpm SPEC --dir DIR OP ARGS`,
//! which prints one JSON object (docs/attestation.md, "The agent").

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::evidence::kind::RootKind;
use crate::evidence::tpm_wire::ak_spki_of;
use crate::io::root::{Evidence, PcrQuote, RootError, RootOfTrust};
use crate::io::selfpcr;

/// The last argument of the agent's `extend` and `quote` when the log already holds records:
/// the agent then first checks that the anchor has been written since the TPM's last reset.
const CONTINUES: &str = "continues";
/// How the agent's error begins when that check fails.
const ANCHOR_RESET: &str = "anchor-reset";

/// Where the `warren-tpm` agent is: `WARREN_TPM_AGENT`, else next to the running binary.
pub fn agent_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WARREN_TPM_AGENT") {
        return Some(PathBuf::from(p));
    }
    let p = std::env::current_exe().ok()?.with_file_name("warren-tpm");
    p.is_file().then_some(p)
}

/// The TPM root.
#[derive(Debug)]
pub struct TpmRoot {
    dir: PathBuf,
    spec: String,
    agent: PathBuf,
}

impl TpmRoot {
    /// The TPM named by `spec` for the attestation directory `dir`, through `agent` (default:
    /// [`agent_path`]).
    pub fn new(dir: &Path, spec: &str, agent: Option<&Path>) -> Result<TpmRoot, RootError> {
        // WARREN_TPM_AGENT wins over the path recorded at `attest init`.
        let agent = std::env::var_os("WARREN_TPM_AGENT")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| agent.map(Path::to_owned))
            .or_else(agent_path)
            .ok_or_else(|| {
                RootError::Tpm(
                    "the warren-tpm agent was not found next to warren (or in WARREN_TPM_AGENT)"
                        .into(),
                )
            })?;
        Ok(TpmRoot {
            dir: dir.to_owned(),
            spec: spec.to_owned(),
            agent,
        })
    }

    /// Runs one agent operation.
    pub fn call(&self, args: &[&str]) -> Result<Value, RootError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| RootError::Io {
            what: "create",
            path: self.dir.clone(),
            source,
        })?;
        let out = Command::new(&self.agent)
            .arg("--tpm")
            .arg(&self.spec)
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .map_err(|source| RootError::Io {
                what: "run the tpm agent",
                path: self.agent.clone(),
                source,
            })?;
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| {
            RootError::Tpm(format!(
                "the agent's answer to {} is not JSON: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(RootError::Tpm(e.to_owned()));
        }
        Ok(v)
    }

    /// Creates the attestation key and the anchor if they do not exist (idempotent). Warren
    /// measures itself first, so a new key is bound to the state after that.
    pub fn provision(&self) -> Result<Value, RootError> {
        self.ensure_measured()?;
        self.call(&["provision"])
    }

    /// Removes the attestation key and the anchor and creates new ones, the key bound to the
    /// PCRs as they are now (after Warren measured itself).
    pub fn reprovision(&self) -> Result<Value, RootError> {
        self.ensure_measured()?;
        self.call(&["reprovision"])
    }

    /// Warren measures itself into PCR 15 if nothing has been extended into it since the TPM
    /// was reset, and records what it extended (`<dir>/self.jsonl`). Returns whether it did.
    /// Serialised between Warren processes by `<dir>/self.lock`; the agent re-checks that the
    /// PCR is still zero in the same connection as the extensions.
    pub fn ensure_measured(&self) -> Result<bool, RootError> {
        let lock_path = self.dir.join("self.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| RootError::Io {
                what: "open",
                path: lock_path.clone(),
                source,
            })?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            RootError::Io {
                what: "lock",
                path: lock_path.clone(),
                source: e.into(),
            }
        })?;
        let v = self.call(&["warren-pcr"])?;
        if Self::hex(&v, "value")?.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        let config = selfpcr::config_text(&self.agent, &self.dir);
        let records = selfpcr::records(&self.agent, &config)?;
        let pending = selfpcr::write_pending(&self.dir, &records)?;
        let digests: Vec<String> = records
            .iter()
            .map(|r| r.digests[0].digest.clone())
            .collect();
        let mut args = vec!["measure-self"];
        args.extend(digests.iter().map(String::as_str));
        if let Err(e) = self.call(&args) {
            let _ = std::fs::remove_file(&pending);
            return Err(e);
        }
        selfpcr::commit(&self.dir, &pending)?;
        Ok(true)
    }

    /// Runs `op`; if the TPM refused the attestation key because Warren has not measured
    /// itself since the TPM was reset (PCR 15 still zero), measures and runs it once more.
    /// `<dir>/events.epoch`: the TPM's reset and restart counts (`R.S`) when the current
    /// log's records began to be extended into the anchor.
    fn epoch_path(&self) -> PathBuf {
        self.dir.join("events.epoch")
    }

    fn log_epoch(&self) -> Option<String> {
        let s = std::fs::read_to_string(self.epoch_path()).ok()?;
        Some(s.trim().to_owned()).filter(|s| !s.is_empty())
    }

    fn set_log_epoch(&self, startup: &str) -> Result<(), RootError> {
        let path = self.epoch_path();
        std::fs::write(&path, format!("{startup}\n")).map_err(|source| RootError::Io {
            what: "write",
            path,
            source,
        })
    }

    /// Given the agent's error for an operation with `continues`: `Ok(true)` when the anchor
    /// is unwritten because the TPM started up anew since the log began (its reset and restart
    /// counts differ from the log's, or the log predates the record of them), `Ok(false)` when
    /// it is unwritten in the same start-up (deleted and defined again), the error otherwise.
    fn anchor_cleared(&self, e: RootError) -> Result<bool, RootError> {
        let RootError::Tpm(msg) = &e else {
            return Err(e);
        };
        let Some(rest) = msg.strip_prefix(ANCHOR_RESET) else {
            return Err(e);
        };
        let now = rest
            .trim_start()
            .strip_prefix("startup=")
            .and_then(|r| r.split(':').next())
            .map(str::trim)
            .filter(|n| !n.is_empty());
        match (now, self.log_epoch()) {
            (Some(now), Some(then)) => Ok(now != then),
            (Some(_), None) => Ok(true),
            (None, _) => Err(e),
        }
    }

    /// Agent operation `op ARG` for a log that holds `records` records: with `continues` when
    /// it holds any. An anchor unwritten since a new TPM start-up is
    /// [`RootError::AnchorReset`] (the log starts anew); one unwritten in the same start-up
    /// (deleted and defined again) gets the operation without the check.
    fn call_continuing(&self, op: &str, arg: &str, records: u64) -> Result<Value, RootError> {
        if records == 0 {
            return self.call_measured(&[op, arg]);
        }
        match self.call_measured(&[op, arg, CONTINUES]) {
            Err(e) => match self.anchor_cleared(e)? {
                false => self.call_measured(&[op, arg]),
                true => Err(RootError::AnchorReset),
            },
            Ok(v) => Ok(v),
        }
    }

    fn call_measured(&self, args: &[&str]) -> Result<Value, RootError> {
        match self.call(args) {
            Err(RootError::Tpm(e)) if e.contains("pcr-state") => {
                if self.ensure_measured()? {
                    self.call(args)
                } else {
                    Err(RootError::Tpm(e))
                }
            }
            other => other,
        }
    }

    fn hex(v: &Value, field: &str) -> Result<Vec<u8>, RootError> {
        v.get(field)
            .and_then(Value::as_str)
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| RootError::Tpm(format!("the agent's answer has no {field}")))
    }
}

/// The agent's `pcrs` object: PCR number to hex value.
fn pcr_values(v: &Value) -> Result<std::collections::BTreeMap<u32, [u8; 32]>, RootError> {
    let bad = || RootError::Tpm("the agent's pcrs are not PCR numbers with 32-byte values".into());
    let obj = v.get("pcrs").and_then(Value::as_object).ok_or_else(bad)?;
    obj.iter()
        .map(|(k, x)| {
            let n: u32 = k.parse().map_err(|_| bad())?;
            let d: [u8; 32] = x
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .and_then(|d| d.try_into().ok())
                .ok_or_else(bad)?;
            Ok((n, d))
        })
        .collect()
}

/// A DER ECDSA signature from the TPM's `r` and `s`.
fn der_signature(r: &[u8], s: &[u8]) -> Result<Vec<u8>, RootError> {
    let pad = |v: &[u8]| -> Result<[u8; 32], RootError> {
        if v.len() > 32 {
            return Err(RootError::Tpm(
                "an ECDSA scalar is longer than 32 bytes".into(),
            ));
        }
        let mut a = [0u8; 32];
        a[32 - v.len()..].copy_from_slice(v);
        Ok(a)
    };
    let sig = p256::ecdsa::Signature::from_scalars(pad(r)?, pad(s)?)
        .map_err(|e| RootError::Tpm(format!("bad ECDSA signature: {e}")))?;
    Ok(sig.to_der().as_bytes().to_vec())
}

impl RootOfTrust for TpmRoot {
    fn kind(&self) -> RootKind {
        RootKind::Tpm
    }

    fn extend(&mut self, digest: &[u8; 32]) -> Result<(), RootError> {
        self.extend_after(digest, 0)
    }

    fn extend_after(&mut self, digest: &[u8; 32], earlier: u64) -> Result<(), RootError> {
        // An anchor cleared without a TPM reset is extended all the same, so that the log,
        // which no longer replays to it, shows the reset to every verifier.
        let v = self.call_continuing("extend", &hex::encode(digest), earlier)?;
        // The TPM start-up the log's records are extended in: the first record of a log (and
        // the first of a log older than the file) notes it.
        if let Some(startup) = v.get("startup").and_then(Value::as_str) {
            if earlier == 0 || self.log_epoch().is_none() {
                self.set_log_epoch(startup)?;
            }
        }
        Ok(())
    }

    fn read(&mut self) -> Result<[u8; 32], RootError> {
        let v = self.call(&["read"])?;
        Self::hex(&v, "value")?
            .try_into()
            .map_err(|_| RootError::Tpm("the anchor is not 32 bytes".into()))
    }

    fn quote(&mut self, qualifying: &[u8; 32]) -> Result<Evidence, RootError> {
        self.quote_after(qualifying, 0)
    }

    fn quote_after(&mut self, qualifying: &[u8; 32], records: u64) -> Result<Evidence, RootError> {
        // An anchor cleared without a TPM reset: the quote fails on the unwritten anchor.
        let v = self.call_continuing("quote", &hex::encode(qualifying), records)?;
        Ok(Evidence {
            attest: Self::hex(&v, "attest")?,
            signature: der_signature(&Self::hex(&v, "r")?, &Self::hex(&v, "s")?)?,
            ak_public: Some(Self::hex(&v, "ak_public")?),
            nv_public: Some(Self::hex(&v, "nv_public")?),
            boot: Some(PcrQuote {
                attest: Self::hex(&v, "pcr_attest")?,
                signature: der_signature(&Self::hex(&v, "pcr_r")?, &Self::hex(&v, "pcr_s")?)?,
                pcrs: pcr_values(&v)?,
                warren_log: selfpcr::read_log(&self.dir)?,
            }),
        })
    }

    fn ak_spki(&mut self) -> Result<Vec<u8>, RootError> {
        let v = self.call(&["provision"])?;
        let public = Self::hex(&v, "ak_public")?;
        ak_spki_of(&public).map_err(RootError::Tpm)
    }
}
