//! Content digests (`sha256:<64 hex>`) and a reader that hashes and counts what passes through
//! it, so a blob is verified in the same pass that stores or unpacks it.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A `sha256:` content digest. Other algorithms are refused: every tool writes sha256, and a
/// store keyed by one algorithm cannot hold the same content twice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("digest {0:?} is not valid: expected sha256: followed by 64 lowercase hex digits")]
pub struct BadDigest(pub String);

impl Digest {
    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }
}

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(h)
                if h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Digest { hex: h.to_owned() })
            }
            _ => Err(BadDigest(s.to_owned())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A reader that hashes and counts every byte read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Read what is left to the end (so that the digest covers the whole stream), at most
    /// `limit` more bytes; returns how many were read, or `None` when the limit was reached.
    pub fn drain(&mut self, limit: u64) -> io::Result<Option<u64>> {
        let n = io::copy(&mut self.by_ref().take(limit + 1), &mut io::sink())?;
        Ok((n <= limit).then_some(n))
    }

    /// The digest of everything read, and the count.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest {
                hex: hex::encode(self.hasher.finalize()),
            },
            self.count,
        )
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_sha256_with_64_lowercase_hex() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(d.hex(), "a".repeat(64));
        for bad in [
            "sha256:".to_owned(),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:../{}", "a".repeat(61)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_reader_matches_the_digest_of_the_bytes() {
        let data = b"hello world".repeat(1000);
        let mut r = HashReader::new(&data[..]);
        let mut first = [0u8; 100];
        r.read_exact(&mut first).unwrap();
        assert_eq!(r.drain(1 << 20).unwrap(), Some(data.len() as u64 - 100));
        let (d, n) = r.finish();
        assert_eq!((d, n), (Digest::of(&data), data.len() as u64));
        let mut r = HashReader::new(&data[..]);
        assert_eq!(r.drain(10).unwrap(), None, "the limit stops a long stream");
    }
}
