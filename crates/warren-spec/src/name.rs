//! Environment names: what a user types after `--name`, and what becomes the hostname, the
//! cgroup leaf and the lock file of an environment. The rules are those of a DNS label, so a name
//! is always a valid hostname and a safe path component.

use std::fmt;
use std::str::FromStr;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty.
    #[error("environment name is empty")]
    Empty,
    /// The name was longer than a hostname label may be.
    #[error("environment name {name:?} is {len} bytes long; at most 63 are allowed")]
    TooLong {
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name had a character outside `[a-z0-9-]` or started or ended with `-`.
    #[error(
        "environment name {name:?} is not valid: use lowercase letters, digits and '-', \
         starting and ending with a letter or digit"
    )]
    BadCharacter {
        /// The rejected name.
        name: String,
    },
}

/// A validated environment name: 1 to 63 bytes of `[a-z0-9-]`, not starting or ending in `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct EnvName(String);

impl EnvName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EnvName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > 63 {
            return Err(NameError::TooLong {
                name: s.to_owned(),
                len: s.len(),
            });
        }
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !s.chars().all(ok_char) || s.starts_with('-') || s.ends_with('-') {
            return Err(NameError::BadCharacter { name: s.to_owned() });
        }
        Ok(EnvName(s.to_owned()))
    }
}

/// Reads a name from a string, applying the same rules as [`FromStr`].
impl<'de> serde::Deserialize<'de> for EnvName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<&str, &str>) {
        let got = input.parse::<EnvName>();
        match (got, expect) {
            (Ok(n), Ok(want)) => assert_eq!(n.as_str(), want),
            (Err(e), Err(fragment)) => {
                let msg = e.to_string();
                assert!(msg.contains(fragment), "error {msg:?} lacks {fragment:?}");
            }
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn names() {
        check("web", Ok("web"));
        check("db-1", Ok("db-1"));
        check("a", Ok("a"));
        check("", Err("empty"));
        check("Web", Err("not valid"));
        check("-web", Err("not valid"));
        check("web-", Err("not valid"));
        check("we/b", Err("not valid"));
        check("..", Err("not valid"));
        check(&"a".repeat(64), Err("at most 63"));
        check(&"a".repeat(63), Ok(&"a".repeat(63)));
    }

    #[test]
    fn deserialize_validates() {
        let n: EnvName = serde_json::from_str("\"db-1\"").unwrap();
        assert_eq!(n.as_str(), "db-1");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"db-1\"");
        let e = serde_json::from_str::<EnvName>("\"Db\"").unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
        assert!(serde_json::from_str::<EnvName>("3").is_err());
    }
}
