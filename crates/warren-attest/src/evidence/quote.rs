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
//!
//! A quote answered to a program inside an environment is **redacted** ([`redact_for_subject`]):
//! only the subject's own launch record, its provenance chain and their `refused` records keep
//! their content; every other record keeps only its number, index and digest, which is all a
//! verifier needs to replay the register. The signature does not cover the log, only the
//! register, so redaction changes nothing that was signed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::evidence::kind::RootKind;
use crate::evidence::record::{Record, outcomes};
use crate::evidence::selfpcr::SelfRecord;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The signed bytes, hex.
    pub attest: String,
    /// The signature, hex (ECDSA P-256 SHA-256, DER).
    pub signature: String,
    /// The attestation key that signed, hex: its `TPMT_PUBLIC` (tpm) or DER
    /// `SubjectPublicKeyInfo` (software).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak_public: Option<String>,
    /// The NV index's `TPMS_NV_PUBLIC`, hex (tpm only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nv_public: Option<String>,
    /// The attestation key's certificate from the Privacy CA (PEM), if the host is enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak_certificate: Option<String>,
    /// The event log at the time of the quote.
    pub event_log: Vec<Record>,
    /// tpm: the host's boot state (a `TPM2_Quote` of the boot PCRs over the same qualifying
    /// value, and the UEFI event log that explains them). Absent from software quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootEvidence>,
}

/// The boot chain part of a TPM quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootEvidence {
    /// The `TPMS_ATTEST` of `TPM2_Quote` (SHA-256 bank, [`crate::evidence::bootlog::BOOT_PCRS`]),
    /// hex.
    pub attest: String,
    /// Its signature by the attestation key (ECDSA P-256 SHA-256, DER), hex.
    pub signature: String,
    /// The quoted PCRs' values as read next to the quote: PCR number to hex.
    pub pcrs: BTreeMap<u32, String>,
    /// The UEFI event log (`binary_bios_measurements`, crypto-agile), hex; absent when the
    /// host has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<String>,
    /// The records of Warren's own PCR 15 (`evidence::selfpcr`); absent when Warren did not
    /// measure itself (then PCR 15 must be zero).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warren_log: Vec<SelfRecord>,
    /// The IMA measurement list (`evidence::ima`, binary or ASCII form), hex, read after the
    /// quote; absent when the host has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_log: Option<String>,
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

/// The records a subject quote about launch record `recnum` carries in full: that record, the
/// spawner's record it names (`spawn.parent_recnum`), that one's spawner's, and so on up, and
/// every `refused` record paired with one of them ([`outcomes`]).
pub fn disclosed(records: &[Record], recnum: u64) -> BTreeSet<u64> {
    let mut keep = BTreeSet::new();
    let mut next = Some(recnum);
    while let Some(n) = next.take() {
        if !keep.insert(n) {
            break;
        }
        next = records
            .iter()
            .find(|r| r.recnum == n)
            .and_then(|r| r.content.as_ref())
            .and_then(|c| c.spawn.as_ref())
            .and_then(|s| s.parent_recnum);
    }
    let refusals: Vec<u64> = outcomes(records)
        .iter()
        .filter(|o| keep.contains(&o.recnum))
        .filter_map(|o| o.refused_by)
        .collect();
    keep.extend(refusals);
    keep
}

/// The log as a subject quote about launch record `recnum` carries it: the records
/// [`disclosed`] names whole, every other one redacted ([`Record::redacted`]).
pub fn redact_for_subject(records: Vec<Record>, recnum: u64) -> Vec<Record> {
    let keep = disclosed(&records, recnum);
    records
        .into_iter()
        .map(|r| {
            if keep.contains(&r.recnum) {
                r
            } else {
                r.redacted()
            }
        })
        .collect()
}
