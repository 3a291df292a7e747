//! The event log's record (TCG Canonical Event Log JSON) and its register arithmetic:
//! `reg₀ = 0³²`, `regₙ = SHA-256(regₙ₋₁ ‖ digestₙ)`, exactly as a TPM extends a SHA-256 NV
//! extend index or PCR.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::evidence::launch::LaunchContent;

/// The CEL `content_type` of a Warren launch record (a Warren-specific type: CEL's own content
/// types cover firmware, IMA and systemd events, none of which fits an environment launch).
pub const CONTENT_TYPE: &str = "warren_launch";

/// The CEL `content_type` of a **redacted** record in a quote: a record whose `content` was left
/// out (only its digests are kept), so that a quote answered to a program inside an environment
/// does not show other environments' launches. Never written to the log itself; a verifier
/// extends its digest as stated.
pub const REDACTED_CONTENT_TYPE: &str = "warren_redacted";

/// The NV index handle that anchors the log in a TPM (in the owner range, `0x01xxxxxx`).
pub const NV_INDEX: u32 = 0x0157_4152; // "WAR"

/// One CEL record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The record's number, from 0, with no gaps.
    pub recnum: u64,
    /// The NV index the record is extended into (with the software root: the same number,
    /// naming the software register).
    pub nv_index: u32,
    /// The record's digests (Warren writes exactly one, SHA-256).
    pub digests: Vec<DigestEntry>,
    /// [`CONTENT_TYPE`], or [`REDACTED_CONTENT_TYPE`] for a redacted record in a quote.
    pub content_type: String,
    /// What was launched; absent from a redacted record (`content_type` [`REDACTED_CONTENT_TYPE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<LaunchContent>,
}

/// One digest of a record, CEL's `{"hashAlg": ..., "digest": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestEntry {
    /// `sha256`.
    #[serde(rename = "hashAlg")]
    pub hash_alg: String,
    /// Lowercase hex.
    pub digest: String,
}

impl Record {
    /// A record of `content` with its digest, as the log writes it.
    pub fn launch(recnum: u64, content: LaunchContent) -> Record {
        Record {
            recnum,
            nv_index: NV_INDEX,
            digests: vec![DigestEntry {
                hash_alg: "sha256".into(),
                digest: hex::encode(content_digest(&content)),
            }],
            content_type: CONTENT_TYPE.into(),
            content: Some(content),
        }
    }

    /// The same record without its content: its number, index and digests, and the content
    /// type [`REDACTED_CONTENT_TYPE`].
    pub fn redacted(&self) -> Record {
        Record {
            recnum: self.recnum,
            nv_index: self.nv_index,
            digests: self.digests.clone(),
            content_type: REDACTED_CONTENT_TYPE.into(),
            content: None,
        }
    }

    /// Whether the record is a redacted one (no content).
    pub fn is_redacted(&self) -> bool {
        self.content.is_none()
    }

    /// The content's `event` and environment name, when the record has content.
    fn event_and_name(&self) -> Option<(&str, &str)> {
        self.content
            .as_ref()
            .map(|c| (c.event.as_str(), c.name.as_str()))
    }

    /// Whether this is the `launch` record of environment `name`.
    pub fn is_launch_of(&self, name: &str) -> bool {
        self.event_and_name() == Some((EVENT_LAUNCH, name))
    }

    /// The SHA-256 digest the record claims, if it has one that parses.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        let d = self.digests.iter().find(|d| d.hash_alg == "sha256")?;
        hex::decode(&d.digest).ok()?.try_into().ok()
    }
}

/// The digest of a record's content.
pub fn content_digest(content: &LaunchContent) -> [u8; 32] {
    Sha256::digest(content.canonical()).into()
}

/// One extension step: `SHA-256(register || digest)`.
pub fn extend(register: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(register);
    h.update(digest);
    h.finalize().into()
}

/// The register value a sequence of record digests produces.
pub fn replay<'a>(digests: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    digests.into_iter().fold([0; 32], |r, d| extend(&r, d))
}

/// `content.event` of a launch record: the environment was measured and its launcher went on
/// towards `execve`.
pub const EVENT_LAUNCH: &str = "launch";

/// `content.event` of an outcome record: the launch measured in the matching `launch` record
/// (the same content but for `event`) failed before its workload ran; it was refused.
pub const EVENT_REFUSED: &str = "refused";

/// What became of one launch record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The launch record.
    pub recnum: u64,
    /// The environment.
    pub name: String,
    /// `ran` (no refusal recorded: the launcher reached `execve`) or `refused` (a later
    /// record says the launch failed after it was measured, and the workload never ran).
    pub outcome: &'static str,
    /// The refusal record, if any.
    pub refused_by: Option<u64>,
}

/// The outcome of every launch record with content: a `refused` record refers to the latest
/// earlier `launch` record whose content is identical but for `event`. Redacted records have
/// no outcome (nothing says what they are).
pub fn outcomes(records: &[Record]) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = Vec::new();
    for r in records {
        let Some(content) = r.content.as_ref() else {
            continue;
        };
        match content.event.as_str() {
            EVENT_LAUNCH => out.push(Outcome {
                recnum: r.recnum,
                name: content.name.clone(),
                outcome: "ran",
                refused_by: None,
            }),
            EVENT_REFUSED => {
                let mut as_launch = content.clone();
                as_launch.event = EVENT_LAUNCH.into();
                let target = records
                    .iter()
                    .filter(|l| l.recnum < r.recnum && l.content.as_ref() == Some(&as_launch))
                    .map(|l| l.recnum)
                    .next_back();
                if let Some(o) = out
                    .iter_mut()
                    .find(|o| Some(o.recnum) == target && o.refused_by.is_none())
                {
                    o.outcome = "refused";
                    o.refused_by = Some(r.recnum);
                }
            }
            _ => {}
        }
    }
    out
}
