//! `mnt.*`: chroot and fchdir escapes, `pivot_root`, mounting, unmounting masked paths, and the
//! new mount API. Everything that could change mounts runs after [`private_mount_ns`] where
//! that is permitted, so even a successful attempt stays inside the (short-lived) child.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, OFlags};
use rustix::mount::{
    FsOpenFlags, MountFlags, OpenTreeFlags, UnmountFlags, fsopen, mount, open_tree, unmount,
};

use super::{Ctx, open, private_mount_ns, read_prefix};
use crate::procfs;
use crate::report::{Report, describe, strict_report, syscall_report};

/// Make (if needed) and return `<scratch>/<name>`.
fn scratch_dir(ctx: &Ctx, name: &str) -> Result<PathBuf, String> {
    let dir = ctx.scratch()?.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The markers readable right now, by their absolute paths.
fn readable_markers(ctx: &Ctx) -> Vec<String> {
    ctx.opts
        .markers
        .iter()
        .filter(|m| read_prefix(m, 1).is_ok())
        .map(|m| m.display().to_string())
        .collect()
}

/// `chdir("..")` far enough to reach the top of any tree, then `chroot(".")`.
fn climb_and_rechroot() -> io::Result<()> {
    for _ in 0..64 {
        rustix::process::chdir("..")?;
    }
    rustix::process::chroot(".")?;
    Ok(())
}

/// After a chroot-based escape attempt: open if a marker is readable, or (without markers) if
/// the technique was available at all.
fn escape_verdict(probe: &str, ctx: &Ctx, how: &str) -> Report {
    if ctx.opts.markers.is_empty() {
        return Report::open(
            probe,
            format!("{how}: chroot permitted (no --marker to confirm an escape)"),
        );
    }
    let found = readable_markers(ctx);
    if found.is_empty() {
        Report::blocked(
            probe,
            format!(
                "{how}: chroot permitted, but the climb reached only the environment's root (no marker readable)"
            ),
        )
    } else {
        Report::open(probe, format!("{how}: read {}", found.join(", ")))
    }
}

/// `mnt.chroot_escape`: chroot into a subdirectory while the cwd stays outside it, climb with
/// `..`, chroot to where the climb ended, then look for the host markers.
pub fn chroot_escape(ctx: &Ctx) -> Report {
    const P: &str = "mnt.chroot_escape";
    let jail = match scratch_dir(ctx, "chroot-jail") {
        Ok(d) => d,
        Err(why) => return Report::skipped(P, why),
    };
    let how = "chroot(jail); chdir(\"..\") x64; chroot(\".\")";
    if let Err(e) = rustix::process::chroot(&jail) {
        let e = io::Error::from(e);
        return Report::blocked(P, format!("chroot({}): {}", jail.display(), describe(&e)))
            .with_errno(&e);
    }
    if let Err(e) = climb_and_rechroot() {
        return Report::blocked(P, format!("{how}: {}", describe(&e))).with_errno(&e);
    }
    escape_verdict(P, ctx, how)
}

/// Markers reachable by climbing from an inherited directory descriptor (`openat(fd, "../..")`).
fn markers_via_inherited_dirs(ctx: &Ctx) -> (Vec<String>, Vec<String>) {
    let listing_self = format!("/proc/{}/fd", std::process::id());
    let mut dirs = Vec::new();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return (dirs, found);
    };
    let fds: Vec<(i32, String)> = entries
        .filter_map(|e| {
            let fd: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            Some((fd, target.display().to_string()))
        })
        .filter(|(fd, target)| *fd > 2 && *target != listing_self)
        .collect();
    for (fd, target) in fds {
        let Ok(dup) = warren_sys::probe::dup_inherited_fd(fd) else {
            continue;
        };
        let is_dir = rustix::fs::fstat(&dup)
            .map(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
            })
            .unwrap_or(false);
        if !is_dir {
            continue;
        }
        dirs.push(format!("{fd} -> {target}"));
        for marker in &ctx.opts.markers {
            let rel = format!(
                "{}{}",
                "../".repeat(40),
                marker.display().to_string().trim_start_matches('/')
            );
            if rustix::fs::openat(
                dup.as_fd(),
                rel.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .is_ok()
            {
                found.push(format!("{} via fd {fd}", marker.display()));
            }
        }
    }
    (dirs, found)
}

/// `mnt.fchdir_escape`: (a) climb out through any inherited directory descriptor; (b) keep a
/// descriptor of `/`, chroot into a subdirectory, `fchdir` back to the descriptor, climb and
/// chroot again; then look for the host markers.
pub fn fchdir_escape(ctx: &Ctx) -> Report {
    const P: &str = "mnt.fchdir_escape";
    let (dirs, found) = markers_via_inherited_dirs(ctx);
    let inherited = if dirs.is_empty() {
        "no inherited directory descriptors".to_owned()
    } else {
        format!("inherited directory descriptors: {}", dirs.join(", "))
    };
    if !found.is_empty() {
        return Report::open(P, format!("read {} ({inherited})", found.join(", ")));
    }
    let jail = match scratch_dir(ctx, "fchdir-jail") {
        Ok(d) => d,
        Err(why) => return Report::skipped(P, format!("{why} ({inherited})")),
    };
    let root = match open(Path::new("/"), OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return Report::skipped(P, format!("cannot open /: {}", describe(&e))),
    };
    if let Err(e) = rustix::process::chroot(&jail) {
        let e = io::Error::from(e);
        return Report::blocked(
            P,
            format!("chroot({}): {} ({inherited})", jail.display(), describe(&e)),
        )
        .with_errno(&e);
    }
    let how = format!(
        "fd=open(\"/\"); chroot(jail); fchdir(fd); chdir(\"..\") x64; chroot(\".\") ({inherited})"
    );
    let climbed = rustix::process::fchdir(&root)
        .map_err(io::Error::from)
        .and_then(|()| climb_and_rechroot());
    if let Err(e) = climbed {
        return Report::blocked(P, format!("{how}: {}", describe(&e))).with_errno(&e);
    }
    escape_verdict(P, ctx, &how)
}

/// `mnt.pivot_root`: in a private mount namespace (where permitted) pivot into a fresh tmpfs;
/// otherwise call `pivot_root` on a plain directory, which can only fail (`EPERM` without
/// `CAP_SYS_ADMIN`, `EINVAL` past it because the directory is not a mount point).
pub fn pivot_root(ctx: &Ctx) -> Report {
    const P: &str = "mnt.pivot_root";
    let new_root = match scratch_dir(ctx, "pivot-new") {
        Ok(d) => d,
        Err(why) => return Report::skipped(P, why),
    };
    let private = private_mount_ns();
    let mut how = "pivot_root(plain directory) in the inherited mount namespace".to_owned();
    if private {
        how = "pivot_root(fresh tmpfs) in a private mount namespace".to_owned();
        if let Err(e) = mount(
            "warren-probe",
            &new_root,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            None,
        ) {
            how = format!(
                "pivot_root(plain directory) in a private mount namespace (tmpfs mount: {e})"
            );
        }
    }
    let old = new_root.join("old");
    if let Err(e) = std::fs::create_dir_all(&old) {
        return Report::skipped(P, format!("cannot create {}: {e}", old.display()));
    }
    let result = rustix::process::pivot_root(&new_root, &old).map_err(io::Error::from);
    syscall_report(P, &how, result)
}

/// `mnt.mount_tmpfs`: mount a 1 MiB tmpfs on a scratch directory (unmounted at once).
pub fn mount_tmpfs(ctx: &Ctx) -> Report {
    const P: &str = "mnt.mount_tmpfs";
    let target = match scratch_dir(ctx, "mnt") {
        Ok(d) => d,
        Err(why) => return Report::skipped(P, why),
    };
    let scope = if private_mount_ns() {
        "private"
    } else {
        "inherited"
    };
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let result =
        mount("warren-probe", &target, "tmpfs", flags, Some(c"size=1m")).map_err(io::Error::from);
    if result.is_ok() {
        let _ = unmount(&target, UnmountFlags::DETACH);
    }
    strict_report(
        P,
        &format!(
            "mount tmpfs on {} ({scope} mount namespace)",
            target.display()
        ),
        result,
    )
}

/// The masked paths a Warren environment hides.
const MASKED: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sysrq-trigger",
    "/proc/sys",
];

/// `mnt.umount_masked`: `umount2` each masked path. Unmounting a mask is open; so is `EINVAL` on
/// a path that is not a mount point (the capability check was passed; nothing was masked). On a
/// mask that is a mount point, `EINVAL` means the mount is locked: blocked.
pub fn umount_masked(_: &Ctx) -> Report {
    const P: &str = "mnt.umount_masked";
    let scope = if private_mount_ns() {
        "private"
    } else {
        "inherited"
    };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| procfs::mount_points(&t))
        .unwrap_or_default();
    let mut notes = Vec::new();
    let mut open = false;
    let mut first_err: Option<io::Error> = None;
    for path in MASKED {
        if std::fs::symlink_metadata(path).is_err() {
            notes.push(format!("{path}: absent"));
            continue;
        }
        let mounted = mounts.iter().any(|m| m == path);
        match unmount(*path, UnmountFlags::empty()).map_err(io::Error::from) {
            Ok(()) => {
                open = true;
                notes.push(format!("{path}: unmounted"));
            }
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
                    && !mounted =>
            {
                open = true;
                notes.push(format!(
                    "{path}: permitted (EINVAL: not a mount point here)"
                ));
                first_err.get_or_insert(e);
            }
            Err(e) => {
                notes.push(format!(
                    "{path}{}: {}",
                    if mounted { " (mounted)" } else { "" },
                    describe(&e)
                ));
                first_err.get_or_insert(e);
            }
        }
    }
    let detail = format!("{scope} mount namespace: {}", notes.join("; "));
    let report = if open {
        Report::open(P, detail)
    } else {
        Report::blocked(P, detail)
    };
    match first_err {
        Some(e) => report.with_errno(&e),
        None => report,
    }
}

/// `mnt.new_mount_api`: `fsopen("tmpfs")` and `open_tree("/", OPEN_TREE_CLONE)`; both only
/// create descriptors, which are closed at once.
pub fn new_mount_api(_: &Ctx) -> Report {
    const P: &str = "mnt.new_mount_api";
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(io::Error::from);
    let tree = open_tree(
        CWD,
        "/",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(io::Error::from);
    let note = |r: &io::Result<_>| match r {
        Ok(_) => "succeeded".to_owned(),
        Err(e) => describe(e),
    };
    let detail = format!(
        "fsopen(tmpfs): {}; open_tree(/, OPEN_TREE_CLONE): {}",
        note(&fs),
        note(&tree)
    );
    match (fs, tree) {
        (Ok(_), _) | (_, Ok(_)) => Report::open(P, detail),
        (Err(e), _) => Report::blocked(P, detail).with_errno(&e),
    }
}
