//! The writable root (`warren run --writable-root`, manifest `read_only = false`), built in the
//! child's mount namespace during step `mount-root`: an overlay whose lower layer is the
//! environment's read-only root and whose upper layer is a size-limited tmpfs, so writes
//! anywhere in the root succeed, land in memory charged to the environment's cgroup, and vanish
//! with it. The lower root is never written (it is made read-only first) and is what the
//! launch measured.

use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, mount, move_mount,
    unmount,
};

use crate::step::Step;
use crate::step::StepResult;

fn at<T>(what: impl Fn() -> String, r: rustix::io::Result<T>) -> StepResult<T> {
    r.map_err(|e| (Step::MountRoot, what(), e.into()))
}

/// Replace the read-only root mounted at `staging` by an overlay of it: lower the root (which the
/// caller has remounted read-only, nosuid, nodev: `rootfs::readonly_lower`), upper and work directories on a tmpfs of `size` bytes
/// mounted for the moment on the root's `/tmp` (which the overlay's own `/tmp` tmpfs covers
/// later). The overlay is made detached (`fsmount`), the old root and the tmpfs are detached
/// from the namespace (the overlay keeps private copies of both), and the overlay is moved to
/// `staging`. Its root directory takes the lower root's owner and mode.
pub(crate) fn make_writable_root(staging: &Path, size: u64) -> StepResult {
    let scratch = staging.join("tmp");
    let opts = format!(
        "mode=0755,size={size},nr_inodes={}",
        (size / 4096).max(1024)
    );
    at(
        || format!("mount the writable root's tmpfs on {}", scratch.display()),
        mount(
            "tmpfs",
            &scratch,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            std::ffi::CString::new(opts)
                .expect("no NUL in mount options")
                .as_c_str(),
        ),
    )?;
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    for d in [&upper, &work] {
        at(
            || format!("create {}", d.display()),
            rustix::fs::mkdir(d, Mode::from_raw_mode(0o755)),
        )?;
    }
    // The merged root shows the upper directory's owner and mode: copy the lower root's.
    let st = at(
        || format!("stat {}", staging.display()),
        rustix::fs::stat(staging),
    )?;
    at(
        || format!("set the owner of {}", upper.display()),
        rustix::fs::chown(
            &upper,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        ),
    )
    .or_else(|e| {
        // A root owned by an id outside the environment's range (a `--rootfs` owned by host
        // root) cannot be given away: the merged root then stays owned by root inside.
        if e.2.raw_os_error() == Some(22) || e.2.raw_os_error() == Some(1) {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    at(
        || format!("set the mode of {}", upper.display()),
        rustix::fs::chmod(&upper, Mode::from_raw_mode(st.st_mode & 0o7777)),
    )?;
    let what = || {
        format!(
            "mount an overlay of {} (upper: a {size}-byte tmpfs) as the writable root (the \
             kernel must allow overlayfs in a user namespace)",
            staging.display()
        )
    };
    let fs = at(what, fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC))?;
    at(what, fsconfig_set_string(&fs, "lowerdir", staging))?;
    at(what, fsconfig_set_string(&fs, "upperdir", &upper))?;
    at(what, fsconfig_set_string(&fs, "workdir", &work))?;
    // Whiteouts and opaque directories as `user.overlay.*` extended attributes: the
    // `trusted.*` ones need privilege over the host.
    at(what, fsconfig_set_flag(&fs, "userxattr"))?;
    at(what, fsconfig_create(&fs))?;
    let merged = at(
        what,
        fsmount(
            &fs,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
        ),
    )?;
    at(
        || format!("detach the read-only root at {}", staging.display()),
        unmount(staging, UnmountFlags::DETACH),
    )?;
    at(
        || format!("attach the writable root at {}", staging.display()),
        move_mount(
            &merged,
            "",
            rustix::fs::CWD,
            staging,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        ),
    )?;
    // The root must still hold the directories the next steps mount onto.
    for d in ["proc", "dev", "tmp"] {
        let p = staging.join(d);
        at(
            || format!("the writable root has no {} directory", p.display()),
            rustix::fs::open(
                &p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            ),
        )?;
    }
    Ok(())
}
