//! The daemon's side of spawn (protocol version 3): carrying out the kernel's `Action::Spawn`
//! and `Action::Stop`, and keeping the kernel's view of a child in step with its launcher.
//!
//! A spawned child is started like a managed environment: a `warren run` launcher process with
//! the spec [`child_spec`](crate::template::child_spec) makes from its template and the
//! spawner's choices, supervised (stopped, escalated, reaped) by the same code. It differs in
//! these places, each a call from the general code into this module:
//! - **registration** ([`Daemon::register_env`]): when the launcher registers, the kernel is
//!   told the spawn succeeded (`Kernel::spawned`), which installs the initial names and answers
//!   the spawner, instead of adding a fresh environment;
//! - **the end**: the kernel keeps the child until its launcher has exited, so that the
//!   spawner's `down` notice carries the exit status (`warren-exit: code=N`, N as `warren run`
//!   reports it: 128 + S when signal S ended it); a launcher that exits before registering
//!   fails the spawn (`spawn-failed`);
//! - **restart in place**: a child that exits on its own is restarted per its template's
//!   `restart` policy with the managed environments' backoff and limit
//!   ([`after_exit`]), as the same child: the kernel keeps its id, mailbox, link and names
//!   ([`Kernel::restart_child`](warren_kernel::Kernel::restart_child)), and the new launcher's
//!   registration is bound to that id; a stop is final, and a crash loop given up ends with a
//!   `down` that says so (docs/protocol.md §16.1, "Restart");
//! - **nothing kept at the end**: a child that ended for good leaves the managed set (`ps -a`
//!   does not keep it), and its log goes too when it exited with 0;
//! - **apply** leaves children alone: they are not declared in the manifest;
//! - **the cgroup**: a linked child's launcher gets `--cgroup-parent` (its spawner's group,
//!   [`Daemon::cgroup_group`]), so its cgroup nests under its spawner's and the spawner's
//!   limits bound it; a spawner's own launcher gets `--cgroup-children`
//!   ([`Managed::cgroup_placement`]). A detached child does not nest;
//! - **provenance**: the child's launcher gets `--spawned-by`, `--spawn-template` and
//!   `--parent-record` (the spawner's launch record, read from its live record), which its
//!   launch record states (`spawn`, docs/attestation.md).
//!
//! - **a kernel restart**: what the kernel needs to take a child back (link, `down`
//!   reference, initial names) is kept in the registry ([`Managed::kept`]); a child whose
//!   launcher survived registers again and gets them back ([`Daemon::register_env`]); a linked
//!   child whose spawner did not survive is stopped ([`Daemon::settle_readopted_children`]).
//!
//! Templates come from `warren up FILE` and `warren apply FILE` ([`Daemon::declare_templates`]),
//! and are kept in the registry (`managed.json`), so a daemon started without a manifest
//! declares the last ones again.

use std::collections::{BTreeMap, BTreeSet};

use warren_kernel::{EnvId, EnvSpec, ExitStatus, KeptChild, KernelError, SpawnOrder};
use warren_spec::TemplateSpec;

use super::Daemon;
use super::supervise::AfterStop;
use crate::supervisor::{AfterExit, Managed, after_exit};
use crate::template::{child_spec, template_info};

/// Grace before SIGKILL for a stop that does not ask to kill at once, in milliseconds (the
/// default of `warren stop`).
const STOP_GRACE_MS: u64 = 10_000;

/// The range of each limit a Spawn may ask for: the launcher's own bounds (one table,
/// `warren_spec::limits`), so the kernel refuses what the child's launcher would.
pub(super) fn spawn_bounds() -> warren_kernel::SpawnBounds {
    use warren_spec::limits::{Bound, CPUS_MICROS, MEMORY, PIDS, TMPFS_SIZE};
    let range = |b: Bound| (b.min, b.max);
    warren_kernel::SpawnBounds {
        memory: range(MEMORY),
        pids: range(PIDS),
        cpus: range(CPUS_MICROS),
        tmpfs_size: range(TMPFS_SIZE),
    }
}

/// What the daemon keeps about spawned children.
#[derive(Debug, Default)]
pub(super) struct Spawns {
    /// The templates `warren up` declared, by name.
    pub(super) templates: BTreeMap<String, TemplateSpec>,
    /// Children whose launcher runs but has not registered yet: the kernel's ticket.
    starting: BTreeMap<String, u64>,
    /// Every child this daemon started (or took back after a restart) that has not ended.
    children: BTreeSet<String>,
    /// Children spawned under a previous kernel whose launchers run on: they register again
    /// and are taken back with their links and names ([`Kernel::readopt_child`]).
    readopting: BTreeSet<String>,
    /// Children being restarted in place under their template's `restart` policy (between
    /// the old launcher's exit and the new one's registration): their kernel ids.
    restarting: BTreeMap<String, EnvId>,
    /// Children whose launcher closed its control connection while still running: removed
    /// from the kernel when the launcher's exit status is known.
    ending: BTreeMap<String, EnvId>,
    /// Children spawned under a previous kernel that ended while no kernel ran, taken back
    /// only to give their spawner its `down` notice once it registers again: name -> (exit
    /// status, spawner's name).
    ended_meanwhile: BTreeMap<String, (i32, String)>,
    /// The registry changed for children and is saved at the end of this loop turn
    /// ([`Daemon::save_children`]): one save for every spawn and exit of the turn, not one
    /// each (a save writes every managed environment: with hundreds of children, saving on
    /// each exit made stopping a parent quadratic).
    unsaved: bool,
}

impl Spawns {
    /// Forget child `name` (its launcher is gone).
    pub(super) fn forget(&mut self, name: &str) {
        self.children.remove(name);
        self.starting.remove(name);
        self.ending.remove(name);
        self.restarting.remove(name);
    }

    /// Whether `name` is a spawned child (apply leaves it alone).
    pub(super) fn is_child(&self, name: &str) -> bool {
        self.children.contains(name)
    }
}

impl Daemon {
    /// Declares the manifest's templates (`warren up FILE`, `warren apply FILE`) to the kernel
    /// and keeps them to start children from. Children already running are not affected.
    pub(super) fn declare_templates(&mut self, templates: BTreeMap<String, TemplateSpec>) {
        let mut infos = Vec::with_capacity(templates.len());
        for (name, t) in &templates {
            match name.parse::<warren_spec::EnvName>() {
                Ok(n) => infos.push(template_info(&n, t)),
                Err(e) => tracing::warn!("template {name:?} ignored: {e}"),
            }
        }
        self.kernel.set_templates(infos);
        // Kept with the managed set: a daemon started without a manifest declares them again.
        if self.registry.templates != templates {
            self.registry.templates = templates.clone();
            self.save();
        }
        self.spawns.templates = templates;
    }

    /// `Action::Spawn`: start the child's launcher, or fail the spawn.
    pub(super) fn carry_out_spawn(&mut self, order: &SpawnOrder) {
        let now = self.now();
        let Some(t) = self.spawns.templates.get(&order.template) else {
            let why = format!(
                "template {:?} is not declared to this daemon (templates come from `warren up \
                 FILE`)",
                order.template
            );
            self.kernel.spawn_failed(order.ticket, &why, now);
            return;
        };
        let name = order.child.clone();
        if self.registry.envs.contains_key(&name) {
            let why = format!("{name:?} is already a managed environment");
            self.kernel.spawn_failed(order.ticket, &why, now);
            return;
        }
        // The kernel refuses a name that a running environment's policy names; one that does
        // not run now (exited, stopped, waiting to restart) would get a capability to the
        // child when it starts again.
        if let Some(holder) = self.declared_by_managed(&name) {
            let why = format!(
                "{name:?} is named in the may_send or may_discover of managed environment \
                 {holder:?}: a child may not take a name the administrator gave authority to"
            );
            self.kernel.spawn_failed(order.ticket, &why, now);
            return;
        }
        let mut managed = Managed::new(child_spec(t, order));
        managed.spawned_by = Some(order.parent_name.clone());
        let (parent_recnum, parent_digest) = self.launch_record_of(&order.parent_name).unzip();
        managed.provenance = Some(warren_attest::SpawnProvenance {
            parent: order.parent_name.clone(),
            template: order.template.clone(),
            parent_recnum,
            parent_digest,
        });
        if !order.detach {
            // Linked: its cgroup nests under its spawner's, whose limits then bound it.
            match self.cgroup_group(&order.parent_name) {
                Ok(group) => managed.cgroup_parent = Some(group),
                Err(why) => {
                    self.kernel.spawn_failed(order.ticket, &why, now);
                    return;
                }
            }
        }
        self.registry.envs.insert(name.clone(), managed);
        match self.start(&name) {
            Ok(()) => {
                tracing::info!(parent = %order.parent_name, "spawning {name}");
                self.spawns.starting.insert(name.clone(), order.ticket);
                self.spawns.children.insert(name);
                // Persisted this turn: a kernel restart must find every child's launcher.
                self.spawns.unsaved = true;
            }
            Err(e) => {
                self.registry.envs.remove(&name);
                let why = format!("cannot start its launcher: {e}");
                self.kernel.spawn_failed(order.ticket, &why, now);
            }
        }
    }

    /// A declared (not spawned) environment whose `may_send` or `may_discover` names
    /// environment `name` (as `NAME`, `NAME/MAILBOX` or `NAME@HOST`: a remote name is refused
    /// too, which only ever costs a spawner a suffix).
    fn declared_by_managed(&self, name: &str) -> Option<String> {
        self.registry
            .envs
            .iter()
            .filter(|(_, m)| m.spawned_by.is_none())
            .find(|(_, m)| {
                m.spec
                    .may_send
                    .iter()
                    .chain(&m.spec.may_discover)
                    .any(|e| e.split(['/', '@']).next() == Some(name))
            })
            .map(|(holder, _)| holder.clone())
    }

    /// The launch record (number, `sha256:` digest) of running environment `name`, as its
    /// launcher wrote it in its live record (`<state>/envs/NAME.lock`, read by `ps` and
    /// `inspect` too).
    fn launch_record_of(&self, name: &str) -> Option<(u64, String)> {
        let envs = self.state_dir.join("envs");
        let lock = envs.join(format!("{name}.lock"));
        let from_lock = || -> Option<serde_json::Value> {
            let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&lock).ok()?).ok()?;
            r.get("applied")?.get("measurement").cloned()
        };
        let from_measured = || -> Option<serde_json::Value> {
            let path = crate::measure::measured_path(&envs, name);
            serde_json::from_slice(&std::fs::read(path).ok()?).ok()
        };
        // Until its launcher has written the live record (the workload may spawn as soon as it
        // runs), the launch record waits in `NAME.measured`, written before its exec and
        // removed once the live record holds it: so the lock is read again after it.
        let m = from_lock().or_else(from_measured).or_else(from_lock)?;
        Some((
            m.get("recnum")?.as_u64()?,
            m.get("digest")?.as_str()?.to_owned(),
        ))
    }

    /// The cgroup group of spawner `name` (relative to Warren's `warren` cgroup), which must
    /// hold children: it declares `may_spawn` (so its launcher made `GROUP/self`).
    fn cgroup_group(&self, name: &str) -> Result<String, String> {
        let Some(m) = self.registry.envs.get(name) else {
            return Err(format!(
                "{name:?} was not started by this daemon, so its cgroup cannot hold children"
            ));
        };
        let placement = m.cgroup_placement();
        if !placement.holds_children {
            return Err(format!(
                "{name:?} declares no may_spawn, so its cgroup cannot hold children (a linked \
                 child's cgroup nests under its spawner's)"
            ));
        }
        Ok(placement.group(name))
    }

    /// Saves the registry if a spawn or a child's exit changed it this turn (called once per
    /// loop turn, from the supervisor's tick).
    pub(super) fn save_children(&mut self) {
        if std::mem::take(&mut self.spawns.unsaved) {
            self.save();
        }
    }

    /// Whether a registry change waits for [`Daemon::save_children`].
    pub(super) fn spawns_unsaved(&self) -> bool {
        self.spawns.unsaved
    }

    /// A child's exit changed the registry: saved at the end of the turn.
    pub(super) fn child_changed(&mut self) {
        self.spawns.unsaved = true;
    }

    /// At start, before re-adoption: children spawned under a previous kernel. Those whose
    /// link and names were kept ([`Managed::kept`]) are taken back when their launchers
    /// register again; the others (kept by an older kernel, or never registered) are stopped
    /// once re-adopted, then forgotten. Returns those to stop.
    pub(super) fn end_orphaned_children(&mut self) -> Vec<String> {
        let mut orphans = Vec::new();
        let children: Vec<(String, bool)> = self
            .registry
            .envs
            .iter()
            .filter(|(_, m)| m.spawned_by.is_some())
            .map(|(n, m)| (n.clone(), m.kept.is_some()))
            .collect();
        for (name, kept) in children {
            self.spawns.children.insert(name.clone());
            if kept {
                self.spawns.readopting.insert(name);
            } else {
                tracing::warn!(
                    "{name} was spawned under the previous kernel but its links were not kept; \
                     stopping it"
                );
                orphans.push(name);
            }
        }
        orphans
    }

    /// After re-adoption: a re-adopted child whose launcher is gone is forgotten, and a linked
    /// one whose spawner was not re-adopted (it ended with or before the old kernel) is stopped,
    /// as its spawner's end would have stopped it. `readopted` are the launchers found running.
    pub(super) fn settle_readopted_children(
        &mut self,
        readopted: &BTreeSet<String>,
    ) -> Vec<String> {
        let mut stop = Vec::new();
        for name in self.spawns.readopting.clone() {
            if !readopted.contains(&name) {
                self.spawns.forget(&name);
                self.spawns.readopting.remove(&name);
                let kept = self.registry.envs.remove(&name).and_then(|m| m.kept);
                self.spawns.unsaved = true;
                self.ended_while_no_kernel_ran(&name, kept, readopted);
                continue;
            }
            let Some(kept) = self.registry.envs.get(&name).and_then(|m| m.kept.clone()) else {
                continue;
            };
            if !kept.detached && !readopted.contains(&kept.parent) {
                tracing::info!("{name}: its spawner {} ended; stopping it", kept.parent);
                stop.push(name);
            } else {
                tracing::info!("{name} (spawned by {}) taken back", kept.parent);
            }
        }
        stop
    }

    /// `Action::Stop`: stop an environment this daemon supervises (SIGTERM, then SIGKILL after
    /// the grace period, or at once with `kill`).
    pub(super) fn carry_out_stop(&mut self, name: &str, kill: bool, why: &str) {
        tracing::info!(env = %name, kill, "stopping: {why}");
        if self.spawns.restarting.contains_key(name) && !self.runtime.contains_key(name) {
            // Waiting for its restart: a stop is final, it ends now.
            self.end_restarting_child(name);
            return;
        }
        let grace = if kill { 0 } else { STOP_GRACE_MS };
        self.begin_stop(name, grace, AfterStop::Stay);
    }

    /// A launcher registers: a starting child completes its spawn; anything else is a new
    /// environment.
    ///
    /// A child spawned under a previous kernel is taken back with its link and names; a child
    /// that starts keeps what a later kernel will need for that ([`Managed::kept`]); and any
    /// environment that registers gets the taken-back children that named it as spawner.
    pub(super) fn register_env(&mut self, spec: EnvSpec) -> Result<EnvId, KernelError> {
        let now = self.now();
        let name = spec.name.clone();
        let kept = self
            .spawns
            .readopting
            .remove(&name)
            .then(|| self.registry.envs.get(&name).and_then(|m| m.kept.clone()))
            .flatten();
        if let Some(env) = self.spawns.restarting.remove(&name) {
            // Restarted in place: the same child, under the same id.
            if self.kernel.env_name(env) == Some(name.as_str()) {
                return Ok(env);
            }
        }
        let env = match (self.spawns.starting.remove(&name), kept) {
            (Some(ticket), _) => {
                let env = self.kernel.spawned(ticket, now)?;
                let kept = self.kernel.kept_child(env);
                if let Some(m) = self.registry.envs.get_mut(&name) {
                    m.kept = kept;
                    self.spawns.unsaved = true;
                }
                env
            }
            (None, Some(kept)) => self.kernel.readopt_child(&name, &kept, now)?,
            (None, None) => self.kernel.add_env(spec, now)?,
        };
        self.kernel.relink_children(env);
        // Its children that ended while no kernel ran end now, linked again: their `down`.
        // (Looked for only after a restart that left some.)
        let waiting = if self.spawns.ended_meanwhile.is_empty() {
            Vec::new()
        } else {
            self.kernel.children_of(env)
        };
        for child in waiting {
            let Some(child_name) = self.kernel.env_name(child).map(str::to_owned) else {
                continue;
            };
            if let Some((code, _)) = self.spawns.ended_meanwhile.remove(&child_name) {
                self.kernel.set_exit_status(child, ExitStatus::Code(code));
                self.kernel.remove_env(child, now);
                tracing::info!(
                    "{child_name} (spawned by {name}) had ended with {code} while no kernel ran"
                );
            }
        }
        Ok(env)
    }

    /// A child spawned under a previous kernel whose launcher had ended before this kernel
    /// started: its spawner, if it runs on (`readopted`), still gets the `down` notice with the
    /// status the launcher left (`control::record_exit`; 255 when none), once it registers
    /// again. The child is taken back into the kernel only for that (its link); it has no
    /// connection and is not in the registry.
    fn ended_while_no_kernel_ran(
        &mut self,
        name: &str,
        kept: Option<KeptChild>,
        readopted: &BTreeSet<String>,
    ) {
        let code = crate::control::take_exit(&self.state_dir, name).unwrap_or(255);
        let Some(kept) = kept.filter(|k| readopted.contains(&k.parent)) else {
            return;
        };
        let now = self.now();
        match self.kernel.readopt_child(name, &kept, now) {
            Ok(_) => {
                self.spawns
                    .ended_meanwhile
                    .insert(name.to_owned(), (code, kept.parent.clone()));
            }
            Err(e) => tracing::warn!(
                "{name} ended while no kernel ran; its spawner's notice is lost: {e}"
            ),
        }
    }

    /// Environment `name` ended: children that ended while no kernel ran and waited for it to
    /// register again (it never did) are forgotten.
    pub(super) fn forget_ended_meanwhile(&mut self, name: &str) {
        let waiting: Vec<String> = self
            .spawns
            .ended_meanwhile
            .iter()
            .filter(|(_, (_, parent))| parent == name)
            .map(|(c, _)| c.clone())
            .collect();
        let now = self.now();
        for child in waiting {
            self.spawns.ended_meanwhile.remove(&child);
            if let Some(env) = self.kernel.env_by_name(&child) {
                self.kernel.remove_env(env, now);
            }
        }
    }

    /// A launcher's control connection closed: whether the kernel should forget the
    /// environment now (`false` for a child whose launcher still runs: its exit status comes
    /// with the launcher's exit).
    pub(super) fn end_now(&mut self, env: EnvId) -> bool {
        let Some(name) = self.kernel.env_name(env).map(str::to_owned) else {
            return true;
        };
        if self.spawns.restarting.contains_key(&name) {
            // Its old launcher's connection, closing after the launcher's exit: the child
            // lives on for its restart.
            return false;
        }
        if self.spawns.children.contains(&name) && self.runtime.contains_key(&name) {
            self.spawns.ending.insert(name, env);
            return false;
        }
        true
    }

    /// The environment that spawned `name`, while both run.
    pub(super) fn parent_name(&self, name: &str) -> Option<String> {
        let env = self.kernel.env_by_name(name)?;
        let parent = self.kernel.parent_of(env)?;
        self.kernel.env_name(parent).map(str::to_owned)
    }

    /// The running children of `name`.
    pub(super) fn children_names(&self, name: &str) -> Vec<String> {
        let Some(env) = self.kernel.env_by_name(name) else {
            return Vec::new();
        };
        let children = self.kernel.children_of(env);
        children
            .into_iter()
            .filter_map(|c| self.kernel.env_name(c).map(str::to_owned))
            .collect()
    }

    /// A launcher exited with `code` (`stopped`: it was asked to stop). For a spawned child:
    /// restart it in place if its template's policy says so and it was not stopped
    /// ([`Kernel::restart_child`]; the restart itself is due after the backoff, from the
    /// supervisor's tick), else report the status to the kernel (or fail a spawn that never
    /// registered), forget it, and return true; false for any other environment.
    pub(super) fn child_exited(
        &mut self,
        name: &str,
        code: i32,
        stopped: bool,
        ran_ms: u64,
    ) -> bool {
        if !self.spawns.children.contains(name) {
            return false;
        }
        let now = self.now();
        if let Some(ticket) = self.spawns.starting.remove(name) {
            self.spawns.children.remove(name);
            self.registry.envs.remove(name);
            let why = format!(
                "its launcher exited with {code} before the child started (see `warren logs {name}`)"
            );
            self.kernel.spawn_failed(ticket, &why, now);
            return true;
        }
        // Its control connection already closed (else the kernel forgets it when it does).
        let ending = self.spawns.ending.remove(name);
        let env = ending.or_else(|| self.kernel.env_by_name(name));
        let mut gave_up = None;
        if let (false, Some(env), Some(m)) = (stopped, env, self.registry.envs.get_mut(name)) {
            match after_exit(m, code, ran_ms, now) {
                AfterExit::RestartAt(at) => {
                    if self.kernel.restart_child(env, now) {
                        tracing::info!(
                            "{name} (spawned) exited with {code}; restart {} in {} ms",
                            m.restarts,
                            at - now
                        );
                        self.spawns.restarting.insert(name.to_owned(), env);
                        return true;
                    }
                }
                AfterExit::GiveUp => {
                    gave_up = Some(format!("max_restarts={} reached", m.spec.max_restarts));
                }
                AfterExit::Stay => {}
            }
        }
        self.spawns.children.remove(name);
        self.registry.envs.remove(name);
        if let Some(env) = env {
            if let Some(why) = &gave_up {
                tracing::error!("{name} (spawned) exited with {code}; giving up: {why}");
                self.kernel.give_up_child(env, why);
            }
            self.kernel.set_exit_status(env, ExitStatus::Code(code));
            if ending.is_some() {
                self.kernel.remove_env(env, now);
            }
        }
        // A child that succeeded leaves no log behind; a failed one keeps it for `warren logs`.
        if code == 0 {
            let log = self.state_dir.join("logs").join(format!("{name}.log"));
            let _ = std::fs::remove_file(log);
        }
        tracing::info!("{name} (spawned) exited with {code}");
        true
    }

    /// A child waiting for its restart is stopped (through its STOP handle, its spawner's end,
    /// `warren stop`) or its restart failed: it ends for good, its spawner gets the final
    /// `down` with its last exit status.
    pub(super) fn end_restarting_child(&mut self, name: &str) {
        let Some(env) = self.spawns.restarting.remove(name) else {
            return;
        };
        let code = self
            .registry
            .envs
            .get(name)
            .and_then(|m| m.last_exit)
            .unwrap_or(255);
        self.spawns.forget(name);
        self.registry.envs.remove(name);
        let now = self.now();
        self.kernel.set_exit_status(env, ExitStatus::Code(code));
        self.kernel.remove_env(env, now);
        self.child_changed();
        tracing::info!("{name} (spawned) ended while waiting for its restart");
    }

    /// Whether child `name` waits for its restart.
    pub(super) fn is_restarting_child(&self, name: &str) -> bool {
        self.spawns.restarting.contains_key(name)
    }
}
