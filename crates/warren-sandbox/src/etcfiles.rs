//! The generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (docs/network.md).
//!
//! The child writes them itself, as the environment's root (so root inside owns them), into
//! the environment's skeleton tmpfs (`crate::skeleton`), which it mounts on the staging
//! directory before the root, which then hides it ([`write`], [`clone`]); after the volumes it
//! binds each over the root's file, a bind that is read-only, `nosuid`, `nodev` and `noexec` as
//! the skeleton is ([`attach`]). The skeleton goes with the host's mounts when the child
//! detaches the old root after the pivot (the binds keep its files). Nothing of them ever exists
//! on the host, and the launcher's parent does no work for them but the check of
//! [`check_required`]. A root without the file (or where it is not a regular file reached
//! without a symbolic link, or a `--binary` root) keeps what it has: the file is skipped, since
//! the root is read-only and Warren creates nothing in it.

use std::net::IpAddr;
use std::path::Path;

use std::os::fd::OwnedFd;

use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use crate::error::LaunchError;
use crate::plan::{LaunchPlan, RootSource};
use crate::step::Step;
use crate::step::StepResult;

/// The files, by their path inside the environment.
pub(crate) const FILES: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// The contents of [`FILES`], in order, for `plan` with its own address `own` (networked).
pub fn contents(plan: &LaunchPlan, own: Option<IpAddr>) -> [String; 3] {
    let h = plan.hostname();
    [
        warren_spec::etc::render_hosts(h, own, &plan.add_hosts),
        warren_spec::etc::render_hostname(h),
        warren_spec::etc::render_resolv(&plan.dns),
    ]
}

/// The digest the launch record keeps of the generated files: `sha256:` over, for each of
/// [`FILES`] in order, its path, a NUL, then its contents and a NUL when it is bound, or the
/// byte 0xFF and a NUL when the root keeps its own (skipped: 0xFF is never in generated text,
/// which is UTF-8). `bound` are the indices [`wanted`] chose (so the root is looked at once
/// per launch). `None` for a `--binary` root, which gets none of them.
pub(crate) fn digest(plan: &LaunchPlan, own: Option<IpAddr>, bound: &[usize]) -> Option<String> {
    use sha2::Digest;
    if matches!(plan.root, RootSource::Binary(_)) {
        return None;
    }
    let bound: [bool; 3] = std::array::from_fn(|i| bound.contains(&i));
    let mut h = sha2::Sha256::new();
    for ((path, text), bound) in FILES.iter().zip(contents(plan, own)).zip(bound) {
        h.update(path.as_bytes());
        h.update([0]);
        if bound {
            h.update(text.as_bytes());
        } else {
            h.update([0xff]);
        }
        h.update([0]);
    }
    Some(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Which of [`FILES`] the root can take (a regular file reached without a symbolic link);
/// `None` for a `--binary` root.
fn bindable(plan: &LaunchPlan) -> Option<[bool; 3]> {
    let root = match &plan.root {
        RootSource::Binary(_) => return None,
        RootSource::Rootfs(d) | RootSource::Image(d) => d,
    };
    Some(FILES.map(|f| has_regular_file(root, f)))
}

/// Which of [`FILES`] the user asked for explicitly (`--add-host` for `/etc/hosts`, `--dns`
/// for `/etc/resolv.conf`): a root without that file is then an error, not a skip.
pub(crate) fn required(plan: &LaunchPlan) -> [bool; 3] {
    [!plan.add_hosts.is_empty(), false, !plan.dns.is_empty()]
}

/// Whether `root` (a host directory) holds a regular file at `path`, reached without a
/// symbolic link.
fn has_regular_file(root: &Path, path: &str) -> bool {
    let rel = Path::new(path.trim_start_matches('/'));
    let n = rel.components().count();
    let mut walk = root.to_path_buf();
    for (i, c) in rel.components().enumerate() {
        walk.push(c);
        match std::fs::symlink_metadata(&walk) {
            Ok(m) if i + 1 == n => return m.is_file(),
            Ok(m) if m.is_dir() => {}
            _ => return false,
        }
    }
    false
}

/// Refuses, before anything is created, a root that lacks a file whose content the user asked
/// for ([`required`]): an error naming the file, where a file nobody asked for is skipped.
pub(crate) fn check_required(plan: &LaunchPlan) -> Result<(), LaunchError> {
    let root = match &plan.root {
        RootSource::Binary(_) => return Ok(()),
        RootSource::Rootfs(d) | RootSource::Image(d) => d,
    };
    for (path, required) in FILES.iter().zip(required(plan)) {
        if required && !has_regular_file(root, path) {
            // What is there instead, for the message's last words.
            let at = root.join(path.trim_start_matches('/'));
            let found = match std::fs::symlink_metadata(&at) {
                Err(_) => "it does not exist (or a directory above it is a symbolic link)",
                Ok(m) if m.file_type().is_symlink() => "it is a symbolic link",
                Ok(m) if m.is_dir() => "it is a directory",
                Ok(_) => "it is not a regular file",
            };
            return Err(LaunchError::Parent {
                step: Step::MountVolumes,
                what: format!(
                    "the root has no regular file {path} (reached without a symbolic link) to \
                     bind the generated one over: add an empty {path} to the root"
                ),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, found),
            });
        }
    }
    Ok(())
}

/// The files to bind, with their index in [`FILES`]: those a `--rootfs` or `--image` root can
/// take, none for a `--binary` one (the rest are skipped, and [`digest`] says which). `own` is
/// the environment's address when networked.
pub(crate) fn wanted(plan: &LaunchPlan, own: Option<IpAddr>) -> Vec<(usize, String)> {
    let Some(bound) = bindable(plan) else {
        return Vec::new();
    };
    contents(plan, own)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bound[*i])
        .collect()
}

/// The generated files written by [`write`], cloned by [`clone`]: each as a detached bind mount (an
/// `open_tree` clone of the file), with its index in [`FILES`], waiting for [`attach`].
pub(crate) struct Prepared(Vec<(usize, OwnedFd)>);

/// In the child, as the environment's root, at the start of step `mount-root`: write each of
/// `files` into `dir` (the skeleton, `crate::skeleton`, still writable and not yet hidden by the
/// root). [`clone`] takes them once the skeleton is read-only.
pub(crate) fn write(dir: &Path, files: &[(usize, String)]) -> StepResult {
    for (i, text) in files {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = FILES[*i];
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(dir.join(file_name(path)))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| (Step::MountVolumes, format!("write the generated {path}"), e))?;
    }
    Ok(())
}

/// Clones each file [`write`] wrote into `dir` into a detached bind mount held by a
/// descriptor; the clone keeps the (read-only) mount's flags.
pub(crate) fn clone(dir: &Path, files: &[(usize, String)]) -> StepResult<Prepared> {
    let mut trees = Vec::with_capacity(files.len());
    for (i, _) in files {
        let path = FILES[*i];
        let tree = rustix::mount::open_tree(
            rustix::fs::CWD,
            dir.join(file_name(path)),
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .map_err(|e| {
            (
                Step::MountVolumes,
                format!("clone the generated {path}"),
                e.into(),
            )
        })?;
        trees.push((*i, tree));
    }
    Ok(Prepared(trees))
}

/// The last component of `path`: the file's name in the skeleton.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// In the child, after the volumes, before the pivot: attach each file [`write`] made over
/// the root's own at `staging` (read-only, `nosuid`, `nodev` and `noexec`, as the skeleton).
pub(crate) fn attach(staging: &Path, prepared: Prepared) -> StepResult {
    // The parent chose them from the root on the host and measured that choice; a file that
    // the environment's view no longer offers (a volume mounted over /etc) fails the launch
    // rather than be skipped behind the record's back.
    if let Some((i, _)) = prepared
        .0
        .iter()
        .find(|(i, _)| !has_regular_file(staging, FILES[*i]))
    {
        return Err((
            Step::MountVolumes,
            format!(
                "{} is not a regular file in the environment's root (a volume over it?), \
                 though the root on the host has one: nothing to bind the generated one over",
                FILES[*i]
            ),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let fail = |what: String| move |e: rustix::io::Errno| (Step::MountVolumes, what, e.into());
    for (i, tree) in prepared.0 {
        let path = FILES[i];
        let target = staging.join(path.trim_start_matches('/'));
        rustix::mount::move_mount(
            &tree,
            "",
            rustix::fs::CWD,
            &target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(fail(format!("bind the generated {path}")))?;
        // Read-only, `nosuid`, `nodev` and `noexec` already: the clone keeps the skeleton's
        // mount flags.
    }
    Ok(())
}
