//! The environment's skeleton: one small read-only tmpfs behind every directory and file that
//! Warren makes for an environment and that nothing writes to afterwards: `/dev` (the mount
//! points of the device nodes, the links, `/dev/warren`, `/dev/shm`'s and `/dev/pts`'s mount
//! points), `/sys` (only `fs/cgroup` and the mount points of the cgroup view), the empty
//! directory that covers the masked `/proc` directories, the generated `/etc` files, and the
//! mount point (`scratch/`) of the one writable tmpfs whose `tmp/` and `shm/` become `/tmp` and
//! `/dev/shm`.
//!
//! One tmpfs rather than one each: every tmpfs is a superblock, and on this kernel every
//! superblock registers a memory-cgroup-aware shrinker; each memory cgroup on the host keeps
//! about 1 KiB per 64 shrinker ids the host has had at once (`alloc_shrinker_info`, a
//! high-water mark kept until reboot). With a memory cgroup and seven superblocks per
//! environment, 1,000 environments made each environment's cgroup hold about 117 KiB of these
//! tables, the largest single item of a child's host memory (BENCHMARKS.md, "Spawn"). An
//! environment mounts three file systems of its own: `/proc`, the skeleton, and one writable
//! tmpfs for `/tmp` and `/dev/shm` (on the skeleton's `scratch/`; the kernel adds the mqueue of its ipc namespace; a `--binary` root adds its root
//! tmpfs, `-t` a devpts, `--writable-root` the overlay and its upper tmpfs).
//!
//! [`prepare`] runs in the child at the start of step `mount-root`, as the environment's root,
//! before the root is attached: it mounts the skeleton on the staging directory itself, fills it,
//! makes it read-only (the superblock and the mount) and opens the parts it hands out (`O_PATH`
//! descriptors, and detached `open_tree` clones of the `/etc` files). The root attached on top
//! then hides the skeleton itself; each part is bind-mounted from its descriptor
//! (`/proc/self/fd/N`), and a bind keeps the skeleton mount's flags: read-only, `nosuid`,
//! `nodev`, `noexec`. The skeleton goes with the rest of the host's mounts when the child
//! detaches the old root after the pivot; the binds keep what they show. (A part is bound only
//! where it is used: a detached clone that is never attached would cost an expedited RCU grace
//! period when dropped, as for a `--binary` root, which has no `/sys`.)

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::Mode;
use rustix::mount::{MountFlags, mount, mount_remount};

use crate::policy;
use crate::step::{Step, StepResult, at, io_at};

/// The skeleton's mount options: room for the largest legal generated `/etc/hosts` (256
/// `--add-host` lines) with margin, and a few dozen inodes (about 30 are used).
const OPTIONS: &std::ffi::CStr = c"mode=0755,size=1m,nr_inodes=128";

/// The parts of the skeleton: `O_PATH` descriptors of its directories, to bind from, and the
/// generated files as detached mounts.
pub(crate) struct Skeleton {
    /// `/dev`: empty files where the device nodes are bound, the links of
    /// [`policy::DEV_SYMLINKS`], `shm/`, `warren/warren-msg` with the mailbox client, and with
    /// `-t` `pts/`, the `ptmx` link and `tty`.
    pub dev: OwnedFd,
    /// `/sys`, holding `fs/cgroup` and the mount points of the cgroup view; `None` without a
    /// view.
    pub sys: Option<OwnedFd>,
    /// An empty directory, bound over the masked `/proc` directories.
    pub empty: OwnedFd,
    /// `/tmp` and `/dev/shm`: two directories (mode 1777) of one writable tmpfs of the
    /// environment's `tmpfs_size`, mounted `nosuid,nodev` on the skeleton's `scratch/` (see
    /// [`prepare`]).
    pub tmp: OwnedFd,
    /// See `tmp`.
    pub shm: OwnedFd,
    /// The generated `/etc` files.
    pub etc: crate::etcfiles::Prepared,
}

/// Where cgroup view mount `m` goes below the `/sys` directory `sys` (the skeleton's, while
/// it is built; the root's, when the view is mounted).
pub(crate) fn view_dir(sys: &Path, m: &warren_cgroup::ViewMount) -> PathBuf {
    let base = sys.join("fs/cgroup");
    if m.dir.is_empty() {
        base
    } else {
        base.join(&m.dir)
    }
}

/// Mounts the skeleton on `staging`, fills it and hands out its parts (module documentation).
/// `view` names the cgroup view's mount points (relative to `/sys/fs/cgroup`); `tool` says
/// whether the mailbox client is bound at `/dev/warren/warren-msg`; `tty`, whether `/dev/pts`
/// gets a devpts of its own; `tmpfs_size`, the size of the one writable tmpfs that `/tmp` and
/// `/dev/shm` share.
///
/// That tmpfs is mounted on the skeleton's `scratch/` directory, which the root then hides
/// like the rest of the skeleton, and holds only `tmp/` and `shm/`: each is bound from its
/// descriptor onto its place, so neither shows the other, and the original mount leaves with
/// the skeleton. One superblock for the two writable places rather than one each (module
/// documentation: every superblock costs every memory cgroup shrinker tables).
pub(crate) fn prepare(
    staging: &Path,
    etc_files: &[(usize, String)],
    view: &[warren_cgroup::ViewMount],
    tool: bool,
    tty: bool,
    tmpfs_size: u64,
) -> StepResult<Skeleton> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    at(
        Step::MountRoot,
        || format!("mount the skeleton tmpfs on {}", staging.display()),
        mount("tmpfs", staging, "tmpfs", flags, OPTIONS),
    )?;
    crate::etcfiles::write(staging, etc_files)?;
    let dev = staging.join("dev");
    fill_dev(&dev, tool, tty)?;
    let sys = staging.join("sys");
    for m in view {
        io_at(
            Step::MountRoot,
            || format!("create /sys/fs/cgroup/{} in the skeleton", m.dir),
            std::fs::create_dir_all(view_dir(&sys, m)),
        )?;
    }
    let empty = staging.join("empty");
    at(
        Step::MountRoot,
        || "create the empty directory for the masks".into(),
        rustix::fs::mkdir(&empty, Mode::from_raw_mode(0o555)),
    )?;
    let scratch = staging.join("scratch");
    at(
        Step::MountTmp,
        || "create the skeleton's scratch/".into(),
        rustix::fs::mkdir(&scratch, Mode::from_raw_mode(0o555)),
    )?;
    // The superblock and this mount both read-only: every bind and clone of it keeps the flags.
    at(
        Step::MountRoot,
        || "make the skeleton tmpfs read-only".into(),
        mount_remount(staging, flags | MountFlags::RDONLY, OPTIONS),
    )?;
    let open = |path: &Path| {
        at(
            Step::MountRoot,
            || format!("open the skeleton's /{}", file_name(path)),
            rustix::fs::open(
                path,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                Mode::empty(),
            ),
        )
    };
    let (tmp, shm) = mount_scratch(&scratch, tmpfs_size)?;
    Ok(Skeleton {
        tmp,
        shm,
        dev: open(&dev)?,
        sys: if view.is_empty() {
            None
        } else {
            Some(open(&sys)?)
        },
        empty: open(&empty)?,
        etc: crate::etcfiles::clone(staging, etc_files)?,
    })
}

/// The writable tmpfs of `/tmp` and `/dev/shm` on `scratch` (see [`prepare`]): `size` bytes,
/// one inode per 4 KiB (at least 1,024), `nosuid,nodev`; its `tmp/` and `shm/` are
/// world-writable and sticky, as the two places are. Returns them as `O_PATH` descriptors.
fn mount_scratch(scratch: &Path, size: u64) -> StepResult<(OwnedFd, OwnedFd)> {
    let options = format!("mode=0755,size={size},nr_inodes={}", inode_limit(size));
    let options = std::ffi::CString::new(options).expect("no NUL in mount options");
    at(
        Step::MountTmp,
        || {
            format!(
                "mount the tmpfs of /tmp and /dev/shm on {}",
                scratch.display()
            )
        },
        mount(
            "tmpfs",
            scratch,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            options.as_c_str(),
        ),
    )?;
    let mut made = Vec::with_capacity(2);
    for name in ["tmp", "shm"] {
        let dir = scratch.join(name);
        at(
            Step::MountTmp,
            || format!("create {name}/ in the tmpfs of /tmp and /dev/shm"),
            rustix::fs::mkdir(&dir, Mode::from_raw_mode(0o1777)),
        )?;
        // The umask may have cleared some of the bits.
        at(
            Step::MountTmp,
            || format!("make {name}/ mode 1777"),
            rustix::fs::chmod(&dir, Mode::from_raw_mode(0o1777)),
        )?;
        made.push(at(
            Step::MountTmp,
            || format!("open {name}/ of the tmpfs of /tmp and /dev/shm"),
            rustix::fs::open(
                &dir,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                Mode::empty(),
            ),
        )?);
    }
    let shm = made.pop().expect("two made");
    let tmp = made.pop().expect("two made");
    Ok((tmp, shm))
}

/// One inode per 4 KiB of tmpfs, at least 1024: bounds inode exhaustion as well as bytes.
fn inode_limit(size: u64) -> u64 {
    (size / 4096).max(1024)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `/dev`'s entries (mount points and links; the nodes themselves are bound in step
/// `mount-dev`).
fn fill_dev(dev: &Path, tool: bool, tty: bool) -> StepResult {
    let step = Step::MountRoot;
    let mkdir = |path: &Path| {
        at(
            step,
            || format!("create /dev/{} in the skeleton", file_name(path)),
            rustix::fs::mkdir(path, Mode::from_raw_mode(0o755)),
        )
    };
    let create = |path: &Path, mode: u32| {
        at(
            step,
            || format!("create /dev/{} in the skeleton", file_name(path)),
            rustix::fs::open(
                path,
                rustix::fs::OFlags::CREATE
                    | rustix::fs::OFlags::EXCL
                    | rustix::fs::OFlags::WRONLY
                    | rustix::fs::OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            ),
        )
        .map(drop)
    };
    mkdir(dev)?;
    for (name, _why) in policy::DEVICES {
        create(&dev.join(name), 0o644)?;
    }
    for (name, target) in policy::DEV_SYMLINKS {
        io_at(
            step,
            || format!("link /dev/{name}"),
            std::os::unix::fs::symlink(target, dev.join(name)),
        )?;
    }
    if tool {
        let dir = dev.join("warren");
        mkdir(&dir)?;
        create(&dir.join("warren-msg"), 0o644)?;
    }
    if tty {
        mkdir(&dev.join("pts"))?;
        io_at(
            step,
            || "link /dev/ptmx".into(),
            std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx")),
        )?;
        create(&dev.join("tty"), 0o666)?;
    }
    mkdir(&dev.join("shm"))
}
