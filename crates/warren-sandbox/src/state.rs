//! Host-wide bookkeeping that must hold across concurrent `warren` processes without a daemon:
//! which environment names are live and which host uid ranges are taken.
//!
//! Both are lock files under the state directory held with `flock(2)` for the life of the
//! environment. The kernel drops a lock when its holder dies, so a crashed launcher can never
//! leak a name or a uid range; files left by a crash are reclaimed by the next taker. On release
//! the holder unlinks its file while still holding the lock, and a taker re-checks after locking
//! that the file it locked is still the one at the path (the classic flock/unlink race).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::policy::{UID_RANGE_BASE, UID_RANGE_SIZE, UID_RANGE_SLOTS};

/// Why bookkeeping failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory could not be created or opened.
    #[error("cannot prepare state directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A lock file could not be created or locked.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another live environment holds this name.
    #[error("an environment named {name:?} is already running")]
    NameInUse {
        /// The name.
        name: String,
    },
    /// Every uid range is taken.
    #[error("all {slots} host uid ranges are in use")]
    NoUidRange {
        /// How many ranges exist.
        slots: u32,
    },
    /// No staging mount point is reachable by an environment's root (an unprivileged host uid).
    #[error(
        "the environment's root user (an unprivileged host uid) cannot reach {state}/mnt, because \
         {blocker} has no search permission for others, nor the fallback {fallback}; \
         make one reachable (chmod o+x {blocker}) or use a state directory under /run"
    )]
    Unreachable {
        /// The state directory.
        state: PathBuf,
        /// The first directory on the way that others cannot search.
        blocker: PathBuf,
        /// The fallback mount point that was tried.
        fallback: PathBuf,
    },
}

/// A held lock file; dropping it unlinks the file and releases the lock.
#[derive(Debug)]
pub struct Held {
    file: File,
    path: PathBuf,
}

impl Held {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replace the lock file's content (a small record of who holds it).
    ///
    /// Written over the start of the file, then cut to the record's length only if the file was
    /// longer (a file a crashed holder left): never truncated to zero first, because on ext4 a
    /// file truncated to zero and written again is flushed to disk when it is closed
    /// (`auto_da_alloc`), which put a write-out on the path of every environment's exit.
    pub fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(record, 0)?;
        if self.file.metadata()?.len() > record.len() as u64 {
            self.file.set_len(record.len() as u64)?;
        }
        Ok(())
    }
}

impl Held {
    /// The lock's descriptor and path, for another process to hold it ([`Held::from_parts`]):
    /// the lock stays taken as long as any copy of the descriptor is open, and this `Held` no
    /// longer removes the file.
    pub fn into_parts(self) -> std::io::Result<(std::os::fd::OwnedFd, PathBuf)> {
        let fd = self.dup()?;
        Ok((fd, self.disarm()))
    }

    /// A copy of the lock's descriptor (the lock is the open file's, shared by every copy).
    pub(crate) fn dup(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        Ok(self.file.try_clone()?.into())
    }

    /// Let go of the file without removing it: the lock stays with the copies of its
    /// descriptor ([`Held::dup`]). Returns the path.
    pub(crate) fn disarm(mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }

    /// The lock [`Held::into_parts`] handed over, held by the caller from now on (dropping it
    /// removes the file and releases the lock). Fails when `path` is not the file `fd` is open
    /// on (a lock file is removed by its holder only).
    pub fn from_parts(fd: std::os::fd::OwnedFd, path: PathBuf) -> Result<Held, StateError> {
        let file = File::from(fd);
        let lock_err = |source| StateError::Lock {
            path: path.clone(),
            source,
        };
        let ours = file.metadata().map_err(lock_err)?;
        let there = std::fs::metadata(&path).map_err(lock_err)?;
        if (there.ino(), there.dev()) != (ours.ino(), ours.dev()) {
            return Err(lock_err(std::io::Error::other(
                "the handed-over descriptor is not open on this lock file",
            )));
        }
        Ok(Held { file, path })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Unlink first, while the lock is still ours; closing the file then drops the lock.
        // (Nothing to unlink once handed over: `into_parts` took the path.)
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Try to take the lock at `path` without waiting. `Ok(None)` when someone else holds it.
pub(crate) fn try_lock(path: &Path) -> Result<Option<Held>, StateError> {
    let lock_err = |source| StateError::Lock {
        path: path.to_owned(),
        source,
    };
    for _ in 0..16 {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(lock_err)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(lock_err(e.into())),
        }
        // The previous holder may have unlinked the file between our open and our lock: then
        // we hold a lock on an orphan inode and must start again.
        let ours = file.metadata().map_err(lock_err)?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                return Ok(Some(Held {
                    file,
                    path: path.to_owned(),
                }));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(lock_err(e)),
        }
    }
    Err(lock_err(std::io::Error::other(
        "lock file kept changing under us",
    )))
}

pub(crate) fn ensure_dir(path: &Path) -> Result<(), StateError> {
    ensure_dir_mode(path, 0o700)
}

fn ensure_dir_mode(path: &Path, mode: u32) -> Result<(), StateError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| StateError::Dir {
        path: path.to_owned(),
        source,
    };
    // Every launch passes here for several directories that almost always exist already with
    // the right mode: one `stat` settles that case.
    if std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o7777 == mode)
    {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// The first directory, from `/` down to `path` itself, that "others" may not search (mode
/// without `o+x`), or `None` if every one of them may be searched.
fn closed_to_others(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut dirs: Vec<&Path> = path.ancestors().collect();
    dirs.reverse();
    dirs.into_iter()
        .find(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(Path::to_path_buf)
}

/// The directory under which Warren keeps its host-wide state.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    uid_dir: PathBuf,
}

/// Where host uid ranges are registered. One registry for the whole host, whatever state
/// directory a Warren instance uses: two environments must never share a host uid.
pub const UID_REGISTRY: &str = "/run/warren/uids";

impl StateDir {
    /// The state directory at `root` (normally `/run/warren`); created on first use, mode 0700.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir {
            root: root.into(),
            uid_dir: PathBuf::from(UID_REGISTRY),
        }
    }

    /// A state directory whose uid registry is elsewhere (tests use a temporary one).
    pub fn with_uid_registry(root: impl Into<PathBuf>, uid_dir: impl Into<PathBuf>) -> Self {
        StateDir {
            root: root.into(),
            uid_dir: uid_dir.into(),
        }
    }

    /// The host-wide network registry (address leases): `net` next to the uid registry.
    pub fn net_registry(&self) -> PathBuf {
        self.uid_dir.with_file_name("net")
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An empty directory over which each environment mounts its root in its own mount
    /// namespace; it stays empty on the host. The state directory is made traversable (0711,
    /// not listable) because the environment's unprivileged root must reach this mount point:
    /// `<state>/mnt`.
    ///
    /// When a directory above the state directory is closed to others (a state directory in
    /// root's mode-0700 home, say), `<state>/mnt` cannot be reached from inside, and the mount
    /// point is `mnt` next to the host-wide uid registry instead (`/run/warren/mnt`). That is
    /// sound because the mount point is only ever mounted on inside each environment's own
    /// mount namespace, so any number of state directories can share it. If neither is
    /// reachable, the error says what to change.
    pub fn mount_point(&self) -> Result<PathBuf, StateError> {
        ensure_dir_mode(&self.root, 0o711)?;
        let own = self.root.join("mnt");
        let Some(blocker) = closed_to_others(&self.root) else {
            ensure_dir_mode(&own, 0o755)?;
            return Ok(own);
        };
        let fallback = self.uid_dir.with_file_name("mnt");
        if let Some(parent) = fallback.parent() {
            ensure_dir_mode(parent, 0o711)?;
        }
        ensure_dir_mode(&fallback, 0o755)?;
        if closed_to_others(&fallback).is_some() {
            return Err(StateError::Unreachable {
                state: self.root.clone(),
                blocker,
                fallback,
            });
        }
        Ok(fallback)
    }

    /// The directory of live-environment records.
    pub fn envs_dir(&self) -> PathBuf {
        self.root.join("envs")
    }

    /// Claim `name` for a new environment.
    pub fn claim_name(&self, name: &str) -> Result<Held, StateError> {
        let dir = self.envs_dir();
        ensure_dir(&dir)?;
        try_lock(&dir.join(format!("{name}.lock")))?.ok_or_else(|| StateError::NameInUse {
            name: name.to_owned(),
        })
    }

    /// Whether `name` is held by a live environment.
    pub fn name_in_use(&self, name: &str) -> Result<bool, StateError> {
        let path = self.envs_dir().join(format!("{name}.lock"));
        if !path.exists() {
            return Ok(false);
        }
        Ok(try_lock(&path)?.is_none())
    }

    /// The records of live environments, as (name, record bytes), sorted by name. Stale lock
    /// files (their launcher died) are removed on the way.
    pub fn live_records(&self) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let dir = self.envs_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(source) => return Err(StateError::Dir { path: dir, source }),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".lock") else {
                continue;
            };
            if let Some(record) = self.live_record(name)? {
                out.push((name.to_owned(), record));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The record of live environment `name` (its launcher's, or whoever holds its name lock
    /// now); `None` when the name is not held.
    pub fn live_record(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let record =
            std::fs::read(self.envs_dir().join(format!("{name}.lock"))).unwrap_or_default();
        Ok(self.name_in_use(name)?.then_some(record))
    }

    /// Take a free host uid range: the first free slot from a pseudo-random one, so a launch
    /// costs a probe or two however many environments are live (a scan of every slot file first
    /// cost three system calls per live environment on every launch). A slot file left by a
    /// launcher that died (the kernel released its lock) is reused when a probe meets it; the
    /// rest are removed by [`StateDir::remove_stale_uid_files`].
    pub fn claim_uid_range(&self) -> Result<UidRange, StateError> {
        let dir = self.uid_dir.clone();
        ensure_dir(&dir)?;
        // Start at a pseudo-random slot so concurrent launchers rarely contend on one file.
        let start = (std::process::id() as u64 * 2_654_435_761 % UID_RANGE_SLOTS as u64) as u32;
        for i in 0..UID_RANGE_SLOTS {
            let slot = (start + i) % UID_RANGE_SLOTS;
            if let Some(held) = try_lock(&dir.join(slot.to_string()))? {
                return Ok(UidRange {
                    slot,
                    host_base: UID_RANGE_BASE + slot * UID_RANGE_SIZE,
                    size: UID_RANGE_SIZE,
                    _held: held,
                });
            }
        }
        Err(StateError::NoUidRange {
            slots: UID_RANGE_SLOTS,
        })
    }

    /// Remove the uid slot files that launchers which died left behind (files whose lock no
    /// one holds): housekeeping, run now and then by a launch, not on every one. Returns how
    /// many it removed.
    pub fn remove_stale_uid_files(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.uid_dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let is_slot = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
                .is_some_and(|slot| slot < UID_RANGE_SLOTS);
            // Taking the lock and dropping it unlinks the file (see `Held`).
            if is_slot && matches!(try_lock(&entry.path()), Ok(Some(_))) {
                removed += 1;
            }
        }
        removed
    }
}

/// A host uid/gid range held by one environment: uid 0 inside is `host_base` outside.
#[derive(Debug)]
pub struct UidRange {
    /// The slot number.
    pub slot: u32,
    /// The first host uid (and gid) of the range.
    pub host_base: u32,
    /// How many ids the range has.
    pub size: u32,
    _held: Held,
}

/// A [`UidRange`] as data (its lock's descriptor travels beside it), for another process to
/// hold it ([`UidRange::into_parts`], [`UidRange::from_parts`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct UidRangeParts {
    /// The slot number.
    pub slot: u32,
    /// The first host uid (and gid).
    pub host_base: u32,
    /// How many ids.
    pub size: u32,
    /// The slot's lock file.
    pub lock: PathBuf,
}

impl UidRange {
    /// The range as data and its lock's descriptor; see [`Held::into_parts`].
    pub fn into_parts(self) -> std::io::Result<(UidRangeParts, std::os::fd::OwnedFd)> {
        let fd = self.dup()?;
        Ok((self.disarm(), fd))
    }

    /// [`Held::dup`] of the range's lock.
    pub(crate) fn dup(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self._held.dup()
    }

    /// [`Held::disarm`] of the range's lock: the range as data.
    pub(crate) fn disarm(self) -> UidRangeParts {
        UidRangeParts {
            slot: self.slot,
            host_base: self.host_base,
            size: self.size,
            lock: self._held.disarm(),
        }
    }

    /// The range [`UidRange::into_parts`] handed over, held by the caller from now on.
    pub fn from_parts(
        parts: UidRangeParts,
        fd: std::os::fd::OwnedFd,
    ) -> Result<UidRange, StateError> {
        Ok(UidRange {
            slot: parts.slot,
            host_base: parts.host_base,
            size: parts.size,
            _held: Held::from_parts(fd, parts.lock)?,
        })
    }
}

#[cfg(test)]
mod tests {

    fn chmod(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_mount_point_is_in_the_state_directory_when_others_can_reach_it() {
        let tmp = tempfile::tempdir().unwrap();
        chmod(tmp.path(), 0o755);
        let state = StateDir::with_uid_registry(tmp.path().join("s"), tmp.path().join("r/uids"));
        assert_eq!(state.mount_point().unwrap(), tmp.path().join("s/mnt"));
        assert_eq!(closed_to_others(&tmp.path().join("s/mnt")), None);
    }

    #[test]
    fn a_state_directory_under_a_closed_parent_gets_a_reachable_mount_point() {
        let tmp = tempfile::tempdir().unwrap();
        chmod(tmp.path(), 0o755);
        let closed = tmp.path().join("home");
        std::fs::create_dir(&closed).unwrap();
        chmod(&closed, 0o700);
        let state = StateDir::with_uid_registry(closed.join("state"), tmp.path().join("r/uids"));
        let p = state.mount_point().unwrap();
        assert_eq!(p, tmp.path().join("r/mnt"));
        assert_eq!(closed_to_others(&p), None, "the environment can reach it");
        // Control: the state directory's own mount point could not be reached.
        assert_eq!(closed_to_others(&closed.join("state/mnt")), Some(closed));
    }

    #[test]
    fn with_no_reachable_mount_point_the_error_says_what_to_change() {
        let tmp = tempfile::tempdir().unwrap();
        chmod(tmp.path(), 0o755);
        let closed = tmp.path().join("closed");
        std::fs::create_dir_all(closed.join("reg")).unwrap();
        chmod(&closed, 0o700);
        let state = StateDir::with_uid_registry(closed.join("state"), closed.join("reg/uids"));
        let e = state.mount_point().unwrap_err().to_string();
        assert!(
            e.contains(&format!("chmod o+x {}", closed.display())),
            "{e}"
        );
        assert!(e.contains("use a state directory under /run"), "{e}");
    }

    use super::*;

    #[test]
    fn a_handed_over_name_and_uid_range_stay_taken_until_the_new_holder_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::with_uid_registry(tmp.path().join("s"), tmp.path().join("uids"));
        let name = state.claim_name("web").unwrap();
        let uids = state.claim_uid_range().unwrap();
        let slot = uids.slot;
        let (name_fd, name_path) = name.into_parts().unwrap();
        let (parts, uid_fd) = uids.into_parts().unwrap();
        // The old holders are gone: the descriptors alone keep both taken, files in place.
        assert!(state.name_in_use("web").unwrap());
        assert!(name_path.exists() && parts.lock.exists());
        let text = serde_json::to_string(&parts).unwrap();
        let parts: UidRangeParts = serde_json::from_str(&text).unwrap();
        assert_eq!(parts.slot, slot);
        // A descriptor on another file is refused, naming the lock file.
        let other = std::fs::File::create(tmp.path().join("other")).unwrap();
        let err = Held::from_parts(other.into(), name_path.clone()).unwrap_err();
        assert!(
            err.to_string().contains(&name_path.display().to_string()),
            "{err}"
        );
        let name = Held::from_parts(name_fd, name_path.clone()).unwrap();
        let uids = UidRange::from_parts(parts.clone(), uid_fd).unwrap();
        assert_eq!((uids.slot, uids.host_base), (slot, parts.host_base));
        assert!(state.name_in_use("web").unwrap());
        drop(name);
        drop(uids);
        // The new holder released both: files removed, the name free again.
        assert!(!name_path.exists() && !parts.lock.exists());
        assert!(!state.name_in_use("web").unwrap());
        assert!(state.claim_name("web").is_ok());
    }

    #[test]
    fn a_record_replaces_the_lock_files_content_in_place() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("env.lock");
        // A longer file left by a crashed holder: the record replaces all of it.
        std::fs::write(&path, b"a much longer record left behind by a crash").unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let mut held = try_lock(&path).unwrap().unwrap();
        held.write_record(b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
        held.write_record(b"{\"b\":22}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"b\":22}");
        held.write_record(b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
        drop(held);
        assert!(!path.exists());
    }

    #[test]
    fn names_are_exclusive_while_held_and_free_after() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::with_uid_registry(tmp.path(), tmp.path().join("uids"));
        let held = state.claim_name("web").unwrap();
        assert!(held.path().exists());
        assert!(state.name_in_use("web").unwrap());
        let err = state.claim_name("web").unwrap_err();
        assert_eq!(
            err.to_string(),
            "an environment named \"web\" is already running"
        );
        assert!(!state.name_in_use("db").unwrap());
        drop(held);
        assert!(
            !tmp.path().join("envs/web.lock").exists(),
            "lock file left behind"
        );
        assert!(!state.name_in_use("web").unwrap());
        let _again = state.claim_name("web").unwrap();
    }

    #[test]
    fn stale_lock_files_are_reclaimed() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::with_uid_registry(tmp.path(), tmp.path().join("uids"));
        std::fs::create_dir_all(tmp.path().join("envs")).unwrap();
        std::fs::write(tmp.path().join("envs/old.lock"), b"crashed").unwrap();
        assert!(!state.name_in_use("old").unwrap());
        state.claim_name("old").unwrap();
    }

    #[test]
    fn stale_uid_files_are_removed_and_held_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::with_uid_registry(tmp.path(), tmp.path().join("uids"));
        let live = state.claim_uid_range().unwrap();
        let stale = (live.slot + 7) % UID_RANGE_SLOTS;
        std::fs::write(tmp.path().join(format!("uids/{stale}")), b"").unwrap();
        std::fs::write(tmp.path().join("uids/not-a-slot"), b"").unwrap();
        assert_eq!(state.remove_stale_uid_files(), 1);
        assert!(!tmp.path().join(format!("uids/{stale}")).exists());
        assert!(tmp.path().join(format!("uids/{}", live.slot)).exists());
        assert!(tmp.path().join("uids/not-a-slot").exists());
        // The live range's lock survived the sweep: its slot is not handed out again.
        let other = state.claim_uid_range().unwrap();
        assert_ne!(other.slot, live.slot);
    }

    #[test]
    fn uid_ranges_never_overlap() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::with_uid_registry(tmp.path(), tmp.path().join("uids"));
        let ranges: Vec<UidRange> = (0..50).map(|_| state.claim_uid_range().unwrap()).collect();
        let mut bases: Vec<u32> = ranges.iter().map(|r| r.host_base).collect();
        bases.sort();
        for pair in bases.windows(2) {
            assert!(pair[1] - pair[0] >= UID_RANGE_SIZE, "{pair:?} overlap");
        }
        assert!(
            bases.iter().all(|&b| b >= UID_RANGE_BASE),
            "a range starts below the base"
        );
        let slot = ranges[0].slot;
        drop(ranges);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("uids")).unwrap().count(),
            0
        );
        let _ = slot;
    }
}
