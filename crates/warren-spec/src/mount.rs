//! Mounts into an environment as written: `-v SRC:DEST[:ro]`, `--mount type=..,src=..,dst=..`
//! and the manifest's `volumes = ["SRC:DEST[:ro]", ...]`. Checks form only (no I/O): `warren`
//! resolves volumes and host paths at launch. `docs/cli.md` is the contract.

use std::path::{Component, Path, PathBuf};

/// A mount request that is not well formed; the message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MountError(pub String);

macro_rules! bail {
    ($($t:tt)*) => { return Err(MountError(format!($($t)*))) };
}

/// What a mount's source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A named volume in the data directory.
    Volume,
    /// A directory of the host.
    Bind,
}

/// A mount as written, checked for form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MountRequest {
    /// Volume or bind.
    pub kind: MountKind,
    /// The volume's name, or the host path (absolute, without `..` or `.`).
    pub source: String,
    /// The absolute, normalised path inside.
    pub dest: PathBuf,
    /// Read-only.
    pub read_only: bool,
    /// Fill an empty volume with the root's directory at `dest` on first use (Docker's
    /// copy-up; `nocopy` / `volume-nocopy` turn it off). Always false for a bind.
    #[serde(default)]
    pub copy_up: bool,
}

/// The longest volume name.
pub const MAX_VOLUME_NAME: usize = 64;

/// Check a volume name: 1 to 64 characters of `[A-Za-z0-9_.-]`, starting with a letter or
/// digit (Docker's rule, bounded).
pub fn check_volume_name(name: &str) -> Result<(), MountError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_VOLUME_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        bail!(
            "invalid volume name {name:?}: use 1 to {MAX_VOLUME_NAME} letters, digits, '_', '.' \
             or '-', starting with a letter or digit"
        );
    }
    Ok(())
}

/// Places inside that Warren itself mounts: nothing may be mounted on or under them.
const RESERVED_DESTS: [&str; 3] = ["/proc", "/dev", "/sys"];

/// Check an absolute path without `..`, `.` or an empty name; return it normalised.
fn clean_absolute(what: &str, p: &str) -> Result<PathBuf, MountError> {
    if !p.starts_with('/') {
        bail!("{what} {p:?} is not an absolute path");
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => bail!("{what} {p:?} climbs out with '..'"),
            Component::CurDir | Component::Prefix(_) => bail!("{what} {p:?} contains '.'"),
        }
    }
    // `Path::components` drops a `.` in the middle silently: refuse it as well.
    if p.split('/').any(|c| c == ".") {
        bail!("{what} {p:?} contains '.'");
    }
    Ok(out)
}

fn check_dest(d: &str) -> Result<PathBuf, MountError> {
    let dest = clean_absolute("destination", d)?;
    if dest == Path::new("/") {
        bail!("destination \"/\" is the root itself (use --writable-root for a writable root)");
    }
    if let Some(r) = RESERVED_DESTS.iter().find(|r| dest.starts_with(r)) {
        bail!("destination {d:?} is under {r}, which Warren mounts itself");
    }
    Ok(dest)
}

fn check_source(kind: MountKind, s: &str) -> Result<String, MountError> {
    match kind {
        MountKind::Bind => {
            clean_absolute("bind source", s)?;
        }
        MountKind::Volume => check_volume_name(s)?,
    }
    Ok(s.to_owned())
}

/// `-v SRC:DEST[:OPTIONS]` (OPTIONS comma-separated: `ro`, `rw`, `nocopy`): SRC starting with `/` is a host directory, anything else a volume.
pub fn parse_volume(v: &str) -> Result<MountRequest, MountError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, None),
        [s, d, m] => (*s, *d, Some(*m)),
        _ => bail!("expected SRC:DEST or SRC:DEST:OPTIONS (ro, rw, nocopy)"),
    };
    let (mut read_only, mut nocopy) = (false, false);
    for m in mode
        .map(|m| m.split(',').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        match m {
            "rw" => read_only = false,
            "ro" => read_only = true,
            "nocopy" => nocopy = true,
            m => bail!("unknown mode {m:?}: expected ro, rw or nocopy"),
        }
    }
    let kind = if src.starts_with('/') {
        if nocopy {
            bail!("nocopy applies to a volume, not to a host directory");
        }
        MountKind::Bind
    } else if src.is_empty() {
        bail!("empty source: give a volume name or an absolute host path")
    } else {
        MountKind::Volume
    };
    Ok(MountRequest {
        kind,
        source: check_source(kind, src).map_err(|e| {
            MountError(format!(
                "{e} (the source is a volume name or an absolute host path)"
            ))
        })?,
        dest: check_dest(dst)?,
        read_only,
        copy_up: kind == MountKind::Volume && !nocopy,
    })
}

/// `--mount type=volume|bind,src=SRC,dst=DEST[,ro|,readonly]` (`source`/`target`/`destination`
/// are accepted spellings, as in Docker).
pub fn parse_mount_options(v: &str) -> Result<MountRequest, MountError> {
    let (mut kind, mut src, mut dst, mut ro, mut nocopy) = (None, None, None, false, false);
    for item in v.split(',') {
        let (k, val) = match item.split_once('=') {
            Some((k, val)) => (k, Some(val)),
            None => (item, None),
        };
        match (k, val) {
            ("type", Some("volume")) => kind = Some(MountKind::Volume),
            ("type", Some("bind")) => kind = Some(MountKind::Bind),
            ("type", Some(t)) => bail!("unknown type {t:?}: expected volume or bind"),
            ("src" | "source", Some(s)) => src = Some(s),
            ("dst" | "destination" | "target", Some(d)) => dst = Some(d),
            ("ro" | "readonly", None | Some("true" | "1")) => ro = true,
            ("ro" | "readonly", Some("false" | "0")) => ro = false,
            ("volume-nocopy", None | Some("true" | "1")) => nocopy = true,
            ("volume-nocopy", Some("false" | "0")) => nocopy = false,
            _ => bail!("unknown option {item:?}"),
        }
    }
    let Some(kind) = kind else {
        bail!("type= is missing (volume or bind)")
    };
    let Some(src) = src else {
        bail!("src= is missing")
    };
    let Some(dst) = dst else {
        bail!("dst= is missing")
    };
    if nocopy && kind == MountKind::Bind {
        bail!("volume-nocopy applies to type=volume, not to type=bind");
    }
    Ok(MountRequest {
        kind,
        source: check_source(kind, src)?,
        dest: check_dest(dst)?,
        read_only: ro,
        copy_up: kind == MountKind::Volume && !nocopy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names() {
        for ok in ["a", "pg-data", "A.b_c-1", &"x".repeat(64)] {
            check_volume_name(ok).unwrap();
        }
        for bad in ["", "-a", ".a", "a/b", "..", "a b", "é", &"x".repeat(65)] {
            assert!(check_volume_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn volume_flags() {
        let r = parse_volume("pg:/var/lib/postgresql/data").unwrap();
        assert_eq!(r.kind, MountKind::Volume);
        assert_eq!(r.dest, Path::new("/var/lib/postgresql/data"));
        assert!(!r.read_only);
        assert!(r.copy_up);
        let r = parse_volume("pg:/data:ro,nocopy").unwrap();
        assert!(r.read_only && !r.copy_up);
        let r = parse_volume("/srv/x:/mnt//x/:ro").unwrap();
        assert!(!r.copy_up);
        assert_eq!(r.kind, MountKind::Bind);
        assert_eq!(r.dest, Path::new("/mnt/x"));
        assert!(r.read_only);
        for (bad, why) in [
            ("pg:mnt", "not an absolute path"),
            ("pg:/mnt/../etc", "climbs out"),
            ("pg:/a/./b", "contains '.'"),
            ("/srv/../etc:/mnt", "climbs out"),
            ("pg:/", "the root itself"),
            ("pg:/proc/sys", "under /proc"),
            ("pg:/dev", "under /dev"),
            ("pg:/mnt:rx", "unknown mode"),
            ("/srv:/mnt:nocopy", "applies to a volume"),
            ("pg", "SRC:DEST"),
            ("a/b:/mnt", "volume name or an absolute host path"),
            (":/mnt", "empty source"),
        ] {
            let e = format!("{}", parse_volume(bad).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn mount_flags() {
        let r = parse_mount_options("type=bind,src=/srv,dst=/mnt,ro").unwrap();
        assert_eq!(
            r,
            MountRequest {
                kind: MountKind::Bind,
                source: "/srv".into(),
                dest: "/mnt".into(),
                read_only: true,
                copy_up: false,
            }
        );
        let r = parse_mount_options("type=volume,source=v,target=/data").unwrap();
        assert_eq!(r.kind, MountKind::Volume);
        assert!(r.copy_up);
        let r = parse_mount_options("type=volume,src=v,dst=/data,volume-nocopy").unwrap();
        assert!(!r.copy_up);
        for (bad, why) in [
            ("src=v,dst=/d", "type= is missing"),
            ("type=tmpfs,dst=/d", "unknown type"),
            ("type=volume,dst=/d", "src= is missing"),
            ("type=volume,src=v", "dst= is missing"),
            ("type=volume,src=v,dst=/d,bogus", "unknown option"),
            ("type=bind,src=rel,dst=/d", "not an absolute path"),
            ("type=volume,src=v,dst=../d", "not an absolute path"),
            (
                "type=bind,src=/srv,dst=/d,volume-nocopy",
                "applies to type=volume",
            ),
        ] {
            let e = format!("{}", parse_mount_options(bad).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
