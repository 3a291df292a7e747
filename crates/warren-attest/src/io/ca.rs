//! The Privacy CA: a root and two issuing CAs, one for TPM-rooted attestation keys and one for
//! software-rooted keys, so no verifier that trusts the TPM issuing CA can accept a software
//! key by mistake.
//!
//! Layout of a CA directory (keys 0600):
//!
//! ```text
//! root.crt root.key            the Warren root CA (signs the two issuing CAs)
//! tpm-ca.crt tpm-ca.key        issues certificates for TPM attestation keys
//! software-ca.crt software-ca.key   issues certificates for software keys
//! ```
//!
//! Every certificate is ECDSA P-256 with SHA-256. An attestation key certificate carries the
//! root of trust in its subject's organisational unit (`warren root: tpm` or
//! `warren root: software`), and verifiers check it against the quote.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber, SubjectPublicKeyInfo,
};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::FromDer;

use crate::evidence::credential::CredentialError;
use crate::evidence::kind::RootKind;
use crate::evidence::verify::root_marker;

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The directory already holds a CA.
    #[error("{} already holds a CA; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    /// Certificate generation failed.
    #[error("certificate: {0}")]
    Cert(String),
    /// The enrollment request was refused.
    #[error("enrollment refused: {0}")]
    Refused(String),
}

impl From<CredentialError> for CaError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Refused(s) => CaError::Refused(s),
        }
    }
}

/// How long an attestation key certificate is valid: a year, after which the host enrolls again
/// (the AK may have been re-created, the host retired; a CRL covers what happens sooner).
pub const AK_CERT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

/// How long a CRL is current: a week. Verifiers refuse an older one (`crl`), so revocations
/// reach them within that time if they fetch the CA's list daily.
pub const CRL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// One revoked certificate, as the CA remembers it (`DIR/<issuer>-revoked.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Revoked {
    /// The serial number, hex.
    serial: String,
    /// When, in seconds since the epoch.
    at: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A point in time for rcgen, from seconds since the epoch.
macro_rules! at {
    ($secs:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs($secs)
    };
}

fn stem(root: RootKind) -> &'static str {
    match root {
        RootKind::Tpm => "tpm-ca",
        RootKind::Software => "software-ca",
    }
}

fn cert_err(e: impl std::fmt::Display) -> CaError {
    CaError::Cert(e.to_string())
}

/// A Privacy CA directory.
#[derive(Debug, Clone)]
pub struct PrivacyCa {
    dir: PathBuf,
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| CaError::Io {
            what: "create",
            path: path.to_owned(),
            source,
        })?;
    f.write_all(bytes).map_err(|source| CaError::Io {
        what: "write",
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        what: "read",
        path: path.to_owned(),
        source,
    })
}

fn ca_params(cn: &str, path_len: Option<u8>) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Warren");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    Ok(p)
}

impl PrivacyCa {
    /// The CA in `dir`.
    pub fn new(dir: &Path) -> Self {
        PrivacyCa {
            dir: dir.to_owned(),
        }
    }

    /// Creates the root and both issuing CAs in a new or empty directory.
    pub fn init(dir: &Path) -> Result<PrivacyCa, CaError> {
        if dir.join("root.key").exists() {
            return Err(CaError::Exists(dir.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
            what: "create",
            path: dir.to_owned(),
            source,
        })?;
        let root_key = KeyPair::generate().map_err(cert_err)?;
        let root = ca_params("Warren Privacy CA root", Some(1))?
            .self_signed(&root_key)
            .map_err(cert_err)?;
        write_file(
            &dir.join("root.key"),
            root_key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_file(&dir.join("root.crt"), root.pem().as_bytes(), 0o644)?;
        for (stem, cn) in [
            ("tpm-ca", "Warren TPM attestation key CA"),
            ("software-ca", "Warren SOFTWARE attestation key CA"),
        ] {
            let key = KeyPair::generate().map_err(cert_err)?;
            let mut params = ca_params(cn, Some(0))?;
            // RFC 5280 4.2.1.1: every certificate but a self-signed root names its issuer's
            // key (strict validators, `openssl verify -x509_strict`, refuse one without it).
            params.use_authority_key_identifier_extension = true;
            let cert = params.signed_by(&key, &root, &root_key).map_err(cert_err)?;
            write_file(
                &dir.join(format!("{stem}.key")),
                key.serialize_pem().as_bytes(),
                0o600,
            )?;
            write_file(
                &dir.join(format!("{stem}.crt")),
                cert.pem().as_bytes(),
                0o644,
            )?;
        }
        let ca = PrivacyCa::new(dir);
        for root in [RootKind::Tpm, RootKind::Software] {
            ca.write_crl(root)?;
        }
        Ok(ca)
    }

    /// The certificates this CA trusts as issuers of endorsement key certificates (PEM files in
    /// `DIR/ek-roots/`: the TPM manufacturers' CAs; for swtpm, swtpm-localca's).
    pub fn ek_roots(&self) -> Result<Vec<String>, CaError> {
        let dir = self.dir.join("ek-roots");
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(CaError::Io {
                    what: "read",
                    path: dir,
                    source,
                });
            }
        };
        for e in entries.flatten() {
            out.push(read(&e.path())?);
        }
        Ok(out)
    }

    /// Checks that `pem` is an X.509 certificate in PEM, as a trusted EK issuer must be (one
    /// that is not would be skipped when enrollment reads `DIR/ek-roots/`).
    pub fn check_ek_ca(pem: &str) -> Result<(), CaError> {
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| CaError::Cert(format!("not a PEM certificate: {e}")))?;
        x509_parser::certificate::X509Certificate::from_der(&parsed.contents)
            .map_err(|e| CaError::Cert(format!("the certificate does not parse: {e}")))?;
        Ok(())
    }

    /// Adds a certificate (PEM) to the trusted EK issuers, after [`Self::check_ek_ca`].
    pub fn trust_ek_ca(&self, pem: &str, name: &str) -> Result<(), CaError> {
        Self::check_ek_ca(pem)?;
        let dir = self.dir.join("ek-roots");
        std::fs::create_dir_all(&dir).map_err(|source| CaError::Io {
            what: "create",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|source| CaError::Io {
            what: "write",
            path,
            source,
        })
    }

    /// The issuing CA certificate file for a root kind.
    pub fn issuer_cert_path(&self, root: RootKind) -> PathBuf {
        self.dir.join(match root {
            RootKind::Tpm => "tpm-ca.crt",
            RootKind::Software => "software-ca.crt",
        })
    }

    /// The issuing CA's current revocation list (PEM), as `warren ca init`, `revoke` and `crl`
    /// write it.
    pub fn crl_path(&self, root: RootKind) -> PathBuf {
        self.dir.join(format!("{}.crl", stem(root)))
    }

    fn revoked_path(&self, root: RootKind) -> PathBuf {
        self.dir.join(format!("{}-revoked.json", stem(root)))
    }

    fn revoked(&self, root: RootKind) -> Result<Vec<Revoked>, CaError> {
        let path = self.revoked_path(root);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| CaError::Cert(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(CaError::Io {
                what: "read",
                path,
                source,
            }),
        }
    }

    /// Writes a fresh revocation list for the issuing CA of `root` (current for
    /// [`CRL_LIFETIME`]); run it more often than that, and publish the file.
    pub fn write_crl(&self, root: RootKind) -> Result<PathBuf, CaError> {
        let (issuer, key) = self.issuer(root)?;
        let now = now_secs();
        let revoked = self.revoked(root)?;
        let params = CertificateRevocationListParams {
            this_update: at!(now.saturating_sub(60)),
            next_update: at!(now + CRL_LIFETIME.as_secs()),
            crl_number: SerialNumber::from_slice(&now.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| {
                    Ok(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(
                            &hex::decode(&r.serial).map_err(cert_err)?,
                        ),
                        revocation_time: at!(r.at),
                        reason_code: None,
                        invalidity_date: None,
                    })
                })
                .collect::<Result<_, CaError>>()?,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&issuer, &key).map_err(cert_err)?;
        let path = self.crl_path(root);
        let tmp = path.with_extension("crl.tmp");
        let pem = crl.pem().map_err(cert_err)?;
        std::fs::write(&tmp, pem)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| CaError::Io {
                what: "write",
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }

    /// Revokes an attestation key certificate this CA issued (PEM) and rewrites the issuing
    /// CA's revocation list. Returns the issuing CA's root kind and the serial, hex.
    pub fn revoke(&self, cert_pem: &str) -> Result<(RootKind, String), CaError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| CaError::Cert(format!("the certificate is not PEM: {e}")))?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&pem.contents)
            .map_err(|e| CaError::Cert(format!("the certificate does not parse: {e}")))?;
        let mut found = None;
        for root in [RootKind::Tpm, RootKind::Software] {
            let issuer_pem = read(&self.issuer_cert_path(root))?;
            let (_, ipem) =
                x509_parser::pem::parse_x509_pem(issuer_pem.as_bytes()).map_err(cert_err)?;
            let (_, icert) = x509_parser::certificate::X509Certificate::from_der(&ipem.contents)
                .map_err(cert_err)?;
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(
                &icert.public_key().subject_public_key.data,
            )
            .map_err(cert_err)?;
            if cert.issuer() == icert.subject()
                && crate::evidence::verify::check_signed_by(&cert, &key).is_ok()
            {
                found = Some(root);
            }
        }
        let root = found
            .ok_or_else(|| CaError::Refused("the certificate was not issued by this CA".into()))?;
        let serial = hex::encode(cert.tbs_certificate.raw_serial());
        let mut list = self.revoked(root)?;
        if !list.iter().any(|r| r.serial == serial) {
            list.push(Revoked {
                serial: serial.clone(),
                at: now_secs(),
            });
            let path = self.revoked_path(root);
            std::fs::write(&path, serde_json::to_vec_pretty(&list).unwrap_or_default()).map_err(
                |source| CaError::Io {
                    what: "write",
                    path,
                    source,
                },
            )?;
        }
        self.write_crl(root)?;
        Ok((root, serial))
    }

    fn issuer(&self, root: RootKind) -> Result<(Certificate, KeyPair), CaError> {
        let stem = stem(root);
        let key =
            KeyPair::from_pem(&read(&self.dir.join(format!("{stem}.key")))?).map_err(cert_err)?;
        // rcgen signs with an issuer `Certificate`; rebuilding it from the stored certificate's
        // parameters keeps its subject and key, which is all that issuing uses.
        let params = CertificateParams::from_ca_cert_pem(&read(&self.issuer_cert_path(root))?)
            .map_err(cert_err)?;
        let cert = params.self_signed(&key).map_err(cert_err)?;
        Ok((cert, key))
    }

    /// Issues a certificate for the attestation key `spki_der` of `host` under the issuing CA
    /// of `root`. Callers check the evidence first ([`crate::enroll`]).
    pub fn issue(&self, root: RootKind, spki_der: &[u8], host: &str) -> Result<String, CaError> {
        let (issuer, issuer_key) = self.issuer(root)?;
        let subject = SubjectPublicKeyInfo::from_der(spki_der).map_err(cert_err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Warren");
        dn.push(DnType::OrganizationalUnitName, root_marker(root));
        dn.push(DnType::CommonName, format!("attestation key of {host}"));
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true; // names tpm-ca / software-ca's key
        // Valid from five minutes ago (clocks differ) for AK_CERT_LIFETIME.
        let now = now_secs();
        p.not_before = at!(now.saturating_sub(300));
        p.not_after = at!(now + AK_CERT_LIFETIME.as_secs());
        let mut serial = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
        serial[0] &= 0x7f;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = p
            .signed_by(&subject, &issuer, &issuer_key)
            .map_err(cert_err)?;
        Ok(cert.pem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::X509Certificate;

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    fn key_ids(cert: &X509Certificate<'_>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let (mut ski, mut aki) = (None, None);
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                _ => {}
            }
        }
        (ski, aki)
    }

    /// RFC 5280 4.2.1.1: every certificate a conforming CA issues, but a self-signed root,
    /// carries the Authority Key Identifier, and it names the issuer's Subject Key Identifier
    /// (`openssl verify -x509_strict` refuses a chain without it).
    #[test]
    fn issued_certificates_name_their_issuer_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = PrivacyCa::init(dir.path()).unwrap();
        let root_der = der(&read(&dir.path().join("root.crt")).unwrap());
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        let (root_ski, _) = key_ids(&root);
        assert!(root_ski.is_some(), "the root has a subject key identifier");
        let ak = KeyPair::generate().unwrap();
        for kind in [RootKind::Tpm, RootKind::Software] {
            let issuer_der = der(&read(&ca.issuer_cert_path(kind)).unwrap());
            let (_, issuer) = X509Certificate::from_der(&issuer_der).unwrap();
            let (issuer_ski, issuer_aki) = key_ids(&issuer);
            assert!(issuer_ski.is_some());
            assert_eq!(
                issuer_aki, root_ski,
                "{kind:?} issuing CA names the root's key"
            );
            let cert_der = der(&ca.issue(kind, &ak.public_key_der(), "h").unwrap());
            let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
            let (_, aki) = key_ids(&cert);
            assert_eq!(
                aki, issuer_ski,
                "{kind:?} AK certificate names its issuer's key"
            );
        }
    }
}
