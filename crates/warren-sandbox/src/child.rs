//! The child side of a launch: everything between `clone3` and `execve`, in order.
//!
//! This runs as pid 1 of the new pid namespace, in a copy of the single-threaded launcher. Each
//! step is one entry of [`Step`]; what the parent must learn goes over the report pipe as typed
//! [`Report`]s, and a failure is reported as [`Report::Error`] before the child exits. The report
//! pipe is close-on-exec, so a successful `execve` closes it: the parent reads end-of-file after
//! [`Report::Exec`].

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{Resource, Rlimit as RustixRlimit, Signal};
use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};

use crate::confine::{self, LandlockOutcome};
use crate::plan::{LaunchPlan, Protection};
use crate::policy::{self, Rlimit};
use crate::report::Report;
use crate::rootfs::{self, StepResult};
use crate::step::Step;

/// What the child needs, prepared by the parent before the fork.
pub(crate) struct ChildContext<'a> {
    pub plan: &'a LaunchPlan,
    /// The launcher's CPU affinity before the fork, restored before the exec: the parent
    /// keeps the child off its own CPU during the setup (`launch::spread`).
    pub affinity: Option<rustix::thread::CpuSet>,
    pub staging: PathBuf,
    pub go: OwnedFd,
    pub mailbox: Option<OwnedFd>,
    pub report: OwnedFd,
    pub seccomp: Option<&'a warren_seccomp::Program>,
    /// For a notifying seccomp program: the socket its listener goes to the parent over.
    pub listener_sock: Option<OwnedFd>,
    pub attach: Option<&'a warren_cgroup::AttachHandles>,
    pub old_mask: warren_sys::SignalSet,
    pub fault: Option<Step>,
    pub env: Vec<(String, String)>,
    pub net: Option<crate::net::Inside>,
    /// For an image or rootfs root: the detached mount of the root (idmapped for an image; see
    /// `launch`).
    pub image_tree: Option<OwnedFd>,
    /// The cgroup filesystems of the environment's view of its own cgroup (`/sys/fs/cgroup`).
    pub cgroup_view: Vec<warren_cgroup::ViewMount>,
    /// The detached mounts of `plan.mounts`, in order (idmapped by the parent).
    pub mount_trees: Vec<BorrowedFd<'a>>,
    /// With `-t`: the child's end of the socket the pty's master is sent over.
    pub pty: Option<OwnedFd>,
    /// The generated `/etc` files to bind (`crate::etcfiles::wanted`), written by the child.
    pub etc_files: Vec<(usize, String)>,
}

/// Install `prog`. A notifying program is installed with a listener, which goes to the parent
/// over `listener_sock` and is closed here at once: the workload never holds it, so it cannot
/// answer (and so allow) its own refused calls.
fn install_seccomp(
    prog: &warren_seccomp::Program,
    listener_sock: Option<OwnedFd>,
) -> StepResult<()> {
    if !prog.notifying() {
        return prog.install().map_err(|e| {
            (
                Step::Seccomp,
                "install the seccomp filter".to_owned(),
                std::io::Error::other(e.to_string()),
            )
        });
    }
    let sock = listener_sock.ok_or_else(|| {
        (
            Step::Seccomp,
            "install the seccomp filter".to_owned(),
            std::io::Error::other("no socket to pass its listener over"),
        )
    })?;
    let listener = warren_sys::seccomp_install_listener(&prog.bytes()).map_err(|e| {
        (
            Step::Seccomp,
            "install the seccomp filter with a listener".to_owned(),
            e,
        )
    })?;
    crate::refusals::send_listener(&sock, &listener).map_err(|e| {
        (
            Step::Seccomp,
            "pass the seccomp listener to the launcher".to_owned(),
            e,
        )
    })
}

/// Run the child side and exec; never returns.
pub(crate) fn run(mut ctx: ChildContext<'_>) -> ! {
    let mut report = std::fs::File::from(ctx.report.try_clone().expect("dup of the report pipe"));
    match setup(&mut ctx, &mut report) {
        Ok(never) => match never {},
        Err((step, what, err)) => {
            let errno = err.raw_os_error().unwrap_or(0);
            Report::Error {
                step,
                errno,
                message: format!("{what}: {err}"),
            }
            .send(&mut report);
            std::process::exit(if step == Step::Exec {
                exec_status(errno)
            } else {
                125
            });
        }
    }
}

/// The exit status for a failed `execve`, as shells and Docker use them.
pub(crate) fn exec_status(errno: i32) -> i32 {
    match errno {
        2 | 20 => 127, // ENOENT, ENOTDIR: not found
        _ => 126,      // EACCES, ENOEXEC, EISDIR, ETXTBSY, EPERM...: found but not executable
    }
}

fn fail(step: Step, what: &str) -> (Step, String, std::io::Error) {
    (
        step,
        what.to_owned(),
        std::io::Error::other("injected fault"),
    )
}

fn setup(
    ctx: &mut ChildContext<'_>,
    report: &mut std::fs::File,
) -> StepResult<std::convert::Infallible> {
    let fault = |step: Step| -> StepResult {
        if ctx.fault == Some(step) {
            Err(fail(step, "fault injection"))
        } else {
            Ok(())
        }
    };
    let rx = |step: Step, what: &str, r: rustix::io::Result<()>| -> StepResult {
        r.map_err(|e| (step, what.to_owned(), e.into()))
    };
    let io = |step: Step, what: &str, r: std::io::Result<()>| -> StepResult {
        r.map_err(|e| (step, what.to_owned(), e))
    };

    // A workload starts with no signal blocked and every disposition at its default, whatever
    // the launcher inherited (a kernel daemon blocks SIGINT and SIGTERM for its signalfd; a
    // shell may have ignored SIGINT or SIGHUP).
    let _ = &ctx.old_mask;
    warren_sys::set_signal_mask(&warren_sys::SignalSet::empty()).ok();
    warren_sys::reset_signal_dispositions();

    // Steps that need no id map (the capabilities of a new user namespace's creator suffice)
    // run while the parent writes the maps, instead of after: the hostname and the loopback
    // interface, whose bringing up (IPv6 addresses and routes of `lo`) is one of the costlier
    // steps of a launch.
    rx(
        Step::Hostname,
        "sethostname",
        rustix::system::sethostname(ctx.plan.hostname().as_bytes()),
    )?;
    fault(Step::Hostname)?;
    io(
        Step::Loopback,
        "bring lo up",
        warren_sys::interface_up(c"lo"),
    )?;
    // Ports below 1024 need no capability in the environment's own network namespace (as
    // Docker sets it): `/proc/sys/net` is the writer's network namespace, which is ours.
    io(
        Step::Loopback,
        "set net.ipv4.ip_unprivileged_port_start to 0",
        std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"),
    )?;
    fault(Step::Loopback)?;

    // Wait until the parent has written our uid/gid maps.
    let mut byte = [0u8; 1];
    match rustix::io::read(&ctx.go, &mut byte) {
        Ok(1) => {}
        _ => std::process::exit(125), // the parent is gone: nothing to report to
    }
    fault(Step::WaitParent)?;

    // Join the cgroup ourselves (v1: write 0 to each `tasks` file the parent opened; v2: clone3
    // already put us there). Moving oneself needs no host-wide lock, unlike moving another pid.
    if let Some(attach) = ctx.attach {
        io(Step::CgroupAttach, "join the cgroup", attach.join_self())?;
    }
    fault(Step::CgroupAttach)?;

    // Open the root's host files while our filesystem uid is still the launcher's: the new root
    // user may lack search permission on their host directories.
    let tool_path = ctx.plan.client_tool.as_deref();
    let mut sources = rootfs::open_sources(&ctx.plan.root, tool_path)?;
    let tool = if tool_path.is_some() {
        sources.pop()
    } else {
        None
    };
    if let Some(tree) = ctx.image_tree.take() {
        sources.insert(0, tree);
    }

    // Become root of the new user namespace: uid/gid 0 inside, the range's base outside.
    // Supplementary groups inherited from the host (root's among them) are dropped first.
    rx(
        Step::SetIds,
        "drop supplementary groups",
        set_thread_groups(&[]),
    )?;
    rx(
        Step::SetIds,
        "setresgid 0",
        set_thread_res_gid(
            rustix::process::Gid::ROOT,
            rustix::process::Gid::ROOT,
            rustix::process::Gid::ROOT,
        ),
    )?;
    rx(
        Step::SetIds,
        "setresuid 0",
        set_thread_res_uid(
            rustix::process::Uid::ROOT,
            rustix::process::Uid::ROOT,
            rustix::process::Uid::ROOT,
        ),
    )?;
    fault(Step::SetIds)?;

    // Die with the launcher. Set after the id change, which clears it; then make sure the
    // parent did not die in between (its end of the go pipe would have hung up).
    rx(
        Step::ParentDeath,
        "set parent-death signal",
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL)),
    )?;
    let mut fds = [PollFd::new(&ctx.go, PollFlags::IN)];
    let _ = poll(
        &mut fds,
        Some(&rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    );
    if fds[0].revents().contains(PollFlags::HUP) {
        std::process::exit(125);
    }
    fault(Step::ParentDeath)?;

    io(
        Step::CgroupNs,
        "unshare the cgroup namespace",
        warren_sys::unshare_cgroup_namespace(),
    )?;
    fault(Step::CgroupNs)?;
    if let Some(inside) = &ctx.net {
        let t = std::time::Instant::now();
        io(
            Step::NetConfig,
            "configure eth0",
            crate::net::configure_inside(inside),
        )?;
        Report::NetConfig {
            micros: t.elapsed().as_micros() as u64,
        }
        .send(report);
        fault(Step::NetConfig)?;
    }

    rootfs::enter_root(
        &ctx.plan.root,
        &sources,
        tool.as_ref(),
        rootfs::ExtraMounts {
            volumes: &ctx.plan.mounts,
            trees: &ctx.mount_trees,
            etc_files: &ctx.etc_files,
            cgroup_view: &ctx.cgroup_view,
            writable_root: ctx.plan.writable_root,
            tty: ctx.plan.tty,
        },
        &ctx.staging,
        ctx.plan.tmpfs_size,
        ctx.fault,
    )?;
    // Nothing of the host is reachable through these any more; close them so that only the
    // launcher's high-numbered descriptors remain open (see `install_inherited`).
    drop(sources);
    drop(tool);
    if let Some(dir) = &ctx.plan.workdir {
        io(
            Step::PivotRoot,
            &format!("change to the working directory {}", dir.display()),
            std::env::set_current_dir(dir),
        )?;
    }
    fault(Step::PivotRoot)?;

    set_rlimits(ctx.plan)?;
    // The workload runs on every CPU the launcher could: undo the parent's setup-time spread.
    if let Some(mask) = &ctx.affinity {
        rx(
            Step::Rlimits,
            "restore the CPU affinity",
            rustix::thread::sched_setaffinity(None, mask),
        )?;
    }
    fault(Step::Rlimits)?;

    // Descriptor hygiene: 0, 1 and 2 cross into the workload, and the mailbox as 3 when there is
    // one; nothing else. Everything above becomes close-on-exec (the report pipe already is,
    // and closes at exec).
    let first_closed = match ctx.mailbox.take() {
        Some(mailbox) => {
            io(
                Step::Fds,
                "install the mailbox as descriptor 3",
                warren_sys::install_inherited(mailbox, 3),
            )?;
            4
        }
        None => 3,
    };
    io(
        Step::Fds,
        "mark descriptors close-on-exec",
        warren_sys::close_range_cloexec(first_closed),
    )?;
    fault(Step::Fds)?;

    // A new session: no controlling terminal, so TIOCSTI cannot reach the launcher's terminal.
    rx(
        Step::Setsid,
        "setsid",
        rustix::process::setsid().map(|_| ()),
    )?;
    if let Some(sock) = ctx.pty.take() {
        crate::pty::attach(&sock, ctx.plan.user.as_ref().map(|u| (u.uid, u.gid)))?;
    }
    fault(Step::Setsid)?;

    let outcome =
        confine::landlock(&ctx.plan.mounts, ctx.plan.writable_root.is_some()).map_err(|e| {
            (
                Step::Landlock,
                "restrict with Landlock".to_owned(),
                std::io::Error::other(e.to_string()),
            )
        })?;
    if outcome != LandlockOutcome::Full && !ctx.plan.allow_missing.contains(&Protection::Landlock) {
        let err = std::io::Error::from_raw_os_error(95); // EOPNOTSUPP
        return Err((
            Step::Landlock,
            format!(
                "landlock could only be enforced {}; refusing (allow with --allow-missing landlock)",
                outcome.as_str()
            ),
            err,
        ));
    }
    Report::Landlock {
        status: outcome.as_str().to_owned(),
    }
    .send(report);
    fault(Step::Landlock)?;

    io(
        Step::Capabilities,
        "drop capabilities",
        confine::drop_capabilities(ctx.plan.user.as_ref(), &ctx.plan.capabilities),
    )?;
    fault(Step::Capabilities)?;
    rx(
        Step::NoNewPrivs,
        "set no_new_privs",
        rustix::thread::set_no_new_privs(true),
    )?;
    fault(Step::NoNewPrivs)?;

    if let Some(prog) = ctx.seccomp {
        install_seccomp(prog, ctx.listener_sock.take())?;
    }
    Report::Seccomp {
        installed: ctx.seccomp.is_some(),
    }
    .send(report);
    fault(Step::Seccomp)?;

    // Wait until the launcher has recorded the launch in the event log (the second byte on
    // the go pipe). End-of-file means it failed and reports the error itself.
    let mut byte = [0u8; 1];
    match rustix::io::read(&ctx.go, &mut byte) {
        Ok(1) => {}
        _ => std::process::exit(125),
    }

    fault(Step::Exec)?;
    let argv = &ctx.plan.argv;
    let adopt = if argv.len() > crate::plan::INIT_PREFIX.len()
        && argv
            .iter()
            .zip(crate::plan::INIT_PREFIX)
            .all(|(a, b)| a == b)
    {
        start_under_init(&argv[crate::plan::INIT_PREFIX.len()..], &ctx.env)
    } else {
        None
    };
    Report::Exec {}.send(report);
    let mut exec = std::process::Command::new(&argv[0]);
    exec.args(&argv[1..])
        .env_clear()
        .envs(ctx.env.iter().map(|(k, v)| (k, v)));
    if let Some(pid) = adopt {
        // The init's own environment only: it starts nothing when it adopts.
        exec.env(crate::plan::INIT_ADOPT_ENV, pid.to_string());
    }
    let err = exec.exec();
    Err((Step::Exec, format!("execute {:?}", argv[0]), err))
}

/// Under the init: start the command now, as this process's child (pid 2), before this process
/// (pid 1) executes `warren-msg init`, which finds it running and adopts it (forwards signals to
/// it, reaps, exits as it). The command then does not wait for the init's own start-up (an
/// exec and a program's start, about 0.4 ms here).
///
/// The command inherits this process's state: no signal blocked, every disposition at its
/// default (see `setup`). Then every signal is blocked in pid 1, across its exec, so that what
/// arrives before the init's signalfd waits for it (the launcher forwards nothing before this
/// exec: it is still reading the launch's reports). If the command cannot be started here,
/// nothing is started: the init starts it, as it does without this, fails the same way and
/// exits with 127 or 126, saying why. The init is told the command's pid in
/// [`crate::plan::INIT_ADOPT_ENV`] (its own environment only).
fn start_under_init(command: &[String], env: &[(String, String)]) -> Option<u32> {
    let started = start_command(command, env);
    let all: Vec<i32> = (1..=31).filter(|s| *s != 9 && *s != 19).collect();
    if let Ok(set) = warren_sys::SignalSet::of(&all) {
        let _ = warren_sys::block_signals(&set);
    }
    started
}

/// [`start_under_init`]'s start of the command: its pid, if it could be started.
fn start_command(command: &[String], env: &[(String, String)]) -> Option<u32> {
    // A name without `/` is looked up here, in the environment's `PATH` as `execvp` does: the
    // standard library would otherwise fall back from `posix_spawn` to a copy of this process.
    let program = if command[0].contains('/') {
        std::path::PathBuf::from(&command[0])
    } else {
        let found = crate::plan::search_path(env)
            .split(':')
            .filter(|d| !d.is_empty())
            .find_map(|d| {
                use std::os::unix::fs::PermissionsExt as _;
                let p = std::path::Path::new(d).join(&command[0]);
                let m = std::fs::metadata(&p).ok()?;
                (m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
            });
        // Not found: the init says so and exits 127.
        found?
    };
    // No pre-exec hook and a path: the standard library starts it with `posix_spawn` (a
    // `vfork`), not with a copy of this process's memory.
    let started = std::process::Command::new(program)
        .arg0(&command[0])
        .args(&command[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn();
    // The child is the init's to wait for, after the exec.
    started.ok().map(|c| c.id())
}

fn set_rlimits(plan: &LaunchPlan) -> StepResult {
    let pids = plan.limits.pids.unwrap_or(LaunchPlan::DEFAULT_PIDS);
    let table = policy::RLIMITS
        .iter()
        .map(|(r, s, h, _)| (*r, *s, *h))
        // One above the cgroup's pids.max: the cgroup refuses first, and counts it in
        // `pids.events`, so `warren run` can say the limit was hit; the rlimit stays the
        // backstop where no pids cgroup applies.
        .chain([(Rlimit::NProc, pids + 1, pids + 1)]);
    for (r, soft, hard) in table {
        let res = match r {
            Rlimit::Core => Resource::Core,
            Rlimit::NoFile => Resource::Nofile,
            Rlimit::RtPrio => Resource::Rtprio,
            Rlimit::Nice => Resource::Nice,
            Rlimit::MemLock => Resource::Memlock,
            Rlimit::MsgQueue => Resource::Msgqueue,
            Rlimit::NProc => Resource::Nproc,
        };
        // Never raise a hard limit: that needs CAP_SYS_RESOURCE in the host namespace.
        let cur = rustix::process::getrlimit(res);
        let cap = |v: u64| cur.maximum.map_or(v, |m| v.min(m));
        let new = RustixRlimit {
            current: Some(cap(soft.min(hard))),
            maximum: Some(cap(hard)),
        };
        rustix::process::setrlimit(res, new)
            .map_err(|e| (Step::Rlimits, format!("set {r:?} limit"), e.into()))?;
    }
    Ok(())
}
