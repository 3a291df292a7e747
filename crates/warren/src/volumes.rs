//! Named volumes: directories (or, with a size limit, ext4 image files) in the data directory
//! that outlive the environments using them. `docs/files.md` and `docs/cli.md` are the contract.
//!
//! Layout, under `<data>/volumes/`:
//! * `NAME/volume.json` — the record (name, creation time, size limit, kind);
//! * `NAME/data/` — the volume's contents (a volume without a size limit);
//! * `NAME/image.ext4` — a sparse ext4 file system of the limit's size (a volume with one),
//!   loop-mounted, detached, where it is used (`crate::mounts`);
//! * `NAME/lock` — every user holds a shared `flock` on it for as long as it uses the volume
//!   (an exclusive one for an ext4 image, which one environment uses at a time);
//!   `rm` takes it exclusively without waiting, so a volume in use is never removed.
//!
//! Creation and removal hold an exclusive lock on `<data>/volumes` itself, build under a
//! hidden name and rename into place, so a failure leaves nothing behind and two concurrent
//! `create`s of one name cannot both succeed.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};

/// The version of the record and of `--json` output.
pub const VERSION: u32 = 1;
/// The smallest size limit: ext4's own metadata and journal need room.
pub const MIN_SIZE: u64 = 16 << 20;

/// How a volume stores its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A directory on the data directory's file system, no limit.
    Directory,
    /// A sparse ext4 image file of a fixed size, loop-mounted where it is used.
    Ext4Image,
}

/// `volume.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Format version.
    pub version: u32,
    /// The volume's name.
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// How the contents are stored.
    pub kind: Kind,
    /// The size limit in bytes (an ext4 image's size), if any.
    pub size_limit: Option<u64>,
    /// The owner (uid, gid, as the environment sees them) `--owner` gave the top directory;
    /// copy-up keeps it. Left out when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<(u32, u32)>,
}

/// Check a volume name (`warren_spec::mount::check_volume_name`).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    Ok(warren_spec::mount::check_volume_name(name)?)
}

/// The volumes of one data directory.
pub struct Store {
    dir: PathBuf,
}

/// An exclusive lock on the store (held while creating or removing).
pub(crate) struct StoreLock(#[allow(dead_code)] rustix::fd::OwnedFd);

impl Store {
    /// The store of data directory `data`.
    pub fn new(data: &Path) -> Store {
        Store {
            dir: data.join("volumes"),
        }
    }

    /// `<data>/volumes/NAME`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Hold the store's exclusive lock (creation, removal, a volume's first fill).
    pub(crate) fn lock(&self) -> anyhow::Result<StoreLock> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let fd = rustix::fs::open(
            &self.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", self.dir.display()))?;
        rustix::fs::flock(&fd, FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", self.dir.display()))?;
        Ok(StoreLock(fd))
    }

    /// Create volume `name`, with an ext4 image of `size` bytes when given.
    pub fn create(
        &self,
        name: &str,
        size: Option<u64>,
        owner: Option<(u32, u32)>,
    ) -> anyhow::Result<Record> {
        check_name(name)?;
        if let Some(s) = size {
            if s < MIN_SIZE {
                bail!(
                    "--size {s} bytes is below the smallest volume size, {}M",
                    MIN_SIZE >> 20
                );
            }
        }
        let _lock = self.lock()?;
        let dest = self.path(name);
        if std::fs::symlink_metadata(&dest).is_ok() {
            bail!("volume {name} already exists");
        }
        if let Some(s) = size {
            let vfs = rustix::fs::statvfs(&self.dir)
                .with_context(|| format!("cannot stat {}", self.dir.display()))?;
            let total = vfs.f_blocks.saturating_mul(vfs.f_frsize);
            if s > total {
                bail!(
                    "--size {s} bytes is larger than the data directory's whole file system \
                     ({total} bytes)"
                );
            }
        }
        let tmp = Building(
            self.dir
                .join(format!(".{name}.creating-{}", std::process::id())),
        );
        let _ = std::fs::remove_dir_all(&tmp.0);
        let mut b = std::fs::DirBuilder::new();
        b.mode(0o700)
            .create(&tmp.0)
            .with_context(|| format!("cannot create {}", tmp.0.display()))?;
        b.mode(0o755)
            .create(tmp.0.join("data"))
            .with_context(|| format!("cannot create {}", tmp.0.join("data").display()))?;
        File::create(tmp.0.join("lock"))
            .with_context(|| format!("cannot create {}", tmp.0.join("lock").display()))?;
        let (uid, gid) = owner.unwrap_or((0, 0));
        let kind = match size {
            None => {
                let data = tmp.0.join("data");
                std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                    .with_context(|| format!("cannot chown {}", data.display()))?;
                Kind::Directory
            }
            Some(s) => {
                make_ext4(&tmp.0.join("image.ext4"), s, (uid, gid))?;
                Kind::Ext4Image
            }
        };
        let rec = Record {
            version: VERSION,
            name: name.to_owned(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            kind,
            size_limit: size,
            owner,
        };
        let path = tmp.0.join("volume.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&rec)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::rename(&tmp.0, &dest)
            .with_context(|| format!("cannot rename into {}", dest.display()))?;
        std::mem::forget(tmp);
        Ok(rec)
    }

    /// Every volume, sorted by name.
    pub fn list(&self) -> anyhow::Result<Vec<Record>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.dir.display()));
            }
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            out.push(self.get(&name)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Volume `name`'s record.
    pub fn get(&self, name: &str) -> anyhow::Result<Record> {
        check_name(name)?;
        let path = self.path(name).join("volume.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("no such volume: {name}")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_slice(&bytes).with_context(|| format!("cannot parse {}", path.display()))
    }

    /// The bytes the volume takes on the data directory's file system (allocated blocks, so a
    /// sparse image counts only what was written).
    pub fn used_bytes(&self, name: &str) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(m) = std::fs::symlink_metadata(p) else {
                return 0;
            };
            let mut n = m.blocks() * 512;
            if m.is_dir() {
                for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                    n += walk(&e.path());
                }
            }
            n
        }
        walk(&self.path(name))
    }

    /// Whether someone holds the volume's lock (uses it).
    pub fn in_use(&self, name: &str) -> anyhow::Result<bool> {
        let fd = self.open_lock(name)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(false),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(true),
            Err(e) => Err(e).context("cannot test the volume's lock"),
        }
    }

    fn open_lock(&self, name: &str) -> anyhow::Result<rustix::fd::OwnedFd> {
        let path = self.path(name).join("lock");
        rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("cannot open {}", path.display()))
    }

    /// Remove volume `name` and its contents; refused while anyone uses it.
    pub fn remove(&self, name: &str) -> anyhow::Result<Record> {
        let _lock = self.lock()?;
        let rec = self.get(name)?;
        let fd = self.open_lock(name)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                bail!("volume {name} is in use by a running environment")
            }
            Err(e) => return Err(e).context("cannot lock the volume"),
        }
        let gone = self
            .dir
            .join(format!(".{name}.removing-{}", std::process::id()));
        std::fs::rename(self.path(name), &gone)
            .with_context(|| format!("cannot move {} aside", self.path(name).display()))?;
        std::fs::remove_dir_all(&gone)
            .with_context(|| format!("cannot remove {}", gone.display()))?;
        Ok(rec)
    }
}

/// A directory being built; removed unless forgotten.
struct Building(PathBuf);

impl Drop for Building {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sparse file of `size` bytes holding an empty ext4 file system (no reserved blocks, root
/// directory 0755 owned by `uid:gid`, root by default; ownership inside is mapped at use).
fn make_ext4(path: &Path, size: u64, (uid, gid): (u32, u32)) -> anyhow::Result<()> {
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.set_len(size)
        .with_context(|| format!("cannot size {}", path.display()))?;
    drop(f);
    let out = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            &format!("root_owner={uid}:{gid}"),
            "-L",
            "warren-vol",
        ])
        .arg(path)
        .output()
        .context("cannot run mkfs.ext4 (install e2fsprogs)")?;
    if !out.status.success() {
        bail!(
            "mkfs.ext4 failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
