//! Spawn (protocol version 3): environments that make environments.
//!
//! The administrator declares **templates** ([`TemplateInfo`], from `[template.NAME]`); an
//! environment whose declaration lists a template in `may_spawn` holds a handle with
//! SPAWN|GRANT on it. A SPAWN capability designates a *grant*: a kernel-owned pseudo-mailbox
//! (owner `NOBODY`, never alive to messages: a SPAWN handle has no SEND, RECEIVE or MONITOR)
//! that names the template, the budgets the grant is bound by (its `max_instances` share and
//! every share it was restricted from) and its limit ceilings. Because every capability derived
//! from a SPAWN capability (by attenuation, by travelling in a message, by passing it as an
//! initial name) designates the same grant, the ceilings and shares travel with it; `Restrict`
//! makes a new grant (a smaller share, lower ceilings) whose capability is derived from the old
//! one, so revoking the old one revokes it too. Revocation stops further spawns (`revoked`);
//! it does not touch running children.
//!
//! **The spawn decision** ([`Kernel::spawn`]) checks, in this order: the handle (exists, not
//! revoked, not expired, uses left, SPAWN), the template's permissions (`args`, `env_allow`,
//! limits at most the ceilings, `detach`: `not-allowed`), the child's name (`bad-request` if
//! invalid or taken), the initial names (each a label, distinct, a live handle with GRANT), and
//! the quotas (`quota`: the template's `max_instances` host-wide, every budget of the grant,
//! and the spawner's own live children). Accepted, it reserves the child's place in every
//! count, derives a capability for each initial name (held by the pending spawn, so a
//! revocation reaches it), spends a use, and emits [`Action::Spawn`] for the driver. The driver
//! answers with [`Kernel::spawned`] (the child runs: its table gets handle 1, then the initial
//! names in the order given, then a SPAWN handle for each template its own template lists in
//! `may_spawn`; the spawner gets `Spawned` with a SEND|MONITOR handle to the child's mailbox, a
//! STOP handle on the child, and the reference of the `down` notice it will get) or
//! [`Kernel::spawn_failed`] (`spawn-failed`, and every reservation is returned).
//!
//! **Links.** A child is linked to its parent unless the spawn detached it. When a parent ends,
//! the kernel emits [`Action::Stop`] for each linked child (and for a linked child whose spawn
//! completes after its parent ended). When a child ends, its parent gets a `down` notice with
//! `warren-down: ended` and, when the driver reported it ([`Kernel::set_exit_status`]),
//! `warren-exit: code=N` or `warren-exit: signal=N`; the counts it held are returned.
//!
//! **Names.** A child's initial names are resolvable with `lookup(name)`, which answers the
//! existing handle (no new table entry), and `whoami` shows each such handle with its name as
//! the designation. SPAWN handles from `may_spawn` are named `template:NAME` the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use warren_proto::{
    ErrorCode, Handle, Identity, Limits, RequestId, Response, Rights, SPAWN_VERSION, Spawn, Spawned,
};

use super::{Deny, Kernel, check_label};
use crate::action::{Action, SpawnOrder};
use crate::caps::{CapId, CapSpec};
use crate::mailbox::MailboxId;
use crate::{EnvId, Millis};

/// The owner of a grant's pseudo-mailbox: no environment.
const NOBODY: EnvId = EnvId(0);

/// The rights of a SPAWN handle an environment gets from `may_spawn`.
pub const SPAWN_RIGHTS: Rights = Rights(Rights::SPAWN.0 | Rights::GRANT.0);

/// The rights of the spawner's handle to a child's default mailbox.
pub const CHILD_MAILBOX_RIGHTS: Rights = Rights(Rights::SEND.0 | Rights::MONITOR.0);

/// Most live (or starting) children one environment may have at once, unless the driver sets
/// another bound with [`Kernel::set_max_children`].
pub const DEFAULT_MAX_CHILDREN: usize = 1024;

/// The prefix under which `lookup` and `whoami` name a SPAWN handle from `may_spawn`.
pub const TEMPLATE_PREFIX: &str = "template:";

/// A template as the kernel needs to know it (the driver keeps the image and command).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateInfo {
    /// The template's name (a label).
    pub name: String,
    /// Most live children of it, host-wide.
    pub max_instances: u32,
    /// Whether a spawner may append arguments.
    pub args: bool,
    /// The variables a spawner may set.
    pub env_allow: Vec<String>,
    /// Whether a spawner may detach a child.
    pub detach: bool,
    /// Ceilings for each child (`None`: no ceiling of the template's own).
    pub limits: Limits,
    /// Templates a child of this one may spawn from.
    pub may_spawn: Vec<String>,
    /// Mailbox capacity of its children; `None` = the kernel's default.
    pub mailbox_capacity: Option<usize>,
}

/// How an environment ended, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl ExitStatus {
    /// The value of the `warren-exit` header: `code=N` or `signal=N`.
    pub fn header_value(self) -> String {
        match self {
            ExitStatus::Code(n) => format!("code={n}"),
            ExitStatus::Signal(n) => format!("signal={n}"),
        }
    }
}

/// One initial name of a child, as kept across a kernel restart ([`Kernel::kept_child`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptName {
    /// The name.
    pub name: String,
    /// The environment whose default mailbox it designated; `None` if it designated anything
    /// else (it cannot be restored, and comes back dead).
    pub target: Option<String>,
    /// Its rights (the protocol's bits).
    pub rights: u32,
}

/// What a driver keeps of a running child across a kernel restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptChild {
    /// Its spawner's name.
    pub parent: String,
    /// Its template.
    pub template: String,
    /// Whether it was detached.
    pub detached: bool,
    /// The reference of its spawner's `down` notice.
    pub reference: u64,
    /// Its initial names, in installation order.
    pub names: Vec<KeptName>,
    /// The numbers of its spawner's own handles to it (Spawned's `mailbox`, `control`), given
    /// back under the same numbers when both are taken back. `None` in a registry written
    /// before they were kept.
    #[serde(default)]
    pub spawner_handles: Option<(Handle, Handle)>,
}

/// The header a child's `down` notice carries with its exit status.
pub const EXIT_HEADER: &str = "warren-exit";

/// The header a restarted child's final `down` notice carries: how many times it was
/// restarted in place (absent when it never was).
pub const RESTARTS_HEADER: &str = "warren-restarts";

/// The header of the final `down` of a child whose restarts were given up (a crash loop):
/// why, e.g. `max_restarts=3 reached`.
pub const GAVE_UP_HEADER: &str = "warren-gave-up";

/// One template's kernel state.
#[derive(Debug)]
struct TemplateState {
    info: TemplateInfo,
    /// Live or starting children, host-wide.
    live: u32,
    /// The root grant (what `may_spawn` handles designate).
    grant: MailboxId,
    /// Whether the last `set_templates` declared it. A template no longer declared keeps its
    /// state (its running children still count, its handles still designate it) and refuses
    /// spawns; declared again, it is the same template again.
    declared: bool,
}

/// What a SPAWN capability designates.
#[derive(Debug, Clone)]
struct Grant {
    template: String,
    /// The budgets a spawn through it counts against, outermost first.
    budgets: Vec<u64>,
    /// Its ceilings (already within the template's and its parent grant's).
    limits: Limits,
}

/// A `max_instances` share made by `Restrict`.
#[derive(Debug)]
struct Budget {
    share: u32,
    live: u32,
}

/// A spawn accepted, waiting for the driver.
#[derive(Debug)]
struct Pending {
    parent: EnvId,
    id: RequestId,
    child: String,
    template: String,
    budgets: Vec<u64>,
    detach: bool,
    names: Vec<(String, CapId)>,
}

/// A running child's link to what made it.
#[derive(Debug)]
struct Link {
    parent: EnvId,
    template: String,
    budgets: Vec<u64>,
    detached: bool,
    /// The reference of the parent's `down` notice.
    reference: u64,
    /// The parent's handles to the child (Spawned's `mailbox`, `control`), once given.
    spawner_handles: Option<(Handle, Handle)>,
}

/// Everything spawn keeps, apart from the capability objects themselves.
#[derive(Debug)]
pub(super) struct SpawnState {
    templates: BTreeMap<String, TemplateState>,
    grants: BTreeMap<MailboxId, Grant>,
    budgets: BTreeMap<u64, Budget>,
    next_budget: u64,
    pending: BTreeMap<u64, Pending>,
    next_ticket: u64,
    /// Names reserved by pending spawns.
    reserved: BTreeSet<String>,
    /// Running children, by child.
    links: BTreeMap<EnvId, Link>,
    /// Live and starting children, by parent.
    children: BTreeMap<EnvId, BTreeSet<EnvId>>,
    starting: BTreeMap<EnvId, usize>,
    /// Named handles (initial names, `template:NAME`), by environment, in installation order.
    names: BTreeMap<EnvId, Vec<(String, Handle)>>,
    /// Templates each environment declares in `may_spawn`.
    may_spawn: BTreeMap<EnvId, Vec<String>>,
    /// Exit statuses the driver reported, until the environment is removed.
    exit: BTreeMap<EnvId, ExitStatus>,
    /// Children restarted in place under their template's `restart` policy, and how often.
    restarts: BTreeMap<EnvId, u32>,
    /// Children the driver gave up restarting, with why (their final `down` says it).
    gave_up: BTreeMap<EnvId, String>,
    /// Re-adopted children whose spawner has not registered with this kernel yet, by the
    /// spawner's name.
    unlinked: BTreeMap<String, Vec<EnvId>>,
    /// Initial names of re-adopted children whose target had not registered again: by the
    /// target's name, (child, handle, rights), re-pointed when it registers.
    placeholders: BTreeMap<String, Vec<(EnvId, Handle, u32)>>,
    next_child: u64,
    max_children: usize,
    bounds: SpawnBounds,
}

/// The inclusive range each limit a spawner asks for must be within, whatever the ceilings:
/// the launcher's own bounds (`docs/manifest.md`, "Bounds"), so that a value it would refuse is
/// refused at once with `bad-request` instead of failing the child's start. The driver sets
/// them ([`Kernel::set_spawn_bounds`]); by default only 0 is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpawnBounds {
    /// Bytes.
    pub memory: (u64, u64),
    /// Processes.
    pub pids: (u64, u64),
    /// Millionths of a cpu.
    pub cpus: (u64, u64),
    /// Bytes.
    pub tmpfs_size: (u64, u64),
}

impl Default for SpawnBounds {
    fn default() -> SpawnBounds {
        SpawnBounds {
            memory: (1, u64::MAX),
            pids: (1, u64::MAX),
            cpus: (1, u64::MAX),
            tmpfs_size: (1, u64::MAX),
        }
    }
}

impl Default for SpawnState {
    fn default() -> SpawnState {
        SpawnState {
            templates: BTreeMap::new(),
            grants: BTreeMap::new(),
            budgets: BTreeMap::new(),
            next_budget: 1,
            pending: BTreeMap::new(),
            next_ticket: 1,
            reserved: BTreeSet::new(),
            links: BTreeMap::new(),
            children: BTreeMap::new(),
            starting: BTreeMap::new(),
            names: BTreeMap::new(),
            may_spawn: BTreeMap::new(),
            exit: BTreeMap::new(),
            restarts: BTreeMap::new(),
            gave_up: BTreeMap::new(),
            unlinked: BTreeMap::new(),
            placeholders: BTreeMap::new(),
            next_child: 1,
            max_children: DEFAULT_MAX_CHILDREN,
            bounds: SpawnBounds::default(),
        }
    }
}

/// `a` within ceiling `max` (`None`: no ceiling).
fn within(a: Option<u64>, max: Option<u64>) -> bool {
    match (a, max) {
        (Some(a), Some(m)) => a <= m,
        _ => true,
    }
}

/// The smaller of two ceilings.
fn lower(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Each limit the lower of both.
fn lower_limits(a: &Limits, b: &Limits) -> Limits {
    Limits {
        memory: lower(a.memory, b.memory),
        pids: lower(a.pids, b.pids),
        cpus: lower(a.cpus, b.cpus),
        tmpfs_size: lower(a.tmpfs_size, b.tmpfs_size),
    }
}

impl Kernel {
    // ----- the driver's interface -----

    /// Declares the templates (replacing any declared before). A template declared before
    /// keeps its state — its live count, its grant — even across a declaration that left it
    /// out: its running children still count against `max_instances` when it comes back, and
    /// the handles made from it designate it again. Running environments whose `may_spawn`
    /// names a template they have no handle for yet get one now.
    pub fn set_templates(&mut self, templates: Vec<TemplateInfo>) {
        // Templates no longer declared refuse further spawns (`not-allowed`); their handles
        // stay (and say `dead` in whoami's view) until the template is declared again.
        for old in self.spawn.templates.values_mut() {
            old.declared = false;
            if let Some(mb) = self.mailboxes.get_mut(&old.grant) {
                mb.alive = false;
            }
        }
        for info in templates {
            let name = info.name.clone();
            let old_grant = self.spawn.templates.get(&name).map(|t| t.grant);
            // Its grant mailbox, revived; or a new one (first declaration, or the old one was
            // freed when its last handle went).
            let grant = match old_grant.filter(|g| self.mailboxes.contains_key(g)) {
                Some(g) => {
                    self.mailboxes.get_mut(&g).expect("checked").alive = true;
                    g
                }
                None => {
                    let label: Arc<str> = Arc::from(format!("{TEMPLATE_PREFIX}{name}"));
                    let designation: Box<str> = label.as_ref().into();
                    let g = self.new_mailbox(NOBODY, label, designation, None, 0);
                    self.spawn.grants.insert(
                        g,
                        Grant {
                            template: name.clone(),
                            budgets: Vec::new(),
                            limits: Limits::default(),
                        },
                    );
                    g
                }
            };
            let live = self.spawn.templates.get(&name).map_or(0, |t| t.live);
            self.spawn.templates.insert(
                name,
                TemplateState {
                    info,
                    live,
                    grant,
                    declared: true,
                },
            );
        }
        let envs: Vec<EnvId> = self.spawn.may_spawn.keys().copied().collect();
        for env in envs {
            self.grant_templates(env);
        }
    }

    /// Declares the templates environment `env` may spawn from (its `may_spawn`) and installs
    /// a SPAWN|GRANT handle, named `template:NAME`, for each declared template it has none for.
    pub fn set_may_spawn(&mut self, env: EnvId, templates: Vec<String>) {
        if !self.envs.contains_key(&env) {
            return;
        }
        self.spawn.may_spawn.insert(env, templates);
        self.grant_templates(env);
    }

    /// Bounds the live children one environment may have at once (default
    /// [`DEFAULT_MAX_CHILDREN`]).
    pub fn set_max_children(&mut self, max: usize) {
        self.spawn.max_children = max;
    }

    /// Sets the range each limit of a Spawn must be within ([`SpawnBounds`]).
    pub fn set_spawn_bounds(&mut self, bounds: SpawnBounds) {
        self.spawn.bounds = bounds;
    }

    /// Records how `env` ended, for the `warren-exit` header of its parent's `down` notice.
    /// Call it before [`remove_env`](Kernel::remove_env).
    pub fn set_exit_status(&mut self, env: EnvId, status: ExitStatus) {
        if self.envs.contains_key(&env) {
            self.spawn.exit.insert(env, status);
        }
    }

    /// The spawn of [`Action::Spawn`] `ticket` succeeded: the child runs. Registers it (its
    /// table: handle 1, the initial names, then its SPAWN handles), links it, and answers the
    /// spawner. If the spawner has ended meanwhile, a linked child is stopped at once
    /// ([`Action::Stop`]). Returns the child's id.
    pub fn spawned(&mut self, ticket: u64, now: Millis) -> Result<EnvId, crate::KernelError> {
        self.advance(now);
        let Some(p) = self.spawn.pending.remove(&ticket) else {
            return Err(crate::KernelError::UnknownTicket { ticket });
        };
        self.spawn.reserved.remove(&p.child);
        let capacity = self
            .spawn
            .templates
            .get(&p.template)
            .and_then(|t| t.info.mailbox_capacity);
        let spec = crate::EnvSpec {
            name: p.child.clone(),
            mailbox_capacity: capacity,
            ..crate::EnvSpec::default()
        };
        let child = match self.add_env(spec, now) {
            Ok(c) => c,
            Err(e) => {
                self.unreserve(&p);
                self.answer_failed(&p, &e.to_string());
                for (_, cap) in p.names {
                    self.release_cap(cap);
                }
                return Err(e);
            }
        };
        if let Some(n) = self.spawn.starting.get_mut(&p.parent) {
            *n = n.saturating_sub(1);
        }
        // The initial names, in the order given.
        let mut named = Vec::with_capacity(p.names.len());
        for (name, cap) in p.names {
            let handle = self.install(child, cap);
            named.push((name, handle));
        }
        self.spawn.names.insert(child, named);
        let may_spawn = self
            .spawn
            .templates
            .get(&p.template)
            .map(|t| t.info.may_spawn.clone())
            .unwrap_or_default();
        if !may_spawn.is_empty() {
            self.set_may_spawn(child, may_spawn);
        }
        let reference = self.next_monitor;
        self.next_monitor += 1;
        self.spawn.links.insert(
            child,
            Link {
                parent: p.parent,
                template: p.template.clone(),
                budgets: p.budgets,
                detached: p.detach,
                reference,
                spawner_handles: None,
            },
        );
        if !self.envs.contains_key(&p.parent) {
            if !p.detach {
                self.stop_child(child, "its parent ended before it started");
            }
            return Ok(child);
        }
        self.spawn
            .children
            .entry(p.parent)
            .or_default()
            .insert(child);
        let mb = self.envs[&child].default_mailbox;
        let mailbox = if self.has_room(p.parent, 2) {
            let cap = self.mint(Self::root_spec(mb, CHILD_MAILBOX_RIGHTS), None);
            let mailbox = self.install(p.parent, cap);
            let cap = self.mint(Self::root_spec(mb, Rights::STOP), None);
            let control = self.install(p.parent, cap);
            Some((mailbox, control))
        } else {
            None
        };
        if let (Some(handles), Some(link)) = (mailbox, self.spawn.links.get_mut(&child)) {
            link.spawner_handles = Some(handles);
        }
        match mailbox {
            Some((mailbox, control)) => {
                let answer = Spawned {
                    child: p.child,
                    mailbox,
                    control,
                    reference,
                };
                self.respond(p.parent, p.id, Response::Spawned(answer));
            }
            None => {
                // The child runs but its handles cannot be given: stop it again.
                let deny = Deny::new(ErrorCode::Unavailable, "the capability table is full")
                    .target(p.child.clone());
                self.refuse(p.parent, p.id, "spawn", deny);
                self.stop_child(child, "its spawner's table was full");
            }
        }
        Ok(child)
    }

    /// Child `env` ended and its template's `restart` policy starts it again **as the same
    /// child** (docs/protocol.md §16): it keeps its id, name, default mailbox (with the
    /// messages queued in it, and the spawner's SEND/STOP handles to it), its link, its `down`
    /// reference and its count against `max_instances`; its table is cut back to what a fresh
    /// child has (handle 1, the initial names and its SPAWN handles, under the same numbers).
    /// What its previous run made goes: its waiting requests are dropped, the mailboxes it
    /// made die, the monitors it set are removed, and every other handle is released. No
    /// `down` is sent: the spawner sees only the final end. The driver then registers the new
    /// launcher under this id. Returns false if `env` is not a running spawned child.
    pub fn restart_child(&mut self, env: EnvId, now: Millis) -> bool {
        self.advance(now);
        if !self.spawn.links.contains_key(&env) {
            return false;
        }
        let Some(e) = self.envs.get_mut(&env) else {
            return false;
        };
        let waiting: Vec<MailboxId> = e.waiting_in.keys().copied().collect();
        e.waiting = 0;
        e.waiting_in.clear();
        let default = e.default_mailbox;
        let made: Vec<MailboxId> = e
            .mailboxes
            .iter()
            .copied()
            .filter(|m| *m != default)
            .collect();
        e.mailboxes.retain(|m| *m == default);
        let watching = std::mem::take(&mut e.watching);
        let keep: BTreeSet<Handle> = self
            .spawn
            .names
            .get(&env)
            .into_iter()
            .flatten()
            .map(|(_, h)| *h)
            .chain([super::DEFAULT_MAILBOX_HANDLE])
            .collect();
        let e = self.envs.get_mut(&env).expect("checked above");
        let dropped: Vec<CapId> = {
            let (kept, gone): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut e.table)
                .into_iter()
                .partition(|(h, _)| keep.contains(h));
            e.table = kept;
            gone.into_values().collect()
        };
        self.drop_waiting(env, waiting);
        for mb in made {
            self.kill_mailbox(mb, "its owner restarted");
        }
        for key in &watching {
            self.monitors.remove(key);
        }
        for cap in dropped {
            self.release_cap(cap);
        }
        // Its children belong to the run that ended, as if it had ended: the linked ones are
        // stopped (their cgroups were under that run's), and none stays linked to the next
        // run, which never had their handles or references: their ends send it no `down`. A
        // spawn still starting completes as for an ended spawner (a linked child is stopped,
        // nothing is answered).
        if let Some(children) = self.spawn.children.remove(&env) {
            for child in children {
                let Some(link) = self.spawn.links.get_mut(&child) else {
                    continue;
                };
                link.parent = NOBODY;
                if !link.detached {
                    self.stop_child(child, "its parent restarted");
                }
            }
        }
        // `down` notices already queued for the previous run (of its children, of what it
        // monitored) go too: their references were the previous run's.
        if let Some(mb) = self.mailboxes.get_mut(&default) {
            let (downs, keep): (std::collections::VecDeque<_>, std::collections::VecDeque<_>) =
                std::mem::take(&mut mb.queue)
                    .into_iter()
                    .partition(|e| matches!(e, crate::mailbox::Entry::One(m) if m.down.is_some()));
            mb.queue = keep;
            mb.queued -= downs.len();
            for entry in downs {
                self.discharge_queued(default, &entry.from().clone(), entry.cost());
                self.release_entry(entry);
            }
        }
        self.spawn.starting.remove(&env);
        for p in self.spawn.pending.values_mut() {
            if p.parent == env {
                p.parent = NOBODY;
            }
        }
        self.spawn.exit.remove(&env);
        *self.spawn.restarts.entry(env).or_default() += 1;
        true
    }

    /// The driver gave up restarting child `env` (`why`, e.g. `max_restarts=3 reached`): its
    /// final `down` says so. Call it before [`remove_env`](Kernel::remove_env).
    pub fn give_up_child(&mut self, env: EnvId, why: &str) {
        if self.spawn.links.contains_key(&env) {
            self.spawn.gave_up.insert(env, why.to_owned());
        }
    }

    /// How many times child `env` was restarted in place.
    pub fn restarts_of(&self, env: EnvId) -> u32 {
        self.spawn.restarts.get(&env).copied().unwrap_or(0)
    }

    /// The spawn of [`Action::Spawn`] `ticket` failed (`why` says how): the spawner is
    /// answered `spawn-failed`, and everything reserved for the child is returned.
    pub fn spawn_failed(&mut self, ticket: u64, why: &str, now: Millis) {
        self.advance(now);
        let Some(p) = self.spawn.pending.remove(&ticket) else {
            return;
        };
        self.spawn.reserved.remove(&p.child);
        self.unreserve(&p);
        if let Some(n) = self.spawn.starting.get_mut(&p.parent) {
            *n = n.saturating_sub(1);
        }
        self.answer_failed(&p, why);
        for (_, cap) in p.names {
            self.release_cap(cap);
        }
    }

    /// The environment that spawned `env`, while `env` runs linked or detached.
    pub fn parent_of(&self, env: EnvId) -> Option<EnvId> {
        // A child taken back before its spawner registered again has no parent yet.
        self.spawn
            .links
            .get(&env)
            .map(|l| l.parent)
            .filter(|p| *p != NOBODY)
    }

    /// The template `env` was spawned from.
    pub fn template_of(&self, env: EnvId) -> Option<&str> {
        self.spawn.links.get(&env).map(|l| l.template.as_str())
    }

    /// Whether `env` was spawned detached.
    pub fn is_detached(&self, env: EnvId) -> bool {
        self.spawn.links.get(&env).is_some_and(|l| l.detached)
    }

    /// The running children of `env`, in id order.
    pub fn children_of(&self, env: EnvId) -> Vec<EnvId> {
        self.spawn
            .children
            .get(&env)
            .map(|c| c.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Live and starting children of template `name`, host-wide.
    pub fn template_live(&self, name: &str) -> Option<u32> {
        self.spawn.templates.get(name).map(|t| t.live)
    }

    // ----- a kernel restart -----

    /// What the driver keeps of running child `env` so that a later kernel can take it back
    /// ([`Kernel::readopt_child`]): its spawner, template, link, the reference of the spawner's
    /// `down` notice and its initial names. `None` for an environment that was not spawned.
    pub fn kept_child(&self, env: EnvId) -> Option<KeptChild> {
        let link = self.spawn.links.get(&env)?;
        let parent = self.envs.get(&link.parent).map(|e| e.name.to_string())?;
        let names = self
            .spawn
            .names
            .get(&env)
            .into_iter()
            .flatten()
            .filter(|(name, _)| !name.starts_with(TEMPLATE_PREFIX))
            .map(|(name, handle)| {
                let target = self.envs[&env]
                    .table
                    .get(handle)
                    .map(|cap| self.caps.get(*cap))
                    .and_then(|cap| {
                        let mb = self.mailboxes.get(&cap.mailbox)?;
                        let owner = self.envs.get(&mb.owner)?;
                        (owner.default_mailbox == cap.mailbox)
                            .then(|| (owner.name.to_string(), cap.rights))
                    });
                KeptName {
                    name: name.clone(),
                    target: target.as_ref().map(|t| t.0.clone()),
                    rights: target.map_or(0, |t| t.1.0),
                }
            })
            .collect();
        Some(KeptChild {
            parent,
            template: link.template.clone(),
            detached: link.detached,
            reference: link.reference,
            names,
            spawner_handles: link.spawner_handles,
        })
    }

    /// A child spawned under a previous kernel whose launcher survived the restart registers
    /// again: it gets its mailbox (handle 1), then its initial names in their order (so their
    /// handle numbers are the ones it had), then its templates' SPAWN handles, and its link to
    /// its spawner, whose `down` notice keeps its reference. A name whose target (the default
    /// mailbox of an environment, by name) has not registered again yet designates a dead
    /// mailbox until it does ([`Kernel::relink_children`]): sends through it fail with `dead`
    /// meanwhile. A name that designated anything else cannot be restored and stays dead. If the spawner is not running, the child is linked when it registers
    /// ([`Kernel::relink_children`]); the driver stops a linked child whose spawner does not
    /// come back. The counts the child held (its template's `max_instances`) are charged again;
    /// shares of restricted SPAWN handles are not (those handles ended with the old kernel).
    pub fn readopt_child(
        &mut self,
        name: &str,
        kept: &KeptChild,
        now: Millis,
    ) -> Result<EnvId, crate::KernelError> {
        let capacity = self
            .spawn
            .templates
            .get(&kept.template)
            .and_then(|t| t.info.mailbox_capacity);
        let spec = crate::EnvSpec {
            name: name.to_owned(),
            mailbox_capacity: capacity,
            ..crate::EnvSpec::default()
        };
        let child = self.add_env(spec, now)?;
        let mut named = Vec::with_capacity(kept.names.len());
        for n in &kept.names {
            let target = n
                .target
                .as_deref()
                .and_then(|t| self.names.get(t))
                .and_then(|e| self.envs.get(e))
                .map(|e| e.default_mailbox);
            let mut placeholder = false;
            let mailbox = match target {
                Some(mb) => mb,
                None => {
                    placeholder = true;
                    let label: Arc<str> = Arc::from(n.target.as_deref().unwrap_or(&n.name));
                    let designation: Box<str> = label.as_ref().into();
                    let mb = self.new_mailbox(NOBODY, label, designation, None, 0);
                    if let Some(m) = self.mailboxes.get_mut(&mb) {
                        m.alive = false;
                    }
                    mb
                }
            };
            let cap = self.mint(Self::root_spec(mailbox, Rights(n.rights)), None);
            let handle = self.install(child, cap);
            if let (true, Some(t)) = (placeholder, n.target.as_ref()) {
                // Its target may simply not have registered again yet.
                self.spawn
                    .placeholders
                    .entry(t.clone())
                    .or_default()
                    .push((child, handle, n.rights));
            }
            named.push((n.name.clone(), handle));
        }
        self.spawn.names.insert(child, named);
        let may_spawn = self
            .spawn
            .templates
            .get(&kept.template)
            .map(|t| t.info.may_spawn.clone())
            .unwrap_or_default();
        if !may_spawn.is_empty() {
            self.set_may_spawn(child, may_spawn);
        }
        if let Some(t) = self.spawn.templates.get_mut(&kept.template) {
            t.live += 1;
        }
        self.next_monitor = self.next_monitor.max(kept.reference + 1);
        let parent = self.names.get(&kept.parent).copied();
        self.spawn.links.insert(
            child,
            Link {
                parent: parent.unwrap_or(NOBODY),
                template: kept.template.clone(),
                budgets: Vec::new(),
                detached: kept.detached,
                reference: kept.reference,
                spawner_handles: kept.spawner_handles,
            },
        );
        match parent {
            Some(p) => {
                self.spawn.children.entry(p).or_default().insert(child);
                self.give_back_spawner_handles(p, child);
            }
            None => {
                self.spawn
                    .unlinked
                    .entry(kept.parent.clone())
                    .or_default()
                    .push(child);
            }
        }
        Ok(child)
    }

    /// Environment `env` registered: the re-adopted children that named it as their spawner
    /// before it was back are linked to it now, and their initial names that designate its
    /// default mailbox (dead until now) designate it again, under the same handle numbers.
    pub fn relink_children(&mut self, env: EnvId) {
        let Some((name, mailbox)) = self
            .envs
            .get(&env)
            .map(|e| (e.name.to_string(), e.default_mailbox))
        else {
            return;
        };
        for (child, handle, rights) in self.spawn.placeholders.remove(&name).unwrap_or_default() {
            let Some(old) = self
                .envs
                .get(&child)
                .and_then(|e| e.table.get(&handle).copied())
            else {
                continue;
            };
            let cap = self.mint(Self::root_spec(mailbox, Rights(rights)), None);
            if let Some(e) = self.envs.get_mut(&child) {
                e.table.insert(handle, cap);
            }
            self.release_cap(old);
        }
        for child in self.spawn.unlinked.remove(&name).unwrap_or_default() {
            if let Some(link) = self.spawn.links.get_mut(&child) {
                link.parent = env;
                self.spawn.children.entry(env).or_default().insert(child);
                self.give_back_spawner_handles(env, child);
            }
        }
    }

    /// A child taken back after a kernel restart and its spawner are both back: the spawner's
    /// own handles to it (Spawned's `mailbox` with SEND|MONITOR and `control` with STOP) are
    /// given back under the numbers they had, each where that number is free in the spawner's
    /// new table and the table has room (else that handle stays lost, as every other handle a
    /// restart loses).
    fn give_back_spawner_handles(&mut self, parent: EnvId, child: EnvId) {
        let Some((mailbox, control)) = self.spawn.links.get(&child).and_then(|l| l.spawner_handles)
        else {
            return;
        };
        let Some(mb) = self.envs.get(&child).map(|e| e.default_mailbox) else {
            return;
        };
        for (handle, rights) in [(mailbox, CHILD_MAILBOX_RIGHTS), (control, Rights::STOP)] {
            let free = self.envs.get(&parent).is_some_and(|e| {
                handle != 0
                    && !e.table.contains_key(&handle)
                    && !e.declared_slots.values().any(|&h| h == handle)
            });
            if !free || !self.has_room(parent, 1) {
                continue;
            }
            let cap = self.mint(Self::root_spec(mb, rights), None);
            if let Some(e) = self.envs.get_mut(&parent) {
                e.table.insert(handle, cap);
            }
        }
    }

    /// The re-adopted children still waiting for spawner `parent` to register.
    pub fn unlinked_children(&self, parent: &str) -> Vec<EnvId> {
        self.spawn.unlinked.get(parent).cloned().unwrap_or_default()
    }

    // ----- requests -----

    /// Spawn (see the module documentation for the order of checks).
    pub(super) fn spawn(&mut self, env: EnvId, id: RequestId, s: Spawn) -> Result<(), Deny> {
        self.need_spawn_version(env)?;
        let handle = s.handle;
        let cap_id = self.cap_of(env, handle)?;
        self.check_live(handle, cap_id)?;
        let grant = self.grant_of(handle, cap_id, "spawn")?;
        let Some(t) = self
            .spawn
            .templates
            .get(&grant.template)
            .filter(|t| t.declared)
        else {
            return Err(self.deny_at(
                ErrorCode::NotAllowed,
                handle,
                cap_id,
                "the template is no longer declared",
            ));
        };
        let info = &t.info;
        let not_allowed = |why: String| {
            Deny::new(ErrorCode::NotAllowed, why.clone())
                .handle(handle)
                .target(format!("{TEMPLATE_PREFIX}{}", info.name))
        };
        if !s.args.is_empty() && !info.args {
            return Err(not_allowed(format!(
                "template {:?} does not take arguments",
                info.name
            )));
        }
        if s.args.iter().any(|a| a.contains('\0')) {
            return Err(Deny::new(
                ErrorCode::BadRequest,
                "an argument contains a NUL byte",
            ));
        }
        let mut env_seen = BTreeSet::new();
        for (name, value) in &s.env {
            if !info.env_allow.iter().any(|a| a == name) {
                return Err(not_allowed(format!(
                    "template {:?} does not let a spawner set {name:?}",
                    info.name
                )));
            }
            if value.contains('\0') || !env_seen.insert(name.as_str()) {
                return Err(Deny::new(
                    ErrorCode::BadRequest,
                    format!("variable {name:?} is set twice or contains a NUL byte"),
                ));
            }
        }
        let ceiling = lower_limits(&info.limits, &grant.limits);
        let l = &s.limits;
        let b = self.spawn.bounds;
        for (what, asked, max, (lo, hi)) in [
            ("memory", l.memory, ceiling.memory, b.memory),
            ("pids", l.pids, ceiling.pids, b.pids),
            ("cpus", l.cpus, ceiling.cpus, b.cpus),
            ("tmpfs_size", l.tmpfs_size, ceiling.tmpfs_size, b.tmpfs_size),
        ] {
            if asked == Some(0) {
                return Err(Deny::new(
                    ErrorCode::BadRequest,
                    format!("{what} must be above zero"),
                ));
            }
            if let Some(v) = asked.filter(|v| !(lo..=hi).contains(v)) {
                return Err(Deny::new(
                    ErrorCode::BadRequest,
                    format!("{what} {v} is out of range: expected {lo} to {hi}"),
                ));
            }
            if !within(asked, max) {
                return Err(not_allowed(format!(
                    "{what} {} is above the ceiling of {}",
                    asked.unwrap_or(0),
                    max.unwrap_or(0)
                )));
            }
        }
        if s.detach && !info.detach {
            return Err(not_allowed(format!(
                "template {:?} does not allow detached children",
                info.name
            )));
        }
        let template = info.name.clone();
        let max_instances = info.max_instances;
        let child = self.child_name(&template, s.suffix.as_deref())?;
        // The initial names.
        if s.names.len() > self.config.max_handles.saturating_sub(1) {
            return Err(Deny::new(
                ErrorCode::Unavailable,
                "more initial names than a table holds",
            ));
        }
        let mut seen = BTreeSet::new();
        for (name, h) in &s.names {
            let valid = check_label(name).is_ok()
                || name
                    .strip_prefix(TEMPLATE_PREFIX)
                    .is_some_and(|t| check_label(t).is_ok());
            if !valid {
                return Err(Deny::new(
                    ErrorCode::BadRequest,
                    format!(
                        "initial name {name:?} is not valid: use 1 to 63 lowercase letters, \
                         digits and '-'"
                    ),
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(Deny::new(
                    ErrorCode::BadRequest,
                    format!("initial name {name:?} is given twice"),
                ));
            }
            let c = self.cap_of(env, *h)?;
            self.check_live(*h, c)?;
            if !self.caps.get(c).rights.contains(Rights::GRANT) {
                return Err(self.deny_at(
                    ErrorCode::NoRight,
                    *h,
                    c,
                    "an initial name's handle lacks GRANT",
                ));
            }
            // A `template:` name is the name of a SPAWN handle: it must be one, on that
            // template, or the child would find a mailbox (or another template) under a
            // template's name instead of the SPAWN handle its own `may_spawn` gives.
            if let Some(t) = name.strip_prefix(TEMPLATE_PREFIX) {
                let cap = self.caps.get(c);
                let on = self
                    .spawn
                    .grants
                    .get(&cap.mailbox)
                    .filter(|_| cap.rights.contains(Rights::SPAWN));
                if on.is_none_or(|g| g.template != t) {
                    return Err(Deny::new(
                        ErrorCode::BadRequest,
                        format!(
                            "initial name {name:?} must be a handle with SPAWN on template {t:?}"
                        ),
                    )
                    .handle(*h));
                }
            }
        }
        // Quotas.
        let quota = |why: String| {
            Deny::new(ErrorCode::Quota, why.clone())
                .handle(handle)
                .target(format!("{TEMPLATE_PREFIX}{template}"))
        };
        if self.spawn.templates[&template].live >= max_instances {
            return Err(quota(format!(
                "template {template:?} has its {max_instances} live children (max_instances)"
            )));
        }
        for b in &grant.budgets {
            let budget = &self.spawn.budgets[b];
            if budget.live >= budget.share {
                return Err(quota(format!(
                    "this handle's share of {} live children is used",
                    budget.share
                )));
            }
        }
        let mine = self.spawn.children.get(&env).map_or(0, BTreeSet::len)
            + self.spawn.starting.get(&env).copied().unwrap_or(0);
        if mine >= self.spawn.max_children {
            return Err(quota(format!(
                "you have {mine} live children, the most allowed"
            )));
        }
        // Room for Spawned's two handles (and those of the spawns still starting): otherwise
        // the child would be started only to be stopped again.
        let in_flight = self.spawn.starting.get(&env).copied().unwrap_or(0);
        if !self.has_room(env, 2 * (in_flight + 1)) {
            return Err(Deny::new(
                ErrorCode::Unavailable,
                "your capability table has no room for the child's mailbox and STOP handles",
            )
            .handle(handle));
        }
        if !self.caps.has_uses(cap_id) {
            return Err(self.deny_at(ErrorCode::UsedUp, handle, cap_id, "the handle is used up"));
        }
        // Accepted: reserve, derive the names' capabilities, and ask the driver.
        self.caps.consume(cap_id);
        self.spawn
            .templates
            .get_mut(&template)
            .expect("checked above")
            .live += 1;
        for b in &grant.budgets {
            self.spawn
                .budgets
                .get_mut(b)
                .expect("grant budgets exist")
                .live += 1;
        }
        *self.spawn.starting.entry(env).or_default() += 1;
        let mut names = Vec::with_capacity(s.names.len());
        for (name, h) in s.names {
            let parent = self.envs[&env].table[&h];
            let p = self.caps.get(parent);
            let spec = CapSpec {
                mailbox: p.mailbox,
                rights: super::without_receive(p.rights),
                uses_left: None,
                expires_at: p.expires_at,
                badge: p.badge,
                reply: p.reply,
            };
            names.push((name, self.mint(spec, Some(parent))));
        }
        let ticket = self.spawn.next_ticket;
        self.spawn.next_ticket += 1;
        self.spawn.reserved.insert(child.clone());
        let limits = Limits {
            memory: s.limits.memory.or(ceiling.memory),
            pids: s.limits.pids.or(ceiling.pids),
            cpus: s.limits.cpus.or(ceiling.cpus),
            tmpfs_size: s.limits.tmpfs_size.or(ceiling.tmpfs_size),
        };
        let parent_name = self.envs[&env].name.to_string();
        self.spawn.pending.insert(
            ticket,
            Pending {
                parent: env,
                id,
                child: child.clone(),
                template: template.clone(),
                budgets: grant.budgets.clone(),
                detach: s.detach,
                names,
            },
        );
        self.actions.push_back(Action::Spawn(Box::new(SpawnOrder {
            ticket,
            parent: env,
            parent_name,
            template,
            child,
            args: s.args,
            env: s.env,
            limits,
            detach: s.detach,
        })));
        Ok(())
    }

    /// Stop: needs STOP on a handle to an environment's mailbox.
    pub(super) fn stop(
        &mut self,
        env: EnvId,
        id: RequestId,
        handle: Handle,
        kill: bool,
    ) -> Result<(), Deny> {
        self.need_spawn_version(env)?;
        let cap_id = self.cap_of(env, handle)?;
        self.check_live(handle, cap_id)?;
        let cap = self.caps.get(cap_id);
        if !cap.rights.contains(Rights::STOP) {
            return Err(self.deny_at(ErrorCode::NoRight, handle, cap_id, "the handle lacks STOP"));
        }
        let mb = &self.mailboxes[&cap.mailbox];
        let target = mb.owner;
        if !mb.alive || !self.envs.contains_key(&target) {
            return Err(self.deny_at(ErrorCode::Dead, handle, cap_id, "it has ended"));
        }
        let name = self.envs[&target].name.to_string();
        self.actions.push_back(Action::Stop {
            env: target,
            name,
            kill,
            why: format!("stopped by {}", self.envs[&env].name),
        });
        self.respond(env, id, Response::Ok);
        Ok(())
    }

    /// Restrict: a new SPAWN handle with a smaller share and lower ceilings.
    pub(super) fn restrict(
        &mut self,
        env: EnvId,
        id: RequestId,
        handle: Handle,
        share: Option<u32>,
        limits: Limits,
    ) -> Result<(), Deny> {
        self.need_spawn_version(env)?;
        let cap_id = self.cap_of(env, handle)?;
        self.check_live(handle, cap_id)?;
        let grant = self.grant_of(handle, cap_id, "restrict")?;
        if share == Some(0) {
            return Err(Deny::new(
                ErrorCode::BadRequest,
                "a share of 0 allows nothing",
            ));
        }
        if !self.has_room(env, 1) {
            return Err(Deny::new(
                ErrorCode::Unavailable,
                "the capability table is full",
            ));
        }
        let mut budgets = grant.budgets.clone();
        if let Some(share) = share {
            let b = self.spawn.next_budget;
            self.spawn.next_budget += 1;
            self.spawn.budgets.insert(b, Budget { share, live: 0 });
            budgets.push(b);
        }
        let restricted = Grant {
            template: grant.template.clone(),
            budgets,
            limits: lower_limits(&grant.limits, &limits),
        };
        let name: Arc<str> = Arc::from(format!("{TEMPLATE_PREFIX}{}", grant.template));
        let designation: Box<str> = format!("{name} (restricted)").into();
        let mb = self.new_mailbox(NOBODY, name, designation, None, 0);
        self.spawn.grants.insert(mb, restricted);
        let parent = self.caps.get(cap_id);
        let spec = CapSpec {
            mailbox: mb,
            rights: parent.rights,
            uses_left: None,
            expires_at: parent.expires_at,
            badge: parent.badge,
            reply: false,
        };
        let rights = spec.rights;
        let cap = self.mint(spec, Some(cap_id));
        let new = self.install(env, cap);
        self.respond(
            env,
            id,
            Response::Handle {
                handle: new,
                rights,
            },
        );
        Ok(())
    }

    /// `lookup(name)` of one of the caller's named handles: that handle, if it still holds it.
    pub(super) fn lookup_named(&mut self, env: EnvId, id: RequestId, name: &str) -> bool {
        let Some(h) = self
            .spawn
            .names
            .get(&env)
            .and_then(|n| n.iter().find(|(n, _)| n == name).map(|&(_, h)| h))
        else {
            return false;
        };
        let Some(&cap) = self.envs[&env].table.get(&h) else {
            return false;
        };
        let rights = self.caps.get(cap).rights;
        self.respond(env, id, Response::Handle { handle: h, rights });
        true
    }

    /// Shows each named handle under its name in `identity`.
    pub(super) fn name_handles(&self, env: EnvId, identity: &mut Identity) {
        let Some(names) = self.spawn.names.get(&env) else {
            return;
        };
        for (h, designation, _) in &mut identity.handles {
            if let Some((n, _)) = names.iter().find(|(_, nh)| nh == h) {
                *designation = n.clone();
            }
        }
    }

    /// `env` is ending (called first thing by `remove_env`): linked children are stopped, the
    /// counts it held are returned, and its parent gets the `down` notice.
    pub(super) fn spawn_env_ending(&mut self, env: EnvId) {
        let status = self.spawn.exit.remove(&env);
        let restarts = self.spawn.restarts.remove(&env).unwrap_or(0);
        let gave_up = self.spawn.gave_up.remove(&env);
        self.spawn.names.remove(&env);
        self.spawn.may_spawn.remove(&env);
        self.spawn.starting.remove(&env);
        // Its children: the linked ones are stopped; all lose their parent.
        if let Some(children) = self.spawn.children.remove(&env) {
            for child in children {
                let linked = self.spawn.links.get(&child).is_some_and(|l| !l.detached);
                if linked {
                    self.stop_child(child, "its parent ended");
                }
            }
        }
        // Itself, if it was spawned.
        let Some(link) = self.spawn.links.remove(&env) else {
            return;
        };
        if let Some(t) = self.spawn.templates.get_mut(&link.template) {
            t.live = t.live.saturating_sub(1);
        }
        for b in &link.budgets {
            if let Some(budget) = self.spawn.budgets.get_mut(b) {
                budget.live = budget.live.saturating_sub(1);
            }
        }
        if let Some(siblings) = self.spawn.children.get_mut(&link.parent) {
            siblings.remove(&env);
        }
        if self.envs.contains_key(&link.parent) {
            let name = self.envs[&env].name.clone();
            let mut headers = vec![(
                super::DOWN_HEADER.0.to_string(),
                super::DOWN_HEADER.1.to_vec(),
            )];
            if let Some(s) = status {
                headers.push((EXIT_HEADER.to_string(), s.header_value().into_bytes()));
            }
            if restarts > 0 {
                headers.push((
                    RESTARTS_HEADER.to_string(),
                    restarts.to_string().into_bytes(),
                ));
            }
            if let Some(why) = gave_up {
                headers.push((GAVE_UP_HEADER.to_string(), why.into_bytes()));
            }
            let mb = self.envs[&link.parent].default_mailbox;
            let msg = crate::mailbox::Stored {
                from: name,
                badge: 0,
                headers,
                correlation: None,
                body: Vec::new(),
                caps: Vec::new(),
                reply: None,
                down: Some(link.reference),
                ticket: None,
            };
            self.place(mb, msg, None);
        }
    }

    /// Hides rights a version-1 or -2 connection cannot decode.
    pub(super) fn mask_rights(version: u16, response: &mut Response) {
        if version >= SPAWN_VERSION {
            return;
        }
        match response {
            Response::Handle { rights, .. } => *rights = rights.intersect(Rights::KNOWN_V2),
            Response::Identity(identity) => {
                for (_, _, rights) in &mut identity.handles {
                    *rights = rights.intersect(Rights::KNOWN_V2);
                }
            }
            _ => {}
        }
    }

    // ----- helpers -----

    fn need_spawn_version(&self, env: EnvId) -> Result<(), Deny> {
        if self.envs[&env].version < SPAWN_VERSION {
            return Err(Deny::new(
                ErrorCode::BadRequest,
                "spawn, stop and restrict need protocol version 3",
            ));
        }
        Ok(())
    }

    /// The grant a SPAWN handle designates (`no-right` without SPAWN, `used-up` without uses).
    fn grant_of(&self, handle: Handle, cap_id: CapId, op: &str) -> Result<Grant, Deny> {
        let cap = self.caps.get(cap_id);
        let grant = self.spawn.grants.get(&cap.mailbox);
        match grant {
            Some(g) if cap.rights.contains(Rights::SPAWN) => Ok(g.clone()),
            _ => Err(self.deny_at(
                ErrorCode::NoRight,
                handle,
                cap_id,
                &format!("{op} needs a handle with SPAWN on a template"),
            )),
        }
    }

    /// The child's name: `TEMPLATE-SUFFIX`, or `TEMPLATE-N` with the next free number.
    fn child_name(&mut self, template: &str, suffix: Option<&str>) -> Result<String, Deny> {
        let taken = |k: &Kernel, n: &str| k.names.contains_key(n) || k.spawn.reserved.contains(n);
        match suffix {
            Some(s) => {
                let name = format!("{template}-{s}");
                if let Err(why) = check_label(&name) {
                    return Err(Deny::new(
                        ErrorCode::BadRequest,
                        format!("the child's name {name:?} is invalid: {why}"),
                    ));
                }
                if taken(self, &name) {
                    return Err(Deny::new(
                        ErrorCode::BadRequest,
                        format!("an environment called {name:?} already runs"),
                    ));
                }
                if self.name_is_declared(&name) {
                    return Err(Deny::new(
                        ErrorCode::BadRequest,
                        format!(
                            "{name:?} is named in an environment's may_send or may_discover: a \
                             child may not take a name the administrator gave authority to"
                        ),
                    ));
                }
                Ok(name)
            }
            None => loop {
                let name = format!("{template}-{}", self.spawn.next_child);
                self.spawn.next_child += 1;
                if check_label(&name).is_err() {
                    return Err(Deny::new(
                        ErrorCode::BadRequest,
                        "the template's name leaves no room for a number: give a suffix",
                    ));
                }
                if !taken(self, &name) && !self.name_is_declared(&name) {
                    return Ok(name);
                }
            },
        }
    }

    /// Whether a running environment's `may_send` or `may_discover` names environment `name`
    /// (as `NAME` or `NAME/MAILBOX`): whoever registers under that name gets that authority
    /// (a send capability, a lookup), so a spawner may not choose it for a child.
    fn name_is_declared(&self, name: &str) -> bool {
        let names_it =
            |entry: &String| !entry.contains('@') && entry.split('/').next() == Some(name);
        self.declared_to.contains_key(name)
            || self
                .envs
                .values()
                .any(|e| e.may_send.iter().chain(&e.may_discover).any(names_it))
    }

    /// Installs the SPAWN handles `env`'s `may_spawn` declares and it lacks.
    fn grant_templates(&mut self, env: EnvId) {
        let Some(declared) = self.spawn.may_spawn.get(&env).cloned() else {
            return;
        };
        for t in declared {
            let key = format!("{TEMPLATE_PREFIX}{t}");
            let held = self
                .spawn
                .names
                .get(&env)
                .is_some_and(|n| n.iter().any(|(n, _)| *n == key));
            let Some(grant) = self
                .spawn
                .templates
                .get(&t)
                .filter(|s| s.declared)
                .map(|s| s.grant)
            else {
                continue;
            };
            if held || !self.has_room(env, 1) {
                continue;
            }
            let cap = self.mint(Self::root_spec(grant, SPAWN_RIGHTS), None);
            let handle = self.install(env, cap);
            self.spawn.names.entry(env).or_default().push((key, handle));
        }
    }

    /// Returns a failed or abandoned spawn's counts.
    fn unreserve(&mut self, p: &Pending) {
        if let Some(t) = self.spawn.templates.get_mut(&p.template) {
            t.live = t.live.saturating_sub(1);
        }
        for b in &p.budgets {
            if let Some(budget) = self.spawn.budgets.get_mut(b) {
                budget.live = budget.live.saturating_sub(1);
            }
        }
    }

    fn answer_failed(&mut self, p: &Pending, why: &str) {
        let deny = Deny::new(
            ErrorCode::SpawnFailed,
            format!("the child could not be started: {why}"),
        )
        .target(p.child.clone());
        self.refuse(p.parent, p.id, "spawn", deny);
    }

    /// Asks the driver to stop `child`.
    fn stop_child(&mut self, child: EnvId, why: &str) {
        if let Some(e) = self.envs.get(&child) {
            let name = e.name.to_string();
            self.actions.push_back(Action::Stop {
                env: child,
                name,
                kill: false,
                why: why.to_owned(),
            });
        }
    }
}
