//! Sealed roots: a root directory's tree digest computed once (`warren rootfs seal PATH`), and
//! a check cheap enough to run on every launch that the tree cannot have changed since.
//!
//! Sealing bind-mounts the directory read-only onto itself (non-recursive, so it shows exactly
//! what an environment's root shows) and then walks it through that mount. The seal, kept in
//! `<state>/attest/seals/<sha256 of the path>.json` (directory 0700, host root only), records
//! the digest and the mount's **unique** id (`STATX_MNT_ID_UNIQUE`, never reused while the
//! system runs). A launch from the path accepts the sealed digest only when the path still
//! resolves to the root of that same mount, the mount is still read-only, and the directory is
//! still the same inode. No write through that mount is possible, by anyone; a mount with the
//! same id cannot be made again; only root can mount or remount. What is not covered (handles
//! opened before the seal, other mounts of the same filesystem, root remounting it writable)
//! is spelled out in docs/attestation.md. When any check fails the launch walks the tree, as
//! an unsealed root does, and records `digest_source = "walk"`.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, StatxFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::measure::{MeasureError, TREE_FORMAT, TreeDigest, tree_digest};

/// The seal file's format.
pub const SEAL_FORMAT: &str = "warren-seal/1";

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8): a 64-bit mount id that is never reused.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// Why a root could not be sealed or unsealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The path is not something that can be sealed.
    #[error("cannot seal {}: {reason}", path.display())]
    Refused {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A system call failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The tree could not be measured.
    #[error("measure the sealed root")]
    Measure(#[from] MeasureError),
    /// There is no seal for the path.
    #[error("{} is not sealed", .0.display())]
    NotSealed(PathBuf),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SealError + 'a {
    move |source| SealError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A seal: what `warren rootfs seal` wrote, and what a launch checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// [`SEAL_FORMAT`].
    pub format: String,
    /// The sealed directory (absolute, no symlinks).
    pub path: PathBuf,
    /// The tree digest (`blake3:<hex>`).
    pub digest: String,
    /// Its format ([`TREE_FORMAT`]).
    pub tree_format: String,
    /// Entries measured.
    pub entries: u64,
    /// Bytes of file content hashed.
    pub bytes: u64,
    /// The unique id of the read-only mount the seal made.
    pub mount_id: u64,
    /// The directory's device (`major:minor`) and inode.
    pub dev: String,
    /// The directory's inode.
    pub ino: u64,
    /// When it was sealed (seconds since the Unix epoch).
    pub sealed_at: u64,
}

/// What a launch learns about a path's seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealState {
    /// Never sealed (no seal file).
    Unsealed,
    /// Sealed and still holding: the digest may be used.
    Holds(Seal),
    /// Sealed once, but the check failed (the reason); the tree must be walked.
    Broken(String),
}

/// The directory the seals of a state directory live in.
pub fn seals_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("attest").join("seals")
}

fn seal_file(state_dir: &Path, path: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let h = Sha256::digest(path.as_os_str().as_bytes());
    seals_dir(state_dir).join(format!("{}.json", hex::encode(h)))
}

/// The identity of the mount a directory is the root of, as a launch checks it.
struct MountIdentity {
    mount_id: u64,
    mount_root: bool,
    read_only: bool,
    dev: String,
    ino: u64,
}

fn identify(path: &Path) -> io::Result<MountIdentity> {
    let fd: OwnedFd = rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::CLOEXEC
            | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )?;
    let st = rustix::fs::statx(
        &fd,
        c"",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE),
    )?;
    if st.stx_mask & STATX_MNT_ID_UNIQUE == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel gives no unique mount ids (STATX_MNT_ID_UNIQUE, Linux 6.8)",
        ));
    }
    let vfs = rustix::fs::fstatvfs(&fd)?;
    Ok(MountIdentity {
        mount_id: st.stx_mnt_id,
        mount_root: st
            .stx_attributes
            .contains(rustix::fs::StatxAttributes::MOUNT_ROOT),
        read_only: vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
        dev: format!("{}:{}", st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
    })
}

fn canonical(path: &Path) -> Result<PathBuf, SealError> {
    let abs = std::fs::canonicalize(path).map_err(io_err("resolve", path))?;
    if !std::fs::metadata(&abs)
        .map_err(io_err("stat", &abs))?
        .is_dir()
    {
        return Err(SealError::Refused {
            path: abs,
            reason: "not a directory".into(),
        });
    }
    Ok(abs)
}

/// Seals the directory `path`: bind-mounts it read-only onto itself (unless a seal of this
/// state directory already holds there), walks it through that mount, and writes the seal.
/// Must run as host root.
pub fn seal(state_dir: &Path, path: &Path) -> Result<Seal, SealError> {
    let path = canonical(path)?;
    if path == Path::new("/") {
        return Err(SealError::Refused {
            path,
            reason: "the host's own root cannot be mounted read-only over itself; \
                     `--rootfs /` is measured by a walk"
                .into(),
        });
    }
    for anc in path.ancestors().skip(1) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(anc).map_err(io_err("stat", anc))?;
        let sticky = m.mode() & 0o1000 != 0;
        if m.uid() != 0 || (m.mode() & 0o022 != 0 && !sticky) {
            return Err(SealError::Refused {
                path: path.clone(),
                reason: format!(
                    "{} can be changed by users other than root (owner {}, mode {:o}): \
                     they could put another directory at the path",
                    anc.display(),
                    m.uid(),
                    m.mode() & 0o7777
                ),
            });
        }
    }
    if let SealState::Holds(_) = check(state_dir, &path) {
        // Already our read-only mount: re-measure through it.
    } else {
        use rustix::mount::{MountFlags, mount_bind, mount_remount};
        mount_bind(&path, &path).map_err(|e| io_err("bind-mount onto itself", &path)(e.into()))?;
        if let Err(e) = mount_remount(
            &path,
            MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            c"",
        ) {
            let _ = rustix::mount::unmount(&path, rustix::mount::UnmountFlags::DETACH);
            return Err(io_err("remount read-only", &path)(e.into()));
        }
    }
    let id = identify(&path).map_err(io_err("identify the mount of", &path))?;
    if !(id.mount_root && id.read_only) {
        return Err(SealError::Refused {
            path,
            reason: "the read-only mount did not take".into(),
        });
    }
    let TreeDigest {
        digest,
        entries,
        bytes,
    } = tree_digest(&path)?;
    let seal = Seal {
        format: SEAL_FORMAT.into(),
        path: path.clone(),
        digest,
        tree_format: TREE_FORMAT.into(),
        entries,
        bytes,
        mount_id: id.mount_id,
        dev: id.dev,
        ino: id.ino,
        sealed_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let dir = seals_dir(state_dir);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create", &dir))?;
    }
    let file = seal_file(state_dir, &path);
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(&seal).unwrap_or_default();
    std::fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
    std::fs::rename(&tmp, &file).map_err(io_err("write", &file))?;
    Ok(seal)
}

/// Removes the seal of `path` and the read-only mount it made (if it is still there).
pub fn unseal(state_dir: &Path, path: &Path) -> Result<Seal, SealError> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let file = seal_file(state_dir, &path);
    let seal = read_seal(&file)?.ok_or_else(|| SealError::NotSealed(path.clone()))?;
    if let Ok(id) = identify(&path) {
        if id.mount_id == seal.mount_id {
            rustix::mount::unmount(&path, rustix::mount::UnmountFlags::empty())
                .map_err(|e| io_err("unmount the seal's mount on", &path)(e.into()))?;
        }
    }
    std::fs::remove_file(&file).map_err(io_err("remove", &file))?;
    Ok(seal)
}

fn read_seal(file: &Path) -> Result<Option<Seal>, SealError> {
    match std::fs::read(file) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| SealError::Io {
                what: "parse",
                path: file.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", file)(e)),
    }
}

/// The seal of `path` (an absolute path, as the launch was given it), checked: a `stat`, a
/// `statfs` and one small file read, whatever the size of the tree.
pub fn check(state_dir: &Path, path: &Path) -> SealState {
    let file = seal_file(state_dir, path);
    let seal = match read_seal(&file) {
        Ok(None) => return SealState::Unsealed,
        Ok(Some(s)) => s,
        Err(e) => return SealState::Broken(e.to_string()),
    };
    if seal.path != path || seal.format != SEAL_FORMAT || seal.tree_format != TREE_FORMAT {
        return SealState::Broken("the seal is for another path or format".into());
    }
    let id = match identify(path) {
        Ok(id) => id,
        Err(e) => return SealState::Broken(format!("cannot identify the mount: {e}")),
    };
    if id.mount_id != seal.mount_id || !id.mount_root {
        return SealState::Broken(
            "the path is no longer the root of the seal's read-only mount (unmounted, \
             replaced, or another mount namespace)"
                .into(),
        );
    }
    if !id.read_only {
        return SealState::Broken("the seal's mount was remounted writable".into());
    }
    if id.dev != seal.dev || id.ino != seal.ino {
        return SealState::Broken("the directory is another inode".into());
    }
    SealState::Holds(seal)
}

/// The digest of a launch's root and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDigest {
    /// The tree digest (`entries` and `bytes` are those of the walk or seal that computed it;
    /// zero for a store digest).
    pub tree: TreeDigest,
    /// Where it came from.
    pub source: crate::measure::DigestSource,
}

/// The digest of the root directory `dir` for a launch: `known` (the image store's digest of
/// a stored root) when given; else the seal's, when `dir` is sealed and the seal holds; else a
/// walk of the tree, reusing large files' content digests from `<state>/attest/content-cache`.
pub fn root_digest(
    state_dir: &Path,
    dir: &Path,
    known: Option<&str>,
) -> Result<RootDigest, MeasureError> {
    use crate::measure::DigestSource;
    if let Some(d) = known {
        return Ok(RootDigest {
            tree: TreeDigest {
                digest: d.to_owned(),
                entries: 0,
                bytes: 0,
            },
            source: DigestSource::Store,
        });
    }
    let mut state = check(state_dir, dir);
    if state == SealState::Unsealed {
        if let Ok(c) = std::fs::canonicalize(dir) {
            // Compared as bytes: `Path` equality ignores `.` components (`/a/./b` == `/a/b`),
            // but the seal file is found by the path's bytes.
            if c.as_os_str() != dir.as_os_str() {
                state = check(state_dir, &c);
            }
        }
    }
    if let SealState::Holds(seal) = state {
        return Ok(RootDigest {
            tree: TreeDigest {
                digest: seal.digest,
                entries: seal.entries,
                bytes: seal.bytes,
            },
            source: DigestSource::Seal,
        });
    }
    let attest = state_dir.join("attest");
    let cache = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&attest)
            .ok()
            .map(|()| attest.join("content-cache"))
    };
    Ok(RootDigest {
        tree: crate::measure::tree_digest_cached(dir, cache.as_deref())?,
        source: DigestSource::Walk,
    })
}
