//! Warren's own PCR ([`WARREN_PCR`], 15): the records of what Warren extended into it when it
//! first ran after a TPM reset (its binary, its TPM agent, its attestation configuration),
//! their replay against the quoted PCR, what they say, and the `[warren]` policy. Pure: the
//! records are written by `crate::io::selfpcr`.
//!
//! A record is CEL-shaped, like the launch records, but names a PCR instead of an NV index:
//!
//! ```json
//! {"pcr":15,"digests":[{"hashAlg":"sha256","digest":"…"}],"content_type":"warren_self",
//!  "content":{"what":"binary","path":"/usr/local/bin/warren"}}
//! ```
//!
//! For `binary` and `agent` the digest is the SHA-256 of the file's bytes (so a policy pins
//! the same value `sha256sum` prints) and `path` is a description, not bound; for `config` the
//! digest is the SHA-256 of `content.config`, which the verifier checks.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::evidence::record::{DigestEntry, extend};
pub use crate::evidence::tpm_wire::WARREN_PCR;

/// The content type of a self-measurement record.
pub const CONTENT_TYPE: &str = "warren_self";

/// What a record measures, in the order Warren extends them.
pub const KINDS: [&str; 3] = ["binary", "agent", "config"];

/// One record of Warren's PCR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfRecord {
    /// [`WARREN_PCR`].
    pub pcr: u32,
    /// Exactly one SHA-256 digest.
    pub digests: Vec<DigestEntry>,
    /// [`CONTENT_TYPE`].
    pub content_type: String,
    /// What was measured.
    pub content: SelfContent,
}

/// What a self-measurement record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfContent {
    /// One of [`KINDS`].
    pub what: String,
    /// `binary`, `agent`: the file as the measuring process named it (a description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `config`: the configuration text; its SHA-256 is the record's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl SelfRecord {
    /// A record of `what` with `digest`.
    pub fn new(what: &str, digest: [u8; 32], path: Option<String>, config: Option<String>) -> Self {
        SelfRecord {
            pcr: WARREN_PCR,
            digests: vec![DigestEntry {
                hash_alg: "sha256".into(),
                digest: hex::encode(digest),
            }],
            content_type: CONTENT_TYPE.into(),
            content: SelfContent {
                what: what.into(),
                path,
                config,
            },
        }
    }

    /// A `config` record: the digest is that of the text.
    pub fn config(text: &str) -> Self {
        Self::new(
            "config",
            Sha256::digest(text.as_bytes()).into(),
            None,
            Some(text.to_owned()),
        )
    }

    fn sha256(&self) -> Option<[u8; 32]> {
        match self.digests.as_slice() {
            [d] if d.hash_alg == "sha256" => hex::decode(&d.digest).ok()?.try_into().ok(),
            _ => None,
        }
    }
}

/// What Warren's PCR says: the digests of each kind, hex, in log order (one each when Warren
/// measured itself once, as it does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WarrenFacts {
    /// The Warren binaries.
    pub binary: Vec<String>,
    /// The TPM agents.
    pub agent: Vec<String>,
    /// The configurations' digests.
    pub config: Vec<String>,
}

/// Why Warren's PCR was not explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfFailure {
    /// `self-log` (a record is malformed or its configuration does not hash to its digest)
    /// or `self-replay` (the records do not replay to the quoted PCR).
    pub code: &'static str,
    /// What was wrong.
    pub detail: String,
}

/// The replay of `records`: `PCR₀ = 0³², PCRₙ = SHA-256(PCRₙ₋₁ ‖ digestₙ)`.
pub fn replay(records: &[SelfRecord]) -> [u8; 32] {
    records
        .iter()
        .map(|r| r.sha256().unwrap_or([0; 32]))
        .fold([0u8; 32], |acc, d| extend(&acc, &d))
}

/// Checks `records` and that they replay to `pcr` (the quoted value of [`WARREN_PCR`]).
pub fn check(records: &[SelfRecord], pcr: &[u8; 32]) -> Result<WarrenFacts, SelfFailure> {
    let bad = |detail: String| SelfFailure {
        code: "self-log",
        detail,
    };
    let mut facts = WarrenFacts::default();
    for (i, r) in records.iter().enumerate() {
        if r.pcr != WARREN_PCR || r.content_type != CONTENT_TYPE {
            return Err(bad(format!(
                "record {i} is not a {CONTENT_TYPE} record of PCR {WARREN_PCR}"
            )));
        }
        let digest = r
            .sha256()
            .ok_or_else(|| bad(format!("record {i} has no single SHA-256 digest")))?;
        let list = match r.content.what.as_str() {
            "binary" => &mut facts.binary,
            "agent" => &mut facts.agent,
            "config" => {
                let text =
                    r.content.config.as_deref().ok_or_else(|| {
                        bad(format!("config record {i} carries no configuration"))
                    })?;
                if <[u8; 32]>::from(Sha256::digest(text.as_bytes())) != digest {
                    return Err(bad(format!(
                        "config record {i}: the configuration does not hash to its digest"
                    )));
                }
                &mut facts.config
            }
            other => return Err(bad(format!("record {i} measures {other:?}"))),
        };
        list.push(hex::encode(digest));
    }
    let replayed = replay(records);
    if &replayed != pcr {
        return Err(SelfFailure {
            code: "self-replay",
            detail: format!(
                "Warren's records replay to {}, the TPM's PCR {WARREN_PCR} holds {}",
                hex::encode(replayed),
                hex::encode(pcr)
            ),
        });
    }
    Ok(facts)
}

/// The `[warren]` policy: allowed digests per kind (SHA-256 hex); an absent key is not
/// checked; every measured digest of a listed kind must be allowed, and at least one must have
/// been measured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarrenPolicy {
    /// Allowed Warren binaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<Vec<String>>,
    /// Allowed TPM agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Vec<String>>,
    /// Allowed configurations (digests of the configuration text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Vec<String>>,
}

impl WarrenPolicy {
    /// Checks `facts`; the error says which kind failed (reason `warren-digest`).
    pub fn check(&self, facts: &WarrenFacts) -> Result<(), String> {
        for (kind, allowed, measured) in [
            ("binary", &self.binary, &facts.binary),
            ("agent", &self.agent, &facts.agent),
            ("config", &self.config, &facts.config),
        ] {
            let Some(allowed) = allowed else { continue };
            if measured.is_empty() {
                return Err(format!(
                    "no Warren {kind} was measured into PCR {WARREN_PCR}"
                ));
            }
            for d in measured {
                if !allowed.iter().any(|a| a.eq_ignore_ascii_case(d)) {
                    return Err(format!("Warren {kind} {d} is not allowed by the policy"));
                }
            }
        }
        Ok(())
    }

    /// The policy as a `[warren]` TOML table.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("[warren]\n");
        for (k, v) in [
            ("binary", &self.binary),
            ("agent", &self.agent),
            ("config", &self.config),
        ] {
            if let Some(v) = v {
                let items: Vec<String> = v.iter().map(|d| format!("\"{d}\"")).collect();
                out.push_str(&format!("{k} = [{}]\n", items.join(", ")));
            }
        }
        out
    }

    /// The policy that accepts exactly `facts`.
    pub fn learn(facts: &WarrenFacts) -> Self {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        WarrenPolicy {
            binary: some(&facts.binary),
            agent: some(&facts.agent),
            config: some(&facts.config),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Vec<SelfRecord> {
        vec![
            SelfRecord::new("binary", [1; 32], Some("/usr/bin/warren".into()), None),
            SelfRecord::new("agent", [2; 32], None, None),
            SelfRecord::config("{\"root\":\"tpm\"}"),
        ]
    }

    #[test]
    fn replays_and_says_what_was_measured() {
        let l = log();
        let pcr = replay(&l);
        let facts = check(&l, &pcr).unwrap();
        assert_eq!(facts.binary, vec![hex::encode([1u8; 32])]);
        assert_eq!(facts.agent, vec![hex::encode([2u8; 32])]);
        // The replay is the TPM's: SHA-256(SHA-256(SHA-256(0 ‖ d1) ‖ d2) ‖ d3).
        let step =
            |a: [u8; 32], d: [u8; 32]| -> [u8; 32] { Sha256::digest([a, d].concat()).into() };
        let d3: [u8; 32] = Sha256::digest(b"{\"root\":\"tpm\"}").into();
        assert_eq!(pcr, step(step(step([0; 32], [1; 32]), [2; 32]), d3));
        // The policy learnt from it accepts it; another binary is refused.
        let p = WarrenPolicy::learn(&facts);
        assert!(p.check(&facts).is_ok());
        let other = WarrenPolicy {
            binary: Some(vec![hex::encode([9u8; 32])]),
            ..WarrenPolicy::default()
        };
        assert!(other.check(&facts).unwrap_err().contains("binary"));
        // Nothing measured fails a policy that names a kind.
        assert!(p.check(&WarrenFacts::default()).is_err());
    }

    #[test]
    fn a_removed_record_or_an_edited_config_is_caught() {
        let l = log();
        let pcr = replay(&l);
        let mut fewer = l.clone();
        fewer.remove(1);
        assert_eq!(check(&fewer, &pcr).unwrap_err().code, "self-replay");
        let mut edited = l.clone();
        edited[2].content.config = Some("{\"root\":\"software\"}".into());
        assert_eq!(check(&edited, &pcr).unwrap_err().code, "self-log");
        // Positive control: the untouched log passes.
        assert!(check(&l, &pcr).is_ok());
    }
}
