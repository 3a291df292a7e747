//! The TPM root of trust, reached through the `warren-tpm` agent (a separate, dynamically
//! linked binary, because tpm2-tss exists only as shared libraries on Debian while `warren` is
//! linked statically).
//!
//! Not implemented yet: opening it fails with a clear error (see docs/attestation.md, "Status").

use std::path::{Path, PathBuf};

use crate::root::{Evidence, RootError, RootKind, RootOfTrust};

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
    _dir: PathBuf,
}

impl TpmRoot {
    /// Opens the TPM named by `spec` for the attestation directory `dir`.
    pub fn new(dir: &Path, spec: &str) -> Result<TpmRoot, RootError> {
        let _ = dir;
        Err(RootError::Tpm(format!(
            "the tpm root of trust ({spec}) is not implemented in this build; use --attest-root software"
        )))
    }
}

impl RootOfTrust for TpmRoot {
    fn kind(&self) -> RootKind {
        RootKind::Tpm
    }
    fn extend(&mut self, _digest: &[u8; 32]) -> Result<(), RootError> {
        Err(RootError::Tpm("not implemented".into()))
    }
    fn read(&mut self) -> Result<[u8; 32], RootError> {
        Err(RootError::Tpm("not implemented".into()))
    }
    fn quote(&mut self, _qualifying: &[u8; 32]) -> Result<Evidence, RootError> {
        Err(RootError::Tpm("not implemented".into()))
    }
    fn ak_spki(&mut self) -> Result<Vec<u8>, RootError> {
        Err(RootError::Tpm("not implemented".into()))
    }
}
