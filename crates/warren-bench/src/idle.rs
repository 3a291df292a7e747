//! Memory per idle mailbox: how much the kernel daemon's resident memory grows per registered
//! environment and per additional mailbox, with nothing queued anywhere.
//!
//! Starting a thousand environments would measure the launcher, not the kernel, so this
//! registers environments the way `warren run` does, on the admin control socket (one
//! connection per environment, `{"op":"register","name":...}`, kept open: closing it ends the
//! environment) and keeps each environment's kernel connection that comes back with the answer.
//! It then greets each kernel connection and asks for the most extra mailboxes an environment
//! may own, all in one packet. The daemon's `VmRSS` is read before and after each step; Linux's
//! own objects (the sockets, their `epoll` entries) are reported apart, from the `Slab` line of
//! `/proc/meminfo`, which the rest of the machine also moves, so it is only indicative.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use warren_proto::{Frame, PacketBuilder, Request, Response};

use crate::record::Record;

/// Environments registered (and kept) before the first reading, so that the allocator's first
/// growth steps do not count.
const WARMUP: usize = 64;

/// One registered environment: its control connection (closing it ends the environment) and
/// its kernel connection.
pub struct Registered {
    /// The control connection, kept open for the environment's life.
    pub control: OwnedFd,
    /// The environment's end of its kernel connection.
    pub kernel: OwnedFd,
}

/// A line like `VmRSS:   1234 kB` of a `/proc` file, in bytes.
fn kb_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

fn rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    kb_field(&text, "VmRSS:").with_context(|| format!("no VmRSS in {path}"))
}

fn slab() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("read /proc/meminfo")?;
    kb_field(&text, "Slab:").context("no Slab in /proc/meminfo")
}

/// Registers `name` on the control socket at `socket`, as `warren run` does.
pub fn register(socket: &Path, name: &str) -> anyhow::Result<Registered> {
    register_with(
        socket,
        serde_json::json!({ "op": "register", "name": name }),
    )
}

/// Registers an environment with the control request `req` (`{"op":"register",...}`).
pub fn register_with(socket: &Path, req: serde_json::Value) -> anyhow::Result<Registered> {
    let name = req["name"].to_string();
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .context("create a control socket")?;
    let addr = SocketAddrUnix::new(socket).context("control socket path")?;
    rustix::net::connect(&fd, &addr)
        .with_context(|| format!("connect to the kernel at {}", socket.display()))?;
    rustix::net::send(&fd, req.to_string().as_bytes(), SendFlags::empty())
        .context("send the registration")?;
    let mut buf = vec![0u8; 64 * 1024];
    // The environment's end, and a copy of the kernel's end that `warren run` keeps for a
    // kernel restart (dropped here).
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        &fd,
        &mut [IoSliceMut::new(&mut buf)],
        &mut anc,
        RecvFlags::CMSG_CLOEXEC,
    )
    .context("read the kernel's answer")?;
    let answer: serde_json::Value =
        serde_json::from_slice(&buf[..msg.bytes]).context("the kernel's answer is not JSON")?;
    if answer["ok"] != serde_json::Value::Bool(true) {
        bail!("the kernel refused {name}: {}", answer["error"]);
    }
    let mut kernel = None;
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            for f in fds {
                kernel.get_or_insert(f);
            }
        }
    }
    Ok(Registered {
        control: fd,
        kernel: kernel.context("the kernel passed no connection")?,
    })
}

/// Sends `frames` in one packet on `fd` and reads answers until every one has come.
fn exchange(fd: &OwnedFd, frames: &[Frame<Request>], buf: &mut [u8]) -> anyhow::Result<()> {
    let mut packet = PacketBuilder::new();
    for f in frames {
        packet.push_request(f).context("encode a request")?;
    }
    rustix::net::send(fd, packet.as_bytes(), SendFlags::empty()).context("send requests")?;
    let mut answered = 0;
    while answered < frames.len() {
        let (n, _) =
            rustix::net::recv(fd, &mut *buf, RecvFlags::empty()).context("read answers")?;
        if n == 0 {
            bail!("the kernel closed the connection");
        }
        for f in warren_proto::decode_responses(&buf[..n]).context("decode answers")? {
            if let Response::Error { code, detail } = f.body {
                bail!("request {} refused: {code}: {detail}", f.id);
            }
            answered += 1;
        }
    }
    Ok(())
}

/// Greets `fd` and creates `extra` unnamed mailboxes on it.
fn add_mailboxes(fd: &OwnedFd, extra: usize, buf: &mut [u8]) -> anyhow::Result<()> {
    let hello = Frame {
        id: 1,
        body: Request::Hello {
            min_version: warren_proto::VERSION,
            max_version: warren_proto::VERSION,
        },
    };
    exchange(fd, &[hello], buf)?;
    let creates: Vec<Frame<Request>> = (0..extra)
        .map(|i| Frame {
            id: 2 + i as u32,
            body: Request::CreateMailbox { name: None },
        })
        .collect();
    exchange(fd, &creates, buf)
}

/// `idle-mailboxes`: register `count` environments, then give each `extra` more mailboxes,
/// reading the daemon's (`pid`) memory around each step.
pub fn measure(
    state_dir: &Path,
    pid: u32,
    count: usize,
    extra: usize,
    round: u32,
) -> anyhow::Result<Vec<Record>> {
    let socket = state_dir.join("kernel.sock");
    let tag = std::process::id();
    let mut envs = Vec::with_capacity(WARMUP + count);
    for i in 0..WARMUP {
        envs.push(register(&socket, &format!("idle-{tag}-w{i}"))?);
    }
    let settle = || std::thread::sleep(Duration::from_millis(200));
    settle();
    let (rss0, slab0) = (rss(pid)?, slab()?);
    for i in 0..count {
        envs.push(register(&socket, &format!("idle-{tag}-{i}"))?);
    }
    settle();
    let (rss1, slab1) = (rss(pid)?, slab()?);
    let mut buf = vec![0u8; warren_proto::MAX_PACKET];
    for e in &envs[WARMUP..] {
        add_mailboxes(&e.kernel, extra, &mut buf)?;
    }
    settle();
    let rss2 = rss(pid)?;
    drop(envs);

    let per_env = rss1.saturating_sub(rss0) as f64 / count as f64;
    let per_mailbox = rss2.saturating_sub(rss1) as f64 / (count * extra).max(1) as f64;
    let slab_per_env = slab1 as f64 / count as f64 - slab0 as f64 / count as f64;
    let mut env_rec = Record::new("warren", "memory", "per idle environment", None, round);
    env_rec.count = count as u64;
    env_rec.bytes_each = Some(per_env);
    env_rec.extra = Some(serde_json::json!({
        "daemon_rss_before": rss0, "daemon_rss_after": rss1,
        "linux_slab_bytes_per_env": slab_per_env,
    }));
    let mut mb_rec = Record::new("warren", "memory", "per extra idle mailbox", None, round);
    mb_rec.count = (count * extra) as u64;
    mb_rec.bytes_each = Some(per_mailbox);
    mb_rec.extra = Some(serde_json::json!({
        "daemon_rss_before": rss1, "daemon_rss_after": rss2,
    }));
    Ok(vec![env_rec, mb_rec])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_in_bytes() {
        let text = "Name:\twarren\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(kb_field(text, "VmRSS:"), Some(2048 * 1024));
        assert_eq!(kb_field(text, "VmHWM:"), None);
    }
}
