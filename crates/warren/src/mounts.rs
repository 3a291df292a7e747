//! `warren run -v SRC:DEST[:ro]` and `--mount type=volume|bind,src=..,dst=..[,ro]`: parsing
//! (stage one, no I/O) and resolution against the host and the volume store (stage two), into
//! the launcher's [`MountSpec`]s. `docs/cli.md` is the contract; `docs/threat-model.md` says what
//! a bind mount exposes.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use rustix::fs::FlockOperation;
use warren_sandbox::{MountKind, MountSpec};

use crate::dirs::Dirs;
use crate::volumes;

/// A mount as the user typed it, checked for form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    kind: MountKind,
    source: String,
    dest: PathBuf,
    read_only: bool,
}

/// Places inside that Warren itself mounts: nothing may be mounted on or under them.
const RESERVED_DESTS: [&str; 3] = ["/proc", "/dev", "/sys"];

/// Check an absolute path without `..`, `.` or an empty name; return it normalised.
fn clean_absolute(what: &str, p: &str) -> anyhow::Result<PathBuf> {
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

fn check_dest(d: &str) -> anyhow::Result<PathBuf> {
    let dest = clean_absolute("destination", d)?;
    if dest == Path::new("/") {
        bail!("destination \"/\" is the root itself (use --writable-root for a writable root)");
    }
    if let Some(r) = RESERVED_DESTS.iter().find(|r| dest.starts_with(r)) {
        bail!("destination {d:?} is under {r}, which Warren mounts itself");
    }
    Ok(dest)
}

fn check_source(kind: MountKind, s: &str) -> anyhow::Result<String> {
    match kind {
        MountKind::Bind => {
            clean_absolute("bind source", s)?;
        }
        MountKind::Volume => volumes::check_name(s)?,
    }
    Ok(s.to_owned())
}

/// `-v SRC:DEST[:ro|:rw]`: SRC starting with `/` is a host directory, anything else a volume.
pub fn parse_volume_flag(v: &str) -> anyhow::Result<Request> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, None),
        [s, d, m] => (*s, *d, Some(*m)),
        _ => bail!("expected SRC:DEST or SRC:DEST:ro"),
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => bail!("unknown mode {m:?}: expected ro or rw"),
    };
    let kind = if src.starts_with('/') {
        MountKind::Bind
    } else if src.is_empty() {
        bail!("empty source: give a volume name or an absolute host path")
    } else {
        MountKind::Volume
    };
    Ok(Request {
        kind,
        source: check_source(kind, src)
            .with_context(|| "the source is a volume name or an absolute host path".to_string())?,
        dest: check_dest(dst)?,
        read_only,
    })
}

/// `--mount type=volume|bind,src=SRC,dst=DEST[,ro|,readonly]` (`source`/`target`/`destination`
/// are accepted spellings, as in Docker).
pub fn parse_mount_flag(v: &str) -> anyhow::Result<Request> {
    let (mut kind, mut src, mut dst, mut ro) = (None, None, None, false);
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
            _ => bail!("unknown option {item:?}"),
        }
    }
    let kind = kind.context("type= is missing (volume or bind)")?;
    let src = src.context("src= is missing")?;
    let dst = dst.context("dst= is missing")?;
    Ok(Request {
        kind,
        source: check_source(kind, src)?,
        dest: check_dest(dst)?,
        read_only: ro,
    })
}

/// What a resolved set of mounts holds while the environment runs: a shared lock on each
/// volume, so that `warren volume rm` refuses it.
pub struct Held {
    _locks: Vec<File>,
}

/// Stage two: find each volume, check each host directory, refuse two mounts on one place.
pub fn resolve(dirs: &Dirs, reqs: &[Request]) -> anyhow::Result<(Vec<MountSpec>, Held)> {
    let store = volumes::Store::new(&dirs.data);
    let mut specs: Vec<MountSpec> = Vec::new();
    let mut locks = Vec::new();
    for r in reqs {
        if specs.iter().any(|s| s.dest == r.dest) {
            bail!("two mounts on {}", r.dest.display());
        }
        let host = match r.kind {
            MountKind::Volume => {
                let rec = store.get(&r.source).with_context(|| {
                    format!(
                        "volume {} (create it with `warren volume create {}`)",
                        r.source, r.source
                    )
                })?;
                if rec.kind == volumes::Kind::Ext4Image {
                    bail!(
                        "volume {}: mounting a size-limited (ext4 image) volume is not \
                         supported yet; use a volume created without --size",
                        r.source
                    );
                }
                let lock_path = store.path(&r.source).join("lock");
                let lock = File::open(&lock_path)
                    .with_context(|| format!("cannot open {}", lock_path.display()))?;
                rustix::fs::flock(&lock, FlockOperation::LockShared)
                    .with_context(|| format!("cannot lock {}", lock_path.display()))?;
                locks.push(lock);
                store.path(&r.source).join("data")
            }
            MountKind::Bind => check_bind_source(dirs, Path::new(&r.source))?,
        };
        specs.push(MountSpec {
            kind: r.kind,
            source: r.source.clone(),
            host,
            dest: r.dest.clone(),
            read_only: r.read_only,
        });
    }
    Ok((specs, Held { _locks: locks }))
}

/// A bind source must be an existing directory (symbolic links resolved) that is not the
/// host's root, not under `/proc`, `/sys` or `/dev`, and not Warren's state or data directory
/// (nor inside or above them).
fn check_bind_source(dirs: &Dirs, p: &Path) -> anyhow::Result<PathBuf> {
    let real = std::fs::canonicalize(p).with_context(|| format!("bind source {}", p.display()))?;
    if !real.is_dir() {
        bail!("bind source {} is not a directory", p.display());
    }
    if real == Path::new("/") {
        bail!("bind source / would expose the host's whole tree");
    }
    for r in ["/proc", "/sys", "/dev"] {
        if real.starts_with(r) {
            bail!("bind source {} is under {r}", p.display());
        }
    }
    for (what, d) in [("state", &dirs.state), ("data", &dirs.data)] {
        let d = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        if real.starts_with(&d) || d.starts_with(&real) {
            bail!(
                "bind source {} overlaps Warren's {what} directory {}",
                p.display(),
                d.display()
            );
        }
        if what == "state" && real.starts_with("/run/warren") {
            bail!("bind source {} is under /run/warren", p.display());
        }
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags() {
        let r = parse_volume_flag("pg:/var/lib/postgresql/data").unwrap();
        assert_eq!(r.kind, MountKind::Volume);
        assert_eq!(r.dest, Path::new("/var/lib/postgresql/data"));
        assert!(!r.read_only);
        let r = parse_volume_flag("/srv/x:/mnt//x/:ro").unwrap();
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
            ("pg", "SRC:DEST"),
            ("a/b:/mnt", "volume name or an absolute host path"),
            (":/mnt", "empty source"),
        ] {
            let e = format!("{:#}", parse_volume_flag(bad).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn mount_flags() {
        let r = parse_mount_flag("type=bind,src=/srv,dst=/mnt,ro").unwrap();
        assert_eq!(
            r,
            Request {
                kind: MountKind::Bind,
                source: "/srv".into(),
                dest: "/mnt".into(),
                read_only: true
            }
        );
        let r = parse_mount_flag("type=volume,source=v,target=/data").unwrap();
        assert_eq!(r.kind, MountKind::Volume);
        for (bad, why) in [
            ("src=v,dst=/d", "type= is missing"),
            ("type=tmpfs,dst=/d", "unknown type"),
            ("type=volume,dst=/d", "src= is missing"),
            ("type=volume,src=v", "dst= is missing"),
            ("type=volume,src=v,dst=/d,bogus", "unknown option"),
            ("type=bind,src=rel,dst=/d", "not an absolute path"),
            ("type=volume,src=v,dst=../d", "not an absolute path"),
        ] {
            let e = format!("{:#}", parse_mount_flag(bad).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
