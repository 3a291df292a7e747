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
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SubjectPublicKeyInfo,
};

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
            let cert = ca_params(cn, Some(0))?
                .signed_by(&key, &root, &root_key)
                .map_err(cert_err)?;
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
        Ok(PrivacyCa::new(dir))
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

    /// Adds a certificate (PEM) to the trusted EK issuers.
    pub fn trust_ek_ca(&self, pem: &str, name: &str) -> Result<(), CaError> {
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

    fn issuer(&self, root: RootKind) -> Result<(Certificate, KeyPair), CaError> {
        let stem = match root {
            RootKind::Tpm => "tpm-ca",
            RootKind::Software => "software-ca",
        };
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
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2049, 12, 31);
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
