//! The environment's filesystem view, built inside its new mount namespace (child side).
//!
//! The steps run in this order (see `docs/launch-sequence.md`): make every mount private; mount
//! the skeleton (`crate::skeleton`: Warren's own read-only directories) and the root on top of it
//! (the image bind-mounted, or a tmpfs holding the program and its libraries) on the state
//! directory's empty mount point; mount a fresh `/proc`; the skeleton's `/dev` holding only the
//! devices of [`policy::DEVICES`]; `/tmp` and `/dev/shm` (two directories of one tmpfs, mounted
//! with the skeleton); cover the masked `/proc` paths;
//! make the root read-only; `pivot_root` into it and detach the old root. Nothing of the host's
//! tree stays reachable: no `/sys`, no host mount, no old root.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, StatVfsMountFlags};
use rustix::mount::{
    MountFlags, MountPropagationFlags, UnmountFlags, mount, mount_bind, mount_change,
    mount_remount, unmount,
};

use crate::plan::RootSource;
use crate::policy;
use crate::step::Step;
use warren_elf::BinaryRoot;

pub(crate) use crate::step::StepResult;
use crate::step::{at, io_at};

/// Mount options as the C string `mount(2)` takes.
fn data(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).expect("mount options never contain NUL")
}

/// Mount flags that a remount must keep: a mount namespace owned by a less privileged user
/// namespace may not clear these "locked" flags, so a read-only remount repeats them.
fn locked_flags(path: &Path) -> rustix::io::Result<MountFlags> {
    let f = rustix::fs::statvfs(path)?.f_flag;
    let mut m = MountFlags::empty();
    for (s, mf) in [
        (StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
    ] {
        if f.contains(s) {
            m |= mf;
        }
    }
    Ok(m)
}

/// Make the root mounted at `staging` (a `--rootfs` or image bind) read-only, nosuid and
/// nodev: the lower layer of a writable root.
pub(crate) fn readonly_lower(staging: &Path) -> StepResult {
    at(
        Step::MountRoot,
        || format!("remount {} read-only", staging.display()),
        remount_bind_readonly(staging, MountFlags::NOSUID | MountFlags::NODEV),
    )
}

/// Remount the bind mount at `path` read-only, adding `extra` and keeping its locked flags.
fn remount_bind_readonly(path: &Path, extra: MountFlags) -> rustix::io::Result<()> {
    let flags = locked_flags(path)? | MountFlags::RDONLY | extra;
    mount_remount(path, flags | MountFlags::BIND, "")
}

/// A directory that must exist in the root as a real directory (never a symlink, which could
/// point a mount outside the root).
fn require_dir(step: Step, path: &Path) -> StepResult {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(_) => Err((
            step,
            format!(
                "{} must be a directory (not a symlink or file) to mount onto",
                path.display()
            ),
            std::io::Error::from_raw_os_error(libc_enotdir()),
        )),
        Err(e) => Err((
            step,
            format!("the root has no {} directory to mount onto", path.display()),
            e,
        )),
    }
}

const fn libc_enotdir() -> i32 {
    20
}

/// What [`enter_root`] mounts besides the root itself.
pub(crate) struct ExtraMounts<'a> {
    /// The plan's volumes and bind mounts, in order.
    pub volumes: &'a [crate::plan::MountSpec],
    /// Their detached (idmapped) mount trees, in the same order.
    pub trees: &'a [BorrowedFd<'a>],
    /// The cgroup filesystems of the environment's view of its own cgroup.
    pub cgroup_view: &'a [warren_cgroup::ViewMount],
    /// `--writable-root`: the size of the overlay's upper tmpfs.
    pub writable_root: Option<u64>,
    /// `-t`: a devpts instance of the environment's own on `/dev/pts`.
    pub tty: bool,
    /// The generated `/etc` files (`crate::etcfiles`), bound after the volumes.
    pub etc_files: &'a [(usize, String)],
}

/// Build the root at `staging` and pivot into it. On return the process's root and working
/// directory are the environment's `/`.
///
/// `sources` are `O_PATH` descriptors (from [`open_sources`]) for the root's host files (the rootfs
/// directory, or the binary root's files in [`binary_entries`] order): binding from
/// `/proc/self/fd/N` needs no search permission on their host parent directories, which the
/// environment's unprivileged root may lack.
pub(crate) fn enter_root(
    root: &RootSource,
    sources: &[OwnedFd],
    tool: Option<&OwnedFd>,
    extra: ExtraMounts<'_>,
    staging: &Path,
    tmpfs_size: u64,
    fault: Option<Step>,
) -> StepResult {
    let ExtraMounts {
        volumes,
        trees,
        etc_files,
        cgroup_view,
        writable_root,
        tty,
    } = extra;
    let fault = |step: Step| -> StepResult {
        if fault == Some(step) {
            Err((
                step,
                "fault injection".into(),
                std::io::Error::other("injected fault"),
            ))
        } else {
            Ok(())
        }
    };
    at(
        Step::MountPrivate,
        || "make / rprivate".into(),
        mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        ),
    )?;
    fault(Step::MountPrivate)?;
    // Warren's own directories and the generated /etc files, in one read-only tmpfs that the
    // root will hide (`crate::skeleton`).
    let skeleton = crate::skeleton::prepare(
        staging,
        etc_files,
        cgroup_view,
        tool.is_some(),
        tty,
        tmpfs_size,
    )?;
    // Files of a binary root whose paths lie under /tmp: bound once /tmp is in place (the
    // writable tmpfs's `tmp/`), which would hide them otherwise (a program built in a temporary directory keeps its path).
    let mut under_tmp = Vec::new();
    match root {
        RootSource::Rootfs(dir) => {
            // `sources[0]` is a detached, non-recursive copy of the directory's mount, made by
            // the parent (see `launch`): attach it.
            at(
                Step::MountRoot,
                || format!("attach {} onto {}", dir.display(), staging.display()),
                rustix::mount::move_mount(
                    &sources[0],
                    "",
                    rustix::fs::CWD,
                    staging,
                    rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                ),
            )?;
            for d in ["proc", "dev", "tmp"] {
                require_dir(Step::MountRoot, &staging.join(d))?;
            }
        }
        RootSource::Binary(bin) => under_tmp = build_binary_root(bin, sources, staging)?,
        RootSource::Image(dir) => {
            // `sources[0]` is the detached mount of the image, already made read-only, nosuid,
            // nodev and idmapped by the parent: attach it.
            at(
                Step::MountRoot,
                || {
                    format!(
                        "attach the image root {} onto {}",
                        dir.display(),
                        staging.display()
                    )
                },
                rustix::mount::move_mount(
                    &sources[0],
                    "",
                    rustix::fs::CWD,
                    staging,
                    rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                ),
            )?;
            for d in ["proc", "dev", "tmp"] {
                require_dir(Step::MountRoot, &staging.join(d))?;
            }
        }
    }
    if let Some(size) = writable_root {
        readonly_lower(staging)?;
        crate::overlay::make_writable_root(staging, size)?;
    }
    fault(Step::MountRoot)?;
    mount_proc(staging)?;
    mount_cgroup_view(staging, cgroup_view, skeleton.sys)?;
    fault(Step::MountProc)?;
    mount_dev(staging, skeleton.dev, &skeleton.shm, tool, tty)?;
    fault(Step::MountDev)?;
    // The skeleton's scratch tmpfs's `tmp/`; the bind keeps its `nosuid,nodev`.
    let tmp = staging.join("tmp");
    at(
        Step::MountTmp,
        || format!("bind the tmpfs's tmp/ on {}", tmp.display()),
        attach(&skeleton.tmp, &tmp),
    )?;
    for (host, target, src) in &under_tmp {
        bind_file(Step::MountTmp, staging, host, target, &sources[*src])?;
    }
    fault(Step::MountTmp)?;
    mask_proc(staging, skeleton.empty)?;
    fault(Step::MaskPaths)?;
    if writable_root.is_none() {
        make_root_readonly(root, staging)?;
    }
    fault(Step::ReadonlyRoot)?;
    attach_mounts(staging, volumes, trees)?;
    crate::etcfiles::attach(staging, skeleton.etc)?;
    fault(Step::MountVolumes)?;
    pivot(staging)
}

/// Step `mount-volumes`: attach each detached mount (already idmapped, nosuid, nodev and, when
/// asked, read-only) at its destination, which must be a directory of the root reached
/// without a symbolic link (the root is read-only: Warren creates no mount points in it).
fn attach_mounts(
    staging: &Path,
    specs: &[crate::plan::MountSpec],
    trees: &[BorrowedFd<'_>],
) -> StepResult {
    for (m, tree) in specs.iter().zip(trees) {
        let rel = m.dest.strip_prefix("/").unwrap_or(&m.dest);
        let target = staging.join(rel);
        // Refuse a destination reached through a symbolic link: a root could point one at
        // `/proc` or at another mount's directory.
        let mut walk = staging.to_path_buf();
        for c in rel.components() {
            walk.push(c);
            let meta = std::fs::symlink_metadata(&walk).map_err(|e| {
                (
                    Step::MountVolumes,
                    format!("mount point {} in the root", m.dest.display()),
                    e,
                )
            })?;
            if !meta.is_dir() {
                return Err((
                    Step::MountVolumes,
                    format!(
                        "mount point {} in the root: {} is not a directory",
                        m.dest.display(),
                        walk.strip_prefix(staging).unwrap_or(&walk).display()
                    ),
                    std::io::Error::from(std::io::ErrorKind::NotADirectory),
                ));
            }
        }
        at(
            Step::MountVolumes,
            || format!("attach {} at {}", m.source, m.dest.display()),
            rustix::mount::move_mount(
                tree,
                "",
                rustix::fs::CWD,
                &target,
                rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            ),
        )?;
    }
    Ok(())
}

/// The paths of a binary root in a fixed order: binary, interpreter, libraries, added paths
/// (files or directories).
pub(crate) fn binary_entries(bin: &BinaryRoot) -> Vec<&warren_elf::RootEntry> {
    let mut entries = vec![&bin.binary];
    entries.extend(bin.interpreter.iter());
    entries.extend(bin.libraries.iter());
    entries.extend(bin.added.iter().map(|a| &a.entry));
    entries
}

/// `O_PATH` descriptors, opened in the environment's mount namespace, for the root's host
/// files in the order [`enter_root`] binds them.
///
/// With a client tool, its descriptor comes last.
pub(crate) fn open_sources(root: &RootSource, tool: Option<&Path>) -> StepResult<Vec<OwnedFd>> {
    let mut paths: Vec<PathBuf> = match root {
        RootSource::Binary(b) => binary_entries(b).iter().map(|e| e.host.clone()).collect(),
        // The root's mount comes from the parent (see `launch`), not from a path.
        RootSource::Rootfs(_) | RootSource::Image(_) => vec![],
    };
    paths.extend(tool.map(Path::to_owned));
    paths
        .iter()
        .map(|p| {
            at(
                Step::MountRoot,
                || format!("open {}", p.display()),
                rustix::fs::open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()),
            )
        })
        .collect()
}

/// The magic-link path of an open descriptor.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Builds a binary root on a tmpfs; returns the entries under `/tmp`, which the caller binds
/// once `/tmp` is in place.
fn build_binary_root(
    bin: &BinaryRoot,
    sources: &[OwnedFd],
    staging: &Path,
) -> StepResult<Vec<(PathBuf, PathBuf, usize)>> {
    let step = Step::MountRoot;
    at(
        step,
        || format!("mount tmpfs root on {}", staging.display()),
        mount(
            "tmpfs",
            staging,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            data("mode=0755,size=1m,nr_inodes=4096").as_c_str(),
        ),
    )?;
    for d in ["proc", "dev", "tmp"] {
        io_at(
            step,
            || format!("create /{d}"),
            std::fs::create_dir(staging.join(d)),
        )?;
    }
    let mut placed: Vec<(PathBuf, PathBuf, usize)> = binary_entries(bin)
        .iter()
        .enumerate()
        .map(|(i, e)| (e.host.clone(), e.target.clone(), i))
        .collect();
    // Also at `/<basename>`, the short path DESIGN.md's examples use, unless that is taken.
    if let Some(base) = bin.binary.target.file_name() {
        let alias = Path::new("/").join(base);
        if !placed
            .iter()
            .any(|(_, t, _)| t == &alias || t.starts_with(&alias))
            && !["proc", "dev", "tmp"]
                .iter()
                .any(|d| Path::new("/").join(d) == alias)
        {
            placed.push((bin.binary.host.clone(), alias, 0));
        }
    }
    let (under_tmp, placed): (Vec<_>, Vec<_>) = placed
        .into_iter()
        .partition(|(_, target, _)| target.starts_with("/tmp"));
    for (host, target, src) in &placed {
        bind_file(step, staging, host, target, &sources[*src])?;
    }
    Ok(under_tmp)
}

/// Binds host file or directory `src` (named `host` in errors) read-only at `target` below
/// `staging`, creating the mount point and its parents; an existing `target` is left as it is.
/// A directory is bound without the mounts below it on the host.
fn bind_file(step: Step, staging: &Path, host: &Path, target: &Path, src: &OwnedFd) -> StepResult {
    let rel = target.strip_prefix("/").unwrap_or(target);
    let dst = staging.join(rel);
    if dst.exists() {
        return Ok(());
    }
    if let Some(parent) = dst.parent() {
        io_at(
            step,
            || format!("create {}", parent.display()),
            std::fs::create_dir_all(parent),
        )?;
    }
    let is_dir = at(
        step,
        || format!("stat {}", host.display()),
        rustix::fs::fstat(src),
    )
    .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)?;
    if is_dir {
        io_at(
            step,
            || format!("create {}", dst.display()),
            std::fs::create_dir(&dst),
        )?;
    } else {
        io_at(
            step,
            || format!("create {}", dst.display()),
            std::fs::File::create(&dst).map(drop),
        )?;
    }
    at(
        step,
        || format!("bind {} onto {}", host.display(), target.display()),
        mount_bind(fd_path(src), &dst),
    )?;
    at(
        step,
        || format!("make {} read-only", target.display()),
        remount_bind_readonly(&dst, MountFlags::NOSUID | MountFlags::NODEV),
    )
}

/// Binds the skeleton's directory `part` (an `O_PATH` descriptor) at `target`; the bind keeps
/// the flags of the mount `part` lies on: the skeleton's read-only, `nosuid`, `nodev` and
/// `noexec`, or the writable tmpfs's `nosuid` and `nodev` (`/tmp`, `/dev/shm`).
fn attach(part: &OwnedFd, target: &Path) -> rustix::io::Result<()> {
    mount_bind(fd_path(part), target)
}

fn mount_proc(staging: &Path) -> StepResult {
    let proc_dir = staging.join("proc");
    at(
        Step::MountProc,
        || format!("mount proc on {}", proc_dir.display()),
        mount(
            "proc",
            &proc_dir,
            "proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        ),
    )
}

/// A read-only view of the environment's own cgroup at `/sys/fs/cgroup`, so programs that size
/// themselves to their limits (JVM, Go, Node) find them: the skeleton's read-only `/sys` (no
/// sysfs) holding `fs/cgroup`, and on it the cgroup filesystems of `view`, mounted read-only in
/// the environment's cgroup namespace (unshared after it joined its cgroup), so their root is
/// its own cgroup. Skipped for a root without a `/sys` directory, and without a cgroup. A
/// symbolic link at `/sys` counts as no directory: it is the root's, so following it would let
/// the root aim these mounts anywhere (onto the fresh `/proc`, or, resolved before the pivot,
/// onto a host path in this mount namespace).
fn mount_cgroup_view(
    staging: &Path,
    view: &[warren_cgroup::ViewMount],
    tree: Option<OwnedFd>,
) -> StepResult {
    let sys = staging.join("sys");
    let Some(tree) = tree else {
        return Ok(());
    };
    // (The skeleton has a `/sys` exactly when there is a view.)
    if !std::fs::symlink_metadata(&sys).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let step = Step::MountProc;
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    at(
        step,
        || format!("bind the skeleton's /sys on {}", sys.display()),
        attach(&tree, &sys),
    )?;
    for m in view {
        let target = crate::skeleton::view_dir(&sys, m);
        at(
            step,
            || {
                format!(
                    "mount the cgroup view ({} {}) on {}",
                    m.fstype,
                    m.options,
                    target.display()
                )
            },
            mount(
                m.fstype,
                &target,
                m.fstype,
                flags | MountFlags::RDONLY,
                data(&m.options).as_c_str(),
            ),
        )?;
    }
    Ok(())
}

/// Step `mount-dev`: the skeleton's read-only `/dev` (`tree`), the host's device nodes of
/// [`policy::DEVICES`] bound onto its files, the mailbox client, devpts with `-t`, and `shm`
/// (the `shm/` of the tmpfs `/tmp` shares) on `/dev/shm`, `noexec`.
fn mount_dev(
    staging: &Path,
    tree: OwnedFd,
    shm: &OwnedFd,
    tool: Option<&OwnedFd>,
    tty: bool,
) -> StepResult {
    let step = Step::MountDev;
    let dev = staging.join("dev");
    at(
        step,
        || "bind the skeleton's /dev".into(),
        attach(&tree, &dev),
    )?;
    drop(tree);
    for (name, _why) in policy::DEVICES {
        let host = Path::new("/dev").join(name);
        let meta = io_at(
            step,
            || format!("stat host {}", host.display()),
            std::fs::metadata(&host),
        )?;
        if !meta.file_type().is_char_device() {
            return Err((
                step,
                format!("host {} is not a character device", host.display()),
                std::io::Error::from_raw_os_error(19),
            ));
        }
        at(
            step,
            || format!("bind {} onto /dev/{name}", host.display()),
            mount_bind(&host, dev.join(name)),
        )?;
        // No remount: a character device cannot be executed, and set-id bits mean nothing on
        // it; the bind keeps the host devtmpfs flags, which are never less strict than needed.
    }
    if let Some(tool) = tool {
        // The mailbox client, read-only: `/dev/warren/warren-msg`. Its bind mount keeps the
        // host's exec permission even though the skeleton itself is noexec.
        let dst = dev.join("warren/warren-msg");
        at(
            step,
            || "bind the mailbox client".into(),
            mount_bind(fd_path(tool), &dst),
        )?;
        at(
            step,
            || "make the mailbox client read-only".into(),
            remount_bind_readonly(&dst, MountFlags::NOSUID | MountFlags::NODEV),
        )?;
    }
    if tty {
        crate::pty::mount_devpts(&dev)?;
    }
    let target = dev.join("shm");
    at(
        step,
        || "bind the tmpfs's shm/ on /dev/shm".into(),
        attach(shm, &target),
    )?;
    at(
        step,
        || "make /dev/shm noexec".into(),
        mount_remount(
            &target,
            MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            "",
        ),
    )
}

fn mask_proc(staging: &Path, empty: OwnedFd) -> StepResult {
    let step = Step::MaskPaths;
    let proc_dir = staging.join("proc");
    let null = staging.join("dev/null");
    // The mask must be the real null device (CVE-2025-31133: a /dev/null swapped for a link
    // would turn every mask into a bind of something else).
    let meta = io_at(
        step,
        || "stat /dev/null".into(),
        std::fs::symlink_metadata(&null),
    )?;
    if !meta.file_type().is_char_device()
        || rustix::fs::major(std::os::unix::fs::MetadataExt::rdev(&meta)) != 1
        || rustix::fs::minor(std::os::unix::fs::MetadataExt::rdev(&meta)) != 3
    {
        return Err((
            step,
            "/dev/null is not the null device (1:3)".into(),
            std::io::Error::from_raw_os_error(19),
        ));
    }
    let read_num = |rel: &str| -> Option<i64> {
        warren_sys::read_pseudo_file(proc_dir.join(rel))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let mut masked: Vec<&str> = policy::MASKED_PROC_PATHS.iter().map(|(n, _)| *n).collect();
    if policy::kallsyms_would_leak(
        read_num("sys/kernel/kptr_restrict"),
        read_num("sys/kernel/perf_event_paranoid"),
    ) {
        masked.push("kallsyms");
    }
    // No `stat` first (one per path, on every launch): the mount itself says what is there. A
    // bind of the skeleton's empty directory onto a file fails with ENOTDIR, and so does a bind
    // of the null device onto a directory; a path this kernel lacks fails with ENOENT and is
    // skipped.
    let dir_mask = |p: &Path| attach(&empty, p);
    for name in masked {
        let p = proc_dir.join(name);
        // The known kind first; the other on ENOTDIR (a kernel that made a file a directory).
        let r = if policy::MASKED_PROC_DIRS.contains(&name) {
            match dir_mask(&p) {
                Err(rustix::io::Errno::NOTDIR) => mount_bind(&null, &p),
                r => r,
            }
        } else {
            match mount_bind(&null, &p) {
                Err(rustix::io::Errno::NOTDIR) => dir_mask(&p),
                r => r,
            }
        };
        match r {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => at(step, || format!("mask /proc/{name}"), Err(e))?,
        }
    }
    for (name, _why) in policy::READONLY_PROC_PATHS {
        let p = proc_dir.join(name);
        match rustix::mount::mount_bind_recursive(&p, &p) {
            Err(rustix::io::Errno::NOENT) => continue,
            r => at(step, || format!("bind /proc/{name}"), r)?,
        }
        at(
            step,
            || format!("make /proc/{name} read-only"),
            remount_bind_readonly(
                &p,
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            ),
        )?;
    }
    Ok(())
}

fn make_root_readonly(root: &RootSource, staging: &Path) -> StepResult {
    let step = Step::ReadonlyRoot;
    match root {
        RootSource::Rootfs(_) | RootSource::Image(_) => at(
            step,
            || "remount the root read-only".into(),
            remount_bind_readonly(staging, MountFlags::NOSUID | MountFlags::NODEV),
        ),
        RootSource::Binary(_) => at(
            step,
            || "remount the root read-only".into(),
            mount_remount(
                staging,
                MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
                "mode=0755,size=1m,nr_inodes=4096",
            ),
        ),
    }
}

/// `pivot_root(".", ".")` with the new root as working directory, then detach the old root that
/// now sits on top of it: the host tree becomes unreachable.
fn pivot(staging: &Path) -> StepResult {
    let step = Step::PivotRoot;
    let fd = at(
        step,
        || format!("open {}", staging.display()),
        rustix::fs::open(
            staging,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ),
    )?;
    at(
        step,
        || "chdir to the new root".into(),
        rustix::process::fchdir(&fd),
    )?;
    at(
        step,
        || "pivot_root".into(),
        rustix::process::pivot_root(".", "."),
    )?;
    at(
        step,
        || "detach the old root".into(),
        unmount(".", UnmountFlags::DETACH),
    )?;
    at(step, || "chdir /".into(), rustix::process::chdir("/"))?;
    drop(fd);
    Ok(())
}
