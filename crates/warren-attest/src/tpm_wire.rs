//! TPM 2.0 evidence: parsing and checking the structures a TPM signs (`TPMS_ATTEST`), the
//! attestation key's `TPMT_PUBLIC` and the anchor's `TPMS_NV_PUBLIC`.
//!
//! Not implemented yet: TPM-rooted quotes are refused with a clear reason until the TPM root
//! lands (see docs/attestation.md, "Status").

use p256::ecdsa::VerifyingKey;

use crate::quote::Quote;
use crate::verify::Rejection;

/// Checks TPM evidence and returns (signed qualifying data, register).
pub fn check_tpm_evidence(
    _quote: &Quote,
    _attest: &[u8],
    _signature: &[u8],
    _ak: &VerifyingKey,
) -> Result<([u8; 32], [u8; 32]), Rejection> {
    Err(Rejection::Malformed(
        "tpm-rooted quotes are not supported by this verifier yet".into(),
    ))
}
