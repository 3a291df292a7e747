//! The state machine: environments, their c-lists and mailboxes, waiting requests, monitors.
//!
//! Every public method takes the driver's `now`; none reads a clock or touches a descriptor.
//! Results come out of [`Kernel::poll_action`] in the order they were decided.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use warren_proto::{
    Bodies, Deliveries, Delivery, ErrorCode, Filter, Handle, Identity, MIN_VERSION, Message,
    Request, RequestId, Response, Rights, Run, Sender, VERSION,
};

use crate::action::{Action, AuditRecord};
use crate::audit::AuditLimiter;
use crate::caps::{CapId, CapSpec, Caps};
use crate::mailbox::{
    Entry, Mailbox, MailboxId, RunStored, SendReply, Stored, WaitingRecv, WaitingSend, body_costs,
    matches, takes_plain,
};
use crate::{EnvId, Millis};

mod remote;
pub(crate) mod spawn;
pub use remote::{Export, Import, Inbound, InjectError, Outbound, accepts};

/// The handle of an environment's default mailbox (with RECEIVE) in its own table.
pub const DEFAULT_MAILBOX_HANDLE: Handle = 1;

/// The rights of a mailbox owner's own handle to it.
const OWNER_RIGHTS: Rights =
    Rights(Rights::RECEIVE.0 | Rights::SEND.0 | Rights::GRANT.0 | Rights::MONITOR.0);
/// The rights of a handle to a name in `may_send` (initial grant or lookup).
const MAY_SEND_RIGHTS: Rights = Rights(Rights::SEND.0 | Rights::GRANT.0 | Rights::MONITOR.0);
/// The rights of a handle looked up through `may_discover` alone.
const MAY_DISCOVER_RIGHTS: Rights = Rights(Rights::SEND.0 | Rights::MONITOR.0);

/// The most bytes of bodies and run headers one batch delivery carries, so that its frame stays
/// within `MAX_FRAME` (a delivery always carries at least one message, which always fits).
const DELIVERIES_BUDGET: usize = warren_proto::MAX_FRAME - 64;

/// The header a `down` notice carries: `warren-down: ended`.
pub const DOWN_HEADER: (&str, &[u8]) = ("warren-down", b"ended");

/// Limits and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Mailbox capacity (queued messages) when the environment's spec does not say.
    pub default_capacity: usize,
    /// Most handles one environment's table may hold (1024: a `whoami` answer lists at most 1024); past it, requests that would add one
    /// (and deliveries that would install more) answer `unavailable`. Also bounds the monitors
    /// one environment may hold.
    pub max_handles: usize,
    /// Most mailboxes (the default one included) one environment may own.
    pub max_mailboxes_per_env: usize,
    /// Most requests of one environment that may wait at once (sends waiting for room and
    /// receives waiting for a message); past it, a request that would wait answers
    /// `unavailable`.
    pub max_waiting_per_env: usize,
    /// An environment's byte quota when its spec does not say ([`EnvSpec::mailbox_bytes`]):
    /// the most bytes (as [`message_cost`] counts them) it may pin in the kernel — messages
    /// queued in the mailboxes it owns plus its own sends waiting for room anywhere.
    pub default_mailbox_bytes: usize,
    /// Audit aggregation: within this many milliseconds, repeated denials of one environment
    /// with the same operation, code and reason are counted, not written one by one.
    pub audit_window_ms: Millis,
    /// Audit rate limit: at most this many records per environment per window; the rest are
    /// aggregated (and counted) until the window ends.
    pub audit_records_per_window: u32,
}

/// What one queued or waiting message counts against a byte quota besides its body and
/// headers: the kernel's bookkeeping for it, so that empty messages are not free.
pub const MESSAGE_OVERHEAD: usize = 64;

/// What a message counts against a byte quota: its body, its headers' names and values, and
/// [`MESSAGE_OVERHEAD`].
pub fn message_cost(body: usize, headers: &[(String, Vec<u8>)]) -> usize {
    let headers: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    body + headers + MESSAGE_OVERHEAD
}

/// One sender may hold at most this fraction (1/n) of a receiving environment's byte quota in
/// its queues: a single sender cannot use up a receiver's whole quota and shut out the others.
pub const SENDER_SHARE_DIVISOR: usize = 4;

impl Default for Config {
    fn default() -> Config {
        Config {
            default_capacity: 64,
            max_handles: 1024,
            max_mailboxes_per_env: 64,
            max_waiting_per_env: 1024,
            default_mailbox_bytes: 16 * 1024 * 1024,
            audit_window_ms: 10_000,
            audit_records_per_window: 10,
        }
    }
}

/// An environment as the kernel needs to know it: its name and its policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvSpec {
    /// The environment's name (a label: 1 to 63 bytes of `[a-z0-9-]`, not starting or ending
    /// with `-`); its default mailbox has the same name.
    pub name: String,
    /// Names it may send to: environment names get an initial handle each; `env/mailbox` names
    /// are found by `lookup`. Both with SEND, GRANT and MONITOR.
    pub may_send: Vec<String>,
    /// Further names it may find by `lookup`, with SEND and MONITOR only.
    pub may_discover: Vec<String>,
    /// Capacity of its mailboxes; `None` = [`Config::default_capacity`].
    pub mailbox_capacity: Option<usize>,
    /// Its byte quota; `None` = [`Config::default_mailbox_bytes`].
    pub mailbox_bytes: Option<usize>,
}

/// Why an environment could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The name is not a valid label.
    #[error("environment name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A running environment already has that name.
    #[error("environment name {name:?} is already used by a running environment")]
    NameInUse {
        /// The name.
        name: String,
    },
    /// [`Kernel::spawned`] named a ticket no spawn waits under.
    #[error("no spawn is waiting under ticket {ticket}")]
    UnknownTicket {
        /// The ticket.
        ticket: u64,
    },
    /// Every environment id has been used.
    #[error("cannot add environment {name:?}: environment ids are exhausted")]
    IdsExhausted {
        /// The name of the environment that could not be added.
        name: String,
    },
}

/// Counts of the kernel's objects, for `warren ps`-like views and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Running environments.
    pub envs: usize,
    /// Live mailboxes.
    pub mailboxes: usize,
    /// Capability objects (in tables, in messages, or kept for the derivation tree).
    pub caps: usize,
    /// Messages queued in mailboxes.
    pub queued: usize,
    /// Sends waiting for room.
    pub waiting_sends: usize,
    /// Receives waiting for a message.
    pub waiting_recvs: usize,
    /// Monitors registered.
    pub monitors: usize,
    /// Bytes pinned by every environment ([`Kernel::pinned_bytes`] summed).
    pub pinned_bytes: usize,
}

/// A debugging view of one capability object (see [`Kernel::debug_table`]).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapInfo {
    /// The object's kernel id.
    pub id: u64,
    /// The mailbox's kernel id.
    pub mailbox: u64,
    /// The mailbox's designation (`db`, `db/session`).
    pub designation: String,
    /// Whether the mailbox is alive.
    pub mailbox_alive: bool,
    /// Rights.
    pub rights: Rights,
    /// Uses left on this object itself.
    pub uses_left: Option<u32>,
    /// Expiry.
    pub expires_at: Option<Millis>,
    /// Badge.
    pub badge: u64,
    /// The object it was derived from, if that one still exists.
    pub parent: Option<u64>,
    /// Whether it is revoked.
    pub revoked: bool,
    /// Whether it is a reply capability (or derived from one).
    pub reply: bool,
}

/// One environment's kernel state.
#[derive(Debug)]
struct Env {
    name: Arc<str>,
    may_send: Vec<String>,
    may_discover: Vec<String>,
    capacity: usize,
    /// Its byte quota.
    quota: usize,
    /// Bytes of the messages queued in the mailboxes it owns.
    queued_bytes: usize,
    /// Bytes of its own sends waiting for room.
    waiting_bytes: usize,
    /// Of `queued_bytes`, how many each sender (by name) accounts for.
    from_bytes: BTreeMap<Arc<str>, usize>,
    /// The c-list.
    table: BTreeMap<Handle, CapId>,
    /// The handle numbers its declaration reserves for its `may_send` targets (2, 3, … in
    /// declaration order), each taken by the first grant to that target, whenever the target
    /// registers: so the numbers do not depend on the order in which environments register,
    /// and stay the same across a kernel restart.
    declared_slots: BTreeMap<String, Handle>,
    /// The next handle number (never reused).
    next_handle: Handle,
    default_mailbox: MailboxId,
    /// Its live mailboxes, the default one first.
    mailboxes: Vec<MailboxId>,
    /// Numbers unnamed extra mailboxes (`env/#n`).
    next_ordinal: u64,
    /// Its waiting requests: how many, and in which mailboxes.
    waiting: usize,
    waiting_in: BTreeMap<MailboxId, usize>,
    /// Monitors it holds: (owner watched, reference).
    watching: BTreeSet<(EnvId, u64)>,
    /// The protocol version its connection speaks: the latest until a `hello` says otherwise
    /// (a connection re-attached after a kernel restart had its `hello` with the old kernel).
    version: u16,
}

impl Env {
    fn pinned(&self) -> usize {
        self.queued_bytes + self.waiting_bytes
    }
}

/// A refusal, before it becomes an error response and an audit record.
#[derive(Debug)]
struct Deny {
    code: ErrorCode,
    /// What the client is told.
    detail: String,
    /// What the audit log is told, when it should know more than the client.
    reason: Option<String>,
    handle: Option<Handle>,
    target: Option<String>,
}

impl Deny {
    fn new(code: ErrorCode, detail: impl Into<String>) -> Deny {
        Deny {
            code,
            detail: detail.into(),
            reason: None,
            handle: None,
            target: None,
        }
    }

    fn handle(mut self, handle: Handle) -> Deny {
        self.handle = Some(handle);
        self
    }

    fn target(mut self, target: impl Into<String>) -> Deny {
        self.target = Some(target.into());
        self
    }

    fn reason(mut self, reason: impl Into<String>) -> Deny {
        self.reason = Some(reason.into());
        self
    }
}

/// The operation's name in audit records.
/// Who waits for what, for [`Kernel::park_recv`].
struct ParkedRecv {
    env: EnvId,
    id: RequestId,
    handle: Handle,
    mb_id: MailboxId,
    timeout_ms: Option<u64>,
}

fn op_name(req: &Request) -> &'static str {
    match req {
        Request::Hello { .. } => "hello",
        Request::Send { .. } => "send",
        Request::Recv { .. } => "recv",
        Request::Lookup { .. } => "lookup",
        Request::Whoami => "whoami",
        Request::Attenuate { .. } => "attenuate",
        Request::Revoke { .. } => "revoke",
        Request::Drop { .. } => "drop",
        Request::Monitor { .. } => "monitor",
        Request::CreateMailbox { .. } => "create-mailbox",
        Request::SendBatch { .. } => "send-batch",
        Request::RecvBatch { .. } => "recv-batch",
        Request::Attest { .. } => "attest",
        Request::Spawn(_) => "spawn",
        Request::Stop { .. } => "stop",
        Request::Restrict { .. } => "restrict",
    }
}

/// Checks a label: 1 to 63 bytes of `[a-z0-9-]`, not starting or ending with `-` (the same rule
/// as environment names in `warren-spec`). The error says what is wrong.
pub fn check_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    if s.len() > 63 {
        return Err("it is longer than 63 bytes");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("it has a character outside [a-z0-9-]");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("it starts or ends with '-'");
    }
    Ok(())
}

fn without_receive(r: Rights) -> Rights {
    Rights(r.0 & !Rights::RECEIVE.0)
}

/// What a run costs in a batch delivery besides its bodies: sender name, badge, count, size.
fn run_overhead(from: &str) -> usize {
    1 + from.len() + 8 + 4 + 4
}

/// How many of the first `max` bodies fit in `budget` encoded bytes, and their encoded size.
fn fitting(bodies: &Bodies, max: usize, budget: usize) -> (usize, usize) {
    // The common case, a whole run that fits, without walking the bodies.
    if bodies.len() <= max && bodies.encoded_len() <= budget {
        return (bodies.len(), bodies.encoded_len());
    }
    let mut used = 0;
    let mut k = 0;
    for b in bodies.iter().take(max) {
        if used + 4 + b.len() > budget {
            break;
        }
        used += 4 + b.len();
        k += 1;
    }
    (k, used)
}

/// Adds one body to the last run if it has the same sender and badge, else to a new run.
fn push_run(runs: &mut Vec<Run>, from: &str, badge: u64, push: impl FnOnce(&mut Bodies)) {
    match runs.last_mut() {
        Some(r) if r.from.badge == badge && r.from.env == from => push(&mut r.bodies),
        _ => {
            let mut bodies = Bodies::new();
            push(&mut bodies);
            runs.push(Run {
                from: Sender {
                    env: from.to_string(),
                    badge,
                },
                bodies,
            });
        }
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The kernel's decision logic: a deterministic state machine driven by requests, environment
/// arrivals and departures, and time. See the [crate documentation](crate) for the rules.
#[derive(Debug)]
pub struct Kernel {
    config: Config,
    /// The latest `now` seen: time never goes backwards.
    now: Millis,
    envs: BTreeMap<EnvId, Env>,
    names: BTreeMap<String, EnvId>,
    /// For each name, the environments whose `may_send` declares it: an environment that
    /// starts gets the grants declared to it without a walk over every environment (which made
    /// registering N environments cost N² name comparisons).
    declared_to: BTreeMap<String, BTreeSet<EnvId>>,
    next_env: u32,
    caps: Caps,
    mailboxes: BTreeMap<MailboxId, Mailbox>,
    next_mailbox: u64,
    /// (owner watched, reference) → (watcher, the mailbox watched).
    monitors: BTreeMap<(EnvId, u64), (EnvId, MailboxId)>,
    next_monitor: u64,
    /// Deadlines of waiting receives: (deadline, receive seq, mailbox).
    deadlines: BTreeSet<(Millis, u64, MailboxId)>,
    next_seq: u64,
    actions: VecDeque<Action>,
    /// The per-environment audit rate limit.
    audit: AuditLimiter,
    /// Federation (`remote.rs`): this host's name, once remote names are on.
    local_host: Option<String>,
    /// Inbound policy per environment (`accept_from`).
    accept_from: BTreeMap<EnvId, Vec<String>>,
    /// Shared proxy mailboxes by remote address.
    proxies: BTreeMap<String, MailboxId>,
    /// Every proxy mailbox and where it forwards.
    remote: BTreeMap<MailboxId, remote::RemoteTarget>,
    /// Capabilities exported to other hosts, by export number.
    exports: BTreeMap<u64, CapId>,
    next_export: u64,
    /// The first export number of this kernel: numbers from here to `next_export` were issued
    /// by it, so one of them no longer held was used up.
    first_export: u64,
    /// Hosts cut off by an attestation verdict (`remote.rs`), with what a refused sender is
    /// told.
    cut_off: BTreeMap<String, String>,
    /// The hosts whose keys the driver trusts (`remote.rs`), once it has said: a send through a
    /// proxy for any other host is refused.
    peer_hosts: Option<BTreeSet<String>>,
    /// Templates, SPAWN grants, pending spawns and links (`spawn.rs`).
    spawn: spawn::SpawnState,
}

impl Kernel {
    /// A kernel with no environments.
    pub fn new(config: Config) -> Kernel {
        Kernel {
            config: config.clone(),
            now: 0,
            envs: BTreeMap::new(),
            names: BTreeMap::new(),
            declared_to: BTreeMap::new(),
            next_env: 1,
            caps: Caps::default(),
            mailboxes: BTreeMap::new(),
            next_mailbox: 1,
            monitors: BTreeMap::new(),
            next_monitor: 1,
            deadlines: BTreeSet::new(),
            next_seq: 1,
            actions: VecDeque::new(),
            audit: AuditLimiter::new(config.audit_window_ms, config.audit_records_per_window),
            local_host: None,
            accept_from: BTreeMap::new(),
            proxies: BTreeMap::new(),
            remote: BTreeMap::new(),
            exports: BTreeMap::new(),
            next_export: 1,
            first_export: 1,
            cut_off: BTreeMap::new(),
            peer_hosts: None,
            spawn: spawn::SpawnState::default(),
        }
    }

    fn advance(&mut self, now: Millis) {
        self.now = self.now.max(now);
    }

    // ----- environments -----

    /// Registers a starting environment: its default mailbox (handle 1, RECEIVE|SEND|GRANT|
    /// MONITOR), a handle for each running environment named in its `may_send` (2, 3, ... in
    /// declaration order), and a new handle in every running environment that names it in its
    /// own `may_send`.
    pub fn add_env(&mut self, spec: EnvSpec, now: Millis) -> Result<EnvId, KernelError> {
        self.advance(now);
        if let Err(reason) = check_label(&spec.name) {
            return Err(KernelError::InvalidName {
                name: spec.name,
                reason,
            });
        }
        if self.names.contains_key(&spec.name) {
            return Err(KernelError::NameInUse { name: spec.name });
        }
        let Some(next) = self.next_env.checked_add(1) else {
            return Err(KernelError::IdsExhausted { name: spec.name });
        };
        let id = EnvId(self.next_env);
        self.next_env = next;

        let name: Arc<str> = Arc::from(spec.name.as_str());
        let capacity = spec
            .mailbox_capacity
            .unwrap_or(self.config.default_capacity);
        let quota = spec
            .mailbox_bytes
            .unwrap_or(self.config.default_mailbox_bytes);
        let mb = self.new_mailbox(id, name.clone(), name.as_ref().into(), None, capacity);
        self.envs.insert(
            id,
            Env {
                name: name.clone(),
                may_send: self.localize(spec.may_send),
                may_discover: self.localize(spec.may_discover),
                capacity,
                quota,
                queued_bytes: 0,
                waiting_bytes: 0,
                from_bytes: BTreeMap::new(),
                table: BTreeMap::new(),
                declared_slots: BTreeMap::new(),
                next_handle: DEFAULT_MAILBOX_HANDLE,
                default_mailbox: mb,
                mailboxes: vec![mb],
                next_ordinal: 1,
                waiting: 0,
                waiting_in: BTreeMap::new(),
                watching: BTreeSet::new(),
                version: VERSION,
            },
        );
        self.names.insert(spec.name, id);
        for target in &self.envs[&id].may_send {
            self.declared_to
                .entry(target.clone())
                .or_default()
                .insert(id);
        }
        let own = self.mint(Self::root_spec(mb, OWNER_RIGHTS), None);
        self.install(id, own);

        // Its declared grants: a number for each target, in declaration order, whether it
        // runs yet or not; the grants to those that run.
        let mut seen = BTreeSet::new();
        let declared: Vec<String> = self.envs[&id].may_send.clone();
        let mut targets = Vec::new();
        {
            let e = self.envs.get_mut(&id).expect("just added");
            for target in declared {
                if target.contains(['/', '@']) || !seen.insert(target.clone()) {
                    continue;
                }
                e.declared_slots.insert(target.clone(), e.next_handle);
                e.next_handle += 1;
                targets.push(target);
            }
        }
        for target in targets {
            if let Some(&t) = self.names.get(&target) {
                self.grant_initial(id, t);
            }
        }
        self.grant_remote(id);
        // Grants others declared to it, waiting until now (in the order of their ids).
        let waiting: Vec<EnvId> = self
            .declared_to
            .get(name.as_ref())
            .into_iter()
            .flatten()
            .copied()
            .filter(|&e| e != id)
            .collect();
        for e in waiting {
            self.grant_initial(e, id);
        }
        Ok(id)
    }

    /// Installs in `holder`'s table a policy grant to `target`'s default mailbox: under the
    /// number its declaration reserved for the target the first time, under the next number
    /// after that (the target ended and registered again: the old handle stays, dead).
    fn grant_initial(&mut self, holder: EnvId, target: EnvId) {
        if !self.envs.contains_key(&holder) {
            return;
        }
        let mb = self.envs[&target].default_mailbox;
        let cap = self.mint(Self::root_spec(mb, MAY_SEND_RIGHTS), None);
        let name = self.envs[&target].name.to_string();
        let e = self.envs.get_mut(&holder).expect("checked above");
        match e.declared_slots.remove(&name) {
            Some(slot) => {
                e.table.insert(slot, cap);
            }
            None => {
                self.install(holder, cap);
            }
        }
    }

    /// The environment ended: its mailboxes die (waiting senders to them are answered `dead`,
    /// queued messages are discarded with an audit record), its own waiting requests are dropped
    /// unanswered, its table is freed, and every monitor of it gets a `down` notice.
    pub fn remove_env(&mut self, env: EnvId, now: Millis) {
        self.advance(now);
        if !self.envs.contains_key(&env) {
            return;
        }
        self.spawn_env_ending(env);
        let Some(e) = self.envs.remove(&env) else {
            return;
        };
        self.names.remove(&*e.name);
        for target in &e.may_send {
            if let Some(set) = self.declared_to.get_mut(target) {
                set.remove(&env);
                if set.is_empty() {
                    self.declared_to.remove(target);
                }
            }
        }
        self.accept_from.remove(&env);

        // Its own waiting requests: nobody is left to answer.
        self.drop_waiting(env, e.waiting_in.keys().copied().collect());

        for &mb_id in &e.mailboxes {
            let discarded = self.kill_mailbox(mb_id, "its owner ended");
            if discarded > 0 {
                let designation = self
                    .mailboxes
                    .get(&mb_id)
                    .map(|m| m.designation.to_string());
                self.audit(AuditRecord {
                    at: self.now,
                    env: e.name.to_string(),
                    op: "end",
                    handle: None,
                    target: designation,
                    code: ErrorCode::Dead.as_str(),
                    reason: format!("environment ended: {discarded} queued message(s) discarded"),
                    repeated: None,
                });
            }
        }
        for (_, cap) in e.table {
            self.release_cap(cap);
        }
        for key in &e.watching {
            self.monitors.remove(key);
        }
        let watchers: Vec<((EnvId, u64), EnvId)> = self
            .monitors
            .range((env, 0)..=(env, u64::MAX))
            .map(|(k, (w, _))| (*k, *w))
            .collect();
        for ((_, reference), watcher) in watchers {
            self.monitors.remove(&(env, reference));
            if let Some(w) = self.envs.get_mut(&watcher) {
                w.watching.remove(&(env, reference));
                self.notify_down(watcher, e.name.clone(), reference);
            }
        }
    }

    /// Drops `env`'s own waiting requests (receives and sends that wait) in mailboxes `mbs`,
    /// unanswered: the connection that made them is gone.
    fn drop_waiting(&mut self, env: EnvId, mbs: Vec<MailboxId>) {
        for mb_id in mbs {
            let Some(mb) = self.mailboxes.get_mut(&mb_id) else {
                continue;
            };
            let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut mb.senders)
                .into_iter()
                .partition(|w| w.env == env);
            mb.senders = rest;
            let mut gone = Vec::new();
            mb.receivers.retain(|r| {
                if r.env == env {
                    gone.push((r.deadline, r.seq));
                    false
                } else {
                    true
                }
            });
            for (deadline, seq) in gone {
                if let Some(d) = deadline {
                    self.deadlines.remove(&(d, seq, mb_id));
                }
            }
            for w in mine {
                self.release_entry(w.entry);
            }
        }
    }

    /// The bytes `env` pins in the kernel: messages queued in the mailboxes it owns plus its
    /// own sends waiting for room, as [`message_cost`] counts them (0 for an unknown env). The
    /// driver adds what it holds for the environment (unsent answers) to compare with
    /// [`quota`](Self::quota).
    pub fn pinned_bytes(&self, env: EnvId) -> usize {
        self.envs.get(&env).map_or(0, Env::pinned)
    }

    /// `env`'s byte quota (0 for an unknown env).
    pub fn quota(&self, env: EnvId) -> usize {
        self.envs.get(&env).map_or(0, |e| e.quota)
    }

    /// Set the protocol version an environment's connection speaks without a Hello: for a
    /// connection re-attached after a kernel restart, the version it agreed with the previous
    /// kernel. Versions this kernel does not speak are ignored.
    pub fn set_env_version(&mut self, env: EnvId, version: u16) {
        if (MIN_VERSION..=VERSION).contains(&version) {
            if let Some(e) = self.envs.get_mut(&env) {
                e.version = version;
            }
        }
    }

    /// The name of a running environment.
    pub fn env_name(&self, env: EnvId) -> Option<&str> {
        self.envs.get(&env).map(|e| &*e.name)
    }

    /// The running environment called `name`.
    pub fn env_by_name(&self, name: &str) -> Option<EnvId> {
        self.names.get(name).copied()
    }

    // ----- the driver's interface -----

    /// Handles request `id` from environment `env`. The answer (now or later) and any audit
    /// records come out of [`poll_action`](Self::poll_action). A request from an environment
    /// that is not running is ignored.
    pub fn handle_request(&mut self, env: EnvId, id: RequestId, req: Request, now: Millis) {
        self.advance(now);
        if !self.envs.contains_key(&env) {
            return;
        }
        let op = op_name(&req);
        let result = match req {
            Request::Hello {
                min_version,
                max_version,
            } => {
                // The highest version both speak.
                let version = max_version.min(VERSION);
                if version >= min_version.max(MIN_VERSION) {
                    let e = self.envs.get_mut(&env).expect("checked above");
                    e.version = version;
                    let name = e.name.to_string();
                    self.respond(env, id, Response::Welcome { version, env: name });
                    Ok(())
                } else {
                    Err(Deny::new(
                        ErrorCode::Version,
                        format!(
                            "the kernel speaks versions {MIN_VERSION}..={VERSION}, not \
                             {min_version}..={max_version}"
                        ),
                    ))
                }
            }
            Request::SendBatch { .. } | Request::RecvBatch { .. }
                if self.envs[&env].version < 2 =>
            {
                Err(Deny::new(
                    ErrorCode::BadRequest,
                    "batch operations need protocol version 2",
                ))
            }
            Request::SendBatch {
                handle,
                wait,
                quiet,
                bodies,
            } => self.send_batch(env, id, handle, wait, quiet, bodies),
            Request::RecvBatch {
                mailbox,
                max,
                timeout_ms,
            } => self.recv_batch(env, id, mailbox, max, timeout_ms),
            Request::Send {
                handle,
                message,
                wait,
            } => self.send(env, id, handle, message, wait),
            Request::Recv {
                mailbox,
                filter,
                timeout_ms,
            } => self.recv(env, id, mailbox, filter, timeout_ms),
            Request::Lookup { name } => self.lookup(env, id, name),
            Request::Whoami => {
                let mut identity = self.identity(env);
                self.name_handles(env, &mut identity);
                self.respond(env, id, Response::Identity(identity));
                Ok(())
            }
            Request::Spawn(s) => self.spawn(env, id, s),
            Request::Stop { handle, kill } => self.stop(env, id, handle, kill),
            Request::Restrict {
                handle,
                share,
                limits,
            } => self.restrict(env, id, handle, share, limits),
            Request::Attenuate {
                handle,
                rights,
                uses,
                expires_in_ms,
                badge,
            } => self.attenuate(env, id, handle, rights, uses, expires_in_ms, badge),
            Request::Revoke { handle } => self.revoke(env, id, handle),
            Request::Drop { handle } => self.drop_handle(env, id, handle),
            Request::Monitor { handle } => self.monitor(env, id, handle),
            Request::CreateMailbox { name } => self.create_mailbox(env, id, name),
            Request::Attest { nonce, data } => {
                // Any environment may ask for a quote about itself, and only about itself: the
                // subject is the name the kernel knows it by, never one it claims.
                if nonce.is_empty() {
                    Err(Deny::new(
                        ErrorCode::BadRequest,
                        "attest needs a nonce chosen by the verifier".to_owned(),
                    ))
                } else {
                    let name = self.envs[&env].name.to_string();
                    self.actions.push_back(Action::Attest {
                        env,
                        id,
                        name,
                        nonce,
                        data,
                    });
                    Ok(())
                }
            }
        };
        if let Err(deny) = result {
            self.refuse(env, id, op, deny);
        }
    }

    /// Time has come to `now`: waiting receives whose deadline has passed answer `timeout`, and
    /// audit aggregates whose window has ended are written.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.advance(now);
        self.audit.handle_timeout(self.now, &mut self.actions);
        while let Some(&(deadline, seq, mb_id)) = self.deadlines.first() {
            if deadline > self.now {
                break;
            }
            self.deadlines.pop_first();
            let Some(mb) = self.mailboxes.get_mut(&mb_id) else {
                continue;
            };
            let Some(pos) = mb.receivers.iter().position(|r| r.seq == seq) else {
                continue;
            };
            let r = mb.receivers.remove(pos).expect("position is in range");
            self.unpark(r.env, mb_id);
            self.respond(
                r.env,
                r.id,
                Response::Error {
                    code: ErrorCode::Timeout,
                    detail: "nothing matching arrived in time".into(),
                },
            );
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let recv = self.deadlines.first().map(|&(d, _, _)| d);
        min_opt(recv, self.audit.poll_timeout())
    }

    /// Writes every audit aggregate held back by the rate limit now, whatever its window (the
    /// driver calls it before it stops, so that nothing counted is lost).
    pub fn flush_audit(&mut self) {
        self.audit.flush(&mut self.actions);
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Counts of the kernel's objects.
    pub fn stats(&self) -> Stats {
        let live = self.mailboxes.values().filter(|m| m.alive);
        let (mut mailboxes, mut queued, mut waiting_sends, mut waiting_recvs) = (0, 0, 0, 0);
        for m in live {
            mailboxes += 1;
            queued += m.queued;
            waiting_sends += m.senders.len();
            waiting_recvs += m.receivers.len();
        }
        Stats {
            envs: self.envs.len(),
            mailboxes,
            caps: self.caps.len(),
            queued,
            waiting_sends,
            waiting_recvs,
            monitors: self.monitors.len(),
            pinned_bytes: self.envs.values().map(Env::pinned).sum(),
        }
    }

    /// Every handle in `env`'s table with the object behind it (empty for an unknown env).
    #[doc(hidden)]
    pub fn debug_table(&self, env: EnvId) -> Vec<(Handle, CapInfo)> {
        let Some(e) = self.envs.get(&env) else {
            return Vec::new();
        };
        e.table
            .iter()
            .map(|(&h, &c)| (h, self.cap_info(c)))
            .collect()
    }

    /// How many mailbox objects exist, live or kept for the handles that still designate them.
    #[doc(hidden)]
    pub fn debug_mailbox_objects(&self) -> usize {
        self.mailboxes.len()
    }

    /// The capability object with kernel id `id`, if it exists.
    #[doc(hidden)]
    pub fn debug_cap(&self, id: u64) -> Option<CapInfo> {
        self.caps.find(CapId(id)).map(|_| self.cap_info(CapId(id)))
    }

    fn cap_info(&self, id: CapId) -> CapInfo {
        let cap = self.caps.get(id);
        let mb = &self.mailboxes[&cap.mailbox];
        CapInfo {
            id: id.0,
            mailbox: cap.mailbox.0,
            designation: mb.designation.to_string(),
            mailbox_alive: mb.alive,
            rights: cap.rights,
            uses_left: cap.uses_left,
            expires_at: cap.expires_at,
            badge: cap.badge,
            parent: cap.parent.map(|p| p.0),
            revoked: cap.revoked,
            reply: cap.reply,
        }
    }

    // ----- requests -----

    fn send(
        &mut self,
        env: EnvId,
        id: RequestId,
        handle: Handle,
        message: Message,
        wait: bool,
    ) -> Result<(), Deny> {
        let cap_id = self.cap_of(env, handle)?;
        self.check_live(handle, cap_id)?;
        if !self.caps.has_uses(cap_id) {
            return Err(self.deny_at(ErrorCode::UsedUp, handle, cap_id, "the handle is used up"));
        }
        let cap = self.caps.get(cap_id);
        if !cap.rights.contains(Rights::SEND) {
            return Err(self.deny_at(ErrorCode::NoRight, handle, cap_id, "the handle lacks SEND"));
        }
        let (mb_id, badge) = (cap.mailbox, cap.badge);
        if !self.mailboxes[&mb_id].alive {
            return Err(self.deny_at(ErrorCode::Dead, handle, cap_id, "the mailbox is gone"));
        }
        // Attachments and the reply mailbox, all checked before anything happens.
        let mut attached = Vec::with_capacity(message.caps.len());
        for &h in &message.caps {
            let c = self.cap_of(env, h)?;
            self.check_live(h, c)?;
            if !self.caps.get(c).rights.contains(Rights::GRANT) {
                return Err(self.deny_at(
                    ErrorCode::NoRight,
                    h,
                    c,
                    "an attached handle lacks GRANT",
                ));
            }
            attached.push(c);
        }
        let reply_src = match message.reply_to {
            Some(h) => {
                let c = self.cap_of(env, h)?;
                if !self.caps.get(c).rights.contains(Rights::RECEIVE) {
                    return Err(self.deny_at(
                        ErrorCode::NoRight,
                        h,
                        c,
                        "reply_to is not a mailbox of the sender's (no RECEIVE)",
                    ));
                }
                Some(c)
            }
            None => None,
        };

        if self.is_proxy(mb_id) {
            self.send_remote(env, id, cap_id, mb_id, badge, message, attached, reply_src)?;
            self.retire_spent_reply(env, handle, cap_id);
            return Ok(());
        }
        // Room: a waiting receive that takes it, the queue, or (if asked) waiting.
        let mb = &self.mailboxes[&mb_id];
        let full = |k: &Kernel, why: &str| k.deny_at(ErrorCode::Full, handle, cap_id, why);
        if !wait && mb.senders.iter().any(|w| w.env == env) {
            return Err(full(
                self,
                "earlier sends of yours are waiting for room in this mailbox",
            ));
        }
        let need = message.caps.len() + usize::from(reply_src.is_some());
        let taker = mb.receivers.iter().any(|r| {
            matches(&r.filter, message.correlation, &message.headers) && self.has_room(r.env, need)
        });
        let cost = message_cost(message.body.len(), &message.headers);
        let from = self.envs[&env].name.clone();
        let enters = mb.senders.is_empty()
            && mb.has_room()
            && self.queue_takes(mb_id, &from, std::iter::once(cost), 1) == 1;
        if !taker && !enters {
            if !wait {
                if !mb.has_room() {
                    return Err(full(self, "the mailbox is full"));
                }
                if !mb.senders.is_empty() {
                    return Err(full(
                        self,
                        "earlier sends are waiting for room in this mailbox",
                    ));
                }
                let target = mb.designation.to_string();
                return Err(self.receiver_quota_deny(env, mb_id, &from, cost, handle, target));
            }
            if self.envs[&env].waiting >= self.config.max_waiting_per_env {
                return Err(self.deny_at(
                    ErrorCode::Unavailable,
                    handle,
                    cap_id,
                    "too many waiting requests",
                ));
            }
            if !self.may_wait(env, cost) {
                let target = mb.designation.to_string();
                return Err(self.sender_quota_deny(env, cost, handle, target));
            }
        }

        // Accepted.
        self.caps.consume(cap_id);
        let mut caps = Vec::with_capacity(attached.len());
        for a in attached {
            let src = self.caps.get(a);
            let spec = CapSpec {
                mailbox: src.mailbox,
                rights: without_receive(src.rights),
                uses_left: src.uses_left,
                expires_at: src.expires_at,
                badge: src.badge,
                reply: src.reply,
            };
            caps.push(self.mint(spec, Some(a)));
        }
        let reply = reply_src.map(|r| {
            let mailbox = self.caps.get(r).mailbox;
            let spec = CapSpec {
                mailbox,
                rights: Rights::SEND,
                uses_left: Some(1),
                expires_at: None,
                badge: 0,
                reply: true,
            };
            self.mint(spec, Some(r))
        });
        let msg = Stored {
            from: self.envs[&env].name.clone(),
            badge,
            headers: message.headers,
            correlation: message.correlation,
            body: message.body,
            caps,
            reply,
            down: None,
            ticket: None,
        };
        if self.place(mb_id, msg, Some((env, id))) {
            self.respond(env, id, Response::Ok);
        }
        self.retire_spent_reply(env, handle, cap_id);
        Ok(())
    }

    fn recv(
        &mut self,
        env: EnvId,
        id: RequestId,
        mailbox: Option<Handle>,
        filter: Filter,
        timeout_ms: Option<u64>,
    ) -> Result<(), Deny> {
        let (handle, mb_id) = self.receive_from(env, mailbox)?;
        let mb = &self.mailboxes[&mb_id];
        let unavailable = |k: &Kernel| {
            Deny::new(
                ErrorCode::Unavailable,
                "no room in the capability table for its handles",
            )
            .handle(handle)
            .target(k.mailboxes[&mb_id].designation.to_string())
        };
        let needs = |e: &Entry| match e {
            Entry::One(m) => m.handles_needed(),
            Entry::Run(_) => 0,
        };
        if let Some(pos) = mb.queue.iter().position(|e| e.first_matches(&filter)) {
            if !self.has_room(env, needs(&mb.queue[pos])) {
                return Err(unavailable(self));
            }
            let mb = self.mailboxes.get_mut(&mb_id).expect("looked up above");
            let msg = match &mut mb.queue[pos] {
                Entry::Run(run) if run.bodies.len() > 1 => run.take_one(),
                _ => mb.queue.remove(pos).expect("in range").into_first(),
            };
            mb.queued -= 1;
            self.discharge_queued(mb_id, &msg.from, msg.cost());
            self.deliver(env, id, handle, msg);
            self.admit(mb_id);
            return Ok(());
        }
        if let Some(pos) = mb
            .senders
            .iter()
            .position(|w| w.entry.first_matches(&filter))
        {
            if !self.has_room(env, needs(&mb.senders[pos].entry)) {
                return Err(unavailable(self));
            }
            let mb = self.mailboxes.get_mut(&mb_id).expect("looked up above");
            let sender = mb.senders[pos].env;
            let (msg, done) = match &mut mb.senders[pos].entry {
                Entry::Run(run) if run.bodies.len() > 1 => (run.take_one(), None),
                _ => {
                    let w = mb.senders.remove(pos).expect("in range");
                    (w.entry.into_first(), Some((w.env, w.id, w.reply)))
                }
            };
            self.discharge_waiting(sender, msg.cost());
            self.deliver(env, id, handle, msg);
            if let Some((senv, sid, reply)) = done {
                self.unpark(senv, mb_id);
                self.answer_send(senv, sid, reply);
            }
            return Ok(());
        }
        if timeout_ms == Some(0) {
            return Err(Deny::new(ErrorCode::Timeout, "nothing matching is queued").handle(handle));
        }
        let recv = ParkedRecv {
            env,
            id,
            handle,
            mb_id,
            timeout_ms,
        };
        self.park_recv(recv, filter, None)
    }

    /// Parks a receive that found nothing to take: it waits in the mailbox's line of receivers
    /// until a message it accepts arrives or its timeout passes.
    fn park_recv(
        &mut self,
        recv: ParkedRecv,
        filter: Filter,
        batch: Option<u32>,
    ) -> Result<(), Deny> {
        let ParkedRecv {
            env,
            id,
            handle,
            mb_id,
            timeout_ms,
        } = recv;
        if self.envs[&env].waiting >= self.config.max_waiting_per_env {
            return Err(
                Deny::new(ErrorCode::Unavailable, "too many waiting requests")
                    .handle(handle)
                    .target(self.mailboxes[&mb_id].designation.to_string()),
            );
        }
        let deadline = timeout_ms.map(|t| self.now.saturating_add(t));
        let seq = self.next_seq;
        self.next_seq += 1;
        let mb = self.mailboxes.get_mut(&mb_id).expect("looked up above");
        mb.receivers.push_back(WaitingRecv {
            seq,
            env,
            id,
            handle,
            filter,
            deadline,
            batch,
        });
        self.park(env, mb_id);
        if let Some(d) = deadline {
            self.deadlines.insert((d, seq, mb_id));
        }
        Ok(())
    }

    /// The RECEIVE handle a receive names (`None`: the default mailbox's) and its mailbox.
    fn receive_from(
        &self,
        env: EnvId,
        mailbox: Option<Handle>,
    ) -> Result<(Handle, MailboxId), Deny> {
        match mailbox {
            None => Ok((DEFAULT_MAILBOX_HANDLE, self.envs[&env].default_mailbox)),
            Some(h) => {
                let c = self.cap_of(env, h)?;
                let cap = self.caps.get(c);
                if !cap.rights.contains(Rights::RECEIVE) {
                    return Err(self.deny_at(ErrorCode::NoRight, h, c, "the handle lacks RECEIVE"));
                }
                Ok((h, cap.mailbox))
            }
        }
    }

    /// A batch send: the capability is checked once for the whole batch; the bodies go, in
    /// order, to waiting receives that take plain messages, then into the queue while it has
    /// room, and the rest waits as one waiting send (`wait`) or is refused. See the crate
    /// documentation.
    fn send_batch(
        &mut self,
        env: EnvId,
        id: RequestId,
        handle: Handle,
        wait: bool,
        quiet: bool,
        bodies: Bodies,
    ) -> Result<(), Deny> {
        let n = bodies.len();
        let cap_id = self.cap_of(env, handle)?;
        self.check_live(handle, cap_id)?;
        if !self.caps.has_uses_for(cap_id, n.max(1)) {
            return Err(self.deny_at(
                ErrorCode::UsedUp,
                handle,
                cap_id,
                "the handle has fewer uses left than the batch has messages",
            ));
        }
        let cap = self.caps.get(cap_id);
        if !cap.rights.contains(Rights::SEND) {
            return Err(self.deny_at(ErrorCode::NoRight, handle, cap_id, "the handle lacks SEND"));
        }
        let (mb_id, badge) = (cap.mailbox, cap.badge);
        let mb = &self.mailboxes[&mb_id];
        if !mb.alive {
            return Err(self.deny_at(ErrorCode::Dead, handle, cap_id, "the mailbox is gone"));
        }
        if self.is_proxy(mb_id) {
            return self.send_batch_remote(env, id, cap_id, mb_id, badge, quiet, bodies);
        }
        // Behind its own waiting sends a batch that does not wait takes nothing: it cannot
        // overtake them.
        if !wait && mb.senders.iter().any(|w| w.env == env) {
            if n > 0 || !quiet {
                self.respond(env, id, Response::Accepted { count: 0 });
            }
            return Ok(());
        }
        // What can be taken now, before anything changes: waiting receives of plain messages
        // and the queue's room.
        let takers: usize = mb
            .receivers
            .iter()
            .filter(|r| takes_plain(&r.filter))
            .map(|r| r.batch.map_or(1, |m| m as usize))
            .fold(0, usize::saturating_add);
        let from = self.envs[&env].name.clone();
        let after_takers = bodies.len().saturating_sub(takers);
        let queue_room = if mb.senders.is_empty() {
            let costs = body_costs(&bodies).skip(takers);
            self.queue_takes(mb_id, &from, costs, mb.room().min(after_takers))
        } else {
            0
        };
        let now_room = takers.saturating_add(queue_room);
        if wait && n > now_room {
            if self.envs[&env].waiting >= self.config.max_waiting_per_env {
                return Err(self.deny_at(
                    ErrorCode::Unavailable,
                    handle,
                    cap_id,
                    "too many waiting requests",
                ));
            }
            let rest_cost: usize = body_costs(&bodies).skip(now_room).sum();
            if !self.may_wait(env, rest_cost) {
                let target = self.mailboxes[&mb_id].designation.to_string();
                return Err(self.sender_quota_deny(env, rest_cost, handle, target));
            }
        }

        // Accepted: everything if it waits, else what can be taken now.
        let mut rest = bodies;
        if !wait && n > now_room {
            // Keep what can be taken now; the rest is refused.
            rest = rest.split_front(now_room);
        }
        let offered = rest.len();
        while !rest.is_empty() {
            let mb = self.mailboxes.get_mut(&mb_id).expect("looked up above");
            let Some(pos) = mb.receivers.iter().position(|r| takes_plain(&r.filter)) else {
                break;
            };
            let r = mb.receivers.remove(pos).expect("position is in range");
            self.unpark(r.env, mb_id);
            if let Some(d) = r.deadline {
                self.deadlines.remove(&(d, r.seq, mb_id));
            }
            match r.batch {
                Some(max) => {
                    let budget = DELIVERIES_BUDGET - run_overhead(&from);
                    let (k, _) = fitting(&rest, max as usize, budget);
                    let run = Run {
                        from: Sender {
                            env: from.to_string(),
                            badge,
                        },
                        bodies: rest.split_front(k),
                    };
                    let d = Deliveries {
                        mailbox: r.handle,
                        runs: vec![run],
                    };
                    self.respond(r.env, r.id, Response::Deliveries(d));
                }
                None => {
                    let one = rest.split_front(1);
                    let body = one.iter().next().expect("one body").to_vec();
                    let msg = Stored::plain(from.clone(), badge, body);
                    self.deliver(r.env, r.id, r.handle, msg);
                }
            }
        }
        let mb = &self.mailboxes[&mb_id];
        let room = if mb.senders.is_empty() {
            self.queue_takes(mb_id, &from, body_costs(&rest), mb.room())
        } else {
            0
        };
        if room > 0 && !rest.is_empty() {
            let bodies = rest.split_front(room);
            let run = RunStored {
                from: from.clone(),
                badge,
                bodies,
            };
            self.enqueue(mb_id, Entry::Run(run));
        }
        let mb = self.mailboxes.get_mut(&mb_id).expect("looked up above");
        let refused = if rest.is_empty() {
            0
        } else if wait {
            let reply = if quiet {
                SendReply::Quiet
            } else {
                SendReply::Accepted(n as u32)
            };
            let run = RunStored {
                from,
                badge,
                bodies: rest,
            };
            let cost = run.cost();
            mb.senders.push_back(WaitingSend {
                env,
                id,
                entry: Entry::Run(run),
                reply,
            });
            self.park(env, mb_id);
            self.charge_waiting(env, cost);
            self.caps.consume_n(cap_id, n);
            return Ok(());
        } else {
            // Only when a batch receive took less than counted (its frame was full).
            rest.len()
        };
        let accepted = offered - refused;
        self.caps.consume_n(cap_id, accepted);
        if accepted < n || !quiet {
            self.respond(
                env,
                id,
                Response::Accepted {
                    count: accepted as u32,
                },
            );
        }
        Ok(())
    }

    /// A batch receive: up to `max` messages from the front of the mailbox's logical queue,
    /// plain ones as runs; a message that is not plain is delivered alone when it is the
    /// oldest, and ends the batch otherwise.
    fn recv_batch(
        &mut self,
        env: EnvId,
        id: RequestId,
        mailbox: Option<Handle>,
        max: u32,
        timeout_ms: Option<u64>,
    ) -> Result<(), Deny> {
        if max == 0 {
            return Err(Deny::new(
                ErrorCode::BadRequest,
                "a batch receive must ask for at least one message",
            ));
        }
        let (handle, mb_id) = self.receive_from(env, mailbox)?;
        let max = max as usize;
        let mut runs: Vec<Run> = Vec::new();
        let mut taken = 0;
        let mut budget = DELIVERIES_BUDGET;
        while taken < max {
            self.admit(mb_id);
            let mb = &self.mailboxes[&mb_id];
            let from_queue = !mb.queue.is_empty();
            let front = if from_queue {
                mb.queue.front()
            } else {
                mb.senders.front().map(|w| &w.entry)
            };
            let Some(front) = front else {
                break;
            };
            match front {
                Entry::One(m) if !m.is_plain() => {
                    if taken > 0 {
                        break;
                    }
                    // The oldest message is not plain: it goes alone, as a `delivery`.
                    if !self.has_room(env, m.handles_needed()) {
                        return Err(Deny::new(
                            ErrorCode::Unavailable,
                            "no room in the capability table for its handles",
                        )
                        .handle(handle)
                        .target(mb.designation.to_string()));
                    }
                    let msg = self.take_front(mb_id, from_queue, 1).into_first();
                    self.deliver(env, id, handle, msg);
                    self.admit(mb_id);
                    return Ok(());
                }
                Entry::One(m) => {
                    let cost = 4 + m.body.len() + run_overhead(&m.from);
                    if taken > 0 && cost > budget {
                        break;
                    }
                    budget = budget.saturating_sub(cost);
                    let m = self.take_front(mb_id, from_queue, 1).into_first();
                    push_run(&mut runs, &m.from, m.badge, |b| {
                        b.push(&m.body).expect("a stored body is within the limits")
                    });
                    taken += 1;
                }
                Entry::Run(run) => {
                    let overhead = run_overhead(&run.from);
                    let (mut k, mut size) =
                        fitting(&run.bodies, max - taken, budget.saturating_sub(overhead));
                    if k == 0 && taken == 0 {
                        // A delivery carries at least one message, which always fits.
                        (k, size) = (1, run.bodies.prefix_len(1));
                    }
                    if k == 0 {
                        break;
                    }
                    budget = budget.saturating_sub(overhead + size);
                    let Entry::Run(part) = self.take_front(mb_id, from_queue, k) else {
                        unreachable!("the front was a run")
                    };
                    runs.push(Run {
                        from: Sender {
                            env: part.from.to_string(),
                            badge: part.badge,
                        },
                        bodies: part.bodies,
                    });
                    taken += k;
                }
            }
        }
        if taken > 0 {
            self.respond(
                env,
                id,
                Response::Deliveries(Deliveries {
                    mailbox: handle,
                    runs,
                }),
            );
            self.admit(mb_id);
            return Ok(());
        }
        if timeout_ms == Some(0) {
            return Err(Deny::new(ErrorCode::Timeout, "nothing is queued").handle(handle));
        }
        let recv = ParkedRecv {
            env,
            id,
            handle,
            mb_id,
            timeout_ms,
        };
        self.park_recv(recv, Filter::default(), Some(max as u32))
    }

    /// Takes the first `k` messages of the front entry of the queue (`from_queue`) or of the
    /// waiting line (answering the waiting send when its last message goes). For a `One`
    /// entry `k` is 1.
    fn take_front(&mut self, mb_id: MailboxId, from_queue: bool, k: usize) -> Entry {
        let mb = self.mailboxes.get_mut(&mb_id).expect("a known mailbox");
        if from_queue {
            let front = mb.queue.front_mut().expect("the front exists");
            let taken = match front {
                Entry::Run(run) if run.bodies.len() > k => Entry::Run(RunStored {
                    from: run.from.clone(),
                    badge: run.badge,
                    bodies: run.bodies.split_front(k),
                }),
                _ => mb.queue.pop_front().expect("the front exists"),
            };
            mb.queued -= taken.len();
            self.discharge_queued(mb_id, &taken.from().clone(), taken.cost());
            return taken;
        }
        let front = mb.senders.front_mut().expect("the front exists");
        let sender = front.env;
        let taken = match &mut front.entry {
            Entry::Run(run) if run.bodies.len() > k => Entry::Run(RunStored {
                from: run.from.clone(),
                badge: run.badge,
                bodies: run.bodies.split_front(k),
            }),
            _ => {
                let w = mb.senders.pop_front().expect("the front exists");
                self.unpark(w.env, mb_id);
                self.answer_send(w.env, w.id, w.reply);
                w.entry
            }
        };
        self.discharge_waiting(sender, taken.cost());
        taken
    }

    fn lookup(&mut self, env: EnvId, id: RequestId, name: String) -> Result<(), Deny> {
        let not_found = |reason: &str| {
            Deny::new(ErrorCode::NotFound, "no mailbox by that name for you")
                .reason(reason)
                .target(name.clone())
        };
        if self.lookup_named(env, id, &name) {
            return Ok(());
        }
        if name.contains('@') {
            return match self.strip_local_host(&name) {
                Some(local) => self.lookup(env, id, local.to_owned()),
                None => self.lookup_remote(env, id, name),
            };
        }
        let e = &self.envs[&env];
        let may_send = e.may_send.contains(&name);
        if !may_send && !e.may_discover.contains(&name) {
            return Err(not_found(
                "the name is in neither may_send nor may_discover",
            ));
        }
        let (env_name, mailbox_name) = match name.split_once('/') {
            Some((e, m)) => (e, Some(m)),
            None => (name.as_str(), None),
        };
        let found = self.names.get(env_name).and_then(|owner| {
            let owner = &self.envs[owner];
            match mailbox_name {
                None => Some(owner.default_mailbox),
                Some(m) => owner
                    .mailboxes
                    .iter()
                    .copied()
                    .find(|mb| self.mailboxes[mb].name.as_deref() == Some(m)),
            }
        });
        let Some(mb_id) = found else {
            return Err(not_found("no running mailbox has that name"));
        };
        if !self.has_room(env, 1) {
            return Err(
                Deny::new(ErrorCode::Unavailable, "the capability table is full")
                    .target(name.clone()),
            );
        }
        let rights = if may_send {
            MAY_SEND_RIGHTS
        } else {
            MAY_DISCOVER_RIGHTS
        };
        let cap = self.mint(Self::root_spec(mb_id, rights), None);
        let handle = self.install(env, cap);
        self.respond(env, id, Response::Handle { handle, rights });
        Ok(())
    }

    fn identity(&self, env: EnvId) -> Identity {
        let e = &self.envs[&env];
        let handles = e
            .table
            .iter()
            .map(|(&h, &c)| {
                let cap = self.caps.get(c);
                let designation = &self.mailboxes[&cap.mailbox].designation;
                let designation = if cap.reply {
                    format!("{designation} (reply)")
                } else {
                    designation.to_string()
                };
                (h, designation, cap.rights)
            })
            .collect();
        Identity {
            env: e.name.to_string(),
            handles,
        }
    }

    #[allow(clippy::too_many_arguments)] // one per field of the request
    fn attenuate(
        &mut self,
        env: EnvId,
        id: RequestId,
        handle: Handle,
        rights: Rights,
        uses: Option<u32>,
        expires_in_ms: Option<u64>,
        badge: Option<u64>,
    ) -> Result<(), Deny> {
        let cap_id = self.cap_of(env, handle)?;
        self.check_live(handle, cap_id)?;
        if !self.caps.has_uses(cap_id) {
            return Err(self.deny_at(ErrorCode::UsedUp, handle, cap_id, "the handle is used up"));
        }
        let cap = self.caps.get(cap_id);
        if !self.mailboxes[&cap.mailbox].alive {
            return Err(self.deny_at(ErrorCode::Dead, handle, cap_id, "the mailbox is gone"));
        }
        if badge.is_some() && cap.badge != 0 {
            return Err(self.deny_at(
                ErrorCode::NoRight,
                handle,
                cap_id,
                "the handle already carries a badge; a badge is set once",
            ));
        }
        if !self.has_room(env, 1) {
            return Err(self.deny_at(
                ErrorCode::Unavailable,
                handle,
                cap_id,
                "the capability table is full",
            ));
        }
        let spec = CapSpec {
            mailbox: cap.mailbox,
            rights: without_receive(cap.rights.intersect(rights)),
            uses_left: min_opt(cap.uses_left, uses),
            expires_at: min_opt(
                cap.expires_at,
                expires_in_ms.map(|ms| self.now.saturating_add(ms)),
            ),
            badge: badge.unwrap_or(cap.badge),
            reply: cap.reply,
        };
        let child = self.mint(spec, Some(cap_id));
        let new = self.install(env, child);
        self.respond(
            env,
            id,
            Response::Handle {
                handle: new,
                rights: spec.rights,
            },
        );
        Ok(())
    }

    fn revoke(&mut self, env: EnvId, id: RequestId, handle: Handle) -> Result<(), Deny> {
        let cap_id = self.cap_of(env, handle)?;
        let freed = self.caps.revoke_descendants(cap_id);
        self.forget_caps(freed);
        self.respond(env, id, Response::Ok);
        Ok(())
    }

    fn drop_handle(&mut self, env: EnvId, id: RequestId, handle: Handle) -> Result<(), Deny> {
        let cap_id = self.cap_of(env, handle)?;
        let cap = self.caps.get(cap_id);
        let mb_id = cap.mailbox;
        let receive = cap.rights.contains(Rights::RECEIVE);
        if receive && mb_id == self.envs[&env].default_mailbox {
            return Err(self.deny_at(
                ErrorCode::BadRequest,
                handle,
                cap_id,
                "the default mailbox's own handle cannot be dropped",
            ));
        }
        let e = self.envs.get_mut(&env).expect("caller is running");
        e.table.remove(&handle);
        if receive {
            let discarded = self.kill_mailbox(mb_id, "its owner destroyed it");
            self.fire_mailbox_monitors(env, mb_id);
            if discarded > 0 {
                let record = AuditRecord {
                    at: self.now,
                    env: self.envs[&env].name.to_string(),
                    op: "drop",
                    handle: Some(handle),
                    target: Some(self.mailboxes[&mb_id].designation.to_string()),
                    code: ErrorCode::Dead.as_str(),
                    reason: format!(
                        "mailbox destroyed by its owner: {discarded} queued message(s) discarded"
                    ),
                    repeated: None,
                };
                self.audit(record);
            }
        }
        self.release_cap(cap_id);
        self.respond(env, id, Response::Ok);
        Ok(())
    }

    /// The mailbox `mb_id` of `owner` was destroyed: every monitor of it gets its `down` notice
    /// (monitors of the owner's other mailboxes stay).
    fn fire_mailbox_monitors(&mut self, owner: EnvId, mb_id: MailboxId) {
        let fired: Vec<(u64, EnvId)> = self
            .monitors
            .range((owner, 0)..=(owner, u64::MAX))
            .filter(|(_, (_, m))| *m == mb_id)
            .map(|(&(_, reference), &(watcher, _))| (reference, watcher))
            .collect();
        let owner_name = self.envs[&owner].name.clone();
        for (reference, watcher) in fired {
            self.monitors.remove(&(owner, reference));
            if let Some(w) = self.envs.get_mut(&watcher) {
                w.watching.remove(&(owner, reference));
                self.notify_down(watcher, owner_name.clone(), reference);
            }
        }
    }

    /// A reply capability (minted for `reply_to`, or attenuated from one) whose own last use
    /// was just spent leaves `env`'s table by itself, so that a server answering calls does
    /// not fill its table with spent handles.
    fn retire_spent_reply(&mut self, env: EnvId, handle: Handle, cap_id: CapId) {
        let cap = self.caps.get(cap_id);
        if cap.reply && cap.uses_left == Some(0) {
            if let Some(e) = self.envs.get_mut(&env) {
                e.table.remove(&handle);
            }
            self.release_cap(cap_id);
        }
    }

    fn monitor(&mut self, env: EnvId, id: RequestId, handle: Handle) -> Result<(), Deny> {
        let cap_id = self.cap_of(env, handle)?;
        self.check_live(handle, cap_id)?;
        let cap = self.caps.get(cap_id);
        if !cap.rights.contains(Rights::MONITOR) {
            return Err(self.deny_at(
                ErrorCode::NoRight,
                handle,
                cap_id,
                "the handle lacks MONITOR",
            ));
        }
        let mb_id = cap.mailbox;
        let mb = &self.mailboxes[&mb_id];
        let (owner, owner_name) = (mb.owner, mb.owner_name.clone());
        // A destroyed mailbox is as gone as one whose owner ended.
        let owner_running = self.envs.contains_key(&owner) && mb.alive;
        if owner_running && self.envs[&env].watching.len() >= self.config.max_handles {
            return Err(self.deny_at(ErrorCode::Unavailable, handle, cap_id, "too many monitors"));
        }
        let reference = self.next_monitor;
        self.next_monitor += 1;
        self.respond(env, id, Response::Monitor { reference });
        if owner_running {
            self.monitors.insert((owner, reference), (env, mb_id));
            let e = self.envs.get_mut(&env).expect("caller is running");
            e.watching.insert((owner, reference));
        } else {
            self.notify_down(env, owner_name, reference);
        }
        Ok(())
    }

    fn create_mailbox(
        &mut self,
        env: EnvId,
        id: RequestId,
        name: Option<String>,
    ) -> Result<(), Deny> {
        let e = &self.envs[&env];
        if let Some(n) = &name {
            if let Err(why) = check_label(n) {
                return Err(
                    Deny::new(ErrorCode::BadRequest, format!("mailbox name: {why}"))
                        .target(n.clone()),
                );
            }
            if e.mailboxes
                .iter()
                .any(|mb| self.mailboxes[mb].name.as_deref() == Some(n))
            {
                return Err(
                    Deny::new(ErrorCode::BadRequest, "a mailbox of yours has that name")
                        .target(format!("{}/{n}", e.name)),
                );
            }
        }
        if e.mailboxes.len() >= self.config.max_mailboxes_per_env {
            return Err(Deny::new(ErrorCode::Unavailable, "too many mailboxes"));
        }
        if !self.has_room(env, 1) {
            return Err(Deny::new(
                ErrorCode::Unavailable,
                "the capability table is full",
            ));
        }
        let e = self.envs.get_mut(&env).expect("caller is running");
        let designation = match &name {
            Some(n) => format!("{}/{n}", e.name),
            None => {
                let ordinal = e.next_ordinal;
                e.next_ordinal += 1;
                format!("{}/#{ordinal}", e.name)
            }
        };
        let (owner_name, capacity) = (e.name.clone(), e.capacity);
        let mb = self.new_mailbox(
            env,
            owner_name,
            designation.into(),
            name.map(String::into_boxed_str),
            capacity,
        );
        self.envs
            .get_mut(&env)
            .expect("caller is running")
            .mailboxes
            .push(mb);
        let cap = self.mint(Self::root_spec(mb, OWNER_RIGHTS), None);
        let handle = self.install(env, cap);
        self.respond(
            env,
            id,
            Response::Handle {
                handle,
                rights: OWNER_RIGHTS,
            },
        );
        Ok(())
    }

    // ----- helpers -----

    fn root_spec(mailbox: MailboxId, rights: Rights) -> CapSpec {
        CapSpec {
            mailbox,
            rights,
            uses_left: None,
            expires_at: None,
            badge: 0,
            reply: false,
        }
    }

    fn new_mailbox(
        &mut self,
        owner: EnvId,
        owner_name: Arc<str>,
        designation: Box<str>,
        name: Option<Box<str>>,
        capacity: usize,
    ) -> MailboxId {
        let id = MailboxId(self.next_mailbox);
        self.next_mailbox += 1;
        self.mailboxes.insert(
            id,
            Mailbox::new(owner, owner_name, designation, name, capacity),
        );
        id
    }

    /// Creates a capability object and counts it against its mailbox.
    fn mint(&mut self, spec: CapSpec, parent: Option<CapId>) -> CapId {
        let mb = self
            .mailboxes
            .get_mut(&spec.mailbox)
            .expect("caps designate known mailboxes");
        mb.cap_refs += 1;
        self.caps.mint(spec, parent)
    }

    /// Puts `cap` in `env`'s table under the next handle number. Callers check room first.
    ///
    /// Numbers are not reused while the counter lasts; after `u32::MAX` it wraps and goes on
    /// from the lowest number not in the table (never 0). A server that receives a reply
    /// handle with every call makes billions in its lifetime (4.3 billion: about twelve hours
    /// at 100,000 calls a second), and must not run out of them. The table holds at most
    /// `max_handles` entries, so a free number is always a few steps away.
    fn install(&mut self, env: EnvId, cap: CapId) -> Handle {
        let e = self
            .envs
            .get_mut(&env)
            .expect("installing into a running environment");
        let mut handle = e.next_handle;
        while handle == 0
            || e.table.contains_key(&handle)
            || e.declared_slots.values().any(|&h| h == handle)
        {
            handle = handle.wrapping_add(1);
        }
        e.next_handle = handle.wrapping_add(1);
        e.table.insert(handle, cap);
        handle
    }

    /// Number `env`'s new handles from `floor` on (when it is above the counter): for an
    /// environment re-attached after a kernel restart, whose program may still hold numbers
    /// the previous kernel gave it, so that they designate nothing instead of something new.
    pub fn number_handles_from(&mut self, env: EnvId, floor: Handle) {
        if let Some(e) = self.envs.get_mut(&env) {
            e.next_handle = e.next_handle.max(floor);
        }
    }

    /// Test hook: set `env`'s handle counter (to test its wrap-around).
    #[cfg(test)]
    pub(crate) fn set_next_handle(&mut self, env: EnvId, next: Handle) {
        if let Some(e) = self.envs.get_mut(&env) {
            e.next_handle = next;
        }
    }

    /// Whether `env`'s table can take `need` more handles.
    fn has_room(&self, env: EnvId, need: usize) -> bool {
        self.envs
            .get(&env)
            .is_some_and(|e| e.table.len().saturating_add(need) <= self.config.max_handles)
    }

    /// The object behind `handle` in `env`'s table.
    fn cap_of(&self, env: EnvId, handle: Handle) -> Result<CapId, Deny> {
        self.envs[&env].table.get(&handle).copied().ok_or_else(|| {
            Deny::new(
                ErrorCode::NoSuchHandle,
                format!("no handle {handle} in your table"),
            )
            .handle(handle)
        })
    }

    /// Fails if the object is revoked or expired.
    fn check_live(&self, handle: Handle, cap_id: CapId) -> Result<(), Deny> {
        let cap = self.caps.get(cap_id);
        if cap.revoked {
            return Err(self.deny_at(ErrorCode::Revoked, handle, cap_id, "the handle was revoked"));
        }
        if cap.expires_at.is_some_and(|at| self.now >= at) {
            return Err(self.deny_at(ErrorCode::Expired, handle, cap_id, "the handle expired"));
        }
        Ok(())
    }

    fn deny_at(&self, code: ErrorCode, handle: Handle, cap: CapId, detail: &str) -> Deny {
        let mb = self.caps.get(cap).mailbox;
        Deny::new(code, detail)
            .handle(handle)
            .target(self.mailboxes[&mb].designation.to_string())
    }

    /// Answers with an error and, unless it is `full` or `timeout` (outcomes, not denials),
    /// writes the audit record.
    fn refuse(&mut self, env: EnvId, id: RequestId, op: &'static str, deny: Deny) {
        let Some(e) = self.envs.get(&env) else {
            return;
        };
        let code = deny.code.as_str();
        // A flood's denials after the first few only count into their aggregate: no record is
        // built for them.
        if !matches!(deny.code, ErrorCode::Full | ErrorCode::Timeout)
            && !self
                .audit
                .count_repeat(&e.name, op, code, self.now, &mut self.actions)
        {
            let record = AuditRecord {
                at: self.now,
                env: e.name.to_string(),
                op,
                handle: deny.handle,
                target: deny.target,
                code: deny.code.as_str(),
                reason: deny.reason.unwrap_or_else(|| deny.detail.clone()),
                repeated: None,
            };
            self.audit(record);
        }
        self.respond(
            env,
            id,
            Response::Error {
                code: deny.code,
                detail: deny.detail,
            },
        );
    }

    fn respond(&mut self, env: EnvId, id: RequestId, mut response: Response) {
        if let Some(e) = self.envs.get(&env) {
            Self::mask_rights(e.version, &mut response);
            self.actions
                .push_back(Action::Respond { env, id, response });
        }
    }

    /// Writes an audit record through the per-environment rate limit (`audit.rs`).
    fn audit(&mut self, record: AuditRecord) {
        self.audit.record(record, self.now, &mut self.actions);
    }

    fn park(&mut self, env: EnvId, mb: MailboxId) {
        if let Some(e) = self.envs.get_mut(&env) {
            e.waiting += 1;
            *e.waiting_in.entry(mb).or_default() += 1;
        }
    }

    fn unpark(&mut self, env: EnvId, mb: MailboxId) {
        if let Some(e) = self.envs.get_mut(&env) {
            e.waiting -= 1;
            if let Some(n) = e.waiting_in.get_mut(&mb) {
                *n -= 1;
                if *n == 0 {
                    e.waiting_in.remove(&mb);
                }
            }
        }
    }

    /// Offers `msg` to the mailbox's waiting receives, then its queue, then (for a send that
    /// asked to wait) the waiting line. Returns whether the sender can be answered now.
    fn place(&mut self, mb_id: MailboxId, msg: Stored, sender: Option<(EnvId, RequestId)>) -> bool {
        loop {
            let mb = &self.mailboxes[&mb_id];
            let Some(pos) = mb
                .receivers
                .iter()
                .position(|r| matches(&r.filter, msg.correlation, &msg.headers))
            else {
                break;
            };
            let mb = self.mailboxes.get_mut(&mb_id).expect("looked up above");
            let r = mb.receivers.remove(pos).expect("position is in range");
            let designation = mb.designation.to_string();
            self.unpark(r.env, mb_id);
            if let Some(d) = r.deadline {
                self.deadlines.remove(&(d, r.seq, mb_id));
            }
            if self.has_room(r.env, msg.handles_needed()) {
                self.deliver_to(r.env, r.id, r.handle, msg, r.batch.is_some());
                return true;
            }
            let deny = Deny::new(
                ErrorCode::Unavailable,
                "no room in the capability table for its handles",
            )
            .handle(r.handle)
            .target(designation);
            self.refuse(r.env, r.id, "recv", deny);
        }
        let cost = msg.cost();
        let mb = &self.mailboxes[&mb_id];
        let enters = mb.senders.is_empty()
            && mb.has_room()
            && self.queue_takes(mb_id, &msg.from, std::iter::once(cost), 1) == 1;
        match sender {
            Some((env, id)) if !enters => {
                let mb = self.mailboxes.get_mut(&mb_id).expect("looked up above");
                mb.senders.push_back(WaitingSend {
                    env,
                    id,
                    entry: Entry::One(msg),
                    reply: SendReply::Ok,
                });
                self.park(env, mb_id);
                self.charge_waiting(env, cost);
                false
            }
            _ => {
                self.enqueue(mb_id, Entry::One(msg));
                true
            }
        }
    }

    /// Moves waiting sends into the queue while there is room, answering each whose last
    /// message got in (a waiting run may get in part by part).
    fn admit(&mut self, mb_id: MailboxId) {
        loop {
            let mb = self
                .mailboxes
                .get(&mb_id)
                .expect("admitting into a known mailbox");
            let room = mb.room();
            if room == 0 {
                break;
            }
            let Some(front) = mb.senders.front() else {
                break;
            };
            let (k, len) = match &front.entry {
                Entry::Run(run) => (
                    self.queue_takes(mb_id, &run.from, body_costs(&run.bodies), room),
                    run.bodies.len(),
                ),
                Entry::One(m) => (
                    self.queue_takes(mb_id, &m.from, std::iter::once(m.cost()), 1),
                    1,
                ),
            };
            if k == 0 {
                break;
            }
            let mb = self.mailboxes.get_mut(&mb_id).expect("looked up above");
            let front = mb.senders.front_mut().expect("front exists");
            if k < len {
                let Entry::Run(run) = &mut front.entry else {
                    unreachable!("only a run is admitted in part")
                };
                let part = RunStored {
                    from: run.from.clone(),
                    badge: run.badge,
                    bodies: run.bodies.split_front(k),
                };
                let sender = front.env;
                self.discharge_waiting(sender, part.cost());
                self.enqueue(mb_id, Entry::Run(part));
                break;
            }
            let w = mb.senders.pop_front().expect("front exists");
            self.discharge_waiting(w.env, w.entry.cost());
            self.enqueue(mb_id, w.entry);
            self.unpark(w.env, mb_id);
            self.answer_send(w.env, w.id, w.reply);
        }
    }

    /// Answers a send whose messages are all in: `ok`, `accepted`, or nothing if quiet.
    fn answer_send(&mut self, env: EnvId, id: RequestId, reply: SendReply) {
        match reply {
            SendReply::Ok => self.respond(env, id, Response::Ok),
            SendReply::Accepted(count) => self.respond(env, id, Response::Accepted { count }),
            SendReply::Quiet => {}
        }
    }

    /// Answers a receive with one message: a batch receive gets a plain message as a one-run
    /// `deliveries`, any other receive (or message) a `delivery`.
    fn deliver_to(&mut self, env: EnvId, id: RequestId, mailbox: Handle, msg: Stored, batch: bool) {
        if batch && msg.is_plain() {
            let mut bodies = Bodies::with_capacity(4 + msg.body.len());
            bodies
                .push(&msg.body)
                .expect("a stored body is within the limits");
            let run = Run {
                from: Sender {
                    env: msg.from.to_string(),
                    badge: msg.badge,
                },
                bodies,
            };
            let d = Deliveries {
                mailbox,
                runs: vec![run],
            };
            self.respond(env, id, Response::Deliveries(d));
        } else {
            self.deliver(env, id, mailbox, msg);
        }
    }

    /// Installs the message's capabilities in the receiver's table and answers its receive.
    fn deliver(&mut self, env: EnvId, id: RequestId, mailbox: Handle, msg: Stored) {
        if let Some(ticket) = msg.ticket {
            self.actions.push_back(Action::Settled {
                ticket,
                delivered: true,
            });
        }
        let caps = msg.caps.iter().map(|&c| self.install(env, c)).collect();
        let reply = msg.reply.map(|c| self.install(env, c));
        let delivery = Delivery {
            mailbox,
            from: Sender {
                env: msg.from.to_string(),
                badge: msg.badge,
            },
            headers: msg.headers,
            correlation: msg.correlation,
            body: msg.body,
            caps,
            reply,
            down: msg.down,
        };
        self.respond(env, id, Response::Delivery(delivery));
    }

    /// Queues a `down` notice in `watcher`'s default mailbox (beyond its capacity if need be).
    fn notify_down(&mut self, watcher: EnvId, owner_name: Arc<str>, reference: u64) {
        let mb = self.envs[&watcher].default_mailbox;
        let msg = Stored {
            from: owner_name,
            badge: 0,
            headers: vec![(DOWN_HEADER.0.to_string(), DOWN_HEADER.1.to_vec())],
            correlation: None,
            body: Vec::new(),
            caps: Vec::new(),
            reply: None,
            down: Some(reference),
            ticket: None,
        };
        self.place(mb, msg, None);
    }

    /// The mailbox dies: queued messages are discarded, waiting senders are answered `dead`, and
    /// waiting receives too (if their environment still runs). Returns how many queued messages
    /// were discarded.
    fn kill_mailbox(&mut self, mb_id: MailboxId, why: &str) -> usize {
        let mb = self
            .mailboxes
            .get_mut(&mb_id)
            .expect("killing a known mailbox");
        mb.alive = false;
        let owner = mb.owner;
        let designation = mb.designation.to_string();
        let queue = std::mem::take(&mut mb.queue);
        let discarded = std::mem::take(&mut mb.queued);
        let senders = std::mem::take(&mut mb.senders);
        let receivers = std::mem::take(&mut mb.receivers);
        if let Some(e) = self.envs.get_mut(&owner) {
            e.mailboxes.retain(|&m| m != mb_id);
        }
        for entry in queue {
            self.discharge_queued(mb_id, &entry.from().clone(), entry.cost());
            self.release_entry(entry);
        }
        for w in senders {
            self.unpark(w.env, mb_id);
            self.discharge_waiting(w.env, w.entry.cost());
            self.release_entry(w.entry);
            let deny = Deny::new(ErrorCode::Dead, format!("the mailbox is gone: {why}"))
                .target(designation.clone());
            self.refuse(w.env, w.id, "send", deny);
        }
        for r in receivers {
            self.unpark(r.env, mb_id);
            if let Some(d) = r.deadline {
                self.deadlines.remove(&(d, r.seq, mb_id));
            }
            let deny = Deny::new(ErrorCode::Dead, format!("the mailbox is gone: {why}"))
                .handle(r.handle)
                .target(designation.clone());
            self.refuse(r.env, r.id, "recv", deny);
        }
        if self.mailboxes[&mb_id].cap_refs == 0 {
            self.mailboxes.remove(&mb_id);
        }
        discarded
    }

    // ----- byte quotas -----

    /// How many of the messages costing `costs` (in order, at most `max`) the queue of `mb_id`
    /// can take now from `from` within its owner's byte quota and `from`'s share of it. An
    /// empty account always takes one message, so that a message larger than a quota (or a
    /// share) still passes, one at a time. Proxies and mailboxes of ended owners are not
    /// counted.
    fn queue_takes(
        &self,
        mb_id: MailboxId,
        from: &str,
        costs: impl Iterator<Item = usize>,
        max: usize,
    ) -> usize {
        let Some(owner) = self.envs.get(&self.mailboxes[&mb_id].owner) else {
            return max;
        };
        let own = *owner.name == *from;
        let share = owner.quota / SENDER_SHARE_DIVISOR;
        let mut pinned = owner.pinned();
        let mut mine = owner.from_bytes.get(from).copied().unwrap_or(0);
        let mut k = 0;
        for cost in costs.take(max) {
            let fits_owner = pinned == 0 || pinned.saturating_add(cost) <= owner.quota;
            let fits_share = own || mine == 0 || mine.saturating_add(cost) <= share;
            if !(fits_owner && fits_share) {
                break;
            }
            pinned += cost;
            mine += cost;
            k += 1;
        }
        k
    }

    /// Whether `env` may pin `cost` more bytes in sends waiting for room: within its quota, or
    /// into an empty account.
    fn may_wait(&self, env: EnvId, cost: usize) -> bool {
        self.envs
            .get(&env)
            .is_none_or(|e| e.pinned() == 0 || e.pinned().saturating_add(cost) <= e.quota)
    }

    /// Counts `cost` bytes from `from`, now queued in `mb_id`, against its owner.
    fn charge_queued(&mut self, mb_id: MailboxId, from: &Arc<str>, cost: usize) {
        let owner = self.mailboxes[&mb_id].owner;
        if let Some(e) = self.envs.get_mut(&owner) {
            e.queued_bytes += cost;
            *e.from_bytes.entry(from.clone()).or_default() += cost;
        }
    }

    /// `cost` bytes from `from` left the queue of `mb_id`.
    fn discharge_queued(&mut self, mb_id: MailboxId, from: &Arc<str>, cost: usize) {
        let owner = self.mailboxes[&mb_id].owner;
        if let Some(e) = self.envs.get_mut(&owner) {
            e.queued_bytes -= cost;
            if let Some(n) = e.from_bytes.get_mut(from) {
                *n -= cost;
                if *n == 0 {
                    e.from_bytes.remove(from);
                }
            }
        }
    }

    fn charge_waiting(&mut self, env: EnvId, cost: usize) {
        if let Some(e) = self.envs.get_mut(&env) {
            e.waiting_bytes += cost;
        }
    }

    fn discharge_waiting(&mut self, env: EnvId, cost: usize) {
        if let Some(e) = self.envs.get_mut(&env) {
            e.waiting_bytes -= cost;
        }
    }

    /// Appends `entry` to the queue of `mb_id` and charges its owner.
    fn enqueue(&mut self, mb_id: MailboxId, entry: Entry) {
        self.charge_queued(mb_id, &entry.from().clone(), entry.cost());
        self.mailboxes
            .get_mut(&mb_id)
            .expect("queueing into a known mailbox")
            .push_queue(entry);
    }

    /// The refusal of a message that the receiving environment's byte quota (or the sender's
    /// share of it) cannot take.
    fn receiver_quota_deny(
        &self,
        env: EnvId,
        mb_id: MailboxId,
        from: &str,
        cost: usize,
        handle: Handle,
        target: String,
    ) -> Deny {
        let owner = &self.envs[&self.mailboxes[&mb_id].owner];
        let mine = owner.from_bytes.get(from).copied().unwrap_or(0);
        let share = owner.quota / SENDER_SHARE_DIVISOR;
        let detail = if mine > 0 && mine.saturating_add(cost) > share && *owner.name != *from {
            format!(
                "the receiver's byte quota: {mine} bytes of yours are queued at {}, \
                 {cost} more would pass your share of {share}",
                owner.name
            )
        } else {
            format!(
                "the receiver's byte quota: {} of {} bytes in use at {}, {cost} more do not fit",
                owner.pinned(),
                owner.quota,
                owner.name
            )
        };
        self.quota_deny(env, detail).handle(handle).target(target)
    }

    /// The refusal of a send that would wait beyond the sender's own byte quota.
    fn sender_quota_deny(&self, env: EnvId, cost: usize, handle: Handle, target: String) -> Deny {
        let e = &self.envs[&env];
        let detail = format!(
            "your byte quota: {} of {} bytes in use, {cost} more cannot wait for room",
            e.pinned(),
            e.quota
        );
        self.quota_deny(env, detail).handle(handle).target(target)
    }

    /// A quota refusal: `quota` for connections that know the code, `unavailable` for older
    /// ones (the detail says which quota either way).
    fn quota_deny(&self, env: EnvId, detail: String) -> Deny {
        let code = if self.envs[&env].version >= warren_proto::QUOTA_VERSION {
            ErrorCode::Quota
        } else {
            ErrorCode::Unavailable
        };
        Deny::new(code, detail)
    }

    fn release_entry(&mut self, entry: Entry) {
        if let Entry::One(msg) = entry {
            self.release_message(msg);
        }
    }

    fn release_message(&mut self, msg: Stored) {
        if let Some(ticket) = msg.ticket {
            self.actions.push_back(Action::Settled {
                ticket,
                delivered: false,
            });
        }
        for c in msg.held_caps() {
            self.release_cap(c);
        }
    }

    fn release_cap(&mut self, cap: CapId) {
        let freed = self.caps.release(cap);
        self.forget_caps(freed);
    }

    /// Capability objects designating these mailboxes were freed: a dead mailbox goes with its
    /// last one.
    fn forget_caps(&mut self, freed: Vec<MailboxId>) {
        for mb_id in freed {
            let mb = self
                .mailboxes
                .get_mut(&mb_id)
                .expect("caps designate known mailboxes");
            mb.cap_refs -= 1;
            if !mb.alive && mb.cap_refs == 0 {
                self.mailboxes.remove(&mb_id);
            } else if mb.cap_refs == 0 && !self.remote.is_empty() {
                self.forget_token_proxy(mb_id);
            }
        }
    }
}
