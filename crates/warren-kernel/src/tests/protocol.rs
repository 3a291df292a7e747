//! The protocol as written (issue 14): monitors fire when a mailbox is destroyed, and used
//! one-shot reply handles leave the receiver's table by themselves.

use super::*;

fn is_down(d: &Delivery, reference: u64, owner: &str) -> bool {
    d.down == Some(reference)
        && d.from.env == owner
        && d.headers == vec![("warren-down".to_string(), b"ended".to_vec())]
}

fn monitor(w: &mut World, env: EnvId, handle: Handle) -> u64 {
    match w.call(env, Request::Monitor { handle }) {
        Response::Monitor { reference } => reference,
        other => panic!("expected a monitor reference, got {other:?}"),
    }
}

#[test]
fn monitors_of_a_mailbox_fire_when_its_owner_destroys_it() {
    let mut w = World::new();
    let a = w.add("a", &[], &[]);
    let (session, _) = w.handle_of(
        a,
        Request::CreateMailbox {
            name: Some("session".into()),
        },
    );
    let (other, _) = w.handle_of(
        a,
        Request::CreateMailbox {
            name: Some("other".into()),
        },
    );
    let r_session = monitor(&mut w, a, session);
    let r_other = monitor(&mut w, a, other);
    // Destroying the mailbox fires its monitor at once.
    assert_eq!(w.call(a, Request::Drop { handle: session }), Response::Ok);
    let d = w.recv_delivery(a);
    assert!(is_down(&d, r_session, "a"), "{d:?}");
    // Only that mailbox's monitor fired: nothing else is queued.
    assert_err(&w.recv(a, Filter::default()), ErrorCode::Timeout);
    // Positive control: the other monitor fires when its mailbox goes too.
    assert_eq!(w.call(a, Request::Drop { handle: other }), Response::Ok);
    let d = w.recv_delivery(a);
    assert!(is_down(&d, r_other, "a"), "{d:?}");
    assert_eq!(w.k.stats().monitors, 0);
}

#[test]
fn another_environments_monitor_fires_on_destroy_and_a_late_monitor_fires_at_once() {
    let mut w = World::new();
    let a = w.add("a", &[], &[]);
    let b = w.add("b", &["a/session"], &[]);
    let (session, _) = w.handle_of(
        a,
        Request::CreateMailbox {
            name: Some("session".into()),
        },
    );
    let (h, rights) = w.handle_of(
        b,
        Request::Lookup {
            name: "a/session".into(),
        },
    );
    assert!(rights.contains(Rights::MONITOR));
    let reference = monitor(&mut w, b, h);
    // Nothing yet: the owner runs and the mailbox lives.
    assert_err(&w.recv(b, Filter::default()), ErrorCode::Timeout);
    assert_eq!(w.call(a, Request::Drop { handle: session }), Response::Ok);
    let d = w.recv_delivery(b);
    assert!(is_down(&d, reference, "a"), "{d:?}");
    // A monitor taken after the destruction fires at once, even though a still runs.
    let late = monitor(&mut w, b, h);
    let d = w.recv_delivery(b);
    assert!(is_down(&d, late, "a"), "{d:?}");
    // The owner ending later fires nothing more.
    w.remove(a);
    assert_err(&w.recv(b, Filter::default()), ErrorCode::Timeout);
}

#[test]
fn a_spent_reply_handle_leaves_the_table_so_a_server_never_fills_up() {
    let mut w = World::new();
    let server = w.add("server", &[], &[]);
    let client = w.add("client", &["server"], &[]);
    let max = Config::default().max_handles;
    // Far more calls than the table holds handles: each answered through its reply handle.
    for i in 0..(2 * max as u64) {
        let call = Message {
            body: b"q".to_vec(),
            reply_to: Some(1),
            correlation: Some(i),
            ..Message::default()
        };
        assert_eq!(w.send(client, 2, call), Response::Ok);
        let d = w.recv_delivery(server);
        let reply = d.reply.expect("a reply handle");
        let answer = Message {
            body: b"a".to_vec(),
            correlation: Some(i),
            ..Message::default()
        };
        assert_eq!(
            w.send(server, reply, answer.clone()),
            Response::Ok,
            "call {i}"
        );
        // Gone from the table: a second answer names no handle.
        assert_err(&w.send(server, reply, answer), ErrorCode::NoSuchHandle);
        let d = delivery(w.recv(client, by_corr(i)));
        assert_eq!(d.body, b"a");
    }
    assert_eq!(
        w.whoami(server).len(),
        1,
        "only the default mailbox is left"
    );
    // Positive control: an unused reply handle stays until it is used or dropped.
    let call = Message {
        reply_to: Some(1),
        ..Message::default()
    };
    assert_eq!(w.send(client, 2, call), Response::Ok);
    let reply = w.recv_delivery(server).reply.expect("a reply handle");
    assert!(w.whoami(server).iter().any(|(h, _, _)| *h == reply));
}

/// The kernel limits of docs/protocol.md §11.1, with the default configuration, each hit.
#[test]
fn the_documented_kernel_limits_hold_with_the_defaults() {
    let cfg = Config::default();
    assert_eq!(
        (
            cfg.default_capacity,
            cfg.max_handles,
            cfg.max_mailboxes_per_env,
            cfg.max_waiting_per_env,
            cfg.default_mailbox_bytes,
            cfg.audit_window_ms,
            cfg.audit_records_per_window,
        ),
        (64, 1024, 64, 1024, 16 << 20, 10_000, 10),
        "the documented values"
    );
    let mut w = World::new();
    let _db = w.add("db", &[], &[]);
    let a = w.add("a", &["db"], &[]);
    // Mailbox capacity: 64 messages, then `full`.
    for i in 0..64 {
        assert_eq!(w.send_body(a, 2, b"x"), Response::Ok, "message {i}");
    }
    assert_err(&w.send_body(a, 2, b"x"), ErrorCode::Full);
    // Mailboxes: 64 with the default one.
    for _ in 1..64 {
        w.handle_of(a, Request::CreateMailbox { name: None });
    }
    assert_err(
        &w.call(a, Request::CreateMailbox { name: None }),
        ErrorCode::Unavailable,
    );
    // Monitors: 1,024 per environment.
    for _ in 0..1024 {
        assert!(matches!(
            w.call(a, Request::Monitor { handle: 2 }),
            Response::Monitor { .. }
        ));
    }
    assert_err(
        &w.call(a, Request::Monitor { handle: 2 }),
        ErrorCode::Unavailable,
    );
    // Handles: 1,024 in a table (it holds 65 now).
    let held = w.whoami(a).len();
    for _ in held..1024 {
        w.handle_of(a, Request::Lookup { name: "db".into() });
    }
    assert_err(
        &w.call(a, Request::Lookup { name: "db".into() }),
        ErrorCode::Unavailable,
    );
    // Waiting requests: 1,024 per environment.
    let recv = Request::Recv {
        mailbox: None,
        filter: Filter::default(),
        timeout_ms: None,
    };
    for _ in 0..1024 {
        w.call_waiting(
            a,
            Request::Recv {
                mailbox: None,
                filter: by_corr(77),
                timeout_ms: None,
            },
        );
    }
    assert_err(&w.call(a, recv), ErrorCode::Unavailable);
}

/// §8 and §11.1: policy grants never take a table past its 1,024 handles. A `may_send` target
/// that ends and registers again is granted under a new number each time (the old one stays,
/// dead); once the holder's table is full, the new grant is not installed but audited, and the
/// holder reaches the target again by Lookup once it drops a dead handle.
#[test]
fn a_target_registering_again_and_again_never_takes_a_holders_table_past_its_limit() {
    let mut w = World::new();
    let max = Config::default().max_handles;
    let holder = w.add("holder", &["t"], &[]);
    // Positive control: the first registration is granted under the reserved number 2.
    let t = w.add("t", &[], &[]);
    assert!(w.whoami(holder).iter().any(|(h, d, _)| *h == 2 && d == "t"));
    assert_eq!(w.send_body(holder, 2, b"x"), Response::Ok);
    w.remove(t);
    for _ in 0..max + 10 {
        let t = w.add("t", &[], &[]);
        w.remove(t);
    }
    let _t = w.add("t", &[], &[]);
    let held = w.whoami(holder);
    assert_eq!(held.len(), max, "the table is full, not past full");
    assert!(
        w.audits
            .iter()
            .any(|r| r.env == "holder" && r.op == "grant" && r.code == "unavailable"),
        "the grant that did not fit is audited"
    );
    // A Lookup needs room too; a dropped dead handle makes it.
    assert_err(
        &w.call(holder, Request::Lookup { name: "t".into() }),
        ErrorCode::Unavailable,
    );
    assert_eq!(w.call(holder, Request::Drop { handle: 2 }), Response::Ok);
    let (h, _) = w.handle_of(holder, Request::Lookup { name: "t".into() });
    assert_eq!(w.send_body(holder, h, b"y"), Response::Ok);
}

/// §8: the number reserved for a `may_send` target that does not run yet counts as held, so
/// the grant that fills it when the target registers never takes the table past 1,024.
#[test]
fn a_reserved_number_counts_as_held() {
    let mut w = World::new();
    let max = Config::default().max_handles;
    let _db = w.add("db", &[], &[]);
    let holder = w.add("holder", &["t"], &["db"]);
    let mut looked_up = 0;
    loop {
        match w.call(holder, Request::Lookup { name: "db".into() }) {
            Response::Handle { .. } => looked_up += 1,
            other => {
                assert_err(&other, ErrorCode::Unavailable);
                break;
            }
        }
    }
    // Handle 1, the reserved number 2, and the lookups fill the table.
    assert_eq!(looked_up, max - 2);
    let _t = w.add("t", &[], &[]);
    let held = w.whoami(holder);
    assert_eq!(held.len(), max);
    assert!(held.iter().any(|(h, d, _)| *h == 2 && d == "t"), "{held:?}");
}
/// A declaration that names more targets than a table can hold besides handle 1 is refused
/// when the environment registers, naming how many; one fewer registers and fills the table.
#[test]
fn a_declaration_with_more_grants_than_a_table_holds_is_refused() {
    let mut w = World::new();
    let max = Config::default().max_handles;
    let names: Vec<String> = (0..max).map(|i| format!("t{i}")).collect();
    for n in &names {
        w.add(n, &[], &[]);
    }
    let spec = |may_send: &[String]| EnvSpec {
        name: "holder".into(),
        may_send: may_send.to_vec(),
        ..EnvSpec::default()
    };
    let err = w.k.add_env(spec(&names), w.now).unwrap_err();
    assert!(
        matches!(err, KernelError::TooManyGrants { count, max: m, .. } if count == max && m == max - 1),
        "{err}"
    );
    assert!(err.to_string().contains("1023"), "{err}");
    // Positive control: 1,023 targets register and fill the table exactly.
    let holder = w.add_spec(spec(&names[..max - 1]));
    assert_eq!(w.whoami(holder).len(), max);
}
