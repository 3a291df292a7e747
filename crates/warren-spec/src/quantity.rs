//! Quantities a user writes as text: byte sizes (`64M`, `1.5G`, `512k`, `1048576`) and cpu
//! shares (`0.5` = half of one cpu). Suffixes are binary (K = 1024), as in Docker's `--memory`.

use std::fmt;
use std::str::FromStr;

/// Why a quantity was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text was not a number followed by an optional unit.
    #[error(
        "invalid size {input:?}: expected a number with an optional unit b, k, m, g or t (e.g. 64M)"
    )]
    BadSize {
        /// The rejected text.
        input: String,
    },
    /// The size was zero or does not fit in 64 bits.
    #[error("invalid size {input:?}: {why}")]
    SizeOutOfRange {
        /// The rejected text.
        input: String,
        /// What is wrong with its value.
        why: &'static str,
    },
    /// The cpu share was not a positive decimal number.
    #[error("invalid cpu count {input:?}: expected a positive decimal number such as 0.5 or 2")]
    BadCpus {
        /// The rejected text.
        input: String,
    },
}

/// A number of bytes, parsed from text such as `64M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QuantityError::BadSize {
            input: s.to_owned(),
        };
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
            return Err(bad());
        }
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit
            .strip_suffix("ib")
            .or_else(|| unit.strip_suffix('b'))
            .unwrap_or(&unit);
        let mult: u64 = match unit {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            _ => return Err(bad()),
        };
        let bytes = match num.split_once('.') {
            None => num
                .parse::<u64>()
                .map_err(|_| QuantityError::SizeOutOfRange {
                    input: s.to_owned(),
                    why: "too large",
                })?
                .checked_mul(mult),
            Some((whole, frac)) => {
                if frac.contains('.') || frac.len() > 9 {
                    return Err(bad());
                }
                let whole: u64 = whole.parse().map_err(|_| bad())?;
                let scale = 10u64.pow(frac.len() as u32);
                let frac: u64 = frac.parse().map_err(|_| bad())?;
                whole.checked_mul(mult).and_then(|w| {
                    (frac as u128 * mult as u128 / scale as u128)
                        .try_into()
                        .ok()
                        .and_then(|f: u64| w.checked_add(f))
                })
            }
        };
        match bytes {
            None => Err(QuantityError::SizeOutOfRange {
                input: s.to_owned(),
                why: "too large",
            }),
            Some(0) => Err(QuantityError::SizeOutOfRange {
                input: s.to_owned(),
                why: "must be above zero",
            }),
            Some(b) => Ok(ByteSize(b)),
        }
    }
}

/// Reads a size either from text (`"64M"`, through [`FromStr`]) or from a whole number of
/// bytes, the form [`serde::Serialize`] writes; zero is rejected either way.
impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor {
            expecting: "a size such as \"64M\" or a number of bytes above zero",
            parse: |s| s.parse::<ByteSize>().map(|b| b.0),
        })
        .map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("T", 1 << 40),
            ("G", 1 << 30),
            ("M", 1 << 20),
            ("K", 1 << 10),
        ];
        for (u, m) in UNITS {
            if self.0 >= m && self.0 % m == 0 {
                return write!(f, "{}{u}", self.0 / m);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A share of cpu time, in millionths of one cpu (`0.5` = 500 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CpuQuota {
    /// Millionths of one cpu.
    pub micros: u64,
}

impl CpuQuota {
    /// The CFS period Warren uses, in microseconds (the kernel default).
    pub const PERIOD_US: u64 = 100_000;

    /// The CFS quota for [`Self::PERIOD_US`], in microseconds (at least 1000, the kernel minimum).
    pub fn quota_us(&self) -> u64 {
        (self.micros * Self::PERIOD_US / 1_000_000).max(1000)
    }
}

impl FromStr for CpuQuota {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QuantityError::BadCpus {
            input: s.to_owned(),
        };
        let t = s.trim();
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let digits = |x: &str| x.chars().all(|c| c.is_ascii_digit());
        if !digits(whole) || !digits(frac) || frac.len() > 6 {
            return Err(bad());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let frac_micros: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse::<u64>().map_err(|_| bad())? * 10u64.pow(6 - frac.len() as u32)
        };
        let micros = whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(frac_micros));
        match micros {
            Some(m) if m > 0 && whole <= 4096 => Ok(CpuQuota { micros: m }),
            _ => Err(bad()),
        }
    }
}

/// Reads a cpu share either from text (`"0.5"`, through [`FromStr`]) or from a whole number of
/// millionths of a cpu, the form [`serde::Serialize`] writes. A bare integer therefore means
/// micro-cpus here, not cpus: the manifest parser reads `cpus = 2` itself and does not go
/// through this impl.
impl<'de> serde::Deserialize<'de> for CpuQuota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor {
            expecting: "a cpu share such as \"0.5\" or a number of millionths of a cpu above zero",
            parse: |s| s.parse::<CpuQuota>().map(|c| c.micros),
        })
        .map(|micros| CpuQuota { micros })
    }
}

/// Shared by the two `Deserialize` impls: text goes through `parse`, a positive integer is
/// taken as the serialized unit.
struct QuantityVisitor {
    expecting: &'static str,
    parse: fn(&str) -> Result<u64, QuantityError>,
}

impl serde::de::Visitor<'_> for QuantityVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        if v == 0 {
            return Err(E::invalid_value(serde::de::Unexpected::Unsigned(0), &self));
        }
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
        }
    }
}

impl fmt::Display for CpuQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.micros / 1_000_000;
        let frac = self.micros % 1_000_000;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:06}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(input: &str) -> Result<u64, String> {
        input
            .parse::<ByteSize>()
            .map(|b| b.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sizes() {
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("64m"), Ok(64 << 20));
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("64mb"), Ok(64 << 20));
        assert_eq!(size("16k"), Ok(16 << 10));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(size("1.5G"), Ok(3 << 29));
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("2t"), Ok(2 << 40));
        for bad in ["", "M", "12Q", "-1M", "1..5M", ".5M", "5.M", "1 2M", "abc"] {
            let e = size(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e} should quote {bad:?}");
        }
        assert!(size("0").unwrap_err().contains("above zero"));
        assert!(
            size("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(size("20000000000T").unwrap_err().contains("too large"));
    }

    #[test]
    fn size_display_round_trips() {
        for s in ["64M", "1G", "16K", "4097"] {
            assert_eq!(s.parse::<ByteSize>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn cpus() {
        let c = |s: &str| {
            s.parse::<CpuQuota>()
                .map(|c| c.micros)
                .map_err(|e| e.to_string())
        };
        assert_eq!(c("0.5"), Ok(500_000));
        assert_eq!(c("2"), Ok(2_000_000));
        assert_eq!(c(".25"), Ok(250_000));
        assert_eq!(c("1.000001"), Ok(1_000_001));
        for bad in ["", "0", "0.0", "-1", "1.2.3", "x", "1.0000001", "5000"] {
            assert!(c(bad).unwrap_err().contains("invalid cpu count"), "{bad}");
        }
        assert_eq!("0.5".parse::<CpuQuota>().unwrap().quota_us(), 50_000);
        assert_eq!("0.001".parse::<CpuQuota>().unwrap().quota_us(), 1000);
        assert_eq!("0.5".parse::<CpuQuota>().unwrap().to_string(), "0.5");
    }

    #[test]
    fn deserialize_round_trips_and_validates() {
        let b: ByteSize = serde_json::from_str("\"64M\"").unwrap();
        assert_eq!(b, ByteSize(64 << 20));
        let again: ByteSize = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(again, b);
        let c: CpuQuota = serde_json::from_str("\"0.5\"").unwrap();
        assert_eq!(c.micros, 500_000);
        let again: CpuQuota = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        for bad in ["\"12Q\"", "0", "-3", "1.5", "true"] {
            assert!(serde_json::from_str::<ByteSize>(bad).is_err(), "{bad}");
        }
        for bad in ["\"x\"", "0", "-1", "\"0\""] {
            assert!(serde_json::from_str::<CpuQuota>(bad).is_err(), "{bad}");
        }
        let e = serde_json::from_str::<ByteSize>("\"12Q\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid size \"12Q\""), "{e}");
    }
}
