//! The environment's skeleton: one small read-only tmpfs behind every directory and file that
//! Warren makes for an environment and that nothing writes to afterwards: `/dev` (the mount
//! points of the device nodes, the links, `/dev/warren`, `/dev/shm`'s and `/dev/pts`'s mount
//! points), `/sys` (only `fs/cgroup` and the mount points of the cgroup view), the empty
//! directory that covers the masked `/proc` directories, and the generated `/etc` files.
//!
//! One tmpfs rather than one each: every tmpfs is a superblock, and on this kernel every
//! superblock registers a memory-cgroup-aware shrinker; each memory cgroup on the host keeps
//! about 1 KiB per 64 shrinker ids the host has had at once (`alloc_shrinker_info`, a
//! high-water mark kept until reboot). With a memory cgroup and seven superblocks per
//! environment, 1,000 environments made each environment's cgroup hold about 117 KiB of these
//! tables, the largest single item of a child's host memory (BENCHMARKS.md, "Spawn"). An
//! environment mounts four file systems of its own: `/proc`, the skeleton, `/tmp` and
//! `/dev/shm` (the kernel adds the mqueue of its ipc namespace; a `--binary` root adds its root
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
/// gets a devpts of its own.
pub(crate) fn prepare(
    staging: &Path,
    etc_files: &[(usize, String)],
    view: &[warren_cgroup::ViewMount],
    tool: bool,
    tty: bool,
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
    Ok(Skeleton {
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
