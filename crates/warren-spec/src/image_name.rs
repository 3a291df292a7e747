//! Image names: what a user types after `warren image import --name`, `warren run --image` and
//! `image = { name = "..." }`, and the key of Warren's image index.
//!
//! The syntax is Docker's reference without a digest: a repository of lowercase path
//! components (`[a-z0-9]` runs joined by `.`, `_`, `-`), separated by `/`, optionally with a
//! registry-like first component holding a port (`localhost:5000/app`), then an optional
//! `:TAG` (`[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 128 bytes). A name without a tag means
//! `:latest`, as in Docker, so `busybox` and `busybox:latest` are the same image.

use std::fmt;
use std::str::FromStr;

/// Why an image name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageNameError {
    /// The name was empty.
    #[error("image name is empty")]
    Empty,
    /// The name was longer than 255 bytes.
    #[error("image name {name:?} is {len} bytes long; at most 255 are allowed")]
    TooLong {
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The repository part broke the syntax.
    #[error(
        "image name {name:?} is not valid: use lowercase path components of letters, digits \
         and '.', '_', '-' separated by '/', optionally followed by :TAG"
    )]
    BadRepository {
        /// The rejected name.
        name: String,
    },
    /// The tag broke the syntax.
    #[error(
        "image tag {tag:?} in {name:?} is not valid: use letters, digits, '_', '.' and '-', \
         not starting with '.' or '-', at most 128 bytes"
    )]
    BadTag {
        /// The rejected name.
        name: String,
        /// The rejected tag.
        tag: String,
    },
}

/// A validated image name, always with its tag (`busybox:latest`).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct ImageName(String);

impl From<ImageName> for String {
    fn from(n: ImageName) -> String {
        n.0
    }
}

impl TryFrom<String> for ImageName {
    type Error = ImageNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl ImageName {
    /// The full name with its tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The repository part (everything before the tag).
    pub fn repository(&self) -> &str {
        self.split().0
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        self.split().1
    }

    fn split(&self) -> (&str, &str) {
        // Validated: a tag is always present and follows the last ':' after the last '/'.
        self.0.rsplit_once(':').unwrap_or((&self.0, "latest"))
    }
}

fn component_ok(c: &str) -> bool {
    // [a-z0-9]+ ([._-] [a-z0-9]+)* -- separators single and between alphanumerics.
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    b.iter()
        .all(|&x| alnum(x) || matches!(x, b'.' | b'_' | b'-'))
        && !b
            .windows(2)
            .any(|w| !alnum(w[0]) && !alnum(w[1]) && w != b"__")
}

fn host_ok(c: &str) -> bool {
    // A registry host with a port: `localhost:5000`.
    match c.split_once(':') {
        Some((h, p)) => component_ok(h) && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

impl FromStr for ImageName {
    type Err = ImageNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ImageNameError::Empty);
        }
        if s.len() > 255 {
            return Err(ImageNameError::TooLong {
                name: s.to_owned(),
                len: s.len(),
            });
        }
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
            None => (s, None),
        };
        let bad = || ImageNameError::BadRepository { name: s.to_owned() };
        let parts: Vec<&str> = repo.split('/').collect();
        for (i, p) in parts.iter().enumerate() {
            let ok = component_ok(p) || (i == 0 && parts.len() > 1 && host_ok(p));
            if !ok {
                return Err(bad());
            }
        }
        let tag = tag.unwrap_or("latest");
        if !tag_ok(tag) {
            return Err(ImageNameError::BadTag {
                name: s.to_owned(),
                tag: tag.to_owned(),
            });
        }
        Ok(ImageName(format!("{repo}:{tag}")))
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_style_names_and_adds_latest() {
        for (input, full) in [
            ("busybox", "busybox:latest"),
            ("busybox:1.36", "busybox:1.36"),
            (
                "library/busybox:stable-glibc",
                "library/busybox:stable-glibc",
            ),
            ("my_app.v2-x", "my_app.v2-x:latest"),
            (
                "localhost:5000/team/app:v1.2",
                "localhost:5000/team/app:v1.2",
            ),
            ("a__b", "a__b:latest"),
        ] {
            let n: ImageName = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(n.as_str(), full);
        }
        let n: ImageName = "localhost:5000/app:v1".parse().unwrap();
        assert_eq!((n.repository(), n.tag()), ("localhost:5000/app", "v1"));
    }

    #[test]
    fn rejects_bad_names_with_the_reason() {
        assert_eq!("".parse::<ImageName>(), Err(ImageNameError::Empty));
        for bad in [
            "Busybox",
            "/abs",
            "a//b",
            "a/",
            "-a",
            "a-",
            "a..b",
            "../x",
            "a b",
            "a/../b",
            "a:",
            "a:.x",
            "a:-x",
            "a@sha256:00",
        ] {
            let e = bad.parse::<ImageName>().expect_err(bad);
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
        let long = "a".repeat(256);
        assert!(matches!(
            long.parse::<ImageName>(),
            Err(ImageNameError::TooLong { len: 256, .. })
        ));
    }
}
