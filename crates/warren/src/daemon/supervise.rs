//! The daemon's supervision of managed environments: `apply`, `stop`, `remove`, `list`, the
//! launcher processes, their exits, restarts with backoff, stop escalation, and re-adoption of
//! launchers that outlived a previous daemon. Decisions come from `crate::supervisor`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Instant;

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
use serde_json::{Value, json};
use warren_spec::{Action as PlanAction, EnvName, Manifest, Observed, SpaceSpec};

use super::Daemon;
use crate::control::ControlResponse;
use crate::supervisor::{AfterExit, Managed, State, after_exit, launcher_args, provenance_args};

/// Seconds between the second SIGTERM (which makes the launcher kill its workload) and a
/// SIGKILL of the launcher itself.
const KILL_GRACE_MS: u64 = 3000;

/// What follows once a stopping launcher has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterStop {
    /// Stay stopped (`warren stop`).
    Stay,
    /// Start it again with its (new) spec (`apply` replaced it).
    Start,
    /// Forget it (`apply` removed it, or `warren rm -f`).
    Forget,
}

/// A stop in progress: the next escalation and what follows.
#[derive(Debug)]
pub(super) struct Stopping {
    next_at: u64,
    stage: u8,
    after: AfterStop,
}

/// A running launcher.
#[derive(Debug)]
pub(super) struct Runtime {
    /// Whether the launcher is our child (started by us with `Command`), whose status `waitid`
    /// collects; not when re-adopted, nor when forked by the launch helper.
    ours: bool,
    /// The pid `pidfd` is for: the launcher's, or once handed over the environment's.
    pid: i32,
    /// Forked by the launch helper: the waiter reports its end (`helper::Notice`), so its pidfd
    /// is not watched.
    via_helper: bool,
    /// `pidfd` is the environment's first process (its launcher handed it over and ended), not
    /// a launcher that forwards signals: a stop escalates to SIGKILL itself.
    direct: bool,
    /// Re-adopted (a launcher, or an environment a launch waiter holds): the status may reach
    /// `exits/NAME` a moment after the end, from the waiter of the kernel that started it
    /// (`awaiting_status`).
    late_status: bool,
    /// Such a re-adopted process has ended and its status is not in `exits/NAME` yet: the
    /// time (ms) until which the supervisor waits for it there, checking every
    /// [`LATE_STATUS_POLL_MS`] (`supervise_tick`) rather than blocking the kernel's loop; 255
    /// after it (a waiter that died leaves none).
    awaiting_status: Option<u64>,
    pidfd: OwnedFd,
    started: Instant,
    stopping: Option<Stopping>,
    /// The launcher said its environment runs (or it was re-adopted, running).
    confirmed: bool,
}

/// A control request waiting for launchers to finish.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) token: u64,
    waiting: BTreeSet<String>,
    steps: Vec<Value>,
    check: bool,
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Daemon {
    /// Persist the managed set; a failure is reported, never fatal.
    pub(super) fn save(&self) {
        match self.registry.to_bytes() {
            Ok(bytes) => self.registry_writer.save(bytes),
            Err(e) => tracing::warn!("cannot save the managed environments: {e:#}"),
        }
    }

    /// The earliest time the supervisor must act.
    pub(super) fn next_supervision_deadline(&self) -> Option<u64> {
        let stops = self
            .runtime
            .values()
            .filter_map(|r| r.stopping.as_ref().map(|s| s.next_at));
        let restarts = self
            .registry
            .envs
            .iter()
            .filter(|(n, m)| m.state == State::Restarting && !self.runtime.contains_key(*n))
            .filter_map(|(_, m)| m.restart_at);
        // A registry change left for the end of a turn that already passed: at once.
        let save = self.spawns_unsaved().then(|| self.now());
        // A status expected in `exits/NAME`: look again shortly.
        let late = self
            .runtime
            .values()
            .filter_map(|r| r.awaiting_status)
            .map(|until| until.min(self.now() + LATE_STATUS_POLL_MS));
        stops.chain(restarts).chain(save).chain(late).min()
    }

    /// Start launcher `name` (its spec is in the registry).
    pub(super) fn start(&mut self, name: &str) -> Result<(), String> {
        let Some(m) = self.registry.envs.get(name) else {
            return Err("not managed".into());
        };
        let logs = self.state_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("create {}: {e}", logs.display()))?;
        let log_path = logs.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        use std::os::unix::process::CommandExt;
        let mut args = launcher_args(name, &m.spec, &m.cgroup_placement());
        if let Some(p) = &m.provenance {
            // Options, so before `-- COMMAND`: after `run --name NAME`.
            args.splice(3..3, provenance_args(p));
        }
        // Through the launch helper (a fork, `helper`), or executed when there is none, when it
        // fails, or for a state directory that is not UTF-8 (the helper is given text).
        let helped = match (&self.helper, self.state_dir.to_str()) {
            (Some(h), Some(dir)) => {
                let mut full = vec!["--state-dir".to_owned(), dir.to_owned()];
                full.extend(args.iter().cloned());
                match h.launch(&full, log.as_fd(), err.as_fd()) {
                    Ok(pid) => Some(pid),
                    Err(e) => {
                        tracing::warn!("launch helper: {e}; executing the launcher of {name}");
                        if !matches!(e.kind(), std::io::ErrorKind::Other) {
                            // Gone (hung up, broken pipe): every later launcher is executed.
                            self.helper = None;
                        }
                        None
                    }
                }
            }
            _ => None,
        };
        let pid = match helped {
            Some(pid) => pid,
            None => {
                let child = Command::new(&self.exe)
                    .args(args)
                    .env("WARREN_STATE_DIR", &self.state_dir)
                    .stdin(Stdio::null())
                    .stdout(log)
                    .stderr(err)
                    .process_group(0)
                    .spawn()
                    .map_err(|e| format!("start the launcher: {e}"))?;
                // Its status is collected through the pidfd (`on_launcher_exit`).
                child.id() as i32
            }
        };
        let via_helper = helped.is_some();
        let pidfd = Pid::from_raw(pid)
            .ok_or("bad pid")
            .and_then(|p| pidfd_open(p, PidfdFlags::empty()).map_err(|_| "pidfd_open"))
            .map_err(str::to_owned)?;
        if !via_helper {
            self.watch_pidfd(name, &pidfd)
                .map_err(|e| format!("epoll: {e}"))?;
        }
        self.runtime.insert(
            name.to_owned(),
            Runtime {
                ours: !via_helper,
                pid,
                via_helper,
                direct: false,
                late_status: false,
                awaiting_status: None,
                pidfd,
                started: Instant::now(),
                stopping: None,
                confirmed: false,
            },
        );
        let m = self.registry.envs.get_mut(name).expect("checked above");
        m.state = State::Running;
        m.launcher_pid = Some(pid);
        m.env_pid = None;
        m.started_at_ms = Some(wall_ms());
        m.restart_at = None;
        Ok(())
    }

    /// Ask launcher `name` to stop: SIGTERM now (forwarded to the workload), a second SIGTERM
    /// after `timeout_ms` (the launcher then kills the workload), SIGKILL after that. With no
    /// timeout, the launcher kills the workload at once.
    pub(super) fn begin_stop(&mut self, name: &str, timeout_ms: u64, after: AfterStop) {
        let now = self.now();
        if let Some(rt) = self.runtime.get_mut(name) {
            if rt.direct {
                // The environment's own first process: TERM (a pid 1 with no handler for it
                // ignores it), SIGKILL after the grace; at once without one.
                let (sig, stage) = match timeout_ms {
                    0 => (Signal::KILL, 3),
                    _ => (Signal::TERM, 2),
                };
                let _ = pidfd_send_signal(&rt.pidfd, sig);
                rt.stopping = Some(Stopping {
                    next_at: match stage {
                        3 => u64::MAX,
                        _ => now + timeout_ms,
                    },
                    stage,
                    after,
                });
                return;
            }
            if timeout_ms == 0 {
                // No grace: two termination signals at once, which the launcher takes as "kill
                // the environment now" (a second INT or TERM is SIGKILL); two different ones,
                // so that they never merge into one pending signal.
                let _ = pidfd_send_signal(&rt.pidfd, Signal::INT);
                let _ = pidfd_send_signal(&rt.pidfd, Signal::TERM);
                rt.stopping = Some(Stopping {
                    next_at: now + KILL_GRACE_MS,
                    stage: 2,
                    after,
                });
                return;
            }
            let _ = pidfd_send_signal(&rt.pidfd, Signal::TERM);
            // At least a quarter second before the second SIGTERM, so that the two never merge
            // into one pending signal (the second is what makes the launcher kill and clean up).
            rt.stopping = Some(Stopping {
                next_at: now + timeout_ms.max(250),
                stage: 1,
                after,
            });
        }
    }

    /// Escalate due stops and start due restarts.
    pub(super) fn supervise_tick(&mut self) {
        self.save_children();
        self.collect_late_statuses();
        let now = self.now();
        for rt in self.runtime.values_mut() {
            if let Some(s) = rt.stopping.as_mut() {
                if s.next_at <= now {
                    match s.stage {
                        1 if !rt.direct => {
                            let _ = pidfd_send_signal(&rt.pidfd, Signal::TERM);
                            s.stage = 2;
                            s.next_at = now + KILL_GRACE_MS;
                        }
                        _ => {
                            let _ = pidfd_send_signal(&rt.pidfd, Signal::KILL);
                            s.stage = 3;
                            s.next_at = u64::MAX;
                        }
                    }
                }
            }
        }
        let due: Vec<String> = self
            .registry
            .envs
            .iter()
            .filter(|(n, m)| {
                m.state == State::Restarting
                    && m.restart_at.is_some_and(|t| t <= now)
                    && !self.runtime.contains_key(*n)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            if let Err(e) = self.start(&name) {
                tracing::warn!("restart of {name} failed: {e}");
                if self.is_restarting_child(&name) {
                    self.end_restarting_child(&name);
                    continue;
                }
                if let Some(m) = self.registry.envs.get_mut(&name) {
                    m.state = State::Failed;
                }
            } else {
                tracing::info!("restarted {name}");
            }
            self.save();
        }
    }

    /// A launcher exited (its pidfd became readable).
    pub(super) fn on_launcher_exit(&mut self, token: u64) {
        let Some(name) = self.pid_tokens.remove(&token) else {
            return;
        };
        let Some(rt) = self.runtime.remove(&name) else {
            return;
        };
        let _ = epoll::delete(&self.epoll, &rt.pidfd);
        let status = rt
            .ours
            .then(|| {
                rustix::process::waitid(
                    rustix::process::WaitId::PidFd(rt.pidfd.as_fd()),
                    rustix::process::WaitIdOptions::EXITED,
                )
            })
            .and_then(|r| r.ok().flatten());
        let code = match status {
            Some(st) => st
                .exit_status()
                .or_else(|| st.terminating_signal().map(|s| 128 + s))
                .unwrap_or(255),
            // A re-adopted launcher is not our child: it left its status in the state directory
            // as it ended (`control::record_exit`); 255 when it could not. A re-adopted
            // environment's waiter leaves it there once it has released what the environment
            // held, a moment after the environment's own end.
            None => {
                if rt.late_status && !exit_recorded(&self.state_dir, &name) {
                    // Until then it counts as running, as a launcher still exiting would.
                    let rt = Runtime {
                        awaiting_status: Some(self.now() + LATE_STATUS_MS),
                        ..rt
                    };
                    self.runtime.insert(name, rt);
                    return;
                }
                self.take_status(&name)
            }
        };
        self.launcher_ended(name, rt, code);
    }

    /// The status a process that was not the kernel's child left in `exits/NAME`. None left:
    /// its launcher (or the launch waiter holding it) was killed before its teardown, so the
    /// end counts as 255 and what it left behind is removed here (`reclaim_leftovers`: its
    /// cgroup, unless something still runs in it).
    fn take_status(&self, name: &str) -> i32 {
        if let Some(code) = crate::control::take_exit(&self.state_dir, name) {
            return code;
        }
        let placement = self
            .registry
            .envs
            .get(name)
            .map(|m| m.cgroup_placement())
            .unwrap_or_default();
        if warren_sandbox::reclaim_leftovers(&self.state_dir, name, &placement) {
            tracing::info!("{name}: removed the cgroup its killed launcher or waiter left");
        }
        255
    }

    /// The kernel is stopping: report now the re-adopted ends still waiting for their status,
    /// after what is left of their wait (the next kernel would find neither the process nor a
    /// status, and start a `restart = "no"` environment again as declared).
    pub(super) fn settle_late_statuses(&mut self) {
        loop {
            let now = self.now();
            let waiting = self.runtime.iter().any(|(n, rt)| {
                rt.awaiting_status
                    .is_some_and(|until| until > now && !exit_recorded(&self.state_dir, n))
            });
            if !waiting {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(LATE_STATUS_POLL_MS));
        }
        for rt in self.runtime.values_mut() {
            if rt.awaiting_status.is_some() {
                rt.awaiting_status = Some(0);
            }
        }
        self.collect_late_statuses();
    }

    /// Re-adopted processes that ended: report those whose status has arrived in
    /// `exits/NAME`, or whose wait for it is over.
    fn collect_late_statuses(&mut self) {
        let now = self.now();
        let due: Vec<String> = self
            .runtime
            .iter()
            .filter(|(n, rt)| {
                rt.awaiting_status
                    .is_some_and(|until| until <= now || exit_recorded(&self.state_dir, n))
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let rt = self.runtime.remove(&name).expect("listed above");
            let code = self.take_status(&name);
            self.launcher_ended(name, rt, code);
        }
    }

    /// The launch helper's waiter said what happened (`helper::Notice`).
    pub(super) fn on_helper_notices(&mut self) {
        let notices = match self.helper.as_ref().map(|h| h.take_notices()) {
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                tracing::warn!("the launch helper ended ({e}); launchers are executed from now on");
                self.helper_gone();
                return;
            }
            None => return,
        };
        for notice in notices {
            match notice {
                super::helper::Notice::Handed { launcher, env } => {
                    let Some(name) = self.helper_runtime(launcher) else {
                        continue;
                    };
                    let pidfd =
                        Pid::from_raw(env).and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok());
                    let rt = self.runtime.get_mut(&name).expect("found above");
                    if let Some(fd) = pidfd {
                        rt.pidfd = fd;
                    }
                    rt.pid = env;
                    rt.direct = true;
                    // A stop begun on the launcher carries on on the environment.
                    if let Some(s) = rt.stopping.as_mut() {
                        let _ = pidfd_send_signal(&rt.pidfd, Signal::TERM);
                        s.stage = s.stage.max(2);
                    }
                    if let Some(m) = self.registry.envs.get_mut(&name) {
                        m.env_pid = Some(env);
                    }
                    self.child_changed();
                }
                super::helper::Notice::Exited { pid, code } => {
                    let Some(name) = self.helper_runtime(pid) else {
                        continue;
                    };
                    let rt = self.runtime.remove(&name).expect("found above");
                    self.launcher_ended(name, rt, code);
                }
            }
        }
    }

    /// The environment whose launcher (or handed-over environment) with pid `pid` the launch
    /// helper's waiter reports on.
    fn helper_runtime(&self, pid: i32) -> Option<String> {
        self.runtime
            .iter()
            .find(|(_, rt)| rt.via_helper && rt.pid == pid)
            .map(|(n, _)| n.clone())
    }

    /// The launch helper has gone (it should not): what it started is watched through pidfds
    /// from now on, with statuses left in the state directory or lost (255).
    fn helper_gone(&mut self) {
        if let Some(h) = self.helper.take() {
            let _ = epoll::delete(&self.epoll, h.notice_fd());
        }
        let names: Vec<String> = self
            .runtime
            .iter()
            .filter(|(_, rt)| rt.via_helper)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let rt = self.runtime.remove(&name).expect("listed above");
            let _ = self.watch_pidfd(&name, &rt.pidfd);
            self.runtime.insert(
                name,
                Runtime {
                    via_helper: false,
                    ..rt
                },
            );
        }
    }

    /// The launcher of `name` (or the environment it handed over) ended with `code`.
    fn launcher_ended(&mut self, name: String, rt: Runtime, code: i32) {
        self.forget_ended_meanwhile(&name);
        let ran = rt.started.elapsed().as_millis() as u64;
        if self.child_exited(&name, code, rt.stopping.is_some(), ran) {
            self.child_changed();
            self.finish_waiting(&name, |_| "exited".to_owned());
            return;
        }
        let now = self.now();
        let result = match rt.stopping.map(|s| s.after) {
            Some(AfterStop::Forget) => {
                self.registry.envs.remove(&name);
                "stopped".to_owned()
            }
            Some(AfterStop::Start) => {
                if let Some(m) = self.registry.envs.get_mut(&name) {
                    m.restarts = 0;
                    m.last_exit = Some(code);
                }
                match self.start(&name) {
                    // `apply` reports `replaced` once the new launcher says it runs.
                    Ok(()) => {
                        self.save();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("start of {name} failed: {e}");
                        self.mark_failed(&name);
                        format!("failed: {e}")
                    }
                }
            }
            Some(AfterStop::Stay) => {
                if let Some(m) = self.registry.envs.get_mut(&name) {
                    m.state = State::Stopped;
                    m.last_exit = Some(code);
                    m.launcher_pid = None;
                    m.env_pid = None;
                    m.env_pid = None;
                }
                "stopped".to_owned()
            }
            // The launcher ended before its environment ran: a failed start (command not
            // found, a missing image or volume, a refused launch). It is `failed`, whatever
            // the restart policy, so that the next `apply` starts it again and reports again.
            None if !rt.confirmed => {
                let why = self.launch_failure(&name, code);
                tracing::warn!("start of {name} failed: {why}");
                if let Some(m) = self.registry.envs.get_mut(&name) {
                    m.last_exit = Some(code);
                }
                self.mark_failed(&name);
                format!("failed: {why}")
            }
            None => {
                if let Some(m) = self.registry.envs.get_mut(&name) {
                    match after_exit(m, code, ran, now) {
                        AfterExit::RestartAt(at) => tracing::info!(
                            "{name} exited with {code}; restart {} in {} ms",
                            m.restarts,
                            at - now
                        ),
                        AfterExit::Stay => tracing::info!("{name} exited with {code}"),
                        AfterExit::GiveUp => tracing::error!(
                            "{name} exited with {code}; giving up after {} restarts",
                            m.spec.max_restarts
                        ),
                    }
                }
                "exited".to_owned()
            }
        };
        self.save();
        self.finish_waiting(&name, |_| result.clone());
    }

    /// Whether an environment the kernel does not manage holds `name`: registered with the
    /// kernel (a `warren run -d`, a spawned child), or holding the name's lock in the state
    /// directory (a `warren run -d` started while no kernel ran).
    fn name_held_elsewhere(&self, name: &str) -> bool {
        self.kernel.env_by_name(name).is_some()
            || warren_sandbox::state::StateDir::new(&self.state_dir)
                .name_in_use(name)
                .unwrap_or(false)
    }

    /// Record that `name` could not be started: `failed`, no launcher, no restart due.
    fn mark_failed(&mut self, name: &str) {
        if let Some(m) = self.registry.envs.get_mut(name) {
            m.state = State::Failed;
            m.launcher_pid = None;
            m.env_pid = None;
            m.restart_at = None;
        }
    }

    /// A launcher said its environment runs: `apply` can report it.
    pub(super) fn on_launcher_started(&mut self, name: &str) {
        if let Some(rt) = self.runtime.get_mut(name) {
            rt.confirmed = true;
        }
        self.finish_waiting(name, |was| match was {
            "replacing" => "replaced".to_owned(),
            "starting" => "created".to_owned(),
            other => other.to_owned(),
        });
    }

    /// Why launcher `name` ended before its environment ran: the error it logged last.
    fn launch_failure(&self, name: &str, code: i32) -> String {
        let log = self.state_dir.join("logs").join(format!("{name}.log"));
        let text = std::fs::read(&log).unwrap_or_default();
        let start = text.len().saturating_sub(8192);
        let text = String::from_utf8_lossy(&text[start..]);
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with("warren: error:"))
            .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()));
        let mut why = match line {
            Some(l) => l.trim_start_matches("warren: error:").trim().to_owned(),
            None => {
                let mut why =
                    format!("the launcher exited with status {code} before the environment ran");
                // Its reason went to a log that could not take it.
                let logs = log.parent().unwrap_or(&self.state_dir);
                if rustix::fs::statvfs(logs).is_ok_and(|v| v.f_bavail == 0) {
                    why.push_str(&format!(
                        " (its log could not be written: the filesystem of {} is full)",
                        logs.display()
                    ));
                }
                why
            }
        };
        if why.len() > 512 {
            let mut cut = 512;
            while !why.is_char_boundary(cut) {
                cut -= 1;
            }
            why.truncate(cut);
        }
        why
    }

    /// Mark `name` done in every pending request (its step's result becomes `result` of the
    /// result it had) and answer those that are complete.
    fn finish_waiting(&mut self, name: &str, result: impl Fn(&str) -> String) {
        let mut done = Vec::new();
        for (i, p) in self.pendings.iter_mut().enumerate() {
            if p.waiting.remove(name) {
                for s in p.steps.iter_mut() {
                    if s["name"] == name {
                        let r = result(s["result"].as_str().unwrap_or(""));
                        s["result"] = json!(r);
                    }
                }
            }
            if p.waiting.is_empty() {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            let p = self.pendings.remove(i);
            let reply = apply_reply(&p.steps, p.check);
            self.control_reply(p.token, ControlResponse::data(reply));
        }
    }

    /// `apply`: plan against what is managed, then carry the plan out.
    pub(super) fn apply(
        &mut self,
        token: u64,
        file: String,
        spaces: BTreeMap<String, SpaceSpec>,
        check: bool,
        stop_timeout: u64,
    ) {
        if spaces.len() > warren_spec::manifest::MAX_SPACES {
            let msg = format!(
                "too many environments: {} declared, at most {} are allowed",
                spaces.len(),
                warren_spec::manifest::MAX_SPACES
            );
            self.control_reply(token, ControlResponse::error(msg));
            return;
        }
        let mut desired = BTreeMap::new();
        for (name, spec) in spaces {
            // The control socket takes what a client wrote by hand: the same bounds as a manifest.
            if let Err(e) = warren_spec::validate_space(&spec) {
                let msg = format!("space {name:?}: {e}");
                self.control_reply(token, ControlResponse::error(msg));
                return;
            }
            match name.parse::<EnvName>() {
                Ok(n) => {
                    desired.insert(n, spec);
                }
                Err(e) => {
                    self.control_reply(token, ControlResponse::error(e.to_string()));
                    return;
                }
            }
        }
        let observed: BTreeMap<EnvName, Observed> = self
            .registry
            .envs
            .iter()
            .filter(|(n, _)| !self.spawns.is_child(n))
            .filter_map(|(n, m)| {
                let name = n.parse().ok()?;
                // The real state: the planner keeps what runs and what finished the way its
                // restart policy intends (`exited`), and starts `stopped` and `failed` again.
                let state = if self.runtime.contains_key(n) {
                    State::Running
                } else {
                    m.state
                };
                Some((
                    name,
                    Observed {
                        spec: m.spec.clone(),
                        state: state.as_str().to_owned(),
                    },
                ))
            })
            .collect();
        let manifest = Manifest {
            file: file.into(),
            host: Default::default(),
            spaces: desired.clone(),
            templates: Default::default(),
        };
        let plan = warren_spec::plan(&observed, &manifest);
        let mut steps = Vec::new();
        let mut waiting = BTreeSet::new();
        for step in &plan {
            let mut v = serde_json::to_value(step).unwrap_or(Value::Null);
            if check {
                v["result"] = json!(if step.action == PlanAction::Keep {
                    "unchanged"
                } else {
                    "would-change"
                });
                steps.push(v);
                continue;
            }
            let name = step.name.clone();
            let result = match step.action {
                PlanAction::Keep => "unchanged".to_owned(),
                PlanAction::Create => {
                    let spec = desired
                        .iter()
                        .find(|(n, _)| n.as_str() == name)
                        .map(|(_, s)| s.clone());
                    let Some(spec) = spec else { continue };
                    // The name of an environment the kernel runs but does not manage (a
                    // `warren run -d`, a spawned child): refused, and no record is made, so that
                    // `ps`, `stop` and `rm` go on acting on the one that runs.
                    if self.name_held_elsewhere(&name) {
                        let e = warren_kernel::KernelError::NameInUse { name: name.clone() };
                        v["result"] =
                            json!(format!("failed: the kernel refused the environment: {e}"));
                        steps.push(v);
                        continue;
                    }
                    self.registry.envs.insert(name.clone(), Managed::new(spec));
                    match self.start(&name) {
                        // Reported `created` once the launcher says the environment runs,
                        // `failed: REASON` if it ends before.
                        Ok(()) => {
                            waiting.insert(name.clone());
                            "starting".to_owned()
                        }
                        Err(e) => {
                            self.mark_failed(&name);
                            format!("failed: {e}")
                        }
                    }
                }
                PlanAction::Replace => {
                    let spec = desired
                        .iter()
                        .find(|(n, _)| n.as_str() == name)
                        .map(|(_, s)| s.clone());
                    let Some(spec) = spec else { continue };
                    if let Some(m) = self.registry.envs.get_mut(&name) {
                        m.spec = spec;
                    }
                    if self.runtime.contains_key(&name) {
                        self.begin_stop(&name, stop_timeout * 1000, AfterStop::Start);
                        waiting.insert(name.clone());
                        "replacing".to_owned()
                    } else if self.name_held_elsewhere(&name) {
                        // Not running, and a `warren run -d` took its name meanwhile: left
                        // alone, as a create would be.
                        self.mark_failed(&name);
                        let e = warren_kernel::KernelError::NameInUse { name: name.clone() };
                        format!("failed: the kernel refused the environment: {e}")
                    } else {
                        match self.start(&name) {
                            Ok(()) => {
                                waiting.insert(name.clone());
                                "replacing".to_owned()
                            }
                            Err(e) => {
                                self.mark_failed(&name);
                                format!("failed: {e}")
                            }
                        }
                    }
                }
                PlanAction::Stop => {
                    if self.runtime.contains_key(&name) {
                        self.begin_stop(&name, stop_timeout * 1000, AfterStop::Forget);
                        waiting.insert(name.clone());
                        "stopping".to_owned()
                    } else {
                        self.registry.envs.remove(&name);
                        "stopped".to_owned()
                    }
                }
            };
            v["result"] = json!(result);
            steps.push(v);
        }
        self.save();
        if waiting.is_empty() {
            self.control_reply(token, ControlResponse::data(apply_reply(&steps, check)));
        } else {
            self.pendings.push(Pending {
                token,
                waiting,
                steps,
                check,
            });
        }
    }

    /// `list`: every managed environment.
    pub(super) fn list(&self) -> Value {
        let envs: Vec<Value> = self
            .registry
            .envs
            .iter()
            .map(|(n, m)| {
                json!({
                    "name": n, "state": m.state.as_str(), "restarts": m.total_restarts,
                    "restart_policy": m.spec.restart, "last_exit": m.last_exit,
                    "launcher_pid": m.launcher_pid, "started_at_ms": m.started_at_ms,
                    "spec": m.spec, "parent": self.parent_name(n),
                    "children": self.children_names(n),
                })
            })
            .collect();
        json!({ "envs": envs })
    }

    /// `stop NAME`: a managed environment stays stopped afterwards.
    pub(super) fn stop_request(&mut self, token: u64, name: String, timeout: u64) {
        if self.is_restarting_child(&name) && !self.runtime.contains_key(&name) {
            // A spawned child waiting for its restart: it ends for good.
            self.end_restarting_child(&name);
            let steps = vec![json!({"name": name, "action": "stop", "result": "stopped"})];
            self.control_reply(token, ControlResponse::data(apply_reply(&steps, false)));
            return;
        }
        let Some(m) = self.registry.envs.get_mut(&name) else {
            let msg = format!("{name:?} is not managed by the kernel");
            self.control_reply(token, ControlResponse::error(msg));
            return;
        };
        if !self.runtime.contains_key(&name) {
            // Waiting out a restart's backoff: it stays stopped. One that exited, failed or
            // was stopped already is left as it is (a no-op): stopping a finished one-shot job
            // must not make the next `apply` run it again.
            if m.state == State::Restarting {
                m.state = State::Stopped;
                m.restart_at = None;
                self.save();
            }
            let steps = vec![json!({"name": name, "action": "stop", "result": "stopped"})];
            self.control_reply(token, ControlResponse::data(apply_reply(&steps, false)));
            return;
        }
        self.begin_stop(&name, timeout * 1000, AfterStop::Stay);
        let steps = vec![json!({"name": name, "action": "stop", "result": "stopping"})];
        self.pendings.push(Pending {
            token,
            waiting: BTreeSet::from([name]),
            steps,
            check: false,
        });
    }

    /// `rm NAME`: forget a managed environment; it must be stopped unless `force`.
    pub(super) fn remove_request(&mut self, token: u64, name: String, force: bool) {
        if !self.registry.envs.contains_key(&name) {
            let msg = format!("{name:?} is not managed by the kernel");
            self.control_reply(token, ControlResponse::error(msg));
            return;
        }
        if self.runtime.contains_key(&name) {
            if !force {
                let msg = format!("{name:?} is running: stop it first, or use -f");
                self.control_reply(token, ControlResponse::error(msg));
                return;
            }
            self.begin_stop(&name, 0, AfterStop::Forget);
            let steps = vec![json!({"name": name, "action": "remove", "result": "stopping"})];
            self.pendings.push(Pending {
                token,
                waiting: BTreeSet::from([name]),
                steps,
                check: false,
            });
            return;
        }
        self.registry.envs.remove(&name);
        self.save();
        let steps = vec![json!({"name": name, "action": "remove", "result": "removed"})];
        self.control_reply(token, ControlResponse::data(apply_reply(&steps, false)));
    }

    /// At start: take charge again of launchers a previous daemon started (they kept running),
    /// and start what should run but does not.
    pub(super) fn adopt_all(&mut self) {
        // Exit statuses left by launchers of environments no kernel supervises any more
        // (`control::record_exit`): nobody will take them.
        if let Ok(entries) = std::fs::read_dir(self.state_dir.join("exits")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !self.registry.envs.contains_key(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let orphans = self.end_orphaned_children();
        let names: Vec<String> = self.registry.envs.keys().cloned().collect();
        let mut readopted = BTreeSet::new();
        for name in names {
            let (state, pid, env_pid) = {
                let m = &self.registry.envs[&name];
                (m.state, m.launcher_pid, m.env_pid)
            };
            // Handed over to the previous kernel's launch waiter: the environment itself.
            if let Some((p, alive)) = env_pid.and_then(|p| Some((p, self.handed_alive(&name, p)?)))
            {
                if self.readopt(&name, alive, p, true) {
                    readopted.insert(name.clone());
                }
                continue;
            }
            // The pidfd first, then the check that it is our launcher, then the check that the
            // process the pidfd holds still lives: a pid reused between the steps fails one of
            // them, so the pidfd never names a stranger.
            let alive = pid.and_then(|p| {
                let pidfd = pidfd_open(Pid::from_raw(p)?, PidfdFlags::empty()).ok()?;
                let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                let ours = args
                    .windows(2)
                    .any(|w| w[0] == b"--name" && w[1] == name.as_bytes());
                if !ours {
                    return None;
                }
                (!warren_sys::pidfd_ended(pidfd.as_fd())).then_some(pidfd)
            });
            // Its launcher has gone, and the registry names no environment pid: the previous
            // kernel may have been killed between a hand-off and saving it. The name lock,
            // still held, records the environment's pid.
            if alive.is_none() && env_pid.is_none() {
                let handed = self
                    .recorded_pid(&name)
                    .and_then(|p| Some((p, self.handed_alive(&name, p)?)));
                if let Some((p, pidfd)) = handed {
                    if let Some(m) = self.registry.envs.get_mut(&name) {
                        m.env_pid = Some(p);
                    }
                    if self.readopt(&name, pidfd, p, true) {
                        readopted.insert(name.clone());
                    }
                    continue;
                }
            }
            let mut state = state;
            if alive.is_none() && !self.spawns.is_child(&name) {
                // Its launcher ended while no kernel ran, and left its status for us: judged by
                // its restart policy as if this kernel had seen it end (a `restart = "no"`
                // environment that ended is not started again).
                if let Some(code) = crate::control::take_exit(&self.state_dir, &name) {
                    let now = self.now();
                    if let Some(m) = self.registry.envs.get_mut(&name) {
                        if matches!(m.state, State::Running | State::Restarting) {
                            let _ = after_exit(m, code, 0, now);
                            tracing::info!("{name} ended with {code} while no kernel ran");
                        } else {
                            m.last_exit = Some(code);
                        }
                        state = m.state;
                    }
                }
            }
            match (alive, state) {
                (Some(pidfd), _) => {
                    if self.readopt(&name, pidfd, pid.unwrap_or(0), false) {
                        readopted.insert(name.clone());
                    }
                }
                (None, _) if orphans.contains(&name) => {
                    self.spawns.forget(&name);
                    self.registry.envs.remove(&name);
                }
                // A child is never started again from the registry: it was spawned.
                (None, State::Running | State::Restarting) if !self.spawns.is_child(&name) => {
                    tracing::info!("{name} is not running any more; starting it as declared");
                    if let Err(e) = self.start(&name) {
                        tracing::warn!("start of {name} failed: {e}");
                        self.mark_failed(&name);
                    }
                }
                (None, _) => {}
            }
        }
        let unlinked = self.settle_readopted_children(&readopted);
        for name in orphans.into_iter().chain(unlinked) {
            if self.runtime.contains_key(&name) {
                self.begin_stop(&name, 0, AfterStop::Forget);
            }
        }
        self.save();
    }
}

impl Daemon {
    /// Watch `pidfd` in the epoll set: its turning readable (its process ended) is
    /// `on_launcher_exit` for `name`.
    fn watch_pidfd(&mut self, name: &str, pidfd: &OwnedFd) -> rustix::io::Result<()> {
        let token = self.next_token;
        self.next_token += 1;
        epoll::add(
            &self.epoll,
            pidfd,
            EventData::new_u64(token),
            EventFlags::IN,
        )?;
        self.pid_tokens.insert(token, name.to_owned());
        Ok(())
    }

    /// Watch `pidfd` (a re-adopted launcher's, or with `direct` a handed-over environment's)
    /// for `name`; whether it is watched.
    fn readopt(&mut self, name: &str, pidfd: OwnedFd, pid: i32, direct: bool) -> bool {
        if self.watch_pidfd(name, &pidfd).is_err() {
            return false;
        }
        crate::control::forget_exit(&self.state_dir, name);
        self.runtime.insert(
            name.to_owned(),
            Runtime {
                ours: false,
                pid,
                via_helper: false,
                direct,
                // A launcher the factory forked hands its ended environment to the waiter of
                // the kernel that started it, which writes the status after the launcher's end.
                late_status: true,
                awaiting_status: None,
                pidfd,
                started: Instant::now(),
                stopping: None,
                confirmed: true,
            },
        );
        let what = if direct { "environment" } else { "launcher" };
        tracing::info!(
            "re-adopted {name} ({what} pid {pid}); its kernel connection ended with the previous kernel and returns when it restarts"
        );
        true
    }

    /// The pid environment `name`'s name lock records, while the lock is held.
    fn recorded_pid(&self, name: &str) -> Option<i32> {
        let record = warren_sandbox::state::StateDir::new(&self.state_dir)
            .live_record(name)
            .ok()??;
        let v: Value = serde_json::from_slice(&record).ok()?;
        i32::try_from(v["pid"].as_i64()?).ok()
    }

    /// A pidfd for environment `name`'s first process `pid`, if it still runs: its name lock
    /// must be held and record that pid (opened first, then checked, so a reused pid never
    /// passes).
    fn handed_alive(&self, name: &str, pid: i32) -> Option<OwnedFd> {
        let pidfd = pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty()).ok()?;
        if self.recorded_pid(name)? != pid {
            return None;
        }
        (!warren_sys::pidfd_ended(pidfd.as_fd())).then_some(pidfd)
    }
}

/// A re-adopted environment's first process ended: its waiter (of the previous kernel) leaves
/// the status a moment later, once it has released what the environment held. How long the
/// supervisor waits for it (`Runtime::awaiting_status`), and how often it looks.
const LATE_STATUS_MS: u64 = 2000;
const LATE_STATUS_POLL_MS: u64 = 5;

/// Whether `exits/NAME` holds a status.
fn exit_recorded(state_dir: &std::path::Path, name: &str) -> bool {
    state_dir.join("exits").join(name).exists()
}

/// The answer to `apply` (and `stop`/`remove`): the steps, and whether anything changed or
/// failed.
fn apply_reply(steps: &[Value], check: bool) -> Value {
    let failed_step = |s: &Value| {
        s["result"]
            .as_str()
            .is_some_and(|r| r.starts_with("failed"))
    };
    let changed = steps
        .iter()
        .any(|s| s["action"] != "keep" && !failed_step(s));
    let failed = steps.iter().any(|s| {
        s["result"]
            .as_str()
            .is_some_and(|r| r.starts_with("failed"))
    });
    json!({ "steps": steps, "changed": changed, "failed": failed, "check": check })
}
