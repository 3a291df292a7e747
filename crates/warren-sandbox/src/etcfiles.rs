//! The generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (docs/network.md).
//!
//! The parent writes the three files into a private directory under the state directory,
//! takes a detached mount of each (`open_tree(OPEN_TREE_CLONE)`) and removes the directory at
//! once: the detached mounts keep the files alive and nothing is left behind on the host. Once
//! the child's user namespace has its maps, each mount is made read-only, nosuid, nodev and
//! idmapped (root inside owns them); the child binds each over the root's file in step
//! `mount-volumes`, after the volumes. A root without the file (or where it is not a regular
//! file reached without a symbolic link, or a `--binary` root) keeps what it has: the file is
//! skipped, since the root is read-only and Warren creates nothing in it.

use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

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

/// The digest the launch record keeps of the generated files (`sha256:` over each path, a
/// NUL, its contents, a NUL); `None` for a `--binary` root, which gets none of them.
pub fn digest(plan: &LaunchPlan, own: Option<IpAddr>) -> Option<String> {
    use sha2::Digest;
    if matches!(plan.root, RootSource::Binary(_)) {
        return None;
    }
    let mut h = sha2::Sha256::new();
    for (path, text) in FILES.iter().zip(contents(plan, own)) {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    Some(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Which of [`FILES`] the user asked for explicitly (`--add-host` for `/etc/hosts`, `--dns`
/// for `/etc/resolv.conf`): a root without that file is then an error, not a skip.
pub(crate) fn required(plan: &LaunchPlan) -> [bool; 3] {
    [!plan.add_hosts.is_empty(), false, !plan.dns.is_empty()]
}

/// The private directory holding the files until the launch is over (the child binds them
/// before its exec; a mount of an unlinked file cannot be attached). Dropping it removes it.
#[derive(Debug)]
pub(crate) struct EtcDir(Option<std::path::PathBuf>);

impl Drop for EtcDir {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
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

/// Writes the files the root can take and returns a detached mount of each, with its index in
/// [`FILES`], and the directory that holds them. A file the root lacks is skipped (no mount is
/// made: closing an unused detached mount costs an RCU grace period), or refused when the user
/// asked for its content ([`required`]). A `--binary` root gets none.
pub(crate) fn prepare(
    plan: &LaunchPlan,
    state_root: &Path,
    own: Option<IpAddr>,
) -> Result<(Vec<(usize, OwnedFd)>, EtcDir), LaunchError> {
    let root = match &plan.root {
        RootSource::Binary(_) => return Ok((Vec::new(), EtcDir(None))),
        RootSource::Rootfs(d) | RootSource::Image(d) => d,
    };
    let required = required(plan);
    let mut wanted = Vec::new();
    for (i, path) in FILES.iter().enumerate() {
        if has_regular_file(root, path) {
            wanted.push(i);
        } else if required[i] {
            return Err(LaunchError::Parent {
                step: Step::MountVolumes,
                what: format!(
                    "the root has no regular file {path} (reached without a symbolic link) to \
                     bind the generated one over: add an empty {path} to the root"
                ),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
    }
    if wanted.is_empty() {
        return Ok((Vec::new(), EtcDir(None)));
    }
    let dir = state_root.join(format!(
        ".etc-{}-{}",
        plan.name.as_str(),
        std::process::id()
    ));
    let err = |what: String| {
        move |e: std::io::Error| LaunchError::Parent {
            step: Step::Clone,
            what,
            source: e,
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(err(format!("create {}", dir.display())))?;
    let guard = EtcDir(Some(dir.clone()));
    let texts = contents(plan, own);
    let mut trees = Vec::new();
    for i in wanted {
        let path = FILES[i];
        let file = dir.join(path.rsplit('/').next().unwrap_or(path));
        std::fs::write(&file, &texts[i]).map_err(err(format!("write {}", file.display())))?;
        let tree = rustix::mount::open_tree(
            rustix::fs::CWD,
            &file,
            rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
                | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .map_err(|e| err(format!("open a mount of {}", file.display()))(e.into()))?;
        // Above the launcher's floor, so installing the mailbox as descriptor 3 never closes it.
        let tree =
            warren_sys::dup_high(tree.as_fd()).map_err(err("move the etc file up".into()))?;
        trees.push((i, tree));
    }
    Ok((trees, guard))
}

/// Makes each detached mount read-only, nosuid, nodev and idmapped through `pid`'s user
/// namespace.
pub(crate) fn seal(pid: i32, trees: &[(usize, OwnedFd)]) -> Result<(), LaunchError> {
    if trees.is_empty() {
        return Ok(());
    }
    let ns = format!("/proc/{pid}/ns/user");
    let userns = std::fs::File::open(&ns).map_err(|e| LaunchError::Parent {
        step: Step::UidMap,
        what: format!("open {ns}"),
        source: e,
    })?;
    for (_, t) in trees {
        warren_sys::mount_setattr_idmap(
            t.as_fd(),
            userns.as_fd(),
            warren_sys::MOUNT_ATTR_RDONLY
                | warren_sys::MOUNT_ATTR_NOSUID
                | warren_sys::MOUNT_ATTR_NODEV,
        )
        .map_err(|e| LaunchError::Parent {
            step: Step::UidMap,
            what: "make a generated /etc file read-only".into(),
            source: e,
        })?;
    }
    Ok(())
}

/// In the child, before the pivot: bind each file over the root's own (the parent checked that
/// it is a regular file reached without a symbolic link; one that changed since is skipped).
pub(crate) fn attach(staging: &Path, trees: &[(usize, BorrowedFd<'_>)]) -> StepResult {
    for (i, tree) in trees {
        let path = FILES[*i];
        if !has_regular_file(staging, path) {
            continue;
        }
        let target = staging.join(path.trim_start_matches('/'));
        rustix::mount::move_mount(
            tree,
            "",
            rustix::fs::CWD,
            &target,
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| {
            (
                Step::MountVolumes,
                format!("bind the generated {path}"),
                std::io::Error::from(e),
            )
        })?;
    }
    Ok(())
}
