//! Spawn in virtual time (protocol version 3): a parent spawns children from templates with
//! initial names; the tests check what a child can reach (exactly what it was given), every
//! refusal (rights, template permissions, ceilings, quotas, revocation), restricted shares,
//! links and `down` notices, Stop, and that a version-2 connection never sees the new rights.

use std::collections::BTreeSet;

use proptest::prelude::*;
use warren_kernel::{
    Action, AuditRecord, Config, EnvId, EnvSpec, ExitStatus, Kernel, SpawnBounds, SpawnOrder,
    TemplateInfo,
};
use warren_proto::{
    Delivery, ErrorCode, Filter, Handle, Limits, Message, Request, Response, Rights, Spawn, Spawned,
};

const SGM: Rights = Rights(1 | 2 | 4);
const SPAWN_GRANT: Rights = Rights(0x10 | 0x02);

/// A kernel, a clock, and everything it said.
struct World {
    k: Kernel,
    now: u64,
    next_id: u32,
    responses: Vec<(EnvId, u32, Response)>,
    audits: Vec<AuditRecord>,
    spawns: Vec<SpawnOrder>,
    stops: Vec<(EnvId, bool)>,
}

impl World {
    fn new(templates: Vec<TemplateInfo>) -> World {
        let mut k = Kernel::new(Config::default());
        k.set_templates(templates);
        World {
            k,
            now: 0,
            next_id: 1,
            responses: vec![],
            audits: vec![],
            spawns: vec![],
            stops: vec![],
        }
    }

    fn add(&mut self, name: &str, may_send: &[&str], may_spawn: &[&str]) -> EnvId {
        let id = self
            .k
            .add_env(
                EnvSpec {
                    name: name.into(),
                    may_send: may_send.iter().map(|s| s.to_string()).collect(),
                    ..EnvSpec::default()
                },
                self.now,
            )
            .unwrap();
        self.k
            .set_may_spawn(id, may_spawn.iter().map(|s| s.to_string()).collect());
        self.pump();
        id
    }

    fn pump(&mut self) {
        while let Some(a) = self.k.poll_action() {
            match a {
                Action::Respond { env, id, response } => self.responses.push((env, id, response)),
                Action::Audit(r) => self.audits.push(r),
                Action::Spawn(order) => self.spawns.push(*order),
                Action::Stop { env, kill, .. } => self.stops.push((env, kill)),
                _ => {}
            }
        }
    }

    fn submit(&mut self, env: EnvId, req: Request) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.k.handle_request(env, id, req, self.now);
        self.pump();
        id
    }

    fn answer(&mut self, env: EnvId, id: u32) -> Option<Response> {
        let pos = self
            .responses
            .iter()
            .position(|(e, i, _)| *e == env && *i == id)?;
        Some(self.responses.remove(pos).2)
    }

    fn call(&mut self, env: EnvId, req: Request) -> Response {
        let id = self.submit(env, req.clone());
        self.answer(env, id)
            .unwrap_or_else(|| panic!("no immediate answer to {req:?}"))
    }

    fn code(&mut self, env: EnvId, req: Request) -> ErrorCode {
        match self.call(env, req) {
            Response::Error { code, .. } => code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Spawns and has the driver succeed: the answer and the child's id.
    fn spawn(&mut self, env: EnvId, s: Spawn) -> (Spawned, EnvId) {
        let id = self.submit(env, Request::Spawn(s));
        assert!(self.answer(env, id).is_none(), "answered before it started");
        let order = self.spawns.pop().expect("a spawn order");
        let child = self.k.spawned(order.ticket, self.now).unwrap();
        self.pump();
        match self.answer(env, id) {
            Some(Response::Spawned(s)) => (s, child),
            other => panic!("expected Spawned, got {other:?}"),
        }
    }

    fn handle_of(&mut self, env: EnvId, name: &str) -> Handle {
        match self.call(
            env,
            Request::Lookup {
                name: name.to_owned(),
            },
        ) {
            Response::Handle { handle, .. } => handle,
            other => panic!("lookup {name}: {other:?}"),
        }
    }

    fn send(&mut self, env: EnvId, handle: Handle, body: &[u8]) -> Response {
        self.call(
            env,
            Request::Send {
                handle,
                message: Message {
                    body: body.to_vec(),
                    ..Message::default()
                },
                wait: false,
            },
        )
    }

    fn recv(&mut self, env: EnvId) -> Option<Delivery> {
        match self.call(
            env,
            Request::Recv {
                mailbox: None,
                filter: Filter::default(),
                timeout_ms: Some(0),
            },
        ) {
            Response::Delivery(d) => Some(d),
            Response::Error {
                code: ErrorCode::Timeout,
                ..
            } => None,
            other => panic!("recv: {other:?}"),
        }
    }

    fn whoami(&mut self, env: EnvId) -> Vec<(Handle, String, Rights)> {
        match self.call(env, Request::Whoami) {
            Response::Identity(i) => i.handles,
            other => panic!("whoami: {other:?}"),
        }
    }
}

fn template(name: &str) -> TemplateInfo {
    TemplateInfo {
        name: name.into(),
        max_instances: 100,
        args: false,
        env_allow: vec![],
        detach: false,
        limits: Limits {
            memory: Some(32 << 20),
            pids: Some(16),
            cpus: None,
            tmpfs_size: None,
        },
        may_spawn: vec![],
        mailbox_capacity: None,
    }
}

fn spawn_with(handle: Handle, names: &[(&str, Handle)]) -> Spawn {
    Spawn {
        handle,
        names: names.iter().map(|(n, h)| (n.to_string(), *h)).collect(),
        ..Spawn::default()
    }
}

/// The usual world: `front` may send to `store` and `secret` and spawn from `req`.
fn world() -> (World, EnvId, EnvId, EnvId, Handle) {
    let mut w = World::new(vec![template("req")]);
    let store = w.add("store", &[], &[]);
    let secret = w.add("secret", &[], &[]);
    let front = w.add("front", &["store", "secret"], &["req"]);
    let req = w.handle_of(front, "template:req");
    (w, front, store, secret, req)
}

#[test]
fn a_child_reaches_exactly_the_names_it_was_given() {
    let (mut w, front, store, secret, req) = world();
    // The parent has another mailbox of its own, which it does not pass.
    let Response::Handle {
        handle: jobs_handle,
        ..
    } = w.call(
        front,
        Request::CreateMailbox {
            name: Some("jobs".into()),
        },
    )
    else {
        panic!()
    };
    // The parent's table: its mailbox, store, secret, then the SPAWN handle.
    let parent = w.whoami(front);
    assert_eq!(parent[3], (4, "template:req".into(), SPAWN_GRANT));
    assert_eq!(req, 4);
    let (spawned, child) = w.spawn(front, spawn_with(req, &[("db", 2)]));
    assert_eq!(spawned.child, "req-1");
    assert_eq!(w.k.env_name(child), Some("req-1"));
    assert_eq!(w.k.parent_of(child), Some(front));
    assert_eq!(w.k.children_of(front), vec![child]);

    // Its table: its own mailbox and the one initial name, under the name it was given.
    let table = w.whoami(child);
    assert_eq!(
        table,
        vec![(1, "req-1".into(), Rights(15)), (2, "db".into(), SGM),]
    );
    assert_eq!(w.handle_of(child, "db"), 2, "found by name, same handle");
    assert_eq!(w.send(child, 2, b"put"), Response::Ok);
    let d = w.recv(store).expect("the store got it");
    assert_eq!(
        (d.from.env.as_str(), d.body.as_slice()),
        ("req-1", &b"put"[..])
    );

    // Nothing else: guessed handles, the parent's other names, lookups outside its policy.
    for h in (0..64).filter(|h| ![1, 2].contains(h)) {
        assert_eq!(
            w.code(
                child,
                Request::Send {
                    handle: h,
                    message: Message::default(),
                    wait: false,
                }
            ),
            ErrorCode::NoSuchHandle,
            "guessed handle {h}"
        );
    }
    for name in [
        "front/jobs",
        "secret",
        "front",
        "store",
        "template:req",
        "req",
        "front/x",
        "secret@far",
    ] {
        assert_eq!(
            w.code(child, Request::Lookup { name: name.into() }),
            ErrorCode::NotFound,
            "lookup {name}"
        );
    }
    assert!(w.recv(secret).is_none(), "nothing reached the secret");
    // Positive control: the parent itself reaches the secret.
    assert_eq!(w.send(front, 3, b"hi"), Response::Ok);
    assert!(w.recv(secret).is_some());
    // The parent's own other mailbox got nothing from the child either.
    let nothing = w.call(
        front,
        Request::Recv {
            mailbox: Some(jobs_handle),
            filter: Filter::default(),
            timeout_ms: Some(0),
        },
    );
    assert!(matches!(
        nothing,
        Response::Error {
            code: ErrorCode::Timeout,
            ..
        }
    ));
    // The parent holds a SEND|MONITOR handle to the child and a STOP handle.
    let parent = w.whoami(front);
    assert!(parent.contains(&(spawned.mailbox, "req-1".into(), Rights(1 | 4))));
    assert!(parent.contains(&(spawned.control, "req-1".into(), Rights::STOP)));
    assert_eq!(w.send(front, spawned.mailbox, b"job"), Response::Ok);
    assert_eq!(w.recv(child).unwrap().body, b"job");
}

#[test]
fn the_spawn_order_carries_what_the_spawner_chose_within_the_template() {
    let mut t = template("req");
    t.args = true;
    t.env_allow = vec!["REQUEST_ID".into()];
    t.detach = true;
    let mut w = World::new(vec![t]);
    let front = w.add("front", &[], &["req"]);
    let req = w.handle_of(front, "template:req");
    w.submit(
        front,
        Request::Spawn(Spawn {
            handle: req,
            suffix: Some("a1".into()),
            args: vec!["--once".into()],
            env: vec![("REQUEST_ID".into(), "7".into())],
            limits: Limits {
                memory: Some(8 << 20),
                ..Limits::default()
            },
            detach: true,
            names: vec![],
        }),
    );
    let order = w.spawns.pop().unwrap();
    assert_eq!(order.child, "req-a1");
    assert_eq!(order.parent, front);
    assert_eq!(order.parent_name, "front");
    assert_eq!(order.template, "req");
    assert_eq!(order.args, vec!["--once".to_string()]);
    assert_eq!(order.env, vec![("REQUEST_ID".into(), "7".into())]);
    assert_eq!(
        order.limits,
        Limits {
            memory: Some(8 << 20),
            pids: Some(16),
            cpus: None,
            tmpfs_size: None
        },
        "asked limits, ceilings where not asked"
    );
    assert!(order.detach);
    // The name is reserved while it starts.
    let dup = Request::Spawn(Spawn {
        handle: req,
        suffix: Some("a1".into()),
        ..Spawn::default()
    });
    assert_eq!(w.code(front, dup), ErrorCode::BadRequest);
}

#[test]
fn refusals_name_their_reason_and_are_audited() {
    let (mut w, front, _store, _secret, req) = world();
    let refused = |w: &mut World, s: Spawn, want: ErrorCode| {
        let before = w.audits.len();
        assert_eq!(w.code(front, Request::Spawn(s.clone())), want, "{s:?}");
        let rec = w.audits.last().expect("audited");
        assert!(w.audits.len() > before);
        assert_eq!((rec.op, rec.code), ("spawn", want.as_str()));
        assert!(w.spawns.is_empty(), "nothing was started");
    };
    // No SPAWN right: a mailbox handle.
    refused(&mut w, spawn_with(2, &[]), ErrorCode::NoRight);
    refused(&mut w, spawn_with(99, &[]), ErrorCode::NoSuchHandle);
    let base = spawn_with(req, &[]);
    refused(
        &mut w,
        Spawn {
            args: vec!["x".into()],
            ..base.clone()
        },
        ErrorCode::NotAllowed,
    );
    refused(
        &mut w,
        Spawn {
            env: vec![("PATH".into(), "/x".into())],
            ..base.clone()
        },
        ErrorCode::NotAllowed,
    );
    refused(
        &mut w,
        Spawn {
            limits: Limits {
                memory: Some((32 << 20) + 1),
                ..Limits::default()
            },
            ..base.clone()
        },
        ErrorCode::NotAllowed,
    );
    refused(
        &mut w,
        Spawn {
            detach: true,
            ..base.clone()
        },
        ErrorCode::NotAllowed,
    );
    refused(
        &mut w,
        Spawn {
            suffix: Some("Bad".into()),
            ..base.clone()
        },
        ErrorCode::BadRequest,
    );
    // An initial name through a handle without GRANT.
    let Response::Handle {
        handle: send_only, ..
    } = w.call(
        front,
        Request::Attenuate {
            handle: 2,
            rights: Rights::SEND,
            uses: None,
            expires_in_ms: None,
            badge: None,
        },
    )
    else {
        panic!()
    };
    refused(
        &mut w,
        spawn_with(req, &[("db", send_only)]),
        ErrorCode::NoRight,
    );
    refused(
        &mut w,
        spawn_with(req, &[("db", 2), ("db", 3)]),
        ErrorCode::BadRequest,
    );
    refused(
        &mut w,
        spawn_with(req, &[("Not A Label", 2)]),
        ErrorCode::BadRequest,
    );
    // Positive control: the same handle spawns when the request is within the template.
    w.spawn(front, base);
}

/// An initial name `template:NAME` is the name of a SPAWN handle on template NAME: a mailbox
/// or another template's SPAWN handle under it is refused (it would take the place of the SPAWN
/// handle the child's own `may_spawn` gives, under a name that lies about what it is).
/// Positive control: a SPAWN handle on that very template is accepted and spawns.
#[test]
fn a_template_initial_name_must_be_a_spawn_handle_on_that_template() {
    let mut outer = template("req");
    outer.may_spawn = vec!["inner".into()];
    let mut w = World::new(vec![outer, template("inner")]);
    let store = w.add("store", &[], &[]);
    let front = w.add("front", &["store"], &["req", "inner"]);
    let req = w.handle_of(front, "template:req");
    let inner = w.handle_of(front, "template:inner");
    for (what, h) in [("a mailbox", 2), ("another template", req)] {
        let before = w.audits.len();
        assert_eq!(
            w.code(
                front,
                Request::Spawn(spawn_with(req, &[("template:inner", h)]))
            ),
            ErrorCode::BadRequest,
            "{what} under template:inner"
        );
        assert!(w.audits.len() > before, "audited");
        assert!(w.spawns.is_empty(), "nothing was started");
    }
    // The refused spawns took no place and spent nothing: the same handle spawns at once.
    let (_, child) = w.spawn(front, spawn_with(req, &[("template:inner", inner)]));
    let table = w.whoami(child);
    assert_eq!(
        table
            .iter()
            .filter(|(_, n, _)| n == "template:inner")
            .count(),
        1,
        "{table:?}"
    );
    let h = w.handle_of(child, "template:inner");
    let (grandchild, _) = w.spawn(child, spawn_with(h, &[]));
    assert!(grandchild.child.starts_with("inner-"), "{grandchild:?}");
    assert!(w.recv(store).is_none());
}

/// A child may not take a name a running environment's `may_send` or `may_discover` names:
/// whoever registers under it would get that environment's send capability (or be found by its
/// lookup), so a spawner choosing the suffix could receive what was meant for another. The
/// kernel's own numbering skips such names. Positive control: another suffix spawns.
#[test]
fn a_child_may_not_take_a_name_the_policy_gives_authority_to() {
    let (mut w, front, _store, _secret, req) = world();
    let watcher = w.add("watcher", &["req-victim", "req-1", "req-box/jobs"], &[]);
    let discoverer =
        w.k.add_env(
            EnvSpec {
                name: "discoverer".into(),
                may_discover: vec!["req-found".into()],
                ..EnvSpec::default()
            },
            w.now,
        )
        .unwrap();
    w.pump();
    for suffix in ["victim", "box", "found"] {
        let before = w.audits.len();
        let s = Spawn {
            suffix: Some(suffix.into()),
            ..spawn_with(req, &[])
        };
        assert_eq!(
            w.code(front, Request::Spawn(s)),
            ErrorCode::BadRequest,
            "suffix {suffix}"
        );
        assert!(w.audits.len() > before, "audited");
        assert!(w.spawns.is_empty(), "nothing was started");
    }
    // The kernel's numbering skips req-1, which watcher names.
    let (numbered, _) = w.spawn(front, spawn_with(req, &[]));
    assert_eq!(numbered.child, "req-2");
    let (other, _) = w.spawn(
        front,
        Spawn {
            suffix: Some("other".into()),
            ..spawn_with(req, &[])
        },
    );
    assert_eq!(other.child, "req-other");
    // Nothing of the children reached the watcher's or the discoverer's tables.
    assert_eq!(w.whoami(watcher).len(), 1);
    assert_eq!(w.whoami(discoverer).len(), 1);
}

/// A spawn needs room in the spawner's table for Spawned's two handles, counting the spawns
/// still starting: without it the spawn is refused at once with `unavailable` (it used to be
/// accepted, started, then refused and the child stopped again). Positive control: the first
/// spawn, for which there is room, is accepted.
#[test]
fn a_spawn_without_room_for_its_handles_is_refused_before_it_starts() {
    let mut w = World::new(vec![template("req")]);
    w.k = Kernel::new(Config {
        max_handles: 6,
        ..Config::default()
    });
    w.k.set_templates(vec![template("req")]);
    w.add("store", &[], &[]);
    w.add("secret", &[], &[]);
    let front = w.add("front", &["store", "secret"], &["req"]);
    let req = w.handle_of(front, "template:req");
    assert_eq!(w.whoami(front).len(), 4);
    // Accepted, still starting: its two handles are spoken for.
    let first = w.submit(front, Request::Spawn(spawn_with(req, &[])));
    assert!(w.answer(front, first).is_none());
    assert_eq!(w.spawns.len(), 1);
    let before = w.audits.len();
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(req, &[]))),
        ErrorCode::Unavailable
    );
    assert!(w.audits.len() > before, "audited");
    assert_eq!(w.spawns.len(), 1, "nothing else was started");
    // The first one completes with its handles.
    let order = w.spawns.pop().unwrap();
    w.k.spawned(order.ticket, w.now).unwrap();
    w.pump();
    assert!(matches!(w.answer(front, first), Some(Response::Spawned(_))));
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(req, &[]))),
        ErrorCode::Unavailable
    );
    assert!(w.spawns.is_empty());
    assert!(
        w.stops.is_empty(),
        "no child was started only to be stopped"
    );
}

/// A template left out of a declaration (`warren apply` of a manifest without it) and declared
/// again is the same template: its children that ran on still count against `max_instances`
/// (the count used to start again from 0, letting more than `max_instances` run), and while
/// it is not declared its handles refuse with `not-allowed`. Positive control: once the old
/// child ends, a spawn is accepted again.
#[test]
fn a_template_declared_again_still_counts_its_running_children() {
    let mut one = template("one");
    one.max_instances = 1;
    let mut w = World::new(vec![one.clone()]);
    let front = w.add("front", &[], &["one"]);
    let h = w.handle_of(front, "template:one");
    let (_, first) = w.spawn(front, spawn_with(h, &[]));
    w.k.set_templates(vec![]);
    w.pump();
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(h, &[]))),
        ErrorCode::NotAllowed,
        "not declared"
    );
    w.k.set_templates(vec![one]);
    w.pump();
    assert_eq!(w.k.template_live("one"), Some(1));
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(h, &[]))),
        ErrorCode::Quota,
        "its first child still runs"
    );
    assert!(w.spawns.is_empty());
    w.k.remove_env(first, w.now);
    w.pump();
    assert_eq!(w.k.template_live("one"), Some(0));
    w.spawn(front, spawn_with(h, &[]));
}

/// A limit outside the driver's bounds (the launcher's: below 4 MiB of memory, say) is refused
/// at once with `bad-request` naming the range, even under a template with no ceiling; before,
/// the kernel accepted it and the child's launcher failed (`spawn-failed`). Positive control:
/// the bounds themselves are accepted.
#[test]
fn a_limit_outside_the_launchers_bounds_is_refused_before_anything_starts() {
    let mut free = template("free");
    free.limits = Limits::default();
    free.max_instances = 10;
    let mut w = World::new(vec![free]);
    w.k.set_spawn_bounds(SpawnBounds {
        memory: (4 << 20, 16 << 40),
        pids: (1, 4_194_304),
        cpus: (1, 4_096_999_999),
        tmpfs_size: (4 << 10, 1 << 40),
    });
    let front = w.add("front", &[], &["free"]);
    let h = w.handle_of(front, "template:free");
    let with = |limits: Limits| Spawn {
        limits,
        ..spawn_with(h, &[])
    };
    for limits in [
        Limits {
            memory: Some(4096),
            ..Limits::default()
        },
        Limits {
            memory: Some((16 << 40) + 1),
            ..Limits::default()
        },
        Limits {
            tmpfs_size: Some(1),
            ..Limits::default()
        },
        Limits {
            pids: Some(4_194_305),
            ..Limits::default()
        },
        Limits {
            cpus: Some(4_097_000_000),
            ..Limits::default()
        },
    ] {
        let id = w.submit(front, Request::Spawn(with(limits)));
        match w.answer(front, id) {
            Some(Response::Error {
                code: ErrorCode::BadRequest,
                detail,
            }) => assert!(detail.contains("is out of range: expected"), "{detail}"),
            other => panic!("{limits:?}: {other:?}"),
        }
        assert!(w.spawns.is_empty(), "nothing was started for {limits:?}");
    }
    let (_, _) = w.spawn(
        front,
        with(Limits {
            memory: Some(4 << 20),
            pids: Some(1),
            cpus: Some(1),
            tmpfs_size: Some(4 << 10),
        }),
    );
}

#[test]
fn max_instances_is_host_wide_and_a_failed_start_returns_its_place() {
    let mut t = template("one");
    t.max_instances = 1;
    let mut w = World::new(vec![t]);
    let a = w.add("a", &[], &["one"]);
    let b = w.add("b", &[], &["one"]);
    let ha = w.handle_of(a, "template:one");
    let hb = w.handle_of(b, "template:one");
    // A start that fails gives the place back.
    let id = w.submit(a, Request::Spawn(spawn_with(ha, &[])));
    let order = w.spawns.pop().unwrap();
    assert_eq!(
        w.code(b, Request::Spawn(spawn_with(hb, &[]))),
        ErrorCode::Quota
    );
    w.k.spawn_failed(order.ticket, "no such image", w.now);
    w.pump();
    assert!(matches!(
        w.answer(a, id),
        Some(Response::Error {
            code: ErrorCode::SpawnFailed,
            ..
        })
    ));
    assert_eq!(w.k.template_live("one"), Some(0));
    // Now b may; then a may not (host-wide), until b's child ends.
    let (_, child) = w.spawn(b, spawn_with(hb, &[]));
    assert_eq!(
        w.code(a, Request::Spawn(spawn_with(ha, &[]))),
        ErrorCode::Quota
    );
    w.k.remove_env(child, w.now);
    w.pump();
    w.spawn(a, spawn_with(ha, &[]));
}

#[test]
fn a_restricted_share_and_ceiling_bound_what_is_spawned_through_it() {
    let (mut w, front, _store, _secret, req) = world();
    let Response::Handle {
        handle: small,
        rights,
    } = w.call(
        front,
        Request::Restrict {
            handle: req,
            share: Some(1),
            limits: Limits {
                memory: Some(16 << 20),
                ..Limits::default()
            },
        },
    )
    else {
        panic!()
    };
    assert_eq!(rights, SPAWN_GRANT);
    let too_big = Spawn {
        limits: Limits {
            memory: Some(20 << 20),
            ..Limits::default()
        },
        ..spawn_with(small, &[])
    };
    assert_eq!(
        w.code(front, Request::Spawn(too_big.clone())),
        ErrorCode::NotAllowed
    );
    // The unrestricted handle allows it (positive control).
    w.spawn(
        front,
        Spawn {
            handle: req,
            ..too_big
        },
    );
    let (_, child) = w.spawn(front, spawn_with(small, &[]));
    assert_eq!(w.spawns.len(), 0);
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(small, &[]))),
        ErrorCode::Quota
    );
    // A child ending returns its place in the share.
    w.k.remove_env(child, w.now);
    w.pump();
    let (_, child) = w.spawn(front, spawn_with(small, &[]));
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(small, &[]))),
        ErrorCode::Quota
    );
    assert!(w.k.template_of(child) == Some("req"));
}

#[test]
fn revoking_a_spawn_capability_stops_further_spawns_not_running_children() {
    let (mut w, front, _store, _secret, req) = world();
    let Response::Handle { handle: lent, .. } = w.call(
        front,
        Request::Attenuate {
            handle: req,
            rights: SPAWN_GRANT,
            uses: None,
            expires_in_ms: None,
            badge: None,
        },
    ) else {
        panic!()
    };
    // A child that itself may spawn through the lent handle.
    let (_, child) = w.spawn(front, spawn_with(req, &[("template:req", lent)]));
    let h = w.handle_of(child, "template:req");
    let (_, grandchild) = w.spawn(child, spawn_with(h, &[]));
    assert_eq!(w.k.parent_of(grandchild), Some(child));
    assert_eq!(w.call(front, Request::Revoke { handle: req }), Response::Ok);
    assert_eq!(
        w.code(child, Request::Spawn(spawn_with(h, &[]))),
        ErrorCode::Revoked
    );
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(lent, &[]))),
        ErrorCode::Revoked
    );
    assert!(w.stops.is_empty(), "running children are not stopped");
    assert_eq!(w.k.env_name(grandchild), Some("req-2"));
    // The root handle itself stays valid.
    w.spawn(front, spawn_with(req, &[]));
}

#[test]
fn linked_children_stop_with_their_parent_and_detached_ones_do_not() {
    let mut t = template("req");
    t.detach = true;
    let mut w = World::new(vec![t]);
    let front = w.add("front", &[], &["req"]);
    let req = w.handle_of(front, "template:req");
    let (_, linked) = w.spawn(front, spawn_with(req, &[]));
    let (_, detached) = w.spawn(
        front,
        Spawn {
            detach: true,
            ..spawn_with(req, &[])
        },
    );
    assert!(w.k.is_detached(detached));
    w.k.remove_env(front, w.now);
    w.pump();
    assert_eq!(w.stops, vec![(linked, false)]);
    // A spawn still starting when its parent ends is stopped as soon as it starts.
    let front2 = w.add("front2", &[], &["req"]);
    let req2 = w.handle_of(front2, "template:req");
    w.submit(front2, Request::Spawn(spawn_with(req2, &[])));
    let order = w.spawns.pop().unwrap();
    w.k.remove_env(front2, w.now);
    let late = w.k.spawned(order.ticket, w.now).unwrap();
    w.pump();
    assert_eq!(w.stops.last(), Some(&(late, false)));
}

#[test]
fn a_parent_gets_a_down_notice_with_the_exit_status() {
    let (mut w, front, _store, _secret, req) = world();
    let (s1, c1) = w.spawn(front, spawn_with(req, &[]));
    let (s2, c2) = w.spawn(front, spawn_with(req, &[]));
    w.k.set_exit_status(c1, ExitStatus::Code(3));
    w.k.remove_env(c1, w.now);
    w.k.set_exit_status(c2, ExitStatus::Signal(9));
    w.k.remove_env(c2, w.now);
    w.pump();
    for (s, want) in [(s1, "code=3"), (s2, "signal=9")] {
        let d = w.recv(front).expect("a down notice");
        assert_eq!(d.down, Some(s.reference));
        assert_eq!(d.from.env, s.child);
        assert_eq!(
            d.headers,
            vec![
                ("warren-down".into(), b"ended".to_vec()),
                ("warren-exit".into(), want.as_bytes().to_vec()),
            ]
        );
    }
    assert!(w.k.children_of(front).is_empty());
    assert_eq!(w.k.template_live("req"), Some(0));
}

#[test]
fn stop_needs_the_stop_right() {
    let (mut w, front, _store, _secret, req) = world();
    let (s, child) = w.spawn(front, spawn_with(req, &[]));
    let stop = |handle, kill| Request::Stop { handle, kill };
    assert_eq!(w.code(front, stop(s.mailbox, false)), ErrorCode::NoRight);
    assert_eq!(w.code(front, stop(2, false)), ErrorCode::NoRight);
    assert_eq!(w.code(child, stop(1, true)), ErrorCode::NoRight);
    assert!(w.stops.is_empty());
    assert_eq!(w.call(front, stop(s.control, true)), Response::Ok);
    assert_eq!(w.stops, vec![(child, true)]);
    w.k.remove_env(child, w.now);
    w.pump();
    assert_eq!(w.code(front, stop(s.control, false)), ErrorCode::Dead);
}

#[test]
fn per_environment_child_quota() {
    let (mut w, front, _store, _secret, req) = world();
    w.k.set_max_children(2);
    w.spawn(front, spawn_with(req, &[]));
    w.spawn(front, spawn_with(req, &[]));
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(req, &[]))),
        ErrorCode::Quota
    );
}

#[test]
fn a_version_2_connection_sees_no_new_rights_and_cannot_spawn() {
    let (mut w, front, _store, _secret, req) = world();
    let welcome = w.call(
        front,
        Request::Hello {
            min_version: 1,
            max_version: 2,
        },
    );
    assert!(matches!(welcome, Response::Welcome { version: 2, .. }));
    let table = w.whoami(front);
    assert_eq!(table[3], (req, "template:req".into(), Rights::GRANT));
    assert!(table.iter().all(|(_, _, r)| Rights::KNOWN_V2.contains(*r)));
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(req, &[]))),
        ErrorCode::BadRequest
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever subset of its names a parent passes, and whatever handles and names the child
    /// then tries, the child reaches exactly the mailboxes it was given.
    #[test]
    fn a_child_reaches_only_what_it_was_given(
        given in proptest::sample::subsequence(vec![0usize, 1, 2, 3, 4], 0..=5),
        guesses in proptest::collection::vec(0u32..40, 0..40),
    ) {
        let names = ["e0", "e1", "e2", "e3", "e4"];
        let mut w = World::new(vec![template("req")]);
        let targets: Vec<EnvId> = names.iter().map(|n| w.add(n, &[], &[])).collect();
        let front = w.add("front", &names, &["req"]);
        let req = w.handle_of(front, "template:req");
        // Handles 2..=6 are e0..e4 in the parent's table.
        let passed: Vec<(String, Handle)> =
            given.iter().map(|&i| (format!("n{i}"), i as u32 + 2)).collect();
        let (_, child) = w.spawn(front, Spawn { handle: req, names: passed, ..Spawn::default() });
        let mut reached = BTreeSet::new();
        let mut tries: Vec<u32> = guesses;
        tries.extend(0..10);
        for h in tries {
            if w.send(child, h, b"x") == Response::Ok {
                reached.insert(h);
            }
        }
        for n in names.iter().map(|s| s.to_string()).chain((0..5).map(|i| format!("n{i}"))) {
            if let Response::Handle { handle, .. } = w.call(child, Request::Lookup { name: n.clone() }) {
                prop_assert!(n.starts_with('n'), "found {n}");
                prop_assert!(given.contains(&(n[1..].parse::<usize>().unwrap())));
                prop_assert!(handle >= 2 && handle < 2 + given.len() as u32);
            }
        }
        // Its own mailbox, and one handle per name given, nothing else.
        let want: BTreeSet<u32> = (1..2 + given.len() as u32).collect();
        prop_assert_eq!(&reached, &want);
        // And what arrived, arrived only at the given environments.
        for (i, &t) in targets.iter().enumerate() {
            let got = std::iter::from_fn(|| w.recv(t)).filter(|d| d.from.env == "req-1").count();
            prop_assert_eq!(got > 0, given.contains(&i), "e{}", i);
        }
    }
}

/// A kernel restart: what `kept_child` keeps lets a new kernel take the child back with the same
/// handle numbers under the same names, its link (its parent's `down` keeps its reference, the
/// parent's end stops it) and its template count; a name whose target registers after the child
/// is dead meanwhile (`dead`) and designates the target again once it is back.
#[test]
fn a_restarted_kernel_takes_a_child_back_with_its_names_and_link() {
    let (mut w, front, _store, _secret, req) = world();
    let (spawned, child) = w.spawn(front, spawn_with(req, &[("db", 2), ("parent", 1)]));
    let before = w.whoami(child);
    let kept = w.k.kept_child(child).expect("a spawned child is kept");
    assert_eq!(kept.parent, "front");
    assert_eq!(kept.template, "req");
    assert_eq!(kept.reference, spawned.reference);
    let targets: Vec<(&str, Option<&str>)> = kept
        .names
        .iter()
        .map(|n| (n.name.as_str(), n.target.as_deref()))
        .collect();
    assert_eq!(targets, [("db", Some("store")), ("parent", Some("front"))]);
    assert!(w.k.kept_child(front).is_none(), "front was declared");

    // The new kernel: front registers, the child comes back before `store` does.
    let mut v = World::new(vec![template("req")]);
    let front2 = v.add("front", &["store", "secret"], &["req"]);
    let child2 = v.k.readopt_child("req-1", &kept, v.now).unwrap();
    v.k.relink_children(child2);
    v.pump();
    assert_eq!(
        v.whoami(child2),
        before,
        "the same handles under the same names"
    );
    assert_eq!(v.k.parent_of(child2), Some(front2));
    assert_eq!(v.k.template_live("req"), Some(1));
    assert_eq!(
        match v.send(child2, 2, b"early") {
            Response::Error { code, .. } => code,
            other => panic!("{other:?}"),
        },
        ErrorCode::Dead,
        "store is not back yet"
    );
    let store2 = v.add("store", &[], &[]);
    v.k.relink_children(store2);
    assert_eq!(v.send(child2, 2, b"put"), Response::Ok);
    assert_eq!(v.recv(store2).expect("store got it").body, b"put");
    assert_eq!(v.send(child2, 3, b"hi"), Response::Ok);
    assert_eq!(v.recv(front2).expect("front got it").body, b"hi");
    // The spawner's own handles to the child are back under their numbers: its mailbox
    // (SEND|MONITOR) reaches the child.
    assert_eq!(
        v.send(front2, spawned.mailbox, b"to the child"),
        Response::Ok
    );
    assert_eq!(
        v.recv(child2).expect("the child got it").body,
        b"to the child"
    );

    // The link: the child's end is its parent's `down`, with the old reference.
    v.k.set_exit_status(child2, ExitStatus::Code(7));
    v.k.remove_env(child2, v.now);
    v.pump();
    let down = v.recv(front2).expect("a down notice");
    assert_eq!(down.down, Some(spawned.reference));
    assert_eq!(v.k.template_live("req"), Some(0));
    // A new monitor of the new kernel never reuses the reference.
    let req2 = v.handle_of(front2, "template:req");
    let (again, _) = v.spawn(front2, spawn_with(req2, &[]));
    assert!(again.reference > spawned.reference);

    // A child taken back before its parent: linked when the parent registers, stopped with it;
    // the parent gets its handles back then, and its control handle (STOP) stops the child.
    let mut u = World::new(vec![template("req")]);
    let early = u.k.readopt_child("req-1", &kept, u.now).unwrap();
    assert_eq!(u.k.parent_of(early), None);
    let front3 = u.add("front", &["store", "secret"], &["req"]);
    u.k.relink_children(front3);
    assert_eq!(u.k.parent_of(early), Some(front3));
    assert_eq!(
        u.call(
            front3,
            Request::Stop {
                handle: spawned.control,
                kill: false
            }
        ),
        Response::Ok
    );
    u.pump();
    assert!(u.stops.iter().any(|(e, _)| *e == early), "{:?}", u.stops);
    u.stops.clear();
    u.k.remove_env(front3, u.now);
    u.pump();
    assert!(u.stops.iter().any(|(e, _)| *e == early), "{:?}", u.stops);
}

#[test]
fn a_child_restarted_in_place_keeps_its_id_names_and_the_spawners_handles() {
    let mut t = template("one");
    t.max_instances = 1;
    let mut w = World::new(vec![t]);
    let store = w.add("store", &[], &[]);
    let front = w.add("front", &["store"], &["one"]);
    let one = w.handle_of(front, "template:one");
    let to_store = w.handle_of(front, "store");
    let (s, child) = w.spawn(front, spawn_with(one, &[("store", to_store)]));
    let fresh = w.whoami(child);
    // What the first run made: a mailbox, an attenuated copy of `store`, a waiting receive.
    let made = match w.call(child, Request::CreateMailbox { name: None }) {
        Response::Handle { handle, .. } => handle,
        other => panic!("create mailbox: {other:?}"),
    };
    let named = w.handle_of(child, "store");
    let copy = match w.call(
        child,
        Request::Attenuate {
            handle: named,
            rights: Rights::SEND,
            uses: None,
            expires_in_ms: None,
            badge: None,
        },
    ) {
        Response::Handle { handle, .. } => handle,
        other => panic!("attenuate: {other:?}"),
    };
    assert_eq!(w.whoami(child).len(), fresh.len() + 2);
    let waiting = w.submit(
        child,
        Request::Recv {
            mailbox: None,
            filter: Filter::default(),
            timeout_ms: None,
        },
    );

    assert!(w.k.restart_child(child, w.now));
    w.pump();
    // Same id and name; the table is the fresh one again, under the same numbers.
    assert_eq!(w.k.env_name(child), Some(s.child.as_str()));
    assert_eq!(w.whoami(child), fresh);
    assert_eq!(
        w.code(child, Request::Drop { handle: copy }),
        ErrorCode::NoSuchHandle
    );
    assert_eq!(
        w.code(child, Request::Drop { handle: made }),
        ErrorCode::NoSuchHandle
    );
    // The old run's receive is gone: a message queues for the new run, through the spawner's
    // handle from the first spawn.
    assert!(matches!(w.send(front, s.mailbox, b"again"), Response::Ok));
    assert!(w.answer(child, waiting).is_none());
    assert_eq!(
        w.recv(child).expect("queued for the new run").body,
        b"again"
    );
    // No down notice, still one instance (a second spawn is over max_instances), still linked.
    assert!(w.recv(front).is_none());
    assert_eq!(w.k.template_live("one"), Some(1));
    assert_eq!(
        w.code(front, Request::Spawn(spawn_with(one, &[]))),
        ErrorCode::Quota
    );
    assert_eq!(w.k.children_of(front), vec![child]);
    let _ = store;

    // A second restart, then the end given up: the final down says both.
    assert!(w.k.restart_child(child, w.now));
    w.k.give_up_child(child, "max_restarts=2 reached");
    w.k.set_exit_status(child, ExitStatus::Code(1));
    w.k.remove_env(child, w.now);
    w.pump();
    let d = w.recv(front).expect("the final down");
    assert_eq!(d.down, Some(s.reference));
    assert_eq!(
        d.headers,
        vec![
            ("warren-down".into(), b"ended".to_vec()),
            ("warren-exit".into(), b"code=1".to_vec()),
            ("warren-restarts".into(), b"2".to_vec()),
            ("warren-gave-up".into(), b"max_restarts=2 reached".to_vec()),
        ]
    );
    assert_eq!(w.k.template_live("one"), Some(0));
    // Only a spawned, running child restarts.
    assert!(!w.k.restart_child(child, w.now));
    assert!(!w.k.restart_child(front, w.now));
}

/// A child restarted in place leaves its previous run's children behind as an ended spawner
/// would: its linked child is stopped, none stays linked to the next run (no `down` for a
/// reference the next run never had — one used to arrive in the kept mailbox), its detached
/// child runs on without a parent, and a spawn still starting completes unanswered with its
/// linked child stopped. Positive control: a child the next run spawns is its child, with its
/// `down`.
#[test]
fn a_restarted_childs_previous_children_are_not_the_next_runs() {
    let mut mid = template("mid");
    mid.may_spawn = vec!["leaf".into()];
    let mut leaf = template("leaf");
    leaf.detach = true;
    let mut w = World::new(vec![mid, leaf]);
    let front = w.add("front", &[], &["mid"]);
    let h = w.handle_of(front, "template:mid");
    let (_, x) = w.spawn(front, spawn_with(h, &[]));
    let lh = w.handle_of(x, "template:leaf");
    let (_, linked) = w.spawn(x, spawn_with(lh, &[]));
    let (_, detached) = w.spawn(
        x,
        Spawn {
            detach: true,
            ..spawn_with(lh, &[])
        },
    );
    // One that ended before the restart: its down waits in the mailbox the next run keeps.
    let (_, early) = w.spawn(x, spawn_with(lh, &[]));
    w.k.remove_env(early, w.now);
    w.pump();
    let in_flight = w.submit(x, Request::Spawn(spawn_with(lh, &[])));
    let pending = w.spawns.pop().expect("a spawn order");
    assert_eq!(w.k.children_of(x).len(), 2);
    // A message for the child, which the next run gets (the control: only downs go).
    let to_x = w.whoami(front)[2].0;
    assert_eq!(w.send(front, to_x, b"for the next run"), Response::Ok);

    assert!(w.k.restart_child(x, w.now));
    w.pump();
    assert!(w.stops.iter().any(|(e, _)| *e == linked), "{:?}", w.stops);
    assert!(w.k.children_of(x).is_empty());
    assert_eq!(w.k.parent_of(detached), None);
    assert_eq!(w.k.parent_of(linked), None);
    // The old children end: the next run hears nothing of them.
    w.k.remove_env(linked, w.now);
    w.k.remove_env(detached, w.now);
    w.pump();
    let kept = w.recv(x).expect("the message for the next run");
    assert_eq!(
        (kept.body.as_slice(), kept.down),
        (&b"for the next run"[..], None)
    );
    assert!(w.recv(x).is_none(), "a down reached the next run");
    // The spawn of the previous run completes: no answer, its linked child stopped.
    let late = w.k.spawned(pending.ticket, w.now).unwrap();
    w.pump();
    assert!(w.answer(x, in_flight).is_none());
    assert!(w.stops.iter().any(|(e, _)| *e == late));
    assert!(w.k.children_of(x).is_empty());

    // Positive control: the next run's own child is its child.
    let lh = w.handle_of(x, "template:leaf");
    let (s, mine) = w.spawn(x, spawn_with(lh, &[]));
    assert_eq!(w.k.children_of(x), vec![mine]);
    w.k.remove_env(mine, w.now);
    w.pump();
    assert_eq!(w.recv(x).expect("its down").down, Some(s.reference));
}
