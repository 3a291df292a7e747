//! The floor: what the operating system alone costs. Two processes over one `SOCK_SEQPACKET`
//! socketpair (`floor-*`), and the same with a plain relay process in the middle (`relay-*`):
//! a forwarder that moves whole packets between its two sockets without looking inside them,
//! which is the least a mediating kernel daemon can cost.
//!
//! The measuring process is the orchestrator: it creates the socketpairs and starts this same
//! binary for the other roles (`role-echo`, `role-relay`, `role-sender`), handing each its
//! sockets as standard input (and, for the relay, standard output), so that no descriptor
//! numbers need to be agreed. Every process pins itself when a CPU is given.
//!
//! With [`InEnv`], the relay's two endpoints (the echo and the measuring side, `role-pinger`)
//! run inside Warren environments instead, under the same isolation as Warren's endpoints
//! (namespaces, cgroup, seccomp, Landlock), their sockets handed over as standard input and
//! output through `warren run`; the relay stays a host process, like the kernel daemon.
//!
//! Messages are frames of a 4-byte little-endian length and a 64-byte payload; a batched packet
//! carries several frames back to back, as Warren's packets do, and the receiver walks every
//! frame's length (it counts frames, not packets).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::record::{PAYLOAD, Record, pin};

/// Bytes of one frame: the length prefix and the payload.
const FRAME: usize = 4 + PAYLOAD.len();
/// The receive buffer: larger than any packet the benchmarks send.
const RECV_BUF: usize = 1 << 20;

fn pair() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .context("socketpair")
}

/// How to start a role inside a Warren environment: `warren --state-dir D run --rootfs R --
/// /bin/warren-ipc-bench ROLE ...` (the benchmark's root holds this program there).
#[derive(Debug, Clone, clap::Args)]
pub struct InEnv {
    /// Run the endpoints inside Warren environments on this root (which must hold this program
    /// as /bin/warren-ipc-bench), started by the `warren` binary given with `--warren`.
    #[arg(long = "endpoints-in", value_name = "ROOTFS")]
    pub rootfs: Option<std::path::PathBuf>,
    /// The `warren` binary that starts the environments.
    #[arg(long, default_value = "warren")]
    pub warren: std::path::PathBuf,
    /// Its state directory.
    #[arg(long, default_value = "/run/warren")]
    pub state_dir: std::path::PathBuf,
}

/// Starts this binary as `role` with `stdin` (and optionally `stdout`) as its sockets, on the
/// host or, with `env`, inside an environment.
fn spawn_role(
    role: &str,
    args: &[String],
    cpu: Option<usize>,
    stdin: OwnedFd,
    stdout: Option<OwnedFd>,
) -> anyhow::Result<Child> {
    spawn_role_in(None, role, args, cpu, stdin, stdout.map(Stdio::from))
}

fn spawn_role_in(
    env: Option<&InEnv>,
    role: &str,
    args: &[String],
    cpu: Option<usize>,
    stdin: OwnedFd,
    stdout: Option<Stdio>,
) -> anyhow::Result<Child> {
    let mut c = match env.and_then(|e| e.rootfs.as_ref().map(|r| (e, r))) {
        Some((e, rootfs)) => {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut c = Command::new(&e.warren);
            c.arg("--state-dir").arg(&e.state_dir).arg("run");
            c.args(["--name", &format!("wb-{role}-{}-{n}", std::process::id())]);
            c.arg("--rootfs").arg(rootfs);
            c.args(["--", "/bin/warren-ipc-bench"]);
            c
        }
        None => Command::new(std::env::current_exe().context("find this program")?),
    };
    c.arg(role).args(args);
    if let Some(cpu) = cpu {
        c.args(["--cpu", &cpu.to_string()]);
    }
    c.stdin(Stdio::from(stdin));
    c.stdout(stdout.unwrap_or_else(Stdio::null));
    c.spawn()
        .with_context(|| format!("start the {role} process"))
}

fn reap(children: Vec<Child>) -> anyhow::Result<()> {
    for mut c in children {
        let st = c.wait().context("wait for a helper process")?;
        if !st.success() {
            bail!("a helper process failed: {st}");
        }
    }
    Ok(())
}

fn send_all(fd: BorrowedFd<'_>, bytes: &[u8]) -> anyhow::Result<()> {
    let n = rustix::net::send(fd, bytes, SendFlags::NOSIGNAL).context("send a packet")?;
    if n != bytes.len() {
        bail!("short send of a packet: {n} of {}", bytes.len());
    }
    Ok(())
}

/// Frames in `packet`, checking that their lengths tile it exactly.
fn count_frames(packet: &[u8]) -> anyhow::Result<u64> {
    let mut pos = 0;
    let mut frames = 0;
    while pos + 4 <= packet.len() {
        let len = u32::from_le_bytes(packet[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        pos += 4 + len;
        frames += 1;
    }
    if pos != packet.len() {
        bail!("a packet of {} bytes is not whole frames", packet.len());
    }
    Ok(frames)
}

/// A packet of `batch` frames.
fn batch_packet(batch: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(batch * FRAME);
    for _ in 0..batch {
        p.extend_from_slice(&(PAYLOAD.len() as u32).to_le_bytes());
        p.extend_from_slice(&PAYLOAD);
    }
    p
}

/// Round trips of one 64-byte frame: directly to an echoing process, or through a relay.
pub fn pingpong(
    via_relay: bool,
    iters: usize,
    warmup: usize,
    cpu: Option<usize>,
    round: u32,
) -> anyhow::Result<Record> {
    pin(cpu)?;
    let (ours, theirs) = pair()?;
    let mut children = Vec::new();
    if via_relay {
        let (relay_far, echo) = pair()?;
        children.push(spawn_role("role-echo", &[], cpu, echo, None)?);
        children.push(spawn_role("role-relay", &[], cpu, theirs, Some(relay_far))?);
    } else {
        children.push(spawn_role("role-echo", &[], cpu, theirs, None)?);
    }
    let mut samples = ping_loop(ours.as_fd(), iters, warmup)?;
    drop(ours);
    reap(children)?;
    let system = if via_relay { "relay" } else { "floor" };
    Ok(Record::new(system, "rtt", "1 per packet", cpu, round).with_rtts(&mut samples))
}

/// Round trips through a relay on the host between two endpoints inside Warren environments
/// (the measuring side is `role-pinger`, which prints its samples' record).
pub fn pingpong_in_env(
    env: &InEnv,
    iters: usize,
    warmup: usize,
    cpu: Option<usize>,
    round: u32,
) -> anyhow::Result<Record> {
    pin(cpu)?;
    let (pinger, relay_near) = pair()?;
    let (relay_far, echo) = pair()?;
    let children = vec![
        spawn_role_in(Some(env), "role-echo", &[], cpu, echo, None)?,
        spawn_role("role-relay", &[], cpu, relay_near, Some(relay_far))?,
    ];
    let args = [
        "--iters".to_owned(),
        iters.to_string(),
        "--warmup".to_owned(),
        warmup.to_string(),
    ];
    let measuring = spawn_role_in(
        Some(env),
        "role-pinger",
        &args,
        cpu,
        pinger,
        Some(Stdio::piped()),
    )?;
    let out = measuring
        .wait_with_output()
        .context("wait for the pinger")?;
    if !out.status.success() {
        bail!("the pinger failed: {}", out.status);
    }
    reap(children)?;
    let samples: Vec<u64> =
        serde_json::from_slice(&out.stdout).context("read the pinger's samples")?;
    let mut samples = samples;
    Ok(Record::new(
        "relay",
        "rtt",
        "1 per packet, endpoints in environments",
        cpu,
        round,
    )
    .with_rtts(&mut samples))
}

/// `iters` timed round trips of one 64-byte frame on `fd`, after `warmup` untimed ones.
fn ping_loop(fd: BorrowedFd<'_>, iters: usize, warmup: usize) -> anyhow::Result<Vec<u64>> {
    let ping = batch_packet(1);
    let mut buf = vec![0u8; RECV_BUF];
    let mut samples = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let t = Instant::now();
        send_all(fd, &ping)?;
        let (n, _) = rustix::net::recv(fd, &mut buf, RecvFlags::empty()).context("recv")?;
        let dt = t.elapsed();
        if n != ping.len() {
            bail!("the echo came back with {n} bytes");
        }
        if i >= warmup {
            samples.push(dt.as_nanos() as u64);
        }
    }
    Ok(samples)
}

/// `role-pinger`: time round trips on standard input; print the samples (ns) as JSON.
pub fn role_pinger(iters: usize, warmup: usize, cpu: Option<usize>) -> anyhow::Result<()> {
    pin(cpu)?;
    let samples = ping_loop(stdin_fd(), iters, warmup)?;
    println!("{}", serde_json::to_string(&samples)?);
    Ok(())
}

/// One-way throughput of `count` frames sent `batch` per packet, counted by this process.
pub fn throughput(
    via_relay: bool,
    count: u64,
    batch: usize,
    cpu: Option<usize>,
    round: u32,
) -> anyhow::Result<Record> {
    pin(cpu)?;
    let (ours, theirs) = pair()?;
    let args = vec![
        "--count".to_owned(),
        count.to_string(),
        "--batch".to_owned(),
        batch.to_string(),
    ];
    let mut children = Vec::new();
    if via_relay {
        let (relay_far, sender) = pair()?;
        children.push(spawn_role("role-sender", &args, cpu, sender, None)?);
        children.push(spawn_role("role-relay", &[], cpu, theirs, Some(relay_far))?);
    } else {
        children.push(spawn_role("role-sender", &args, cpu, theirs, None)?);
    }
    let mut buf = vec![0u8; RECV_BUF];
    let mut got = 0u64;
    let mut first: Option<(Instant, u64)> = None;
    while got < count {
        let (n, _) = rustix::net::recv(&ours, &mut buf, RecvFlags::empty()).context("recv")?;
        if n == 0 {
            bail!("the sender stopped after {got} of {count} messages");
        }
        got += count_frames(&buf[..n])?;
        first.get_or_insert((Instant::now(), got));
    }
    let (t0, before) = first.expect("at least one packet arrived");
    let elapsed = t0.elapsed();
    drop(ours);
    reap(children)?;
    let system = if via_relay { "relay" } else { "floor" };
    let variant = batch_variant(batch);
    Ok(Record::new(system, "throughput", &variant, cpu, round).with_rate(got - before, elapsed))
}

/// The variant label of a batch size.
pub fn batch_variant(batch: usize) -> String {
    if batch <= 1 {
        "1 per packet".into()
    } else {
        format!("{batch} per packet")
    }
}

fn stdin_fd() -> BorrowedFd<'static> {
    rustix::stdio::stdin()
}

fn stdout_fd() -> BorrowedFd<'static> {
    rustix::stdio::stdout()
}

/// `role-echo`: send every packet on standard input back until the peer closes.
pub fn role_echo(cpu: Option<usize>) -> anyhow::Result<()> {
    pin(cpu)?;
    let fd = stdin_fd();
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let (n, _) = rustix::net::recv(fd, &mut buf, RecvFlags::empty()).context("echo recv")?;
        if n == 0 {
            return Ok(());
        }
        if rustix::net::send(fd, &buf[..n], SendFlags::NOSIGNAL).is_err() {
            return Ok(());
        }
    }
}

/// `role-sender`: send `count` frames, `batch` per packet, on standard input.
pub fn role_sender(count: u64, batch: usize, cpu: Option<usize>) -> anyhow::Result<()> {
    pin(cpu)?;
    let fd = stdin_fd();
    let batch = batch.max(1);
    let packet = batch_packet(batch);
    let packets = count.div_ceil(batch as u64);
    for _ in 0..packets {
        if rustix::net::send(fd, &packet, SendFlags::NOSIGNAL).is_err() {
            // The receiver has what it wanted and closed.
            return Ok(());
        }
    }
    Ok(())
}

/// `role-relay`: forward whole packets between standard input and standard output, both
/// ways, without decoding them, until either side closes. One `epoll` set; each wake-up drains
/// every packet that is ready.
pub fn role_relay(cpu: Option<usize>) -> anyhow::Result<()> {
    pin(cpu)?;
    let sides = [stdin_fd(), stdout_fd()];
    let ep = epoll::create(CreateFlags::CLOEXEC).context("epoll")?;
    for (i, fd) in sides.iter().enumerate() {
        epoll::add(&ep, fd, EventData::new_u64(i as u64), EventFlags::IN).context("epoll add")?;
    }
    let mut buf = vec![0u8; RECV_BUF];
    let mut events: Vec<Event> = Vec::with_capacity(4);
    loop {
        events.clear();
        match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("epoll wait"),
        }
        for ev in &events {
            let from = ev.data.u64() as usize;
            let (src, dst) = (sides[from], sides[1 - from]);
            loop {
                let n = match rustix::net::recv(src, &mut buf, RecvFlags::DONTWAIT) {
                    Ok((n, _)) => n,
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(_) => 0,
                };
                if n == 0 {
                    return Ok(());
                }
                // A blocking send: a full destination holds the relay, as it would any
                // forwarder without its own queue.
                if rustix::net::send(dst, &buf[..n], SendFlags::NOSIGNAL).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_packets_are_whole_frames() {
        let p = batch_packet(64);
        assert_eq!(p.len(), 64 * FRAME);
        assert_eq!(count_frames(&p).unwrap(), 64);
        assert!(count_frames(&p[..p.len() - 1]).is_err());
    }

    #[test]
    fn batch_labels() {
        assert_eq!(batch_variant(1), "1 per packet");
        assert_eq!(batch_variant(64), "64 per packet");
    }
}
