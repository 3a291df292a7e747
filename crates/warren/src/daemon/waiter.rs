//! The waiter: the launch helper's process that is the parent of every launcher the factory
//! forks (`helper.rs`) and of every environment a launcher hands it
//! (`warren_sandbox::handoff`), so that a launcher need not stay for as long as its
//! environment runs.
//!
//! One loop over an `epoll(7)` set: `SIGCHLD` (a signalfd), the hand-off socket the
//! launchers share, the daemon's notice socket (for its hang-up), and per environment its
//! seccomp listener, its log pipe and its kernel connection. A wake-up costs what is ready, not
//! what is held: each environment's descriptors stay registered (level-triggered), and after
//! serving its kernel connection, the waiter registers that environment's current descriptors
//! again (a connection that re-attaches changes descriptor, possibly under the same number).
//! Every child is reaped with
//! `wait(2)`: a launcher's (or a stray's) status goes to the daemon as `exited`; an
//! environment's ends its waiting, which does what its launcher did at its end (collects the
//! status, removes the cgroup, copies the rest of the log, writes why it ended, releases the
//! name and the uid range, closes the kernel connection, and leaves the status in
//! `<state>/exits/NAME` when the kernel that started it has gone) and tells the daemon.
//!
//! The waiter has no parent-death signal: when the kernel ends it keeps waiting for its
//! environments (their connections re-attach to the next kernel, as launchers' do), and ends
//! once the kernel has gone and it has no child left.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use std::collections::HashMap;

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{PollFd, PollFlags, poll};
use warren_sandbox::Sidework as _;
use warren_sandbox::handoff::HandOff;

use super::helper::Notice;
use crate::control::Attachment;
use crate::logcap::LogCap;

/// What a launcher sends along with its environment (`cmd/run.rs`, `hand_off`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Sent {
    /// The launcher's pid (the daemon knows the environment by it until told otherwise).
    pub launcher: i32,
    /// The environment's name and its state directory.
    pub name: String,
    pub state_dir: PathBuf,
    /// The log copy's data, when the launcher had one (its two descriptors come first).
    pub log: Option<serde_json::Value>,
    /// The kernel connection's data (its two descriptors next).
    pub attach: Option<serde_json::Value>,
    /// The kernel that started it went away meanwhile (its connection was re-attaching, or
    /// re-attached to another kernel): its status goes to `<state>/exits/NAME` at its end.
    #[serde(default)]
    pub outlived: bool,
    /// For the lines that say why it ended.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cgroup_parent: Option<String>,
    /// Descriptors to keep open until the environment ends (the image's lock), last.
    #[serde(default)]
    pub held: usize,
}

/// One environment the waiter waits for.
struct Handed {
    /// Its key in [`Waiter::envs`] and in its descriptors' epoll data ([`token`]).
    id: u64,
    name: String,
    state_dir: PathBuf,
    /// The launcher that handed it over.
    launcher: i32,
    sup: Option<warren_sandbox::Supervised>,
    log: Option<LogCap>,
    attach: Option<Attachment>,
    /// Whether the seccomp listener is still worth polling (it hangs up as the environment
    /// ends).
    listening: bool,
    memory: Option<u64>,
    pids: Option<u64>,
    cgroup_parent: Option<String>,
    /// Held until the environment ends (the image's lock).
    _held: Vec<OwnedFd>,
    /// Its launcher said the kernel that started it went away ([`Sent::outlived`]).
    outlived: bool,
}

impl Handed {
    /// A line of Warren's own about this environment: into its log, as its launcher's standard
    /// error would have put it.
    fn say(&mut self, line: &str) {
        match self.log.as_mut() {
            Some(l) => l.line(line),
            None => eprintln!("{line}"),
        }
    }

    fn serve_refusals(&mut self) {
        let mut lines = Vec::new();
        if let Some(sup) = self.sup.as_mut() {
            sup.serve_refusals(&mut |l| lines.push(format!("warren: {l}")));
        }
        for l in lines {
            self.say(&l);
        }
    }

    /// The environment's first process ended (`wait` collected `status`): finish as its
    /// launcher would have, and return the status its launcher would have ended with.
    fn finish(mut self, exit_status: Option<i32>, signal: Option<i32>) -> i32 {
        let Some(mut sup) = self.sup.take() else {
            return 125;
        };
        let mut lines = Vec::new();
        sup.flush_refusals(&mut |l| lines.push(format!("warren: {l}")));
        let exit = sup.finish_reaped(exit_status, signal);
        if let Some(l) = self.log.as_mut() {
            l.drain();
        }
        for l in lines {
            self.say(&l);
        }
        let code = match exit {
            Ok(x) => {
                for why in crate::cmd::run::end_reasons(
                    &x,
                    self.memory,
                    self.pids,
                    self.cgroup_parent.as_deref(),
                ) {
                    let line = format!("warren: {}: {why}", self.name);
                    self.say(&line);
                }
                x.code
            }
            Err(e) => {
                let line = format!("warren: error: {e}");
                self.say(&line);
                125
            }
        };
        if self.outlived
            || self
                .attach
                .as_ref()
                .is_some_and(|a| a.outlived_its_kernel())
        {
            if let Err(e) = crate::control::record_exit(&self.state_dir, &self.name, code) {
                let line =
                    format!("warren: warning: cannot leave the exit status for the kernel: {e:#}");
                self.say(&line);
            }
        }
        // The environment has ended: closing the kernel connection tells the kernel so.
        drop(self.attach.take());
        code
    }
}

struct Waiter {
    /// The daemon's notice socket, until it hangs up.
    notices: Option<OwnedFd>,
    /// The launchers' hand-off socket, until every holder has gone.
    handoffs: Option<OwnedFd>,
    sigchld: OwnedFd,
    /// Every descriptor the waiter waits on ([`token`]).
    epoll: OwnedFd,
    /// The environments it holds, by id, and their ids by pid.
    envs: HashMap<u64, Handed>,
    by_pid: HashMap<i32, u64>,
    next_id: u64,
    /// Environments a descriptor of which could not be registered (`ENOSPC` past
    /// `max_user_watches`, `ENOMEM`): tried again every turn, since an environment is served,
    /// and so registered again, only through its registered descriptors.
    unwatched: std::collections::HashSet<u64>,
    /// Children reaped before anyone said what they were: launchers, strays, and environments
    /// that ended before their hand-off arrived (whose status is found here then). Kept for
    /// [`UNKNOWN_KEPT`].
    unknown: std::collections::HashMap<i32, (Option<i32>, Option<i32>, std::time::Instant)>,
    /// Launchers that handed an environment over and have not been reaped yet.
    launchers: std::collections::HashSet<i32>,
    /// An environment's end waiting for its launcher's (by launcher): the daemon hears that
    /// an environment ended only once its launcher is gone too, as when the launcher waited.
    deferred: std::collections::HashMap<i32, Notice>,
}

/// How long the status of a child reaped before its hand-off is kept.
const UNKNOWN_KEPT: std::time::Duration = std::time::Duration::from_secs(10);

/// The waiter's loop (never returns).
pub(super) fn serve(notices: OwnedFd, handoffs: OwnedFd) -> ! {
    let _ = warren_sys::set_cmdline(&["warren", "launch-waiter"]);
    // Each environment holds nine descriptors here (at most: pidfd, two locks, the seccomp
    // listener, the log and its pipe, the kernel connection and its kept end, the image's
    // lock): as many as root may have, else as many as the hard limit allows.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let most = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let raised = rustix::process::Rlimit {
        current: Some(most),
        maximum: Some(most),
    };
    if rustix::process::setrlimit(rustix::process::Resource::Nofile, raised).is_err() {
        let hard = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, hard);
    }
    // The terminal's and a service manager's stop signals are for the kernel: the waiter ends
    // when what it waits for has ended (each is stopped through the kernel), so they stay
    // blocked here, and a SIGKILL is what ends it early (its environments with it).
    let _ = warren_sys::SignalSet::of(&[1, 2, 15]).and_then(|set| warren_sys::block_signals(&set));
    let sigchld = match warren_sys::SignalSet::of(&[rustix::process::Signal::CHILD.as_raw()])
        .and_then(|set| warren_sys::block_signals(&set).and_then(|_| warren_sys::signalfd(&set)))
    {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("warren: the launch waiter cannot watch its children: {e}");
            std::process::exit(1)
        }
    };
    let watched = epoll::create(CreateFlags::CLOEXEC).and_then(|ep| {
        for (fd, data) in [
            (&sigchld, SIGCHLD),
            (&handoffs, HANDOFFS),
            (&notices, NOTICES),
        ] {
            epoll::add(&ep, fd, EventData::new_u64(data), EventFlags::IN)?;
        }
        Ok(ep)
    });
    let epoll = match watched {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("warren: the launch waiter cannot watch its descriptors: {e}");
            std::process::exit(1)
        }
    };
    let mut w = Waiter {
        notices: Some(notices),
        handoffs: Some(handoffs),
        sigchld,
        epoll,
        envs: HashMap::new(),
        by_pid: HashMap::new(),
        next_id: 0,
        unwatched: std::collections::HashSet::new(),
        unknown: std::collections::HashMap::new(),
        launchers: std::collections::HashSet::new(),
        deferred: std::collections::HashMap::new(),
    };
    loop {
        w.turn();
        if w.notices.is_none() && w.envs.is_empty() && !has_children() {
            std::process::exit(0);
        }
    }
}

/// Whether this process has a child (running or waiting to be reaped).
fn has_children() -> bool {
    !matches!(
        rustix::process::waitid(
            rustix::process::WaitId::All,
            rustix::process::WaitIdOptions::EXITED
                | rustix::process::WaitIdOptions::NOHANG
                | rustix::process::WaitIdOptions::NOWAIT,
        ),
        Err(rustix::io::Errno::CHILD)
    )
}

/// The epoll data of the waiter's own descriptors.
const SIGCHLD: u64 = u64::MAX;
const HANDOFFS: u64 = u64::MAX - 1;
const NOTICES: u64 = u64::MAX - 2;

/// Which of an environment's descriptors an epoll entry is (the low two bits of its data).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Refusals = 0,
    Log = 1,
    Attach = 2,
}

/// The epoll data of environment `id`'s descriptor of `kind`.
fn token(id: u64, kind: Kind) -> u64 {
    (id << 2) | kind as u64
}

/// The ready events taken per wake-up (more wait for the next one, level-triggered).
const EVENTS: usize = 256;

impl Handed {
    /// Its descriptors worth waiting on now, with their kinds.
    fn watched(&self) -> Vec<(std::os::fd::BorrowedFd<'_>, Kind)> {
        let mut v = Vec::with_capacity(3);
        if let (true, Some(fd)) = (
            self.listening,
            self.sup.as_ref().and_then(|s| s.refusal_fd()),
        ) {
            v.push((fd, Kind::Refusals));
        }
        if let Some(fd) = self.log.as_ref().and_then(|l| l.fd()) {
            v.push((fd, Kind::Log));
        }
        if let Some(fd) = self.attach.as_ref().and_then(|a| a.fd()) {
            v.push((fd, Kind::Attach));
        }
        v
    }
}

impl Waiter {
    fn turn(&mut self) {
        // A stray child (a launch that failed after its clone) is reaped at the latest here.
        let tick = rustix::time::Timespec {
            tv_sec: 2,
            tv_nsec: 0,
        };
        let mut events: Vec<Event> = Vec::with_capacity(EVENTS);
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events),
            Some(&tick),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return,
            Err(e) => {
                eprintln!("warren: the launch waiter's epoll_wait failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                return;
            }
        }
        // Hand-offs after the environments' own descriptors: a launcher's packet is queued
        // before its exit shows, and both are taken before the reaping below.
        let mut handoffs_ready = false;
        let mut notices_hup = false;
        for ev in &events {
            let (data, flags) = (ev.data.u64(), ev.flags);
            match data {
                SIGCHLD => {}
                HANDOFFS => handoffs_ready = true,
                NOTICES => notices_hup = flags.intersects(EventFlags::HUP | EventFlags::IN),
                _ => self.serve(data >> 2, data & 3, flags),
            }
        }
        if handoffs_ready {
            self.receive_handoffs();
        }
        if notices_hup {
            // The daemon never writes here: input or hang-up both mean it has gone.
            self.notices = None;
        }
        while let Ok(Some(_)) = warren_sys::read_signal(&self.sigchld) {}
        self.reap();
        let retry: Vec<u64> = self.unwatched.iter().copied().collect();
        for id in retry {
            self.watch(id);
        }
    }

    /// Serve environment `id`'s descriptor of kind `kind` (an epoll event's `flags`); after its
    /// kernel connection, register its descriptors as they are now.
    fn serve(&mut self, id: u64, kind: u64, flags: EventFlags) {
        // (An event of an environment that has ended meanwhile finds nothing.)
        let Some(e) = self.envs.get_mut(&id) else {
            return;
        };
        match kind {
            k if k == Kind::Refusals as u64 => {
                if flags.contains(EventFlags::IN) {
                    e.serve_refusals();
                } else if flags.intersects(EventFlags::HUP | EventFlags::ERR) {
                    // Hung up as the environment ends: no longer worth waiting on.
                    if let Some(fd) = e.sup.as_ref().and_then(|s| s.refusal_fd()) {
                        let _ = epoll::delete(&self.epoll, fd);
                    }
                    e.listening = false;
                }
            }
            k if k == Kind::Log as u64 => {
                if let Some(l) = e.log.as_mut() {
                    l.ready();
                }
            }
            _ => {
                if let Some(a) = e.attach.as_mut() {
                    a.ready();
                }
                // Only a kernel connection changes descriptor (a log's pipe or a listener
                // only closes, which takes it out of the set).
                self.watch(id);
            }
        }
    }

    /// Register environment `id`'s current descriptors (one already registered stays so:
    /// `EEXIST`). A descriptor closed meanwhile left the set as it closed; one that took its
    /// number is a new file, registered here. Nothing else runs between an environment's
    /// serving and this, so no other environment's descriptor can have taken a number here.
    fn watch(&mut self, id: u64) {
        let Some(e) = self.envs.get(&id) else {
            self.unwatched.remove(&id);
            return;
        };
        let mut failed = None;
        for (fd, kind) in e.watched() {
            match epoll::add(
                &self.epoll,
                fd,
                EventData::new_u64(token(id, kind)),
                EventFlags::IN,
            ) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(err) => failed = Some(err),
            }
        }
        match failed {
            // Said once, tried again every turn (at least every two seconds).
            Some(err) => {
                if self.unwatched.insert(id) {
                    eprintln!(
                        "warren: {}: the launch waiter cannot watch a descriptor (trying \
                         again): {err}",
                        e.name
                    );
                }
            }
            None => {
                self.unwatched.remove(&id);
            }
        }
    }

    /// Take environment `pid` out of the set, its descriptors out of the epoll set (before
    /// they close: a duplicate elsewhere would keep them registered).
    fn release(&mut self, pid: i32) -> Option<Handed> {
        let id = self.by_pid.remove(&pid)?;
        self.unwatched.remove(&id);
        let e = self.envs.remove(&id)?;
        for (fd, _) in e.watched() {
            let _ = epoll::delete(&self.epoll, fd);
        }
        Some(e)
    }

    /// Take every hand-off waiting on the socket.
    fn receive_handoffs(&mut self) {
        loop {
            let Some(sock) = &self.handoffs else {
                return;
            };
            let mut fds = [PollFd::new(sock, PollFlags::IN)];
            let zero = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let readable = match poll(&mut fds, Some(&zero)) {
                Ok(1) => fds[0].revents().contains(PollFlags::IN),
                _ => return,
            };
            if !readable {
                // Hung up: the factory and every launcher have gone.
                self.handoffs = None;
                return;
            }
            match HandOff::receive(sock.as_fd()) {
                Ok(Some(h)) => self.take(h),
                Ok(None) => {
                    self.handoffs = None;
                    return;
                }
                Err(e) => eprintln!("warren: the launch waiter dropped a hand-off: {e}"),
            }
        }
    }

    /// Take one environment over.
    fn take(&mut self, mut h: HandOff) {
        let pid = h.pid();
        let (extra, fds) = h.take_extra();
        let sent: Sent = match serde_json::from_value(extra) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warren: a hand-off without its launcher's data ({e}); ending pid {pid}");
                drop(h.take_over());
                return;
            }
        };
        // Its launcher exits right after sending; unless it has been reaped already, its
        // environment's end is reported after its own (`ended`).
        if !self.unknown.contains_key(&sent.launcher) {
            self.launchers.insert(sent.launcher);
        }
        let pipe = sent.log.as_ref().is_some_and(|d| d["pipe"] == true);
        let want = sent.log.as_ref().map_or(0, |_| 1 + usize::from(pipe))
            + 2 * usize::from(sent.attach.is_some())
            + sent.held;
        if fds.len() != want {
            eprintln!(
                "warren: {}: a hand-off with {} descriptors of the launcher's where {want} were \
                 due; ending it",
                sent.name,
                fds.len()
            );
            drop(h.take_over());
            return;
        }
        let mut fds = fds.into_iter();
        let log = sent.log.as_ref().map(|d| {
            let file = fds.next().expect("counted");
            let reader = if pipe { fds.next() } else { None };
            LogCap::from_parts(d, file, reader)
        });
        let attach = sent.attach.as_ref().map(|d| {
            let (control, kept) = (fds.next().expect("counted"), fds.next().expect("counted"));
            let file = log.as_ref().and_then(LogCap::log_file);
            Attachment::from_parts(d, control, kept, file)
        });
        let held: Vec<OwnedFd> = fds.collect();
        // An environment that ended before its hand-off arrived was reaped as an unknown child.
        let ended = self.unknown.remove(&pid);
        let taken = match ended {
            Some(_) => h.take_over_ended(),
            None => h.take_over(),
        };
        let sup = match taken {
            Ok(s) => s,
            Err(e) => {
                // It was killed and what it held released; its kernel connection closes here.
                let mut gone = Handed {
                    id: u64::MAX,
                    name: sent.name.clone(),
                    state_dir: sent.state_dir.clone(),
                    launcher: sent.launcher,
                    sup: None,
                    log,
                    attach,
                    listening: false,
                    memory: None,
                    pids: None,
                    cgroup_parent: None,
                    _held: held,
                    outlived: sent.outlived,
                };
                gone.say(&format!(
                    "warren: error: the launch waiter could not take {} over: {e}",
                    sent.name
                ));
                self.notify(Notice::Handed {
                    launcher: sent.launcher,
                    env: pid,
                });
                self.ended(sent.launcher, pid, 125);
                return;
            }
        };
        self.notify(Notice::Handed {
            launcher: sent.launcher,
            env: pid,
        });
        let id = self.next_id;
        self.next_id += 1;
        let handed = Handed {
            id,
            name: sent.name,
            state_dir: sent.state_dir,
            launcher: sent.launcher,
            listening: sup.refusal_fd().is_some(),
            sup: Some(sup),
            log,
            attach,
            memory: sent.memory,
            pids: sent.pids,
            cgroup_parent: sent.cgroup_parent,
            _held: held,
            outlived: sent.outlived,
        };
        match ended {
            Some((exit_status, signal, _)) => {
                let launcher = handed.launcher;
                let code = handed.finish(exit_status, signal);
                self.ended(launcher, pid, code);
            }
            None => {
                self.by_pid.insert(pid, handed.id);
                self.envs.insert(handed.id, handed);
                self.watch(id);
            }
        }
    }

    /// Environment `pid`, handed over by `launcher`, ended with `code`: tell the daemon, once
    /// the launcher has been reaped too.
    fn ended(&mut self, launcher: i32, pid: i32, code: i32) {
        let notice = Notice::Exited { pid, code };
        if self.launchers.contains(&launcher) {
            self.deferred.insert(launcher, notice);
        } else {
            self.notify(notice);
        }
    }

    /// Reap every child that has ended.
    fn reap(&mut self) {
        loop {
            let (pid, status) = match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => (pid.as_raw_nonzero().get(), status),
                Ok(None) => return,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            };
            let (exit_status, signal) = (status.exit_status(), status.terminating_signal());
            match self.release(pid) {
                Some(env) => {
                    let launcher = env.launcher;
                    let code = env.finish(exit_status, signal);
                    self.ended(launcher, pid, code);
                }
                None => {
                    let code = exit_status
                        .or_else(|| signal.map(|s| 128 + s))
                        .unwrap_or(255);
                    let now = std::time::Instant::now();
                    self.unknown
                        .retain(|_, (_, _, at)| now.duration_since(*at) < UNKNOWN_KEPT);
                    self.unknown.insert(pid, (exit_status, signal, now));
                    // A launcher's hand-off is queued before its exit: take it first, so that
                    // the daemon hears `handed` before this `exited` (which would otherwise be
                    // taken as its environment's end, with the launcher's status). If `pid` is
                    // the environment of a hand-off taken here, its end has been reported.
                    self.receive_handoffs();
                    if self.unknown.contains_key(&pid) {
                        self.notify(Notice::Exited { pid, code });
                    }
                    // A launcher whose environment already ended: now that end.
                    self.launchers.remove(&pid);
                    if let Some(notice) = self.deferred.remove(&pid) {
                        self.notify(notice);
                    }
                }
            }
        }
    }

    fn notify(&mut self, notice: Notice) {
        if let Some(n) = &self.notices {
            // A full buffer blocks: the daemon reads its notices every turn, and an exit it
            // missed would leave an environment it thinks runs.
            if rustix::net::send(n, &notice.to_json(), rustix::net::SendFlags::NOSIGNAL).is_err() {
                self.notices = None;
            }
        }
    }
}
