//! `warren-msg init -- CMD [ARG...]`: a minimal init for pid 1 of an environment (`warren run
//! --init`, the default for managed environments).
//!
//! A process that is pid 1 of its pid namespace gets no default action for signals it does not
//! handle, so a plain `sleep` or `sh` ignores the SIGTERM of `warren stop` and every stop waits
//! its full timeout; and orphans re-parented to pid 1 stay zombies unless pid 1 reaps them. This
//! init starts CMD as pid 2 (or adopts it: Warren's launch starts CMD just before it executes
//! the init, with every signal blocked across that exec, so that CMD does not wait for the
//! init's start-up, and names its pid in `WARREN_INIT_ADOPT`, in the init's environment only)
//! and then only:
//!
//! * forwards HUP, INT, QUIT, USR1, USR2, TERM, WINCH, CONT, ALRM, PIPE and TSTP/TTIN/TTOU to it
//!   (CMD, not pid 1, decides what they mean; SIGKILL and SIGSTOP cannot be caught and reach
//!   the whole namespace from the launcher in any case);
//! * reaps every child, its own and orphans;
//! * exits with CMD's status as soon as CMD has ended: its exit code, or 128 + the signal that
//!   killed it (pid 1 cannot re-raise a signal on itself). The launcher then tears the
//!   namespace down, which kills what CMD left behind.
//!
//! A CMD that cannot be started exits 127 (not found) or 126 (not executable), with the reason
//! on standard error, as `warren run` does without an init.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use rustix::process::{Pid, Signal, WaitOptions};

/// The signals forwarded to the workload.
const FORWARDED: [i32; 14] = [
    1,  // HUP
    2,  // INT
    3,  // QUIT
    10, // USR1
    12, // USR2
    13, // PIPE
    14, // ALRM
    15, // TERM
    18, // CONT
    20, // TSTP
    21, // TTIN
    22, // TTOU
    28, // WINCH
    23, // URG
];
/// SIGCHLD: a child changed state.
const SIGCHLD: i32 = 17;

/// Run the init; never returns.
pub fn main(argv: Vec<String>) -> ! {
    let argv = match argv.first().map(String::as_str) {
        Some("--") => &argv[1..],
        _ => &argv[..],
    };
    let Some((program, args)) = argv.split_first() else {
        eprintln!("warren-msg init: no command: usage: warren-msg init -- CMD [ARG...]");
        std::process::exit(125);
    };
    let mut all = FORWARDED.to_vec();
    all.push(SIGCHLD);
    let set = warren_sys::SignalSet::of(&all).unwrap_or_else(|e| fail("build the signal set", e));
    // Block first, then start the child (with an empty mask of its own), then read: no signal
    // or child exit can be missed between the two.
    warren_sys::block_signals(&set).unwrap_or_else(|e| fail("block signals", e));
    let sfd = warren_sys::signalfd(&set).unwrap_or_else(|e| fail("open a signalfd", e));
    let pid = match started() {
        // The launch started CMD already, just before it executed this init (every signal
        // blocked meanwhile, so none was lost): adopt it.
        Some(pid) => pid,
        None => spawn(program, args),
    };
    let mut first = true;
    loop {
        // An adopted CMD may have ended before this init blocked SIGCHLD: reap once first.
        if !std::mem::take(&mut first) {
            let mut fds = [rustix::event::PollFd::new(
                &sfd,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => fail("poll", e.into()),
            }
        }
        while let Some(sig) = warren_sys::read_signal(&sfd).unwrap_or_else(|e| fail("read", e)) {
            if sig == SIGCHLD {
                continue;
            }
            if let Some(s) = Signal::from_named_raw(sig) {
                // ESRCH: it has just ended; the reaping below sees it.
                let _ = rustix::process::kill_process(pid, s);
            }
        }
        // Reap everything that has ended; stop when the workload has.
        loop {
            match rustix::process::waitpid(None, WaitOptions::NOHANG) {
                Ok(Some((p, status))) => {
                    if p == pid {
                        let raw = std::process::ExitStatus::from_raw(status.as_raw());
                        let code = match (raw.code(), raw.signal()) {
                            (Some(c), _) => c,
                            (None, Some(s)) => 128 + s,
                            (None, None) => 125,
                        };
                        std::process::exit(code);
                    }
                }
                Ok(None) => break,
                Err(rustix::io::Errno::CHILD) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => fail("wait", e.into()),
            }
        }
    }
}

/// The variable Warren's launch sets in this init's own environment (not CMD's) to the pid of
/// CMD, which it started just before executing the init (`warren_sandbox::INIT_ADOPT_ENV`).
const ADOPT_ENV: &str = "WARREN_INIT_ADOPT";

/// The pid of the child Warren's launch started for this init to adopt: named in
/// [`ADOPT_ENV`], when this is pid 1 and that pid is its child. `None`: this init starts CMD.
fn started() -> Option<Pid> {
    let pid: i32 = std::env::var(ADOPT_ENV).ok()?.parse().ok()?;
    if rustix::process::getpid() != Pid::INIT {
        return None;
    }
    let pid = Pid::from_raw(pid)?;
    // Its child (running or ended, not yet reaped), or nothing to adopt.
    rustix::process::waitid(
        rustix::process::WaitId::Pid(pid),
        rustix::process::WaitIdOptions::EXITED
            | rustix::process::WaitIdOptions::NOHANG
            | rustix::process::WaitIdOptions::NOWAIT,
    )
    .ok()?;
    Some(pid)
}

/// Start CMD as this init's child, with an empty signal mask.
fn spawn(program: &str, args: &[String]) -> Pid {
    let mut cmd = Command::new(program);
    cmd.args(args);
    warren_sys::clear_signal_mask_on_spawn(&mut cmd);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren-msg init: cannot run {program}: {e}");
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
            std::process::exit(code);
        }
    };
    let pid = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    // The child is reaped with waitpid below, never through `child`.
    drop(child);
    pid
}

fn fail(what: &str, e: std::io::Error) -> ! {
    eprintln!("warren-msg init: {what}: {e}");
    std::process::exit(125);
}
