//! The kernel daemon's event loop: the thin I/O shell around `warren_kernel::Kernel`.
//!
//! One thread, one `epoll` set: the admin control socket (`<state>/kernel.sock`, root or a
//! configured group only, checked by `SO_PEERCRED`), one control connection per registered
//! environment (its launcher's; closing it ends the environment), one kernel connection per
//! environment (a `SOCK_SEQPACKET` pair whose other end is the environment's descriptor 3), and
//! a `signalfd` for SIGINT/SIGTERM. Each turn: read whole packets, decode them, feed the frames
//! to the kernel with the current time, drain the kernel's actions (responses batched into one
//! packet per environment, audit records appended as JSON lines), and flush. The kernel decides;
//! this loop only moves bytes and time.
//!
//! **Architecture Invariant:** the daemon never forks or launches: `warren run` is the launcher
//! and only receives its environment's connection from here.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, IoSlice, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType, sockopt,
};
use warren_kernel::{Action, EnvId, EnvSpec, Kernel};
use warren_proto::{Frame, PacketBuilder, Request, Response};

use crate::control::{self, ControlRequest, ControlResponse};
use crate::supervisor::Registry;

mod supervise;
use supervise::{Pending, Runtime};
mod link;

const LISTENER: u64 = 0;
const SIGNALS: u64 = 1;
/// The federation driver's eventfd (`link.rs`); connection tokens count up from 2.
const LINK: u64 = u64::MAX;
/// The send buffer forced on both ends of an environment's connection, so that packets up to
/// the protocol's 1 MiB limit pass (Linux's default allows about 208 KiB).
const SOCKET_BUFFER: usize = 2 << 20;
/// Packets the daemon assembles for one environment at most (responses are batched into them).
const OUT_PACKET: usize = 64 * 1024;
/// Decoded frames whose room the daemon keeps between packets.
const FRAMES_KEPT: usize = 1024;
/// Unsent output one environment may accumulate before the daemon gives up on it.
const MAX_BACKLOG: usize = 64 << 20;

/// Options of `warren daemon`.
pub struct Options {
    /// The state directory.
    pub state_dir: PathBuf,
    /// A group whose members may also use the control socket.
    pub group: Option<u32>,
    /// Where denied requests are recorded.
    pub audit_log: PathBuf,
}

enum Conn {
    Control { fd: OwnedFd, env: Option<EnvId> },
    Env(EnvConn),
}

/// A map keyed by numbers the daemon assigns itself (connection tokens, environment ids), so no
/// client chooses its keys: a multiplicative hash is enough, and much cheaper than the default
/// SipHash on the path of every request and response.
type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of integer keys (distinct low bits for consecutive numbers).
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

struct EnvConn {
    fd: OwnedFd,
    env: EnvId,
    greeted: bool,
    building: PacketBuilder,
    out: VecDeque<Vec<u8>>,
    backlog: usize,
    want_write: bool,
    /// Whether the connection is on the daemon's list of connections with output to flush.
    dirty: bool,
}

struct Daemon {
    epoll: OwnedFd,
    listener: OwnedFd,
    signals: OwnedFd,
    kernel: Kernel,
    conns: IdMap<u64, Conn>,
    env_conn: IdMap<EnvId, u64>,
    /// Environment connections that got output this turn: flushing visits only these, so a
    /// turn costs the same with ten or ten thousand idle environments.
    dirty: Vec<u64>,
    /// The frames of the packet being handled (kept for its allocation).
    frames: Vec<Frame<Request>>,
    next_token: u64,
    start: Instant,
    audit: BufWriter<File>,
    group: Option<u32>,
    buf: Vec<u8>,
    socket_path: PathBuf,
    state_dir: PathBuf,
    exe: PathBuf,
    registry: Registry,
    runtime: HashMap<String, Runtime>,
    pid_tokens: IdMap<u64, String>,
    pendings: Vec<Pending>,
    /// Federation, when `[host]` names a broker.
    link: Option<link::Link>,
}

/// Run the daemon in the foreground until SIGINT or SIGTERM.
pub fn run(opts: Options, manifest: Option<warren_spec::Manifest>) -> anyhow::Result<()> {
    init_logging();
    let mut d = Daemon::new(&opts)?;
    let host = link::host_spec(&opts.state_dir, manifest.as_ref().map(|m| &m.host))?;
    match link::Link::start(&host, &opts.state_dir, d.start) {
        Ok(l) => d.link = l,
        Err(e) => {
            let _ = std::fs::remove_file(&d.socket_path);
            return Err(e.context("start federation"));
        }
    }
    link::remember_host(&opts.state_dir, &host)?;
    if let Some(l) = &d.link {
        d.kernel.enable_federation(l.host());
        epoll::add(
            &d.epoll,
            l.wake_fd(),
            EventData::new_u64(LINK),
            EventFlags::IN,
        )?;
    }
    d.adopt_all();
    // Filter elements of networked environments whose launcher was killed (their address
    // lease is free) go now, before anything is started (docs/network.md).
    match warren_sandbox::net::sweep(&warren_sandbox::state::StateDir::new(&opts.state_dir)) {
        Ok(0) => {}
        Ok(n) => tracing::info!("swept the network rules of {n} ended environments"),
        Err(e) => tracing::warn!("sweeping network rules: {e:#}"),
    }
    if let Some(m) = manifest {
        let spaces = m
            .spaces
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect();
        // Token 0 belongs to no connection: the result is logged, not sent.
        d.apply(0, m.file.display().to_string(), spaces, false, 10);
        for line in d.list()["envs"].as_array().into_iter().flatten() {
            tracing::info!(
                "{} {}",
                line["name"].as_str().unwrap_or("?"),
                line["state"].as_str().unwrap_or("?")
            );
        }
    }
    tracing::info!("kernel ready on {}", d.socket_path.display());
    notify_ready(&d.socket_path);
    let result = d.serve();
    let _ = std::fs::remove_file(&d.socket_path);
    result
}

/// Log through `tracing` to standard error; under systemd (`JOURNAL_STREAM` set) journald
/// stamps the time itself, so the lines carry none.
fn init_logging() {
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = if under_systemd {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// Tell systemd (`Type=notify`) that the kernel is ready: the control socket is bound and
/// listening. Does nothing outside systemd.
fn notify_ready(socket: &std::path::Path) {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let msg = format!("READY=1\nSTATUS=kernel listening on {}\n", socket.display());
    let bytes = addr.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), std::path::Path::new(&addr))
    };
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

fn token_event(token: u64, writable: bool) -> (EventFlags, EventData) {
    let mut flags = EventFlags::IN | EventFlags::RDHUP;
    if writable {
        flags |= EventFlags::OUT;
    }
    (flags, EventData::new_u64(token))
}

impl Daemon {
    fn new(opts: &Options) -> anyhow::Result<Daemon> {
        std::fs::create_dir_all(&opts.state_dir)
            .with_context(|| format!("create {}", opts.state_dir.display()))?;
        let path = control::socket_path(&opts.state_dir);
        if control::connect_daemon(&opts.state_dir)?.is_some() {
            bail!("a Warren kernel is already running on {}", path.display());
        }
        let _ = std::fs::remove_file(&path);
        let listener = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        let addr = SocketAddrUnix::new(&path)?;
        rustix::net::bind(&listener, &addr).with_context(|| format!("bind {}", path.display()))?;
        // Owner root, group as configured, nobody else: the first gate; SO_PEERCRED is the second.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
        if let Some(gid) = opts.group {
            rustix::fs::chown(&path, None, Some(rustix::fs::Gid::from_raw(gid)))
                .context("give the control socket to the configured group")?;
        }
        rustix::net::listen(&listener, 128)?;

        let set = warren_sys::SignalSet::of(&[2, 15])?;
        warren_sys::block_signals(&set)?;
        let signals = warren_sys::signalfd(&set)?;

        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        epoll::add(
            &epoll,
            &listener,
            EventData::new_u64(LISTENER),
            EventFlags::IN,
        )?;
        epoll::add(
            &epoll,
            &signals,
            EventData::new_u64(SIGNALS),
            EventFlags::IN,
        )?;
        if let Some(dir) = opts.audit_log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let audit = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&opts.audit_log)
            .with_context(|| format!("open the audit log {}", opts.audit_log.display()))?;
        Ok(Daemon {
            epoll,
            listener,
            signals,
            kernel: Kernel::new(warren_kernel::Config::default()),
            conns: IdMap::default(),
            env_conn: IdMap::default(),
            dirty: Vec::new(),
            frames: Vec::new(),
            next_token: 2,
            start: Instant::now(),
            audit: BufWriter::new(audit),
            group: opts.group,
            buf: vec![0u8; warren_proto::MAX_PACKET],
            socket_path: path,
            state_dir: opts.state_dir.clone(),
            exe: std::env::current_exe().context("find the warren binary")?,
            registry: Registry::load(&opts.state_dir)?,
            runtime: HashMap::new(),
            pid_tokens: IdMap::default(),
            pendings: Vec::new(),
            link: None,
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn serve(&mut self) -> anyhow::Result<()> {
        let mut events: Vec<Event> = Vec::with_capacity(256);
        loop {
            let deadline = match (self.kernel.poll_timeout(), self.next_supervision_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let deadline = match (deadline, self.link.as_ref().and_then(|l| l.poll_timeout())) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = deadline.map(|at| {
                let ms = at.saturating_sub(self.now());
                rustix::time::Timespec {
                    tv_sec: (ms / 1000) as i64,
                    tv_nsec: ((ms % 1000) * 1_000_000) as i64,
                }
            });
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                timeout.as_ref(),
            ) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e).context("epoll_wait"),
            }
            for ev in events.iter() {
                let token = ev.data.u64();
                let flags = ev.flags;
                match token {
                    LISTENER => self.accept_all(),
                    SIGNALS => {
                        if let Ok(Some(sig)) = warren_sys::read_signal(&self.signals) {
                            tracing::info!("kernel stopping on signal {sig}");
                            // What was decided is answered (and, for federation, made durable)
                            // before the kernel goes; unread requests wait in their sockets.
                            self.drain_actions();
                            self.flush_all();
                            return Ok(());
                        }
                    }
                    LINK => {
                        if let Some(l) = self.link.as_mut() {
                            l.on_wake(&mut self.kernel, self.start.elapsed().as_millis() as u64);
                        }
                    }
                    t if self.pid_tokens.contains_key(&t) => self.on_launcher_exit(t),
                    t => self.on_conn(t, flags),
                }
            }
            self.kernel.handle_timeout(self.now());
            self.supervise_tick();
            if let Some(l) = self.link.as_mut() {
                l.tick(&mut self.kernel, self.start.elapsed().as_millis() as u64);
            }
            self.drain_actions();
            self.flush_all();
        }
    }

    fn accept_all(&mut self) {
        loop {
            let fd = match rustix::net::accept_with(
                &self.listener,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::AGAIN) => return,
                Err(e) => {
                    tracing::info!("accept on the control socket: {e}");
                    return;
                }
            };
            let allowed = match sockopt::socket_peercred(&fd) {
                Ok(cred) => {
                    cred.uid.is_root() || self.group.is_some_and(|g| cred.gid.as_raw() == g)
                }
                Err(_) => false,
            };
            if !allowed {
                let resp = ControlResponse::error(
                    "permission denied: the control socket is for root and the kernel's group",
                );
                let _ = rustix::net::send(
                    &fd,
                    &serde_json::to_vec(&resp).unwrap_or_default(),
                    SendFlags::empty(),
                );
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            let (flags, data) = token_event(token, false);
            if epoll::add(&self.epoll, &fd, data, flags).is_ok() {
                self.conns.insert(token, Conn::Control { fd, env: None });
            }
        }
    }

    fn on_conn(&mut self, token: u64, flags: EventFlags) {
        match self.conns.get(&token) {
            Some(Conn::Control { .. }) => self.on_control(token, flags),
            Some(Conn::Env(_)) => self.on_env(token, flags),
            None => {}
        }
    }

    fn on_control(&mut self, token: u64, flags: EventFlags) {
        loop {
            let Some(Conn::Control { fd, .. }) = self.conns.get(&token) else {
                return;
            };
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let n = match rustix::net::recvmsg(
                fd,
                &mut [std::io::IoSliceMut::new(
                    &mut self.buf[..control::MAX_PACKET],
                )],
                &mut anc,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(m) => m.bytes,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => 0,
            };
            let mut passed: Vec<OwnedFd> = Vec::new();
            for m in anc.drain() {
                if let rustix::net::RecvAncillaryMessage::ScmRights(fds) = m {
                    passed.extend(fds);
                }
            }
            if n == 0 {
                self.close_control(token);
                return;
            }
            let req: Result<ControlRequest, _> = serde_json::from_slice(&self.buf[..n]);
            match req {
                Ok(ControlRequest::Register {
                    name,
                    may_send,
                    may_discover,
                    capacity,
                    mailbox_bytes,
                    readopt,
                }) => {
                    let kept = if readopt { passed.pop() } else { None };
                    if readopt && kept.is_none() {
                        let resp = ControlResponse::error("re-registration without the connection");
                        self.control_reply(token, resp, None);
                    } else {
                        let limits = (capacity, mailbox_bytes);
                        self.register(token, name, may_send, may_discover, limits, kept);
                    }
                }
                Ok(ControlRequest::Status) => {
                    let st = self.kernel.stats();
                    let status = serde_json::json!({
                        "envs": st.envs, "mailboxes": st.mailboxes, "caps": st.caps,
                        "queued": st.queued, "waiting_sends": st.waiting_sends,
                        "waiting_recvs": st.waiting_recvs, "monitors": st.monitors,
                        "link": self.link.as_ref().map(|l| l.status()),
                    });
                    self.control_reply(
                        token,
                        ControlResponse {
                            ok: true,
                            error: None,
                            status: Some(status),
                            data: None,
                        },
                        None,
                    );
                }
                Ok(ControlRequest::Apply {
                    file,
                    spaces,
                    check,
                    stop_timeout,
                }) => {
                    self.apply(token, file, spaces, check, stop_timeout);
                }
                Ok(ControlRequest::List) => {
                    let data = self.list();
                    self.control_reply(token, ControlResponse::data(data), None);
                }
                Ok(ControlRequest::Stop { name, timeout }) => {
                    self.stop_request(token, name, timeout)
                }
                Ok(ControlRequest::Remove { name, force }) => {
                    self.remove_request(token, name, force)
                }
                Err(e) => {
                    let resp = ControlResponse::error(format!("bad control request: {e}"));
                    self.control_reply(token, resp, None);
                }
            }
        }
        if flags.intersects(EventFlags::HUP | EventFlags::RDHUP | EventFlags::ERR) {
            self.close_control(token);
        }
    }

    fn control_reply(&mut self, token: u64, resp: ControlResponse, fd: Option<&OwnedFd>) {
        self.control_reply_fds(token, resp, fd.into_iter().collect());
    }

    /// Answer on a control connection, passing `fds` with the answer.
    fn control_reply_fds(&mut self, token: u64, resp: ControlResponse, fds: Vec<&OwnedFd>) {
        let Some(Conn::Control { fd: conn, .. }) = self.conns.get(&token) else {
            return;
        };
        let bytes = serde_json::to_vec(&resp).unwrap_or_default();
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        if !borrowed.is_empty() {
            anc.push(SendAncillaryMessage::ScmRights(&borrowed));
        }
        let _ = rustix::net::sendmsg(conn, &[IoSlice::new(&bytes)], &mut anc, SendFlags::DONTWAIT);
    }

    /// Register an environment. `kept` is the kernel's end of its connection, handed back by a
    /// launcher after a kernel restart (the launcher keeps a copy from the first registration):
    /// the environment's descriptor 3 then carries on, with a fresh capability table built from
    /// its declaration.
    fn register(
        &mut self,
        token: u64,
        name: String,
        may_send: Vec<String>,
        may_discover: Vec<String>,
        (capacity, mailbox_bytes): (Option<usize>, Option<u64>),
        kept: Option<OwnedFd>,
    ) {
        if let Some(Conn::Control { env: Some(_), .. }) = self.conns.get(&token) {
            let resp = ControlResponse::error("this connection already registered an environment");
            self.control_reply(token, resp, None);
            return;
        }
        // The same bounds as the manifest and the CLI (warren-spec's limits).
        let checked = capacity
            .map(|c| warren_spec::limits::check(warren_spec::limits::MAILBOX_CAPACITY, c as u64))
            .transpose()
            .and_then(|_| {
                let bound = warren_spec::limits::MAILBOX_BYTES;
                mailbox_bytes
                    .map(|b| warren_spec::limits::check(bound, b))
                    .transpose()
            });
        if let Err(e) = checked {
            self.control_reply(token, ControlResponse::error(e.to_string()), None);
            return;
        }
        let spec = EnvSpec {
            name: name.clone(),
            may_send,
            may_discover,
            mailbox_capacity: capacity,
            mailbox_bytes: mailbox_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        };
        let env = match self.kernel.add_env(spec, self.now()) {
            Ok(e) => e,
            Err(e) => {
                self.control_reply(token, ControlResponse::error(e.to_string()), None);
                return;
            }
        };
        if let Some(m) = self.registry.envs.get(&name) {
            if !m.spec.accept_from.is_empty() {
                self.kernel.set_accept_from(env, m.spec.accept_from.clone());
            }
        }
        let readopted = kept.is_some();
        let pair = match kept {
            Some(fd) => Ok((fd, None)),
            None => rustix::net::socketpair(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC,
                None,
            )
            .map(|(a, b)| (a, Some(b))),
        };
        let (ours, theirs) = match pair {
            Ok(p) => p,
            Err(e) => {
                self.kernel.remove_env(env, self.now());
                self.control_reply(
                    token,
                    ControlResponse::error(format!("socketpair: {e}")),
                    None,
                );
                return;
            }
        };
        for fd in std::iter::once(&ours).chain(theirs.as_ref()) {
            if sockopt::set_socket_send_buffer_size_force(fd, SOCKET_BUFFER).is_err() {
                let _ = sockopt::set_socket_send_buffer_size(fd, SOCKET_BUFFER);
            }
            let _ = sockopt::set_socket_recv_buffer_size_force(fd, SOCKET_BUFFER);
        }
        let _ = rustix::fs::fcntl_setfl(&ours, rustix::fs::OFlags::NONBLOCK);
        let etoken = self.next_token;
        self.next_token += 1;
        let (flags, data) = token_event(etoken, false);
        if let Err(e) = epoll::add(&self.epoll, &ours, data, flags) {
            self.kernel.remove_env(env, self.now());
            self.control_reply(token, ControlResponse::error(format!("epoll: {e}")), None);
            return;
        }
        self.conns.insert(
            etoken,
            Conn::Env(EnvConn {
                fd: ours,
                env,
                greeted: readopted,
                building: PacketBuilder::with_limit(OUT_PACKET),
                out: VecDeque::new(),
                backlog: 0,
                want_write: false,
                dirty: false,
            }),
        );
        self.env_conn.insert(env, etoken);
        if let Some(Conn::Control { env: slot, .. }) = self.conns.get_mut(&token) {
            *slot = Some(env);
        }
        let ok = ControlResponse {
            ok: true,
            error: None,
            status: None,
            data: None,
        };
        match theirs {
            // The environment's end, and a copy of ours for the launcher to keep in case this
            // kernel restarts.
            Some(theirs) => {
                let copy = match &self.conns.get(&etoken) {
                    Some(Conn::Env(c)) => rustix::io::fcntl_dupfd_cloexec(&c.fd, 3).ok(),
                    _ => None,
                };
                let mut fds = vec![&theirs];
                fds.extend(copy.as_ref());
                self.control_reply_fds(token, ok, fds);
            }
            None => {
                tracing::info!("{name} re-attached its kernel connection");
                self.control_reply(token, ok, None);
            }
        }
    }

    fn close_control(&mut self, token: u64) {
        self.pendings.retain(|p| p.token != token);
        if let Some(Conn::Control { fd, env }) = self.conns.remove(&token) {
            let _ = epoll::delete(&self.epoll, &fd);
            if let Some(env) = env {
                self.kernel.remove_env(env, self.now());
                if let Some(et) = self.env_conn.remove(&env) {
                    self.close_env(et);
                }
            }
        }
    }

    fn close_env(&mut self, token: u64) {
        if let Some(Conn::Env(c)) = self.conns.remove(&token) {
            let _ = epoll::delete(&self.epoll, &c.fd);
            // The kernel keeps the environment until its launcher reports the end.
        }
    }

    fn on_env(&mut self, token: u64, flags: EventFlags) {
        if flags.contains(EventFlags::OUT) {
            self.flush(token);
        }
        loop {
            let Some(Conn::Env(c)) = self.conns.get(&token) else {
                return;
            };
            let n = match rustix::net::recv(
                &c.fd,
                &mut self.buf,
                RecvFlags::DONTWAIT | RecvFlags::TRUNC,
            ) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => 0,
            };
            if n == 0 || n > self.buf.len() {
                self.drop_env_conn(
                    token,
                    if n == 0 {
                        None
                    } else {
                        Some("packet larger than 1 MiB")
                    },
                );
                return;
            }
            // The whole packet is decoded before any frame is acted on, into a vector kept
            // from packet to packet.
            let mut frames = std::mem::take(&mut self.frames);
            frames.clear();
            if let Err(e) = warren_proto::request_frames(&self.buf[..n])
                .try_for_each(|f| f.map(|f| frames.push(f)))
            {
                self.frames = frames;
                let why = format!("malformed packet: {e}");
                self.drop_env_conn(token, Some(&why));
                return;
            }
            let now = self.now();
            let Some(Conn::Env(c)) = self.conns.get_mut(&token) else {
                return;
            };
            let env = c.env;
            if !c.greeted {
                match frames.first() {
                    Some(Frame {
                        body: Request::Hello { .. },
                        ..
                    }) => c.greeted = true,
                    _ => {
                        self.frames = frames;
                        self.drop_env_conn(token, Some("the first frame was not a hello"));
                        return;
                    }
                }
            }
            for f in frames.drain(..) {
                self.kernel.handle_request(env, f.id, f.body, now);
            }
            // A packet of many tiny frames must not leave a large vector behind.
            frames.shrink_to(FRAMES_KEPT);
            self.frames = frames;
        }
        if flags.intersects(EventFlags::HUP | EventFlags::RDHUP | EventFlags::ERR) {
            self.drop_env_conn(token, None);
        }
    }

    /// Close an environment's kernel connection (a malformed packet, or the environment closed
    /// it); only that connection suffers. The environment itself lives until its launcher ends.
    fn drop_env_conn(&mut self, token: u64, why: Option<&str>) {
        let env = match self.conns.get(&token) {
            Some(Conn::Env(c)) => Some(c.env),
            _ => None,
        };
        if let Some(env) = env {
            if let Some(why) = why {
                let name = self.kernel.env_name(env).unwrap_or("?").to_owned();
                let rec = warren_kernel::AuditRecord {
                    at: self.now(),
                    env: name,
                    op: "connection",
                    handle: None,
                    target: None,
                    code: warren_proto::ErrorCode::BadRequest.as_str(),
                    reason: format!("{why}; connection closed"),
                    repeated: None,
                };
                self.write_audit(&rec);
            }
            self.env_conn.remove(&env);
        }
        // The launcher keeps a copy of our end (to re-attach after a kernel restart), so closing
        // ours would not reach the environment: shut the connection down for both sides.
        if let Some(Conn::Env(c)) = self.conns.get(&token) {
            let _ = rustix::net::shutdown(&c.fd, rustix::net::Shutdown::Both);
        }
        self.close_env(token);
    }

    /// A quote about environment `name`'s launch record (the kernel decided who may ask).
    fn attest(&self, name: &str, nonce: &[u8], data: &[u8]) -> Response {
        match warren_attest::make_quote(&self.state_dir, nonce, Some(name), data)
            .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
            .and_then(|q| serde_json::to_vec(&q).map_err(|e| e.to_string()))
        {
            Ok(quote) => Response::Quote { quote },
            Err(detail) => {
                tracing::warn!(env = name, "attest failed: {detail}");
                let mut detail = detail;
                while detail.len() > warren_proto::MAX_DETAIL {
                    detail.pop();
                }
                Response::Error {
                    code: warren_proto::ErrorCode::AttestFailed,
                    detail,
                }
            }
        }
    }

    fn write_audit(&mut self, rec: &warren_kernel::AuditRecord) {
        if let Ok(line) = serde_json::to_string(rec) {
            let _ = writeln!(self.audit, "{line}");
        }
    }

    fn drain_actions(&mut self) {
        while let Some(action) = self.kernel.poll_action() {
            match action {
                Action::Respond { env, id, response } => self.queue_response(env, id, response),
                Action::Audit(rec) => self.write_audit(&rec),
                Action::Attest {
                    env,
                    id,
                    name,
                    nonce,
                    data,
                } => {
                    let response = self.attest(&name, &nonce, &data);
                    self.queue_response(env, id, response);
                }
                Action::Forward(out) => {
                    if let Some(l) = self.link.as_mut() {
                        l.forward(*out);
                    }
                }
                Action::Settled { ticket, .. } => {
                    if let Some(l) = self.link.as_mut() {
                        l.settled(ticket);
                    }
                }
            }
        }
        if let Some(l) = self.link.as_mut() {
            // Durable before any answer leaves: see `link.rs`.
            l.commit();
            for rec in l.take_audits() {
                if let Ok(line) = serde_json::to_string(&rec) {
                    let _ = writeln!(self.audit, "{line}");
                }
            }
        }
        let _ = self.audit.flush();
    }

    fn queue_response(&mut self, env: EnvId, id: u32, response: Response) {
        let Some(&token) = self.env_conn.get(&env) else {
            return;
        };
        let Some(Conn::Env(c)) = self.conns.get_mut(&token) else {
            return;
        };
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(token);
        }
        let frame = Frame { id, body: response };
        match c.building.push_response(&frame) {
            Ok(()) => {}
            Err(warren_proto::EncodeError::PacketFull { .. }) => {
                if !c.building.is_empty() {
                    let packet = c.building.take();
                    c.backlog += packet.len();
                    c.out.push_back(packet);
                }
                if let Err(warren_proto::EncodeError::PacketFull { .. }) =
                    c.building.push_response(&frame)
                {
                    // Larger than the daemon's usual packets (a large delivery): it travels
                    // alone, in a packet of up to the protocol's limit, which every frame fits.
                    let mut alone = PacketBuilder::new();
                    match alone.push_response(&frame) {
                        Ok(()) => {
                            let packet = alone.take();
                            c.backlog += packet.len();
                            c.out.push_back(packet);
                        }
                        Err(e) => tracing::warn!("cannot encode a response to {env:?}: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot encode a response: {e}"),
        }
    }

    fn flush_all(&mut self) {
        let mut tokens = std::mem::take(&mut self.dirty);
        for &t in &tokens {
            if let Some(Conn::Env(c)) = self.conns.get_mut(&t) {
                c.dirty = false;
                if !c.building.is_empty() {
                    let packet = c.building.take();
                    c.backlog += packet.len();
                    c.out.push_back(packet);
                }
                if !c.out.is_empty() {
                    self.flush(t);
                }
            }
        }
        // Keep the list's allocation for the next turn.
        tokens.clear();
        self.dirty = tokens;
    }

    fn flush(&mut self, token: u64) {
        let Some(Conn::Env(c)) = self.conns.get_mut(&token) else {
            return;
        };
        while let Some(p) = c.out.front() {
            match rustix::net::send(&c.fd, p, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
                Ok(_) => {
                    c.backlog -= p.len();
                    c.out.pop_front();
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    c.out.clear();
                    c.backlog = 0;
                    break;
                }
            }
        }
        let want = !c.out.is_empty();
        if want != c.want_write {
            c.want_write = want;
            let (flags, data) = token_event(token, want);
            let _ = epoll::modify(&self.epoll, &c.fd, data, flags);
        }
        if c.backlog > MAX_BACKLOG {
            self.drop_env_conn(token, Some("the environment does not read its responses"));
        }
    }
}
