//! Which kind of root of trust signed a quote, and the prefix of what the software root signs.

use serde::{Deserialize, Serialize};

/// The bytes a software root signs start with this, which no TPM-generated structure does
/// (those start with `TPM_GENERATED_VALUE`, `ff 54 43 47`).
pub const SOFTWARE_MAGIC: &[u8; 24] = b"WARREN-SOFTWARE-ATTEST/1";

/// Which kind of root of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootKind {
    /// A TPM 2.0.
    Tpm,
    /// A key and a register on disk.
    Software,
}

impl RootKind {
    /// `tpm` or `software`.
    pub fn as_str(self) -> &'static str {
        match self {
            RootKind::Tpm => "tpm",
            RootKind::Software => "software",
        }
    }
}

impl std::str::FromStr for RootKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tpm" => Ok(RootKind::Tpm),
            "software" => Ok(RootKind::Software),
            _ => Err(format!(
                "unknown root of trust {s:?}: expected tpm or software"
            )),
        }
    }
}

impl std::fmt::Display for RootKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
