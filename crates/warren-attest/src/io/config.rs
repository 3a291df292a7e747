//! Which root of trust a state directory uses: `<state>/attest/root.json` (written by
//! `warren attest init` or `warren daemon --attest-root`), overridden by `WARREN_ATTEST_ROOT`,
//! `WARREN_TPM` and `WARREN_TPM_AGENT`, else detected; and opening it.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::evidence::kind::RootKind;
use crate::io::root::{RootError, RootOfTrust, SoftwareRoot};

/// The persisted choice of root for a state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootConfig {
    /// The root.
    pub root: RootKind,
    /// For `tpm`: how to reach it (`device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`).
    pub tpm: Option<String>,
    /// For `tpm`: the `warren-tpm` agent to use (default: [`crate::io::tpm::agent_path`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<PathBuf>,
    /// For `tpm`: the UEFI event log quotes carry (default: [`DEFAULT_BOOT_LOG`]);
    /// `warren attest init --boot-log PATH` names another (hosts whose firmware exposes none,
    /// and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_log: Option<PathBuf>,
    /// For `tpm`: the IMA measurement list quotes carry (default: [`DEFAULT_IMA_LOG`]);
    /// `warren attest init --ima-log PATH` names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_log: Option<PathBuf>,
}

/// Where the kernel exposes the firmware's event log.
pub const DEFAULT_BOOT_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// Where the kernel exposes IMA's measurement list (binary form).
pub const DEFAULT_IMA_LOG: &str = "/sys/kernel/security/ima/binary_runtime_measurements";

/// The default TPM: the kernel's resource manager.
pub const DEFAULT_TPM: &str = "device:/dev/tpmrm0";

impl RootConfig {
    /// The software root, with nothing else configured.
    pub fn software() -> RootConfig {
        RootConfig {
            root: RootKind::Software,
            tpm: None,
            agent: None,
            boot_log: None,
            ima_log: None,
        }
    }

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
                boot_log: None,
                ima_log: None,
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
        if Path::new("/dev/tpmrm0").exists() && crate::io::tpm::agent_path().is_some() {
            RootConfig {
                root: RootKind::Tpm,
                tpm: Some(DEFAULT_TPM.into()),
                agent: crate::io::tpm::agent_path(),
                boot_log: None,
                ima_log: None,
            }
        } else {
            RootConfig::software()
        }
    }

    /// Persists this choice for the state directory.
    pub fn save(&self, state_dir: &Path) -> Result<(), RootError> {
        let path = Self::path(state_dir);
        crate::io::log::EventLog::new(state_dir)
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
            RootKind::Tpm => Ok(Box::new(crate::io::tpm::TpmRoot::new(
                &dir,
                self.tpm.as_deref().unwrap_or(DEFAULT_TPM),
                self.agent.as_deref(),
            )?)),
        }
    }

    /// At kernel start: with a TPM root, Warren measures itself into PCR 15 unless something
    /// already was extended into it since the TPM was reset (`crate::io::tpm::TpmRoot::
    /// ensure_measured`). Returns whether it did; a software root has no PCRs (`false`).
    pub fn measure_self(&self, state_dir: &Path) -> Result<bool, RootError> {
        match self.root {
            RootKind::Software => Ok(false),
            RootKind::Tpm => crate::io::tpm::TpmRoot::new(
                &state_dir.join("attest"),
                self.tpm.as_deref().unwrap_or(DEFAULT_TPM),
                self.agent.as_deref(),
            )?
            .ensure_measured(),
        }
    }
}
