//! The IMA measurement list (Linux's Integrity Measurement Architecture, PCR 10), template
//! `ima-ng` (and `ima-sig`, whose first two fields are the same), in the kernel's two forms:
//! `binary_runtime_measurements` and `ascii_runtime_measurements` under
//! `/sys/kernel/security/ima/`. Pure: parsing, the replay against the SHA-256 bank of PCR 10,
//! what the list says, and the `[ima]` policy.
//!
//! Binary entry (integers in the host's byte order, little-endian on x86 and arm64; Linux
//! Documentation/security/IMA-templates.rst, `ima_fs.c`):
//!
//! ```text
//! u32 pcr ‖ template digest (20 bytes, SHA-1) ‖ u32 len ‖ template name ‖ u32 len ‖ template data
//! template data (ima-ng) = u32 len ‖ algo ":" "\0" file digest      (field d-ng)
//!                        ‖ u32 len ‖ path "\0"                     (field n-ng)
//!                        [‖ u32 len ‖ signature]                   (ima-sig: field sig)
//! ```
//!
//! The template digest is SHA-1 of the template data; the SHA-256 bank of PCR 10 is extended
//! with SHA-256 of the same bytes. A violation (a file measured while open for writing, a
//! time-of-measure/time-of-use race) is listed with an all-zero template digest and extends
//! the PCR with all `0xff` bytes instead (`ima_main.c`). The ASCII form is one line per entry,
//! `PCR TEMPLATE-DIGEST-HEX TEMPLATE-NAME ALGO:FILE-DIGEST-HEX PATH`; the template data is
//! rebuilt from its fields exactly as above (as Keylime does).

use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The PCR IMA extends.
pub const IMA_PCR: u32 = 10;

/// One measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaEntry {
    /// The PCR it was extended into.
    pub pcr: u32,
    /// `ima-ng` or `ima-sig`.
    pub template: String,
    /// The template data, as hashed.
    pub data: Vec<u8>,
    /// An all-zero template digest in the list: a violation, extended as `0xff…`.
    pub violation: bool,
    /// The file digest's algorithm (`sha256`, `sha1`, …).
    pub algo: String,
    /// The file digest.
    pub file_digest: Vec<u8>,
    /// The path measured.
    pub path: String,
}

/// Why a list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IMA measurement list entry {entry}: {detail}")]
pub struct ImaError {
    /// The entry's position (from 0).
    pub entry: usize,
    /// What was wrong.
    pub detail: String,
}

fn u32le(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Splits ima-ng template data into (algo, file digest, path).
fn fields(data: &[u8]) -> Result<(String, Vec<u8>, String), String> {
    let n = u32le(data, 0).ok_or("truncated d-ng field")? as usize;
    let d = data.get(4..4 + n).ok_or("truncated d-ng field")?;
    let colon = d
        .iter()
        .position(|b| *b == b':')
        .ok_or("the d-ng field names no algorithm")?;
    if d.get(colon + 1) != Some(&0) {
        return Err("the d-ng field's algorithm is not followed by \":\\0\"".into());
    }
    let algo = std::str::from_utf8(&d[..colon])
        .map_err(|_| "the algorithm is not UTF-8")?
        .to_owned();
    let digest = d[colon + 2..].to_vec();
    let at = 4 + n;
    let m = u32le(data, at).ok_or("truncated n-ng field")? as usize;
    let name = data.get(at + 4..at + 4 + m).ok_or("truncated n-ng field")?;
    let name = name
        .strip_suffix(&[0])
        .ok_or("the path is not NUL-terminated")?;
    let path = String::from_utf8_lossy(name).into_owned();
    Ok((algo, digest, path))
}

/// Parses the binary list.
pub fn parse_binary(b: &[u8]) -> Result<Vec<ImaEntry>, ImaError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let entry = out.len();
        let bad = |detail: &str| ImaError {
            entry,
            detail: detail.to_owned(),
        };
        let pcr = u32le(b, at).ok_or_else(|| bad("truncated"))?;
        let digest = b.get(at + 4..at + 24).ok_or_else(|| bad("truncated"))?;
        let n = u32le(b, at + 24).ok_or_else(|| bad("truncated"))? as usize;
        if n > 255 {
            return Err(bad("template name longer than 255 bytes"));
        }
        let name = b
            .get(at + 28..at + 28 + n)
            .ok_or_else(|| bad("truncated template name"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        at += 28 + n;
        let m = u32le(b, at).ok_or_else(|| bad("truncated"))? as usize;
        let data = b
            .get(at + 4..at + 4 + m)
            .ok_or_else(|| bad("truncated template data"))?
            .to_vec();
        at += 4 + m;
        out.push(entry_of(entry, pcr, digest, name, data)?);
    }
    Ok(out)
}

fn entry_of(
    entry: usize,
    pcr: u32,
    template_digest: &[u8],
    template: String,
    data: Vec<u8>,
) -> Result<ImaEntry, ImaError> {
    let bad = |detail: String| ImaError { entry, detail };
    if template != "ima-ng" && template != "ima-sig" {
        return Err(bad(format!(
            "template {template:?}: only ima-ng and ima-sig are read"
        )));
    }
    let violation = template_digest.iter().all(|x| *x == 0);
    if !violation && Sha1::digest(&data).as_slice() != template_digest {
        return Err(bad(
            "the template digest is not the SHA-1 of the template data".into(),
        ));
    }
    let (algo, file_digest, path) = fields(&data).map_err(bad)?;
    Ok(ImaEntry {
        pcr,
        template,
        data,
        violation,
        algo,
        file_digest,
        path,
    })
}

/// Parses the ASCII list (`ima-ng` lines), rebuilding each entry's template data.
pub fn parse_ascii(text: &str) -> Result<Vec<ImaEntry>, ImaError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry = out.len();
        let bad = |detail: String| ImaError { entry, detail };
        let t: Vec<&str> = line.splitn(5, ' ').collect();
        let [pcr, digest, template, d, path] = t.as_slice() else {
            return Err(bad("expected PCR DIGEST TEMPLATE ALGO:DIGEST PATH".into()));
        };
        if *template != "ima-ng" {
            return Err(bad(format!(
                "template {template:?}: only ima-ng is read in ASCII"
            )));
        }
        let pcr: u32 = pcr.parse().map_err(|_| bad(format!("PCR {pcr:?}")))?;
        let digest = hex::decode(digest).map_err(|_| bad("template digest is not hex".into()))?;
        let (algo, fd) = d
            .split_once(':')
            .ok_or_else(|| bad("the file digest names no algorithm".into()))?;
        let fd = hex::decode(fd).map_err(|_| bad("file digest is not hex".into()))?;
        let data = template_data(algo, &fd, path);
        out.push(entry_of(entry, pcr, &digest, (*template).to_owned(), data)?);
    }
    Ok(out)
}

/// Parses either form: binary if it is not valid ASCII-list text.
pub fn parse(b: &[u8]) -> Result<Vec<ImaEntry>, ImaError> {
    match std::str::from_utf8(b) {
        Ok(t) if t.starts_with(|c: char| c.is_ascii_digit()) => parse_ascii(t),
        _ => parse_binary(b),
    }
}

/// The ima-ng template data of a file digest and a path.
pub fn template_data(algo: &str, digest: &[u8], path: &str) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&((algo.len() + 2 + digest.len()) as u32).to_le_bytes());
    d.extend_from_slice(algo.as_bytes());
    d.extend_from_slice(b":\0");
    d.extend_from_slice(digest);
    d.extend_from_slice(&((path.len() + 1) as u32).to_le_bytes());
    d.extend_from_slice(path.as_bytes());
    d.push(0);
    d
}

/// One binary entry of PCR 10 for a file digest and path (what the kernel appends); with
/// `violation`, the template digest is zero.
pub fn encode_binary(algo: &str, digest: &[u8], path: &str, violation: bool) -> Vec<u8> {
    let data = template_data(algo, digest, path);
    let mut b = IMA_PCR.to_le_bytes().to_vec();
    if violation {
        b.extend_from_slice(&[0; 20]);
    } else {
        b.extend_from_slice(&Sha1::digest(&data));
    }
    b.extend_from_slice(&6u32.to_le_bytes());
    b.extend_from_slice(b"ima-ng");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    b
}

/// What one entry extends the SHA-256 bank of its PCR with.
pub fn extension(e: &ImaEntry) -> [u8; 32] {
    if e.violation {
        [0xff; 32]
    } else {
        Sha256::digest(&e.data).into()
    }
}

/// What the list says: the files measured (SHA-256 digests, hex, with their paths), up to the
/// entry whose replay gives the quoted PCR 10.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImaFacts {
    /// How many entries explain the PCR.
    pub entries: usize,
    /// Violations among them.
    pub violations: usize,
    /// `(sha256 hex, path)` of each entry with a SHA-256 file digest.
    pub files: Vec<(String, String)>,
}

/// Replays the entries of PCR 10 and finds the prefix that gives `pcr10` (the list is read
/// after the quote, so it may have grown since). `None` when no prefix does.
pub fn replay_to(entries: &[ImaEntry], pcr10: &[u8; 32]) -> Option<ImaFacts> {
    let mut acc = [0u8; 32];
    let mut facts = ImaFacts::default();
    if &acc == pcr10 {
        return Some(facts);
    }
    for e in entries.iter().filter(|e| e.pcr == IMA_PCR) {
        let mut h = Sha256::new();
        h.update(acc);
        h.update(extension(e));
        acc = h.finalize().into();
        facts.entries += 1;
        facts.violations += usize::from(e.violation);
        if e.algo == "sha256" {
            facts
                .files
                .push((hex::encode(&e.file_digest), e.path.clone()));
        }
        if &acc == pcr10 {
            return Some(facts);
        }
    }
    None
}

/// The `[ima]` policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImaPolicy {
    /// The Warren binary measured into PCR 15 must also be in the IMA list (so IMA saw the
    /// binary that measured itself being executed).
    #[serde(default)]
    pub warren_binary: bool,
    /// SHA-256 file digests that must each be in the list.
    #[serde(default)]
    pub required: Vec<String>,
    /// Refuse a list with violations.
    #[serde(default)]
    pub no_violations: bool,
}

impl ImaPolicy {
    /// Checks `facts`, with the Warren binaries of PCR 15 (reason `ima-policy`).
    pub fn check(&self, facts: &ImaFacts, warren_binaries: &[String]) -> Result<(), String> {
        let has = |d: &str| facts.files.iter().any(|(f, _)| f.eq_ignore_ascii_case(d));
        if self.warren_binary {
            if warren_binaries.is_empty() {
                return Err("no Warren binary was measured into PCR 15".into());
            }
            for b in warren_binaries {
                if !has(b) {
                    return Err(format!(
                        "the Warren binary {b} (PCR 15) is not in the IMA measurement list"
                    ));
                }
            }
        }
        for d in &self.required {
            if !has(d) {
                return Err(format!("{d} is not in the IMA measurement list"));
            }
        }
        if self.no_violations && facts.violations > 0 {
            return Err(format!(
                "the IMA measurement list has {} violations",
                facts.violations
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list built byte by byte from the kernel's documented layout, independently of
    /// [`encode_binary`].
    fn by_hand(path: &str, digest: [u8; 32]) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&(7u32 + 1 + 32).to_le_bytes()); // "sha256" ":" "\0" digest
        data.extend_from_slice(b"sha256:\0");
        data.extend_from_slice(&digest);
        data.extend_from_slice(&(path.len() as u32 + 1).to_le_bytes());
        data.extend_from_slice(path.as_bytes());
        data.push(0);
        let mut e = 10u32.to_le_bytes().to_vec();
        e.extend_from_slice(&Sha1::digest(&data));
        e.extend_from_slice(&6u32.to_le_bytes());
        e.extend_from_slice(b"ima-ng");
        e.extend_from_slice(&(data.len() as u32).to_le_bytes());
        e.extend_from_slice(&data);
        e
    }

    #[test]
    fn binary_and_ascii_forms_agree_and_replay() {
        let mut bin = by_hand("boot_aggregate", [1; 32]);
        bin.extend(by_hand("/usr/bin/warren", [2; 32]));
        assert_eq!(
            bin,
            [
                encode_binary("sha256", &[1; 32], "boot_aggregate", false),
                encode_binary("sha256", &[2; 32], "/usr/bin/warren", false)
            ]
            .concat()
        );
        let parsed = parse(&bin).unwrap();
        let ascii: String = parsed
            .iter()
            .map(|e| {
                format!(
                    "10 {} ima-ng sha256:{} {}\n",
                    hex::encode(Sha1::digest(&e.data)),
                    hex::encode(&e.file_digest),
                    e.path
                )
            })
            .collect();
        assert_eq!(parse(ascii.as_bytes()).unwrap(), parsed);
        // PCR 10's SHA-256 bank: SHA-256(SHA-256(0 ‖ SHA-256(data₁)) ‖ SHA-256(data₂)).
        let h = |a: &[u8], b: &[u8]| -> [u8; 32] { Sha256::digest([a, b].concat()).into() };
        let pcr = h(
            &h(&[0; 32], &Sha256::digest(&parsed[0].data)),
            &Sha256::digest(&parsed[1].data),
        );
        let facts = replay_to(&parsed, &pcr).unwrap();
        assert_eq!(facts.entries, 2);
        assert_eq!(
            facts.files[1],
            (hex::encode([2u8; 32]), "/usr/bin/warren".into())
        );
        // A list that grew after the quote: the prefix explains it.
        let mut longer = parsed.clone();
        longer.push(parse(&by_hand("/bin/later", [3; 32])).unwrap().remove(0));
        assert_eq!(replay_to(&longer, &pcr).unwrap().entries, 2);
        // An entry removed: nothing explains it.
        assert!(replay_to(&parsed[1..], &pcr).is_none());
    }

    #[test]
    fn violations_extend_ff_and_bad_entries_are_refused() {
        let bin = encode_binary("sha256", &[4; 32], "/etc/x", true);
        let e = parse_binary(&bin).unwrap();
        assert!(e[0].violation);
        let pcr: [u8; 32] = Sha256::digest([[0u8; 32], [0xff; 32]].concat()).into();
        assert_eq!(replay_to(&e, &pcr).unwrap().violations, 1);
        let strict = ImaPolicy {
            no_violations: true,
            ..ImaPolicy::default()
        };
        assert!(strict.check(&replay_to(&e, &pcr).unwrap(), &[]).is_err());
        // A template digest that is not the data's SHA-1.
        let mut bad = by_hand("/bin/a", [5; 32]);
        bad[4] ^= 1;
        assert!(parse_binary(&bad).unwrap_err().detail.contains("SHA-1"));
        // Truncated.
        let good = by_hand("/bin/a", [5; 32]);
        assert!(parse_binary(&good[..good.len() - 1]).is_err());
    }

    proptest::proptest! {
        /// Any bytes: the parser returns, never panics; an error names an entry.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(b in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse(&b);
            let _ = parse_binary(&b);
        }

        /// Lists the kernel could write parse back to their entries in both forms, and every
        /// prefix's replay is found.
        #[test]
        fn written_lists_parse_back(files in proptest::collection::vec(
            (proptest::array::uniform32(proptest::num::u8::ANY), "/[a-z]{1,12}", proptest::bool::weighted(0.1)),
            1..8,
        )) {
            let bin: Vec<u8> = files
                .iter()
                .flat_map(|(d, p, v)| encode_binary("sha256", d, p, *v))
                .collect();
            let parsed = parse(&bin).unwrap();
            proptest::prop_assert_eq!(parsed.len(), files.len());
            let mut acc = [0u8; 32];
            for (i, e) in parsed.iter().enumerate() {
                proptest::prop_assert_eq!(&e.path, &files[i].1);
                proptest::prop_assert_eq!(e.violation, files[i].2);
                acc = Sha256::digest([acc, extension(e)].concat()).into();
                proptest::prop_assert_eq!(replay_to(&parsed, &acc).map(|f| f.entries), Some(i + 1));
            }
        }
    }

    #[test]
    fn the_warren_binary_rule() {
        let bin = [
            by_hand("boot_aggregate", [1; 32]),
            by_hand("/usr/bin/warren", [2; 32]),
        ]
        .concat();
        let e = parse_binary(&bin).unwrap();
        let facts = replay_to(&e, &{
            let mut acc = [0u8; 32];
            for x in &e {
                acc = Sha256::digest([acc, extension(x)].concat()).into();
            }
            acc
        })
        .unwrap();
        let p = ImaPolicy {
            warren_binary: true,
            ..ImaPolicy::default()
        };
        assert!(p.check(&facts, &[hex::encode([2u8; 32])]).is_ok());
        assert!(
            p.check(&facts, &[hex::encode([9u8; 32])])
                .unwrap_err()
                .contains("not in")
        );
        assert!(p.check(&facts, &[]).is_err());
    }
}
