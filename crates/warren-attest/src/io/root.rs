//! Roots of trust behind one trait: the register the event log is extended into, and the key
//! that signs quotes over it.
//!
//! * `tpm` ([`crate::tpm::TpmRoot`]): an NV extend index in a TPM 2.0 that only Warren can
//!   write, certified by an attestation key that never leaves the TPM; reached through the
//!   `warren-tpm` agent.
//! * `software` ([`SoftwareRoot`]): the register is a file and the key a P-256 key on disk
//!   (`0600`). Every quote it makes says `root: software`.
//!
//! Which root a state directory uses is its configuration (`<state>/attest/root.json`, written
//! by `warren attest init` or `warren daemon --attest-root`), overridden by the environment
//! variables `WARREN_ATTEST_ROOT` and `WARREN_TPM`; with neither, a host with `/dev/tpmrm0`
//! and the `warren-tpm` agent uses the TPM and any other host the software root.

use std::io;
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
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
    /// The NV index's `TPMS_NV_PUBLIC` (tpm only).
    pub nv_public: Option<Vec<u8>>,
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
}

/// The persisted choice of root for a state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootConfig {
    /// The root.
    pub root: RootKind,
    /// For `tpm`: how to reach it (`device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`).
    pub tpm: Option<String>,
    /// For `tpm`: the `warren-tpm` agent to use (default: [`crate::tpm::agent_path`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<PathBuf>,
}

/// The default TPM: the kernel's resource manager.
pub const DEFAULT_TPM: &str = "device:/dev/tpmrm0";

impl RootConfig {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("attest").join("root.json")
    }

    /// The configuration in force: the environment, else the file, else auto-detection.
    pub fn resolve(state_dir: &Path) -> Result<RootConfig, RootError> {
        let env_root = std::env::var("WARREN_ATTEST_ROOT")
            .ok()
            .filter(|s| !s.is_empty());
        let env_tpm = std::env::var("WARREN_TPM").ok().filter(|s| !s.is_empty());
        if let Some(r) = env_root {
            let root = r.parse().map_err(RootError::Tpm)?;
            return Ok(RootConfig {
                root,
                tpm: env_tpm,
                agent: None,
            });
        }
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                return serde_json::from_slice(&bytes).map_err(|e| RootError::Malformed {
                    path,
                    detail: e.to_string(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RootError::Io {
                    what: "read",
                    path,
                    source,
                });
            }
        }
        Ok(Self::detect())
    }

    /// A TPM when the host has one and the agent is installed, else software.
    pub fn detect() -> RootConfig {
        if Path::new("/dev/tpmrm0").exists() && crate::tpm::agent_path().is_some() {
            RootConfig {
                root: RootKind::Tpm,
                tpm: Some(DEFAULT_TPM.into()),
                agent: crate::tpm::agent_path(),
            }
        } else {
            RootConfig {
                root: RootKind::Software,
                tpm: None,
                agent: None,
            }
        }
    }

    /// Persists this choice for the state directory.
    pub fn save(&self, state_dir: &Path) -> Result<(), RootError> {
        let path = Self::path(state_dir);
        crate::log::EventLog::new(state_dir)
            .ensure_dir()
            .map_err(|e| RootError::Tpm(e.to_string()))?;
        std::fs::write(&path, serde_json::to_vec_pretty(self).unwrap_or_default()).map_err(
            |source| RootError::Io {
                what: "write",
                path,
                source,
            },
        )
    }

    /// Opens the configured root.
    pub fn open(&self, state_dir: &Path) -> Result<Box<dyn RootOfTrust>, RootError> {
        let dir = state_dir.join("attest");
        match self.root {
            RootKind::Software => Ok(Box::new(SoftwareRoot::new(&dir))),
            RootKind::Tpm => Ok(Box::new(crate::tpm::TpmRoot::new(
                &dir,
                self.tpm.as_deref().unwrap_or(DEFAULT_TPM),
                self.agent.as_deref(),
            )?)),
        }
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
        let next = crate::log::extend(&reg, digest);
        let path = self.reg_path();
        let tmp = self
            .dir
            .join(format!("software.reg.{}", std::process::id()));
        std::fs::write(&tmp, hex::encode(next))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| RootError::Io {
                what: "write",
                path,
                source,
            })
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
