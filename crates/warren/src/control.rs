//! The admin control socket between `warren` commands and the kernel daemon: its path, its
//! framing, and the client side used by `warren run` to register an environment and receive its
//! mailbox descriptor.
//!
//! **Framing.** The socket is `SOCK_SEQPACKET`. One message (a JSON request or answer) travels
//! as one or more packets of at most [`MAX_PACKET`] bytes: each packet starts with one tag
//! byte, [`MORE`] (`+`, more packets of this message follow) or [`LAST`] (`.`, the message ends
//! here), followed by a piece of the JSON text. Descriptors passed with a message
//! (`SCM_RIGHTS`) ride on its first packet. A request may be at most [`MAX_REQUEST`] bytes; an
//! answer has no limit but the client's [`MAX_ANSWER`]. A packet whose first byte is `{` is a
//! whole message in the older one-packet framing: the daemon still accepts it (a launcher from
//! before an upgrade re-attaching) and answers it in one packet.
//!
//! Only root (or the daemon's configured group) may connect: the socket is mode 0660 and the
//! daemon checks each peer's credentials (`SO_PEERCRED`) before it reads a request.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType, connect, recvmsg, socket_with,
};
use serde::{Deserialize, Serialize};

/// The control socket's path under the state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("kernel.sock")
}

/// The largest control packet either side sends (tag byte included).
pub const MAX_PACKET: usize = 64 * 1024;
/// The tag of a packet after which more of the same message follows.
pub const MORE: u8 = b'+';
/// The tag of a message's last packet.
pub const LAST: u8 = b'.';
/// The largest request the daemon assembles (a manifest of the documented maximum of
/// environments fits many times over).
pub const MAX_REQUEST: usize = 64 << 20;
/// The largest answer a client assembles.
pub const MAX_ANSWER: usize = 1 << 30;

/// Cut `doc` into tagged packets (at least one, even for an empty document).
pub fn packets(doc: &[u8]) -> Vec<Vec<u8>> {
    let piece = MAX_PACKET - 1;
    let n = doc.len().div_ceil(piece).max(1);
    (0..n)
        .map(|i| {
            let part = &doc[(i * piece).min(doc.len())..((i + 1) * piece).min(doc.len())];
            let mut p = Vec::with_capacity(part.len() + 1);
            p.push(if i + 1 == n { LAST } else { MORE });
            p.extend_from_slice(part);
            p
        })
        .collect()
}

/// Reassembly of one message from its packets, with a bound on its size.
#[derive(Debug, Default)]
pub struct Assembly {
    buf: Vec<u8>,
}

/// What one packet made of the message being assembled.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// More packets are needed.
    Partial,
    /// The message is complete (tagged framing).
    Done(Vec<u8>),
    /// A whole message in the older one-packet framing.
    Legacy(Vec<u8>),
}

impl Assembly {
    /// Add one packet; an error names what was wrong (an unknown tag, a message over `limit`).
    pub fn push(&mut self, packet: &[u8], limit: usize) -> Result<Piece, String> {
        let Some((&tag, rest)) = packet.split_first() else {
            return Err("an empty control packet".into());
        };
        if tag == b'{' && self.buf.is_empty() {
            return Ok(Piece::Legacy(packet.to_vec()));
        }
        if tag != MORE && tag != LAST {
            return Err(format!(
                "a control packet must start with '+' or '.', not byte {tag:#04x}"
            ));
        }
        if self.buf.len() + rest.len() > limit {
            self.buf = Vec::new();
            return Err(format!("a control message larger than {limit} bytes"));
        }
        self.buf.extend_from_slice(rest);
        Ok(if tag == LAST {
            Piece::Done(std::mem::take(&mut self.buf))
        } else {
            Piece::Partial
        })
    }
}

/// A request on the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// Create an environment's mailbox and capability table; the answer carries the
    /// environment's end of its kernel connection. Closing the control connection ends it.
    Register {
        /// The environment's name.
        name: String,
        /// Initial capabilities: names the environment may send to.
        #[serde(default)]
        may_send: Vec<String>,
        /// Names it may discover with `lookup`.
        #[serde(default)]
        may_discover: Vec<String>,
        /// Bound of its default mailbox (messages).
        #[serde(default)]
        capacity: Option<usize>,
        /// Its byte quota in the kernel.
        #[serde(default)]
        mailbox_bytes: Option<u64>,
        /// Re-registration after a kernel restart: the kernel's end of the environment's
        /// connection comes with the request, and the environment keeps its descriptor 3.
        #[serde(default)]
        readopt: bool,
    },
    /// Sent by a launcher on its registered connection once its environment runs (the
    /// workload was exec'd): `apply` reports the environment `created` only then, and a
    /// launcher that exits before saying so as `failed: REASON`.
    Started,
    /// The kernel's view: environments and counters.
    Status,
    /// Converge the managed environments to `spaces` (from a manifest): create, keep, replace,
    /// stop. With `check`, only plan. Answered when every action has finished.
    Apply {
        /// The manifest's path, for messages.
        file: String,
        /// The declared environments.
        spaces: std::collections::BTreeMap<String, warren_spec::SpaceSpec>,
        /// The declared templates (spawn, docs/manifest.md); absent from older clients.
        #[serde(default)]
        templates: std::collections::BTreeMap<String, warren_spec::TemplateSpec>,
        /// Plan only.
        #[serde(default)]
        check: bool,
        /// Seconds between the polite SIGTERM and the forced stop of a replaced or removed
        /// environment.
        #[serde(default = "default_stop_timeout")]
        stop_timeout: u64,
    },
    /// Managed environments with their state.
    List,
    /// Stop a managed environment (it stays stopped until applied again).
    Stop {
        /// Its name.
        name: String,
        /// Seconds before the forced stop.
        #[serde(default = "default_stop_timeout")]
        timeout: u64,
    },
    /// Forget a managed environment (stopping it first when `force`).
    Remove {
        /// Its name.
        name: String,
        /// Stop it if it runs.
        #[serde(default)]
        force: bool,
    },
    /// Ask peer `host`'s attestation mailbox for a host quote over `nonce` (hex) through the
    /// federation; answered with the quote when it arrives, or an error after `timeout_ms`.
    AttestPeer {
        /// The peer host.
        host: String,
        /// The verifier's nonce, hex (1 to 64 bytes).
        nonce: String,
        /// How long to wait for the answer.
        timeout_ms: u64,
    },
    /// A verifier's verdict on peer `host`: `pass` lets it in (for `valid_ms` when given),
    /// a failure cuts it off (docs/federation.md, "Attestation-gated federation").
    Gate {
        /// The peer host.
        host: String,
        /// Whether its quote passed.
        pass: bool,
        /// The reason code of a failure (`boot-digest`, `timeout`, ...).
        #[serde(default)]
        code: String,
        /// The reason in words.
        #[serde(default)]
        reason: String,
        /// The lease of a pass: without a new pass within it, the host is cut off.
        #[serde(default)]
        valid_ms: Option<u64>,
    },
}

fn default_stop_timeout() -> u64 {
    10
}

/// The answer to a control request.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `status`: the kernel's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
    /// For `apply`, `list`, `stop` and `remove`: the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ControlResponse {
    /// A success carrying `data`.
    pub fn data(data: serde_json::Value) -> ControlResponse {
        ControlResponse {
            ok: true,
            error: None,
            status: None,
            data: Some(data),
        }
    }

    /// A failure saying why.
    pub fn error(why: impl Into<String>) -> ControlResponse {
        ControlResponse {
            ok: false,
            error: Some(why.into()),
            status: None,
            data: None,
        }
    }
}

/// Send `req` to a running kernel and return its answer; an error when no kernel runs.
pub fn request(state_dir: &Path, req: &ControlRequest) -> anyhow::Result<ControlResponse> {
    let Some(fd) = connect_daemon(state_dir)? else {
        bail!(
            "no Warren kernel is running (no {}): start it with `warren daemon`",
            socket_path(state_dir).display()
        );
    };
    Ok(call(&fd, req)?.0)
}

/// A registration held by `warren run`: keep `control` open for the environment's life.
pub struct Registration {
    /// The control connection; closing it tells the kernel the environment ended.
    pub control: OwnedFd,
    /// The environment's end of its kernel connection (becomes its descriptor 3).
    pub mailbox: OwnedFd,
    /// A copy of the kernel's end, kept to re-attach after a kernel restart.
    pub kept: Option<OwnedFd>,
}

/// Connect to the daemon's control socket; `Ok(None)` when no daemon is listening.
pub fn connect_daemon(state_dir: &Path) -> anyhow::Result<Option<OwnedFd>> {
    let path = socket_path(state_dir);
    if !path.exists() {
        return Ok(None);
    }
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .context("create a control socket")?;
    let addr = SocketAddrUnix::new(&path).context("control socket path")?;
    match connect(&fd, &addr) {
        Ok(()) => Ok(Some(fd)),
        // A socket file left by a daemon that is gone.
        Err(rustix::io::Errno::CONNREFUSED) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("connect to the kernel at {}", path.display())),
    }
}

/// Send `req` and read the answer, with the descriptor that came with it, if any.
pub fn call(
    fd: &OwnedFd,
    req: &ControlRequest,
) -> anyhow::Result<(ControlResponse, Option<OwnedFd>)> {
    let (resp, mut fds) = call_fds(fd, req, None)?;
    Ok((
        resp,
        if fds.is_empty() {
            None
        } else {
            Some(fds.remove(0))
        },
    ))
}

/// [`call`], passing `send_fd` with the request and returning every descriptor that came back.
pub fn call_fds(
    fd: &OwnedFd,
    req: &ControlRequest,
    send_fd: Option<&OwnedFd>,
) -> anyhow::Result<(ControlResponse, Vec<OwnedFd>)> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, sendmsg};
    use std::os::fd::AsFd;
    let bytes = serde_json::to_vec(req)?;
    for (i, packet) in packets(&bytes).iter().enumerate() {
        let out_fds: Vec<_> = send_fd
            .iter()
            .filter(|_| i == 0)
            .map(|f| f.as_fd())
            .collect();
        let mut out_space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut out_anc = SendAncillaryBuffer::new(&mut out_space);
        if !out_fds.is_empty() {
            out_anc.push(SendAncillaryMessage::ScmRights(&out_fds));
        }
        sendmsg(
            fd,
            &[std::io::IoSlice::new(packet)],
            &mut out_anc,
            SendFlags::empty(),
        )
        .context("send to the kernel")?;
    }
    let mut buf = vec![0u8; MAX_PACKET];
    let mut passed = Vec::new();
    let mut assembly = Assembly::default();
    let doc = loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let msg = recvmsg(
            fd,
            &mut [IoSliceMut::new(&mut buf)],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        )
        .context("read the kernel's answer")?;
        for m in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                passed.extend(fds);
            }
        }
        if msg.bytes == 0 {
            bail!("the kernel closed the control connection");
        }
        if msg.flags.contains(rustix::net::ReturnFlags::TRUNC) {
            bail!("the kernel's answer came in a packet over {MAX_PACKET} bytes");
        }
        match assembly.push(&buf[..msg.bytes], MAX_ANSWER) {
            Ok(Piece::Partial) => continue,
            Ok(Piece::Done(doc) | Piece::Legacy(doc)) => break doc,
            Err(e) => bail!("the kernel's answer is not valid: {e}"),
        }
    };
    let resp: ControlResponse =
        serde_json::from_slice(&doc).context("the kernel's answer is not valid")?;
    Ok((resp, passed))
}

/// Tell the kernel, on a registered connection, that the environment runs (see
/// [`ControlRequest::Started`]).
pub fn started(control: &OwnedFd) -> anyhow::Result<()> {
    let (resp, _) = call(control, &ControlRequest::Started)?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_default());
    }
    Ok(())
}

/// What a launcher needs to register its environment again after a kernel restart.
pub struct Reattach {
    /// The state directory (where the kernel's socket is).
    pub state_dir: PathBuf,
    /// The environment's declaration.
    pub name: String,
    /// Its `may_send` names.
    pub may_send: Vec<String>,
    /// Its `may_discover` names.
    pub may_discover: Vec<String>,
    /// Its mailbox bound.
    pub capacity: Option<usize>,
    /// Its byte quota.
    pub mailbox_bytes: Option<u64>,
    /// The kernel's end of the environment's connection, kept since the first registration.
    pub kept: OwnedFd,
    /// Where its messages go: the environment's log (in the launch waiter, whose own standard
    /// error is the kernel's); `None`: standard error (a launcher's is the log).
    pub log: Option<std::fs::File>,
}

impl Reattach {
    /// One line about re-attaching, where the environment's log is.
    fn say(&self, line: &str) {
        use std::io::Write as _;
        match &self.log {
            Some(f) => {
                let mut f: &std::fs::File = f;
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
            None => eprintln!("{line}"),
        }
    }
}

/// Between tries to reach a new kernel.
const REATTACH_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// The launcher's connection to the kernel while its environment runs, watched by the
/// launcher's waiting thread (a [`warren_sandbox::Sidework`]; the kernel never writes unprompted,
/// so input is its end). When the kernel goes away, a thread of its own waits for a new one and
/// hands it the kept end of the environment's connection, so that descriptor 3 inside carries
/// on: the calls block (a new kernel answers once it has re-adopted what runs, however long
/// that takes, and an answer given up on would be taken as a second registration), so they are
/// kept off the thread that forwards signals, answers refused calls and copies the log. The
/// thread ends once re-attached and the waiting thread watches the new connection.
pub struct Attachment {
    /// The connection, while attached.
    control: Option<OwnedFd>,
    /// While detached: the read end of a pipe the re-attaching thread closes when done, and
    /// the thread, which returns the new connection.
    pending: Option<(OwnedFd, std::thread::JoinHandle<OwnedFd>)>,
    r: std::sync::Arc<Reattach>,
    /// Whether the kernel that started the environment went away while it ran.
    outlived: bool,
}

impl Attachment {
    /// Watch `control`, registered as `r` says.
    pub fn new(control: OwnedFd, r: Reattach) -> Attachment {
        Attachment {
            control: Some(control),
            pending: None,
            r: std::sync::Arc::new(r),
            outlived: false,
        }
    }

    /// Whether the kernel that started the environment went away while it ran: then no kernel
    /// is this launcher's parent, and its exit status reaches the kernel only through
    /// [`record_exit`].
    pub fn outlived_its_kernel(&self) -> bool {
        self.outlived
    }

    /// For a hand-off of the environment (`daemon/helper.rs`): the connection, the kept end
    /// and the declaration; itself back while re-attaching (the hand-off waits for a kernel).
    pub fn into_parts(self) -> Result<(serde_json::Value, Vec<OwnedFd>), Attachment> {
        if self.pending.is_some() || self.control.is_none() {
            return Err(self);
        }
        let r = match std::sync::Arc::try_unwrap(self.r) {
            Ok(r) => r,
            Err(r) => {
                return Err(Attachment { r, ..self });
            }
        };
        let control = self.control.expect("checked above");
        let data = serde_json::json!({
            "state_dir": r.state_dir, "name": r.name, "may_send": r.may_send,
            "may_discover": r.may_discover, "capacity": r.capacity,
            "mailbox_bytes": r.mailbox_bytes, "outlived": self.outlived,
        });
        Ok((data, vec![control, r.kept]))
    }

    /// The attachment [`Attachment::into_parts`] handed over; its messages go to `log`.
    pub fn from_parts(
        data: &serde_json::Value,
        control: OwnedFd,
        kept: OwnedFd,
        log: Option<std::fs::File>,
    ) -> Attachment {
        let names = |k: &str| -> Vec<String> {
            data[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let r = Reattach {
            state_dir: PathBuf::from(data["state_dir"].as_str().unwrap_or_default()),
            name: data["name"].as_str().unwrap_or_default().to_owned(),
            may_send: names("may_send"),
            may_discover: names("may_discover"),
            capacity: data["capacity"].as_u64().map(|c| c as usize),
            mailbox_bytes: data["mailbox_bytes"].as_u64(),
            kept,
            log,
        };
        Attachment {
            control: Some(control),
            pending: None,
            r: std::sync::Arc::new(r),
            outlived: data["outlived"].as_bool().unwrap_or(false),
        }
    }

    /// Start the thread that re-attaches to a new kernel.
    fn detach(&mut self) {
        self.outlived = true;
        self.r.say(&format!(
            "warren: the kernel went away; waiting to re-attach {}",
            self.r.name
        ));
        let (done, done_w) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
            Ok(p) => p,
            Err(e) => {
                self.r
                    .say(&format!("warren: cannot re-attach {}: {e}", self.r.name));
                return;
            }
        };
        let r = self.r.clone();
        let thread = std::thread::Builder::new()
            .name("warren-attach".into())
            .stack_size(256 << 10)
            .spawn(move || {
                let fd = reattach(&r);
                // Wakes the waiting thread (end of the pipe).
                drop(done_w);
                fd
            });
        match thread {
            Ok(t) => self.pending = Some((done, t)),
            Err(e) => self
                .r
                .say(&format!("warren: cannot re-attach {}: {e}", self.r.name)),
        }
    }
}

/// Where a launcher that outlived the kernel which started it leaves its exit status:
/// `<state>/exits/NAME`.
fn exit_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("exits").join(name)
}

/// Leave environment `name`'s exit status `code` for the kernel (a launcher that outlived the
/// kernel which started it is no kernel's child, so a kernel cannot wait for it). Written whole
/// (a temporary file renamed) before the launcher exits, so it is there when the kernel sees the
/// launcher's pidfd turn readable.
pub fn record_exit(state_dir: &Path, name: &str, code: i32) -> anyhow::Result<()> {
    let path = exit_path(state_dir, name);
    let dir = state_dir.join("exits");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, format!("{code}\n"))
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// Take (read and remove) the exit status [`record_exit`] left for `name`, if any.
pub fn take_exit(state_dir: &Path, name: &str) -> Option<i32> {
    let path = exit_path(state_dir, name);
    let text = std::fs::read_to_string(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    text.trim().parse().ok()
}

/// Forget an exit status [`record_exit`] left for `name` (a kernel re-adopting a live launcher
/// of that name: anything there is from an earlier environment).
pub fn forget_exit(state_dir: &Path, name: &str) {
    let _ = std::fs::remove_file(exit_path(state_dir, name));
}

/// Register again with a new kernel, trying every [`REATTACH_RETRY`] until one accepts.
fn reattach(r: &Reattach) -> OwnedFd {
    let mut said = false;
    loop {
        std::thread::sleep(REATTACH_RETRY);
        let Ok(Some(fd)) = connect_daemon(&r.state_dir) else {
            continue;
        };
        let req = ControlRequest::Register {
            name: r.name.clone(),
            may_send: r.may_send.clone(),
            may_discover: r.may_discover.clone(),
            capacity: r.capacity,
            mailbox_bytes: r.mailbox_bytes,
            readopt: true,
        };
        // Said once per outage: a kernel that keeps refusing must not fill the log.
        match call_fds(&fd, &req, Some(&r.kept)) {
            Ok((resp, _)) if resp.ok => {
                r.say(&format!("warren: {} re-attached to the new kernel", r.name));
                return fd;
            }
            Ok((resp, _)) if !said => {
                said = true;
                r.say(&format!(
                    "warren: re-attach refused (trying again): {}",
                    resp.error.unwrap_or_default()
                ));
            }
            Err(e) if !said => {
                said = true;
                r.say(&format!("warren: re-attach failed (trying again): {e:#}"));
            }
            _ => {}
        }
    }
}

impl warren_sandbox::Sidework for Attachment {
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match (&self.control, &self.pending) {
            (Some(c), _) => Some(c.as_fd()),
            (None, Some((done, _))) => Some(done.as_fd()),
            (None, None) => None,
        }
    }

    fn ready(&mut self) {
        if let Some(c) = &self.control {
            let mut b = [0u8; 64];
            match rustix::net::recv(c, &mut b, RecvFlags::DONTWAIT) {
                Ok((0, _)) => {}
                Ok(_) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return,
                Err(_) => {}
            }
            self.control = None;
            self.detach();
            return;
        }
        // The pipe's end: the thread has dropped its end and is returning.
        if let Some((_, t)) = self.pending.take() {
            match t.join() {
                Ok(fd) => self.control = Some(fd),
                Err(_) => self
                    .r
                    .say(&format!("warren: re-attaching {} failed", self.r.name)),
            }
        }
    }
}

/// Register an environment with a running kernel daemon. `Ok(None)` when no daemon runs.
pub fn register(
    state_dir: &Path,
    name: &str,
    may_send: &[String],
    may_discover: &[String],
    (capacity, mailbox_bytes): (Option<usize>, Option<u64>),
) -> anyhow::Result<Option<Registration>> {
    let Some(control) = connect_daemon(state_dir)? else {
        return Ok(None);
    };
    let req = ControlRequest::Register {
        name: name.to_owned(),
        may_send: may_send.to_vec(),
        may_discover: may_discover.to_vec(),
        capacity,
        mailbox_bytes,
        readopt: false,
    };
    let (resp, mut fds) = call_fds(&control, &req, None)?;
    if !resp.ok {
        bail!(
            "the kernel refused the environment: {}",
            resp.error.unwrap_or_default()
        );
    }
    if fds.is_empty() {
        bail!("the kernel did not pass the mailbox descriptor");
    }
    let mailbox = fds.remove(0);
    let kept = fds.pop();
    Ok(Some(Registration {
        control,
        mailbox,
        kept,
    }))
}
