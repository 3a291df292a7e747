//! Enrollment: how a host's attestation key gets its certificate from the Privacy CA.
//!
//! The messages are plain JSON so host and CA can be different machines. A software host
//! proves possession of its key by signing its request; it can prove nothing else, so its
//! certificate comes from the software issuing CA. (TPM enrollment, with the endorsement key
//! certificate chain and a MakeCredential / ActivateCredential round trip, is described in
//! docs/attestation.md.)

use std::path::Path;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};

use crate::ca::{CaError, PrivacyCa};
use crate::root::{RootConfig, RootKind, SoftwareRoot};

/// What a host sends the CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The root of trust the key lives in.
    pub root: RootKind,
    /// The host's name (goes into the certificate's common name).
    pub host: String,
    /// The attestation key, DER `SubjectPublicKeyInfo`, hex.
    pub ak_spki: String,
    /// Software: the key's signature (DER, hex) over `"warren-enroll/1\0" || host || spki`.
    pub proof: Option<String>,
}

fn proof_message(host: &str, spki: &[u8]) -> Vec<u8> {
    let mut m = b"warren-enroll/1\0".to_vec();
    m.extend_from_slice(host.as_bytes());
    m.push(0);
    m.extend_from_slice(spki);
    m
}

/// Why enrollment failed on the host side.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The root could not be used.
    #[error(transparent)]
    Root(#[from] crate::root::RootError),
    /// The CA refused or failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The certificate could not be installed.
    #[error("install the certificate")]
    Install(#[source] std::io::Error),
}

/// The host's enrollment request for a software root.
pub fn software_request(state_dir: &Path, host: &str) -> Result<Request, EnrollError> {
    let root = SoftwareRoot::new(&state_dir.join("attest"));
    let key = root.key()?;
    let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(key.verifying_key())
        .map_err(|e| crate::root::RootError::Tpm(e.to_string()))?;
    let sig: Signature = key.sign(&proof_message(host, spki.as_bytes()));
    Ok(Request {
        root: RootKind::Software,
        host: host.to_owned(),
        ak_spki: hex::encode(spki.as_bytes()),
        proof: Some(hex::encode(sig.to_der().as_bytes())),
    })
}

/// The CA's side for a software request: check the proof of possession, then issue from the
/// software issuing CA.
pub fn ca_handle_software(ca: &PrivacyCa, req: &Request) -> Result<String, CaError> {
    if req.root != RootKind::Software {
        return Err(CaError::Refused("not a software request".into()));
    }
    let spki =
        hex::decode(&req.ak_spki).map_err(|_| CaError::Refused("ak_spki is not hex".into()))?;
    let key = VerifyingKey::from_public_key_der(&spki)
        .map_err(|_| CaError::Refused("ak_spki is not a P-256 key".into()))?;
    let proof = req
        .proof
        .as_deref()
        .and_then(|p| hex::decode(p).ok())
        .and_then(|p| Signature::from_der(&p).ok())
        .ok_or_else(|| CaError::Refused("no proof of possession".into()))?;
    key.verify(&proof_message(&req.host, &spki), &proof)
        .map_err(|_| CaError::Refused("the proof of possession does not verify".into()))?;
    ca.issue(RootKind::Software, &spki, &req.host)
}

/// Installs a certificate as the host's attestation key certificate.
pub fn install_certificate(state_dir: &Path, pem: &str) -> Result<(), EnrollError> {
    let path = crate::quote::certificate_path(state_dir);
    crate::log::EventLog::new(state_dir)
        .ensure_dir()
        .map_err(|e| EnrollError::Install(std::io::Error::other(e.to_string())))?;
    std::fs::write(&path, pem).map_err(EnrollError::Install)
}

/// Enrolls the host of `state_dir` with the CA in `ca_dir` on the same machine: the request,
/// the CA's checks and the installation of the certificate, in one step. Returns the root
/// kind and the certificate.
pub fn enroll_local(
    state_dir: &Path,
    ca_dir: &Path,
    host: &str,
) -> Result<(RootKind, String), EnrollError> {
    let ca = PrivacyCa::new(ca_dir);
    let config = RootConfig::resolve(state_dir)?;
    let pem = match config.root {
        RootKind::Software => {
            let req = software_request(state_dir, host)?;
            ca_handle_software(&ca, &req)?
        }
        RootKind::Tpm => {
            return Err(EnrollError::Ca(CaError::Refused(
                "tpm enrollment is not implemented in this build".into(),
            )));
        }
    };
    install_certificate(state_dir, &pem)?;
    Ok((config.root, pem))
}
