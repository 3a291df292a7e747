//! `fs.*`: reach host files (markers by path, `..`, `/proc/*/root`, file handles), write the
//! read-only image, overwrite binaries, and use inherited descriptors or an outside cwd.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use warren_sys::probe::FileHandle;

use super::{Ctx, open, open_attempts, private_mount_ns, read_attempts};
use crate::report::{Report, describe, syscall_report};

/// `fs.leaked_fds`: every open descriptor other than 0, 1, 2 (and `$WARREN_FD`) counts as a
/// leak (CVE-2024-21626 class). Lists each with its target.
pub fn leaked_fds(_: &Ctx) -> Report {
    const P: &str = "fs.leaked_fds";
    let mut allowed = vec![0, 1, 2];
    if let Some(fd) = std::env::var("WARREN_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        allowed.push(fd);
    }
    let listing_self = format!("/proc/{}/fd", std::process::id());
    let leaked: Vec<String> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let fd: i32 = name.parse().ok()?;
                let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|e| format!("? ({})", describe(&e)));
                // The directory listing's own descriptor points back at this directory.
                (!allowed.contains(&fd) && target != listing_self)
                    .then(|| format!("{fd} -> {target}"))
            })
            .collect(),
        // Without /proc, probe descriptor numbers directly.
        Err(e) => (3..1024)
            .filter(|fd| !allowed.contains(fd))
            .filter(|&fd| warren_sys::probe::dup_inherited_fd(fd).is_ok())
            .map(|fd| format!("{fd} -> ? (/proc/self/fd unreadable: {})", describe(&e)))
            .collect(),
    };
    if leaked.is_empty() {
        Report::blocked(P, format!("only descriptors {allowed:?} are open"))
    } else {
        Report::open(P, format!("inherited descriptors: {}", leaked.join(", ")))
    }
}

/// `fs.read_marker_path`: open each `--marker` path as given.
pub fn read_marker_path(ctx: &Ctx) -> Report {
    read_attempts(
        "fs.read_marker_path",
        &ctx.opts.markers,
        "no --marker given",
    )
}

/// `fs.read_marker_dotdot`: open `/../../..<marker>`.
pub fn read_marker_dotdot(ctx: &Ctx) -> Report {
    let paths: Vec<PathBuf> = ctx
        .opts
        .markers
        .iter()
        .map(|m| PathBuf::from(format!("/../../..{}", m.display())))
        .collect();
    read_attempts("fs.read_marker_dotdot", &paths, "no --marker given")
}

/// `fs.read_proc1_root_marker`: open `/proc/1/root<marker>`.
pub fn read_proc1_root_marker(ctx: &Ctx) -> Report {
    let paths: Vec<PathBuf> = ctx
        .opts
        .markers
        .iter()
        .map(|m| PathBuf::from(format!("/proc/1/root{}", m.display())))
        .collect();
    read_attempts("fs.read_proc1_root_marker", &paths, "no --marker given")
}

/// `fs.read_hostpid_root_marker`: open `/proc/<host pid>/root<marker>` for each `--host-pid`.
pub fn read_hostpid_root_marker(ctx: &Ctx) -> Report {
    let paths: Vec<PathBuf> = ctx
        .opts
        .host_pids
        .iter()
        .flat_map(|pid| {
            ctx.opts
                .markers
                .iter()
                .map(move |m| PathBuf::from(format!("/proc/{pid}/root{}", m.display())))
        })
        .collect();
    read_attempts(
        "fs.read_hostpid_root_marker",
        &paths,
        "needs both --host-pid and --marker",
    )
}

/// `fs.open_by_handle_at`: the "shocker" attack. Decodes a forged handle for inode 2 (the root
/// directory of an ext2/3/4 filesystem, `FILEID_INO32_GEN`) on the filesystem holding `/`; if the
/// image is a subtree of a host filesystem, that handle names the host's root. Also reports
/// whether the handle of `/` itself can be produced and reopened.
pub fn open_by_handle_at(_: &Ctx) -> Report {
    const P: &str = "fs.open_by_handle_at";
    let root = match open(Path::new("/"), OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return Report::skipped(P, format!("cannot open /: {}", describe(&e))),
    };
    let own = match warren_sys::probe::name_to_handle_at(root.as_fd(), c"/") {
        Ok((handle, _)) => {
            match warren_sys::probe::open_by_handle_at(root.as_fd(), &handle, O_RDONLY) {
                Ok(_) => "handle of / reopened".to_owned(),
                Err(e) => format!("handle of / not reopened: {}", describe(&e)),
            }
        }
        Err(e) => format!("name_to_handle_at(/): {}", describe(&e)),
    };
    const FILEID_INO32_GEN: i32 = 1;
    let mut bytes = 2u32.to_ne_bytes().to_vec();
    bytes.extend_from_slice(&0u32.to_ne_bytes());
    let forged = FileHandle {
        handle_type: FILEID_INO32_GEN,
        bytes,
    };
    let result = warren_sys::probe::open_by_handle_at(root.as_fd(), &forged, O_RDONLY);
    let what = match &result {
        Ok(fd) => {
            let target = std::fs::read_link(format!("/proc/self/fd/{}", fd_number(fd)))
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".to_owned());
            format!("{own}; open_by_handle_at(forged inode 2 handle) opened {target}")
        }
        Err(_) => format!("{own}; open_by_handle_at(forged inode 2 handle)"),
    };
    syscall_report(P, &what, result)
}

/// `O_RDONLY`, as the raw flag value the handle wrapper takes.
const O_RDONLY: i32 = 0;

/// The number of an owned descriptor, for `/proc/self/fd/N` lookups.
fn fd_number(fd: &std::os::fd::OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

/// `fs.write_root`: create `/warren-probe-write-<pid>` in the image's root (removed at once if
/// it was created).
pub fn write_root(_: &Ctx) -> Report {
    const P: &str = "fs.write_root";
    let path = PathBuf::from(format!("/warren-probe-write-{}", std::process::id()));
    match open(
        &path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
    ) {
        Ok(_fd) => {
            let removed = std::fs::remove_file(&path).is_ok();
            Report::open(
                P,
                format!("created {} (removed again: {removed})", path.display()),
            )
        }
        Err(e) => Report::blocked(P, format!("create {}: {}", path.display(), describe(&e)))
            .with_errno(&e),
    }
}

/// `fs.write_bin`: open an image binary for writing (never writing): `/bin/sh`, `/bin/busybox`,
/// `/usr/bin/env`, `/sbin/init`, and another file beside this probe.
pub fn write_bin(_: &Ctx) -> Report {
    const P: &str = "fs.write_bin";
    let mut candidates: Vec<PathBuf> = ["/bin/sh", "/bin/busybox", "/usr/bin/env", "/sbin/init"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(sibling) = sibling_file() {
        candidates.push(sibling);
    }
    // The probe's own program file: in a minimal root it is the only binary there is.
    if let Ok(exe) = std::env::current_exe() {
        candidates.push(exe);
    }
    let existing: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return Report::skipped(
            P,
            "no binary to try: none of /bin/sh, /bin/busybox, /usr/bin/env, /sbin/init or the \
             probe itself exists",
        );
    }
    let names: Vec<&str> = existing.iter().filter_map(|p| p.to_str()).collect();
    open_attempts(P, &names, OFlags::WRONLY)
}

/// A regular file in the probe's own directory other than the probe itself.
fn sibling_file() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| *p != exe && p.metadata().map(|m| m.is_file()).unwrap_or(false))
}

/// `fs.remount_root_rw`: `mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL)` without
/// `MS_RDONLY`, in a child whose mount namespace is made private first where possible.
pub fn remount_root_rw(_: &Ctx) -> Report {
    const P: &str = "fs.remount_root_rw";
    let private = private_mount_ns();
    let scope = if private {
        "in a private mount namespace"
    } else {
        "in the inherited mount namespace"
    };
    match rustix::mount::mount_remount("/", rustix::mount::MountFlags::BIND, "") {
        Ok(()) => Report::open(P, format!("remounted / read-write ({scope})")),
        Err(e) => {
            let e = io::Error::from(e);
            Report::blocked(
                P,
                format!("remount / read-write ({scope}): {}", describe(&e)),
            )
            .with_errno(&e)
        }
    }
}

/// `fs.proc_self_exe_write`: open `/proc/self/exe` for writing, never writing (CVE-2019-5736).
pub fn proc_self_exe_write(_: &Ctx) -> Report {
    open_attempts(
        "fs.proc_self_exe_write",
        &["/proc/self/exe"],
        OFlags::WRONLY,
    )
}

/// `fs.cwd_inside_root`: the working directory must be reachable from the root: `getcwd` must
/// succeed, `/proc/self/cwd` must be an absolute path, and that path must name the directory we
/// are in.
pub fn cwd_inside_root(_: &Ctx) -> Report {
    const P: &str = "fs.cwd_inside_root";
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            return Report::open(
                P,
                format!("getcwd: {} (cwd is outside the root)", describe(&e)),
            )
            .with_errno(&e);
        }
    };
    if let Ok(link) = std::fs::read_link("/proc/self/cwd") {
        let link = link.display().to_string();
        if !link.starts_with('/') || link.starts_with("(unreachable)") {
            return Report::open(P, format!("/proc/self/cwd is {link:?}: outside the root"));
        }
    }
    match (std::fs::metadata(&cwd), std::fs::metadata(".")) {
        (Ok(named), Ok(here)) if (named.dev(), named.ino()) == (here.dev(), here.ino()) => {
            Report::blocked(P, format!("cwd {} is inside the root", cwd.display()))
        }
        (Ok(_), Ok(_)) => Report::open(
            P,
            format!(
                "cwd path {} names a different directory than the real cwd",
                cwd.display()
            ),
        ),
        (Err(e), _) | (_, Err(e)) => Report::open(
            P,
            format!(
                "cwd {} cannot be resolved from the root: {}",
                cwd.display(),
                describe(&e)
            ),
        )
        .with_errno(&e),
    }
}
