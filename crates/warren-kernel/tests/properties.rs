//! Property tests: random sequences of operations over four environments, checked after every
//! step against a ghost model that knows only what the kernel reported (answers, deliveries) and
//! what the policy declares.
//!
//! The model predicts every authority decision exactly (which error, which handle number, which
//! rights), keeps the full derivation tree (never pruned, unlike the kernel's), and keeps each
//! mailbox's logical queue (queued messages, then waiting sends, in acceptance order). After
//! every step it checks that each environment's table holds exactly the handles the model saw
//! granted, with the rights, badge, expiry, revocation and target the model expects; that a
//! derived capability's rights are within its parent's; that a delivered message is the oldest
//! one matching the receive (so per sender→receiver order holds and nothing is duplicated);
//! that every error but `full`/`timeout` is audited. At the end it drains every mailbox (nothing
//! accepted may be missing), ends every environment, and checks that no object is left.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use warren_kernel::{Action, Config, EnvId, EnvSpec, Kernel, KernelError, Stats};
use warren_proto::{Delivery, ErrorCode, Filter, Handle, Message, Request, Response, Rights};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const MAILBOX_NAMES: [&str; 3] = ["m0", "m1", "Bad!"];
const LOOKUP_NAMES: [&str; 11] = [
    "a", "b", "c", "d", "b/m1", "c/m0", "a/m0", "a/m1", "c/m1", "b@far", "zz",
];
const OWNER: Rights = Rights(15);
const SGM: Rights = Rights(7);
const SM: Rights = Rights(5);
/// Most handles one delivery can install: three attachments and a reply.
const MAX_PER_MESSAGE: usize = 4;

fn spec(i: usize) -> EnvSpec {
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (may_send, may_discover, capacity) = match i {
        0 => (v(&["b", "c"]), v(&["d", "b/m1"]), None),
        1 => (v(&["c", "a", "c/m0", "c"]), v(&[]), Some(1)),
        2 => (v(&["d"]), v(&["a/m0", "a/m1"]), None),
        _ => (v(&["a", "b", "c"]), v(&["c/m1"]), Some(0)),
    };
    EnvSpec {
        name: NAMES[i].into(),
        may_send,
        may_discover,
        mailbox_capacity: capacity,
        mailbox_bytes: None,
    }
}

fn config() -> Config {
    Config {
        default_capacity: 2,
        max_handles: 24,
        max_mailboxes_per_env: 3,
        max_waiting_per_env: 3,
        // Every denial is checked against its record here; the rate limit has its own tests.
        audit_records_per_window: u32::MAX,
        ..Config::default()
    }
}

/// A handle as the generator picks it: one the environment holds, one of its newest (most
/// often a derived one), or any number.
#[derive(Debug, Clone)]
enum H {
    Held(usize),
    Newest(usize),
    Raw(u32),
}

#[derive(Debug, Clone)]
enum Op {
    Add(usize),
    Remove(usize),
    Send {
        env: usize,
        h: H,
        attach: Vec<H>,
        reply: Option<H>,
        corr: Option<u64>,
        wait: bool,
    },
    Recv {
        env: usize,
        mb: Option<H>,
        corr: Option<u64>,
        timeout: Option<u64>,
    },
    Attenuate {
        env: usize,
        h: H,
        rights: u32,
        uses: Option<u32>,
        ms: Option<u64>,
        badge: Option<u64>,
    },
    Revoke {
        env: usize,
        h: H,
    },
    Drop {
        env: usize,
        h: H,
    },
    Lookup {
        env: usize,
        name: usize,
    },
    Monitor {
        env: usize,
        h: H,
    },
    Create {
        env: usize,
        name: Option<usize>,
    },
    Whoami {
        env: usize,
    },
    Advance(u64),
    /// Derive a small tree under `h` (the first derivation with a use limit, each next one from
    /// an earlier node), then send through and drop its nodes in random order, the receiver
    /// taking each message: exercises budgets shared along derivations and their pruning.
    Spend {
        env: usize,
        h: H,
        uses: u32,
        tree: Vec<usize>,
        acts: Vec<(bool, usize)>,
    },
}

fn handle() -> impl Strategy<Value = H> {
    prop_oneof![
        3 => any::<usize>().prop_map(H::Held),
        3 => (0usize..3).prop_map(H::Newest),
        1 => (0u32..40).prop_map(H::Raw),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let env = || 0usize..4;
    prop_oneof![
        2 => env().prop_map(Op::Add),
        1 => env().prop_map(Op::Remove),
        8 => (
            env(),
            handle(),
            prop::collection::vec(handle(), 0..=3),
            prop::option::weighted(0.3, handle()),
            prop::option::of(0u64..3),
            any::<bool>(),
        )
            .prop_map(|(env, h, attach, reply, corr, wait)| Op::Send {
                env,
                h,
                attach,
                reply,
                corr,
                wait
            }),
        5 => (
            env(),
            prop::option::weighted(0.3, handle()),
            prop::option::of(0u64..3),
            prop_oneof![Just(Some(0)), (1u64..30).prop_map(Some), Just(None)],
        )
            .prop_map(|(env, mb, corr, timeout)| Op::Recv { env, mb, corr, timeout }),
        3 => (
            env(),
            handle(),
            0u32..16,
            prop::option::of(0u32..4),
            prop::option::of(0u64..60),
            prop::option::weighted(0.3, 0u64..3),
        )
            .prop_map(|(env, h, rights, uses, ms, badge)| Op::Attenuate {
                env,
                h,
                rights,
                uses,
                ms,
                badge
            }),
        2 => (env(), handle()).prop_map(|(env, h)| Op::Revoke { env, h }),
        2 => (env(), handle()).prop_map(|(env, h)| Op::Drop { env, h }),
        3 => (env(), 0..LOOKUP_NAMES.len()).prop_map(|(env, name)| Op::Lookup { env, name }),
        1 => (env(), handle()).prop_map(|(env, h)| Op::Monitor { env, h }),
        1 => (env(), prop::option::of(0..MAILBOX_NAMES.len()))
            .prop_map(|(env, name)| Op::Create { env, name }),
        1 => env().prop_map(|env| Op::Whoami { env }),
        3 => (0u64..40).prop_map(Op::Advance),
        3 => (
            env(),
            handle(),
            1u32..4,
            prop::collection::vec(0usize..4, 1..5),
            prop::collection::vec((prop::bool::weighted(0.3), 0usize..5), 1..9),
        )
            .prop_map(|(env, h, uses, tree, acts)| Op::Spend { env, h, uses, tree, acts }),
    ]
}

/// A capability in the model: the full derivation tree, never pruned.
#[derive(Debug, Clone)]
struct GCap {
    mb: usize,
    rights: Rights,
    uses: Option<u32>,
    expires_at: Option<u64>,
    badge: u64,
    parent: Option<usize>,
    children: Vec<usize>,
    revoked: bool,
    reply: bool,
}

#[derive(Debug)]
struct GMailbox {
    owner: EnvId,
    owner_name: &'static str,
    designation: String,
    name: Option<&'static str>,
    alive: bool,
    /// The logical queue: queued messages, then waiting sends.
    entries: Vec<usize>,
}

#[derive(Debug)]
struct GMsg {
    mb: usize,
    from: &'static str,
    badge: u64,
    corr: Option<u64>,
    caps: Vec<usize>,
    reply: Option<usize>,
    down: Option<u64>,
    /// The send waiting for room, if it is.
    waiting: Option<(EnvId, u32)>,
    delivered: bool,
}

#[derive(Debug)]
struct GEnv {
    id: EnvId,
    name: &'static str,
    table: BTreeMap<Handle, usize>,
    next_handle: Handle,
    /// Numbers reserved for declared targets that have not been granted yet.
    slots: BTreeMap<&'static str, Handle>,
    default_mb: usize,
    mailboxes: Vec<usize>,
    next_ordinal: u32,
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Send {
        msg: usize,
    },
    Recv {
        mb: usize,
        corr: Option<u64>,
        handle: Handle,
        deadline: Option<u64>,
        order: u64,
    },
}

struct Model {
    k: Kernel,
    cfg: Config,
    now: u64,
    caps: Vec<GCap>,
    mbs: Vec<GMailbox>,
    msgs: Vec<GMsg>,
    envs: BTreeMap<usize, GEnv>,
    stale: [Option<EnvId>; 4],
    pending: BTreeMap<(EnvId, u32), Pending>,
    next_req: u32,
    next_order: u64,
    next_monitor: u64,
    /// (watcher, owner, reference, the mailbox watched).
    monitors: Vec<(EnvId, EnvId, u64, usize)>,
    expect_dead: BTreeSet<(EnvId, u32)>,
    /// Kernel mailbox id → model mailbox: must stay a bijection.
    kernel_mb: BTreeMap<u64, usize>,
}

fn err(r: &Option<Response>) -> Option<ErrorCode> {
    match r {
        Some(Response::Error { code, .. }) => Some(*code),
        _ => None,
    }
}

#[track_caller]
fn expect_err(r: &Option<Response>, code: ErrorCode) {
    assert_eq!(err(r), Some(code), "expected {code:?}, got {r:?}");
}

impl Model {
    fn new() -> Model {
        let cfg = config();
        Model {
            k: Kernel::new(cfg.clone()),
            cfg,
            now: 0,
            caps: vec![],
            mbs: vec![],
            msgs: vec![],
            envs: BTreeMap::new(),
            stale: [None; 4],
            pending: BTreeMap::new(),
            next_req: 1,
            next_order: 0,
            next_monitor: 1,
            monitors: vec![],
            expect_dead: BTreeSet::new(),
            kernel_mb: BTreeMap::new(),
        }
    }

    // ----- model helpers -----

    fn mint(&mut self, cap: GCap) -> usize {
        let id = self.caps.len();
        if let Some(p) = cap.parent {
            assert!(
                self.caps[p].rights.contains(cap.rights),
                "model: rights grew"
            );
            self.caps[p].children.push(id);
        }
        self.caps.push(cap);
        id
    }

    fn root(mb: usize, rights: Rights) -> GCap {
        GCap {
            mb,
            rights,
            uses: None,
            expires_at: None,
            badge: 0,
            parent: None,
            children: vec![],
            revoked: false,
            reply: false,
        }
    }

    /// A declared grant of `target` to `env`: under its reserved number the first time; a new
    /// number only if the table has room (the kernel audits and skips a grant that does not fit).
    fn grant(&mut self, env: usize, target: &'static str, cap: usize) {
        let reserved = self.envs[&env].slots.contains_key(target);
        if !reserved && !self.has_room(env, 1) {
            return;
        }
        let e = self.envs.get_mut(&env).unwrap();
        match e.slots.remove(target) {
            Some(h) => {
                e.table.insert(h, cap);
            }
            None => {
                self.install(env, cap);
            }
        }
    }

    fn install(&mut self, env: usize, cap: usize) -> Handle {
        let e = self.envs.get_mut(&env).unwrap();
        let h = e.next_handle;
        e.next_handle += 1;
        e.table.insert(h, cap);
        h
    }

    /// As the kernel counts: the numbers reserved for declared targets not granted yet count
    /// as held (protocol.md §8).
    fn has_room(&self, env: usize, need: usize) -> bool {
        let e = &self.envs[&env];
        e.table.len() + e.slots.len() + need <= self.cfg.max_handles
    }

    fn waiting_count(&self, id: EnvId) -> usize {
        self.pending.keys().filter(|(e, _)| *e == id).count()
    }

    fn expired(&self, c: usize) -> bool {
        self.caps[c].expires_at.is_some_and(|t| self.now >= t)
    }

    fn has_uses(&self, c: usize) -> bool {
        let mut cur = Some(c);
        while let Some(x) = cur {
            if self.caps[x].uses == Some(0) {
                return false;
            }
            cur = self.caps[x].parent;
        }
        true
    }

    fn consume(&mut self, c: usize) {
        let mut cur = Some(c);
        while let Some(x) = cur {
            if let Some(n) = self.caps[x].uses.as_mut() {
                *n -= 1;
            }
            cur = self.caps[x].parent;
        }
    }

    fn descendants(&self, c: usize) -> Vec<usize> {
        let mut out = vec![];
        let mut stack = self.caps[c].children.clone();
        while let Some(x) = stack.pop() {
            out.push(x);
            stack.extend(self.caps[x].children.iter().copied());
        }
        out
    }

    fn env_of(&self, id: EnvId) -> usize {
        *self
            .envs
            .iter()
            .find(|(_, e)| e.id == id)
            .expect("a running environment")
            .0
    }

    fn pick(&self, env: usize, h: &H) -> Handle {
        match h {
            H::Raw(n) => *n,
            H::Held(i) => {
                let keys: Vec<Handle> = self.envs[&env].table.keys().copied().collect();
                if keys.is_empty() {
                    1
                } else {
                    keys[i % keys.len()]
                }
            }
            H::Newest(i) => {
                let keys = &self.envs[&env].table;
                keys.keys()
                    .rev()
                    .nth(*i)
                    .or(keys.keys().next_back())
                    .copied()
                    .unwrap_or(1)
            }
        }
    }

    fn matches(&self, corr: Option<u64>, msg: usize) -> bool {
        corr.is_none_or(|c| self.msgs[msg].corr == Some(c))
    }

    fn first_match(&self, mb: usize, corr: Option<u64>) -> Option<usize> {
        self.mbs[mb]
            .entries
            .iter()
            .copied()
            .find(|&m| self.matches(corr, m))
    }

    /// A `down` notice goes at the end of the queue, i.e. before the waiting sends.
    fn queue_down(&mut self, watcher: usize, from: &'static str, reference: u64) {
        let mb = self.envs[&watcher].default_mb;
        let msg = self.msgs.len();
        self.msgs.push(GMsg {
            mb,
            from,
            badge: 0,
            corr: None,
            caps: vec![],
            reply: None,
            down: Some(reference),
            waiting: None,
            delivered: false,
        });
        let entries = &self.mbs[mb].entries;
        let pos = entries.iter().position(|&m| self.msgs[m].waiting.is_some());
        let entries = &mut self.mbs[mb].entries;
        entries.insert(pos.unwrap_or(entries.len()), msg);
    }

    /// A mailbox dies: its logical queue is discarded, waiting requests on it expect `dead`.
    fn kill(&mut self, mb: usize, answer_receivers: bool) {
        self.mbs[mb].alive = false;
        self.mbs[mb].entries.clear();
        let on_it: Vec<((EnvId, u32), Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| match p {
                Pending::Send { msg } => self.msgs[*msg].mb == mb,
                Pending::Recv { mb: m, .. } => *m == mb,
            })
            .map(|(k, p)| (*k, *p))
            .collect();
        for (key, p) in on_it {
            match p {
                Pending::Send { .. } => {
                    self.expect_dead.insert(key);
                }
                Pending::Recv { .. } if answer_receivers => {
                    self.expect_dead.insert(key);
                }
                Pending::Recv { .. } => {
                    self.pending.remove(&key);
                }
            }
        }
    }

    // ----- driving the kernel -----

    fn drain(&mut self) -> Vec<Action> {
        let mut out = vec![];
        while let Some(a) = self.k.poll_action() {
            out.push(a);
        }
        out
    }

    /// Every error but `full` and `timeout` is immediately preceded by its audit record.
    fn check_audits(&self, actions: &[Action]) {
        for (i, a) in actions.iter().enumerate() {
            if let Action::Respond {
                env,
                response: Response::Error { code, .. },
                ..
            } = a
            {
                if matches!(code, ErrorCode::Full | ErrorCode::Timeout) {
                    continue;
                }
                let name = self.envs[&self.env_of(*env)].name;
                match i.checked_sub(1).map(|j| &actions[j]) {
                    Some(Action::Audit(r)) => {
                        assert_eq!((r.env.as_str(), r.code), (name, code.as_str()), "{a:?}");
                    }
                    other => panic!("error {a:?} without an audit record (before it: {other:?})"),
                }
            }
        }
    }

    fn request(&mut self, env: usize, req: Request) -> (u32, Option<Response>, Vec<Action>) {
        let eid = self.envs[&env].id;
        let id = self.next_req;
        self.next_req += 1;
        self.k.handle_request(eid, id, req, self.now);
        let mut actions = self.drain();
        self.check_audits(&actions);
        let own = actions.iter().position(
            |a| matches!(a, Action::Respond { env: e, id: i, .. } if *e == eid && *i == id),
        );
        let own = own.map(|p| match actions.remove(p) {
            Action::Respond { response, .. } => response,
            Action::Audit(_) | Action::Attest { .. } => unreachable!(),
            _ => unreachable!(),
        });
        (id, own, actions)
    }

    /// Checks a delivery against the model and installs its capabilities.
    fn delivered(&mut self, env: usize, mb: usize, corr: Option<u64>, handle: Handle, d: Delivery) {
        let msg = match d.down {
            Some(r) => *self.mbs[mb]
                .entries
                .iter()
                .find(|&&m| self.msgs[m].down == Some(r))
                .expect("a down notice the model expects"),
            None => u64::from_le_bytes(d.body.clone().try_into().expect("8-byte body")) as usize,
        };
        assert!(!self.msgs[msg].delivered, "message {msg} delivered twice");
        assert_eq!(self.msgs[msg].mb, mb, "delivered from the wrong mailbox");
        assert_eq!(
            self.first_match(mb, corr),
            Some(msg),
            "not the oldest matching message (order or loss)"
        );
        let m = &self.msgs[msg];
        assert_eq!(d.mailbox, handle);
        assert_eq!((d.from.env.as_str(), d.from.badge), (m.from, m.badge));
        assert_eq!(d.correlation, m.corr);
        assert_eq!(d.caps.len(), m.caps.len());
        assert_eq!(d.reply.is_some(), m.reply.is_some());
        if m.down.is_some() {
            assert_eq!(
                d.headers,
                vec![("warren-down".to_string(), b"ended".to_vec())]
            );
        }
        let (caps, reply) = (m.caps.clone(), m.reply);
        self.mbs[mb].entries.retain(|&x| x != msg);
        self.msgs[msg].delivered = true;
        for (i, c) in caps.into_iter().enumerate() {
            let h = self.install(env, c);
            assert_eq!(d.caps[i], h, "installed handle number");
        }
        if let Some(c) = reply {
            let h = self.install(env, c);
            assert_eq!(d.reply, Some(h));
        }
    }

    /// Answers to waiting requests (and audit records, already checked).
    fn process(&mut self, actions: Vec<Action>) {
        for a in actions {
            let Action::Respond { env, id, response } = a else {
                continue;
            };
            let p = self.pending.remove(&(env, id)).unwrap_or_else(|| {
                panic!("unsolicited answer {response:?} to {env:?} request {id}")
            });
            let dead = matches!(
                response,
                Response::Error {
                    code: ErrorCode::Dead,
                    ..
                }
            );
            assert_eq!(
                dead,
                self.expect_dead.remove(&(env, id)),
                "dead answer: {response:?}"
            );
            match (p, response) {
                (Pending::Send { msg }, Response::Ok) => self.msgs[msg].waiting = None,
                (
                    Pending::Send { .. },
                    Response::Error {
                        code: ErrorCode::Dead,
                        ..
                    },
                ) => {}
                (
                    Pending::Recv {
                        mb,
                        corr,
                        handle,
                        order,
                        ..
                    },
                    Response::Delivery(d),
                ) => {
                    let e = self.env_of(env);
                    let earlier = self.pending.values().any(|p| match p {
                        Pending::Recv {
                            mb: m,
                            corr: c,
                            order: o,
                            ..
                        } => {
                            *m == mb && *o < order && d.down.is_none() && {
                                let body: [u8; 8] = d.body.clone().try_into().unwrap();
                                self.matches(*c, u64::from_le_bytes(body) as usize)
                            }
                        }
                        Pending::Send { .. } => false,
                    });
                    assert!(!earlier, "a later receive overtook an earlier matching one");
                    self.delivered(e, mb, corr, handle, d);
                }
                (
                    Pending::Recv {
                        mb, corr, deadline, ..
                    },
                    Response::Error { code, .. },
                ) => match code {
                    ErrorCode::Timeout => {
                        assert!(deadline.is_some_and(|d| d <= self.now), "early timeout");
                        assert_eq!(self.first_match(mb, corr), None, "timeout with a match");
                    }
                    ErrorCode::Dead => assert!(!self.mbs[mb].alive),
                    ErrorCode::Unavailable => {
                        let e = self.env_of(env);
                        assert!(!self.has_room(e, MAX_PER_MESSAGE));
                    }
                    other => panic!("waiting receive answered {other:?}"),
                },
                (p, r) => panic!("{p:?} answered {r:?}"),
            }
        }
    }

    // ----- operations -----

    fn step(&mut self, op: &Op) {
        let env = match op {
            Op::Add(i) => return self.add(*i),
            Op::Remove(i) => return self.remove(*i),
            Op::Advance(ms) => return self.advance(self.now + ms),
            Op::Send { env, .. }
            | Op::Recv { env, .. }
            | Op::Attenuate { env, .. }
            | Op::Revoke { env, .. }
            | Op::Drop { env, .. }
            | Op::Lookup { env, .. }
            | Op::Monitor { env, .. }
            | Op::Create { env, .. }
            | Op::Spend { env, .. }
            | Op::Whoami { env } => *env,
        };
        if !self.envs.contains_key(&env) {
            // An ended environment's requests are ignored.
            if let Some(stale) = self.stale[env] {
                self.k.handle_request(stale, 0, Request::Whoami, self.now);
                assert!(
                    self.drain().is_empty(),
                    "an ended environment got an answer"
                );
            }
            return;
        }
        match op {
            Op::Send {
                h,
                attach,
                reply,
                corr,
                wait,
                ..
            } => {
                let h = self.pick(env, h);
                let attach: Vec<Handle> = attach.iter().map(|a| self.pick(env, a)).collect();
                let reply = reply.as_ref().map(|r| self.pick(env, r));
                self.send(env, h, attach, reply, *corr, *wait);
            }
            Op::Recv {
                mb, corr, timeout, ..
            } => {
                let mb = mb.as_ref().map(|m| self.pick(env, m));
                self.recv(env, mb, *corr, *timeout);
            }
            Op::Attenuate {
                h,
                rights,
                uses,
                ms,
                badge,
                ..
            } => {
                let h = self.pick(env, h);
                self.attenuate(env, h, Rights(*rights), *uses, *ms, *badge);
            }
            Op::Revoke { h, .. } => {
                let h = self.pick(env, h);
                self.revoke(env, h);
            }
            Op::Drop { h, .. } => {
                let h = self.pick(env, h);
                self.drop_handle(env, h);
            }
            Op::Lookup { name, .. } => self.lookup(env, LOOKUP_NAMES[*name]),
            Op::Monitor { h, .. } => {
                let h = self.pick(env, h);
                self.monitor(env, h);
            }
            Op::Create { name, .. } => self.create(env, name.map(|n| MAILBOX_NAMES[n])),
            Op::Whoami { .. } => self.whoami(env),
            Op::Spend {
                h,
                uses,
                tree,
                acts,
                ..
            } => {
                let mut nodes = vec![self.pick(env, h)];
                for (i, parent) in tree.iter().enumerate() {
                    let from = nodes[parent % nodes.len()];
                    let next = self.envs[&env].next_handle;
                    let limit = (i == 0).then_some(*uses);
                    self.attenuate(env, from, SGM, limit, None, None);
                    self.check();
                    if self.envs[&env].next_handle > next {
                        nodes.push(next);
                    }
                }
                for &(drop, n) in acts {
                    let h = nodes[n % nodes.len()];
                    if drop {
                        self.drop_handle(env, h);
                    } else {
                        self.send(env, h, vec![], None, None, false);
                        self.check();
                        self.take_one(env, h);
                    }
                    self.check();
                }
            }
            Op::Add(_) | Op::Remove(_) | Op::Advance(_) => unreachable!(),
        }
    }

    fn add(&mut self, i: usize) {
        if self.envs.contains_key(&i) {
            let r = self.k.add_env(spec(i), self.now);
            assert!(matches!(r, Err(KernelError::NameInUse { .. })), "{r:?}");
            return;
        }
        let id = self.k.add_env(spec(i), self.now).expect("add_env");
        assert!(self.drain().is_empty());
        let mb = self.mbs.len();
        self.mbs.push(GMailbox {
            owner: id,
            owner_name: NAMES[i],
            designation: NAMES[i].into(),
            name: None,
            alive: true,
            entries: vec![],
        });
        self.envs.insert(
            i,
            GEnv {
                id,
                name: NAMES[i],
                table: BTreeMap::new(),
                next_handle: 1,
                slots: BTreeMap::new(),
                default_mb: mb,
                mailboxes: vec![mb],
                next_ordinal: 1,
            },
        );
        let own = self.mint(Self::root(mb, OWNER));
        self.install(i, own);
        // A number for each declared target in declaration order, running or not; the grants
        // to running ones under theirs; then others' declared grants to it (under the number
        // each reserved for it, the first time).
        let mut seen = BTreeSet::new();
        let mut targets = Vec::new();
        for target in spec(i).may_send {
            if target.contains('/') || !seen.insert(target.clone()) {
                continue;
            }
            let t = NAMES.iter().position(|n| *n == target).unwrap();
            let e = self.envs.get_mut(&i).unwrap();
            e.slots.insert(NAMES[t], e.next_handle);
            e.next_handle += 1;
            targets.push(t);
        }
        for t in targets {
            if let Some(te) = self.envs.get(&t) {
                let cap = self.mint(Self::root(te.default_mb, SGM));
                self.grant(i, NAMES[t], cap);
            }
        }
        let mut others: Vec<(EnvId, usize)> = self
            .envs
            .iter()
            .filter(|&(&j, _)| j != i && spec(j).may_send.iter().any(|n| n == NAMES[i]))
            .map(|(&j, e)| (e.id, j))
            .collect();
        others.sort();
        for (_, j) in others {
            let cap = self.mint(Self::root(mb, SGM));
            self.grant(j, NAMES[i], cap);
        }
    }

    fn remove(&mut self, i: usize) {
        let Some(e) = self.envs.get(&i) else {
            return;
        };
        let (id, mailboxes) = (e.id, e.mailboxes.clone());
        self.k.remove_env(id, self.now);
        let actions = self.drain();
        // Its own waiting requests vanish (a waiting send's message with them).
        let own: Vec<((EnvId, u32), Pending)> = self
            .pending
            .iter()
            .filter(|((e, _), _)| *e == id)
            .map(|(k, p)| (*k, *p))
            .collect();
        for (key, p) in own {
            self.pending.remove(&key);
            if let Pending::Send { msg } = p {
                let mb = self.msgs[msg].mb;
                self.mbs[mb].entries.retain(|&m| m != msg);
            }
        }
        for mb in mailboxes {
            self.kill(mb, false);
        }
        let mut downs: Vec<(u64, EnvId)> = vec![];
        self.monitors.retain(|&(watcher, owner, r, _)| {
            if owner == id && watcher != id {
                downs.push((r, watcher));
            }
            watcher != id && owner != id
        });
        downs.sort();
        let env = self.envs.remove(&i).unwrap();
        self.stale[i] = Some(id);
        for (r, watcher) in downs {
            let w = self.env_of(watcher);
            self.queue_down(w, env.name, r);
        }
        for a in &actions {
            if let Action::Audit(r) = a {
                assert!(r.op == "end" || r.op == "send", "{r:?}");
            }
        }
        self.check_audits(&actions);
        self.process(actions);
    }

    fn advance(&mut self, to: u64) {
        self.now = to;
        self.k.handle_timeout(to);
        let actions = self.drain();
        self.process(actions);
        for p in self.pending.values() {
            if let Pending::Recv {
                deadline: Some(d), ..
            } = p
            {
                assert!(*d > self.now, "a receive outlived its deadline");
            }
        }
    }

    fn predict_send(
        &self,
        env: usize,
        h: Handle,
        attach: &[Handle],
        reply: Option<Handle>,
    ) -> Result<usize, ErrorCode> {
        let table = &self.envs[&env].table;
        let c = *table.get(&h).ok_or(ErrorCode::NoSuchHandle)?;
        let cap = &self.caps[c];
        if cap.revoked {
            return Err(ErrorCode::Revoked);
        }
        if self.expired(c) {
            return Err(ErrorCode::Expired);
        }
        if !self.has_uses(c) {
            return Err(ErrorCode::UsedUp);
        }
        if !cap.rights.contains(Rights::SEND) {
            return Err(ErrorCode::NoRight);
        }
        if !self.mbs[cap.mb].alive {
            return Err(ErrorCode::Dead);
        }
        for a in attach {
            let x = *table.get(a).ok_or(ErrorCode::NoSuchHandle)?;
            if self.caps[x].revoked {
                return Err(ErrorCode::Revoked);
            }
            if self.expired(x) {
                return Err(ErrorCode::Expired);
            }
            if !self.caps[x].rights.contains(Rights::GRANT) {
                return Err(ErrorCode::NoRight);
            }
        }
        if let Some(r) = reply {
            let x = *table.get(&r).ok_or(ErrorCode::NoSuchHandle)?;
            if !self.caps[x].rights.contains(Rights::RECEIVE) {
                return Err(ErrorCode::NoRight);
            }
        }
        Ok(c)
    }

    fn send(
        &mut self,
        env: usize,
        h: Handle,
        attach: Vec<Handle>,
        reply: Option<Handle>,
        corr: Option<u64>,
        wait: bool,
    ) {
        let predicted = self.predict_send(env, h, &attach, reply);
        let msg = self.msgs.len();
        let eid = self.envs[&env].id;
        let waiting = self.waiting_count(eid);
        let message = Message {
            headers: vec![],
            correlation: corr,
            body: (msg as u64).to_le_bytes().to_vec(),
            caps: attach.clone(),
            reply_to: reply,
        };
        let (id, own, actions) = self.request(
            env,
            Request::Send {
                handle: h,
                message,
                wait,
            },
        );
        match predicted {
            Err(code) => expect_err(&own, code),
            Ok(c) => match own {
                Some(Response::Error {
                    code: ErrorCode::Full,
                    ..
                }) => assert!(!wait),
                Some(Response::Error {
                    code: ErrorCode::Unavailable,
                    ..
                }) => {
                    assert!(wait && waiting >= self.cfg.max_waiting_per_env)
                }
                Some(Response::Ok) | None => {
                    assert!(own.is_some() || wait, "a send that may not wait is waiting");
                    self.consume(c);
                    let table = self.envs[&env].table.clone();
                    // A reply handle whose last use is spent leaves the table by itself.
                    if self.caps[c].reply && self.caps[c].uses == Some(0) {
                        self.envs.get_mut(&env).unwrap().table.remove(&h);
                    }
                    let caps = attach
                        .iter()
                        .map(|a| {
                            let src = self.caps[table[a]].clone();
                            self.mint(GCap {
                                rights: Rights(src.rights.0 & !Rights::RECEIVE.0),
                                parent: Some(table[a]),
                                children: vec![],
                                ..src
                            })
                        })
                        .collect();
                    let reply = reply.map(|r| {
                        let mut cap = Self::root(self.caps[table[&r]].mb, Rights::SEND);
                        cap.uses = Some(1);
                        cap.reply = true;
                        cap.parent = Some(table[&r]);
                        self.mint(cap)
                    });
                    let mb = self.caps[c].mb;
                    self.msgs.push(GMsg {
                        mb,
                        from: self.envs[&env].name,
                        badge: self.caps[c].badge,
                        corr,
                        caps,
                        reply,
                        down: None,
                        waiting: own.is_none().then_some((eid, id)),
                        delivered: false,
                    });
                    self.mbs[mb].entries.push(msg);
                    if own.is_none() {
                        self.pending.insert((eid, id), Pending::Send { msg });
                    }
                }
                other => panic!("send answered {other:?}"),
            },
        }
        self.process(actions);
    }

    fn recv(
        &mut self,
        env: usize,
        mailbox: Option<Handle>,
        corr: Option<u64>,
        timeout: Option<u64>,
    ) {
        let e = &self.envs[&env];
        let eid = e.id;
        let target = match mailbox {
            None => Ok((1, e.default_mb)),
            Some(h) => match e.table.get(&h) {
                None => Err(ErrorCode::NoSuchHandle),
                Some(&c) if !self.caps[c].rights.contains(Rights::RECEIVE) => {
                    Err(ErrorCode::NoRight)
                }
                Some(&c) => Ok((h, self.caps[c].mb)),
            },
        };
        let waiting = self.waiting_count(eid);
        let filter = Filter {
            correlation: corr,
            header: None,
        };
        let req = Request::Recv {
            mailbox,
            filter,
            timeout_ms: timeout,
        };
        let (id, own, actions) = self.request(env, req);
        match target {
            Err(code) => expect_err(&own, code),
            Ok((handle, mb)) => {
                assert!(
                    self.mbs[mb].alive,
                    "model: a RECEIVE handle to a dead mailbox"
                );
                match self.first_match(mb, corr) {
                    Some(m) => {
                        let need =
                            self.msgs[m].caps.len() + usize::from(self.msgs[m].reply.is_some());
                        if self.has_room(env, need) {
                            let Some(Response::Delivery(d)) = own else {
                                panic!("expected a delivery, got {own:?}");
                            };
                            self.delivered(env, mb, corr, handle, d);
                        } else {
                            expect_err(&own, ErrorCode::Unavailable);
                        }
                    }
                    None if timeout == Some(0) => expect_err(&own, ErrorCode::Timeout),
                    None if waiting >= self.cfg.max_waiting_per_env => {
                        expect_err(&own, ErrorCode::Unavailable)
                    }
                    None => {
                        assert_eq!(own, None, "a receive with nothing matching was answered");
                        let deadline = timeout.map(|t| self.now + t);
                        let order = self.next_order;
                        self.next_order += 1;
                        let p = Pending::Recv {
                            mb,
                            corr,
                            handle,
                            deadline,
                            order,
                        };
                        self.pending.insert((eid, id), p);
                    }
                }
            }
        }
        self.process(actions);
    }

    fn attenuate(
        &mut self,
        env: usize,
        h: Handle,
        rights: Rights,
        uses: Option<u32>,
        ms: Option<u64>,
        badge: Option<u64>,
    ) {
        let c = self.envs[&env].table.get(&h).copied();
        let predicted = match c {
            None => Err(ErrorCode::NoSuchHandle),
            Some(c) if self.caps[c].revoked => Err(ErrorCode::Revoked),
            Some(c) if self.expired(c) => Err(ErrorCode::Expired),
            Some(c) if !self.has_uses(c) => Err(ErrorCode::UsedUp),
            Some(c) if !self.mbs[self.caps[c].mb].alive => Err(ErrorCode::Dead),
            Some(c) if badge.is_some() && self.caps[c].badge != 0 => Err(ErrorCode::NoRight),
            Some(_) if !self.has_room(env, 1) => Err(ErrorCode::Unavailable),
            Some(c) => Ok(c),
        };
        let req = Request::Attenuate {
            handle: h,
            rights,
            uses,
            expires_in_ms: ms,
            badge,
        };
        let (_, own, actions) = self.request(env, req);
        match predicted {
            Err(code) => expect_err(&own, code),
            Ok(c) => {
                let p = self.caps[c].clone();
                let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let child = GCap {
                    mb: p.mb,
                    rights: Rights(p.rights.0 & rights.0 & !Rights::RECEIVE.0),
                    uses: min(p.uses.map(u64::from), uses.map(u64::from)).map(|u| u as u32),
                    expires_at: min(p.expires_at, ms.map(|ms| self.now + ms)),
                    badge: badge.unwrap_or(p.badge),
                    parent: Some(c),
                    children: vec![],
                    revoked: false,
                    reply: p.reply,
                };
                let rights = child.rights;
                let child = self.mint(child);
                let handle = self.install(env, child);
                assert_eq!(own, Some(Response::Handle { handle, rights }));
            }
        }
        self.process(actions);
    }

    fn revoke(&mut self, env: usize, h: Handle) {
        let c = self.envs[&env].table.get(&h).copied();
        let (_, own, actions) = self.request(env, Request::Revoke { handle: h });
        let Some(c) = c else {
            expect_err(&own, ErrorCode::NoSuchHandle);
            return self.process(actions);
        };
        assert_eq!(own, Some(Response::Ok));
        self.process(actions);
        let below = self.descendants(c);
        for &d in &below {
            self.caps[d].revoked = true;
        }
        // Every descendant still held answers `revoked`.
        let held: Vec<(usize, Handle)> = self
            .envs
            .iter()
            .flat_map(|(&e, env)| {
                env.table
                    .iter()
                    .filter(|(_, c)| below.contains(c))
                    .map(move |(&h, _)| (e, h))
            })
            .collect();
        for (e, h) in held {
            let (_, own, actions) = self.request(
                e,
                Request::Send {
                    handle: h,
                    message: Message::default(),
                    wait: false,
                },
            );
            expect_err(&own, ErrorCode::Revoked);
            self.process(actions);
        }
    }

    fn drop_handle(&mut self, env: usize, h: Handle) {
        let c = self.envs[&env].table.get(&h).copied();
        let (_, own, actions) = self.request(env, Request::Drop { handle: h });
        match c {
            None => expect_err(&own, ErrorCode::NoSuchHandle),
            Some(c) if c == self.envs[&env].table[&1] => expect_err(&own, ErrorCode::BadRequest),
            Some(c) => {
                assert_eq!(own, Some(Response::Ok));
                self.envs.get_mut(&env).unwrap().table.remove(&h);
                if self.caps[c].rights.contains(Rights::RECEIVE) {
                    let mb = self.caps[c].mb;
                    self.envs
                        .get_mut(&env)
                        .unwrap()
                        .mailboxes
                        .retain(|&m| m != mb);
                    self.kill(mb, true);
                    // Its monitors fire.
                    let mut downs: Vec<(u64, EnvId)> = vec![];
                    self.monitors.retain(|&(watcher, _, r, m)| {
                        if m == mb {
                            downs.push((r, watcher));
                        }
                        m != mb
                    });
                    downs.sort();
                    let from = self.envs[&env].name;
                    for (r, watcher) in downs {
                        let w = self.env_of(watcher);
                        self.queue_down(w, from, r);
                    }
                }
            }
        }
        self.process(actions);
    }

    fn lookup(&mut self, env: usize, name: &'static str) {
        let s = spec(env);
        let via_send = s.may_send.iter().any(|n| n == name);
        let allowed = via_send || s.may_discover.iter().any(|n| n == name);
        let target = if name.contains('@') || !allowed {
            None
        } else {
            let (owner, mbox) = match name.split_once('/') {
                Some((o, m)) => (o, Some(m)),
                None => (name, None),
            };
            let owner = NAMES.iter().position(|n| *n == owner);
            owner
                .and_then(|o| self.envs.get(&o))
                .and_then(|o| match mbox {
                    None => Some(o.default_mb),
                    Some(m) => o
                        .mailboxes
                        .iter()
                        .copied()
                        .find(|&x| self.mbs[x].name == Some(m)),
                })
        };
        let room = self.has_room(env, 1);
        let (_, own, actions) = self.request(env, Request::Lookup { name: name.into() });
        match target {
            None => expect_err(&own, ErrorCode::NotFound),
            Some(_) if !room => expect_err(&own, ErrorCode::Unavailable),
            Some(mb) => {
                let rights = if via_send { SGM } else { SM };
                let cap = self.mint(Self::root(mb, rights));
                let handle = self.install(env, cap);
                assert_eq!(own, Some(Response::Handle { handle, rights }));
            }
        }
        self.process(actions);
    }

    fn monitor(&mut self, env: usize, h: Handle) {
        let c = self.envs[&env].table.get(&h).copied();
        let eid = self.envs[&env].id;
        let owner = c
            .filter(|&c| self.mbs[self.caps[c].mb].alive)
            .map(|c| self.mbs[self.caps[c].mb].owner)
            .filter(|o| self.envs.values().any(|e| e.id == *o));
        let watching = self.monitors.iter().filter(|m| m.0 == eid).count();
        let predicted = match c {
            None => Err(ErrorCode::NoSuchHandle),
            Some(c) if self.caps[c].revoked => Err(ErrorCode::Revoked),
            Some(c) if self.expired(c) => Err(ErrorCode::Expired),
            Some(c) if !self.caps[c].rights.contains(Rights::MONITOR) => Err(ErrorCode::NoRight),
            Some(_) if owner.is_some() && watching >= self.cfg.max_handles => {
                Err(ErrorCode::Unavailable)
            }
            Some(c) => Ok(c),
        };
        let (_, own, actions) = self.request(env, Request::Monitor { handle: h });
        match predicted {
            Err(code) => expect_err(&own, code),
            Ok(c) => {
                let reference = self.next_monitor;
                self.next_monitor += 1;
                assert_eq!(own, Some(Response::Monitor { reference }));
                match owner {
                    Some(o) => self.monitors.push((eid, o, reference, self.caps[c].mb)),
                    None => {
                        // The owner has ended: the notice is queued at once.
                        let from = self.mbs[self.caps[c].mb].owner_name;
                        self.queue_down(env, from, reference);
                    }
                }
            }
        }
        self.process(actions);
    }

    fn create(&mut self, env: usize, name: Option<&'static str>) {
        let e = &self.envs[&env];
        let invalid = name.is_some_and(|n| n.contains('!'));
        let taken = name.is_some() && e.mailboxes.iter().any(|&m| self.mbs[m].name == name);
        let predicted = if invalid || taken {
            Err(ErrorCode::BadRequest)
        } else if e.mailboxes.len() >= self.cfg.max_mailboxes_per_env || !self.has_room(env, 1) {
            Err(ErrorCode::Unavailable)
        } else {
            Ok(())
        };
        let (_, own, actions) = self.request(
            env,
            Request::CreateMailbox {
                name: name.map(String::from),
            },
        );
        match predicted {
            Err(code) => expect_err(&own, code),
            Ok(()) => {
                let e = self.envs.get_mut(&env).unwrap();
                let designation = match name {
                    Some(n) => format!("{}/{n}", e.name),
                    None => {
                        e.next_ordinal += 1;
                        format!("{}/#{}", e.name, e.next_ordinal - 1)
                    }
                };
                let mb = self.mbs.len();
                e.mailboxes.push(mb);
                let (owner, owner_name) = (e.id, e.name);
                self.mbs.push(GMailbox {
                    owner,
                    owner_name,
                    designation,
                    name,
                    alive: true,
                    entries: vec![],
                });
                let cap = self.mint(Self::root(mb, OWNER));
                let handle = self.install(env, cap);
                assert_eq!(
                    own,
                    Some(Response::Handle {
                        handle,
                        rights: OWNER
                    })
                );
            }
        }
        self.process(actions);
    }

    fn whoami(&mut self, env: usize) {
        let expected: Vec<(Handle, String, Rights)> = self.envs[&env]
            .table
            .iter()
            .map(|(&h, &c)| {
                let cap = &self.caps[c];
                let d = &self.mbs[cap.mb].designation;
                (
                    h,
                    if cap.reply {
                        format!("{d} (reply)")
                    } else {
                        d.clone()
                    },
                    cap.rights,
                )
            })
            .collect();
        let (_, own, actions) = self.request(env, Request::Whoami);
        match own {
            Some(Response::Identity(id)) => {
                assert_eq!(id.env, self.envs[&env].name);
                assert_eq!(id.handles, expected);
            }
            other => panic!("whoami answered {other:?}"),
        }
        self.process(actions);
    }

    // ----- invariants -----

    fn check(&mut self) {
        assert!(
            self.expect_dead.is_empty(),
            "unanswered: {:?}",
            self.expect_dead
        );
        let mut live_entries = 0;
        for mb in &self.mbs {
            if mb.alive {
                live_entries += mb.entries.len();
            } else {
                assert!(mb.entries.is_empty());
            }
        }
        let pending_sends = self
            .pending
            .values()
            .filter(|p| matches!(p, Pending::Send { .. }))
            .count();
        let stats = self.k.stats();
        assert_eq!(stats.envs, self.envs.len());
        assert_eq!(stats.mailboxes, self.mbs.iter().filter(|m| m.alive).count());
        assert_eq!(stats.waiting_sends, pending_sends);
        assert_eq!(stats.waiting_recvs, self.pending.len() - pending_sends);
        assert_eq!(stats.queued + stats.waiting_sends, live_entries);
        assert_eq!(stats.monitors, self.monitors.len());
        // Byte accounting: every queued or waiting message is charged exactly once (to the
        // mailbox owner or to the waiting sender), and nothing else is.
        let charged: usize = self
            .mbs
            .iter()
            .filter(|mb| mb.alive)
            .flat_map(|mb| mb.entries.iter())
            .map(|&m| match self.msgs[m].down {
                Some(_) => warren_kernel::message_cost(0, &down_header()),
                None => warren_kernel::message_cost(8, &[]),
            })
            .sum();
        assert_eq!(stats.pinned_bytes, charged, "bytes pinned");

        let envs: Vec<usize> = self.envs.keys().copied().collect();
        for env in envs {
            let e = &self.envs[&env];
            let table = self.k.debug_table(e.id);
            let handles: Vec<Handle> = table.iter().map(|(h, _)| *h).collect();
            let expected: Vec<Handle> = e.table.keys().copied().collect();
            assert_eq!(
                handles, expected,
                "{}'s table holds what was not granted",
                e.name
            );
            for (h, info) in &table {
                let g = &self.caps[e.table[h]];
                let what = format!("{}'s handle {h}", e.name);
                assert_eq!(info.rights, g.rights, "{what}: rights");
                assert_eq!(info.revoked, g.revoked, "{what}: revoked");
                assert_eq!(info.expires_at, g.expires_at, "{what}: expiry");
                assert_eq!(info.badge, g.badge, "{what}: badge");
                assert_eq!(info.reply, g.reply, "{what}: reply");
                assert_eq!(
                    info.designation, self.mbs[g.mb].designation,
                    "{what}: target"
                );
                assert_eq!(info.mailbox_alive, self.mbs[g.mb].alive, "{what}: alive");
                let known = *self.kernel_mb.entry(info.mailbox).or_insert(g.mb);
                assert_eq!(
                    known, g.mb,
                    "{what}: two model mailboxes share a kernel mailbox"
                );
                // Rights only shrink along the kernel's derivation chain.
                let (mut rights, mut parent) = (info.rights, info.parent);
                while let Some(p) = parent {
                    let pi = self
                        .k
                        .debug_cap(p)
                        .expect("a parent link names a live object");
                    assert!(
                        pi.rights.contains(rights),
                        "{what}: a derivation has more rights"
                    );
                    assert_eq!(
                        pi.mailbox, info.mailbox,
                        "{what}: a derivation changed mailbox"
                    );
                    (rights, parent) = (pi.rights, pi.parent);
                }
            }
        }
        let mut seen = BTreeSet::new();
        assert!(
            self.kernel_mb.values().all(|m| seen.insert(*m)),
            "mailbox mapping not 1:1"
        );
    }

    /// Drains every mailbox, ends every environment, and checks nothing is lost or left over.
    fn finish(&mut self) {
        let envs: Vec<usize> = self.envs.keys().copied().collect();
        for env in &envs {
            loop {
                self.drop_borrowed(*env);
                let receive: Vec<Handle> = self.envs[env]
                    .table
                    .iter()
                    .filter(|(_, c)| self.caps[**c].rights.contains(Rights::RECEIVE))
                    .map(|(h, _)| *h)
                    .collect();
                let before = self.msgs.iter().filter(|m| m.delivered).count();
                for h in receive {
                    let mb = Some(h).filter(|&h| h != 1);
                    self.recv(*env, mb, None, Some(0));
                    self.drop_borrowed(*env);
                }
                self.check();
                if self.msgs.iter().filter(|m| m.delivered).count() == before {
                    break;
                }
            }
        }
        for mb in &self.mbs {
            assert!(
                !mb.alive || mb.entries.is_empty(),
                "accepted messages left: {mb:?}"
            );
        }
        assert!(
            self.pending
                .values()
                .all(|p| matches!(p, Pending::Recv { .. }))
        );
        assert_eq!(self.k.stats().queued, 0);
        for env in envs {
            self.remove(env);
            self.check();
        }
        assert_eq!(self.k.stats(), Stats::default());
        assert_eq!(
            self.k.debug_mailbox_objects(),
            0,
            "dead mailboxes were kept"
        );
        assert_eq!(self.k.poll_timeout(), None);
    }

    /// The owner of the mailbox `env`'s handle `h` designates takes one message from it.
    fn take_one(&mut self, env: usize, h: Handle) {
        let Some(&c) = self.envs[&env].table.get(&h) else {
            return;
        };
        let mb = self.caps[c].mb;
        let owner = self
            .envs
            .iter()
            .find(|(_, e)| e.id == self.mbs[mb].owner)
            .map(|(i, _)| *i);
        let Some(owner) = owner.filter(|_| self.mbs[mb].alive) else {
            return;
        };
        let receive = self.envs[&owner].table.iter().find(|(_, c)| {
            self.caps[**c].mb == mb && self.caps[**c].rights.contains(Rights::RECEIVE)
        });
        let h = *receive.expect("the owner holds its mailbox").0;
        self.recv(owner, Some(h).filter(|&h| h != 1), None, Some(0));
    }

    /// Drops every handle of `env` that is not one of its own mailboxes.
    fn drop_borrowed(&mut self, env: usize) {
        let borrowed: Vec<Handle> = self.envs[&env]
            .table
            .iter()
            .filter(|(_, c)| !self.caps[**c].rights.contains(Rights::RECEIVE))
            .map(|(h, _)| *h)
            .collect();
        for h in borrowed {
            self.drop_handle(env, h);
        }
    }
}

proptest! {
    // 384 cases by default; `PROPTEST_CASES=N` runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(384),
        ..ProptestConfig::default()
    })]

    /// The kernel agrees with the model on every answer, table and delivery, step by step.
    #[test]
    fn kernel_agrees_with_the_model(
        start in prop::collection::vec(0usize..4, 1..4),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut m = Model::new();
        for i in start {
            m.add(i);
        }
        m.check();
        for op in &ops {
            m.step(op);
            m.check();
        }
        m.finish();
    }
}

/// A longer deterministic run through the same model, to cover deep derivation chains.
#[test]
fn long_run_with_deep_derivations() {
    let mut m = Model::new();
    for i in 0..4 {
        m.add(i);
    }
    // a: handle 2 is to b. Build a chain of attenuations with use limits, dropping the middle.
    let mut h = 2;
    for step in 0..10u32 {
        m.attenuate(0, h, SGM, Some(5 + step % 3), None, None);
        let next = *m.envs[&0].table.keys().last().unwrap();
        if step % 2 == 1 {
            m.drop_handle(0, h);
        }
        m.check();
        h = next;
    }
    for _ in 0..6 {
        m.send(0, h, vec![h], None, None, false);
        m.check();
        m.recv(1, None, None, Some(0));
        m.check();
    }
    m.revoke(0, 2);
    m.check();
    m.finish();
}

/// A use budget shared by two derivations survives the kernel pruning the object that holds it.
#[test]
fn a_shared_budget_survives_pruning() {
    let mut m = Model::new();
    m.add(0);
    m.add(1);
    let newest = |m: &Model| *m.envs[&0].table.keys().last().unwrap();
    m.attenuate(0, 2, SGM, Some(2), None, None);
    let x = newest(&m);
    m.attenuate(0, x, SGM, None, None, None);
    let y = newest(&m);
    m.attenuate(0, x, SGM, None, None, None);
    let z = newest(&m);
    m.drop_handle(0, x); // kept by the kernel: two derivations share its budget
    m.check();
    for h in [y, z] {
        m.send(0, h, vec![], None, None, false);
        m.recv(1, None, None, Some(0));
    }
    assert_eq!(m.msgs.iter().filter(|g| g.delivered).count(), 2);
    m.drop_handle(0, z); // now pruned: the spent budget must move into y
    m.check();
    assert_eq!(m.predict_send(0, y, &[], None), Err(ErrorCode::UsedUp));
    m.send(0, y, vec![], None, None, false);
    m.check();
    m.finish();
}

fn down_header() -> Vec<(String, Vec<u8>)> {
    let (name, value) = warren_kernel::DOWN_HEADER;
    vec![(name.to_string(), value.to_vec())]
}
