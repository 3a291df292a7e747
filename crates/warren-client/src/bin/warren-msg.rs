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
//! warren-msg attenuate TARGET [--rights send,grant,monitor,spawn,stop] [--uses N] [--expires MS] [--badge N]
//! warren-msg revoke TARGET | drop TARGET | monitor TARGET | mailbox [NAME]
//! warren-msg attest --nonce HEX [--data HEX]     # a quote of this environment's launch record
//! warren-msg spawn TEMPLATE [--name SUFFIX] [--grant NAME=HANDLE]... [--env K=V]... \
//!     [--memory SIZE] [--pids N] [--cpus CPUS] [--tmpfs SIZE] [--detach] [-- ARGS...]
//! warren-msg stop TARGET [--kill]                 # a child, through its STOP handle
//! warren-msg restrict TEMPLATE [--share N] [--memory SIZE] [--pids N] [--cpus CPUS] [--tmpfs SIZE]
//! warren-msg init -- CMD [ARG...]                 # pid 1: forward signals, reap, exit as CMD (warren run --init)
//! ```
//! `spawn` prints the child's name and handles: `{"child":"req-1","mailbox":5,"control":6,
//! "reference":7}` (send to `mailbox`, stop through `control`, and the `down` notice for the
//! child carries `reference`). TEMPLATE is a handle number or a template name (`req`, or
//! `template:req`); `--grant NAME=HANDLE` passes HANDLE (a number or a name) as the child's
//! initial name NAME. SIZE is bytes or a number with K, M or G (binary units); CPUS is a
//! number of cpus such as `0.5`.
//! `attest` prints the quote document itself (docs/attestation.md), for `warren attest verify`.
//! TARGET is a handle number or a name (found in `whoami`, else looked up).
//! `attenuate` keeps every right the handle has unless `--rights` names fewer, so
//! `attenuate template:req --uses 1` is a one-spawn SPAWN handle.
#![forbid(unsafe_code)]

#[path = "warren-msg/init.rs"]
mod init;

use std::time::Duration;

use warren_client::{
    Client, ClientError, Delivery, Filter, Handle, Limits, Message, Rights, Spawn,
};

fn usage() -> ! {
    eprintln!(
        "usage: warren-msg whoami | lookup NAME | send TARGET BODY [-H K=V]... [--cap H]... [--correlation N] \
         [--nowait] [--reply] | call TARGET BODY [--timeout MS] | recv [--timeout MS] \
         [--correlation N] [-H K=V] [--body] | send-many TARGET BODY... [--nowait] | \
         recv-many [--max N] [--timeout MS] | attenuate TARGET [--rights LIST] [--uses N] \
         [--expires MS] [--badge N] | revoke TARGET | drop TARGET | monitor TARGET | mailbox [NAME] \
         | attest --nonce HEX [--data HEX] | spawn TEMPLATE [--name SUFFIX] [--grant NAME=HANDLE]... \
         [--env K=V]... [--memory SIZE] [--pids N] [--cpus CPUS] [--tmpfs SIZE] [--detach] [-- ARGS...] \
         | stop TARGET [--kill] | restrict TEMPLATE [--share N] [--memory SIZE] [--pids N] [--cpus CPUS] \
         [--tmpfs SIZE]"
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
        (Rights::SPAWN, "spawn"),
        (Rights::STOP, "stop"),
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
    /// Everything after `--`, as given.
    rest: Vec<String>,
}

impl Args {
    fn parse(raw: Vec<String>) -> Args {
        const BOOL: [&str; 5] = ["--nowait", "--reply", "--body", "--detach", "--kill"];
        let mut pos = Vec::new();
        let mut flags = Vec::new();
        let mut rest = Vec::new();
        let mut it = raw.into_iter();
        while let Some(a) = it.next() {
            if a == "--" {
                rest.extend(it.by_ref());
            } else if a.starts_with('-') && a.len() > 1 {
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
        Args { pos, flags, rest }
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
    target_with(k, t, Rights::SEND)
}

/// A handle number, or the handle `whoami` lists under that name with `right`, else a lookup.
fn target_with(k: &mut Client, t: &str, right: Rights) -> Result<Handle, ClientError> {
    if let Ok(h) = t.parse::<Handle>() {
        return Ok(h);
    }
    let me = k.whoami()?;
    if let Some((h, _, _)) = me
        .handles
        .iter()
        .find(|(_, d, r)| d == t && r.contains(right))
    {
        return Ok(*h);
    }
    Ok(k.lookup(t)?.0)
}

/// A template handle: a number, `template:NAME`, or `NAME`.
fn template(k: &mut Client, t: &str) -> Result<Handle, ClientError> {
    if t.parse::<Handle>().is_ok() || t.starts_with("template:") {
        return target_with(k, t, Rights::SPAWN);
    }
    target_with(k, &format!("template:{t}"), Rights::SPAWN)
}

/// Bytes, or a number with a binary unit: `512k`, `64M`, `1G`.
fn size(flag: &str, v: &str) -> u64 {
    let (digits, mult) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                _ => bad(flag, v, "a size such as 64M"),
            };
            (&v[..i], mult)
        }
        _ => (v, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .unwrap_or_else(|| bad(flag, v, "a size such as 64M"))
}

/// A number of cpus (`0.5`) in millionths of a cpu.
fn cpus(flag: &str, v: &str) -> u64 {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let ok = !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && frac.len() <= 6
        && frac.chars().all(|c| c.is_ascii_digit());
    let parsed = ok
        .then(|| {
            let w: u64 = whole.parse().ok()?;
            let f: u64 = format!("{frac:0<6}").parse().ok()?;
            w.checked_mul(1_000_000)?.checked_add(f)
        })
        .flatten()
        .filter(|&n| n > 0);
    parsed.unwrap_or_else(|| bad(flag, v, "a number of cpus such as 0.5"))
}

fn bad(flag: &str, v: &str, want: &str) -> ! {
    eprintln!("warren-msg: {flag} takes {want}, not {v:?}");
    std::process::exit(2)
}

/// `--memory`, `--pids`, `--cpus`, `--tmpfs`.
fn limits(a: &Args) -> Limits {
    Limits {
        memory: a.get("--memory").map(|v| size("--memory", v)),
        pids: a.num("--pids"),
        cpus: a.get("--cpus").map(|v| cpus("--cpus", v)),
        tmpfs_size: a.get("--tmpfs").map(|v| size("--tmpfs", v)),
    }
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
            // Without `--rights`, every right the handle has (the kernel intersects): a SPAWN
            // or STOP handle attenuated for its uses or expiry keeps SPAWN or STOP.
            let mut rights = Rights::KNOWN;
            if let Some(list) = a.get("--rights") {
                rights = Rights::NONE;
                for r in list.split(',').filter(|s| !s.is_empty()) {
                    rights = rights.union(match r {
                        "send" => Rights::SEND,
                        "grant" => Rights::GRANT,
                        "monitor" => Rights::MONITOR,
                        "spawn" => Rights::SPAWN,
                        "stop" => Rights::STOP,
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
        "spawn" => {
            let t = a.pos.first().unwrap_or_else(|| usage());
            let handle = template(&mut k, t)?;
            let mut names = Vec::new();
            for g in a.all("--grant") {
                let Some((name, h)) = g.split_once('=') else {
                    bad("--grant", g, "NAME=HANDLE")
                };
                names.push((name.to_owned(), target_with(&mut k, h, Rights::GRANT)?));
            }
            let mut env = Vec::new();
            for kv in a.all("--env") {
                let Some((name, value)) = kv.split_once('=') else {
                    bad("--env", kv, "NAME=VALUE")
                };
                env.push((name.to_owned(), value.to_owned()));
            }
            let s = k.spawn(Spawn {
                handle,
                suffix: a.get("--name").map(str::to_owned),
                args: a.rest.clone(),
                env,
                limits: limits(&a),
                detach: a.has("--detach"),
                names,
            })?;
            println!(
                "{{\"child\":{},\"mailbox\":{},\"control\":{},\"reference\":{}}}",
                json_str(&s.child),
                s.mailbox,
                s.control,
                s.reference
            );
        }
        "stop" => {
            let t = a.pos.first().unwrap_or_else(|| usage());
            let h = target_with(&mut k, t, Rights::STOP)?;
            k.stop(h, a.has("--kill"))?;
            println!("{{\"ok\":true}}");
        }
        "restrict" => {
            let t = a.pos.first().unwrap_or_else(|| usage());
            let h = template(&mut k, t)?;
            let (nh, r) = k.restrict(h, a.num("--share"), limits(&a))?;
            println!("{{\"handle\":{nh},\"rights\":{}}}", rights_str(r));
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
