//! The parent side of a launch, and the handle to a running environment.
//!
//! [`launch`] runs the parent's steps in order: validate the plan, check that every requested
//! protection is available (failing closed), compile the seccomp filter, claim the name and a
//! host uid range, create the cgroup, fork with `clone3` into new namespaces, write the child's
//! uid/gid maps, place it in the cgroup, and let it go. The child's steps are in `child`. Every
//! resource taken is owned by a guard, so any failure releases all of it: nothing is left behind.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{Signal, WaitId, WaitIdOptions, pidfd_send_signal, waitid};
use serde::Serialize;

use crate::cgroup::{Cgroup, CgroupInfo, Layout};
use crate::child::{self, ChildContext};
use crate::plan::{LaunchPlan, Protection, RootSource};
use crate::seccomp::Profile;
use crate::state::{Held, StateDir, StateError, UidRange};

/// The steps of a launch, in the order they run (parent steps first, then the child's).
/// `docs/launch-sequence.md` describes each; the names appear in errors and in
/// `WARREN_FAULT_INJECT`, which tests use to make a launch fail at a chosen step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum Step {
    Validate,
    Features,
    SeccompCompile,
    ClaimName,
    ClaimUids,
    NetClaim,
    Cgroup,
    NetRules,
    Clone,
    UidMap,
    NetLink,
    WaitParent,
    CgroupAttach,
    SetIds,
    ParentDeath,
    CgroupNs,
    Hostname,
    Loopback,
    NetConfig,
    MountPrivate,
    MountRoot,
    MountProc,
    MountDev,
    MountTmp,
    MaskPaths,
    ReadonlyRoot,
    PivotRoot,
    Rlimits,
    Fds,
    Setsid,
    Landlock,
    Capabilities,
    NoNewPrivs,
    Seccomp,
    Measure,
    Exec,
}

impl Step {
    /// Every step, in launch order.
    pub const ALL: [Step; 36] = [
        Step::Validate,
        Step::Features,
        Step::SeccompCompile,
        Step::ClaimName,
        Step::ClaimUids,
        Step::NetClaim,
        Step::Cgroup,
        Step::NetRules,
        Step::Clone,
        Step::UidMap,
        Step::NetLink,
        Step::WaitParent,
        Step::CgroupAttach,
        Step::SetIds,
        Step::ParentDeath,
        Step::CgroupNs,
        Step::Hostname,
        Step::Loopback,
        Step::NetConfig,
        Step::MountPrivate,
        Step::MountRoot,
        Step::MountProc,
        Step::MountDev,
        Step::MountTmp,
        Step::MaskPaths,
        Step::ReadonlyRoot,
        Step::PivotRoot,
        Step::Rlimits,
        Step::Fds,
        Step::Setsid,
        Step::Landlock,
        Step::Capabilities,
        Step::NoNewPrivs,
        Step::Seccomp,
        Step::Measure,
        Step::Exec,
    ];

    /// The step's name, as in errors and `docs/launch-sequence.md`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Step::Validate => "validate",
            Step::Features => "features",
            Step::SeccompCompile => "seccomp-compile",
            Step::ClaimName => "claim-name",
            Step::ClaimUids => "claim-uids",
            Step::Cgroup => "cgroup",
            Step::Clone => "clone",
            Step::UidMap => "uid-map",
            Step::CgroupAttach => "cgroup-attach",
            Step::WaitParent => "wait-parent",
            Step::SetIds => "set-ids",
            Step::ParentDeath => "parent-death",
            Step::CgroupNs => "cgroup-ns",
            Step::Hostname => "hostname",
            Step::Loopback => "loopback",
            Step::NetClaim => "net-claim",
            Step::NetRules => "net-rules",
            Step::NetLink => "net-link",
            Step::NetConfig => "net-config",
            Step::MountPrivate => "mount-private",
            Step::MountRoot => "mount-root",
            Step::MountProc => "mount-proc",
            Step::MountDev => "mount-dev",
            Step::MountTmp => "mount-tmp",
            Step::MaskPaths => "mask-paths",
            Step::ReadonlyRoot => "readonly-root",
            Step::PivotRoot => "pivot-root",
            Step::Rlimits => "rlimits",
            Step::Fds => "fds",
            Step::Setsid => "setsid",
            Step::Landlock => "landlock",
            Step::Capabilities => "capabilities",
            Step::NoNewPrivs => "no-new-privs",
            Step::Seccomp => "seccomp",
            Step::Measure => "measure",
            Step::Exec => "exec",
        }
    }

    /// The step named `s`.
    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a launch failed. Nothing it created is left behind.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The plan is not valid (say why).
    #[error("{0}")]
    Invalid(String),
    /// A requested protection is not available on this host and the user did not allow that.
    #[error(
        "{protection} is not available on this host ({detail}); refusing to start without it (use --allow-missing {protection} to run anyway, with less isolation)"
    )]
    Missing {
        /// The protection.
        protection: &'static str,
        /// What was found.
        detail: String,
    },
    /// The launcher is not single-threaded, so it must not fork.
    #[error(
        "the launcher has {threads} threads; launching must happen in a single-threaded process"
    )]
    MultiThreaded {
        /// How many threads it has.
        threads: usize,
    },
    /// Name or uid bookkeeping failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The cgroup could not be created or set up.
    #[error("cgroup setup failed")]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// The environment's network could not be set up.
    #[error("{step}")]
    Net {
        /// The step.
        step: Step,
        /// What went wrong.
        #[source]
        error: crate::net::NetError,
    },
    /// The seccomp policy could not be loaded or compiled.
    #[error("seccomp policy")]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// A parent-side step failed.
    #[error("{step}: {what}")]
    Parent {
        /// The step.
        step: Step,
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A step inside the new environment failed.
    #[error("{step}: {message}")]
    Child {
        /// The step.
        step: Step,
        /// The errno the step failed with (0 if none).
        errno: i32,
        /// What the child reported.
        message: String,
    },
    /// The command does not exist in the environment's root.
    #[error("command not found in the environment: {command} ({message})")]
    CommandNotFound {
        /// The command.
        command: String,
        /// What exec reported.
        message: String,
    },
    /// The command exists but cannot be executed.
    #[error("command cannot be executed in the environment: {command} ({message})")]
    CommandNotExecutable {
        /// The command.
        command: String,
        /// What exec reported.
        message: String,
    },
}

impl LaunchError {
    /// The exit status `warren run` uses for this error: 127 command not found, 126 command not
    /// executable, 125 any failure of Warren itself.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::CommandNotFound { .. } => 127,
            LaunchError::CommandNotExecutable { .. } => 126,
            _ => 125,
        }
    }
}

/// What isolation an environment actually got: recorded at launch, shown by `--json` and
/// `inspect`. Every field is what was applied, not what was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The environment's name (also its hostname).
    pub name: String,
    /// The workload's pid in the host's pid namespace.
    pub host_pid: i32,
    /// Namespaces the environment has of its own.
    pub namespaces: Vec<&'static str>,
    /// The id mapping: uid/gid 0 inside is `host_base` outside.
    pub uid_map: IdMap,
    /// The root filesystem.
    pub root: RootInfo,
    /// Size of the writable `/tmp` and `/dev/shm` tmpfs in bytes.
    pub tmpfs_size: u64,
    /// Masked `/proc` paths.
    pub masked_paths: Vec<String>,
    /// Read-only `/proc` paths.
    pub readonly_paths: Vec<String>,
    /// Device nodes present in `/dev`.
    pub devices: Vec<String>,
    /// The cgroup, or `None` if allowed to be missing.
    pub cgroup: Option<CgroupInfo>,
    /// Capabilities left in every set (always empty).
    pub capabilities: Vec<String>,
    /// Whether `no_new_privs` is set (always true).
    pub no_new_privs: bool,
    /// The seccomp filter.
    pub seccomp: SeccompInfo,
    /// Landlock.
    pub landlock: LandlockInfo,
    /// Network.
    pub network: &'static str,
    /// The virtual interface, when the environment has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<crate::net::NetInfo>,
    /// Protections allowed to be missing that actually were.
    pub degraded: Vec<&'static str>,
    /// The image's name, for an image root.
    pub image_name: Option<String>,
    /// The image's manifest digest, for an image root: what `inspect` shows and the launch
    /// measurement records.
    pub image_manifest_digest: Option<String>,
    /// The user the workload runs as (`uid:gid`), when not root.
    pub user: Option<String>,
    /// How long the launch took, from `launch` being called to the workload's `execve`, in
    /// microseconds (start-up, without the caller's own work and without teardown).
    pub launch_us: u64,
    /// The launch's record in the event log (measured launch).
    pub measurement: Option<Measurement>,
}

/// Where a launch was recorded in the event log, and the digests golden values compare.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The root of trust the record was extended into.
    pub root: &'static str,
    /// The record's number in the log.
    pub recnum: u64,
    /// The record's digest, `sha256:<hex>`.
    pub digest: String,
    /// The image tree digest, `blake3:<hex>`.
    pub image_digest: String,
    /// The OCI manifest digest, when the image came from one.
    pub image_manifest_digest: Option<String>,
    /// The digest of the isolation configuration, `sha256:<hex>`.
    pub config_digest: String,
}

/// The uid/gid mapping of an environment.
#[derive(Debug, Clone, Serialize)]
pub struct IdMap {
    /// The first id inside (0).
    pub inside: u32,
    /// The first host id.
    pub host_base: u32,
    /// How many ids are mapped.
    pub size: u32,
}

/// The root filesystem of an environment.
#[derive(Debug, Clone, Serialize)]
pub struct RootInfo {
    /// `rootfs`, `binary` or `image`.
    pub kind: &'static str,
    /// The image directory, or the binary.
    pub source: PathBuf,
    /// Always true: the root is mounted read-only.
    pub read_only: bool,
    /// For `binary` roots: the files placed in it, as (host, target).
    pub files: Vec<(PathBuf, PathBuf)>,
}

/// The seccomp filter of an environment.
#[derive(Debug, Clone, Serialize)]
pub struct SeccompInfo {
    /// `filter`, or `none` when allowed to be missing.
    pub mode: &'static str,
    /// Digest of the policy file.
    pub profile_digest: Option<String>,
    /// What a denied system call gets.
    pub default_action: &'static str,
}

/// Landlock as applied to an environment.
#[derive(Debug, Clone, Serialize)]
pub struct LandlockInfo {
    /// The kernel's Landlock ABI, if it has one.
    pub kernel_abi: Option<i32>,
    /// The ABI whose rights Warren requested.
    pub requested_abi: i32,
    /// `full`, `partial` or `none`, as reported by the environment.
    pub status: String,
}

/// A running environment. Dropping it kills the environment and releases everything.
#[derive(Debug)]
pub struct Running {
    pid: i32,
    pidfd: OwnedFd,
    reaped: bool,
    cgroup: Option<Cgroup>,
    // Dropped before the uid range: the host end is named after the range's slot.
    _net: Option<crate::net::Prepared>,
    _uids: UidRange,
    _name: Held,
    signals: Option<OwnedFd>,
    old_mask: warren_sys::SignalSet,
    /// What isolation was applied.
    pub applied: Applied,
}

/// How an environment's main process ended.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExitState {
    /// The status to pass through: the exit code, or 128 + signal.
    pub code: i32,
    /// The terminating signal, if it was killed.
    pub signal: Option<i32>,
    /// Whether the memory cgroup recorded an OOM kill.
    pub oom_killed: bool,
}

/// Signals `warren run` forwards to the workload.
pub const FORWARDED_SIGNALS: [i32; 6] = [1, 2, 3, 10, 12, 15]; // HUP INT QUIT USR1 USR2 TERM

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Threads:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

fn fault_from_env() -> Result<Option<Step>, LaunchError> {
    match std::env::var("WARREN_FAULT_INJECT") {
        Ok(s) if !s.is_empty() => Step::parse(&s).map(Some).ok_or_else(|| {
            LaunchError::Invalid(format!("WARREN_FAULT_INJECT names no launch step: {s:?}"))
        }),
        _ => Ok(None),
    }
}

fn parent_err(step: Step, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Parent { step, what, source }
}

fn injected(fault: Option<Step>, step: Step) -> Result<(), LaunchError> {
    if fault == Some(step) {
        return Err(LaunchError::Parent {
            step,
            what: "fault injection".into(),
            source: std::io::Error::other("injected fault"),
        });
    }
    Ok(())
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

/// Start the environment described by `plan`. Returns once the workload has been exec'd (or the
/// launch failed, in which case everything taken has been released).
pub fn launch(plan: &LaunchPlan, state: &StateDir) -> Result<Running, LaunchError> {
    launch_with_mailbox(plan, state, None)
}

/// [`launch`], giving the environment `mailbox` (its end of the kernel connection) as
/// descriptor 3, announced by `WARREN_FD=3`.
pub fn launch_with_mailbox(
    plan: &LaunchPlan,
    state: &StateDir,
    mailbox: Option<OwnedFd>,
) -> Result<Running, LaunchError> {
    let started = std::time::Instant::now();
    let threads = threads();
    if threads != 1 {
        return Err(LaunchError::MultiThreaded { threads });
    }
    let fault = fault_from_env()?;
    validate(plan)?;
    injected(fault, Step::Validate)?;

    // Fail closed: every protection is required unless the user allowed it to be missing.
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
    let seccomp_ok = Path::new("/proc/sys/kernel/seccomp/actions_avail").exists();
    if !seccomp_ok && !plan.allow_missing.contains(&Protection::Seccomp) {
        return Err(LaunchError::Missing {
            protection: "seccomp",
            detail: "the kernel has no seccomp filter mode".into(),
        });
    }
    let layout = match Layout::discover(Path::new("/proc/self/mountinfo"), Path::new("/")) {
        Ok(l) => Some(l),
        Err(e) if plan.allow_missing.contains(&Protection::Cgroup) => {
            let _ = e;
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
    injected(fault, Step::Features)?;

    let (profile_digest, bpf) = seccomp_program(state)?;
    let bpf = if seccomp_ok {
        Some(bpf)
    } else {
        degraded.insert(Protection::Seccomp);
        None
    };
    injected(fault, Step::SeccompCompile)?;

    let name_lock = state.claim_name(plan.name.as_str())?;
    injected(fault, Step::ClaimName)?;
    let uids = state.claim_uid_range()?;
    injected(fault, Step::ClaimUids)?;
    let net_err = |step| move |error| LaunchError::Net { step, error };
    let micros = |t: std::time::Instant| t.elapsed().as_micros() as u64;
    let mut net = match &plan.net {
        Some(spec) => {
            let t = std::time::Instant::now();
            let mut n = crate::net::Prepared::claim(spec, uids.slot, state)
                .map_err(net_err(Step::NetClaim))?;
            n.label(plan.name.as_str());
            n.timings().claim = micros(t);
            Some(n)
        }
        None => None,
    };
    injected(fault, Step::NetClaim)?;
    let staging = state.mount_point()?;

    let cgroup = match &layout {
        Some(layout) => {
            sweep_stale_cgroups(layout, state, plan.name.as_str());
            Some(layout.create(plan.name.as_str(), &plan.limits)?)
        }
        None => None,
    };
    injected(fault, Step::Cgroup)?;
    if let Some(n) = net.as_mut() {
        let t = std::time::Instant::now();
        n.install_rules(state).map_err(net_err(Step::NetRules))?;
        n.timings().rules = micros(t);
        injected(fault, Step::NetRules)?;
    }
    let inside = net.as_ref().map(|n| n.inside());

    let (go_rd, go_wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| parent_err(Step::Clone, "create the go pipe")(e.into()))?;
    let (rep_rd, rep_wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| parent_err(Step::Clone, "create the report pipe")(e.into()))?;
    // Every descriptor the child will own goes above LAUNCHER_FD_FLOOR, so that installing the
    // mailbox as descriptor 3 can never close one of them.
    let high = |fd: OwnedFd, what: &str| {
        warren_sys::dup_high(fd.as_fd())
            .map_err(parent_err(Step::Clone, format!("move the {what} up")))
    };
    let go_rd = high(go_rd, "go pipe")?;
    let rep_wr = high(rep_wr, "report pipe")?;
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
                parent_err(
                    Step::Clone,
                    format!("open the image root {}", dir.display()),
                )(e.into())
            })?;
            Some(high(tree, "image root")?)
        }
        _ => None,
    };
    let sigset = warren_sys::SignalSet::of(&FORWARDED_SIGNALS)
        .map_err(parent_err(Step::Clone, "build the signal set"))?;
    let old_mask = warren_sys::block_signals(&sigset)
        .map_err(parent_err(Step::Clone, "block forwarded signals"))?;
    let restore_mask = || {
        let _ = warren_sys::set_signal_mask(&old_mask);
    };

    let mut env = vec![
        ("PATH".to_owned(), crate::policy::DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), "/".to_owned()),
        ("HOSTNAME".to_owned(), plan.name.to_string()),
    ];
    if mailbox.is_some() {
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

    let flags = warren_sys::ns::USER
        | warren_sys::ns::PID
        | warren_sys::ns::MOUNT
        | warren_sys::ns::UTS
        | warren_sys::ns::IPC
        | warren_sys::ns::NET;
    if fault == Some(Step::Clone) {
        restore_mask();
        return Err(LaunchError::Parent {
            step: Step::Clone,
            what: "fault injection".into(),
            source: std::io::Error::other("injected fault"),
        });
    }
    let attach = match cgroup.as_ref().map(|c| c.attach_handles()).transpose() {
        Ok(a) => a,
        Err(e) => {
            restore_mask();
            return Err(e.into());
        }
    };
    use crate::cgroup::AttachHandles;
    let attach = match attach
        .map(|a| match a {
            AttachHandles::CloneInto(fd) => {
                high(fd, "cgroup directory").map(AttachHandles::CloneInto)
            }
            AttachHandles::SelfWrite(files) => files
                .into_iter()
                .map(|f| high(f, "cgroup tasks file"))
                .collect::<Result<Vec<_>, _>>()
                .map(AttachHandles::SelfWrite),
        })
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            restore_mask();
            return Err(e);
        }
    };
    let clone_into = match &attach {
        Some(crate::cgroup::AttachHandles::CloneInto(fd)) => Some(fd.as_fd()),
        _ => None,
    };
    let forked = warren_sys::fork_into_namespaces(flags, clone_into).map_err(|e| {
        restore_mask();
        parent_err(Step::Clone, "clone3 into new namespaces")(e)
    })?;
    let (pid, pidfd) = match forked {
        warren_sys::Forked::Child => {
            drop(go_wr);
            drop(rep_rd);
            child::run(ChildContext {
                plan,
                staging,
                go: go_rd,
                mailbox,
                report: rep_wr,
                seccomp: bpf.as_ref(),
                attach: attach.as_ref(),
                old_mask,
                fault,
                env: env.clone(),
                net: inside,
                image_tree,
            })
        }
        warren_sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(attach);
    // The parent keeps a read end of the go pipe until the measurement byte is written: a
    // child that failed and exited meanwhile must not turn that write into SIGPIPE.
    let go_rd_keep = go_rd;
    drop(rep_wr);
    let signals = warren_sys::signalfd(&sigset).ok();
    if signals.is_none() {
        restore_mask();
    }

    // From here on, a failure must also kill and reap the child: `Running` does that on drop.
    let mut applied = applied(plan, pid, landlock_abi, &profile_digest, &degraded);
    applied.uid_map = IdMap {
        inside: 0,
        host_base: uids.host_base,
        size: uids.size,
    };
    applied.cgroup = cgroup.as_ref().map(|c| c.info());
    if net.is_some() {
        applied.network = "veth";
    }
    let mut running = Running {
        pid,
        pidfd,
        reaped: false,
        cgroup,
        _net: net,
        _uids: uids,
        _name: name_lock,
        signals,
        old_mask,
        applied,
    };

    write_id_maps(pid, running._uids.host_base, running._uids.size)?;
    if let (Some(tree), RootSource::Image(_)) = (image_tree, &plan.root) {
        idmap_image_root(pid, &tree)?;
    }
    injected(fault, Step::UidMap)?;
    if let Some(n) = running._net.as_mut() {
        let t = std::time::Instant::now();
        n.attach(pid).map_err(net_err(Step::NetLink))?;
        n.timings().link = micros(t);
        injected(fault, Step::NetLink)?;
    }
    rustix::io::write(&go_wr, b"g")
        .map_err(|e| parent_err(Step::WaitParent, "start the child")(e.into()))?;

    // Measured launch: while the child builds its namespaces and mounts, measure the image and
    // the configuration, append the record to the event log and extend the root of trust.
    // The child waits for a second byte before its `execve`, so the workload's first
    // instruction runs only once its record is in the log.
    let measurement = crate::measure::measure_and_record(plan, &running.applied, &env, state)
        .map_err(|e| LaunchError::Parent {
            step: Step::Measure,
            what: "measure the launch".into(),
            source: std::io::Error::other(e),
        })?;
    running.applied.measurement = Some(measurement);
    injected(fault, Step::Measure)?;
    rustix::io::write(&go_wr, b"m")
        .map_err(|e| parent_err(Step::Measure, "let the child exec")(e.into()))?;
    drop(go_rd_keep);

    // Read the child's report until the pipe closes: at exec, or when the child fails.
    let mut text = String::new();
    let _ = std::fs::File::from(rep_rd).read_to_string(&mut text);
    drop(go_wr);
    let mut exec_reached = false;
    for line in text.lines() {
        let mut parts = line.splitn(2, ' ');
        match (parts.next(), parts.next()) {
            (Some("info"), Some(rest)) => {
                if let Some(st) = rest.strip_prefix("landlock ") {
                    running.applied.landlock.status = st.to_owned();
                } else if let Some(st) = rest.strip_prefix("seccomp ") {
                    running.applied.seccomp.mode = if st == "filter" { "filter" } else { "none" };
                } else if let Some(us) = rest.strip_prefix("net-config ") {
                    if let Some(n) = running._net.as_mut() {
                        n.timings().config = us.parse().unwrap_or(0);
                    }
                } else if rest == "exec" {
                    exec_reached = true;
                }
            }
            (Some("error"), Some(rest)) => return Err(child_error(plan, rest)),
            _ => {}
        }
    }
    running.applied.net = running._net.as_ref().map(|n| n.info());
    running.applied.launch_us = started.elapsed().as_micros() as u64;
    if !exec_reached {
        return Err(LaunchError::Child {
            step: Step::WaitParent,
            errno: 0,
            message: "the environment died during setup without a report".into(),
        });
    }
    Ok(running)
}

/// The seccomp program and the policy's digest. Parsing, hashing and compiling the policy costs
/// about 0.2 ms, a twentieth of a launch, and gives the same result for the same `warren`
/// binary (the policy is compiled into it): so the result is cached in the state directory
/// (root's, mode 0700) under a key naming this binary's file (device, inode, size, mtime). A
/// missing, stale or malformed cache entry is simply rebuilt.
fn seccomp_program(state: &StateDir) -> Result<(String, seccompiler::BpfProgram), LaunchError> {
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::metadata("/proc/self/exe")
        .map(|m| format!("{:x}-{:x}-{:x}-{:x}", m.dev(), m.ino(), m.size(), m.mtime()))
        .ok();
    let path = key.and_then(|k| state.cache_file(&format!("seccomp-{k}.bpf")).ok());
    if let Some(path) = &path {
        if let Some(hit) = std::fs::read(path).ok().and_then(|b| decode_cached(&b)) {
            return Ok(hit);
        }
    }
    let profile = Profile::default_profile()?;
    let program = profile.compile()?;
    let digest = profile.digest();
    if let Some(path) = &path {
        let bytes = encode_cached(&digest, &program);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &bytes).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
    Ok((digest, program))
}

/// A cached program: the digest line, then 8 bytes per instruction (code, jt, jf, k; little
/// endian).
fn encode_cached(digest: &str, program: &seccompiler::BpfProgram) -> Vec<u8> {
    let mut bytes = format!("{digest}\n").into_bytes();
    for ins in program {
        bytes.extend_from_slice(&ins.code.to_le_bytes());
        bytes.push(ins.jt);
        bytes.push(ins.jf);
        bytes.extend_from_slice(&ins.k.to_le_bytes());
    }
    bytes
}

/// The inverse of [`encode_cached`]; `None` for anything malformed.
fn decode_cached(bytes: &[u8]) -> Option<(String, seccompiler::BpfProgram)> {
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let digest = std::str::from_utf8(&bytes[..nl]).ok()?;
    if !digest.starts_with("sha256:") || digest.len() != 7 + 64 {
        return None;
    }
    let body = &bytes[nl + 1..];
    if body.is_empty() || body.len() % 8 != 0 || body.len() / 8 > crate::seccomp::MAX_PROGRAM_LEN {
        return None;
    }
    let program = body
        .chunks_exact(8)
        .map(|c| seccompiler::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Some((digest.to_owned(), program))
}

/// Remove the cgroups of environments whose launcher died without cleaning up (killed with
/// SIGKILL, say): a leaf whose name no live launcher holds. Their processes were killed by the
/// parent-death signal; any survivor is killed here. `own` is the name this launcher holds: a
/// leaf of that name can only be a leftover.
///
/// Another Warren instance with another state directory may hold names this one cannot see, so
/// a leaf is only ever swept when it is also empty and older than a few seconds (a launcher
/// creates its cgroup and puts its child in it within milliseconds).
fn sweep_stale_cgroups(layout: &Layout, state: &StateDir, own: &str) {
    for leaf in layout.leaves() {
        if leaf != own && !layout.leaf_is_stale(&leaf, std::time::Duration::from_secs(5)) {
            continue;
        }
        if leaf == own || matches!(state.name_in_use(&leaf), Ok(false)) {
            if let Some(cg) = layout.adopt(&leaf) {
                let _ = cg.destroy();
            }
        }
    }
}

fn child_error(plan: &LaunchPlan, rest: &str) -> LaunchError {
    let mut it = rest.splitn(3, ' ');
    let step = it.next().and_then(Step::parse).unwrap_or(Step::Exec);
    let errno = it.next().and_then(|e| e.parse().ok()).unwrap_or(0);
    let message = it.next().unwrap_or("").to_owned();
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

fn write_id_maps(pid: i32, base: u32, size: u32) -> Result<(), LaunchError> {
    let line = format!("0 {base} {size}\n");
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &line).map_err(parent_err(Step::UidMap, format!("write {path}")))?;
    }
    Ok(())
}

fn applied(
    plan: &LaunchPlan,
    pid: i32,
    landlock_abi: Option<i32>,
    profile_digest: &str,
    degraded: &BTreeSet<Protection>,
) -> Applied {
    let root = match &plan.root {
        RootSource::Rootfs(dir) => RootInfo {
            kind: "rootfs",
            source: dir.clone(),
            read_only: true,
            files: vec![],
        },
        RootSource::Image(dir) => RootInfo {
            kind: "image",
            source: dir.clone(),
            read_only: true,
            files: vec![],
        },
        RootSource::Binary(b) => {
            let mut files = vec![(b.binary.host.clone(), b.binary.target.clone())];
            files.extend(
                b.interpreter
                    .iter()
                    .chain(&b.libraries)
                    .map(|e| (e.host.clone(), e.target.clone())),
            );
            RootInfo {
                kind: "binary",
                source: b.binary.host.clone(),
                read_only: true,
                files,
            }
        }
    };
    Applied {
        name: plan.name.to_string(),
        host_pid: pid,
        namespaces: vec!["user", "pid", "mount", "uts", "ipc", "cgroup", "net"],
        uid_map: IdMap {
            inside: 0,
            host_base: 0,
            size: 0,
        },
        root,
        tmpfs_size: plan.tmpfs_size,
        masked_paths: crate::policy::MASKED_PROC_PATHS
            .iter()
            .map(|(p, _)| format!("/proc/{p}"))
            .collect(),
        readonly_paths: crate::policy::READONLY_PROC_PATHS
            .iter()
            .map(|(p, _)| format!("/proc/{p}"))
            .collect(),
        devices: crate::policy::DEVICES
            .iter()
            .map(|(d, _)| format!("/dev/{d}"))
            .collect(),
        cgroup: None,
        capabilities: vec![],
        no_new_privs: true,
        seccomp: SeccompInfo {
            mode: "filter",
            profile_digest: Some(profile_digest.to_owned()),
            default_action: "errno EPERM",
        },
        landlock: LandlockInfo {
            kernel_abi: landlock_abi,
            requested_abi: crate::confine::LANDLOCK_ABI as i32,
            status: "none".into(),
        },
        network: "none (loopback only)",
        net: None,
        launch_us: 0,
        degraded: degraded.iter().map(|p| p.as_str()).collect(),
        measurement: None,
        image_name: plan.image_name.clone(),
        image_manifest_digest: plan.image_manifest_digest.clone(),
        user: plan.user.as_ref().map(|u| format!("{}:{}", u.uid, u.gid)),
    }
}

impl Running {
    /// The workload's pid in the host's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Store `record` (a JSON document describing the environment) in its name lock file, where
    /// `warren ps` and `warren inspect` read it while the environment lives.
    pub fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        self._name.write_record(record)
    }

    /// Send `signal` to the workload (through its pidfd, immune to pid reuse).
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        pidfd_send_signal(&self.pidfd, signal).map_err(Into::into)
    }

    /// Wait for the workload to exit, forwarding HUP, INT, QUIT, USR1, USR2 and TERM to it. A
    /// second INT or TERM kills it (pid 1 of a namespace ignores signals it has no handler for).
    /// Then kill anything left in the environment and release its resources.
    pub fn wait(mut self) -> Result<ExitState, LaunchError> {
        let mut terminations = 0;
        loop {
            let mut fds = vec![PollFd::new(&self.pidfd, PollFlags::IN)];
            if let Some(s) = &self.signals {
                fds.push(PollFd::new(s, PollFlags::IN));
            }
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(parent_err(Step::Exec, "wait for the environment")(e.into())),
            }
            let exited = fds[0].revents().contains(PollFlags::IN);
            let signalled = fds
                .get(1)
                .is_some_and(|f| f.revents().contains(PollFlags::IN));
            drop(fds);
            if signalled {
                if let Some(s) = &self.signals {
                    while let Ok(Some(sig)) = warren_sys::read_signal(s) {
                        if sig == 2 || sig == 15 {
                            terminations += 1;
                        }
                        let sig = if terminations > 1 {
                            Signal::KILL
                        } else {
                            signal_from(sig)
                        };
                        let _ = pidfd_send_signal(&self.pidfd, sig);
                    }
                }
            }
            if exited {
                break;
            }
        }
        let status = waitid(WaitId::PidFd(self.pidfd.as_fd()), WaitIdOptions::EXITED)
            .map_err(|e| parent_err(Step::Exec, "collect the exit status")(e.into()))?;
        self.reaped = true;
        let (code, signal) = match status {
            Some(st) => match (st.exit_status(), st.terminating_signal()) {
                (Some(c), _) => (c, None),
                (None, Some(s)) => (128 + s, Some(s)),
                _ => (125, None),
            },
            None => (125, None),
        };
        let oom_killed = self
            .cgroup
            .as_ref()
            .and_then(|c| c.oom_kills())
            .is_some_and(|n| n > 0);
        if let Some(cg) = self.cgroup.take() {
            cg.destroy()?;
        }
        Ok(ExitState {
            code,
            signal,
            oom_killed,
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

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = pidfd_send_signal(&self.pidfd, Signal::KILL);
            let _ = waitid(WaitId::PidFd(self.pidfd.as_fd()), WaitIdOptions::EXITED);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.destroy();
        }
        if self.signals.is_some() {
            // Undo the block of forwarded signals so the caller behaves normally again.
            let _ = warren_sys::set_signal_mask(&self.old_mask);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seccomp_cache_round_trips_and_rejects_damage() {
        let profile = Profile::default_profile().unwrap();
        let program = profile.compile().unwrap();
        let bytes = encode_cached(&profile.digest(), &program);
        let (digest, back) = decode_cached(&bytes).unwrap();
        assert_eq!(digest, profile.digest());
        assert_eq!(back.len(), program.len());
        for (a, b) in back.iter().zip(&program) {
            assert_eq!((a.code, a.jt, a.jf, a.k), (b.code, b.jt, b.jf, b.k));
        }
        // Truncated, empty, or with a bad digest line: rebuilt, never trusted.
        assert!(decode_cached(&bytes[..bytes.len() - 3]).is_none());
        assert!(decode_cached(b"").is_none());
        assert!(decode_cached(&bytes[..72]).is_none());
        let mut bad = bytes.clone();
        bad[0] = b'x';
        assert!(decode_cached(&bad).is_none());
    }

    #[test]
    fn the_seccomp_program_is_cached_per_binary() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let (d1, p1) = seccomp_program(&state).unwrap();
        let cached: Vec<_> = std::fs::read_dir(tmp.path().join("cache"))
            .unwrap()
            .collect();
        assert_eq!(cached.len(), 1, "one cache entry for this binary");
        let (d2, p2) = seccomp_program(&state).unwrap();
        assert_eq!(d1, d2);
        assert_eq!(p1.len(), p2.len());
        // A damaged entry is replaced by a good one.
        let entry = cached[0].as_ref().unwrap().path();
        std::fs::write(&entry, b"garbage").unwrap();
        let (d3, _) = seccomp_program(&state).unwrap();
        assert_eq!(d3, d1);
        assert!(decode_cached(&std::fs::read(&entry).unwrap()).is_some());
    }
}
