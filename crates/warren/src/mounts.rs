//! `warren run -v` and `--mount` (and the manifest's `volumes`, through `warren run`): the form
//! is checked by [`warren_spec::mount`]; this module resolves the requests against the host and
//! the volume store (stage two) into the launcher's [`MountSpec`]s. `docs/cli.md` is the
//! contract; `docs/threat-model.md` says what a bind mount exposes.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use rustix::fs::FlockOperation;
use warren_sandbox::{MountKind, MountSpec, PreparedTree, RootSource};
use warren_spec::mount::MountRequest as Request;

use crate::dirs::Dirs;
use crate::volumes;

/// What a resolved set of mounts holds while the environment runs: a shared lock on each
/// volume, so that `warren volume rm` refuses it.
pub struct Held {
    _locks: Vec<File>,
}

/// Stage two: find each volume, check each host directory, refuse two mounts on one place.
/// A size-limited volume's ext4 image is mounted here, detached (never in any mount
/// namespace), from a loop device that detaches itself when that mount ends. An empty volume
/// first mounted where `root` has a directory is filled with a copy of it (see [`copy_up`]).
pub fn resolve(
    dirs: &Dirs,
    root: &RootSource,
    reqs: &[Request],
) -> anyhow::Result<(Vec<MountSpec>, Held)> {
    let store = volumes::Store::new(&dirs.data);
    // `locks` before `specs`: on an early return the mounts (in `specs`) drop first, so a
    // size-limited volume's file system is shut down before its exclusive lock is released.
    let mut locks = Vec::new();
    let mut specs: Vec<MountSpec> = Vec::new();
    for r in reqs {
        if specs.iter().any(|s| s.dest == r.dest) {
            bail!("two mounts on {}", r.dest.display());
        }
        let mut tree = None;
        let host = match r.kind {
            MountKind::Volume => {
                let rec = store.get(&r.source).with_context(|| {
                    format!(
                        "volume {} (create it with `warren volume create {}`)",
                        r.source, r.source
                    )
                })?;
                let lock_path = store.path(&r.source).join("lock");
                let lock = File::open(&lock_path)
                    .with_context(|| format!("cannot open {}", lock_path.display()))?;
                let data = store.path(&r.source).join("data");
                if rec.kind == volumes::Kind::Ext4Image {
                    // One file system, one user: two loop devices on one image would corrupt it.
                    match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                        Ok(()) => {}
                        Err(rustix::io::Errno::WOULDBLOCK) => bail!(
                            "volume {} is in use by another environment (a volume with a size \
                             limit is mounted by one environment at a time)",
                            r.source
                        ),
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot lock {}", lock_path.display()));
                        }
                    }
                    let mnt = mount_image(&store.path(&r.source).join("image.ext4"))
                        .with_context(|| format!("volume {}", r.source))?;
                    // `cp` runs in a child: name the mount through this process's descriptor table.
                    let top = PathBuf::from(format!(
                        "/proc/{}/fd/{}",
                        std::process::id(),
                        mnt.as_raw_fd()
                    ));
                    if r.copy_up {
                        copy_up(&store, root, r, &top, true, rec.owner)?;
                    }
                    tree = Some(PreparedTree(std::sync::Arc::new(mnt)));
                } else {
                    rustix::fs::flock(&lock, FlockOperation::LockShared)
                        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
                    if r.copy_up {
                        copy_up(&store, root, r, &data, false, rec.owner)?;
                    }
                }
                locks.push(lock);
                data
            }
            MountKind::Bind => check_bind_source(dirs, Path::new(&r.source))?,
        };
        specs.push(MountSpec {
            kind: r.kind,
            source: r.source.clone(),
            host,
            dest: r.dest.clone(),
            read_only: r.read_only,
            tree,
        });
    }
    Ok((specs, Held { _locks: locks }))
}

/// Mount the ext4 file system in `image` detached (`fsopen`/`fsmount`, nosuid, nodev), from a
/// loop device with autoclear: when the returned mount (and every copy of it) is gone, the
/// device detaches itself. On an error nothing stays attached.
fn mount_image(image: &Path) -> anyhow::Result<OwnedFd> {
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, fsconfig_create, fsconfig_set_string, fsmount,
        fsopen,
    };
    let file = File::options()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("cannot open {}", image.display()))?;
    let (dev, dev_path) = warren_sys::loop_attach(file.as_fd(), false)
        .with_context(|| format!("cannot attach {} to a loop device", image.display()))?;
    let what = || format!("cannot mount {} (ext4 on {dev_path})", image.display());
    let fs = fsopen("ext4", FsOpenFlags::FSOPEN_CLOEXEC).with_context(what)?;
    fsconfig_set_string(&fs, "source", dev_path.as_str()).with_context(what)?;
    fsconfig_create(&fs).with_context(what)?;
    let mnt = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .with_context(what)?;
    // The file system now holds the device open; ours can go (autoclear fires when it ends).
    drop(dev);
    Ok(mnt)
}

/// Docker's copy-up: when volume `r` is empty (a fresh ext4 file system counts as empty with
/// only its `lost+found`) and the root has a real directory at `r.dest` (reached without a
/// symbolic link), copy that directory's contents into the volume with their owners, modes,
/// links, times and extended attributes (`cp -a`: symbolic links are copied, never followed),
/// and give the volume's top directory the owner (unless `warren volume create --owner` set
/// one) and mode of the root's. Owners are copied as
/// numbers: the volume is idmapped like an image root, so uid N on disk is uid N inside.
///
/// Runs under the store's lock, so two first launches do not both copy. A directory volume is
/// filled in a hidden directory beside `data` and renamed over the empty `data`, so a failed
/// copy leaves it empty; an ext4 volume is emptied again on failure.
fn copy_up(
    store: &volumes::Store,
    root: &RootSource,
    r: &Request,
    target: &Path,
    ext4: bool,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    let root_dir = match root {
        RootSource::Rootfs(d) | RootSource::Image(d) => d,
        RootSource::Binary(_) => return Ok(()),
    };
    let mut src = root_dir.clone();
    for c in r.dest.strip_prefix("/").unwrap_or(&r.dest).components() {
        src.push(c);
        match std::fs::symlink_metadata(&src) {
            Ok(m) if m.is_dir() => {}
            // No such directory in the root (the launch refuses the mount point later), or one
            // reached through a link or a file: nothing to copy.
            _ => return Ok(()),
        }
    }
    let _lock = store.lock()?;
    let is_empty = |dir: &Path| -> anyhow::Result<bool> {
        let mut it =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        Ok(it.all(|e| e.is_ok_and(|e| ext4 && e.file_name() == "lost+found")))
    };
    if !is_empty(target)? {
        return Ok(());
    }
    let meta = std::fs::symlink_metadata(&src)?;
    let fill = if ext4 {
        target.to_path_buf()
    } else {
        let tmp = target.with_file_name(format!(".data-copy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        tmp
    };
    let result = (|| -> anyhow::Result<()> {
        let out = Command::new("cp")
            .arg("-a")
            .arg("--")
            .arg(src.join("."))
            .arg(&fill)
            .output()
            .context("cannot run cp")?;
        if !out.status.success() {
            bail!(
                "cannot copy {} into volume {}: {}",
                r.dest.display(),
                r.source,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let (uid, gid) = owner.unwrap_or((meta.uid(), meta.gid()));
        // `fill` is our own directory or the magic link to the mount's root: follow it.
        std::os::unix::fs::chown(&fill, Some(uid), Some(gid))
            .with_context(|| format!("cannot chown {}", fill.display()))?;
        std::fs::set_permissions(&fill, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .with_context(|| format!("cannot chmod {}", fill.display()))?;
        if !ext4 {
            std::fs::rename(&fill, target)
                .with_context(|| format!("cannot rename into {}", target.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        if ext4 {
            for e in std::fs::read_dir(target).into_iter().flatten().flatten() {
                if e.file_name() != "lost+found" {
                    let _ = std::fs::remove_dir_all(e.path())
                        .or_else(|_| std::fs::remove_file(e.path()));
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&fill);
        }
    }
    result
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
