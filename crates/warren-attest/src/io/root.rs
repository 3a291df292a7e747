//! Roots of trust behind one trait: the register the event log is extended into, and the key
//! that signs quotes over it.
//!
//! * `tpm` (`crate::io::tpm::TpmRoot`): an NV extend index in a TPM 2.0 that only Warren can
//!   write, certified by an attestation key that never leaves the TPM; reached through the
//!   `warren-tpm` agent.
//! * `software` ([`SoftwareRoot`]): the register is a file and the key a P-256 key on disk
//!   (`0600`). Every quote it makes says `root: software`.
//!
//! Which root a state directory uses, and opening it, is `crate::io::config`.

use std::io;
use std::path::{Path, PathBuf};

pub use crate::evidence::kind::{RootKind, SOFTWARE_MAGIC};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};

/// Why a root of trust failed.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// A file of the root could not be used.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The software key has permissions that let others read it.
    #[error("software key {} has mode {mode:o}; it must be 0600", path.display())]
    KeyMode {
        /// The key file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A file of the root holds something unexpected.
    #[error("{} is malformed: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The TPM or its agent failed.
    #[error("tpm: {0}")]
    Tpm(String),
    /// The register restarted from zero behind a log that already holds records: a TPM's
    /// anchor is cleared at every TPM reset (a reboot), the log in the data directory is not.
    #[error(
        "the TPM was reset (a reboot) since the event log's last record: its anchor starts again \
         from zero"
    )]
    AnchorReset,
}

/// What a root signs for one quote.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The signed bytes: a `TPMS_ATTEST` (tpm) or [`SOFTWARE_MAGIC`] || qualifying || register.
    pub attest: Vec<u8>,
    /// The signature over `attest` (ECDSA P-256 with SHA-256, DER).
    pub signature: Vec<u8>,
    /// The attestation key: its `TPMT_PUBLIC` (tpm) or DER `SubjectPublicKeyInfo` (software).
    pub ak_public: Option<Vec<u8>>,
    /// tpm: the `TPM2_Quote` of the boot PCRs over the same qualifying value.
    pub boot: Option<PcrQuote>,
    /// The NV index's `TPMS_NV_PUBLIC` (tpm only).
    pub nv_public: Option<Vec<u8>>,
}

/// A `TPM2_Quote` of the boot PCRs ([`crate::evidence::bootlog::BOOT_PCRS`]).
#[derive(Debug, Clone)]
pub struct PcrQuote {
    /// The `TPMS_ATTEST`.
    pub attest: Vec<u8>,
    /// Its signature (DER).
    pub signature: Vec<u8>,
    /// The PCR values read next to it.
    pub pcrs: std::collections::BTreeMap<u32, [u8; 32]>,
    /// The records of Warren's PCR 15 (`<state>/attest/self.jsonl`).
    pub warren_log: Vec<crate::evidence::selfpcr::SelfRecord>,
}

/// A root of trust.
pub trait RootOfTrust {
    /// Which kind it is.
    fn kind(&self) -> RootKind;
    /// Extends the register with a record digest.
    fn extend(&mut self, digest: &[u8; 32]) -> Result<(), RootError>;
    /// The register's current value.
    fn read(&mut self) -> Result<[u8; 32], RootError>;
    /// Signs the register together with `qualifying` (the hash of nonce and subject).
    fn quote(&mut self, qualifying: &[u8; 32]) -> Result<Evidence, RootError>;
    /// The attestation key's public key, as DER `SubjectPublicKeyInfo`.
    fn ak_spki(&mut self) -> Result<Vec<u8>, RootError>;
    /// [`Self::extend`] for a record appended after `earlier` records of the log. A root whose
    /// register can restart behind the log's back (a TPM's anchor, at every TPM reset) refuses
    /// with [`RootError::AnchorReset`] when `earlier > 0` and its register is unwritten.
    fn extend_after(&mut self, digest: &[u8; 32], earlier: u64) -> Result<(), RootError> {
        let _ = earlier;
        self.extend(digest)
    }
    /// [`Self::quote`] of a log holding `records` records, refusing as [`Self::extend_after`]
    /// does when the register restarted behind it.
    fn quote_after(&mut self, qualifying: &[u8; 32], records: u64) -> Result<Evidence, RootError> {
        let _ = records;
        self.quote(qualifying)
    }
}

/// The software root: `<attest>/software.key` (P-256, PKCS#8 PEM, 0600) and
/// `<attest>/software.reg` (the register, hex).
#[derive(Debug, Clone)]
pub struct SoftwareRoot {
    dir: PathBuf,
}

impl SoftwareRoot {
    /// The software root in the attestation directory `dir`.
    pub fn new(dir: &Path) -> Self {
        SoftwareRoot {
            dir: dir.to_owned(),
        }
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("software.key")
    }

    fn reg_path(&self) -> PathBuf {
        self.dir.join("software.reg")
    }

    /// The signing key, created (0600) on first use.
    pub fn key(&self) -> Result<SigningKey, RootError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = self.key_path();
        let io_err = |what, path: &Path| {
            let path = path.to_owned();
            move |source| RootError::Io { what, path, source }
        };
        match std::fs::metadata(&path) {
            Ok(meta) => {
                if meta.mode() & 0o077 != 0 {
                    return Err(RootError::KeyMode {
                        path,
                        mode: meta.mode() & 0o7777,
                    });
                }
                let pem = std::fs::read_to_string(&path).map_err(io_err("read", &path))?;
                SigningKey::from_pkcs8_pem(&pem).map_err(|e| RootError::Malformed {
                    path,
                    detail: e.to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))?;
                let key = SigningKey::random(&mut rand_core::OsRng);
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| RootError::Tpm(e.to_string()))?;
                let tmp = self
                    .dir
                    .join(format!("software.key.{}", std::process::id()));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io_err("create", &tmp))?;
                io::Write::write_all(&mut f, pem.as_bytes()).map_err(io_err("write", &tmp))?;
                // Two first uses racing: the first rename wins and both use its key.
                if std::fs::hard_link(&tmp, &path).is_err() && !path.exists() {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(RootError::Io {
                        what: "install",
                        path,
                        source: io::Error::other("could not link the new key"),
                    });
                }
                let _ = std::fs::remove_file(&tmp);
                self.key()
            }
            Err(source) => Err(RootError::Io {
                what: "stat",
                path,
                source,
            }),
        }
    }
}

impl RootOfTrust for SoftwareRoot {
    fn kind(&self) -> RootKind {
        RootKind::Software
    }

    fn extend(&mut self, digest: &[u8; 32]) -> Result<(), RootError> {
        let reg = self.read()?;
        let next = hex::encode(crate::evidence::record::extend(&reg, digest));
        let path = self.reg_path();
        let io_err = |source| RootError::Io {
            what: "write",
            path: path.clone(),
            source,
        };
        // An existing register of exactly its size is overwritten in place: no truncate and
        // no rename, either of which makes ext4 (`auto_da_alloc`) start writing the file out
        // on the launch path. 64 bytes at offset 0 lie in one sector, so a crash leaves the
        // old or the new value on disk, as the rename did; readers hold the log's lock, as
        // this writer does, so none sees a half-written value. The first write (or a register
        // of another length) goes through a new file renamed into place.
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
            if f.metadata().is_ok_and(|m| m.len() == next.len() as u64) {
                let n = rustix::io::pwrite(&f, next.as_bytes(), 0).map_err(|e| io_err(e.into()))?;
                if n == next.len() {
                    return Ok(());
                }
            }
        }
        let tmp = self
            .dir
            .join(format!("software.reg.{}", std::process::id()));
        std::fs::write(&tmp, &next)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io_err)
    }

    fn read(&mut self) -> Result<[u8; 32], RootError> {
        let path = self.reg_path();
        match std::fs::read_to_string(&path) {
            Ok(s) => hex::decode(s.trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(RootError::Malformed {
                    path,
                    detail: "not 32 bytes of hex".into(),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok([0; 32]),
            Err(source) => Err(RootError::Io {
                what: "read",
                path,
                source,
            }),
        }
    }

    fn quote(&mut self, qualifying: &[u8; 32]) -> Result<Evidence, RootError> {
        let key = self.key()?;
        let mut attest = SOFTWARE_MAGIC.to_vec();
        attest.extend_from_slice(qualifying);
        attest.extend_from_slice(&self.read()?);
        let sig: Signature = key.sign(&attest);
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| RootError::Tpm(e.to_string()))?;
        Ok(Evidence {
            attest,
            signature: sig.to_der().as_bytes().to_vec(),
            ak_public: Some(spki.as_bytes().to_vec()),
            nv_public: None,
            boot: None,
        })
    }

    fn ak_spki(&mut self) -> Result<Vec<u8>, RootError> {
        let key = self.key()?;
        key.verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|e| RootError::Tpm(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_register_is_extended_in_place_once_it_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let mut root = SoftwareRoot::new(tmp.path());
        let (a, b) = ([1u8; 32], [2u8; 32]);
        root.extend(&a).unwrap();
        let first = std::fs::metadata(root.reg_path()).unwrap();
        root.extend(&b).unwrap();
        let second = std::fs::metadata(root.reg_path()).unwrap();
        // The same file, overwritten: no rename.
        assert_eq!(first.ino(), second.ino());
        assert_eq!(second.len(), 64);
        let zero = [0u8; 32];
        let want = crate::evidence::record::extend(&crate::evidence::record::extend(&zero, &a), &b);
        assert_eq!(root.read().unwrap(), want);
    }

    #[test]
    fn a_register_of_another_length_is_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let mut root = SoftwareRoot::new(tmp.path());
        let start = [7u8; 32];
        // Written by hand with a newline: 65 bytes, still a valid register.
        std::fs::write(root.reg_path(), format!("{}\n", hex::encode(start))).unwrap();
        let before = std::fs::metadata(root.reg_path()).unwrap().ino();
        root.extend(&[3u8; 32]).unwrap();
        let after = std::fs::metadata(root.reg_path()).unwrap();
        assert_ne!(before, after.ino());
        assert_eq!(after.len(), 64);
        assert_eq!(
            root.read().unwrap(),
            crate::evidence::record::extend(&start, &[3u8; 32])
        );
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("software.reg")]);
    }
}
