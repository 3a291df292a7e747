//! `warren-fed-peer`: the workload of the federation tests and benchmark, run inside
//! environments on two hosts. Every mode prints what it saw as lines of text, which the tests
//! read from the environment's log.
//!
//! ```text
//! warren-fed-peer send TARGET COUNT [BATCH [PAUSE_MS]]  # 64-byte bodies "0..01".."COUNT"
//! warren-fed-peer send-many TARGET COUNT [FRAME]  # bodies "1".."COUNT" in SendBatch frames
//! warren-fed-peer recv COUNT [LINGER_MS]      # expects "1".."COUNT" in order; reports gaps and repeats
//! warren-fed-peer echo                        # answers every message through its reply capability
//! warren-fed-peer ping TARGET COUNT           # round trips through TARGET (an echo), reports latency
//! warren-fed-peer grantor TARGET              # passes a capability to itself to TARGET, revokes it later
//! warren-fed-peer grantee                     # uses a capability it was passed, before and after revocation
//! warren-fed-peer chatter PERIOD_MS TARGET...  # every period sends "N" to each TARGET (SENT/REFUSED
//!                                             # lines), prints every message it gets (GOT lines)
//! ```
//! TARGET is a name the environment may send to (`sink@beta`).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use warren_client::{Client, ClientError, ErrorCode, Handle, Message, Rights};

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    println!("FAIL {what}: {e}");
    std::process::exit(1)
}

fn handle_for(c: &mut Client, name: &str) -> Handle {
    let who = c.whoami().unwrap_or_else(|e| die("whoami", e));
    if let Some((h, _, _)) = who.handles.iter().find(|(_, d, _)| d == name) {
        return *h;
    }
    c.lookup(name).unwrap_or_else(|e| die("lookup", e)).0
}

fn msg(body: impl Into<Vec<u8>>) -> Message {
    Message {
        body: body.into(),
        ..Message::default()
    }
}

fn is_timeout(e: &ClientError) -> bool {
    e.code() == Some(ErrorCode::Timeout)
}

fn send(c: &mut Client, target: &str, count: u64, batch: u64, pause: Duration) {
    let h = handle_for(c, target);
    let start = Instant::now();
    let mut next = 1;
    while next <= count {
        let end = (next + batch - 1).min(count);
        let items: Vec<(Handle, Message)> = (next..=end).map(|i| (h, msg(i.to_string()))).collect();
        let results = c.send_batch(items, true).unwrap_or_else(|e| die("send", e));
        for (i, r) in (next..=end).zip(results) {
            if let Err(e) = r {
                die(&format!("send {i}"), e);
            }
        }
        if next / 1000 != (end + 1) / 1000 {
            println!("SENDING {end}");
        }
        next = end + 1;
        std::thread::sleep(pause);
    }
    let secs = start.elapsed().as_secs_f64();
    println!("SENT {count} in {secs:.3} s");
}

/// Takes what is queued, up to 256 messages per packet, without parking a receive in the
/// kernel (a receive with timeout 0 is answered at once), then waits for one message with a
/// timeout when nothing was there. Parked receives are lost when a kernel restarts; these are
/// never parked, and the one that waits gives up after its timeout and is asked again.
/// Sends "1".."COUNT" with SendBatch frames of at most `frame` bodies (waiting for room).
fn send_many(c: &mut Client, target: &str, count: u64, frame: u64) {
    let h = handle_for(c, target);
    c.set_frame_bodies(frame as usize);
    let bodies: Vec<Vec<u8>> = (1..=count).map(|i| i.to_string().into_bytes()).collect();
    let n = c
        .send_many(h, bodies.iter().map(Vec::as_slice), true)
        .unwrap_or_else(|e| die("send-many", e));
    println!("SENT-MANY {n}");
}

fn take(c: &mut Client) -> Vec<warren_client::Delivery> {
    let mut got = Vec::new();
    match c.recv(Some(Duration::from_secs(1))) {
        Ok(d) => got.push(d),
        Err(e) if is_timeout(&e) => return got,
        Err(e) => die("recv", e),
    }
    let more = c
        .recv_batch(255, Some(Duration::ZERO))
        .unwrap_or_else(|e| die("recv", e));
    for r in more {
        match r {
            Ok(d) => got.push(d),
            Err(e) if is_timeout(&e) => {}
            Err(e) => die("recv", e),
        }
    }
    got
}

fn recv(c: &mut Client, count: u64, linger: Duration) {
    let (mut expect, mut repeats, mut gaps) = (1u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut senders = std::collections::BTreeSet::new();
    while expect <= count {
        for d in take(c) {
            first.get_or_insert_with(Instant::now);
            senders.insert(d.from.env.clone());
            let n: u64 = String::from_utf8_lossy(&d.body).parse().unwrap_or(0);
            if n < expect {
                repeats += 1;
                println!("REPEAT {n} (expected {expect})");
            } else {
                if n > expect {
                    gaps += n - expect;
                    println!("GAP {expect}..{n}");
                }
                expect = n + 1;
            }
            if n % 1000 == 0 {
                println!("AT {n}");
            }
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    // Anything after the last one is a repeat.
    let until = Instant::now() + linger;
    while Instant::now() < until {
        for d in take(c) {
            repeats += 1;
            println!(
                "REPEAT {} (after the end)",
                String::from_utf8_lossy(&d.body)
            );
        }
    }
    let from: Vec<_> = senders.into_iter().collect();
    println!(
        "DONE received={} repeats={repeats} gaps={gaps} from={} secs={secs:.3}",
        expect - 1,
        from.join(",")
    );
}

fn echo(c: &mut Client) {
    loop {
        match c.recv(Some(Duration::from_secs(1))) {
            Ok(d) => {
                let Some(reply) = d.reply else { continue };
                let m = Message {
                    body: d.body,
                    correlation: d.correlation,
                    ..Message::default()
                };
                if let Err(e) = c.send(reply, m) {
                    println!("reply failed: {e}");
                }
                // The spent reply handle leaves the table by itself (docs/protocol.md §9).
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => die("recv", e),
        }
    }
}

fn ping(c: &mut Client, target: &str, count: u64) {
    let h = handle_for(c, target);
    let mut rtts = Vec::with_capacity(count as usize);
    for i in 0..count {
        let t = Instant::now();
        match c.call(h, msg(i.to_string()), Some(Duration::from_secs(30))) {
            Ok(d) if d.body == i.to_string().as_bytes() => {}
            Ok(d) => die("ping", format!("wrong answer {:?}", d.body)),
            Err(e) => die("ping", e),
        }
        rtts.push(t.elapsed().as_micros() as u64);
    }
    rtts.sort_unstable();
    let p = |q: f64| rtts[((rtts.len() as f64 - 1.0) * q) as usize];
    println!("RTT n={count} p50_us={} p99_us={}", p(0.5), p(0.99));
}

fn grantor(c: &mut Client, target: &str) {
    let h = handle_for(c, target);
    let (cap, _) = c
        .attenuate(
            1,
            Rights(Rights::SEND.0 | Rights::GRANT.0),
            None,
            None,
            Some(7),
        )
        .unwrap_or_else(|e| die("attenuate", e));
    let m = Message {
        body: b"here is a capability".to_vec(),
        caps: vec![cap],
        ..Message::default()
    };
    c.send(h, m)
        .unwrap_or_else(|e| die("send the capability", e));
    println!("GRANTED");
    let first = loop {
        match c.recv(Some(Duration::from_secs(1))) {
            Ok(d) => break d,
            Err(e) if is_timeout(&e) => {}
            Err(e) => die("recv", e),
        }
    };
    println!(
        "GOT {} from={} badge={}",
        String::from_utf8_lossy(&first.body),
        first.from.env,
        first.from.badge
    );
    c.revoke(cap).unwrap_or_else(|e| die("revoke", e));
    println!("REVOKED");
    c.send(h, msg("revoked")).unwrap_or_else(|e| die("send", e));
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        match c.recv(Some(Duration::from_millis(500))) {
            Ok(d) => println!("AFTER-REVOKE {}", String::from_utf8_lossy(&d.body)),
            Err(e) if is_timeout(&e) => {}
            Err(e) => die("recv", e),
        }
    }
    println!("END");
}

fn grantee(c: &mut Client) {
    let mut cap = None;
    loop {
        let d = match c.recv(Some(Duration::from_secs(1))) {
            Ok(d) => d,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => die("recv", e),
        };
        println!(
            "GOT {} from={} caps={}",
            String::from_utf8_lossy(&d.body),
            d.from.env,
            d.caps.len()
        );
        if let Some(&h) = d.caps.first() {
            cap = Some(h);
            c.send(h, msg("one")).unwrap_or_else(|e| die("send one", e));
            println!("SENT one");
        } else if d.body == b"revoked" {
            let h = cap.unwrap_or_else(|| die("grantee", "no capability"));
            // Accepted here (the capability is valid on this host); refused by the issuer.
            c.send(h, msg("two")).unwrap_or_else(|e| die("send two", e));
            println!("SENT two");
            println!("END");
            return;
        }
    }
}

/// Sends to every target each period and reports every message received, for ever: the
/// attestation-gate test reads who still talks to whom.
fn chatter(c: &mut Client, period: Duration, targets: &[&str]) {
    let handles: Vec<(String, Handle)> = targets
        .iter()
        .map(|t| (t.to_string(), handle_for(c, t)))
        .collect();
    let mut n = 0u64;
    loop {
        n += 1;
        for (t, h) in &handles {
            match c.send(*h, msg(n.to_string())) {
                Ok(()) => println!("SENT {t} {n}"),
                Err(e) => println!("REFUSED {t} {n} {e}"),
            }
        }
        let until = Instant::now() + period;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match c.recv(Some(left)) {
                Ok(d) => println!("GOT {} {}", d.from.env, String::from_utf8_lossy(&d.body)),
                Err(e) if is_timeout(&e) => break,
                Err(e) => die("recv", e),
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = Client::connect().unwrap_or_else(|e| die("connect", e));
    let num = |s: &str| s.parse::<u64>().unwrap_or_else(|e| die(s, e));
    match a.as_slice() {
        ["send", target, count] => send(&mut c, target, num(count), 256, Duration::ZERO),
        ["send", target, count, batch] => {
            send(&mut c, target, num(count), num(batch), Duration::ZERO)
        }
        ["send", target, count, batch, pause_ms] => {
            let pause = Duration::from_millis(num(pause_ms));
            send(&mut c, target, num(count), num(batch), pause)
        }
        ["send-many", target, count] => send_many(&mut c, target, num(count), 256),
        ["send-many", target, count, frame] => send_many(&mut c, target, num(count), num(frame)),
        ["recv", count] => recv(&mut c, num(count), Duration::from_secs(2)),
        ["recv", count, linger] => recv(&mut c, num(count), Duration::from_millis(num(linger))),
        ["echo"] => echo(&mut c),
        ["ping", target, count] => ping(&mut c, target, num(count)),
        ["grantor", target] => grantor(&mut c, target),
        ["grantee"] => grantee(&mut c),
        ["chatter", period_ms, targets @ ..] if !targets.is_empty() => {
            chatter(&mut c, Duration::from_millis(num(period_ms)), targets)
        }
        _ => die("usage", "see the module documentation"),
    }
}
