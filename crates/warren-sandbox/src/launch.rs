//! The parent side of a launch, and the handle to a running environment.
//!
//! [`launch_with_mailbox`] is a list of steps, each a small function named after the step (or
//! steps) of `docs/launch-sequence.md` it performs, in that order: check the plan and the host
//! ([`preflight`], [`check_features`]), choose the seccomp program, claim the name, a host uid
//! range and the network ([`claim`]), create the cgroup and the network rules
//! ([`create_cgroup`]), fork into new namespaces ([`fork`]), finish the child's user namespace
//! and network from outside ([`set_up_from_outside`]), let it go, run the caller's measurement
//! hook and let it exec ([`measure_then_release`]), and read its typed report
//! ([`read_reports`]). The child's steps are in `child`.
//!
//! Every resource a step takes goes into one guard, [`Taken`]; its `Drop` is the only cleanup
//! there is. A failure anywhere returns through `?`, dropping the guard, which kills and reaps
//! the child, removes the cgroup, restores the signal mask and releases the network, the uid
//! range and the name: nothing is left behind. A successful launch hands the guard to
//! [`Running`], whose end runs the same `Drop`.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{Signal, WaitId, WaitIdOptions, pidfd_send_signal, waitid};
use serde::Serialize;
use warren_cgroup::{AttachHandles, Cgroup, Layout};

use crate::applied::{Applied, IdMap};
use crate::child::{self, ChildContext};
use crate::error::LaunchError;
use crate::hook::{Measure, error_chain};
use crate::plan::{LaunchPlan, Protection, RootSource};
use crate::refusals::Refusals;
use crate::report::Report;
use crate::state::{Held, StateDir, UidRange};
use crate::step::Step;

/// Everything a launch has taken, released in one place: its `Drop`.
///
/// Fields drop in declaration order after `drop` has run: the network before the uid range
/// (the host end of the veth is named after the range's slot), the name last.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// The child, once forked: its pid, its pidfd, and whether it has been reaped.
    pub(crate) child: Option<(i32, OwnedFd)>,
    pub(crate) reaped: bool,
    pub(crate) cgroup: Option<Cgroup>,
    /// The signal mask to restore, while the forwarded signals are blocked.
    blocked: Option<warren_sys::SignalSet>,
    /// The signalfd the forwarded signals are read from.
    signals: Option<OwnedFd>,
    pub(crate) net: Option<crate::net::Prepared>,
    pub(crate) uids: Option<UidRange>,
    pub(crate) name: Option<Held>,
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let (Some((_, pidfd)), false) = (&self.child, self.reaped) {
            let _ = pidfd_send_signal(pidfd, Signal::KILL);
            let _ = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.destroy();
        }
        if let Some(mask) = self.blocked.take() {
            // Undo the block of forwarded signals so the caller behaves normally again.
            let _ = warren_sys::set_signal_mask(&mask);
        }
    }
}

/// A running environment. Dropping it kills the environment and releases everything.
#[derive(Debug)]
pub struct Running {
    sup: Supervised,
    /// With `-t`: the pty's master, until the caller takes it.
    pty: Option<OwnedFd>,
    /// What isolation was applied.
    pub applied: Applied,
}

/// A launched environment as its waiter holds it: the child, everything its launch took, and
/// its seccomp refusals. Part of a [`Running`] in the launcher; rebuilt from a
/// [`crate::handoff::HandOff`] in a process that takes the environment over. Dropping it kills
/// the environment and releases everything.
#[derive(Debug)]
pub struct Supervised {
    pid: i32,
    pub(crate) taken: Taken,
    /// The seccomp filter's listener, when refusals go to the launcher (`refusals`).
    pub(crate) refusals: Option<Refusals>,
}

/// How an environment's main process ended.
#[derive(Debug, Clone, Serialize)]
pub struct ExitState {
    /// The status to pass through: the exit code, or 128 + signal.
    pub code: i32,
    /// The terminating signal, if it was killed.
    pub signal: Option<i32>,
    /// Whether the memory cgroup recorded an OOM kill.
    pub oom_killed: bool,
    /// Whether a fork or clone failed on the pids limit (`pids.events` `max`).
    pub pids_limit_hit: bool,
    /// The system calls the seccomp filter refused while the environment ran, with how often,
    /// most frequent first (empty when refusals do not go to the launcher).
    pub seccomp_refusals: Vec<(String, u64)>,
}

/// Work a launcher does while it waits for its environment, in the waiting thread itself (a
/// waiting launcher is then one task: every live environment keeps one, so a thread each for
/// its log and its kernel connection cost two kernel stacks and task structures per
/// environment): a descriptor to read when it has input.
pub trait Sidework {
    /// The descriptor to poll for input now, if any.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    /// [`Sidework::fd`] has input, hung up or failed. Must not block.
    fn ready(&mut self);
}

/// Signals `warren run` forwards to the workload.
pub const FORWARDED_SIGNALS: [i32; 6] = [1, 2, 3, 10, 12, 15]; // HUP INT QUIT USR1 USR2 TERM

/// The number of threads in this process (`/proc/self/task`), 0 when it cannot be read.
fn threads() -> usize {
    warren_sys::thread_count().unwrap_or(0)
}

/// The step `WARREN_FAULT_INJECT` names, at which the launch is made to fail (tests).
#[derive(Debug, Clone, Copy)]
struct Fault(Option<Step>);

impl Fault {
    fn from_env() -> Result<Fault, LaunchError> {
        match std::env::var("WARREN_FAULT_INJECT") {
            Ok(s) if !s.is_empty() => Step::parse(&s).map(|s| Fault(Some(s))).ok_or_else(|| {
                LaunchError::Invalid(format!("WARREN_FAULT_INJECT names no launch step: {s:?}"))
            }),
            _ => Ok(Fault(None)),
        }
    }

    /// Fail here if the fault is at `step`.
    fn at(self, step: Step) -> Result<(), LaunchError> {
        if self.0 == Some(step) {
            return Err(LaunchError::Parent {
                step,
                what: "fault injection".into(),
                source: std::io::Error::other("injected fault"),
            });
        }
        Ok(())
    }
}

fn parent_err(step: Step, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Parent { step, what, source }
}

/// Step 1, `validate`: the launcher is single-threaded, the fault (if any) names a step, and
/// the plan is sound.
fn preflight(plan: &LaunchPlan) -> Result<Fault, LaunchError> {
    let threads = threads();
    if threads != 1 {
        return Err(LaunchError::MultiThreaded { threads });
    }
    let fault = Fault::from_env()?;
    validate(plan)?;
    fault.at(Step::Validate)?;
    Ok(fault)
}

fn validate(plan: &LaunchPlan) -> Result<(), LaunchError> {
    if plan.argv.is_empty() || plan.argv[0].is_empty() {
        return Err(LaunchError::Invalid(
            "no command given: name the program to run after --".into(),
        ));
    }
    if let Some(bad) = plan.argv.iter().find(|a| a.contains('\0')) {
        return Err(LaunchError::Invalid(format!(
            "argument {bad:?} contains a NUL byte"
        )));
    }
    for (k, v) in &plan.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(LaunchError::Invalid(format!(
                "invalid environment variable {k:?}"
            )));
        }
    }
    if let Some(size) = plan.writable_root {
        if matches!(plan.root, RootSource::Binary(_)) {
            return Err(LaunchError::Invalid(
                "a writable root needs --rootfs or --image (a --binary root is built in memory)"
                    .into(),
            ));
        }
        if size < 1 << 20 {
            return Err(LaunchError::Invalid(format!(
                "writable root size {size} is too small: at least 1M"
            )));
        }
    }
    if plan.tmpfs_size < 4096 {
        return Err(LaunchError::Invalid(format!(
            "tmpfs size {} is too small: at least 4K",
            plan.tmpfs_size
        )));
    }
    if let Some(m) = plan.limits.memory {
        if m < 4 << 20 {
            return Err(LaunchError::Invalid(format!(
                "memory limit {m} bytes is too small: at least 4M"
            )));
        }
    }
    if plan.limits.pids == Some(0) {
        return Err(LaunchError::Invalid("pids limit must be at least 1".into()));
    }
    if let RootSource::Image(dir) = &plan.root {
        for d in ["proc", "dev", "tmp"] {
            if !std::fs::symlink_metadata(dir.join(d)).is_ok_and(|m| m.is_dir()) {
                return Err(LaunchError::Invalid(format!(
                    "image root {} has no /{d} directory (the store creates it at import: \
                     re-import the image)",
                    dir.display()
                )));
            }
        }
    }
    if let RootSource::Rootfs(dir) = &plan.root {
        let meta = std::fs::metadata(dir)
            .map_err(|e| LaunchError::Invalid(format!("rootfs {}: {}", dir.display(), e)))?;
        if !meta.is_dir() {
            return Err(LaunchError::Invalid(format!(
                "rootfs {} is not a directory",
                dir.display()
            )));
        }
        // The environment's root is an unprivileged host uid: the image must be readable and
        // searchable by "others", as images unpacked by container tools are.
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o005 != 0o005 {
            return Err(LaunchError::Invalid(format!(
                "rootfs {} has mode {:o}: the environment's root user is unprivileged on the host \
                 and needs read and search permission for others (chmod o+rx {})",
                dir.display(),
                mode & 0o7777,
                dir.display()
            )));
        }
        for d in ["proc", "dev", "tmp"] {
            match std::fs::symlink_metadata(dir.join(d)) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(LaunchError::Invalid(format!(
                        "rootfs {}: /{d} must be a directory, not a link or file",
                        dir.display()
                    )));
                }
                Err(_) => {
                    return Err(LaunchError::Invalid(format!(
                        "rootfs {} has no /{d} directory for Warren to mount onto (create it: mkdir {}/{d})",
                        dir.display(),
                        dir.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// What the host offers, as step 2 (`features`) found it.
struct Features {
    landlock_abi: Option<i32>,
    seccomp: bool,
    /// The kernel has `SECCOMP_RET_USER_NOTIF`: refusals can go to the launcher.
    seccomp_notify: bool,
    layout: Option<Layout>,
    degraded: BTreeSet<Protection>,
}

/// Step 2, `features`: every protection is required unless the user allowed it to be missing
/// (fail closed).
fn check_features(plan: &LaunchPlan, fault: Fault) -> Result<Features, LaunchError> {
    let mut degraded = BTreeSet::new();
    let landlock_abi = warren_sys::landlock_abi_version().ok();
    if landlock_abi.is_none_or(|v| v < crate::confine::LANDLOCK_ABI as i32) {
        if !plan.allow_missing.contains(&Protection::Landlock) {
            let detail = match landlock_abi {
                None => "the kernel has no Landlock".to_owned(),
                Some(v) => format!(
                    "the kernel offers Landlock ABI {v}, Warren needs {}",
                    crate::confine::LANDLOCK_ABI as i32
                ),
            };
            return Err(LaunchError::Missing {
                protection: "landlock",
                detail,
            });
        }
        degraded.insert(Protection::Landlock);
    }
    let actions = warren_sys::read_pseudo_file("/proc/sys/kernel/seccomp/actions_avail");
    let seccomp = actions.is_ok();
    let seccomp_notify = actions.is_ok_and(|a| a.split_whitespace().any(|w| w == "user_notif"));
    if !seccomp && !plan.allow_missing.contains(&Protection::Seccomp) {
        return Err(LaunchError::Missing {
            protection: "seccomp",
            detail: "the kernel has no seccomp filter mode".into(),
        });
    }
    let layout = match Layout::discover(Path::new("/proc/self/mountinfo"), Path::new("/")) {
        Ok(l) => Some(l),
        Err(_) if plan.allow_missing.contains(&Protection::Cgroup) => {
            degraded.insert(Protection::Cgroup);
            None
        }
        Err(e) => {
            return Err(LaunchError::Missing {
                protection: "cgroup",
                detail: e.to_string(),
            });
        }
    };
    fault.at(Step::Features)?;
    Ok(Features {
        landlock_abi,
        seccomp,
        seccomp_notify,
        layout,
        degraded,
    })
}

/// Step 3, `seccomp-compile`: the program compiled from the policy when Warren was built — its
/// notifying variant when the kernel has `SECCOMP_RET_USER_NOTIF`, so that refusals reach the
/// launcher (see `refusals`). Nothing to parse, read or compile here, and the digest recorded
/// is that of the very instructions installed. `None` when seccomp is allowed to be missing and
/// is.
fn seccomp_program<'p>(
    plan: &'p LaunchPlan,
    features: &mut Features,
    fault: Fault,
) -> Result<Option<&'p warren_seccomp::Program>, LaunchError> {
    let program = if features.seccomp {
        Some(plan.seccomp.program(features.seccomp_notify))
    } else {
        features.degraded.insert(Protection::Seccomp);
        None
    };
    fault.at(Step::SeccompCompile)?;
    Ok(program)
}

/// Steps 4, 5 and 5a: `claim-name`, `claim-uids`, `net-claim`.
fn claim(
    plan: &LaunchPlan,
    state: &StateDir,
    taken: &mut Taken,
    fault: Fault,
) -> Result<(), LaunchError> {
    taken.name = Some(state.claim_name(plan.name.as_str())?);
    fault.at(Step::ClaimName)?;
    let uids = taken.uids.insert(state.claim_uid_range()?);
    fault.at(Step::ClaimUids)?;
    if let Some(spec) = &plan.net {
        let t = std::time::Instant::now();
        let mut n =
            crate::net::Prepared::claim(spec, uids.slot, state).map_err(net_err(Step::NetClaim))?;
        n.label(plan.name.as_str());
        n.timings().claim = micros(t);
        taken.net = Some(n);
    }
    fault.at(Step::NetClaim)
}

fn net_err(step: Step) -> impl FnOnce(crate::net::NetError) -> LaunchError {
    move |error| LaunchError::Net { step, error }
}

fn micros(t: std::time::Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

/// Steps 6 and 6a, `cgroup` and `net-rules`: the cgroup with its limits (after sweeping leftovers of
/// launchers that died), and the host side of the network.
fn create_cgroup(
    plan: &LaunchPlan,
    state: &StateDir,
    layout: Option<&Layout>,
    taken: &mut Taken,
    fault: Fault,
) -> Result<(), LaunchError> {
    if let Some(layout) = layout {
        let name = plan.name.as_str();
        let group = plan.cgroup.group(name);
        sweep_stale_cgroups(layout, state, name);
        let cgroup = match layout.create_placed(name, &plan.cgroup, &plan.limits) {
            // A group of this very name. Empty, it is a leftover (its launcher died, and the
            // name is ours now that we hold it): remove it and make the group afresh. With
            // processes in it, it is an environment of the same name under another state
            // directory (names are unique per state directory, cgroups host-wide): refused,
            // and left alone. Looked for only on a clash, not on every launch (probing each
            // hierarchy first cost a dozen `statx` calls).
            Err(e @ warren_cgroup::CgroupError::LeafExists { .. }) => {
                if layout.group_is_populated(&group) {
                    return Err(e.into());
                }
                if let Some(cg) = layout.adopt(&group) {
                    let _ = cg.destroy();
                }
                layout.create_placed(name, &plan.cgroup, &plan.limits)?
            }
            r => r?,
        };
        taken.cgroup = Some(cgroup);
    }
    fault.at(Step::Cgroup)?;
    if let Some(n) = taken.net.as_mut() {
        let t = std::time::Instant::now();
        n.install_rules(state).map_err(net_err(Step::NetRules))?;
        n.timings().rules = micros(t);
        fault.at(Step::NetRules)?;
    }
    Ok(())
}

/// The workload's environment variables: Warren's defaults, then the plan's.
fn workload_env(plan: &LaunchPlan, mailbox: bool) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_owned(), crate::policy::DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), "/".to_owned()),
        ("HOSTNAME".to_owned(), plan.hostname().to_owned()),
    ];
    if mailbox {
        env.push(("WARREN_FD".to_owned(), "3".to_owned()));
        if plan.client_tool.is_some() {
            env[0].1.push_str(":/dev/warren");
        }
    }
    if let RootSource::Binary(b) = &plan.root {
        if !b.library_path.is_empty() {
            let joined: Vec<String> = b
                .library_path
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            env.push(("LD_LIBRARY_PATH".to_owned(), joined.join(":")));
        }
    }
    for (k, v) in &plan.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// A descriptor the child will own, moved above `LAUNCHER_FD_FLOOR` so that installing the
/// mailbox as descriptor 3 can never close it.
pub(crate) fn high(fd: OwnedFd, what: &str) -> Result<OwnedFd, LaunchError> {
    warren_sys::dup_high(fd.as_fd()).map_err(parent_err(Step::Clone, format!("move the {what} up")))
}

/// The parent's ends of the two pipes to the child.
struct ParentEnds {
    /// The go pipe: `g` lets the child start, `m` lets it exec (after the measurement).
    go: OwnedFd,
    /// The parent keeps a read end of the go pipe until the measurement byte is written: a
    /// child that failed and exited meanwhile must not turn that write into SIGPIPE.
    go_keep: OwnedFd,
    /// The report pipe, read until the child's exec or exit closes it.
    report: OwnedFd,
    /// The socket the child sends its seccomp listener over (notifying program only).
    listener_sock: Option<OwnedFd>,
    /// For an image root: the detached mount, idmapped once the child's maps are written.
    image_tree: Option<OwnedFd>,
    /// The detached mounts of `plan.mounts`, in order, idmapped once the child's maps are
    /// written (the child holds the same mounts and attaches them).
    mount_trees: Vec<OwnedFd>,
    /// With `-t`: the parent's end of the socket the child sends the pty's master over.
    pty: Option<OwnedFd>,
    /// Which generated `/etc` files the child binds (indices in `etcfiles::FILES`, as
    /// `etcfiles::wanted` chose them), for the record.
    etc_bound: Vec<usize>,
}

/// Steps 7, 7a and 8 (errors labelled `clone`, `cgroup`, `clone`): prepare what the child
/// inherits (pipes, descriptors, cgroup attach handles), block the forwarded signals, and fork with
/// `clone3` into new namespaces (and, on cgroup v2, straight into the cgroup). Returns the
/// child's pid and the parent's pipe ends; the child never returns from here.
fn fork(
    plan: &LaunchPlan,
    state: &StateDir,
    mailbox: Option<OwnedFd>,
    seccomp: Option<&warren_seccomp::Program>,
    env: &[(String, String)],
    taken: &mut Taken,
    (fault, parentage): (Fault, Parentage),
) -> Result<(i32, ParentEnds), LaunchError> {
    let pipe = |what: &str| {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| parent_err(Step::Clone, format!("create the {what} pipe"))(e.into()))
    };
    let (go_rd, go_wr) = pipe("go")?;
    let (rep_rd, rep_wr) = pipe("report")?;
    let go_rd = high(go_rd, "go pipe")?;
    let rep_wr = high(rep_wr, "report pipe")?;
    // The notifying program's listener comes back over a socket pair (SCM_RIGHTS).
    let (listener_rd, listener_wr) = match seccomp.filter(|p| p.notifying()) {
        Some(_) => {
            let (a, b) = rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::SEQPACKET,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| {
                parent_err(Step::Clone, "create the seccomp listener socket pair")(e.into())
            })?;
            (Some(a), Some(high(b, "seccomp listener socket")?))
        }
        None => (None, None),
    };
    let mailbox = mailbox.map(|m| high(m, "mailbox")).transpose()?;
    // An image root: a detached copy of its mount, which the parent idmaps with the child's
    // user namespace once that has its maps, and the child attaches as its root. A rootfs
    // directory: a detached, non-recursive copy too, which the child attaches. The child could
    // not make that copy itself: in its user namespace, the mounts below the directory
    // (`--rootfs /` has `/proc`, `/sys`, ...) are locked to it, and a non-recursive bind that
    // would drop them fails with EINVAL.
    let image_tree = match &plan.root {
        RootSource::Image(dir) | RootSource::Rootfs(dir) => {
            let tree = rustix::mount::open_tree(
                rustix::fs::CWD,
                dir,
                rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
                    | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
            )
            .map_err(|e| {
                parent_err(Step::Clone, format!("open the root {}", dir.display()))(e.into())
            })?;
            Some(high(tree, "image root")?)
        }
        _ => None,
    };
    let cgroup_view = taken.cgroup.as_ref().map(|c| c.view()).unwrap_or_default();
    let mount_trees = open_mount_trees(plan)?;
    let (pty_parent, pty_child) = if plan.tty {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| parent_err(Step::Clone, "create the pty socket")(e.into()))?;
        (Some(high(a, "pty socket")?), Some(high(b, "pty socket")?))
    } else {
        (None, None)
    };
    let staging = state.mount_point()?;
    crate::etcfiles::check_required(plan)?;
    let etc_files = crate::etcfiles::wanted(
        plan,
        taken
            .net
            .as_ref()
            .map(|n| std::net::IpAddr::V4(n.inside().cidr.addr)),
    );
    let etc_bound: Vec<usize> = etc_files.iter().map(|(i, _)| *i).collect();
    let attach = match taken
        .cgroup
        .as_ref()
        .map(|c| c.attach_handles())
        .transpose()?
    {
        Some(AttachHandles::CloneInto(fd)) => {
            Some(AttachHandles::CloneInto(high(fd, "cgroup directory")?))
        }
        Some(AttachHandles::SelfWrite(files)) => Some(AttachHandles::SelfWrite(
            files
                .into_iter()
                .map(|f| high(f, "cgroup tasks file"))
                .collect::<Result<Vec<_>, _>>()?,
        )),
        None => None,
    };
    let affinity = rustix::thread::sched_getaffinity(None).ok();
    let sigset = warren_sys::SignalSet::of(&FORWARDED_SIGNALS)
        .map_err(parent_err(Step::Clone, "build the signal set"))?;
    let old_mask = warren_sys::block_signals(&sigset)
        .map_err(parent_err(Step::Clone, "block forwarded signals"))?;
    taken.blocked = Some(old_mask);
    fault.at(Step::Clone)?;

    let flags = warren_sys::ns::USER
        | warren_sys::ns::PID
        | warren_sys::ns::MOUNT
        | warren_sys::ns::UTS
        | warren_sys::ns::IPC
        | warren_sys::ns::NET;
    let clone_into = match &attach {
        Some(AttachHandles::CloneInto(fd)) => Some(fd.as_fd()),
        _ => None,
    };
    let forked = match parentage {
        Parentage::Launcher => warren_sys::fork_into_namespaces(flags, clone_into),
        Parentage::LaunchersParent => {
            warren_sys::fork_into_namespaces_as_sibling(flags, clone_into)
        }
    }
    .map_err(parent_err(Step::Clone, "clone3 into new namespaces"))?;
    match forked {
        warren_sys::Forked::Child => {
            drop(go_wr);
            drop(rep_rd);
            drop(listener_rd);
            drop(pty_parent);
            child::run(ChildContext {
                plan,
                affinity,
                staging,
                go: go_rd,
                mailbox,
                report: rep_wr,
                seccomp,
                listener_sock: listener_wr,
                attach: attach.as_ref(),
                old_mask,
                fault: fault.0,
                env: env.to_vec(),
                net: taken.net.as_ref().map(|n| n.inside()),
                image_tree,
                cgroup_view,
                mount_trees: mount_trees.iter().map(|t| t.as_fd()).collect(),
                pty: pty_child,
                etc_files,
            })
        }
        warren_sys::Forked::Parent { pid, pidfd } => {
            taken.child = Some((pid, pidfd));
            spread(pid, affinity.as_ref());
            // From here on the forwarded signals are read from a signalfd while the workload
            // runs; without one, they are unblocked at once and act on the launcher itself.
            taken.signals = warren_sys::signalfd(&sigset).ok();
            if taken.signals.is_none() {
                if let Some(mask) = taken.blocked.take() {
                    let _ = warren_sys::set_signal_mask(&mask);
                }
            }
            Ok((
                pid,
                ParentEnds {
                    go: go_wr,
                    go_keep: go_rd,
                    report: rep_rd,
                    listener_sock: listener_rd,
                    image_tree,
                    mount_trees,
                    pty: pty_parent,
                    etc_bound,
                },
            ))
        }
    }
}

/// Keep the child off the CPU the parent runs on while both work on the launch (the parent
/// writes the maps and measures; the child builds the environment). Without it the scheduler
/// tends to run the child on the parent's CPU: the go byte is a pipe write, a "sync" wake-up
/// that assumes the writer is about to sleep, so the two took turns on one CPU while another
/// idled (`perf sched timehist`: the child runnable but waiting 0.8 ms for the parent's CPU).
/// The child restores `affinity`, the launcher's own, before it execs (step `rlimits`). Nothing
/// is done when the launcher may run on one CPU only.
fn spread(pid: i32, affinity: Option<&rustix::thread::CpuSet>) {
    let Some(mask) = affinity else {
        return;
    };
    let mut others = *mask;
    others.unset(rustix::thread::sched_getcpu());
    if others.count() == 0 {
        return;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::thread::sched_setaffinity(Some(pid), &others);
    }
}

/// The applied-isolation record as the parent knows it right after the fork; the measurement
/// and the child's reports complete it.
fn record(
    plan: &LaunchPlan,
    pid: i32,
    features: &Features,
    seccomp: Option<&warren_seccomp::Program>,
    taken: &Taken,
) -> Applied {
    let mut applied = crate::applied::initial(
        plan,
        pid,
        features.landlock_abi,
        seccomp
            .unwrap_or_else(|| plan.seccomp.program(false))
            .digest(),
        &features.degraded,
    );
    if let Some(uids) = &taken.uids {
        applied.uid_map = IdMap {
            inside: 0,
            host_base: uids.host_base,
            size: uids.size,
        };
    }
    applied.cgroup = taken.cgroup.as_ref().map(|c| c.info());
    if taken.net.is_some() {
        applied.network = "veth";
    }
    applied
}

/// Steps 9 and 9a, `uid-map` and `net-link`: give the child's user namespace its maps (and an
/// image root its idmapping), and move the host end of the network into its namespace.
fn set_up_from_outside(
    pid: i32,
    image_tree: Option<OwnedFd>,
    mount_trees: &[OwnedFd],
    plan: &LaunchPlan,
    taken: &mut Taken,
    fault: Fault,
) -> Result<(), LaunchError> {
    let uids = taken.uids.as_ref().expect("claimed before the fork");
    write_id_maps(pid, uids.host_base, uids.size)?;
    if let Some(tree) = image_tree {
        idmap_image_root(pid, &tree)?;
    }
    for (tree, m) in mount_trees.iter().zip(&plan.mounts) {
        idmap_mount(pid, tree, m)?;
    }
    fault.at(Step::UidMap)?;
    if let Some(n) = taken.net.as_mut() {
        let t = std::time::Instant::now();
        n.attach(pid).map_err(net_err(Step::NetLink))?;
        n.timings().link = micros(t);
        fault.at(Step::NetLink)?;
    }
    Ok(())
}

/// Step 35, `measure` (after the go byte of step 11, which `launch_with_mailbox` writes): run
/// the caller's measurement hook while the child builds its environment, and only then let it
/// exec (the second byte). The workload's first instruction runs only once the hook has
/// returned.
fn measure_then_release(
    plan: &LaunchPlan,
    ends: &ParentEnds,
    env: &[(String, String)],
    applied: &mut Applied,
    measure: &mut dyn Measure,
    fault: Fault,
) -> Result<(), LaunchError> {
    let measurement = measure
        .measure(plan, applied, env)
        .map_err(|e| LaunchError::Parent {
            step: Step::Measure,
            what: "measure the launch".into(),
            source: std::io::Error::other(error_chain(&*e)),
        })?;
    applied.measurement = Some(measurement);
    fault.at(Step::Measure)?;
    rustix::io::write(&ends.go, b"m")
        .map_err(|e| parent_err(Step::Measure, "let the child exec")(e.into()))?;
    Ok(())
}

/// Step 12: read the child's reports until the pipe closes (at its exec, or when it fails), and apply
/// them to the record. An error report becomes the launch's error.
///
/// With a notifying seccomp program, the child's listener arrives over `listener_sock` while the
/// reports do, and refusals (of the child's own last steps: none are expected) are answered
/// meanwhile, so the child can never wait on a parent that waits on it.
fn read_reports(
    plan: &LaunchPlan,
    report: OwnedFd,
    listener_sock: Option<OwnedFd>,
    refusals: &mut Option<Refusals>,
    applied: &mut Applied,
    taken: &mut Taken,
) -> Result<(), LaunchError> {
    let expect_listener = listener_sock.is_some();
    let bytes = crate::refusals::read_reports_serving(
        report,
        listener_sock,
        refusals,
        plan.name.as_str(),
        plan.seccomp.is_strict(),
        plan.seccomp.added(),
    );
    let reports = Report::decode_all(&bytes).map_err(|message| LaunchError::Child {
        step: Step::WaitParent,
        errno: 0,
        message,
    })?;
    let mut exec_reached = false;
    for r in reports {
        match r {
            Report::Landlock { status } => applied.landlock.status = status,
            Report::Seccomp { installed } => {
                applied.seccomp.mode = if installed { "filter" } else { "none" };
            }
            Report::NetConfig { micros } => {
                if let Some(n) = taken.net.as_mut() {
                    n.timings().config = micros;
                }
            }
            Report::Exec {} => exec_reached = true,
            Report::Error {
                step,
                errno,
                message,
            } => return Err(child_error(plan, step, errno, message)),
        }
    }
    if !exec_reached {
        return Err(LaunchError::Child {
            step: Step::WaitParent,
            errno: 0,
            message: "the environment died during setup without a report".into(),
        });
    }
    if expect_listener && refusals.is_none() {
        return Err(LaunchError::Child {
            step: Step::Seccomp,
            errno: 0,
            message: "the seccomp filter's listener did not reach the launcher".into(),
        });
    }
    Ok(())
}

/// Start the environment described by `plan`, measured by `measure`. Returns once the workload
/// has been exec'd (or the launch failed, in which case everything taken has been released).
pub fn launch(
    plan: &LaunchPlan,
    state: &StateDir,
    measure: &mut dyn Measure,
) -> Result<Running, LaunchError> {
    launch_with_mailbox(plan, state, None, measure)
}

/// [`launch`], giving the environment `mailbox` (its end of the kernel connection) as
/// descriptor 3, announced by `WARREN_FD=3`.
pub fn launch_with_mailbox(
    plan: &LaunchPlan,
    state: &StateDir,
    mailbox: Option<OwnedFd>,
    measure: &mut dyn Measure,
) -> Result<Running, LaunchError> {
    launch_as(plan, state, mailbox, measure, Parentage::Launcher)
}

/// Whose child the environment's first process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parentage {
    /// The launcher's: only the launcher can wait for it, and it dies with the launcher.
    Launcher,
    /// The launcher's parent's (`CLONE_PARENT`): the launcher may end while the environment
    /// runs and hand it to its parent ([`crate::handoff`]), which then waits for it; it dies
    /// with that parent (the parent-death signal follows the parent). Until the launch is
    /// complete the launcher still controls it: a launcher that dies first leaves the child
    /// waiting for a start that never comes, and it exits.
    LaunchersParent,
}

/// [`launch_with_mailbox`], with the environment's first process the child of `parentage`.
pub fn launch_as(
    plan: &LaunchPlan,
    state: &StateDir,
    mailbox: Option<OwnedFd>,
    measure: &mut dyn Measure,
    parentage: Parentage,
) -> Result<Running, LaunchError> {
    let started = std::time::Instant::now();
    let fault = preflight(plan)?;
    let mut features = check_features(plan, fault)?;
    let seccomp = seccomp_program(plan, &mut features, fault)?;
    let mut taken = Taken::default();
    claim(plan, state, &mut taken, fault)?;
    create_cgroup(plan, state, features.layout.as_ref(), &mut taken, fault)?;
    let env = workload_env(plan, mailbox.is_some());
    let (pid, mut ends) = fork(
        plan,
        state,
        mailbox,
        seccomp,
        &env,
        &mut taken,
        (fault, parentage),
    )?;
    // An image root is idmapped; a rootfs root's copy is the child's to attach as it is,
    // unless it is the lower layer of a writable root: idmapped too, so that root inside owns
    // what host root owns there and can change it (in the overlay's upper layer).
    let idmapped = ends
        .image_tree
        .take()
        .filter(|_| matches!(plan.root, RootSource::Image(_)) || plan.writable_root.is_some());
    let mount_trees = std::mem::take(&mut ends.mount_trees);
    if let Err(e) = set_up_from_outside(pid, idmapped, &mount_trees, plan, &mut taken, fault) {
        // The child's first steps run meanwhile: if one failed, the child has reported it and
        // exited, which may be why this failed; its report names the cause.
        return Err(child_failed_first(plan, &ends.report).unwrap_or(e));
    }
    drop(mount_trees);
    // The child waits for this byte: what the parent has left to do before the measurement
    // (the record of what was applied) is done after it, while the child works.
    rustix::io::write(&ends.go, b"g")
        .map_err(|e| parent_err(Step::WaitParent, "start the child")(e.into()))?;
    let mut applied = record(plan, pid, &features, seccomp, &taken);
    applied.etc_files = crate::etcfiles::digest(
        plan,
        taken
            .net
            .as_ref()
            .map(|n| std::net::IpAddr::V4(n.inside().cidr.addr)),
        &ends.etc_bound,
    );
    measure_then_release(plan, &ends, &env, &mut applied, measure, fault)?;
    let ParentEnds {
        go,
        go_keep,
        report,
        listener_sock,
        image_tree: _,
        mount_trees: _,
        pty,
        etc_bound: _,
    } = ends;
    drop(go_keep);
    let mut refusals = None;
    read_reports(
        plan,
        report,
        listener_sock,
        &mut refusals,
        &mut applied,
        &mut taken,
    )?;
    drop(go);
    // The child sent the pty's master before its exec, which `read_reports` has seen.
    let pty = match pty {
        Some(sock) => Some(crate::pty::receive(&sock).ok().flatten().ok_or_else(|| {
            parent_err(Step::Setsid, "receive the pty from the child")(std::io::Error::from(
                std::io::ErrorKind::UnexpectedEof,
            ))
        })?),
        None => None,
    };
    applied.net = taken.net.as_ref().map(|n| n.info());
    applied.launch_us = started.elapsed().as_micros() as u64;
    Ok(Running {
        sup: Supervised {
            pid,
            taken,
            refusals,
        },
        pty,
        applied,
    })
}

/// Remove the cgroups of environments whose launcher died without cleaning up (killed with
/// SIGKILL, say): a leaf whose name no live launcher holds. Their processes were killed by the
/// parent-death signal; any survivor is killed here. `own` is the name this launcher holds: a
/// leaf of that name can only be a leftover, which [`create_cgroup`] removes when it meets it.
///
/// Another Warren instance with another state directory may hold names this one cannot see, so
/// a leaf is only ever swept when it is also empty and older than [`STALE_CGROUP_AGE`]. A
/// launcher creates its cgroup and puts its child in it within milliseconds, but on a host
/// loaded far beyond its cores (launches measured at load 50 on 2 cores) that took over five
/// seconds, and a five-second threshold swept live launches' cgroups from under them
/// (`cgroup-attach: ... No such device`). An empty leftover costs nothing while it waits.
///
/// Looking at every leaf costs six system calls per live environment, so the full sweep (and
/// the removal of uid slot files dead launchers left) runs at most once per
/// [`SWEEP_INTERVAL`] per state directory, as the modification time of
/// `<state>/housekeeping` records.
fn sweep_stale_cgroups(layout: &Layout, state: &StateDir, own: &str) {
    if !housekeeping_due(state) {
        return;
    }
    for leaf in layout.leaves() {
        if leaf == own || !layout.leaf_is_stale(&leaf, STALE_CGROUP_AGE) {
            continue;
        }
        if matches!(state.name_in_use(&leaf), Ok(false)) {
            if let Some(cg) = layout.adopt(&leaf) {
                let _ = cg.destroy();
            }
        }
    }
    state.remove_stale_uid_files();
}

/// After an environment ended without its launcher's (or launch waiter's) teardown (that
/// process was killed with SIGKILL, say): remove what it left behind, once its name is no
/// longer held: its cgroup `placement.group(name)` when nothing runs in it (a populated group
/// of that name belongs to an environment of another state directory, or still holds linked
/// children on their way out, and is left to [`sweep_stale_cgroups`]), and stale uid-range
/// slot files. Returns whether a cgroup was removed.
pub fn reclaim_leftovers(
    state_dir: &Path,
    name: &str,
    placement: &warren_cgroup::Placement,
) -> bool {
    let state = StateDir::new(state_dir);
    if !matches!(state.name_in_use(name), Ok(false)) {
        return false;
    }
    let removed = match Layout::discover(Path::new("/proc/self/mountinfo"), Path::new("/")) {
        Ok(layout) => {
            let group = placement.group(name);
            !layout.group_is_populated(&group)
                && layout.adopt(&group).is_some_and(|cg| cg.destroy().is_ok())
        }
        Err(_) => false,
    };
    state.remove_stale_uid_files();
    removed
}

/// Whether the housekeeping of [`sweep_stale_cgroups`] is due: `<state>/housekeeping` is
/// missing or older than [`SWEEP_INTERVAL`]. If so, its time is set to now first, so that
/// concurrent launches rarely sweep together (two that do only repeat each other's work).
fn housekeeping_due(state: &StateDir) -> bool {
    let path = state.root().join("housekeeping");
    let recent = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e < SWEEP_INTERVAL));
    if recent {
        return false;
    }
    // Never truncated (an empty file has nothing to lose); without the marker every launch
    // sweeps, as before it existed.
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
    true
}

/// How old an empty cgroup leaf of a name this state directory does not hold must be before a
/// launch sweeps it (see [`sweep_stale_cgroups`]).
const STALE_CGROUP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// How often, at most, a launch runs the full sweep of [`sweep_stale_cgroups`].
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The error the child reported before the parent's own step failed, if it did (a report is
/// written whole, before the child exits, so a dead child's report is already in the pipe).
fn child_failed_first(plan: &LaunchPlan, report: &OwnedFd) -> Option<LaunchError> {
    let mut fds = [rustix::event::PollFd::new(
        report,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&zero)).ok()? == 0
        || !fds[0].revents().contains(rustix::event::PollFlags::IN)
    {
        return None;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::io::read(report, &mut buf).ok()?;
    Report::decode_all(&buf[..n])
        .ok()?
        .into_iter()
        .find_map(|r| match r {
            Report::Error {
                step,
                errno,
                message,
            } => Some(child_error(plan, step, errno, message)),
            _ => None,
        })
}

/// The launch error for a failure the child reported.
fn child_error(plan: &LaunchPlan, step: Step, errno: i32, message: String) -> LaunchError {
    if step == Step::Exec && errno != 0 {
        let command = plan.argv[0].clone();
        return match child::exec_status(errno) {
            127 => LaunchError::CommandNotFound { command, message },
            _ => LaunchError::CommandNotExecutable { command, message },
        };
    }
    LaunchError::Child {
        step,
        errno,
        message,
    }
}

/// Make the detached image mount `tree` read-only, nosuid, nodev and idmapped through the user
/// namespace of `pid` (whose maps are written): a file owned by uid N in the store appears
/// owned by uid N inside the environment. One unpacked copy thus serves every environment,
/// whatever its host uid range.
fn idmap_image_root(pid: i32, tree: &OwnedFd) -> Result<(), LaunchError> {
    let ns = format!("/proc/{pid}/ns/user");
    let userns =
        std::fs::File::open(&ns).map_err(parent_err(Step::UidMap, format!("open {ns}")))?;
    warren_sys::mount_setattr_idmap(
        tree.as_fd(),
        userns.as_fd(),
        warren_sys::MOUNT_ATTR_RDONLY
            | warren_sys::MOUNT_ATTR_NOSUID
            | warren_sys::MOUNT_ATTR_NODEV,
    )
    .map_err(parent_err(
        Step::UidMap,
        "make the image root an idmapped mount (the kernel and the store's filesystem must \
         support idmapped mounts)",
    ))
}

/// Open a detached, non-recursive copy of each mount's host directory (mounts below it stay
/// out of the environment). The parent opens them: the data directory is 0700 and the
/// environment's root has no access to host paths.
fn open_mount_trees(plan: &LaunchPlan) -> Result<Vec<OwnedFd>, LaunchError> {
    plan.mounts
        .iter()
        .map(|m| {
            if let Some(t) = &m.tree {
                // A size-limited volume's file system, mounted detached by the caller.
                let fd = t.0.as_fd().try_clone_to_owned().map_err(parent_err(
                    Step::Clone,
                    format!("duplicate the mount of {}", m.source),
                ))?;
                return high(fd, "mount source");
            }
            let tree = rustix::mount::open_tree(
                rustix::fs::CWD,
                &m.host,
                rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
                    | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
            )
            .map_err(|e| {
                parent_err(
                    Step::Clone,
                    format!("open the mount source {}", m.host.display()),
                )(e.into())
            })?;
            high(tree, "mount source")
        })
        .collect()
}

/// Make the detached mount `tree` of `m` nosuid, nodev (read-only when asked) and idmapped
/// through the user namespace of `pid`: uid N inside reads and writes files owned by N on
/// disk, whatever the environment's host uid range, so a volume outlives the range it was
/// first used with.
fn idmap_mount(pid: i32, tree: &OwnedFd, m: &crate::plan::MountSpec) -> Result<(), LaunchError> {
    let ns = format!("/proc/{pid}/ns/user");
    let userns =
        std::fs::File::open(&ns).map_err(parent_err(Step::UidMap, format!("open {ns}")))?;
    let mut attrs = warren_sys::MOUNT_ATTR_NOSUID | warren_sys::MOUNT_ATTR_NODEV;
    if m.read_only {
        attrs |= warren_sys::MOUNT_ATTR_RDONLY;
    }
    warren_sys::mount_setattr_idmap(tree.as_fd(), userns.as_fd(), attrs).map_err(parent_err(
        Step::UidMap,
        format!(
            "make {} an idmapped mount (its filesystem must support idmapped mounts)",
            m.host.display()
        ),
    ))
}

fn write_id_maps(pid: i32, base: u32, size: u32) -> Result<(), LaunchError> {
    let line = format!("0 {base} {size}\n");
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &line).map_err(parent_err(Step::UidMap, format!("write {path}")))?;
    }
    Ok(())
}

impl Running {
    /// With `-t`: the master of the workload's pty (once; `None` after, or without `-t`).
    pub fn take_pty(&mut self) -> Option<OwnedFd> {
        self.pty.take()
    }

    /// The workload's pid in the host's pid namespace.
    pub fn pid(&self) -> i32 {
        self.sup.pid()
    }

    /// [`Supervised::write_record`].
    pub fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        self.sup.write_record(record)
    }

    /// [`Supervised::signal`].
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        self.sup.signal(signal)
    }

    /// [`Supervised::wait`].
    pub fn wait(self, log: &mut dyn FnMut(&str)) -> Result<ExitState, LaunchError> {
        self.sup.wait(log)
    }

    /// [`Supervised::wait_idle`].
    pub fn wait_idle(
        self,
        log: &mut dyn FnMut(&str),
        idle: Option<(std::time::Duration, &mut dyn FnMut())>,
        side: &mut [&mut dyn Sidework],
    ) -> Result<ExitState, LaunchError> {
        self.sup.wait_idle(log, idle, side)
    }

    /// The environment without what only its launcher uses (the pty and the record of what
    /// was applied), for handing over ([`crate::handoff::HandOff::new`]).
    pub fn into_supervised(self) -> Supervised {
        self.sup
    }
}

impl Supervised {
    /// Rebuilt from handed-over parts (`handoff`).
    pub(crate) fn from_parts(pid: i32, taken: Taken, refusals: Option<Refusals>) -> Supervised {
        Supervised {
            pid,
            taken,
            refusals,
        }
    }

    /// The workload's pid in the host's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn pidfd(&self) -> &OwnedFd {
        &self
            .taken
            .child
            .as_ref()
            .expect("a running environment has a child")
            .1
    }

    /// Store `record` (a JSON document describing the environment) in its name lock file, where
    /// `warren ps` and `warren inspect` read it while the environment lives.
    pub fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        self.taken
            .name
            .as_mut()
            .expect("a running environment holds its name")
            .write_record(record)
    }

    /// Send `signal` to the workload (through its pidfd, immune to pid reuse).
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        pidfd_send_signal(self.pidfd(), signal).map_err(Into::into)
    }

    /// Wait for the workload to exit, forwarding HUP, INT, QUIT, USR1, USR2 and TERM to it. A
    /// second INT or TERM kills it (pid 1 of a namespace ignores signals it has no handler for).
    /// Then kill anything left in the environment and release its resources.
    ///
    /// Meanwhile, answer the calls the seccomp filter refuses (with `EPERM`, what the workload
    /// would get without the launcher) and hand `log` one line for the first refusal of each
    /// syscall: its name and number, the environment, and how to allow it (or why it never is).
    pub fn wait(self, log: &mut dyn FnMut(&str)) -> Result<ExitState, LaunchError> {
        self.wait_idle(log, None, &mut [])
    }

    /// [`Running::wait`], calling `idle.1` once if the environment still runs `idle.0` after
    /// the wait began (work worth doing for a launcher that will idle for a long time, giving
    /// its heap back say, not for one whose workload ends at once), and doing `side`'s work
    /// meanwhile in this thread.
    pub fn wait_idle(
        mut self,
        log: &mut dyn FnMut(&str),
        idle: Option<(std::time::Duration, &mut dyn FnMut())>,
        side: &mut [&mut dyn Sidework],
    ) -> Result<ExitState, LaunchError> {
        self.watch(log, idle, side, None)?;
        self.finish()
    }

    /// [`Supervised::wait_idle`]'s work for at most `limit`, without collecting the status:
    /// whether the workload has ended (its pidfd turned readable). For a launcher whose
    /// environment is its parent's child ([`Parentage::LaunchersParent`]), which hands it over
    /// once it has run that long or ended, whichever comes first.
    pub fn watch_for(
        &mut self,
        limit: std::time::Duration,
        log: &mut dyn FnMut(&str),
        side: &mut [&mut dyn Sidework],
    ) -> Result<bool, LaunchError> {
        self.watch(log, None, side, Some(std::time::Instant::now() + limit))
    }

    /// Poll the pidfd, the forwarded signals, the refusals and `side` until the workload ends
    /// (true) or `until` passes (false).
    fn watch(
        &mut self,
        log: &mut dyn FnMut(&str),
        mut idle: Option<(std::time::Duration, &mut dyn FnMut())>,
        side: &mut [&mut dyn Sidework],
        until: Option<std::time::Instant>,
    ) -> Result<bool, LaunchError> {
        let began = std::time::Instant::now();
        let mut terminations = 0;
        let mut listening = true;
        if let Some(r) = self.refusals.as_mut() {
            r.flush(log);
        }
        loop {
            let mut fds = vec![PollFd::new(self.pidfd(), PollFlags::IN)];
            let signals_at = self.taken.signals.as_ref().map(|s| {
                fds.push(PollFd::new(s, PollFlags::IN));
                fds.len() - 1
            });
            let refusals_at = self.refusals.as_ref().filter(|_| listening).map(|r| {
                fds.push(PollFd::new(r.listener(), PollFlags::IN));
                fds.len() - 1
            });
            let side_at: Vec<Option<usize>> = side
                .iter()
                .map(|w| {
                    w.fd().map(|fd| {
                        fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
                        fds.len() - 1
                    })
                })
                .collect();
            let idle_left = idle
                .as_ref()
                .map(|(after, _)| after.saturating_sub(began.elapsed()));
            let until_left = until.map(|u| u.saturating_duration_since(std::time::Instant::now()));
            if until_left.is_some_and(|l| l.is_zero()) {
                return Ok(false);
            }
            let timeout = match (idle_left, until_left) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
            .map(|left| rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            });
            let woke = match poll(&mut fds, timeout.as_ref()) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(parent_err(Step::Exec, "wait for the environment")(e.into())),
            };
            if idle
                .as_ref()
                .is_some_and(|(after, _)| began.elapsed() >= *after)
            {
                if let Some((_, f)) = idle.take() {
                    f();
                }
            }
            if woke == 0 {
                continue;
            }
            let side_ready: Vec<bool> = side_at
                .iter()
                .map(|i| i.is_some_and(|i| !fds[i].revents().is_empty()))
                .collect();
            let exited = fds[0].revents().contains(PollFlags::IN);
            let signalled = signals_at.is_some_and(|i| fds[i].revents().contains(PollFlags::IN));
            let refused = refusals_at.is_some_and(|i| fds[i].revents().contains(PollFlags::IN));
            // The listener hangs up once no process uses the filter any more (the environment
            // is ending): stop polling it, or poll would return at once until the exit shows.
            if refusals_at.is_some_and(|i| {
                let r = fds[i].revents();
                !r.contains(PollFlags::IN) && r.intersects(PollFlags::HUP | PollFlags::ERR)
            }) {
                listening = false;
            }
            drop(fds);
            for (w, ready) in side.iter_mut().zip(side_ready) {
                if ready {
                    w.ready();
                }
            }
            if refused {
                if let Some(r) = self.refusals.as_mut() {
                    r.serve();
                    r.flush(log);
                }
            }
            if signalled {
                if let Some(s) = &self.taken.signals {
                    while let Ok(Some(sig)) = warren_sys::read_signal(s) {
                        if sig == 2 || sig == 15 {
                            terminations += 1;
                        }
                        let sig = if terminations > 1 {
                            Signal::KILL
                        } else {
                            signal_from(sig)
                        };
                        let _ = pidfd_send_signal(self.pidfd(), sig);
                    }
                }
            }
            if exited {
                return Ok(true);
            }
        }
    }

    /// The pidfd, readable once the workload has ended ([`Supervised::finish`] then collects
    /// it): for a waiter that polls many environments at once.
    pub fn exit_fd(&self) -> BorrowedFd<'_> {
        self.pidfd().as_fd()
    }

    /// The seccomp listener, to poll for input ([`Supervised::serve_refusals`]) until it hangs
    /// up (no process uses the filter any more); `None` when refusals do not come here.
    pub fn refusal_fd(&self) -> Option<BorrowedFd<'_>> {
        self.refusals.as_ref().map(|r| r.listener().as_fd())
    }

    /// Answer the refused calls waiting on the listener and hand `log` the lines for the first
    /// refusal of each syscall (and any not handed over yet).
    pub fn serve_refusals(&mut self, log: &mut dyn FnMut(&str)) {
        if let Some(r) = self.refusals.as_mut() {
            r.serve();
            r.flush(log);
        }
    }

    /// Hand `log` the refusal lines not handed over yet.
    pub fn flush_refusals(&mut self, log: &mut dyn FnMut(&str)) {
        if let Some(r) = self.refusals.as_mut() {
            r.flush(log);
        }
    }

    /// Once the workload has ended (or to wait for it to end): collect its status, kill
    /// anything left in the environment and release its resources.
    pub fn finish(mut self) -> Result<ExitState, LaunchError> {
        let status = waitid(WaitId::PidFd(self.pidfd().as_fd()), WaitIdOptions::EXITED)
            .map_err(|e| parent_err(Step::Exec, "collect the exit status")(e.into()))?;
        let ended = match status {
            Some(st) => (st.exit_status(), st.terminating_signal()),
            None => (None, None),
        };
        self.taken.reaped = true;
        self.conclude(ended)
    }

    /// [`Supervised::finish`] for a workload its waiter has already reaped (with `wait(2)` on
    /// any child, say): `exit_status` and `terminating_signal` are what that collected.
    pub fn finish_reaped(
        mut self,
        exit_status: Option<i32>,
        terminating_signal: Option<i32>,
    ) -> Result<ExitState, LaunchError> {
        self.taken.reaped = true;
        self.conclude((exit_status, terminating_signal))
    }

    fn conclude(mut self, ended: (Option<i32>, Option<i32>)) -> Result<ExitState, LaunchError> {
        let (code, signal) = match ended {
            (Some(c), _) => (c, None),
            (None, Some(s)) => (128 + s, Some(s)),
            _ => (125, None),
        };
        let oom_killed = self
            .taken
            .cgroup
            .as_ref()
            .and_then(|c| c.oom_kills())
            .is_some_and(|n| n > 0);
        let pids_limit_hit = self
            .taken
            .cgroup
            .as_ref()
            .and_then(|c| c.pids_max_hits())
            .is_some_and(|n| n > 0);
        if let Some(cg) = self.taken.cgroup.take() {
            cg.destroy()?;
        }
        let seccomp_refusals = self
            .refusals
            .as_ref()
            .map(|r| r.summary())
            .unwrap_or_default();
        Ok(ExitState {
            code,
            signal,
            oom_killed,
            pids_limit_hit,
            seccomp_refusals,
        })
    }
}

fn signal_from(n: i32) -> Signal {
    match n {
        1 => Signal::HUP,
        2 => Signal::INT,
        3 => Signal::QUIT,
        10 => Signal::USR1,
        12 => Signal::USR2,
        _ => Signal::TERM,
    }
}
