//! Scenario tests: environments driven through `handle_request` / `poll_action` in virtual time.

use warren_proto::{Delivery, ErrorCode, Filter, Handle, Message, Request, Response, Rights};

use crate::{Action, AuditRecord, Config, EnvId, EnvSpec, Kernel, KernelError, Millis};

const SEND: Rights = Rights::SEND;
const SGM: Rights = Rights(1 | 2 | 4);
const OWNER: Rights = Rights(1 | 2 | 4 | 8);

/// A kernel, a clock, and everything it said.
struct World {
    k: Kernel,
    now: Millis,
    next_id: u32,
    responses: Vec<(EnvId, u32, Response)>,
    audits: Vec<AuditRecord>,
}

impl World {
    fn new() -> World {
        World::with(Config::default())
    }

    fn with(config: Config) -> World {
        World {
            k: Kernel::new(config),
            now: 0,
            next_id: 1,
            responses: vec![],
            audits: vec![],
        }
    }

    fn add(&mut self, name: &str, may_send: &[&str], may_discover: &[&str]) -> EnvId {
        self.add_spec(EnvSpec {
            name: name.into(),
            may_send: may_send.iter().map(|s| s.to_string()).collect(),
            may_discover: may_discover.iter().map(|s| s.to_string()).collect(),
            mailbox_capacity: None,
            mailbox_bytes: None,
        })
    }

    fn add_spec(&mut self, spec: EnvSpec) -> EnvId {
        let id = self.k.add_env(spec, self.now).expect("add_env");
        self.pump();
        id
    }

    fn remove(&mut self, env: EnvId) {
        self.k.remove_env(env, self.now);
        self.pump();
    }

    fn pump(&mut self) {
        while let Some(a) = self.k.poll_action() {
            match a {
                Action::Respond { env, id, response } => self.responses.push((env, id, response)),
                Action::Audit(r) => self.audits.push(r),
                // The driver signs; here the answer names the subject the kernel chose.
                Action::Attest {
                    env,
                    id,
                    name,
                    nonce,
                    data,
                } => self.responses.push((
                    env,
                    id,
                    Response::Quote {
                        quote: [name.as_bytes(), b"|", &nonce, b"|", &data].concat(),
                    },
                )),
                Action::Forward(_)
                | Action::Settled { .. }
                | Action::Spawn(_)
                | Action::Stop { .. } => {}
            }
        }
    }

    /// Issues a request and returns its id (the answer may come now or later).
    fn submit(&mut self, env: EnvId, req: Request) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.k.handle_request(env, id, req, self.now);
        self.pump();
        id
    }

    /// The answer to request `id`, if it has come (taken out of the log).
    fn answer(&mut self, env: EnvId, id: u32) -> Option<Response> {
        let pos = self
            .responses
            .iter()
            .position(|(e, i, _)| *e == env && *i == id)?;
        Some(self.responses.remove(pos).2)
    }

    /// Issues a request that must be answered at once.
    fn call(&mut self, env: EnvId, req: Request) -> Response {
        let id = self.submit(env, req.clone());
        self.answer(env, id)
            .unwrap_or_else(|| panic!("no immediate answer to {req:?}"))
    }

    /// Issues a request that must wait.
    fn call_waiting(&mut self, env: EnvId, req: Request) -> u32 {
        let id = self.submit(env, req.clone());
        assert!(
            !self.responses.iter().any(|(e, i, _)| *e == env && *i == id),
            "{req:?} was answered at once"
        );
        id
    }

    fn send(&mut self, env: EnvId, handle: Handle, msg: Message) -> Response {
        self.call(
            env,
            Request::Send {
                handle,
                message: msg,
                wait: false,
            },
        )
    }

    fn send_body(&mut self, env: EnvId, handle: Handle, body: &[u8]) -> Response {
        self.send(env, handle, body_msg(body))
    }

    fn recv(&mut self, env: EnvId, filter: Filter) -> Response {
        self.call(
            env,
            Request::Recv {
                mailbox: None,
                filter,
                timeout_ms: Some(0),
            },
        )
    }

    fn recv_delivery(&mut self, env: EnvId) -> Delivery {
        delivery(self.recv(env, Filter::default()))
    }

    fn handle_of(&mut self, env: EnvId, req: Request) -> (Handle, Rights) {
        match self.call(env, req) {
            Response::Handle { handle, rights } => (handle, rights),
            other => panic!("expected a handle, got {other:?}"),
        }
    }

    fn attenuate(&mut self, env: EnvId, handle: Handle, rights: Rights) -> Handle {
        let req = Request::Attenuate {
            handle,
            rights,
            uses: None,
            expires_in_ms: None,
            badge: None,
        };
        self.handle_of(env, req).0
    }

    fn whoami(&mut self, env: EnvId) -> Vec<(Handle, String, Rights)> {
        match self.call(env, Request::Whoami) {
            Response::Identity(id) => id.handles,
            other => panic!("expected identity, got {other:?}"),
        }
    }

    fn advance(&mut self, to: Millis) {
        self.now = to;
        self.k.handle_timeout(to);
        self.pump();
    }

    fn last_audit(&self) -> &AuditRecord {
        self.audits.last().expect("an audit record")
    }
}

fn body_msg(body: &[u8]) -> Message {
    Message {
        body: body.to_vec(),
        ..Message::default()
    }
}

fn delivery(r: Response) -> Delivery {
    match r {
        Response::Delivery(d) => d,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[track_caller]
fn assert_err(r: &Response, code: ErrorCode) {
    match r {
        Response::Error { code: c, .. } if *c == code => {}
        other => panic!("expected error {code:?}, got {other:?}"),
    }
}

fn by_corr(c: u64) -> Filter {
    Filter {
        correlation: Some(c),
        header: None,
    }
}

#[test]
fn attest_is_about_the_caller_and_needs_a_nonce() {
    let mut w = World::new();
    let a = w.add("alpha", &[], &[]);
    let _b = w.add("beta", &[], &[]);
    let r = w.call(
        a,
        Request::Attest {
            nonce: b"n".to_vec(),
            data: b"d".to_vec(),
        },
    );
    assert_eq!(
        r,
        Response::Quote {
            quote: b"alpha|n|d".to_vec()
        }
    );
    let r = w.call(
        a,
        Request::Attest {
            nonce: vec![],
            data: vec![],
        },
    );
    assert_err(&r, ErrorCode::BadRequest);
    assert_eq!(w.last_audit().op, "attest");
}

#[test]
fn default_mailbox_and_initial_grants_in_declaration_order() {
    let mut w = World::new();
    let _c = w.add("c", &[], &[]);
    let _b = w.add("b", &[], &[]);
    let a = w.add("a", &["c", "b", "c"], &[]);
    assert_eq!(
        w.whoami(a),
        vec![
            (1, "a".into(), OWNER),
            (2, "c".into(), SGM),
            (3, "b".into(), SGM)
        ]
    );
    assert_eq!(
        w.call(
            a,
            Request::Hello {
                min_version: 1,
                max_version: 3
            }
        ),
        Response::Welcome {
            version: warren_proto::VERSION,
            env: "a".into()
        }
    );
    assert_err(
        &w.call(
            a,
            Request::Hello {
                min_version: 4,
                max_version: 5,
            },
        ),
        ErrorCode::Version,
    );
    // Version 1 still negotiates: the highest version both speak.
    assert_eq!(
        w.call(
            a,
            Request::Hello {
                min_version: 1,
                max_version: 1
            }
        ),
        Response::Welcome {
            version: 1,
            env: "a".into()
        }
    );
}

#[test]
fn names_are_validated_and_unique_among_running_environments() {
    let mut w = World::new();
    let a = w.add("a", &[], &[]);
    assert!(matches!(
        w.k.add_env(
            EnvSpec {
                name: "a".into(),
                ..EnvSpec::default()
            },
            0
        ),
        Err(crate::KernelError::NameInUse { .. })
    ));
    for bad in ["", "A", "a/b", "x@y", "-a", &"z".repeat(64)] {
        assert!(
            matches!(
                w.k.add_env(
                    EnvSpec {
                        name: bad.into(),
                        ..EnvSpec::default()
                    },
                    0
                ),
                Err(crate::KernelError::InvalidName { .. })
            ),
            "{bad:?} accepted"
        );
    }
    assert_eq!(w.k.env_by_name("a"), Some(a));
    assert_eq!(w.k.env_name(a), Some("a"));
    w.remove(a);
    assert_eq!(w.k.env_by_name("a"), None);
    let a2 = w.add("a", &[], &[]);
    assert_ne!(a, a2, "environment ids are never reused");
}

#[test]
fn pending_grants_are_installed_when_the_target_arrives_and_again_when_it_returns() {
    let mut w = World::new();
    let web = w.add("web", &["db"], &[]);
    assert_eq!(w.whoami(web).len(), 1, "db is not running yet");
    let db = w.add("db", &[], &[]);
    assert_eq!(
        w.whoami(web),
        vec![(1, "web".into(), OWNER), (2, "db".into(), SGM)]
    );
    assert_eq!(w.send_body(web, 2, b"hi"), Response::Ok);
    assert_eq!(w.recv_delivery(db).body, b"hi");

    w.remove(db);
    assert_err(&w.send_body(web, 2, b"x"), ErrorCode::Dead);
    assert_eq!(w.last_audit().code, "dead");
    let db2 = w.add("db", &[], &[]);
    let handles = w.whoami(web);
    assert_eq!(handles.last().unwrap(), &(3, "db".to_string(), SGM));
    assert_err(&w.send_body(web, 2, b"x"), ErrorCode::Dead);
    assert_eq!(w.send_body(web, 3, b"again"), Response::Ok);
    assert_eq!(w.recv_delivery(db2).body, b"again");
}

#[test]
fn capability_passing_attenuated_grant_then_revocation() {
    // A grants B an attenuated handle to C inside a message; B sends to C; A revokes.
    let mut w = World::new();
    let c = w.add("c", &[], &[]);
    let b = w.add("b", &[], &[]);
    let a = w.add("a", &["c", "b"], &[]);
    let req = Request::Attenuate {
        handle: 2,
        rights: Rights(Rights::SEND.0 | Rights::GRANT.0),
        uses: None,
        expires_in_ms: None,
        badge: Some(77),
    };
    let (for_b, rights) = w.handle_of(a, req);
    assert_eq!(rights, Rights(Rights::SEND.0 | Rights::GRANT.0));
    let msg = Message {
        body: b"use this".to_vec(),
        caps: vec![for_b],
        ..Message::default()
    };
    assert_eq!(w.send(a, 3, msg), Response::Ok);
    let d = w.recv_delivery(b);
    assert_eq!(d.from.env, "a");
    assert_eq!(d.caps.len(), 1);
    let bh = d.caps[0];
    assert!(w.whoami(b).contains(&(
        bh,
        "c".to_string(),
        Rights(Rights::SEND.0 | Rights::GRANT.0)
    )));

    assert_eq!(w.send_body(b, bh, b"hello c"), Response::Ok);
    let d = w.recv_delivery(c);
    assert_eq!(
        (d.from.env.as_str(), d.from.badge),
        ("b", 77),
        "the badge A set, B's name"
    );

    assert_eq!(w.call(a, Request::Revoke { handle: for_b }), Response::Ok);
    assert_err(&w.send_body(b, bh, b"again"), ErrorCode::Revoked);
    let rec = w.last_audit();
    assert_eq!(
        (rec.env.as_str(), rec.op, rec.handle, rec.code),
        ("b", "send", Some(bh), "revoked")
    );
    assert_eq!(rec.target.as_deref(), Some("c"));
    // The revoking handle itself stays valid, and so does A's original.
    assert_eq!(w.send_body(a, for_b, b"mine"), Response::Ok);
    assert_eq!(w.send_body(a, 2, b"mine too"), Response::Ok);
    // Revoking the original reaches the attenuated handle too.
    assert_eq!(w.call(a, Request::Revoke { handle: 2 }), Response::Ok);
    assert_err(&w.send_body(a, for_b, b"no"), ErrorCode::Revoked);
    assert_eq!(w.send_body(a, 2, b"still"), Response::Ok);
    // A revoked handle can be neither attached nor attenuated.
    let msg = Message {
        caps: vec![for_b],
        ..Message::default()
    };
    assert_err(&w.send(a, 3, msg), ErrorCode::Revoked);
    let req = Request::Attenuate {
        handle: for_b,
        rights: SEND,
        uses: None,
        expires_in_ms: None,
        badge: None,
    };
    assert_err(&w.call(a, req), ErrorCode::Revoked);
}

#[test]
fn revocation_reaches_capabilities_in_queued_messages_and_through_dropped_links() {
    let mut w = World::new();
    let c = w.add("c", &[], &[]);
    let b = w.add("b", &[], &[]);
    let a = w.add("a", &["c", "b"], &[]);
    let mid = w.attenuate(a, 2, SGM);
    let msg = Message {
        caps: vec![mid],
        ..Message::default()
    };
    assert_eq!(w.send(a, 3, msg), Response::Ok);
    // A drops the intermediate handle: the queued copy must stay within reach of handle 2.
    assert_eq!(w.call(a, Request::Drop { handle: mid }), Response::Ok);
    assert_eq!(w.call(a, Request::Revoke { handle: 2 }), Response::Ok);
    let d = w.recv_delivery(b);
    assert_err(&w.send_body(b, d.caps[0], b"x"), ErrorCode::Revoked);
    assert_eq!(
        w.recv(c, Filter::default()),
        Response::Error {
            code: ErrorCode::Timeout,
            detail: "nothing matching is queued".into()
        }
    );
}

#[test]
fn one_shot_reply_used_twice_is_used_up_and_deriving_does_not_multiply_it() {
    let mut w = World::new();
    let server = w.add("server", &[], &[]);
    let client = w.add("client", &["server"], &[]);
    let msg = Message {
        body: b"q".to_vec(),
        reply_to: Some(1),
        correlation: Some(5),
        ..Message::default()
    };
    assert_eq!(w.send(client, 2, msg), Response::Ok);
    let d = w.recv_delivery(server);
    let reply = d.reply.expect("a reply handle");
    assert!(
        w.whoami(server)
            .contains(&(reply, "client (reply)".to_string(), SEND))
    );
    // Attenuating the reply handle yields another handle but not another use.
    let copy = w.attenuate(server, reply, SGM);
    let answer = Message {
        correlation: Some(5),
        body: b"a".to_vec(),
        ..Message::default()
    };
    assert_eq!(w.send(server, reply, answer.clone()), Response::Ok);
    // Spent, the reply handle left the table by itself; the copy stays, used up.
    assert_err(
        &w.send(server, reply, answer.clone()),
        ErrorCode::NoSuchHandle,
    );
    assert_err(&w.send(server, copy, answer), ErrorCode::UsedUp);
    assert_eq!(w.last_audit().code, "used-up");
    let d = delivery(w.recv(client, by_corr(5)));
    assert_eq!(
        (d.from.env.as_str(), d.body.as_slice()),
        ("server", &b"a"[..])
    );
    // A reply handle has no GRANT: it cannot be passed on (nor can a copy of it).
    let msg = Message {
        caps: vec![copy],
        ..Message::default()
    };
    let back = w.handle_of(server, Request::CreateMailbox { name: None }).0;
    assert_err(&w.send(server, back, msg), ErrorCode::NoRight);
}

#[test]
fn limited_uses_and_expiry() {
    let mut w = World::new();
    let _c = w.add("c", &[], &[]);
    let a = w.add("a", &["c"], &[]);
    let req = Request::Attenuate {
        handle: 2,
        rights: SGM,
        uses: Some(2),
        expires_in_ms: Some(100),
        badge: None,
    };
    let (h, _) = w.handle_of(a, req);
    w.now = 50;
    assert_eq!(w.send_body(a, h, b"1"), Response::Ok);
    // A child cannot outlive or out-use its parent.
    let req = Request::Attenuate {
        handle: h,
        rights: SGM,
        uses: Some(9),
        expires_in_ms: Some(500),
        badge: None,
    };
    let (child, _) = w.handle_of(a, req);
    let info =
        w.k.debug_table(a)
            .into_iter()
            .find(|(x, _)| *x == child)
            .unwrap()
            .1;
    assert_eq!((info.uses_left, info.expires_at), (Some(1), Some(100)));
    assert_eq!(w.send_body(a, child, b"2"), Response::Ok);
    assert_err(&w.send_body(a, h, b"3"), ErrorCode::UsedUp);
    w.now = 99;
    let (h2, _) = w.handle_of(
        a,
        Request::Attenuate {
            handle: 2,
            rights: SGM,
            uses: None,
            expires_in_ms: Some(1),
            badge: None,
        },
    );
    assert_eq!(w.send_body(a, h2, b"4"), Response::Ok);
    w.advance(100);
    assert_err(&w.send_body(a, h2, b"5"), ErrorCode::Expired);
    assert_eq!(w.last_audit().reason, "the handle expired");
    // Expired before used up in the order of checks.
    assert_err(&w.send_body(a, h, b"6"), ErrorCode::Expired);
    assert_eq!(
        w.send_body(a, 2, b"7"),
        Response::Ok,
        "the original has no expiry"
    );
}

#[test]
fn guessed_and_replayed_handle_numbers_reach_nothing() {
    let mut w = World::new();
    let c = w.add("c", &[], &[]);
    let d = w.add("d", &[], &[]);
    let _a = w.add("a", &["c"], &[]);
    let b = w.add("b", &["d"], &[]);
    let nobody = w.add("nobody", &[], &[]);
    let before = w.audits.len();
    for guess in [0, 2, 3, 4, 5, 17, 4096, u32::MAX] {
        assert_err(&w.send_body(nobody, guess, b"x"), ErrorCode::NoSuchHandle);
        for req in [
            Request::Monitor { handle: guess },
            Request::Revoke { handle: guess },
            Request::Drop { handle: guess },
            Request::Attenuate {
                handle: guess,
                rights: SGM,
                uses: None,
                expires_in_ms: None,
                badge: None,
            },
            Request::Recv {
                mailbox: Some(guess),
                filter: Filter::default(),
                timeout_ms: Some(0),
            },
        ] {
            assert_err(&w.call(nobody, req), ErrorCode::NoSuchHandle);
        }
    }
    // Past the rate limit they are aggregated; the aggregates come when the window ends.
    w.advance(w.now + Config::default().audit_window_ms);
    let counted: u64 = w.audits[before..]
        .iter()
        .map(|r| r.repeated.map_or(1, |r| r.count))
        .sum();
    assert_eq!(counted, 8 * 6, "every denial is audited");
    assert!(
        w.audits[before..]
            .iter()
            .all(|r| r.env == "nobody" && r.code == "no-such-handle")
    );
    // A's handle 2 is to c; b's handle 2 is to d: replaying the number reaches b's own cap.
    assert_eq!(w.send_body(b, 2, b"from b"), Response::Ok);
    assert_err(&w.recv(c, Filter::default()), ErrorCode::Timeout);
    assert_eq!(w.recv_delivery(d).from.env, "b");
    // Handle numbers are never reused: a dropped number stays dead.
    let extra = w.attenuate(b, 2, SEND);
    assert_eq!(w.call(b, Request::Drop { handle: extra }), Response::Ok);
    assert_err(&w.send_body(b, extra, b"x"), ErrorCode::NoSuchHandle);
    let next = w.attenuate(b, 2, SEND);
    assert!(next > extra);
}

#[test]
fn rights_are_checked_and_never_grow() {
    let mut w = World::new();
    let c = w.add("c", &[], &[]);
    let a = w.add("a", &["c"], &[]);
    let monitor_only = w.attenuate(a, 2, Rights::MONITOR);
    assert_err(&w.send_body(a, monitor_only, b"x"), ErrorCode::NoRight);
    assert_eq!(w.last_audit().reason, "the handle lacks SEND");
    // Asking for more than the handle has yields only what it has.
    let (h, rights) = w.handle_of(
        a,
        Request::Attenuate {
            handle: monitor_only,
            rights: Rights(15),
            uses: None,
            expires_in_ms: None,
            badge: None,
        },
    );
    assert_eq!(rights, Rights::MONITOR);
    assert_err(&w.send_body(a, h, b"x"), ErrorCode::NoRight);
    // RECEIVE is never transferable: attenuating one's own mailbox strips it.
    let (own, rights) = w.handle_of(
        a,
        Request::Attenuate {
            handle: 1,
            rights: Rights(15),
            uses: None,
            expires_in_ms: None,
            badge: None,
        },
    );
    assert_eq!(rights, SGM);
    let r = w.call(
        a,
        Request::Recv {
            mailbox: Some(own),
            filter: Filter::default(),
            timeout_ms: Some(0),
        },
    );
    assert_err(&r, ErrorCode::NoRight);
    let r = w.call(
        a,
        Request::Recv {
            mailbox: Some(2),
            filter: Filter::default(),
            timeout_ms: Some(0),
        },
    );
    assert_err(&r, ErrorCode::NoRight);
    // Attaching a RECEIVE handle gives the receiver a send handle, never the mailbox.
    let msg = Message {
        caps: vec![1],
        ..Message::default()
    };
    assert_eq!(w.send(a, 2, msg), Response::Ok);
    let d = w.recv_delivery(c);
    assert!(w.whoami(c).contains(&(d.caps[0], "a".to_string(), SGM)));
    // No GRANT, no attaching; no MONITOR, no monitoring.
    let send_only = w.attenuate(a, 2, SEND);
    let msg = Message {
        caps: vec![send_only],
        ..Message::default()
    };
    assert_err(&w.send(a, 2, msg), ErrorCode::NoRight);
    assert_err(
        &w.call(a, Request::Monitor { handle: send_only }),
        ErrorCode::NoRight,
    );
    assert!(
        w.k.debug_table(a)
            .iter()
            .all(|(_, i)| i.parent.is_none_or(|p| {
                let parent = w.k.debug_cap(p).unwrap();
                parent.rights.contains(i.rights)
            }))
    );
}

#[test]
fn badges_are_set_once() {
    let mut w = World::new();
    let c = w.add("c", &[], &[]);
    let a = w.add("a", &["c"], &[]);
    let badge = |b| Request::Attenuate {
        handle: 2,
        rights: SGM,
        uses: None,
        expires_in_ms: None,
        badge: Some(b),
    };
    let (b7, _) = w.handle_of(a, badge(7));
    let rebadge = Request::Attenuate {
        handle: b7,
        rights: SGM,
        uses: None,
        expires_in_ms: None,
        badge: Some(8),
    };
    assert_err(&w.call(a, rebadge), ErrorCode::NoRight);
    let kept = w.attenuate(a, b7, SEND);
    assert_eq!(w.send_body(a, kept, b"x"), Response::Ok);
    assert_eq!(w.recv_delivery(c).from.badge, 7);
    assert_eq!(w.send_body(a, 2, b"y"), Response::Ok);
    assert_eq!(w.recv_delivery(c).from.badge, 0);
}

#[test]
fn attachments_are_all_or_nothing() {
    let mut w = World::new();
    let c = w.add("c", &[], &[]);
    let b = w.add("b", &[], &[]);
    let a = w.add("a", &["c", "b"], &[]);
    let one_shot = w
        .handle_of(
            a,
            Request::Attenuate {
                handle: 3,
                rights: SGM,
                uses: Some(1),
                expires_in_ms: None,
                badge: None,
            },
        )
        .0;
    let no_grant = w.attenuate(a, 3, SEND);
    let caps_before = w.k.stats().caps;
    let msg = Message {
        caps: vec![2, no_grant],
        ..Message::default()
    };
    assert_err(&w.send(a, one_shot, msg), ErrorCode::NoRight);
    let msg = Message {
        caps: vec![2],
        reply_to: Some(2),
        ..Message::default()
    };
    assert_err(&w.send(a, one_shot, msg), ErrorCode::NoRight);
    let msg = Message {
        caps: vec![2, 999],
        ..Message::default()
    };
    assert_err(&w.send(a, one_shot, msg), ErrorCode::NoSuchHandle);
    assert_eq!(w.k.stats().caps, caps_before, "no capability was minted");
    assert_eq!(w.k.stats().queued, 0);
    // The one-shot was not spent by the refusals.
    let msg = Message {
        caps: vec![2, 3],
        reply_to: Some(1),
        ..Message::default()
    };
    assert_eq!(w.send(a, one_shot, msg), Response::Ok);
    let d = w.recv_delivery(b);
    assert_eq!(d.caps.len(), 2);
    let ids = w.whoami(b);
    assert!(ids.contains(&(d.caps[0], "c".into(), SGM)));
    assert!(ids.contains(&(d.caps[1], "b".into(), SGM)));
    assert!(ids.contains(&(d.reply.unwrap(), "a (reply)".into(), SEND)));
    assert_eq!(w.send_body(b, d.caps[0], b"via a's grant"), Response::Ok);
    assert_eq!(w.recv_delivery(c).from.env, "b");
}

#[test]
fn down_notices_on_end_and_for_the_already_ended() {
    let mut w = World::new();
    let cap = Config {
        default_capacity: 1,
        ..Config::default()
    };
    w.k = Kernel::new(cap);
    let db = w.add("db", &[], &[]);
    let web = w.add("web", &["db"], &[]);
    let r = w.call(web, Request::Monitor { handle: 2 });
    let Response::Monitor { reference } = r else {
        panic!("{r:?}")
    };
    let r2 = w.call(web, Request::Monitor { handle: 2 });
    let Response::Monitor {
        reference: reference2,
    } = r2
    else {
        panic!("{r2:?}")
    };
    assert_ne!(reference, reference2);
    // Fill web's mailbox: the notice must still arrive.
    assert_eq!(w.send_body(web, 1, b"filler"), Response::Ok);
    assert_err(&w.send_body(web, 1, b"more"), ErrorCode::Full);
    w.remove(db);
    assert_eq!(w.k.stats().monitors, 0);
    assert_eq!(w.recv_delivery(web).body, b"filler");
    let d = w.recv_delivery(web);
    assert_eq!(d.down, Some(reference));
    assert_eq!((d.from.env.as_str(), d.from.badge), ("db", 0));
    assert_eq!(
        d.headers,
        vec![("warren-down".to_string(), b"ended".to_vec())]
    );
    assert!(d.body.is_empty() && d.caps.is_empty() && d.reply.is_none());
    assert_eq!(d.mailbox, 1);
    assert_eq!(w.recv_delivery(web).down, Some(reference2));
    // Monitoring an owner that has already ended: the answer, then the notice.
    let r = w.call(web, Request::Monitor { handle: 2 });
    let Response::Monitor { reference: late } = r else {
        panic!("{r:?}")
    };
    let filter = Filter {
        correlation: None,
        header: Some(("warren-down".into(), b"ended".to_vec())),
    };
    assert_eq!(delivery(w.recv(web, filter)).down, Some(late));
}

#[test]
fn a_waiting_receive_gets_the_down_notice_and_ended_watchers_get_nothing() {
    let mut w = World::new();
    let db = w.add("db", &[], &[]);
    let web = w.add("web", &["db"], &[]);
    let other = w.add("other", &["db"], &[]);
    assert!(matches!(
        w.call(web, Request::Monitor { handle: 2 }),
        Response::Monitor { .. }
    ));
    assert!(matches!(
        w.call(other, Request::Monitor { handle: 2 }),
        Response::Monitor { .. }
    ));
    let waiting = w.call_waiting(
        web,
        Request::Recv {
            mailbox: None,
            filter: Filter::default(),
            timeout_ms: None,
        },
    );
    w.remove(other);
    w.remove(db);
    assert!(
        delivery(w.answer(web, waiting).expect("delivered"))
            .down
            .is_some()
    );
    assert!(w.responses.is_empty());
    assert_eq!(w.k.stats().monitors, 0);
}

#[test]
fn selective_receive_by_correlation_and_header_keeps_the_rest_in_order() {
    let mut w = World::new();
    let b = w.add("b", &[], &[]);
    let a = w.add("a", &["b"], &[]);
    for (i, kind) in [(1u64, "x"), (2, "y"), (3, "x"), (4, "y")] {
        let msg = Message {
            headers: vec![("kind".into(), kind.as_bytes().to_vec())],
            correlation: Some(i),
            body: vec![i as u8],
            ..Message::default()
        };
        assert_eq!(w.send(a, 2, msg), Response::Ok);
    }
    assert_eq!(delivery(w.recv(b, by_corr(3))).body, [3]);
    let ys = Filter {
        correlation: None,
        header: Some(("kind".into(), b"y".to_vec())),
    };
    assert_eq!(delivery(w.recv(b, ys.clone())).body, [2]);
    assert_eq!(delivery(w.recv(b, ys.clone())).body, [4]);
    assert_err(&w.recv(b, ys), ErrorCode::Timeout);
    assert_err(&w.recv(b, by_corr(3)), ErrorCode::Timeout);
    let both = Filter {
        correlation: Some(1),
        header: Some(("kind".into(), b"y".to_vec())),
    };
    assert_err(&w.recv(b, both), ErrorCode::Timeout);
    assert_eq!(w.recv_delivery(b).body, [1]);
    assert_err(&w.recv(b, Filter::default()), ErrorCode::Timeout);
    assert!(w.audits.is_empty(), "timeouts are not denials");
}

#[test]
fn a_full_mailbox_refuses_or_parks_and_a_receive_releases_in_order() {
    let mut w = World::new();
    let b = w.add_spec(EnvSpec {
        name: "b".into(),
        mailbox_capacity: Some(2),
        mailbox_bytes: None,
        ..EnvSpec::default()
    });
    let a = w.add("a", &["b"], &[]);
    let c = w.add("c", &["b"], &[]);
    assert_eq!(w.send_body(a, 2, b"a1"), Response::Ok);
    assert_eq!(w.send_body(a, 2, b"a2"), Response::Ok);
    let caps = w.k.stats().caps;
    let full = Message {
        body: b"no".to_vec(),
        reply_to: Some(1),
        ..Message::default()
    };
    assert_err(&w.send(a, 2, full), ErrorCode::Full);
    assert_eq!(w.k.stats().caps, caps, "a refused send mints nothing");
    assert!(w.audits.is_empty(), "full is not a denial");
    let send = |body: &[u8]| Request::Send {
        handle: 2,
        message: body_msg(body),
        wait: true,
    };
    let a3 = w.call_waiting(a, send(b"a3"));
    let c1 = w.call_waiting(c, send(b"c1"));
    let a4 = w.call_waiting(a, send(b"a4"));
    // A non-waiting send must not overtake a's waiting ones, even once there is room.
    assert_err(&w.send_body(a, 2, b"overtake"), ErrorCode::Full);
    assert_eq!(w.k.stats().waiting_sends, 3);
    assert_eq!(w.recv_delivery(b).body, b"a1");
    assert_eq!(w.answer(a, a3), Some(Response::Ok));
    assert_eq!(w.answer(c, c1), None);
    assert_eq!(w.recv_delivery(b).body, b"a2");
    assert_eq!(w.answer(c, c1), Some(Response::Ok));
    assert_err(&w.send_body(a, 2, b"overtake"), ErrorCode::Full);
    let bodies: Vec<Vec<u8>> = (0..3).map(|_| w.recv_delivery(b).body).collect();
    assert_eq!(bodies, [b"a3".to_vec(), b"c1".to_vec(), b"a4".to_vec()]);
    assert_eq!(w.answer(a, a4), Some(Response::Ok));
    assert_eq!(w.send_body(a, 2, b"now"), Response::Ok);
}

#[test]
fn a_selective_receive_can_take_a_waiting_send_and_a_parked_receive_gets_it_at_once() {
    let mut w = World::new();
    let b = w.add_spec(EnvSpec {
        name: "b".into(),
        mailbox_capacity: Some(1),
        mailbox_bytes: None,
        ..EnvSpec::default()
    });
    let a = w.add("a", &["b"], &[]);
    assert_eq!(w.send_body(a, 2, b"junk"), Response::Ok);
    let reply = Message {
        correlation: Some(9),
        body: b"answer".to_vec(),
        ..Message::default()
    };
    let waiting = w.call_waiting(
        a,
        Request::Send {
            handle: 2,
            message: reply,
            wait: true,
        },
    );
    // The receiver wants the answer, not the junk: it is taken from the waiting line.
    assert_eq!(delivery(w.recv(b, by_corr(9))).body, b"answer");
    assert_eq!(w.answer(a, waiting), Some(Response::Ok));
    // A receive that waits gets a matching message when it is sent, past a full queue.
    let r = w.call_waiting(
        b,
        Request::Recv {
            mailbox: None,
            filter: by_corr(10),
            timeout_ms: None,
        },
    );
    assert_err(&w.send_body(a, 2, b"no room"), ErrorCode::Full);
    let m = Message {
        correlation: Some(10),
        body: b"direct".to_vec(),
        ..Message::default()
    };
    assert_eq!(w.send(a, 2, m), Response::Ok);
    assert_eq!(delivery(w.answer(b, r).unwrap()).body, b"direct");
    assert_eq!(w.recv_delivery(b).body, b"junk");
}

#[test]
fn receive_timeouts_in_virtual_time() {
    let mut w = World::new();
    let b = w.add("b", &[], &[]);
    let a = w.add("a", &["b"], &[]);
    assert_eq!(w.k.poll_timeout(), None);
    w.now = 1000;
    let r1 = w.call_waiting(
        b,
        Request::Recv {
            mailbox: None,
            filter: by_corr(1),
            timeout_ms: Some(50),
        },
    );
    let r2 = w.call_waiting(
        b,
        Request::Recv {
            mailbox: None,
            filter: by_corr(2),
            timeout_ms: Some(20),
        },
    );
    let forever = w.call_waiting(
        b,
        Request::Recv {
            mailbox: None,
            filter: by_corr(3),
            timeout_ms: None,
        },
    );
    assert_eq!(w.k.poll_timeout(), Some(1020));
    w.advance(1019);
    assert!(w.responses.is_empty());
    w.advance(1020);
    assert_err(&w.answer(b, r2).unwrap(), ErrorCode::Timeout);
    assert_eq!(w.k.poll_timeout(), Some(1050));
    // A message before the deadline answers the receive and clears its deadline.
    let m = Message {
        correlation: Some(1),
        ..Message::default()
    };
    assert_eq!(w.send(a, 2, m), Response::Ok);
    assert_eq!(delivery(w.answer(b, r1).unwrap()).correlation, Some(1));
    assert_eq!(w.k.poll_timeout(), None);
    w.advance(u64::MAX);
    assert_eq!(w.answer(b, forever), None);
    let m = Message {
        correlation: Some(3),
        ..Message::default()
    };
    assert_eq!(w.send(a, 2, m), Response::Ok);
    assert_eq!(delivery(w.answer(b, forever).unwrap()).correlation, Some(3));
    assert!(w.audits.is_empty());
}

#[test]
fn lookup_follows_policy_and_gives_no_oracle() {
    let mut w = World::new();
    let db = w.add("db", &[], &[]);
    let _log = w.add("log", &[], &[]);
    let web = w.add("web", &["db/session"], &["log", "ghost", "db/other"]);
    let sess = w
        .handle_of(
            db,
            Request::CreateMailbox {
                name: Some("session".into()),
            },
        )
        .0;
    let (h, rights) = w.handle_of(web, Request::Lookup { name: "log".into() });
    assert_eq!(rights, Rights(Rights::SEND.0 | Rights::MONITOR.0));
    let msg = Message {
        caps: vec![h],
        ..Message::default()
    };
    assert_err(&w.send(web, h, msg), ErrorCode::NoRight);
    let (s, rights) = w.handle_of(
        web,
        Request::Lookup {
            name: "db/session".into(),
        },
    );
    assert_eq!(rights, SGM);
    assert_eq!(w.send_body(web, s, b"to session"), Response::Ok);
    let r = w.call(
        db,
        Request::Recv {
            mailbox: Some(sess),
            filter: Filter::default(),
            timeout_ms: Some(0),
        },
    );
    let d = delivery(r);
    assert_eq!((d.mailbox, d.body.as_slice()), (sess, &b"to session"[..]));
    assert!(w.whoami(web).contains(&(s, "db/session".into(), SGM)));

    let audits = w.audits.len();
    let hidden = w.call(web, Request::Lookup { name: "db".into() });
    let missing = w.call(
        web,
        Request::Lookup {
            name: "ghost".into(),
        },
    );
    let missing_mb = w.call(
        web,
        Request::Lookup {
            name: "db/other".into(),
        },
    );
    let remote = w.call(
        web,
        Request::Lookup {
            name: "log@beta".into(),
        },
    );
    assert_err(&hidden, ErrorCode::NotFound);
    assert_eq!(hidden, missing, "hidden and missing answer the same");
    assert_eq!(hidden, missing_mb);
    assert_eq!(hidden, remote);
    let reasons: Vec<&str> = w.audits[audits..]
        .iter()
        .map(|r| r.reason.as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "the name is in neither may_send nor may_discover",
            "no running mailbox has that name",
            "no running mailbox has that name",
            "remote names need federation ([host] broker)",
        ]
    );
    assert_eq!(w.audits[audits].target.as_deref(), Some("db"));
    assert_eq!(w.audits[audits].op, "lookup");
}

#[test]
fn extra_mailboxes_names_limits_and_destruction() {
    let mut w = World::with(Config {
        max_mailboxes_per_env: 3,
        ..Config::default()
    });
    let db = w.add("db", &[], &[]);
    let web = w.add("web", &[], &["db/s"]);
    let s = w
        .handle_of(
            db,
            Request::CreateMailbox {
                name: Some("s".into()),
            },
        )
        .0;
    assert_err(
        &w.call(
            db,
            Request::CreateMailbox {
                name: Some("s".into()),
            },
        ),
        ErrorCode::BadRequest,
    );
    assert_err(
        &w.call(
            db,
            Request::CreateMailbox {
                name: Some("S!".into()),
            },
        ),
        ErrorCode::BadRequest,
    );
    let anon = w.handle_of(db, Request::CreateMailbox { name: None }).0;
    assert_err(
        &w.call(db, Request::CreateMailbox { name: None }),
        ErrorCode::Unavailable,
    );
    assert_eq!(
        w.whoami(db),
        vec![
            (1, "db".into(), OWNER),
            (s, "db/s".into(), OWNER),
            (anon, "db/#1".into(), OWNER)
        ]
    );
    let to_s = w
        .handle_of(
            web,
            Request::Lookup {
                name: "db/s".into(),
            },
        )
        .0;
    assert_eq!(w.send_body(web, to_s, b"queued"), Response::Ok);
    // A receive waiting on the mailbox is answered dead when the owner destroys it.
    let waiting = w.call_waiting(
        db,
        Request::Recv {
            mailbox: Some(s),
            filter: by_corr(1),
            timeout_ms: Some(10),
        },
    );
    let audits = w.audits.len();
    assert_eq!(w.call(db, Request::Drop { handle: s }), Response::Ok);
    assert_err(&w.answer(db, waiting).unwrap(), ErrorCode::Dead);
    let discard = w.audits[audits..]
        .iter()
        .find(|r| r.op == "drop")
        .expect("discard record");
    assert_eq!(discard.target.as_deref(), Some("db/s"));
    assert!(discard.reason.contains("1 queued message"));
    assert_err(&w.send_body(web, to_s, b"x"), ErrorCode::Dead);
    assert_err(
        &w.call(
            web,
            Request::Lookup {
                name: "db/s".into(),
            },
        ),
        ErrorCode::NotFound,
    );
    assert_eq!(w.k.poll_timeout(), None);
    // The default mailbox cannot be dropped; a name is free again after destruction.
    assert_err(
        &w.call(db, Request::Drop { handle: 1 }),
        ErrorCode::BadRequest,
    );
    let s2 = w
        .handle_of(
            db,
            Request::CreateMailbox {
                name: Some("s".into()),
            },
        )
        .0;
    assert!(s2 > anon);
}

#[test]
fn an_ending_environment_answers_waiting_senders_and_keeps_its_sent_messages() {
    let mut w = World::new();
    let db = w.add_spec(EnvSpec {
        name: "db".into(),
        mailbox_capacity: Some(1),
        mailbox_bytes: None,
        ..EnvSpec::default()
    });
    let sink = w.add("sink", &[], &[]);
    let web = w.add("web", &["db", "sink"], &[]);
    let db2sink = w.add("x", &[], &[]);
    let _ = db2sink;
    assert_eq!(w.send_body(web, 2, b"fill"), Response::Ok);
    let blocked = w.call_waiting(
        web,
        Request::Send {
            handle: 2,
            message: body_msg(b"b"),
            wait: true,
        },
    );
    // db's own waiting requests disappear with it.
    let own = w.call_waiting(
        db,
        Request::Recv {
            mailbox: None,
            filter: by_corr(42),
            timeout_ms: Some(5),
        },
    );
    // web's message to sink stays deliverable after web ends.
    assert_eq!(w.send_body(web, 3, b"last words"), Response::Ok);
    w.remove(db);
    assert_err(&w.answer(web, blocked).unwrap(), ErrorCode::Dead);
    assert_eq!(w.answer(db, own), None);
    assert!(
        w.audits
            .iter()
            .any(|r| r.op == "end" && r.env == "db" && r.code == "dead")
    );
    assert_eq!(w.k.poll_timeout(), None);
    w.remove(web);
    let d = w.recv_delivery(sink);
    assert_eq!(
        (d.from.env.as_str(), d.body.as_slice()),
        ("web", &b"last words"[..])
    );
    // Requests naming an ended environment are ignored.
    w.k.handle_request(web, 99, Request::Whoami, 0);
    assert_eq!(w.k.poll_action(), None);
}

#[test]
fn a_waiting_send_of_an_ending_environment_is_withdrawn() {
    let mut w = World::new();
    let db = w.add_spec(EnvSpec {
        name: "db".into(),
        mailbox_capacity: Some(1),
        mailbox_bytes: None,
        ..EnvSpec::default()
    });
    let web = w.add("web", &["db"], &[]);
    assert_eq!(w.send_body(web, 2, b"first"), Response::Ok);
    let m = Message {
        body: b"withdrawn".to_vec(),
        caps: vec![2],
        reply_to: Some(1),
        ..Message::default()
    };
    w.call_waiting(
        web,
        Request::Send {
            handle: 2,
            message: m,
            wait: true,
        },
    );
    w.remove(web);
    assert_eq!(w.k.stats().waiting_sends, 0);
    assert_eq!(w.recv_delivery(db).body, b"first");
    assert_err(&w.recv(db, Filter::default()), ErrorCode::Timeout);
    assert!(w.responses.is_empty());
}

#[test]
fn limits_answer_unavailable() {
    let mut w = World::with(Config {
        max_handles: 4,
        max_waiting_per_env: 2,
        ..Config::default()
    });
    let b = w.add("b", &[], &[]);
    let a = w.add("a", &["b"], &[]);
    let _h3 = w.attenuate(a, 2, SEND);
    let _h4 = w.attenuate(a, 2, SEND);
    let r = w.call(
        a,
        Request::Attenuate {
            handle: 2,
            rights: SEND,
            uses: None,
            expires_in_ms: None,
            badge: None,
        },
    );
    assert_err(&r, ErrorCode::Unavailable);
    assert_eq!(w.last_audit().code, "unavailable");
    // b's table (1 handle) can take 3 more; a message bringing 4 waits in the queue.
    let msg = Message {
        caps: vec![1, 2, 2],
        reply_to: Some(1),
        ..Message::default()
    };
    assert_eq!(w.send(a, 2, msg), Response::Ok);
    assert_err(&w.recv(b, Filter::default()), ErrorCode::Unavailable);
    assert_eq!(w.k.stats().queued, 1);
    // Waiting requests per environment are bounded.
    let wait = |c| Request::Recv {
        mailbox: None,
        filter: by_corr(c),
        timeout_ms: None,
    };
    w.call_waiting(a, wait(1));
    w.call_waiting(a, wait(2));
    assert_err(&w.call(a, wait(3)), ErrorCode::Unavailable);
}

#[test]
fn a_waiting_receive_without_table_room_is_answered_unavailable() {
    let mut w = World::with(Config {
        max_handles: 2,
        ..Config::default()
    });
    let b = w.add("b", &[], &[]);
    let a = w.add("a", &["b"], &[]);
    let r = w.call_waiting(
        b,
        Request::Recv {
            mailbox: None,
            filter: Filter::default(),
            timeout_ms: None,
        },
    );
    let msg = Message {
        caps: vec![2, 2],
        ..Message::default()
    };
    assert_eq!(w.send(a, 2, msg), Response::Ok);
    assert_err(&w.answer(b, r).unwrap(), ErrorCode::Unavailable);
    assert_eq!(w.k.stats().queued, 1, "the message stays queued");
}

#[test]
fn audit_records_serialize_as_json_lines() {
    let mut w = World::new();
    let a = w.add("a", &[], &[]);
    w.now = 12;
    assert_err(&w.send_body(a, 9, b"x"), ErrorCode::NoSuchHandle);
    let line = serde_json::to_string(w.last_audit()).unwrap();
    assert_eq!(
        line,
        r#"{"at":12,"env":"a","op":"send","handle":9,"target":null,"code":"no-such-handle","reason":"no handle 9 in your table"}"#
    );
}

#[test]
fn nothing_leaks_once_every_environment_has_ended() {
    let mut w = World::new();
    let a = w.add("a", &["b", "b/x"], &[]);
    let b = w.add("b", &["a"], &[]);
    let x = w
        .handle_of(
            b,
            Request::CreateMailbox {
                name: Some("x".into()),
            },
        )
        .0;
    let bx = w.handle_of(a, Request::Lookup { name: "b/x".into() }).0;
    let att = w
        .handle_of(
            a,
            Request::Attenuate {
                handle: 2,
                rights: SGM,
                uses: Some(3),
                expires_in_ms: None,
                badge: None,
            },
        )
        .0;
    let m = Message {
        caps: vec![att, bx, 2],
        reply_to: Some(1),
        ..Message::default()
    };
    assert_eq!(w.send(a, 2, m), Response::Ok);
    let _ = w.recv_delivery(b);
    let m = Message {
        caps: vec![att],
        ..Message::default()
    };
    assert_eq!(w.send(a, bx, m), Response::Ok);
    assert!(matches!(
        w.call(a, Request::Monitor { handle: bx }),
        Response::Monitor { .. }
    ));
    w.call_waiting(
        b,
        Request::Recv {
            mailbox: Some(x),
            filter: by_corr(1),
            timeout_ms: Some(9),
        },
    );
    w.remove(a);
    w.remove(b);
    assert_eq!(w.k.stats(), crate::Stats::default());
    assert_eq!(w.k.poll_timeout(), None);
}

#[test]
fn the_same_inputs_give_the_same_actions() {
    fn run() -> Vec<Action> {
        let mut k = Kernel::new(Config::default());
        let mut out = Vec::new();
        let b = k
            .add_env(
                EnvSpec {
                    name: "b".into(),
                    ..EnvSpec::default()
                },
                0,
            )
            .unwrap();
        let a = k
            .add_env(
                EnvSpec {
                    name: "a".into(),
                    may_send: vec!["b".into()],
                    ..EnvSpec::default()
                },
                0,
            )
            .unwrap();
        k.handle_request(
            b,
            1,
            Request::Recv {
                mailbox: None,
                filter: Filter::default(),
                timeout_ms: Some(5),
            },
            1,
        );
        k.handle_request(a, 1, Request::Monitor { handle: 2 }, 2);
        k.handle_request(
            a,
            2,
            Request::Send {
                handle: 2,
                message: body_msg(b"x"),
                wait: false,
            },
            3,
        );
        k.handle_request(
            a,
            3,
            Request::Send {
                handle: 7,
                message: body_msg(b"y"),
                wait: false,
            },
            4,
        );
        k.remove_env(b, 10);
        k.handle_timeout(20);
        while let Some(x) = k.poll_action() {
            out.push(x);
        }
        out
    }
    let first = run();
    assert_eq!(first.len(), 5);
    assert_eq!(first, run());
}

#[test]
fn mailbox_memory_is_well_under_a_kibibyte() {
    let size = std::mem::size_of::<crate::mailbox::Mailbox>();
    println!("size_of::<Mailbox>() = {size} bytes");
    assert!(size < 1024 / 4, "{size} bytes");
}

/// Batch sends and receives (protocol version 2): one capability check per batch, capacity
/// counted per message, per-sender order, partial acceptance and waiting, no silent drops.
mod batch {
    use warren_proto::{Bodies, Deliveries};

    use super::*;

    fn bodies(range: std::ops::Range<u32>) -> Bodies {
        let v: Vec<Vec<u8>> = range.map(|i| format!("m{i}").into_bytes()).collect();
        v.iter().map(Vec::as_slice).collect()
    }

    fn send_batch(handle: Handle, b: Bodies, wait: bool) -> Request {
        Request::SendBatch {
            handle,
            wait,
            quiet: false,
            bodies: b,
        }
    }

    fn recv_batch(max: u32, timeout_ms: Option<u64>) -> Request {
        Request::RecvBatch {
            mailbox: None,
            max,
            timeout_ms,
        }
    }

    fn deliveries(r: Response) -> Deliveries {
        match r {
            Response::Deliveries(d) => d,
            other => panic!("expected deliveries, got {other:?}"),
        }
    }

    /// Every body, as text, with its sender: the order the receiver sees.
    fn texts(d: &Deliveries) -> Vec<String> {
        d.iter()
            .map(|(from, b)| format!("{}:{}", from.env, String::from_utf8_lossy(b)))
            .collect()
    }

    fn expect(names: &str, range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("{names}:m{i}")).collect()
    }

    fn pair(capacity: Option<usize>) -> (World, EnvId, EnvId) {
        let mut w = World::new();
        let b = w.add_spec(EnvSpec {
            name: "b".into(),
            mailbox_capacity: capacity,
            mailbox_bytes: None,
            ..EnvSpec::default()
        });
        let a = w.add("a", &["b"], &[]);
        (w, a, b)
    }

    #[test]
    fn a_batch_is_queued_in_order_and_taken_as_one_run_with_the_senders_identity() {
        let (mut w, a, b) = pair(None);
        assert_eq!(
            w.call(a, send_batch(2, bodies(0..3), false)),
            Response::Accepted { count: 3 }
        );
        assert_eq!(w.k.stats().queued, 3);
        let d = deliveries(w.call(b, recv_batch(10, Some(0))));
        assert_eq!(d.mailbox, 1);
        assert_eq!(d.runs.len(), 1, "one sender, one badge: one run");
        assert_eq!(d.runs[0].from.badge, 0);
        assert_eq!(texts(&d), expect("a", 0..3));
        assert_eq!(w.k.stats().queued, 0);
        assert_err(&w.call(b, recv_batch(10, Some(0))), ErrorCode::Timeout);
    }

    #[test]
    fn without_wait_the_accepted_prefix_is_counted_and_the_rest_refused() {
        let (mut w, a, b) = pair(Some(4));
        assert_eq!(
            w.call(a, send_batch(2, bodies(0..6), false)),
            Response::Accepted { count: 4 }
        );
        assert_eq!(w.k.stats().queued, 4, "capacity counts messages");
        // Full: nothing more is taken, and nothing was dropped silently.
        assert_eq!(
            w.call(a, send_batch(2, bodies(6..7), false)),
            Response::Accepted { count: 0 }
        );
        assert_err(&w.send_body(a, 2, b"x"), ErrorCode::Full);
        let d = deliveries(w.call(b, recv_batch(100, Some(0))));
        assert_eq!(texts(&d), expect("a", 0..4));
        // `full` and partial counts are outcomes, not denials: no audit record.
        assert!(w.audits.is_empty(), "{:?}", w.audits);
    }

    #[test]
    fn with_wait_the_rest_waits_as_one_send_and_enters_in_order() {
        let (mut w, a, b) = pair(Some(4));
        let id = w.call_waiting(a, send_batch(2, bodies(0..7), true));
        assert_eq!(w.k.stats().queued, 4);
        assert_eq!(w.k.stats().waiting_sends, 1);
        // A send that does not wait cannot overtake the waiting rest.
        assert_eq!(
            w.call(a, send_batch(2, bodies(100..101), false)),
            Response::Accepted { count: 0 }
        );
        assert_err(&w.send_body(a, 2, b"x"), ErrorCode::Full);
        // Taking two lets two of the waiting rest in; the send is not answered yet.
        let d = deliveries(w.call(b, recv_batch(2, Some(0))));
        assert_eq!(texts(&d), expect("a", 0..2));
        assert_eq!(w.answer(a, id), None);
        assert_eq!(w.k.stats().queued, 4);
        // The rest: answered `accepted 7` once its last message is in.
        let d = deliveries(w.call(b, recv_batch(100, Some(0))));
        assert_eq!(texts(&d), expect("a", 2..7));
        assert_eq!(w.answer(a, id), Some(Response::Accepted { count: 7 }));
        assert_eq!(w.k.stats().waiting_sends, 0);
    }

    #[test]
    fn a_waiting_batch_receive_takes_up_to_its_max_and_the_rest_is_queued() {
        let (mut w, a, b) = pair(None);
        let r = w.call_waiting(b, recv_batch(2, None));
        assert_eq!(
            w.call(a, send_batch(2, bodies(0..5), false)),
            Response::Accepted { count: 5 }
        );
        let d = deliveries(w.answer(b, r).expect("the waiting receive is answered"));
        assert_eq!(texts(&d), expect("a", 0..2));
        assert_eq!(w.k.stats().queued, 3);
        // A single receive takes the next one as an ordinary delivery.
        let d = w.recv_delivery(b);
        assert_eq!((d.from.env.as_str(), d.body.as_slice()), ("a", &b"m2"[..]));
        let d = deliveries(w.call(b, recv_batch(9, Some(0))));
        assert_eq!(texts(&d), expect("a", 3..5));
    }

    #[test]
    fn messages_that_are_not_plain_are_delivered_alone_and_end_a_batch() {
        let (mut w, a, b) = pair(None);
        assert_eq!(w.send_body(a, 2, b"p0"), Response::Ok);
        let tagged = Message {
            correlation: Some(7),
            body: b"t".to_vec(),
            ..Message::default()
        };
        assert_eq!(w.send(a, 2, tagged), Response::Ok);
        assert_eq!(
            w.call(a, send_batch(2, bodies(0..2), false)),
            Response::Accepted { count: 2 }
        );
        let d = deliveries(w.call(b, recv_batch(10, Some(0))));
        assert_eq!(
            texts(&d),
            vec!["a:p0".to_string()],
            "stops before the tagged one"
        );
        let d = delivery(w.call(b, recv_batch(10, Some(0))));
        assert_eq!(d.correlation, Some(7));
        let d = deliveries(w.call(b, recv_batch(10, Some(0))));
        assert_eq!(texts(&d), expect("a", 0..2));
        // A selective receive skips plain runs.
        assert_eq!(
            w.call(a, send_batch(2, bodies(0..2), false)),
            Response::Accepted { count: 2 }
        );
        assert_err(&w.recv(b, by_corr(7)), ErrorCode::Timeout);
        assert_eq!(w.k.stats().queued, 2);
    }

    #[test]
    fn runs_keep_senders_and_badges_apart_in_arrival_order() {
        let mut w = World::new();
        let b = w.add("b", &[], &[]);
        let a = w.add("a", &["b"], &[]);
        let c = w.add("c", &["b"], &[]);
        let badged = w.handle_of(
            a,
            Request::Attenuate {
                handle: 2,
                rights: SEND,
                uses: None,
                expires_in_ms: None,
                badge: Some(9),
            },
        );
        w.call(a, send_batch(2, bodies(0..2), false));
        w.call(c, send_batch(2, bodies(0..1), false));
        w.call(a, send_batch(badged.0, bodies(2..3), false));
        let d = deliveries(w.call(b, recv_batch(10, Some(0))));
        let runs: Vec<(String, u64, usize)> = d
            .runs
            .iter()
            .map(|r| (r.from.env.clone(), r.from.badge, r.bodies.len()))
            .collect();
        assert_eq!(
            runs,
            vec![("a".into(), 0, 2), ("c".into(), 0, 1), ("a".into(), 9, 1)]
        );
    }

    #[test]
    fn a_batch_is_refused_whole_by_one_capability_check() {
        let (mut w, a, b) = pair(None);
        assert_err(
            &w.call(a, send_batch(77, bodies(0..3), false)),
            ErrorCode::NoSuchHandle,
        );
        assert_eq!(w.last_audit().op, "send-batch");
        let monitor_only = w.attenuate(a, 2, Rights::MONITOR);
        assert_err(
            &w.call(a, send_batch(monitor_only, bodies(0..3), false)),
            ErrorCode::NoRight,
        );
        // A use limit must cover every message of the batch.
        let two = w
            .handle_of(
                a,
                Request::Attenuate {
                    handle: 2,
                    rights: SEND,
                    uses: Some(2),
                    expires_in_ms: None,
                    badge: None,
                },
            )
            .0;
        assert_err(
            &w.call(a, send_batch(two, bodies(0..3), false)),
            ErrorCode::UsedUp,
        );
        assert_eq!(w.k.stats().queued, 0, "a refused batch queues nothing");
        assert_eq!(
            w.call(a, send_batch(two, bodies(0..2), false)),
            Response::Accepted { count: 2 }
        );
        assert_err(
            &w.call(a, send_batch(two, bodies(0..1), false)),
            ErrorCode::UsedUp,
        );
        // Revocation reaches batch sends too.
        let revocable = w.attenuate(a, 2, SEND);
        assert_eq!(
            w.call(a, Request::Revoke { handle: 2 }),
            Response::Ok,
            "revoking the parent revokes what was derived"
        );
        assert_err(
            &w.call(a, send_batch(revocable, bodies(0..1), false)),
            ErrorCode::Revoked,
        );
        assert_eq!(w.k.stats().queued, 2);
        let _ = b;
    }

    #[test]
    fn quiet_batches_are_answered_only_when_something_was_refused() {
        let (mut w, a, _b) = pair(Some(2));
        let quiet = |bodies| Request::SendBatch {
            handle: 2,
            wait: false,
            quiet: true,
            bodies,
        };
        let id = w.submit(a, quiet(bodies(0..2)));
        assert_eq!(w.answer(a, id), None, "all accepted: no answer");
        let id = w.submit(a, quiet(bodies(2..3)));
        assert_eq!(w.answer(a, id), Some(Response::Accepted { count: 0 }));
        let id = w.submit(a, quiet(bodies(0..1)));
        let _ = id;
        let id = w.submit(
            a,
            Request::SendBatch {
                handle: 99,
                wait: false,
                quiet: true,
                bodies: bodies(0..1),
            },
        );
        assert_err(
            &w.answer(a, id).expect("errors are answered"),
            ErrorCode::NoSuchHandle,
        );
    }

    #[test]
    fn a_mailbox_that_dies_answers_its_waiting_batch_dead_once() {
        let mut w = World::new();
        let b = w.add_spec(EnvSpec {
            name: "b".into(),
            mailbox_capacity: Some(1),
            mailbox_bytes: None,
            ..EnvSpec::default()
        });
        let a = w.add("a", &["b"], &[]);
        let id = w.call_waiting(a, send_batch(2, bodies(0..3), true));
        w.remove(b);
        let answers: Vec<_> = w
            .responses
            .iter()
            .filter(|(e, i, _)| *e == a && *i == id)
            .collect();
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_err(&answers[0].2, ErrorCode::Dead);
    }

    #[test]
    fn a_version_1_connection_cannot_use_batch_operations() {
        let (mut w, a, _b) = pair(None);
        let hello = Request::Hello {
            min_version: 1,
            max_version: 1,
        };
        assert!(matches!(
            w.call(a, hello),
            Response::Welcome { version: 1, .. }
        ));
        assert_err(
            &w.call(a, send_batch(2, bodies(0..1), false)),
            ErrorCode::BadRequest,
        );
        assert_err(&w.call(a, recv_batch(1, Some(0))), ErrorCode::BadRequest);
        assert_eq!(w.k.stats().queued, 0);
    }

    #[test]
    fn a_batch_delivery_stays_within_a_frame() {
        let (mut w, a, b) = pair(None);
        let big = vec![7u8; 400_000];
        let three: Bodies = [&big[..], &big[..], &big[..]].into_iter().collect();
        assert_eq!(
            w.call(a, send_batch(2, three, false)),
            Response::Accepted { count: 3 }
        );
        let mut sizes = Vec::new();
        while let Response::Deliveries(d) = w.call(b, recv_batch(10, Some(0))) {
            let mut out = Vec::new();
            warren_proto::encode_response(
                &warren_proto::Frame {
                    id: 1,
                    body: Response::Deliveries(d.clone()),
                },
                &mut out,
            )
            .expect("every batch delivery encodes");
            assert!(out.len() <= warren_proto::MAX_FRAME);
            sizes.push(d.len());
        }
        assert_eq!(
            sizes,
            vec![2, 1],
            "two fit in a frame, the third comes next"
        );
    }

    #[test]
    fn a_zero_capacity_mailbox_hands_a_waiting_batch_straight_to_a_batch_receive() {
        let (mut w, a, b) = pair(Some(0));
        let id = w.call_waiting(a, send_batch(2, bodies(0..3), true));
        let d = deliveries(w.call(b, recv_batch(2, Some(0))));
        assert_eq!(texts(&d), expect("a", 0..2));
        assert_eq!(w.answer(a, id), None);
        let d = deliveries(w.call(b, recv_batch(2, Some(0))));
        assert_eq!(texts(&d), expect("a", 2..3));
        assert_eq!(w.answer(a, id), Some(Response::Accepted { count: 3 }));
    }
}

mod audit;
mod protocol;
mod quota;

/// Handle numbers are not reused while the counter lasts, and the counter does not run out:
/// after `u32::MAX` it wraps, skipping 0 and every number still in the table. (A server that
/// receives a reply handle with every call makes 4.3 billion of them in about twelve hours at
/// 100,000 calls a second.)
#[test]
fn handle_numbers_wrap_after_the_last_one_and_skip_live_ones() {
    let mut w = World::new();
    let log = w.add("log", &[], &[]);
    let web = w.add("web", &[], &["log"]);
    let lookup = || Request::Lookup { name: "log".into() };
    let (first, _) = w.handle_of(web, lookup());
    w.k.set_next_handle(web, u32::MAX - 1);
    let (a, _) = w.handle_of(web, lookup());
    let (b, _) = w.handle_of(web, lookup());
    assert_eq!((a, b), (u32::MAX - 1, u32::MAX));
    // 0 is never a handle, 1 (the default mailbox) and `first` are live: the next free one.
    let (c, _) = w.handle_of(web, lookup());
    assert!(c != 0 && c != 1 && c != first && c < 16, "{c}");
    for h in [first, a, b, c] {
        assert_eq!(w.send_body(web, h, b"x"), Response::Ok, "handle {h}");
    }
    let got = w.call(
        log,
        Request::RecvBatch {
            mailbox: None,
            max: 10,
            timeout_ms: Some(0),
        },
    );
    match got {
        Response::Deliveries(d) => assert_eq!(d.len(), 4),
        other => panic!("{other:?}"),
    }
}

/// Declared grants are numbered 2, 3, … in declaration order whatever order the environments
/// register in (so a kernel restart, after which they register again in any order, gives each
/// the same numbers). A target that ends and registers again is granted under a new number:
/// the old one stays, dead, as numbers are not reused. Positive control: the numbers differ
/// between the two targets and match their names in `whoami`.
#[test]
fn declared_grants_keep_their_numbers_whatever_order_targets_register_in() {
    let mut w = World::new();
    let web = w.add("web", &["db", "log", "cache"], &[]);
    // The targets start after it, in the reverse of its declaration order.
    let cache = w.add("cache", &[], &[]);
    let _log = w.add("log", &[], &[]);
    let _db = w.add("db", &[], &[]);
    let names: Vec<(Handle, String)> = w.whoami(web).into_iter().map(|(h, n, _)| (h, n)).collect();
    assert_eq!(
        names,
        [
            (1, "web".to_string()),
            (2, "db".to_string()),
            (3, "log".to_string()),
            (4, "cache".to_string())
        ],
        "{names:?}"
    );
    // Its own handles come after the reserved numbers.
    let (h, _) = w.handle_of(web, Request::Lookup { name: "db".into() });
    assert_eq!(h, 5);
    // A target that ends and comes back: a new handle, the old number dead.
    w.remove(cache);
    let _cache = w.add("cache", &[], &[]);
    let again: Vec<Handle> = w
        .whoami(web)
        .into_iter()
        .filter(|(_, n, _)| n == "cache")
        .map(|(h, _, _)| h)
        .collect();
    assert!(again.contains(&6), "{again:?}");
}
