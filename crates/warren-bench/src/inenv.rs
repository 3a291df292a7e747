//! The Warren side: modes that run inside environments started by `warren run` and talk only
//! through the kernel, with the client library a real program would use.
//!
//! Round trips come in three styles, each a server and a client written as an application
//! would write them:
//! * `plain`: both sides may send to each other (`--may-send` both ways); the client sends and
//!   then receives, the server receives and then sends — two requests per side per round trip,
//!   each waiting for its answer;
//! * `pipelined`: the same messages, but each side puts its send and its next receive in one
//!   packet ([`Client::send_and_recv`]), the least a round trip can cost through the kernel;
//! * `call`: the client uses [`Client::call`] (a one-shot reply capability and a correlation
//!   id) and the server answers through the reply handle, which the kernel removes from its
//!   table once spent (docs/protocol.md §9).
//!
//! Throughput: a sender of 64-byte messages and a receiver that counts them and measures from
//! the first arrival to the last. Batched, they use the batch frames of protocol version 2
//! ([`Client::send_many`]: one frame of up to `batch` bodies, checked once and answered once;
//! [`Client::recv_many`]: up to `batch` messages per receive), or, with `--pipelined`, the
//! version-1 way ([`Client::send_batch`] / [`Client::recv_batch`]: one request frame per
//! message, pipelined in one packet); unbatched, one awaited [`Client::send`] / [`Client::recv`]
//! per message.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use warren_client::{Client, ClientError, ErrorCode, Handle, Message, Received};

use crate::record::{PAYLOAD, Record, pin};

/// The body that ends a server.
const STOP: &[u8] = b"stop";

/// How the two sides of a round trip use the client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Style {
    /// Send, then receive: two requests per side, each awaited.
    Plain,
    /// Send and receive in one packet per side.
    Pipelined,
    /// `call` with a one-shot reply capability; the server replies and drops it.
    Call,
}

impl Style {
    fn label(self) -> &'static str {
        match self {
            Style::Plain => "plain",
            Style::Pipelined => "pipelined",
            Style::Call => "call",
        }
    }
}

fn payload() -> Message {
    Message {
        body: PAYLOAD.to_vec(),
        ..Message::default()
    }
}

/// A handle for the mailbox named `name`, waiting (up to 20 s) for its environment to start.
fn find(k: &mut Client, name: &str) -> anyhow::Result<Handle> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match k.lookup(name) {
            Ok((h, _)) => return Ok(h),
            Err(e) if e.code() == Some(ErrorCode::NotFound) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).with_context(|| format!("look up {name}")),
        }
    }
}

/// Where the program's kernel connection comes from.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Host {
    /// Development and profiling only: instead of running inside `warren run`, register an
    /// environment of this name on the daemon's control socket (as `warren run` would) and use
    /// the kernel connection it hands back, from the host. Same kernel path, no launcher, no
    /// seccomp filter on this process's system calls.
    #[arg(long, value_name = "NAME")]
    pub register: Option<String>,
    /// With `--register`: the names it may send to.
    #[arg(long = "may-send", value_name = "NAME")]
    pub may_send: Vec<String>,
    /// With `--register`: its mailbox's capacity.
    #[arg(long)]
    pub mailbox_capacity: Option<usize>,
    /// With `--register`: the daemon's state directory.
    #[arg(long, default_value = "/run/warren")]
    pub state_dir: std::path::PathBuf,
}

/// A kernel connection, and the control connection that keeps a `--register`ed environment.
struct Conn {
    k: Client,
    _control: Option<std::os::fd::OwnedFd>,
}

fn connect(cpu: Option<usize>, host: &Host) -> anyhow::Result<Conn> {
    pin(cpu)?;
    let Some(name) = &host.register else {
        let k =
            Client::connect().context("connect to the kernel (run this inside `warren run`)")?;
        return Ok(Conn { k, _control: None });
    };
    let mut req = serde_json::json!({ "op": "register", "name": name, "may_send": host.may_send });
    if let Some(c) = host.mailbox_capacity {
        req["capacity"] = c.into();
    }
    let reg = crate::idle::register_with(&host.state_dir.join("kernel.sock"), req)?;
    let k = Client::from_fd(reg.kernel).context("greet the kernel")?;
    Ok(Conn {
        k,
        _control: Some(reg.control),
    })
}

/// `warren-server`: answer every message until one says `stop`. `peer` is the client's name
/// (needed by the `plain` and `pipelined` styles, which answer with an ordinary send).
pub fn server(style: Style, peer: &str, cpu: Option<usize>, host: &Host) -> anyhow::Result<()> {
    let mut conn = connect(cpu, host)?;
    let k = &mut conn.k;
    let mut to_peer: Option<Handle> = None;
    let mut next = k.recv(None).context("receive")?;
    loop {
        if next.body == STOP {
            return Ok(());
        }
        // The answer carries the request's correlation id: `call` waits for exactly that.
        let answer = Message {
            body: next.body,
            correlation: next.correlation,
            ..Message::default()
        };
        match style {
            Style::Call => {
                let reply = next.reply.context("a call without a reply handle")?;
                // The reply spends the one-shot handle, which leaves the table by itself.
                k.send(reply, answer).context("reply")?;
                next = k.recv(None).context("receive")?;
            }
            Style::Plain | Style::Pipelined => {
                let h = match to_peer {
                    Some(h) => h,
                    None => *to_peer.insert(find(k, peer)?),
                };
                if style == Style::Plain {
                    k.send(h, answer).context("answer")?;
                    next = k.recv(None).context("receive")?;
                } else {
                    let (sent, got) = k.send_and_recv(h, answer, None)?;
                    sent.context("answer")?;
                    next = got.context("receive")?;
                }
            }
        }
    }
}

/// `warren-client-pingpong`: time `iters` round trips to the server named `target`.
pub fn client_pingpong(
    style: Style,
    target: &str,
    iters: usize,
    warmup: usize,
    cpu: Option<usize>,
    round: u32,
    host: &Host,
) -> anyhow::Result<Record> {
    let mut conn = connect(cpu, host)?;
    let k = &mut conn.k;
    let h = find(k, target)?;
    let mut samples = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let t = Instant::now();
        let answer = match style {
            Style::Plain => {
                k.send(h, payload()).context("send")?;
                k.recv(None).context("receive")?
            }
            Style::Pipelined => {
                let (sent, got) = k.send_and_recv(h, payload(), None)?;
                sent.context("send")?;
                got.context("receive")?
            }
            Style::Call => k.call(h, payload(), None).context("call")?,
        };
        let dt = t.elapsed();
        if answer.body.len() != PAYLOAD.len() {
            bail!("the answer has {} bytes", answer.body.len());
        }
        if i >= warmup {
            samples.push(dt.as_nanos() as u64);
        }
    }
    k.send(
        h,
        Message {
            body: STOP.to_vec(),
            ..Message::default()
        },
    )
    .context("stop the server")?;
    // Registered from the host: the same kernel path without the environments' isolation.
    let variant = match host.register {
        Some(_) => format!("{}, host processes", style.label()),
        None => style.label().to_owned(),
    };
    Ok(Record::new("warren", "rtt", &variant, cpu, round).with_rtts(&mut samples))
}

/// The variant label of a Warren throughput run: one message per packet means one request
/// per message, each awaited (`send`, `recv`), unlike the floor's fire-and-forget packets.
fn warren_variant(batch: usize, pipelined: bool) -> String {
    if batch <= 1 {
        "1 per packet, each awaited".into()
    } else if pipelined {
        format!("{}, a request each", crate::floor::batch_variant(batch))
    } else {
        crate::floor::batch_variant(batch)
    }
}

/// `warren-client-send`: send `count` messages to `target`, `batch` per
/// [`Client::send_batch`] (1: one [`Client::send`] each). Prints the sender's own rate.
pub fn client_send(
    target: &str,
    count: u64,
    batch: usize,
    pipelined: bool,
    cpu: Option<usize>,
    round: u32,
    host: &Host,
) -> anyhow::Result<Record> {
    let mut conn = connect(cpu, host)?;
    let k = &mut conn.k;
    let h = find(k, target)?;
    let t = Instant::now();
    let cpu0 = crate::record::cpu_ns();
    let mut sent = 0u64;
    while sent < count {
        let n = (batch.max(1) as u64).min(count - sent) as usize;
        if batch <= 1 {
            k.send(h, payload()).context("send")?;
        } else if !pipelined {
            // One call for everything: the client keeps a window of batch frames of `batch`
            // bodies in flight, as a streaming sender would.
            let n = (count - sent) as usize;
            k.set_frame_bodies(batch);
            let accepted = k
                .send_many(h, std::iter::repeat_n(&PAYLOAD[..], n), true)
                .context("send batches")?;
            if accepted != n {
                bail!("{accepted} of {n} accepted");
            }
            sent += n as u64;
            continue;
        } else {
            let outcomes = k
                .send_batch((0..n).map(|_| (h, payload())), true)
                .context("send a batch")?;
            if let Some(e) = outcomes.into_iter().find_map(Result::err) {
                return Err(e).context("a send of the batch");
            }
        }
        sent += n as u64;
    }
    let variant = warren_variant(batch, pipelined);
    Ok(Record::new("warren", "send-side", &variant, cpu, round)
        .with_rate(sent, t.elapsed())
        .with_cpu_since(cpu0))
}

/// `warren-client-receive`: receive `count` messages, `batch` receives per packet
/// ([`Client::recv_batch`]; 1: one [`Client::recv`] each), timing the first arrival to the last.
pub fn client_receive(
    count: u64,
    batch: usize,
    recv_max: Option<usize>,
    pipelined: bool,
    cpu: Option<usize>,
    round: u32,
    host: &Host,
) -> anyhow::Result<Record> {
    let mut conn = connect(cpu, host)?;
    let k = &mut conn.k;
    let wait = Some(Duration::from_secs(30));
    let mut got = 0u64;
    let mut first: Option<(Instant, u64)> = None;
    let mut cpu0 = None;
    while got < count {
        let n = (batch.max(1) as u64).min(count - got) as usize;
        if batch <= 1 {
            k.recv(wait).context("receive")?;
            got += 1;
        } else if !pipelined {
            let n = recv_max.unwrap_or(batch).min((count - got) as usize);
            match k.recv_many(n, wait).context("receive a batch")? {
                Received::Batch(d) => {
                    for (_, body) in d.iter() {
                        if body.len() != PAYLOAD.len() {
                            bail!("a message of {} bytes", body.len());
                        }
                        got += 1;
                    }
                }
                Received::One(d) => bail!("a message that is not plain: {d:?}"),
            }
        } else {
            for d in k.recv_batch(n, wait).context("receive a batch")? {
                let d =
                    d.map_err(|e: ClientError| anyhow::anyhow!("a receive of the batch: {e}"))?;
                if d.body.len() != PAYLOAD.len() {
                    bail!("a message of {} bytes", d.body.len());
                }
                got += 1;
            }
        }
        if first.is_none() {
            first = Some((Instant::now(), got));
            cpu0 = crate::record::cpu_ns();
        }
    }
    let (t0, before) = first.context("nothing arrived")?;
    let variant = match recv_max {
        Some(m) if m != batch && !pipelined && batch > 1 => {
            format!("{batch} per frame, up to {m} per receive")
        }
        _ => warren_variant(batch, pipelined),
    };
    Ok(Record::new("warren", "throughput", &variant, cpu, round)
        .with_rate(got - before, t0.elapsed())
        .with_cpu_since(cpu0))
}
