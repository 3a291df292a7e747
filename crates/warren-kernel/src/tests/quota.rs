//! Byte quotas: what an environment pins (messages queued in the mailboxes it owns and its own
//! sends waiting for room) stays within its quota plus one message, a sender cannot take more
//! than its share of a receiver's quota, and a refusal says `quota` (or `unavailable` to a
//! connection older than version 3).

use warren_proto::{Bodies, MAX_BODY};

use super::*;
use crate::{MESSAGE_OVERHEAD, SENDER_SHARE_DIVISOR, message_cost};

const KIB: usize = 1024;

fn with_quota(w: &mut World, name: &str, may_send: &[&str], quota: usize) -> EnvId {
    w.add_spec(EnvSpec {
        name: name.into(),
        may_send: may_send.iter().map(|s| s.to_string()).collect(),
        mailbox_bytes: Some(quota),
        ..EnvSpec::default()
    })
}

fn body(len: usize) -> Vec<u8> {
    vec![b'x'; len]
}

fn detail(r: &Response) -> &str {
    match r {
        Response::Error { detail, .. } => detail,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn queued_bytes_count_against_the_receiver_and_a_refusal_says_quota() {
    let mut w = World::new();
    // The receiver's quota holds three 10 KiB messages; the sender's share is not the limit
    // here because the receiver sends to itself (its own share is its whole quota).
    let b = with_quota(&mut w, "b", &["b"], 3 * (10 * KIB + MESSAGE_OVERHEAD));
    let cost = message_cost(10 * KIB, &[]);
    for _ in 0..3 {
        assert_eq!(w.send_body(b, 2, &body(10 * KIB)), Response::Ok);
    }
    assert_eq!(w.k.pinned_bytes(b), 3 * cost);
    let r = w.send_body(b, 2, &body(10 * KIB));
    assert_err(&r, ErrorCode::Quota);
    assert!(detail(&r).contains("receiver's byte quota"), "{r:?}");
    assert_eq!(w.last_audit().code, "quota");
    // Positive control: the mailbox has room by count (64); only bytes refused it, and a
    // receive frees them.
    w.recv_delivery(b);
    assert_eq!(w.k.pinned_bytes(b), 2 * cost);
    assert_eq!(w.send_body(b, 2, &body(10 * KIB)), Response::Ok);
    for _ in 0..3 {
        w.recv_delivery(b);
    }
    assert_eq!(w.k.pinned_bytes(b), 0);
}

#[test]
fn one_environment_cannot_pin_more_than_its_quota_through_many_mailboxes() {
    // The attack of issue 14: 16 mailboxes filled with the largest bodies.
    let mut w = World::new();
    let a = w.add("a", &[], &[]);
    let quota = w.k.quota(a);
    assert_eq!(quota, Config::default().default_mailbox_bytes);
    let mut handles = vec![];
    for i in 0..16 {
        let (h, _) = w.handle_of(
            a,
            Request::CreateMailbox {
                name: Some(format!("m{i}")),
            },
        );
        handles.push(h);
    }
    let big = body(MAX_BODY);
    let (mut accepted, mut refused) = (0, 0);
    for &h in &handles {
        for _ in 0..64 {
            match w.send_body(a, h, &big) {
                Response::Ok => accepted += 1,
                r => {
                    assert_err(&r, ErrorCode::Quota);
                    refused += 1;
                }
            }
        }
    }
    let pinned = w.k.pinned_bytes(a);
    println!("accepted {accepted}, refused {refused}, pinned {pinned} of {quota}");
    assert!(pinned <= quota, "{pinned} > {quota}");
    assert!(accepted > 0 && refused > 900);
    assert_eq!(accepted, quota / message_cost(MAX_BODY, &[]));
    assert_eq!(w.k.stats().pinned_bytes, pinned);
}

#[test]
fn waiting_sends_count_against_the_sender_not_the_receiver() {
    let mut w = World::new();
    let b = w.add_spec(EnvSpec {
        name: "b".into(),
        mailbox_capacity: Some(1),
        ..EnvSpec::default()
    });
    let a = with_quota(&mut w, "a", &["b"], 4 * message_cost(100 * KIB, &[]));
    let send_wait = |body: Vec<u8>| Request::Send {
        handle: 2,
        message: body_msg(&body),
        wait: true,
    };
    assert_eq!(w.call(a, send_wait(body(100 * KIB))), Response::Ok);
    let mut waiting = vec![];
    for _ in 0..4 {
        waiting.push(w.call_waiting(a, send_wait(body(100 * KIB))));
    }
    let cost = message_cost(100 * KIB, &[]);
    assert_eq!(w.k.pinned_bytes(a), 4 * cost);
    assert_eq!(w.k.pinned_bytes(b), cost);
    // The fifth waiting send would pass the sender's own quota (the 1,024 waiting sends of
    // issue 14 stop here).
    let r = w.call(a, send_wait(body(100 * KIB)));
    assert_err(&r, ErrorCode::Quota);
    assert!(detail(&r).contains("your byte quota"), "{r:?}");
    // Receiving moves a waiting message into the queue: the charge moves to the receiver.
    w.recv_delivery(b);
    assert_eq!(w.answer(a, waiting[0]), Some(Response::Ok));
    assert_eq!(w.k.pinned_bytes(a), 3 * cost);
    assert_eq!(w.k.pinned_bytes(b), cost);
    // The receiver ending answers the rest `dead` and frees the sender's bytes.
    w.remove(b);
    for id in &waiting[1..] {
        assert_err(&w.answer(a, *id).expect("answered"), ErrorCode::Dead);
    }
    assert_eq!(w.k.pinned_bytes(a), 0);
}

#[test]
fn one_sender_cannot_use_up_a_receivers_quota_and_shut_out_the_others() {
    let mut w = World::new();
    let quota = 8 * message_cost(10 * KIB, &[]);
    let b = with_quota(&mut w, "b", &[], quota);
    let a = w.add("a", &["b"], &[]);
    let c = w.add("c", &["b"], &[]);
    let share = quota / SENDER_SHARE_DIVISOR;
    let per = message_cost(10 * KIB, &[]);
    let mut sent = 0;
    loop {
        match w.send_body(a, 2, &body(10 * KIB)) {
            Response::Ok => sent += 1,
            r => {
                assert_err(&r, ErrorCode::Quota);
                assert!(detail(&r).contains("your share"), "{r:?}");
                break;
            }
        }
    }
    assert_eq!(sent, share / per);
    // Another sender still gets in.
    assert_eq!(w.send_body(c, 2, &body(10 * KIB)), Response::Ok);
    // And the receiver drains the flooder at its own pace.
    w.recv_delivery(b);
    assert_eq!(w.send_body(a, 2, &body(10 * KIB)), Response::Ok);
}

#[test]
fn a_message_larger_than_the_quota_still_passes_one_at_a_time() {
    let mut w = World::new();
    let b = with_quota(&mut w, "b", &[], 1000);
    let a = w.add("a", &["b"], &[]);
    assert_eq!(w.send_body(a, 2, &body(5000)), Response::Ok);
    assert_err(&w.send_body(a, 2, &body(1)), ErrorCode::Quota);
    assert_eq!(w.recv_delivery(b).body.len(), 5000);
    assert_eq!(w.send_body(a, 2, &body(1)), Response::Ok);
}

#[test]
fn an_older_connection_gets_unavailable_for_a_quota_refusal() {
    let mut w = World::new();
    let _b = with_quota(&mut w, "b", &[], 1000);
    let a = w.add("a", &["b"], &[]);
    let hello = Request::Hello {
        min_version: 1,
        max_version: 2,
    };
    assert!(matches!(
        w.call(a, hello),
        Response::Welcome { version: 2, .. }
    ));
    assert_eq!(w.send_body(a, 2, &body(900)), Response::Ok);
    let r = w.send_body(a, 2, &body(900));
    assert_err(&r, ErrorCode::Unavailable);
    assert!(detail(&r).contains("byte quota"), "{r:?}");
}

#[test]
fn batches_enter_within_the_quota_and_wait_within_the_senders() {
    let mut w = World::new();
    let per = message_cost(1000, &[]);
    let b = with_quota(&mut w, "b", &["b"], 10 * per);
    let bodies = |n: usize| -> Bodies {
        let v = vec![body(1000); n];
        v.iter().map(Vec::as_slice).collect()
    };
    // Without wait: the prefix that fits is accepted, the count says so.
    let r = w.call(
        b,
        Request::SendBatch {
            handle: 2,
            wait: false,
            quiet: false,
            bodies: bodies(15),
        },
    );
    assert_eq!(r, Response::Accepted { count: 10 });
    assert_eq!(w.k.pinned_bytes(b), 10 * per);
    // With wait, beyond the sender's own quota (the same environment here): refused whole.
    let r = w.call(
        b,
        Request::SendBatch {
            handle: 2,
            wait: true,
            quiet: false,
            bodies: bodies(3),
        },
    );
    assert_err(&r, ErrorCode::Quota);
    assert_eq!(w.k.pinned_bytes(b), 10 * per);
    assert_eq!(w.k.stats().queued, 10);
}
