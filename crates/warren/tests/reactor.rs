//! The daemon's reactor under attack and at scale: fair to neighbours, bounded per connection,
//! faithful to the handshake of `docs/protocol.md` §6, quotes off the loop, and control messages
//! without a size ceiling.
//!
//! Each test starts a kernel of its own on a private state directory. The attackers are tenants
//! inside real environments: `warren run --binary warren-attacker` under that kernel, with a CPU
//! limit as a tenant would have (`crates/warren-bench/src/attacker.rs`), speaking the wire
//! protocol with well-formed frames only — a flood of sends to a full mailbox, a flood of denied
//! lookups, a reader that never reads, Whoami amplification, and the largest legal messages
//! pinned in every mailbox it may own. The neighbours whose round trips are measured are
//! connections registered on the control socket the way `warren run` registers an environment
//! (the kernel hands out the environment's end of its connection), driven from the test so that
//! their timing has no launcher in it. Each attack measures the daemon's resident memory growth
//! and a neighbour pair's p99 round trip (a message to the other and one back) before and during
//! the attack (`under_attack` says how).

mod common;
use common::*;

use std::io::BufRead;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::net::{RecvFlags, SendFlags};
use warren_proto::{ErrorCode, Frame, Message, PacketBuilder, Request, Response};

/// A kernel of this test's own, on a private state directory, stopped and cleaned up on drop.
struct Kernel {
    child: Child,
    state: PathBuf,
    stopped: bool,
}

/// The tests of this file run one at a time: the attacks measure a neighbour's latency, which
/// another test starting hundreds of environments would disturb.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A daemon on `state`, returned once it says it is ready.
fn spawn_daemon(state: &Path, args: &[&str], envs: &[(&str, &str)]) -> Child {
    // A session of its own, as a service has a cgroup of its own: with autogroup scheduling
    // (`/proc/sys/kernel/sched_autogroup_enabled`), a daemon in the test's session would share
    // one CPU share with the test's neighbour threads and compete with them, which no
    // deployment does. `setsid` does not fork here (the test's child leads no process group),
    // so the daemon keeps the pid the test knows.
    let mut c = Command::new("setsid");
    c.args(["setpriv", "--pdeathsig", "KILL", "--"])
        .arg(env!("CARGO_BIN_EXE_warren"))
        .arg("daemon")
        .args(args)
        .env("WARREN_STATE_DIR", state)
        .env(
            "WARREN_MSG_BIN",
            workspace_bin("warren-client", "warren-msg"),
        )
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("kernel ready") => break,
            Some(Ok(_)) => continue,
            _ => panic!("the kernel did not come up"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

impl Kernel {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Kernel {
        let state = PathBuf::from(format!("/run/{}", unique("warren-reactor")));
        let _ = std::fs::remove_dir_all(&state);
        let child = spawn_daemon(&state, args, envs);
        Kernel {
            child,
            state,
            stopped: false,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's resident memory in bytes.
    fn rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = s
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb * 1024
    }

    /// The daemon's CPU time so far (user + system), in clock ticks.
    fn cpu(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let rest = s.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    fn warren(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_warren"));
        c.env("WARREN_STATE_DIR", &self.state).stdin(Stdio::null());
        c
    }

    /// Register an environment named `name` as a launcher would; returns its connection.
    fn register(&self, name: &str, may_send: &[String], capacity: Option<usize>) -> Conn {
        let req = serde_json::json!({
            "op": "register", "name": name, "may_send": may_send,
            "may_discover": may_send, "capacity": capacity,
        });
        let (control, answer, mut fds) = control_call(&self.state, &req);
        assert_eq!(answer["ok"], true, "{answer}");
        assert!(!fds.is_empty(), "no descriptor came with the registration");
        let fd = fds.remove(0);
        Conn {
            fd,
            _control: control,
            _kept: fds,
            next_id: 1,
        }
    }
}

impl Kernel {
    /// Re-attach `c` (registered as `name` with the previous kernel) as its launcher would:
    /// register again with `readopt`, passing the kept copy of the kernel's end.
    fn reattach(&self, name: &str, c: &mut Conn) {
        let kept = c._kept.remove(0);
        let req = serde_json::json!({
            "op": "register", "name": name, "may_send": [], "may_discover": [],
            "capacity": 16, "readopt": true,
        });
        let (control, reply, _) = control_call_with(&self.state, &req, Some(kept.as_fd()));
        assert_eq!(reply["ok"], true, "{reply}");
        c._kept.push(control);
        c._kept.push(kept);
    }

    /// Stop the kernel and start a new one on the same state directory (what `systemctl
    /// restart` does): environments stay, and their launchers re-attach them.
    fn restart(&mut self) {
        self.stop();
        self.child = spawn_daemon(&self.state, &[], &[]);
        self.stopped = false;
    }

    /// Stop the kernel (SIGTERM: it writes its audit aggregates and answers what it read),
    /// keeping its state directory until drop.
    fn stop(&mut self) {
        if !self.stopped {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
            self.stopped = true;
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// One request on the control socket in its tagged framing (`crate::control`); returns the
/// connection (which keeps a registration alive), the answer and the descriptors passed.
fn control_call(
    state: &Path,
    req: &serde_json::Value,
) -> (OwnedFd, serde_json::Value, Vec<OwnedFd>) {
    control_call_with(state, req, None)
}

/// [`control_call`], passing `fd` with the request (`SCM_RIGHTS`), as a launcher passes the
/// kept end of its environment's connection when it re-attaches.
fn control_call_with(
    state: &Path,
    req: &serde_json::Value,
    pass: Option<std::os::fd::BorrowedFd<'_>>,
) -> (OwnedFd, serde_json::Value, Vec<OwnedFd>) {
    use rustix::net::{
        AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, SocketAddrUnix, SocketFlags,
        SocketType,
    };
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::connect(
        &fd,
        &SocketAddrUnix::new(state.join("kernel.sock")).unwrap(),
    )
    .unwrap();
    let doc = serde_json::to_vec(req).unwrap();
    // docs/cli.md: packets of at most 64 KiB, each tagged `+` (more follows) or `.` (the last);
    // descriptors ride on the first.
    let pieces: Vec<&[u8]> = doc.chunks(65535).collect();
    for (i, piece) in pieces[..pieces.len() - 1].iter().enumerate() {
        let mut packet = vec![b'+'];
        packet.extend_from_slice(piece);
        assert!(i > 0 || pass.is_none(), "descriptors with a long request");
        rustix::net::send(&fd, &packet, SendFlags::empty()).unwrap();
    }
    let mut packet = vec![b'.'];
    packet.extend_from_slice(pieces[pieces.len() - 1]);
    match pass {
        None => {
            rustix::net::send(&fd, &packet, SendFlags::empty()).unwrap();
        }
        Some(p) => {
            use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut anc = SendAncillaryBuffer::new(&mut space);
            let fds = [p];
            assert!(anc.push(SendAncillaryMessage::ScmRights(&fds)));
            rustix::net::sendmsg(
                &fd,
                &[std::io::IoSlice::new(&packet)],
                &mut anc,
                SendFlags::empty(),
            )
            .unwrap();
        }
    }
    let mut buf = vec![0u8; 65536];
    let mut whole = Vec::new();
    let mut fds = Vec::new();
    loop {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let m = rustix::net::recvmsg(
            &fd,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        )
        .unwrap();
        for a in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(f) = a {
                fds.extend(f);
            }
        }
        assert!(m.bytes > 0, "the kernel closed the control connection");
        whole.extend_from_slice(&buf[1..m.bytes]);
        if buf[0] == b'.' {
            break;
        }
        assert_eq!(buf[0], b'+', "a control packet with an unknown tag");
    }
    (fd, serde_json::from_slice(&whole).unwrap(), fds)
}

/// An environment's kernel connection, driven by hand.
struct Conn {
    fd: OwnedFd,
    _control: OwnedFd,
    _kept: Vec<OwnedFd>,
    next_id: u32,
}

impl Conn {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn send(&self, frames: &[Frame<Request>]) {
        let mut b = PacketBuilder::new();
        for f in frames {
            b.push_request(f).unwrap();
        }
        rustix::net::send(&self.fd, b.as_bytes(), SendFlags::empty()).unwrap();
    }

    /// One packet's frames; `None` when the kernel closed the connection; panics after `wait`.
    fn recv(&self, wait: Duration) -> Option<Vec<Frame<Response>>> {
        let mut fds = [rustix::event::PollFd::new(
            &self.fd,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::time::Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: wait.subsec_nanos() as i64,
        };
        let n = rustix::event::poll(&mut fds, Some(&ts)).unwrap();
        assert!(n > 0, "no answer within {wait:?}");
        let mut buf = vec![0u8; warren_proto::MAX_PACKET];
        let (n, _) = rustix::net::recv(&self.fd, &mut buf, RecvFlags::empty()).unwrap();
        if n == 0 {
            return None;
        }
        Some(
            warren_proto::response_frames(&buf[..n])
                .map(|f| f.unwrap())
                .collect(),
        )
    }

    fn hello(&mut self) {
        let id = self.id();
        self.send(&[Frame {
            id,
            body: Request::Hello {
                min_version: 1,
                max_version: 2,
            },
        }]);
        let got = self.recv(Duration::from_secs(10)).unwrap();
        assert!(matches!(got[0].body, Response::Welcome { .. }), "{got:?}");
    }

    /// The handle for `name` in this environment's table.
    fn handle(&mut self, name: &str) -> u32 {
        let id = self.id();
        self.send(&[Frame {
            id,
            body: Request::Lookup { name: name.into() },
        }]);
        let got = self.recv(Duration::from_secs(10)).unwrap();
        match &got[0].body {
            Response::Handle { handle, .. } => *handle,
            other => panic!("lookup {name}: {other:?}"),
        }
    }

    /// Read until a Delivery arrives.
    fn until_delivery(&self) {
        loop {
            let got = self
                .recv(Duration::from_secs(30))
                .expect("connection closed");
            if got.iter().any(|f| matches!(f.body, Response::Delivery(_))) {
                return;
            }
        }
    }
}

fn send_frame(id: u32, handle: u32, body: &[u8]) -> Frame<Request> {
    Frame {
        id,
        body: Request::Send {
            handle,
            message: Message {
                body: body.to_vec(),
                ..Default::default()
            },
            wait: false,
        },
    }
}

fn recv_frame(id: u32) -> Frame<Request> {
    Frame {
        id,
        body: Request::Recv {
            mailbox: None,
            filter: Default::default(),
            timeout_ms: None,
        },
    }
}

/// A pair of neighbours that bounce a message between them.
struct Pair {
    a: Conn,
    b: Conn,
    to_b: u32,
    to_a: u32,
}

impl Pair {
    fn new(k: &Kernel) -> Pair {
        let (na, nb) = (unique("pa"), unique("pb"));
        let mut a = k.register(&na, std::slice::from_ref(&nb), None);
        let mut b = k.register(&nb, std::slice::from_ref(&na), None);
        a.hello();
        b.hello();
        let to_b = a.handle(&nb);
        let to_a = b.handle(&na);
        let id = b.id();
        b.send(&[recv_frame(id)]);
        Pair { a, b, to_b, to_a }
    }

    /// One round trip: a message from A to B, and B's answer back to A.
    fn round_trip(&mut self) -> Duration {
        let t = Instant::now();
        let (i1, i2) = (self.a.id(), self.a.id());
        self.a
            .send(&[send_frame(i1, self.to_b, b"ping"), recv_frame(i2)]);
        self.b.until_delivery();
        let (j1, j2) = (self.b.id(), self.b.id());
        self.b
            .send(&[send_frame(j1, self.to_a, b"pong"), recv_frame(j2)]);
        self.a.until_delivery();
        t.elapsed()
    }

    /// The p99 of `n` round trips, sampling the daemon's memory in `peak`.
    fn p99(&mut self, n: usize, k: &Kernel, peak: &mut u64) -> Duration {
        let mut v: Vec<Duration> = (0..n)
            .map(|i| {
                if i % 16 == 0 {
                    *peak = (*peak).max(k.rss());
                }
                self.round_trip()
            })
            .collect();
        v.sort();
        v[(n * 99 / 100).min(n - 1)]
    }
}

/// The attack program, run inside the attackers' environments (`crates/warren-bench/src/attacker.rs`).
fn attacker_bin() -> &'static Path {
    workspace_bin("warren-bench", "warren-attacker")
}

/// The CPU limit of the attackers' environments, as a tenant gets from its manifest (`cpus`).
/// The daemon's fairness does not come from it (the budgets of `daemon/conn.rs` do): without
/// it, the attacker's own spinning takes one of the test machine's two cores, which slows the
/// neighbours' processes themselves whatever the daemon does. With it, the attacker also runs
/// on one CPU only (its cpuset), so the other is never taken by its threads.
const ATTACKER_CPUS: &str = "0.5";

/// A tenant attacking from inside an environment of its own: `warren run --binary
/// warren-attacker` under the test's kernel, stopped (SIGTERM through its launcher) on drop.
struct Attacker {
    child: Child,
    /// What it printed before its attack began.
    said: Vec<String>,
}

impl Attacker {
    /// Launch `warren-attacker ARGS` in an environment named `name` (with `flags` for `warren
    /// run`), and wait until its attack runs.
    fn start(k: &Kernel, name: &str, flags: &[&str], args: &[&str]) -> Attacker {
        let bin = attacker_bin();
        let mut child = k
            .warren()
            .env(
                "WARREN_MSG_BIN",
                workspace_bin("warren-client", "warren-msg"),
            )
            .args([
                "run",
                "--init",
                "--name",
                name,
                "--cpus",
                ATTACKER_CPUS,
                "--binary",
            ])
            .arg(bin)
            .args(flags)
            .arg("--")
            .arg(bin)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let mut said = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) if l == "attacking" => break,
                Ok(l) => said.push(l),
                Err(e) => {
                    let _ = child.kill();
                    panic!("the attacker {name} did not start its attack ({e}): {said:?}");
                }
            }
        }
        Attacker { child, said }
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // The launcher forwards the first SIGTERM and kills the workload on the second.
        for _ in 0..2 {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Attacker {
    /// The attacker's processes (everything below its launcher, which is left alone).
    fn workload(&self) -> Vec<u32> {
        let mut parent_of: Vec<(u32, u32)> = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parent_of.push((pid, ppid));
            }
        }
        let mut found = vec![self.child.id()];
        let mut i = 0;
        while i < found.len() {
            let p = found[i];
            found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
            i += 1;
        }
        found.remove(0);
        found
    }

    fn signal(&self, sig: &str) {
        let pids = self.workload();
        assert!(!pids.is_empty(), "the attacker has no processes");
        let mut c = Command::new("kill");
        c.arg(sig);
        for p in pids {
            c.arg(p.to_string());
        }
        let _ = c.status();
    }

    /// Stop the attack for a while (SIGSTOP to its processes).
    fn pause(&self) {
        self.signal("-STOP");
    }

    fn resume(&self) {
        self.signal("-CONT");
    }
}

/// Wait (at most 5 s) until the daemon has used no CPU for 100 ms: the requests a paused
/// attacker left in its socket are served.
fn settle(k: &Kernel) {
    let t = Instant::now();
    let mut last = k.cpu();
    while t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        let now = k.cpu();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Round trips per measuring window, before and during an attack.
const WINDOW: usize = 400;
/// Rounds of (a window without the attack, a window with it) at most. What the kernel does to
/// the neighbours is in every round; what the machine's scheduler does comes and goes (on two
/// CPUs a tenant's own CPU share alone took single rounds to 5–18×: see
/// `a_tenant_spinning_on_its_cpu_share_costs_the_kernel_nothing`), so a bound is held when one
/// round of eight is within it.
const ROUNDS: usize = 8;

/// Start an attack (`start` returns it running; it ends when dropped) and measure the pair
/// with and without it. Returns the p99 before and during (of the round whose ratio is the
/// lowest) and the daemon's memory growth (the peak during the attack − before it started).
///
/// The method: a warm-up of 50 round trips, the daemon's memory, then the attack, given
/// 700 ms to reach its steady state (queues full, quotas reached). Then rounds of two windows
/// of [`WINDOW`] round trips each: one with the attacker's processes stopped (SIGSTOP) and the
/// daemon idle again (what it had read of the attack served), one with the attacker running
/// again (after 300 ms). The machine is shared with other builds and tests, whose load drifts
/// by 10× within seconds; pairing each window under attack with a window of the same length
/// just before it compares the two under the same load. Up to [`ROUNDS`] rounds; the round
/// with the lowest ratio is kept, and the test stops at the first within the bound.
fn under_attack(
    k: &Kernel,
    pair: &mut Pair,
    start: impl FnOnce() -> Attacker,
) -> (Duration, Duration, u64) {
    pair.p99(50, k, &mut 0);
    let mut base_rss = 0;
    pair.p99(50, k, &mut base_rss);
    let base_rss = k.rss().max(base_rss);
    let attack = start();
    std::thread::sleep(Duration::from_millis(700));
    let mut peak = 0;
    let mut best = (Duration::ZERO, Duration::MAX);
    let ratio = |(b, d): (Duration, Duration)| d.as_secs_f64() / b.as_secs_f64();
    for _ in 0..ROUNDS {
        attack.pause();
        settle(k);
        let before = pair.p99(WINDOW, k, &mut 0);
        attack.resume();
        std::thread::sleep(Duration::from_millis(300));
        let (cpu0, t0) = (k.cpu(), Instant::now());
        let during = pair.p99(WINDOW, k, &mut peak);
        eprintln!(
            "round: p99 {before:?} without the attack, {during:?} with it ({:.1}x); daemon CPU \
             {} ticks in {:?}",
            ratio((before, during)),
            k.cpu() - cpu0,
            t0.elapsed()
        );
        if ratio((before, during)) < ratio(best) {
            best = (before, during);
        }
        if best.1 <= fair_bound(best.0) {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    peak = peak.max(k.rss());
    drop(attack);
    let growth = peak.saturating_sub(base_rss);
    let (before, during) = best;
    eprintln!(
        "p99 before {before:?}, during {during:?} ({:.1}x); daemon RSS {} MiB -> peak {} MiB \
         (+{} KiB)",
        ratio(best),
        base_rss >> 20,
        peak >> 20,
        growth >> 10
    );
    (before, during, growth)
}

/// The default quota on unsent answers (`--max-unsent`).
const MAX_UNSENT: u64 = 4 << 20;
/// What the daemon may grow besides an attacker's quota: allocator slack, one packet being
/// read (1 MiB) and decoded, the attacker's queued messages in a small mailbox, and the
/// attacker's environment's own bookkeeping (its registration, launch record and cgroup).
const SLACK: u64 = 12 << 20;

/// What a neighbour's p99 during an attack may be: 5× its p99 before (issue 14's goal), with
/// no floor. The daemon meets it on a sub-millisecond baseline because a connection with input
/// left after its turn waits until every connection with fresh input had its own, and its turn
/// ends as soon as another connection waits (`daemon/conn.rs`). The ratio of every round is
/// printed (`--nocapture`).
fn fair_bound(before: Duration) -> Duration {
    before * 5
}

fn assert_fair(before: Duration, during: Duration) {
    let bound = fair_bound(before);
    assert!(
        during <= bound,
        "the neighbours' p99 went from {before:?} to {during:?} (bound {bound:?})"
    );
}

/// The attacker's environment name, unique to this process (cgroup leaves are host-wide).
fn attacker_name(what: &str) -> String {
    unique(&format!("atk-{what}"))
}

#[test]
fn sends_to_a_full_mailbox_as_fast_as_possible() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let mut pair = Pair::new(&k);
    let victim = unique("victim");
    let _v = k.register(&victim, &[], Some(16));
    let name = attacker_name("full");
    let (before, during, growth) = under_attack(&k, &mut pair, || {
        Attacker::start(&k, &name, &["--may-send", &victim], &["full", &victim])
    });
    assert!(growth <= MAX_UNSENT + SLACK, "daemon grew {growth} bytes");
    assert_fair(before, during);
}

/// The reference for the attacks: a tenant that only spins on its CPU share (two threads, no
/// kernel traffic). The kernel does nothing for it (its CPU time stays flat while the pair is
/// idle; the pair's own round trips are the positive control). What its own CPU use costs the
/// neighbours through the machine's scheduler is in every flood's figures too: before its cpu
/// limit also confined it to one CPU (`warren-cgroup`'s cpuset), its two threads burnt their
/// share on both CPUs of a 2-CPU machine at once, and the neighbours' p99 went up 3–18× in rounds
/// of this method; now it must stay within the same bound as under the floods.
#[test]
fn a_tenant_spinning_on_its_cpu_share_costs_the_kernel_nothing() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let mut pair = Pair::new(&k);
    let name = attacker_name("spin");
    let spinner = Attacker::start(&k, &name, &[], &["spin"]);
    std::thread::sleep(Duration::from_millis(300));
    let idle = k.cpu();
    std::thread::sleep(Duration::from_secs(1));
    let idle = k.cpu() - idle;
    let busy = k.cpu();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        pair.round_trip();
    }
    let busy = k.cpu() - busy;
    drop(spinner);
    eprintln!("daemon CPU in 1 s: {idle} ticks with the spinner alone, {busy} with the pair");
    assert!(
        idle <= 1,
        "the kernel worked {idle} ticks for a tenant that only spins"
    );
    assert!(
        busy > idle,
        "positive control: the pair's round trips cost the kernel nothing"
    );
    let name = attacker_name("spin2");
    let (before, during, _) =
        under_attack(&k, &mut pair, || Attacker::start(&k, &name, &[], &["spin"]));
    eprintln!(
        "reference: a CPU-only tenant took the neighbours' p99 from {before:?} to {during:?}"
    );
    assert_fair(before, during);
}

#[test]
fn pipelined_lookups_of_unknown_names_keep_the_audit_log_bounded() {
    let _serial = one_at_a_time();
    let max = 256 << 10;
    let mut k = Kernel::start(&["--audit-max-size", "256K", "--audit-keep", "2"], &[]);
    let mut pair = Pair::new(&k);
    let name = attacker_name("lookups");
    let t = Instant::now();
    let (before, during, growth) = under_attack(&k, &mut pair, || {
        Attacker::start(&k, &name, &[], &["lookups"])
    });
    let attack_secs = t.elapsed().as_secs();
    assert!(growth <= MAX_UNSENT + SLACK, "daemon grew {growth} bytes");
    assert_fair(before, during);
    // The kernel writes the aggregates of windows still open when it stops.
    drop(pair);
    k.stop();
    // The audit files: at most keep + 1, each at most the limit; the current one says what
    // rotation deleted.
    let mut total = 0;
    let mut files = 0;
    for e in std::fs::read_dir(&k.state).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("audit.jsonl") {
            files += 1;
            let len = e.metadata().unwrap().len();
            assert!(len <= max, "{:?} holds {len} bytes", e.file_name());
            total += len;
        }
    }
    assert!(files <= 3, "{files} audit files");
    assert!(total <= 3 * max, "the audit log holds {total} bytes");
    let current = std::fs::read_to_string(k.state.join("audit.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(current.lines().next().unwrap()).unwrap();
    if files > 1 {
        assert_eq!(first["code"], "rotate", "{first}");
    }
    // The kernel aggregates one environment's repeated denials (warren-kernel's audit.rs): at
    // most 10 records and one aggregate per 10 s window reach the log, however fast it floods
    // (rotation, for many environments at once, is tested in daemon/audit.rs). Positive
    // control: the attacker's denials are there, and the aggregate counts more than were
    // written one by one.
    let mine: Vec<serde_json::Value> = current
        .lines()
        .filter(|l| l.contains(&format!("\"env\":\"{name}\"")))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines = mine.len() as u64;
    assert!(lines > 0, "no record of {name}'s denials");
    assert!(
        lines <= 11 * (attack_secs / 10 + 1),
        "{lines} records of {name} in {attack_secs} s"
    );
    let counted: u64 = mine
        .iter()
        .filter_map(|r| r["count"].as_u64().or(r["repeated"]["count"].as_u64()))
        .sum();
    assert!(
        counted > 1000,
        "the aggregates count {counted} denials of {name}: {mine:?}"
    );
    eprintln!("{name}: {lines} audit records, aggregates counting {counted} denials");
}

#[test]
fn a_reader_that_never_reads_is_held_to_its_quota() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let mut pair = Pair::new(&k);
    let name = attacker_name("deaf");
    let (before, during, growth) =
        under_attack(&k, &mut pair, || Attacker::start(&k, &name, &[], &["deaf"]));
    assert!(growth <= MAX_UNSENT + SLACK, "daemon grew {growth} bytes");
    assert_fair(before, during);
}

#[test]
fn whoami_amplification_is_held_to_the_quota() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let mut pair = Pair::new(&k);
    let name = attacker_name("whoami");
    let (before, during, growth) = under_attack(&k, &mut pair, || {
        Attacker::start(&k, &name, &[], &["whoami"])
    });
    assert!(growth <= MAX_UNSENT + SLACK, "daemon grew {growth} bytes");
    assert_fair(before, during);
}

#[test]
fn pinned_bytes_through_a_real_daemon_stay_within_the_byte_quota() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let mut pair = Pair::new(&k);
    let one = warren_proto::MAX_BODY as u64 + 64;
    let mut run = |what: &str, bytes: &str| {
        let name = attacker_name(what);
        let mut said = Vec::new();
        let (before, during, growth) = under_attack(&k, &mut pair, || {
            // Mailboxes of one message each: every one of its 64 mailboxes fills with one
            // message, and a waiting send to each would pin more if the quota did not hold.
            let a = Attacker::start(
                &k,
                &name,
                &["--mailbox-capacity", "1", "--mailbox-bytes", bytes],
                &["pin"],
            );
            said = a.said.clone();
            a
        });
        eprintln!("{name} ({bytes}): {said:?}");
        // `pinned BYTES queued Q waiting W refused R`
        let words: Vec<&str> = said.last().expect("no report").split(' ').collect();
        assert_eq!(words[0], "pinned", "{said:?}");
        let pinned: u64 = words[1].parse().unwrap();
        let refused: u64 = words[7].parse().unwrap();
        assert!(refused > 0, "the kernel refused nothing: {said:?}");
        (before, during, growth, pinned)
    };
    let quota: u64 = 16 << 20;
    let (before, during, growth, pinned) = run("pin", "16M");
    assert!(
        pinned <= quota + one,
        "the kernel took {pinned} bytes of a {quota}-byte quota"
    );
    assert!(pinned >= quota - one, "only {pinned} bytes pinned");
    assert!(
        growth <= quota + one + SLACK,
        "daemon grew {growth} bytes with {pinned} pinned"
    );
    assert_fair(before, during);
    // Positive control: with a quota of 64 MiB the same attack pins about four times as much
    // (61 one-message mailboxes), and the daemon grows with it: the bound above is the quota's.
    let (_, _, big, pinned_big) = run("pin64", "64M");
    assert!(
        pinned_big >= 3 * quota,
        "{pinned_big} bytes pinned under 64 MiB"
    );
    assert!(
        big >= growth + quota,
        "with 64 MiB of quota the daemon grew {big} bytes, with 16 MiB {growth}"
    );
}

/// Per-sender order (Erlang's guarantee, `docs/protocol.md`) through every path of the fair
/// reactor: 4,000 sends pipelined in 8 packets of 500 frames, with a turn budget of 64 frames
/// (`--turn-frames`), so the sender's input is served a piece at a time — a packet's tail over
/// many turns, the connection heavy (served after fresh input, off the epoll input set) — while
/// a neighbour pair's round trips keep arriving (each one ends the sender's turn early). The
/// receiver must get them in send order, every one.
#[test]
fn a_heavy_senders_messages_arrive_in_send_order() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&["--turn-frames", "64"], &[]);
    let mut pair = Pair::new(&k);
    let (sn, rn) = (unique("osend"), unique("orecv"));
    let mut sink = k.register(&rn, &[], Some(4096));
    let mut sender = k.register(&sn, std::slice::from_ref(&rn), None);
    sink.hello();
    sender.hello();
    let to_sink = sender.handle(&rn);
    const PACKETS: u32 = 8;
    const PER: u32 = 500;
    let mut id = 1000;
    for p in 0..PACKETS {
        let frames: Vec<_> = (0..PER)
            .map(|i| {
                id += 1;
                send_frame(id, to_sink, &(p * PER + i).to_le_bytes())
            })
            .collect();
        sender.send(&frames);
    }
    // The neighbours' round trips arrive while the sender's input is being worked through.
    for _ in 0..50 {
        pair.round_trip();
    }
    let mut oks = 0;
    while oks < PACKETS * PER {
        for f in sender.recv(Duration::from_secs(30)).expect("closed") {
            assert!(
                matches!(f.body, Response::Ok),
                "send {}: {:?}",
                f.id,
                f.body
            );
            oks += 1;
        }
    }
    let mut got: Vec<u32> = Vec::new();
    while got.len() < (PACKETS * PER) as usize {
        let frames: Vec<_> = (0..PER).map(|_| recv_frame(sink.id())).collect();
        sink.send(&frames);
        let mut answered = 0;
        while answered < PER {
            for f in sink.recv(Duration::from_secs(30)).expect("closed") {
                answered += 1;
                if let Response::Delivery(d) = f.body {
                    got.push(u32::from_le_bytes(d.body[..4].try_into().unwrap()));
                }
            }
        }
    }
    let want: Vec<u32> = (0..PACKETS * PER).collect();
    let first_wrong = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(first_wrong, None, "out of order at {first_wrong:?}");
    assert_eq!(got.len(), want.len());
}

#[test]
fn round_trips_continue_during_a_slow_quote() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[("WARREN_TEST_QUOTE_DELAY_MS", "2000")]);
    let mut pair = Pair::new(&k);
    let mut asker = k.register(&unique("quote"), &[], None);
    asker.hello();
    let t = Instant::now();
    let id = asker.id();
    asker.send(&[Frame {
        id,
        body: Request::Attest {
            nonce: b"nonce".to_vec(),
            data: Vec::new(),
        },
    }]);
    // While the worker quotes (at least 2 s), the loop serves everyone.
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while t.elapsed() < Duration::from_millis(1500) {
        worst = worst.max(pair.round_trip());
        n += 1;
    }
    assert!(n > 50, "only {n} round trips in 1.5 s");
    assert!(
        worst < Duration::from_millis(500),
        "a round trip took {worst:?}"
    );
    let got = asker.recv(Duration::from_secs(30)).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(2000));
    assert_eq!(got[0].id, id);
    assert!(
        matches!(
            got[0].body,
            Response::Quote { .. }
                | Response::Error {
                    code: ErrorCode::AttestFailed,
                    ..
                }
        ),
        "{:?}",
        got[0].body
    );
}

/// Quotes are made one at a time by the worker, at most 64 waiting: one tenant pipelining
/// Attests must not take every place and shut its neighbours out. Each environment may have
/// at most 4 quotes waiting; its further ones are answered `attest-failed` at once, and a
/// neighbour's quote is still taken. (Before, the tenant's 70 Attests took all 64 places and the
/// neighbour's was refused `64 quotes are already waiting`.)
#[test]
fn one_tenants_quotes_cannot_shut_out_a_neighbours() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[("WARREN_TEST_QUOTE_DELAY_MS", "300")]);
    let attest = |id: u32| Frame {
        id,
        body: Request::Attest {
            nonce: b"nonce".to_vec(),
            data: Vec::new(),
        },
    };
    let refused_at_once = |f: &Frame<Response>| {
        matches!(&f.body, Response::Error { code: ErrorCode::AttestFailed, detail }
            if detail.contains("already waiting"))
    };
    let mut tenant = k.register(&unique("quotes"), &[], None);
    tenant.hello();
    let frames: Vec<_> = (1000..1070).map(attest).collect();
    tenant.send(&frames);
    let mut refused = 0;
    while refused < 66 {
        for f in tenant.recv(Duration::from_secs(30)).expect("closed") {
            assert!(refused_at_once(&f), "{f:?}");
            refused += 1;
        }
    }
    assert_eq!(refused, 66, "4 of the tenant's 70 quotes wait");
    let mut neighbour = k.register(&unique("nquote"), &[], None);
    neighbour.hello();
    neighbour.send(&[attest(7)]);
    let got = neighbour.recv(Duration::from_secs(30)).expect("closed");
    assert_eq!(got[0].id, 7);
    assert!(
        !refused_at_once(&got[0]),
        "the neighbour was shut out: {got:?}"
    );
    // The tenant's 4 were answered by then (one at a time, before the neighbour's).
    let mut answered = 0;
    while answered < 4 {
        for f in tenant.recv(Duration::from_secs(30)).expect("closed") {
            assert!(!refused_at_once(&f), "{f:?}");
            answered += 1;
        }
    }
}

// ----- the handshake of docs/protocol.md §6 -----

fn hello(id: u32, min: u16, max: u16) -> Frame<Request> {
    Frame {
        id,
        body: Request::Hello {
            min_version: min,
            max_version: max,
        },
    }
}

fn whoami(id: u32) -> Frame<Request> {
    Frame {
        id,
        body: Request::Whoami,
    }
}

fn is_error(f: &Frame<Response>, id: u32, want: ErrorCode) -> bool {
    f.id == id && matches!(&f.body, Response::Error { code, .. } if *code == want)
}

/// Everything until the kernel closes the connection.
fn until_closed(c: &Conn) -> Vec<Frame<Response>> {
    let mut all = Vec::new();
    while let Some(mut f) = c.recv(Duration::from_secs(10)) {
        all.append(&mut f);
    }
    all
}

/// A packet of `n` Whoami frames (9 bytes each), and with `bad` a last frame of an unknown
/// operation.
fn whoami_packet(n: u32, bad: bool) -> Vec<u8> {
    let mut b = PacketBuilder::new();
    for i in 0..n {
        b.push_request(&whoami(100 + i)).unwrap();
    }
    let mut v = b.as_bytes().to_vec();
    if bad {
        // Length 5, operation 0x7f (none), id 1.
        v.extend_from_slice(&[5, 0, 0, 0, 0x7f, 1, 0, 0, 0]);
    }
    v
}

#[test]
fn a_large_packet_is_checked_whole_before_any_frame_is_acted_on() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    // Over 16 KiB: checked in slices of the connection's turns (daemon/conn.rs).
    let n = 4000;
    assert!(whoami_packet(n, false).len() > 32 * 1024);
    // Positive control: every frame of the valid packet is answered, in order.
    let mut ok = k.register(&unique("bigok"), &[], None);
    ok.hello();
    rustix::net::send(&ok.fd, &whoami_packet(n, false), SendFlags::empty()).unwrap();
    let mut ids = Vec::new();
    while ids.len() < n as usize {
        for f in ok.recv(Duration::from_secs(30)).expect("closed") {
            assert!(matches!(f.body, Response::Identity(_)), "{f:?}");
            ids.push(f.id);
        }
    }
    assert_eq!(ids, (100..100 + n).collect::<Vec<_>>());
    // The same packet with a malformed last frame: closed, and not one frame answered.
    let mut bad = k.register(&unique("bigbad"), &[], None);
    bad.hello();
    rustix::net::send(&bad.fd, &whoami_packet(n, true), SendFlags::empty()).unwrap();
    let got = until_closed(&bad);
    assert!(
        got.is_empty(),
        "{} frames of a malformed packet answered",
        got.len()
    );
}

/// A packet of exactly `MAX_PACKET` bytes: two Sends to the sender's own mailbox (handle 1).
fn full_packet() -> Vec<u8> {
    let first = send_frame(200, 1, &vec![b'a'; warren_proto::MAX_BODY]);
    let mut b = PacketBuilder::new();
    b.push_request(&first).unwrap();
    b.push_request(&send_frame(201, 1, b"")).unwrap();
    let rest = warren_proto::MAX_PACKET - b.as_bytes().len();
    let mut b = PacketBuilder::new();
    b.push_request(&first).unwrap();
    b.push_request(&send_frame(201, 1, &vec![b'b'; rest]))
        .unwrap();
    let v = b.as_bytes().to_vec();
    assert_eq!(v.len(), warren_proto::MAX_PACKET);
    v
}

/// §1: a packet larger than `MAX_PACKET` is a protocol violation: the connection is closed and
/// none of its frames is acted on, even when its first `MAX_PACKET` bytes are valid frames.
/// (The kernel reads with `MSG_TRUNC` and must use the packet's real length, not what fitted in
/// its buffer.) Positive control: the same packet one byte shorter is answered frame by frame.
#[test]
fn a_packet_over_max_packet_closes_the_connection_unanswered() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let mut ok = k.register(&unique("maxok"), &[], Some(16));
    ok.hello();
    rustix::net::send(&ok.fd, &full_packet(), SendFlags::empty()).unwrap();
    let mut ids = Vec::new();
    while ids.len() < 2 {
        for f in ok.recv(Duration::from_secs(30)).expect("closed") {
            assert!(matches!(f.body, Response::Ok), "{f:?}");
            ids.push(f.id);
        }
    }
    assert_eq!(ids, [200, 201]);
    let mut over = k.register(&unique("maxover"), &[], Some(16));
    over.hello();
    let mut packet = full_packet();
    packet.push(0);
    rustix::net::send(&over.fd, &packet, SendFlags::empty()).unwrap();
    let got = until_closed(&over);
    assert!(
        got.is_empty(),
        "a packet of MAX_PACKET + 1 bytes was acted on: {got:?}"
    );
}

/// A SendBatch of one body to handle 1 (a version-2 operation).
fn batch_frame(id: u32) -> Frame<Request> {
    Frame {
        id,
        body: Request::SendBatch {
            handle: 1,
            wait: false,
            quiet: false,
            bodies: [b"x".as_slice()].into_iter().collect(),
        },
    }
}

/// One answer frame for request `id`.
fn answer(c: &Conn, id: u32) -> Frame<Response> {
    let got = c.recv(Duration::from_secs(10)).expect("closed");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].id, id, "{got:?}");
    got.into_iter().next().unwrap()
}

/// Protocol §6: a connection re-attached after a kernel restart speaks the version it agreed
/// with the previous kernel, so the new kernel never sends a version-1 client anything
/// version 1 lacks. Positive control: a version-3 connection re-attached the same way keeps
/// version 3 (its batch is accepted), so the refusal is the version's, not the re-attach's.
#[test]
fn a_connection_re_attached_after_a_restart_keeps_its_version() {
    let _serial = one_at_a_time();
    let mut k = Kernel::start(&[], &[]);
    let mut conns = Vec::new();
    for (tag, max) in [("v1", 1u16), ("v3", 3)] {
        let name = unique(tag);
        let c = k.register(&name, &[], Some(16));
        c.send(&[hello(1, 1, max)]);
        assert!(matches!(answer(&c, 1).body, Response::Welcome { version, .. } if version == max));
        conns.push((name, max, c));
    }
    let batch_ok = |c: &Conn, id: u32| {
        c.send(&[batch_frame(id)]);
        let body = answer(c, id).body;
        match body {
            Response::Accepted { .. } | Response::Ok => true,
            Response::Error {
                code: ErrorCode::BadRequest,
                ..
            } => false,
            other => panic!("{other:?}"),
        }
    };
    let (_, _, v1) = &conns[0];
    assert!(!batch_ok(v1, 2), "version 1 accepted a batch");

    k.restart();
    for (name, max, c) in &mut conns {
        k.reattach(name, c);
        assert_eq!(batch_ok(c, 3), *max >= 2, "version {max} after the restart");
        // A later Hello within the agreed version is welcomed with it (§6).
        c.send(&[hello(4, 1, *max)]);
        assert!(matches!(answer(c, 4).body, Response::Welcome { version, .. } if version == *max));
        // New handles are numbered from 2^30 on: a number from before the restart (its
        // default mailbox aside) finds nothing.
        c.send(&[Frame {
            id: 7,
            body: Request::CreateMailbox {
                name: Some("after".into()),
            },
        }]);
        match answer(c, 7).body {
            Response::Handle { handle, .. } => assert!(handle >= 1 << 30, "{handle}"),
            other => panic!("{other:?}"),
        }
    }
    // A connection that had not said Hello before the restart still owes one: its first
    // frame is the handshake, and a version-1 Hello agrees version 1.
    let name = unique("nohello");
    let mut c = k.register(&name, &[], Some(16));
    k.restart();
    k.reattach(&name, &mut c);
    c.send(&[hello(5, 1, 1)]);
    assert!(matches!(
        answer(&c, 5).body,
        Response::Welcome { version: 1, .. }
    ));
    assert!(!batch_ok(&c, 6), "version 1 accepted a batch");
}

#[test]
fn a_first_frame_that_is_not_a_hello_is_answered_bad_request_then_closed() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let c = k.register(&unique("nohello"), &[], None);
    c.send(&[whoami(7)]);
    let got = until_closed(&c);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(is_error(&got[0], 7, ErrorCode::BadRequest), "{got:?}");
}

#[test]
fn a_failed_hello_is_answered_version_then_closed() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let c = k.register(&unique("badver"), &[], None);
    // Frames after it in the same packet are not served either.
    c.send(&[hello(1, 9, 12), whoami(2)]);
    let got = until_closed(&c);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(is_error(&got[0], 1, ErrorCode::Version), "{got:?}");
    // Positive control: a good Hello on another connection is welcomed.
    let mut ok = k.register(&unique("goodver"), &[], None);
    ok.hello();
}

#[test]
fn frames_after_the_hello_in_the_first_packet_are_answered_bad_request() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let c = k.register(&unique("packed"), &[], None);
    c.send(&[hello(1, 1, 2), whoami(2), whoami(3)]);
    let mut got = Vec::new();
    while got.len() < 3 {
        got.append(&mut c.recv(Duration::from_secs(10)).unwrap());
    }
    assert!(
        matches!(got[0].body, Response::Welcome { version: 2, .. }),
        "{got:?}"
    );
    assert!(is_error(&got[1], 2, ErrorCode::BadRequest), "{got:?}");
    assert!(is_error(&got[2], 3, ErrorCode::BadRequest), "{got:?}");
    // The connection stays, and the same request in a later packet is served.
    c.send(&[whoami(4)]);
    let got = c.recv(Duration::from_secs(10)).unwrap();
    assert!(matches!(got[0].body, Response::Identity(_)), "{got:?}");
}

#[test]
fn a_later_hello_keeps_the_agreed_version() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let mut c = k.register(&unique("twice"), &[], None);
    c.hello();
    // Another process's session offering the agreed version 2: welcomed with it.
    c.send(&[hello(4, 1, 2)]);
    let got = c.recv(Duration::from_secs(10)).unwrap();
    assert!(
        matches!(got[0].body, Response::Welcome { version: 2, .. }),
        "{got:?}"
    );
    // One offering only version 1: refused, and the version stays 2.
    c.send(&[hello(5, 1, 1)]);
    let got = c.recv(Duration::from_secs(10)).unwrap();
    assert!(is_error(&got[0], 5, ErrorCode::Version), "{got:?}");
    // Still version 2 (a RecvBatch, version 2 only, is not refused), still open.
    c.send(&[Frame {
        id: 6,
        body: Request::RecvBatch {
            mailbox: None,
            max: 1,
            timeout_ms: Some(0),
        },
    }]);
    let got = c.recv(Duration::from_secs(10)).unwrap();
    assert!(!is_error(&got[0], 6, ErrorCode::BadRequest), "{got:?}");
    assert_eq!(got[0].id, 6);
}

// ----- control messages without a size ceiling -----

#[test]
fn daemon_flags_out_of_range_are_refused_by_name() {
    let _serial = one_at_a_time();
    for (flag, value) in [
        ("--max-unsent", "0"),
        ("--max-unsent", "2G"),
        ("--turn-frames", "0"),
        ("--audit-keep", "1000"),
    ] {
        let state = PathBuf::from(format!("/run/{}", unique("warren-reactor-flags")));
        let o = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["daemon", flag, value])
            .env("WARREN_STATE_DIR", &state)
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0));
        assert!(stderr(&o).contains(flag), "{flag} {value}: {}", stderr(&o));
        assert!(!state.exists(), "{flag} {value} left {}", state.display());
    }
}

fn ps_names(k: &Kernel) -> Vec<String> {
    let o = k.warren().args(["ps", "-a", "--json"]).output().unwrap();
    assert_code(&o, 0);
    stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

/// How many environments the CI test applies (the benchmark, bench/scale.sh, applies 1,000
/// and more): over the 200 that broke the 64 KiB control packets, with 40 of them carrying a
/// 100 KB argument, so the manifest and the answers are over 4 MB.
const CI_SCALE: usize = 300;

#[test]
fn a_large_manifest_applies_reapplies_unchanged_and_empties() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let root = busybox_root();
    let mut text = String::new();
    let big = "x".repeat(100_000);
    // Cgroup leaves are named after environments host-wide: names of this process's own, so a
    // concurrent run of the suite elsewhere on the host cannot meet them.
    let pid = std::process::id();
    let broken_name = format!("broken-{pid}");
    for i in 0..CI_SCALE {
        let arg = if i < 40 { big.as_str() } else { "-" };
        text.push_str(&format!(
            "[space.s{pid}-{i}]\nimage = \"{}\"\ncommand = [\"/bin/sh\", \"-c\", \"exec sleep 1000\", \"{arg}\"]\n\n",
            root.display()
        ));
    }
    // One that cannot start: reported `failed: REASON`, not `created`.
    text.push_str(&format!(
        "[space.{broken_name}]\nimage = \"{}\"\ncommand = [\"/bin/no-such-program\"]\n",
        root.display()
    ));
    let file = dir.path().join("spaces.toml");
    std::fs::write(&file, &text).unwrap();
    assert!(text.len() > 4_000_000, "{} bytes", text.len());

    let o = k
        .warren()
        .args(["apply", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), CI_SCALE + 1, "{}", stderr(&o));
    let broken = rows
        .iter()
        .find(|r| r["name"] == broken_name.as_str())
        .unwrap();
    let result = broken["result"].as_str().unwrap();
    assert!(
        result.starts_with("failed: ") && result.contains("no-such-program"),
        "{broken}"
    );
    let odd: Vec<String> = rows
        .iter()
        .filter(|r| r["name"] != broken_name.as_str() && r["result"] != "created")
        .map(|r| format!("{}: {}", r["name"], r["result"]))
        .collect();
    assert!(odd.is_empty(), "not created: {odd:?}");
    assert_eq!(o.status.code(), Some(1), "a failed start makes apply fail");
    assert_eq!(ps_names(&k).len(), CI_SCALE + 1);

    // Again: nothing to do for the running ones; the broken one, `failed`, is tried again and
    // fails again (docs/cli.md: a failed start is not converged).
    let o = k.warren().arg("apply").arg(&file).output().unwrap();
    let out = stdout(&o);
    assert!(
        out.contains(&format!("0 changed, 1 failed, {CI_SCALE} unchanged")),
        "{out}\n{}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(ps_names(&k).len(), CI_SCALE + 1);

    // Empty: everything stops.
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let o = k
        .warren()
        .args(["apply", "--timeout", "2"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert!(ps_names(&k).is_empty());
}

/// docs/manifest.md, Bounds: a request written by hand to the control socket is held to the
/// manifest's counts: `may_send` (1,023 names) and `may_discover` (1,024) in a `register`, the
/// environments of an `apply` (1,000), each refused naming the count and the limit; at the
/// limits, accepted.
#[test]
fn hand_written_control_requests_are_held_to_the_manifest_counts() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let names = |n: usize| (0..n).map(|i| format!("e{i}")).collect::<Vec<_>>();
    let register = |name: &str, may_send: usize, may_discover: usize| {
        let req = serde_json::json!({
            "op": "register", "name": name, "may_send": names(may_send),
            "may_discover": names(may_discover),
        });
        control_call(&k.state, &req)
    };
    let (_c, a, _) = register(&unique("sends"), 1024, 0);
    assert_eq!(
        a["error"], "may_send lists 1024 names; at most 1023 are allowed",
        "{a}"
    );
    let (_c, a, _) = register(&unique("finds"), 0, 1025);
    assert_eq!(
        a["error"], "may_discover lists 1025 names; at most 1024 are allowed",
        "{a}"
    );
    let (_c, a, _) = register(&unique("atlimit"), 1023, 1024);
    assert_eq!(a["ok"], true, "{a}");

    let space = serde_json::json!({
        "image": {"binary": "/bin/true"}, "command": ["/bin/true"], "env": {},
        "memory": null, "pids": null, "cpus": null, "tmpfs_size": null, "restart": "no",
        "max_restarts": 5, "may_send": [], "may_discover": [], "mailbox_capacity": null,
        "allow_missing": [],
    });
    let apply = |n: usize| {
        let spaces: serde_json::Map<String, serde_json::Value> =
            names(n).into_iter().map(|e| (e, space.clone())).collect();
        let req = serde_json::json!({
            "op": "apply", "file": "by-hand", "check": true, "spaces": spaces,
        });
        control_call(&k.state, &req).1
    };
    let a = apply(1001);
    assert_eq!(
        a["error"], "too many environments: 1001 declared, at most 1000 are allowed",
        "{a}"
    );
    let a = apply(1000);
    assert_eq!(a["ok"], true, "{a}");
}

#[test]
fn registration_passes_both_descriptors_through_the_tagged_framing() {
    let _serial = one_at_a_time();
    let k = Kernel::start(&[], &[]);
    let mut c = k.register(&unique("reg"), &[], None);
    assert_eq!(c._kept.len(), 1, "the kept copy of the kernel's end");
    c.hello();
    // And `warren run` with a kernel still gets its descriptor 3.
    let name = unique("run");
    let o = k
        .warren()
        .args(["run", "--name", &name, "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/dev/warren/warren-msg", "whoami"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert!(stdout(&o).contains(&name), "{}", stdout(&o));
    let _ = c.fd.as_fd();
}
