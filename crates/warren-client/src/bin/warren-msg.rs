//! `warren-msg`: the mailbox client for shell scripts inside an environment, exposed by Warren
//! at `/dev/warren/warren-msg` (on `PATH`). One invocation, one operation, on the inherited
//! kernel connection (`WARREN_FD`). Output is one line of JSON per result; errors go to
//! standard error with the kernel's stable code, and the exit status is 1 (2 for usage).
//!
//! ```text
//! warren-msg whoami
//! warren-msg lookup NAME
//! warren-msg send TARGET BODY [-H NAME=VALUE]... [--cap HANDLE]... [--correlation N] [--nowait] [--reply]
//! warren-msg call TARGET BODY [--timeout MS]          # send with a reply capability, await it
//! warren-msg recv [--timeout MS] [--correlation N] [-H NAME=VALUE] [--body]
//! warren-msg send-many TARGET BODY... [--nowait]     # plain bodies in batch frames
//! warren-msg recv-many [--max N] [--timeout MS]      # up to N messages in one receive
//! warren-msg attenuate TARGET [--rights send,grant,monitor] [--uses N] [--expires MS] [--badge N]
//! warren-msg revoke TARGET | drop TARGET | monitor TARGET | mailbox [NAME]
//! warren-msg attest --nonce HEX [--data HEX]     # a quote of this environment's launch record
//! warren-msg init -- CMD [ARG...]                 # pid 1: forward signals, reap, exit as CMD (warren run --init)
//! ```
//! `attest` prints the quote document itself (docs/attestation.md), for `warren attest verify`.
//! TARGET is a handle number or a name (found in `whoami`, else looked up).
#![forbid(unsafe_code)]

#[path = "warren-msg/init.rs"]
mod init;

use std::time::Duration;

use warren_client::{Client, ClientError, Delivery, Filter, Handle, Message, Rights};

fn usage() -> ! {
    eprintln!(
        "usage: warren-msg whoami | lookup NAME | send TARGET BODY [-H K=V]... [--cap H]... [--correlation N] \
         [--nowait] [--reply] | call TARGET BODY [--timeout MS] | recv [--timeout MS] \
         [--correlation N] [-H K=V] [--body] | send-many TARGET BODY... [--nowait] | \
         recv-many [--max N] [--timeout MS] | attenuate TARGET [--rights LIST] [--uses N] \
         [--expires MS] [--badge N] | revoke TARGET | drop TARGET | monitor TARGET | mailbox [NAME] \
         | attest --nonce HEX [--data HEX]"
    );
    std::process::exit(2)
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn rights_str(r: Rights) -> String {
    let mut v = Vec::new();
    for (bit, n) in [
        (Rights::SEND, "send"),
        (Rights::GRANT, "grant"),
        (Rights::MONITOR, "monitor"),
        (Rights::RECEIVE, "receive"),
    ] {
        if r.contains(bit) {
            v.push(json_str(n));
        }
    }
    format!("[{}]", v.join(","))
}

fn delivery_json(d: &Delivery) -> String {
    let headers: Vec<String> = d
        .headers
        .iter()
        .map(|(k, v)| {
            format!(
                "[{},{}]",
                json_str(k),
                json_str(&String::from_utf8_lossy(v))
            )
        })
        .collect();
    let opt = |v: Option<u64>| v.map_or("null".to_owned(), |x| x.to_string());
    format!(
        "{{\"from\":{},\"badge\":{},\"mailbox\":{},\"correlation\":{},\"headers\":[{}],\"body\":{},\"caps\":[{}],\"reply\":{},\"down\":{}}}",
        json_str(&d.from.env),
        d.from.badge,
        d.mailbox,
        opt(d.correlation),
        headers.join(","),
        json_str(&String::from_utf8_lossy(&d.body)),
        d.caps
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(","),
        opt(d.reply.map(u64::from)),
        opt(d.down),
    )
}

/// Arguments after the operation: positionals and `--flag value` pairs.
/// Lowercase or uppercase hex to bytes.
fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

struct Args {
    pos: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(raw: Vec<String>) -> Args {
        const BOOL: [&str; 3] = ["--nowait", "--reply", "--body"];
        let mut pos = Vec::new();
        let mut flags = Vec::new();
        let mut it = raw.into_iter();
        while let Some(a) = it.next() {
            if a.starts_with('-') && a.len() > 1 {
                if BOOL.contains(&a.as_str()) {
                    flags.push((a, None));
                } else {
                    let v = it.next().unwrap_or_else(|| usage());
                    flags.push((a, Some(v)));
                }
            } else {
                pos.push(a);
            }
        }
        Args { pos, flags }
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(k, _)| k == name)
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(k, _)| k == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }
    fn num<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.get(name).map(|v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("warren-msg: {name} takes a number, not {v:?}");
                std::process::exit(2)
            })
        })
    }
}

fn header(kv: &str) -> (String, Vec<u8>) {
    match kv.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.as_bytes().to_vec()),
        None => {
            eprintln!("warren-msg: header {kv:?} is not NAME=VALUE");
            std::process::exit(2)
        }
    }
}

fn target(k: &mut Client, t: &str) -> Result<Handle, ClientError> {
    if let Ok(h) = t.parse::<Handle>() {
        return Ok(h);
    }
    let me = k.whoami()?;
    if let Some((h, _, _)) = me
        .handles
        .iter()
        .find(|(_, d, r)| d == t && r.contains(Rights::SEND))
    {
        return Ok(*h);
    }
    Ok(k.lookup(t)?.0)
}

fn run(op: &str, a: Args) -> Result<(), ClientError> {
    let mut k = Client::connect()?;
    let timeout = a.num::<u64>("--timeout").map(Duration::from_millis);
    match op {
        "whoami" => {
            let me = k.whoami()?;
            let hs: Vec<String> = me
                .handles
                .iter()
                .map(|(h, d, r)| {
                    format!(
                        "{{\"handle\":{h},\"target\":{},\"rights\":{}}}",
                        json_str(d),
                        rights_str(*r)
                    )
                })
                .collect();
            println!(
                "{{\"env\":{},\"handles\":[{}]}}",
                json_str(&me.env),
                hs.join(",")
            );
        }
        "lookup" => {
            let name = a.pos.first().unwrap_or_else(|| usage());
            let (h, r) = k.lookup(name)?;
            println!("{{\"handle\":{h},\"rights\":{}}}", rights_str(r));
        }
        "send" | "call" => {
            let (Some(t), Some(body)) = (a.pos.first(), a.pos.get(1)) else {
                usage()
            };
            let handle = target(&mut k, t)?;
            let msg = Message {
                headers: a.all("-H").into_iter().map(header).collect(),
                correlation: a.num("--correlation"),
                body: body.as_bytes().to_vec(),
                caps: a
                    .all("--cap")
                    .iter()
                    .map(|c| c.parse().unwrap_or_else(|_| usage()))
                    .collect(),
                reply_to: a.has("--reply").then_some(warren_client::DEFAULT_MAILBOX),
            };
            if op == "call" {
                let d = k.call(handle, msg, timeout)?;
                println!("{}", delivery_json(&d));
            } else if a.has("--nowait") {
                k.try_send(handle, msg)?;
                println!("{{\"sent\":true}}");
            } else {
                k.send(handle, msg)?;
                println!("{{\"sent\":true}}");
            }
        }
        "recv" => {
            let filter = Filter {
                correlation: a.num("--correlation"),
                header: a.get("-H").map(header),
            };
            let d = k.recv_matching(None, filter, timeout)?;
            if a.has("--body") {
                println!("{}", String::from_utf8_lossy(&d.body));
            } else {
                println!("{}", delivery_json(&d));
            }
        }
        "send-many" => {
            let t = a.pos.first().unwrap_or_else(|| usage());
            let handle = target(&mut k, t)?;
            let bodies = a.pos[1..].iter().map(|b| b.as_bytes());
            let n = k.send_many(handle, bodies, !a.has("--nowait"))?;
            println!("{{\"accepted\":{n}}}");
        }
        "recv-many" => match k.recv_many(a.num("--max").unwrap_or(64), timeout)? {
            // One line per message, oldest first.
            warren_client::Received::Batch(d) => {
                for (from, body) in d.iter() {
                    println!(
                        "{{\"from\":{},\"badge\":{},\"mailbox\":{},\"body\":{}}}",
                        json_str(&from.env),
                        from.badge,
                        d.mailbox,
                        json_str(&String::from_utf8_lossy(body))
                    );
                }
            }
            warren_client::Received::One(d) => println!("{}", delivery_json(&d)),
        },
        "attenuate" => {
            let t = a.pos.first().unwrap_or_else(|| usage());
            let h = target(&mut k, t)?;
            let mut rights = Rights::ALL_REMOTE;
            if let Some(list) = a.get("--rights") {
                rights = Rights::NONE;
                for r in list.split(',').filter(|s| !s.is_empty()) {
                    rights = rights.union(match r {
                        "send" => Rights::SEND,
                        "grant" => Rights::GRANT,
                        "monitor" => Rights::MONITOR,
                        _ => usage(),
                    });
                }
            }
            let (nh, r) = k.attenuate(
                h,
                rights,
                a.num("--uses"),
                a.num::<u64>("--expires").map(Duration::from_millis),
                a.num("--badge"),
            )?;
            println!("{{\"handle\":{nh},\"rights\":{}}}", rights_str(r));
        }
        "revoke" | "drop" => {
            let t = a.pos.first().unwrap_or_else(|| usage());
            let h = target(&mut k, t)?;
            if op == "revoke" {
                k.revoke(h)?
            } else {
                k.drop_handle(h)?
            }
            println!("{{\"ok\":true}}");
        }
        "monitor" => {
            let t = a.pos.first().unwrap_or_else(|| usage());
            let h = target(&mut k, t)?;
            println!("{{\"reference\":{}}}", k.monitor(h)?);
        }
        "mailbox" => {
            let h = k.create_mailbox(a.pos.first().map(String::as_str))?;
            println!("{{\"handle\":{h}}}");
        }
        "attest" => {
            let nonce = a
                .get("--nonce")
                .and_then(from_hex)
                .unwrap_or_else(|| usage());
            let data = match a.get("--data") {
                Some(d) => from_hex(d).unwrap_or_else(|| usage()),
                None => Vec::new(),
            };
            let quote = k.attest(&nonce, &data)?;
            println!("{}", String::from_utf8_lossy(&quote));
        }
        _ => usage(),
    }
    Ok(())
}

fn main() {
    let mut raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.is_empty() || raw[0] == "--help" || raw[0] == "-h" {
        usage();
    }
    let op = raw.remove(0);
    if op == "init" {
        init::main(raw);
    }
    if let Err(e) = run(&op, Args::parse(raw)) {
        // Kernel refusals read `<op>: <code>: <detail>`, the code being the stable name.
        eprintln!("warren-msg: {op}: {e}");
        std::process::exit(1);
    }
}
