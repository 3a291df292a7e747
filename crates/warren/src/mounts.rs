//! `warren run -v` and `--mount` (and the manifest's `volumes`, through `warren run`): the form
//! is checked by [`warren_spec::mount`]; this module resolves the requests against the host and
//! the volume store (stage two) into the launcher's [`MountSpec`]s. `docs/cli.md` is the
//! contract; `docs/threat-model.md` says what a bind mount exposes.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rustix::fs::FlockOperation;
use warren_sandbox::{MountKind, MountSpec};
use warren_spec::mount::MountRequest as Request;

use crate::dirs::Dirs;
use crate::volumes;

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
