//! `warren-attacker`: the hostile tenant of issue 14, run inside an environment by the attack
//! tests (`crates/warren/tests/reactor.rs`).
//!
//! It speaks the wire protocol (`docs/protocol.md`) on its inherited descriptor (`WARREN_FD`,
//! default 3) with well-formed frames only, the way a tenant trying to hurt the kernel or its
//! neighbours would: everything pipelined in packets of thousands of frames, as fast as the
//! socket takes them. One mode per attack (the first argument):
//!
//! * `full TARGET`: 16-byte Sends (no `wait`) to TARGET's mailbox, which is full; a second
//!   thread reads and discards every answer (`full`/`quota` errors).
//! * `lookups`: Lookups of a name that does not exist (each one a denial the kernel audits);
//!   answers read and discarded.
//! * `deaf`: the same Lookups, and it never reads an answer.
//! * `whoami`: it first creates as many named mailboxes as the kernel lets it (so that every
//!   Identity answer is large), then sends Whoami requests and never reads: amplification.
//! * `pin`: it creates as many mailboxes as it may and fills them with the largest legal
//!   messages (no `wait`) until the kernel refuses, then adds waiting sends of the same size to
//!   each until refused; it prints `pinned BYTES queued Q waiting W refused R` and holds them.
//!
//! * `spin`: no kernel traffic at all: two threads spin on the CPU, as much as the
//!   environment's `--cpus` lets them (the reference: what the attacker's own CPU use costs
//!   the neighbours, whatever the kernel does).
//!
//! Every mode prints `attacking` on standard output once the attack runs (after its set-up),
//! then goes on until it is killed (SIGTERM through `warren run`).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::net::{RecvFlags, SendFlags};
use warren_proto::{
    ErrorCode, Frame, MAX_BODY, MAX_PACKET, Message, PacketBuilder, Request, Response,
};

/// Frames per attack packet.
const FRAMES: usize = 4096;
/// The name looked up in the denial floods.
const UNKNOWN: &str = "no-such-environment-anywhere";

/// The kernel connection, driven by hand.
struct Conn {
    fd: OwnedFd,
    next_id: u32,
    buf: Vec<u8>,
}

impl Conn {
    fn connect() -> anyhow::Result<Conn> {
        let n: i32 = match std::env::var("WARREN_FD") {
            Ok(v) => v
                .trim()
                .parse()
                .context("WARREN_FD is not a descriptor number")?,
            Err(_) => 3,
        };
        let fd = warren_sys::take_inherited_socket(n)
            .with_context(|| format!("take the kernel connection on descriptor {n}"))?;
        let mut c = Conn {
            fd,
            next_id: 0,
            buf: vec![0u8; MAX_PACKET],
        };
        let got = c.call(Request::Hello {
            min_version: 1,
            max_version: warren_proto::VERSION,
        })?;
        if !matches!(got, Response::Welcome { .. }) {
            bail!("hello answered {got:?}");
        }
        Ok(c)
    }

    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// One request, waiting for its answer.
    fn call(&mut self, body: Request) -> anyhow::Result<Response> {
        let id = self.id();
        let mut b = PacketBuilder::new();
        b.push_request(&Frame { id, body })?;
        send_packet(&self.fd, b.as_bytes())?;
        loop {
            let (n, _) =
                rustix::net::recv(&self.fd, &mut self.buf, RecvFlags::empty()).context("recv")?;
            if n == 0 {
                bail!("the kernel closed the connection");
            }
            for f in warren_proto::response_frames(&self.buf[..n]) {
                let f = f.context("decode an answer")?;
                if f.id == id {
                    return Ok(f.body);
                }
            }
        }
    }

    fn handle(&mut self, name: &str) -> anyhow::Result<u32> {
        match self.call(Request::Lookup { name: name.into() })? {
            Response::Handle { handle, .. } => Ok(handle),
            other => bail!("lookup {name}: {other:?}"),
        }
    }

    /// Create mailboxes (named `m<i>-` padded to the longest label when `named`) until the
    /// kernel refuses; their handles.
    fn mailboxes(&mut self, named: bool) -> anyhow::Result<Vec<u32>> {
        let mut got = Vec::new();
        for i in 0.. {
            let name = named.then(|| format!("m{i:02}-{}", "x".repeat(59)));
            match self.call(Request::CreateMailbox { name })? {
                Response::Handle { handle, .. } => got.push(handle),
                Response::Error { .. } if !got.is_empty() => break,
                other => bail!("create-mailbox: {other:?}"),
            }
        }
        Ok(got)
    }
}

/// Send one packet, retrying while the host is short of socket memory (`ENOBUFS`, which a
/// packet of 1 MiB may meet on a busy host) or a signal interrupts.
fn send_packet(fd: &OwnedFd, packet: &[u8]) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        match rustix::net::send(fd, packet, SendFlags::empty()) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::NOBUFS) if tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("send a packet of {} bytes", packet.len()));
            }
        }
    }
}

fn send(handle: u32, body: Vec<u8>, wait: bool) -> Request {
    Request::Send {
        handle,
        message: Message {
            body,
            ..Default::default()
        },
        wait,
    }
}

/// Packets of [`FRAMES`] copies of `make()`, sent as fast as the socket takes them, for ever.
fn flood(fd: &OwnedFd, make: impl Fn() -> Request) -> anyhow::Result<()> {
    let mut b = PacketBuilder::new();
    let mut id = 1_000_000u32;
    loop {
        b.clear();
        for _ in 0..FRAMES {
            id = id.wrapping_add(1);
            if b.push_request(&Frame { id, body: make() }).is_err() {
                break;
            }
        }
        match rustix::net::send(fd, b.as_bytes(), SendFlags::empty()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e).context("send"),
        }
    }
}

/// Read and discard every answer, on a thread of its own.
fn drain(fd: OwnedFd) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; MAX_PACKET];
        while let Ok((n, _)) = rustix::net::recv(&fd, &mut buf, RecvFlags::empty()) {
            if n == 0 {
                return;
            }
        }
    });
}

fn started() {
    println!("attacking");
    let _ = std::io::stdout().flush();
}

/// Fill `boxes` with the largest legal messages until the kernel refuses, then send one
/// waiting send of the same size to each (not awaited: a send that waits is answered only when
/// it enters); print what the kernel took and hold it.
fn pin(c: &mut Conn, boxes: &[u32]) -> anyhow::Result<()> {
    // A message's charge: its body and 64 bytes of bookkeeping (docs/protocol.md §11.1).
    let charge = (MAX_BODY + 64) as u64;
    let (mut queued, mut refused) = (0u64, 0u64);
    for &h in boxes {
        loop {
            match c.call(send(h, vec![0x55; MAX_BODY], false))? {
                Response::Ok => queued += 1,
                Response::Error { code, .. } => {
                    if code == ErrorCode::Quota || code == ErrorCode::Unavailable {
                        refused += 1;
                    }
                    break;
                }
                other => bail!("send: {other:?}"),
            }
        }
    }
    let first = c.next_id + 1;
    for &h in boxes {
        let id = c.id();
        let mut b = PacketBuilder::new();
        b.push_request(&Frame {
            id,
            body: send(h, vec![0x55; MAX_BODY], true),
        })?;
        send_packet(&c.fd, b.as_bytes())?;
    }
    // Refusals come at once; what is still unanswered after a second waits.
    let mut answered = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let mut pfd = [rustix::event::PollFd::new(
            &c.fd,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        if rustix::event::poll(&mut pfd, Some(&ts))? == 0 {
            break;
        }
        let (n, _) = rustix::net::recv(&c.fd, &mut c.buf, RecvFlags::empty())?;
        if n == 0 {
            bail!("the kernel closed the connection");
        }
        for f in warren_proto::response_frames(&c.buf[..n]) {
            let f = f?;
            if f.id >= first {
                answered += 1;
                match f.body {
                    Response::Error { code, .. }
                        if code == ErrorCode::Quota || code == ErrorCode::Unavailable =>
                    {
                        refused += 1
                    }
                    Response::Ok => queued += 1,
                    _ => {}
                }
            }
        }
    }
    let waiting = boxes.len() as u64 - answered;
    println!(
        "pinned {} queued {queued} waiting {waiting} refused {refused}",
        (queued + waiting) * charge
    );
    started();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Use the CPU for ever.
fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut c = Conn::connect()?;
    match args.first().map(String::as_str) {
        Some("full") => {
            let target = args.get(1).context("full needs the TARGET's name")?;
            let h = c.handle(target)?;
            drain(c.fd.try_clone()?);
            started();
            flood(&c.fd, || send(h, vec![7u8; 16], false))
        }
        Some("lookups") => {
            drain(c.fd.try_clone()?);
            started();
            flood(&c.fd, || Request::Lookup {
                name: UNKNOWN.into(),
            })
        }
        Some("deaf") => {
            started();
            flood(&c.fd, || Request::Lookup {
                name: UNKNOWN.into(),
            })
        }
        Some("whoami") => {
            let n = c.mailboxes(true)?.len();
            eprintln!("warren-attacker: {n} named mailboxes");
            started();
            flood(&c.fd, || Request::Whoami)
        }
        Some("pin") => {
            let boxes = c.mailboxes(false)?;
            pin(&mut c, &boxes)
        }
        Some("spin") => {
            std::thread::spawn(spin);
            started();
            spin()
        }
        _ => bail!("usage: warren-attacker full TARGET | lookups | deaf | whoami | pin | spin"),
    }
}
