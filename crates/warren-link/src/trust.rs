//! Whose signatures a host believes: the [`Trust`] trait, and its first implementation, a
//! trusted-keys file. The attestation work (a Privacy CA certifying each host's key) will be a
//! second implementation of the same trait; nothing else changes.
//!
//! The trusted-keys file has one host per line, `NAME ed25519:HEX` (the 32-byte public key in
//! hex, as `warren link key` prints it); blank lines and lines starting with `#` are ignored.
//!
//! A host's own key is a 32-byte Ed25519 seed in hex, in a file readable by root only.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

/// Who is trusted to sign for which host.
pub trait Trust {
    /// The key that signs for `host`, or why there is none.
    fn verifying_key(&self, host: &str) -> Result<VerifyingKey, TrustError>;
}

/// Why a host's signature cannot be believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// No key is trusted for that host.
    #[error("host {host:?} is not in the trusted keys")]
    UnknownHost {
        /// The host named.
        host: String,
    },
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A line does not parse.
    #[error("{path}:{line}: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A private key file is readable by others than its owner.
    #[error("{path}: the host key is readable by group or others (mode {mode:o}); chmod 600 it")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The hosts and keys of a trusted-keys file.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl TrustedKeys {
    /// Trust exactly these keys.
    pub fn from_keys(keys: impl IntoIterator<Item = (String, VerifyingKey)>) -> TrustedKeys {
        TrustedKeys {
            keys: keys.into_iter().collect(),
        }
    }

    /// Parses the text of a trusted-keys file (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<TrustedKeys, KeyFileError> {
        let mut keys = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| KeyFileError::Syntax {
                path: path.to_owned(),
                line: i + 1,
                reason,
            };
            let mut parts = line.split_whitespace();
            let (Some(host), Some(key), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("expected `HOST ed25519:HEX`".into()));
            };
            let key = parse_public(key).map_err(err)?;
            if keys.insert(host.to_owned(), key).is_some() {
                return Err(err(format!("host {host:?} is listed twice")));
            }
        }
        Ok(TrustedKeys { keys })
    }

    /// Reads a trusted-keys file.
    pub fn load(path: &Path) -> Result<TrustedKeys, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        TrustedKeys::parse(&text, path)
    }

    /// The hosts trusted.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

impl Trust for TrustedKeys {
    fn verifying_key(&self, host: &str) -> Result<VerifyingKey, TrustError> {
        self.keys
            .get(host)
            .copied()
            .ok_or_else(|| TrustError::UnknownHost {
                host: host.to_owned(),
            })
    }
}

/// `ed25519:HEX` → key.
pub fn parse_public(s: &str) -> Result<VerifyingKey, String> {
    let hex_part = s
        .strip_prefix("ed25519:")
        .ok_or_else(|| format!("{s:?} does not start with \"ed25519:\""))?;
    let bytes: [u8; 32] = hex::decode(hex_part)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{s:?} is not 32 bytes of hex"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| format!("{s:?} is not an Ed25519 public key"))
}

/// `ed25519:HEX` of a public key.
pub fn format_public(key: &VerifyingKey) -> String {
    format!("ed25519:{}", hex::encode(key.as_bytes()))
}

/// Reads the host's signing key (a hex seed), creating it (mode 600, from the kernel's random
/// source) if the file does not exist.
pub fn load_or_create_host_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Exposed {
                    path: path.to_owned(),
                    mode,
                });
            }
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyFileError::Syntax {
                    path: path.to_owned(),
                    line: 1,
                    reason: "expected 32 bytes of hex (an Ed25519 seed)".into(),
                })?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty())
                .map_err(|e| io(e.into()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            writeln!(f, "{}", hex::encode(seed)).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_keys_file_parses_and_names_its_errors() {
        let k = SigningKey::from_bytes(&[3; 32]).verifying_key();
        let text = format!("# peers\n\nalpha {}\n", format_public(&k));
        let t = TrustedKeys::parse(&text, Path::new("keys")).unwrap();
        assert_eq!(t.verifying_key("alpha").unwrap(), k);
        assert!(t.verifying_key("beta").is_err());
        let bad = TrustedKeys::parse("alpha ed25519:zz\n", Path::new("keys")).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "keys:1: \"ed25519:zz\" is not 32 bytes of hex"
        );
        let twice = format!("a {0}\na {0}\n", format_public(&k));
        let e = TrustedKeys::parse(&twice, Path::new("keys")).unwrap_err();
        assert_eq!(e.to_string(), "keys:2: host \"a\" is listed twice");
    }

    #[test]
    fn the_host_key_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/host.key");
        let a = load_or_create_host_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create_host_key(&path).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_host_key(&path),
            Err(KeyFileError::Exposed { .. })
        ));
    }
}
