//! Enrollment: how a host's attestation key gets its certificate from the Privacy CA.
//!
//! The messages are plain JSON so host and CA can be different machines. A software host
//! proves possession of its key by signing its request; it can prove nothing else, so its
//! certificate comes from the software issuing CA. A TPM host sends its endorsement key (EK)
//! certificate and its attestation key (AK); the CA checks the EK certificate chain and the AK's
//! attributes, and issues from the TPM issuing CA only after the host's TPM has recovered a
//! secret with TPM2_ActivateCredential ([`crate::evidence::credential`]).

use std::path::Path;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};

use crate::evidence::credential::{check_ek_certificate, make_credential};
use crate::evidence::kind::RootKind;
use crate::evidence::tpm_wire::{AK_FORBIDDEN, AK_REQUIRED, ak_spki_of, name, parse_ak_public};
use crate::io::ca::{CaError, PrivacyCa};
use crate::io::config::{DEFAULT_TPM, RootConfig};
use crate::io::root::{RootError, SoftwareRoot};

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
    Root(#[from] RootError),
    /// The CA refused or failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The certificate could not be installed.
    #[error("install the certificate")]
    Install(#[source] std::io::Error),
    /// The certificate to install is not one of this host's attestation key.
    #[error("refuse to install the certificate: {0}")]
    Refused(String),
}

/// The host's enrollment request for a software root.
pub fn software_request(state_dir: &Path, host: &str) -> Result<Request, EnrollError> {
    let root = SoftwareRoot::new(&state_dir.join("attest"));
    let key = root.key()?;
    let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(key.verifying_key())
        .map_err(|e| RootError::Tpm(e.to_string()))?;
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

/// Installs a certificate as the host's attestation key certificate, after checking that it
/// is one: an X.509 certificate (PEM) of this host's attestation key, marked for its root of
/// trust. Anything else is refused ([`EnrollError::Refused`]) and the installed certificate
/// kept. The file is replaced in one rename.
pub fn install_certificate(state_dir: &Path, pem: &str) -> Result<(), EnrollError> {
    use x509_parser::prelude::FromDer;
    let refused = |s: String| EnrollError::Refused(s);
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| refused(format!("not a PEM certificate: {e}")))?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&parsed.contents)
        .map_err(|e| refused(format!("the certificate does not parse: {e}")))?;
    let config = RootConfig::resolve(state_dir)?;
    let marker = crate::evidence::verify::root_marker(config.root);
    if !cert
        .subject()
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .any(|ou| ou == marker)
    {
        return Err(refused(format!(
            "the certificate is not marked {marker:?} (subject {}): it is not for this host's \
             {} root of trust",
            cert.subject(),
            config.root
        )));
    }
    let spki = config.open(state_dir)?.ak_spki()?;
    if cert.public_key().raw != spki.as_slice() {
        return Err(refused(format!(
            "the certificate (subject {}) is for another key than this host's attestation key",
            cert.subject()
        )));
    }
    let path = crate::io::quote::certificate_path(state_dir);
    crate::io::log::EventLog::new(state_dir)
        .ensure_dir()
        .map_err(|e| EnrollError::Install(std::io::Error::other(e.to_string())))?;
    let tmp = path.with_extension("crt.tmp");
    std::fs::write(&tmp, pem)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            EnrollError::Install(e)
        })
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
            let roots = ca.ek_roots()?;
            return Ok((
                RootKind::Tpm,
                enroll_local_tpm(state_dir, ca_dir, host, &roots)?,
            ));
        }
    };
    install_certificate(state_dir, &pem)?;
    Ok((config.root, pem))
}

/// A TPM host's request: its EK certificate, its EK's public modulus and its AK's public area.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmRequest {
    /// The host's name.
    pub host: String,
    /// The EK certificate (DER), hex.
    pub ek_cert: String,
    /// The EK's RSA modulus, hex (exponent 65537, the default EK template).
    pub ek_modulus: String,
    /// The AK's `TPMT_PUBLIC`, hex.
    pub ak_public: String,
}

/// The CA's challenge: TPM2_MakeCredential's two outputs, hex (without their size fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// `TPM2B_ID_OBJECT` contents.
    pub credential_blob: String,
    /// `TPM2B_ENCRYPTED_SECRET` contents.
    pub secret: String,
}

/// The host's side of TPM enrollment, step 1: provision and describe the keys.
pub fn tpm_request(state_dir: &Path, host: &str) -> Result<TpmRequest, EnrollError> {
    let root = tpm_root(state_dir)?;
    root.provision()?;
    let v = root.call(&["ek"])?;
    let field = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| RootError::Tpm(format!("the agent gave no {k}")))
    };
    Ok(TpmRequest {
        host: host.to_owned(),
        ek_cert: field("ek_cert")?,
        ek_modulus: field("ek_modulus")?,
        ak_public: field("ak_public")?,
    })
}

fn tpm_root(state_dir: &Path) -> Result<crate::io::tpm::TpmRoot, EnrollError> {
    let config = RootConfig::resolve(state_dir)?;
    Ok(crate::io::tpm::TpmRoot::new(
        &state_dir.join("attest"),
        config.tpm.as_deref().unwrap_or(DEFAULT_TPM),
        config.agent.as_deref(),
    )?)
}

/// The host's side, step 2: TPM2_ActivateCredential with its EK and AK.
pub fn tpm_activate(state_dir: &Path, challenge: &Challenge) -> Result<Vec<u8>, EnrollError> {
    let v =
        tpm_root(state_dir)?.call(&["activate", &challenge.credential_blob, &challenge.secret])?;
    v.get("secret")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| EnrollError::Root(RootError::Tpm("no secret".into())))
}

/// Enrolls a TPM host of `state_dir` with the CA in `ca_dir` on one machine: the CA checks the
/// EK certificate against `ek_roots` (PEM certificates it trusts as EK issuers), makes a
/// credential for the AK, the host's TPM activates it, and the CA issues the certificate.
pub fn enroll_local_tpm(
    state_dir: &Path,
    ca_dir: &Path,
    host: &str,
    ek_roots: &[String],
) -> Result<String, EnrollError> {
    let ca = PrivacyCa::new(ca_dir);
    let req = tpm_request(state_dir, host)?;
    let (challenge, expected) = ca_challenge(&req, ek_roots)?;
    let answer = tpm_activate(state_dir, &challenge)?;
    let pem = ca_finish(&ca, &req, &expected, &answer)?;
    install_certificate(state_dir, &pem)?;
    Ok(pem)
}

fn refused(s: impl Into<String>) -> CaError {
    CaError::Refused(s.into())
}

/// The CA's challenge for a TPM request: checks the EK certificate and the AK, then makes a
/// credential for the AK's Name. Returns the challenge and the secret to expect back.
pub fn ca_challenge(
    req: &TpmRequest,
    ek_roots: &[String],
) -> Result<(Challenge, Vec<u8>), CaError> {
    let bytes =
        |s: &str, what: &str| hex::decode(s).map_err(|_| refused(format!("{what} is not hex")));
    let ek_cert = bytes(&req.ek_cert, "ek_cert")?;
    let modulus = bytes(&req.ek_modulus, "ek_modulus")?;
    let ak_public = bytes(&req.ak_public, "ak_public")?;
    check_ek_certificate(&ek_cert, &modulus, ek_roots)?;
    let ak = parse_ak_public(&ak_public).map_err(|e| refused(format!("attestation key: {e}")))?;
    if ak.attributes & AK_REQUIRED != AK_REQUIRED || ak.attributes & AK_FORBIDDEN != 0 {
        return Err(refused(
            "the attestation key is not a restricted signing key that never leaves the TPM",
        ));
    }
    let mut secret = vec![0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let (blob, enc) = make_credential(&modulus, &name(&ak_public), &secret)?;
    Ok((
        Challenge {
            credential_blob: hex::encode(blob),
            secret: hex::encode(enc),
        },
        secret,
    ))
}

/// The CA's last step: the host's TPM returned `answer`; if it is the secret, certify the AK.
pub fn ca_finish(
    ca: &PrivacyCa,
    req: &TpmRequest,
    expected: &[u8],
    answer: &[u8],
) -> Result<String, CaError> {
    if answer != expected {
        return Err(refused(
            "the TPM did not recover the credential: wrong EK or another attestation key",
        ));
    }
    let ak_public = hex::decode(&req.ak_public).map_err(|_| refused("ak_public is not hex"))?;
    let spki = ak_spki_of(&ak_public).map_err(refused)?;
    ca.issue(RootKind::Tpm, &spki, &req.host)
}

/// The enrollment request document (`warren ca request`), as the host hands it to the CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "root", rename_all = "lowercase", deny_unknown_fields)]
pub enum EnrollRequest {
    /// A software key, with its proof of possession.
    Software {
        /// The request.
        request: Request,
    },
    /// A TPM: EK certificate, EK modulus, AK.
    Tpm {
        /// The request.
        request: TpmRequest,
    },
}

/// The host's answer to a challenge (`warren ca answer`): the secret its TPM recovered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The recovered secret, hex.
    pub secret: String,
}

/// The host's side, step 1 on its own machine: the request for its configured root.
pub fn make_request(state_dir: &Path, host: &str) -> Result<EnrollRequest, EnrollError> {
    Ok(match RootConfig::resolve(state_dir)?.root {
        RootKind::Software => EnrollRequest::Software {
            request: software_request(state_dir, host)?,
        },
        RootKind::Tpm => EnrollRequest::Tpm {
            request: tpm_request(state_dir, host)?,
        },
    })
}

/// Where the CA keeps the secret it expects back for a TPM request (one file per AK, 0600).
fn pending_path(ca_dir: &Path, req: &TpmRequest) -> std::path::PathBuf {
    use sha2::Digest;
    let id = hex::encode(sha2::Sha256::digest(req.ak_public.as_bytes()));
    ca_dir.join("pending").join(format!("{id}.json"))
}

/// The CA's side, step 2 on the CA's machine: checks a TPM request and makes the challenge,
/// remembering the secret to expect under `DIR/pending/`.
pub fn ca_make_challenge(ca_dir: &Path, req: &TpmRequest) -> Result<Challenge, CaError> {
    let ca = PrivacyCa::new(ca_dir);
    let (challenge, expected) = ca_challenge(req, &ca.ek_roots()?)?;
    let path = pending_path(ca_dir, req);
    let io = |what, source| CaError::Io {
        what,
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(path.parent().unwrap_or(ca_dir)).map_err(|e| io("create", e))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("create", e))?;
        f.write_all(hex::encode(&expected).as_bytes())
            .map_err(|e| io("write", e))?;
    }
    Ok(challenge)
}

/// The host's side, step 3: recovers the challenge's secret with its TPM.
pub fn make_answer(state_dir: &Path, challenge: &Challenge) -> Result<Answer, EnrollError> {
    Ok(Answer {
        secret: hex::encode(tpm_activate(state_dir, challenge)?),
    })
}

/// The CA's side, step 4: issues the certificate for a request (a software request needs no
/// answer; a TPM request needs the answer to the challenge the CA made for it, which is then
/// forgotten, so each challenge is answered once).
pub fn ca_certify(
    ca_dir: &Path,
    req: &EnrollRequest,
    answer: Option<&Answer>,
) -> Result<String, CaError> {
    let ca = PrivacyCa::new(ca_dir);
    match req {
        EnrollRequest::Software { request } => ca_handle_software(&ca, request),
        EnrollRequest::Tpm { request } => {
            let answer = answer.ok_or_else(|| {
                refused("a TPM request needs the host's answer to the CA's challenge")
            })?;
            let path = pending_path(ca_dir, request);
            let expected = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| hex::decode(s.trim()).ok())
                .ok_or_else(|| {
                    refused("no challenge is pending for this attestation key (make one first)")
                })?;
            let got = hex::decode(&answer.secret).map_err(|_| refused("the answer is not hex"))?;
            let _ = std::fs::remove_file(&path);
            ca_finish(&ca, request, &expected, &got)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn software_host() -> (tempfile::TempDir, PrivacyCa, tempfile::TempDir) {
        let state = tempfile::tempdir().unwrap();
        RootConfig::software().save(state.path()).unwrap();
        let ca_dir = tempfile::tempdir().unwrap();
        let ca = PrivacyCa::init(ca_dir.path()).unwrap();
        (state, ca, ca_dir)
    }

    /// `warren ca install` installs only a certificate of this host's attestation key for its
    /// root of trust; anything else is refused and the installed certificate kept (it used to
    /// install garbage or another host's certificate, and only verifiers noticed).
    #[test]
    fn install_takes_only_a_certificate_of_this_hosts_key() {
        let (state, ca, _ca_dir) = software_host();
        let req = software_request(state.path(), "h").unwrap();
        let good = ca_handle_software(&ca, &req).unwrap();
        let installed = crate::io::quote::certificate_path(state.path());
        // Positive control.
        install_certificate(state.path(), &good).unwrap();
        assert_eq!(std::fs::read_to_string(&installed).unwrap(), good);

        let other_key = rcgen::KeyPair::generate().unwrap();
        let own_spki = hex::decode(&req.ak_spki).unwrap();
        for (what, pem) in [
            ("garbage", "not a certificate\n".to_owned()),
            (
                "another key",
                ca.issue(RootKind::Software, &other_key.public_key_der(), "h")
                    .unwrap(),
            ),
            (
                "another root",
                ca.issue(RootKind::Tpm, &own_spki, "h").unwrap(),
            ),
        ] {
            let e = install_certificate(state.path(), &pem)
                .expect_err(what)
                .to_string();
            assert!(e.contains("refuse"), "{what}: {e}");
            assert_eq!(
                std::fs::read_to_string(&installed).unwrap(),
                good,
                "{what}: the installed certificate is kept"
            );
        }
    }
}
