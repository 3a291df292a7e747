//! The kernel daemon: a thin event loop around `warren_kernel::Kernel`, and its parts.
//!
//! One thread, one `epoll` set. The loop (this file) only waits, dispatches each event to the
//! part that owns it, and ends each turn the same way: the kernel's timers, the supervisor's
//! deadlines, the federation tick, the kernel's actions drained to their owners, output flushed.
//! The parts, one job each:
//!
//! * `conn.rs`: **environment connections** (a `SOCK_SEQPACKET` pair per environment whose
//!   other end is its descriptor 3): the handshake of `docs/protocol.md` §6, fair and bounded
//!   reading (a budget of packets and frames per connection per turn; no reading while a
//!   connection's unsent answers are over its quota), answers counted before they are queued,
//!   batching into packets, and the cut-off of a reader that never reads.
//! * `control.rs`: the **admin control socket** (`<state>/kernel.sock`, root or a configured
//!   group only, checked by `SO_PEERCRED`): length-unbounded messages in tagged packets
//!   (`crate::control`), registration of `warren run` launchers, status.
//! * `supervise.rs`: the **supervisor** of managed environments (`apply`, `stop`, `rm`,
//!   restarts, re-adoption); its decisions come from `crate::supervisor`.
//! * `link.rs`: the **federation link** (when `[host]` names a broker); `gate.rs`: its
//!   **attestation mailbox** and the **gate** that cuts off hosts failing attestation.
//! * `worker.rs`: the **worker for slow jobs** (quotes), a thread of its own, answering
//!   through an eventfd.
//! * `audit.rs`: the **audit log**, rotated at a size limit.
//! * `persist.rs`: the **registry writer**, a thread that puts `managed.json` on disk so that
//!   no save waits on the file system inside a turn.
//!
//! The kernel decides; the loop only moves bytes and time.
//!
//! **Architecture Invariant:** the daemon never forks or launches: `warren run` is the launcher
//! and only receives its environment's connection from here.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use warren_kernel::{Action, EnvId, Kernel};
use warren_proto::{Frame, Request};

use crate::control;
use crate::supervisor::Registry;

mod audit;
mod conn;
mod control_conn;
mod gate;
mod helper;
mod link;
mod persist;
mod spawn;
mod supervise;
mod waiter;
mod worker;

use conn::EnvConn;
use control_conn::ControlConn;
pub(crate) use helper::take_handoff_socket;
use supervise::{Pending, Runtime};
pub(crate) use waiter::Sent;

const LISTENER: u64 = 0;
const SIGNALS: u64 = 1;
/// The federation driver's eventfd (`link.rs`); connection tokens count up from 2.
const LINK: u64 = u64::MAX;
/// The quote worker's eventfd (`worker.rs`).
const WORKER: u64 = u64::MAX - 1;
/// The launch helper's notices (`helper.rs`).
const HELPER: u64 = u64::MAX - 2;

/// The reactor's bounds, set with `warren daemon` flags (`docs/cli.md`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Packets read from one connection in one turn of the loop at most.
    pub turn_packets: usize,
    /// Frames handed to the kernel from one connection in one turn at most.
    pub turn_frames: usize,
    /// The CPU time one connection's frames may take in one turn (checked every 16 frames).
    pub turn_slice: std::time::Duration,
    /// Unsent answers (bytes) over which the daemon stops reading a connection until the
    /// environment reads.
    pub max_unsent: usize,
    /// Unsent answers (bytes) at which the daemon cuts a connection off.
    pub max_backlog: usize,
    /// The audit log's size at which it rotates.
    pub audit_max_size: u64,
    /// Rotated audit files kept.
    pub audit_keep: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            turn_packets: 16,
            turn_frames: 1024,
            turn_slice: std::time::Duration::from_micros(500),
            max_unsent: 4 << 20,
            max_backlog: 64 << 20,
            audit_max_size: 64 << 20,
            audit_keep: 4,
        }
    }
}

/// Options of `warren daemon`.
pub struct Options {
    /// The state directory.
    pub state_dir: PathBuf,
    /// A group whose members may also use the control socket.
    pub group: Option<u32>,
    /// Where denied requests are recorded.
    pub audit_log: PathBuf,
    /// The reactor's bounds.
    pub limits: Limits,
}

enum Conn {
    Control(ControlConn),
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
    /// Environment connections with input left over from their turn (a packet's remaining
    /// frames, or packets in the socket) or whose reading resumed: served next turn even
    /// without an event, after every connection with an event.
    ready: Vec<u64>,
    /// The frames of the packet being handled (kept for its allocation).
    frames: Vec<Frame<Request>>,
    next_token: u64,
    start: Instant,
    audit: audit::AuditLog,
    limits: Limits,
    /// The daemon thread's CPU clock at which the connection being served has used its turn.
    slice_end: std::time::Duration,
    /// When the connection being served next looks whether others wait (`conn.rs`).
    next_yield_check: Instant,
    /// The daemon is stopping: frames already read are acted on whatever the budgets and
    /// quotas (`conn.rs`).
    stopping: bool,
    worker: worker::Worker,
    group: Option<u32>,
    buf: Vec<u8>,
    socket_path: PathBuf,
    state_dir: PathBuf,
    exe: PathBuf,
    registry: Registry,
    /// Writes `registry` to disk off the loop (`persist.rs`).
    registry_writer: persist::RegistryWriter,
    runtime: HashMap<String, Runtime>,
    pid_tokens: IdMap<u64, String>,
    pendings: Vec<Pending>,
    /// Federation, when `[host]` names a broker.
    link: Option<link::Link>,
    /// Spawned children (`spawn.rs`).
    spawns: spawn::Spawns,
    /// The single-threaded helper that forks launchers (`helper`); `None` when it could not be
    /// started or has gone, and launchers are then executed with `Command`.
    helper: Option<helper::LaunchHelper>,
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
        // Export numbers start anywhere in [2^32, 2^62): a token another host kept from an
        // earlier kernel names a number this one never gives.
        let mut r = [0u8; 8];
        let _ = rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty());
        d.kernel
            .number_exports_from((1 << 32) | (u64::from_le_bytes(r) & ((1 << 62) - 1)));
        // Nothing is ever published for a host whose key is not trusted: its queue is anyone's
        // to read, and its answers would be refused anyway.
        d.kernel.set_peer_hosts(l.trusted_hosts());
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
        // Templates first, so that environments declaring `may_spawn` get their handles.
        let templates = m.templates.iter();
        d.declare_templates(templates.map(|(n, t)| (n.to_string(), t.clone())).collect());
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
    } else if !d.registry.templates.is_empty() {
        // No manifest: the templates last declared on this state directory.
        let templates = d.registry.templates.clone();
        d.declare_templates(templates);
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

/// The interest of connection `token`: input (and the peer's hang-up) when `readable`,
/// output room when `writable`.
fn token_event(token: u64, readable: bool, writable: bool) -> (EventFlags, EventData) {
    let mut flags = EventFlags::empty();
    if readable {
        flags |= EventFlags::IN | EventFlags::RDHUP;
    }
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
        // First, while this process has one thread and holds nothing else: the helper that
        // forks every launcher (`helper`).
        let helper = helper::LaunchHelper::start();
        if let Some(h) = &helper {
            tracing::info!("launch helper started (pid {})", h.pid());
        }
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
        if let Some(h) = &helper {
            epoll::add(
                &epoll,
                h.notice_fd(),
                EventData::new_u64(HELPER),
                EventFlags::IN | EventFlags::RDHUP,
            )?;
        }
        let audit = audit::AuditLog::open(
            &opts.audit_log,
            opts.limits.audit_max_size,
            opts.limits.audit_keep,
        )
        .with_context(|| format!("open the audit log {}", opts.audit_log.display()))?;
        let worker = worker::Worker::start(opts.state_dir.clone()).context("start the worker")?;
        epoll::add(
            &epoll,
            worker.wake_fd(),
            EventData::new_u64(WORKER),
            EventFlags::IN,
        )?;
        Ok(Daemon {
            epoll,
            listener,
            signals,
            kernel: {
                let mut k = Kernel::new(warren_kernel::Config::default());
                k.set_spawn_bounds(spawn::spawn_bounds());
                k
            },
            conns: IdMap::default(),
            env_conn: IdMap::default(),
            dirty: Vec::new(),
            ready: Vec::new(),
            frames: Vec::new(),
            next_token: 2,
            start: Instant::now(),
            audit,
            limits: opts.limits,
            slice_end: std::time::Duration::ZERO,
            next_yield_check: Instant::now(),
            stopping: false,
            worker,
            group: opts.group,
            buf: vec![0u8; warren_proto::MAX_PACKET],
            socket_path: path,
            state_dir: opts.state_dir.clone(),
            exe: std::env::current_exe().context("find the warren binary")?,
            registry: Registry::load(&opts.state_dir)?,
            registry_writer: persist::RegistryWriter::start(Registry::path(&opts.state_dir))
                .context("start the registry writer thread")?,
            runtime: HashMap::new(),
            pid_tokens: IdMap::default(),
            pendings: Vec::new(),
            link: None,
            spawns: spawn::Spawns::default(),
            helper,
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
            // Connections with input left from their turn are served without waiting.
            let deadline = if self.ready.is_empty() {
                deadline
            } else {
                Some(0)
            };
            let timeout = deadline.map(|at| {
                let ms = at.saturating_sub(self.now());
                rustix::time::Timespec {
                    tv_sec: (ms / 1000) as i64,
                    tv_nsec: ((ms % 1000) * 1_000_000) as i64,
                }
            });
            events.clear();
            let ready = std::mem::take(&mut self.ready);
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                timeout.as_ref(),
            ) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {
                    self.ready = ready;
                    continue;
                }
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
                            // Ends seen but not yet reported (a status still on its way).
                            self.settle_late_statuses();
                            // What was decided is answered (and, for federation, made durable)
                            // before the kernel goes; unread requests wait in their sockets.
                            // Audit aggregates still inside their window are written too.
                            self.kernel.flush_audit();
                            // Frames already read but left for a later turn by a budget or a
                            // quota have no later turn: they are acted on now, or their
                            // requests would go unanswered for ever (the socket no longer
                            // holds them for the next kernel).
                            self.serve_tails();
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
                    WORKER => {
                        for done in self.worker.take() {
                            self.queue_response(done.env, done.id, done.response);
                        }
                    }
                    HELPER => self.on_helper_notices(),
                    t if self.pid_tokens.contains_key(&t) => self.on_launcher_exit(t),
                    t => self.on_conn(t, flags),
                }
            }
            // The answers and deliveries for the connections served above leave before the
            // ones with input left over from their budgets take their turns, so a neighbour's
            // answer does not wait for them. With federation on, the link's commit stays once
            // per turn, after its tick.
            if self.link.is_none() {
                self.drain_actions();
                self.flush_all();
            }
            // Then input left over from last turn: heavy connections (served only from here),
            // and others whose reading resumed (unless served above already); `on_env` puts
            // what is still left on a list again.
            let mut ready = ready;
            ready.sort_unstable();
            ready.dedup();
            if ready.iter().any(|&t| self.is_heavy(t)) {
                // A flooding connection's turn is about to take this CPU for up to its budget:
                // first let run any task this turn woke here (a neighbour whose answer was
                // just written, put on this CPU by the scheduler because the daemon woke it),
                // instead of leaving it to wait behind the daemon for a scheduler slice. A
                // no-op when nothing else is runnable on this CPU.
                rustix::thread::sched_yield();
            }
            for t in ready {
                if self.is_heavy(t) || !events.iter().any(|e| e.data.u64() == t) {
                    self.on_env(t, EventFlags::empty());
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

    fn on_conn(&mut self, token: u64, flags: EventFlags) {
        match self.conns.get(&token) {
            Some(Conn::Control(_)) => self.on_control(token, flags),
            Some(Conn::Env(_)) => self.on_env(token, flags),
            None => {}
        }
    }

    fn write_audit(&mut self, rec: &warren_kernel::AuditRecord) {
        let now = self.now();
        self.audit.write(now, rec);
    }

    fn drain_actions(&mut self) {
        if let Some(l) = self.link.as_mut() {
            // The link's refusals pass the kernel's per-environment audit limit, as the
            // kernel's own do: a peer's flood of refused messages is aggregated.
            let now = self.start.elapsed().as_millis() as u64;
            for rec in l.take_audits() {
                self.kernel.record_audit(rec, now);
            }
        }
        self.dispatch_actions();
        let mut answers = Vec::new();
        if let Some(l) = self.link.as_mut() {
            // Durable before any answer leaves: see `link.rs`.
            l.commit();
            answers = l.take_control_answers();
        }
        for (token, resp) in answers {
            self.control_reply(token, resp);
        }
        self.audit.flush();
    }

    /// Hand the kernel's actions to their owners (answers are queued, not yet written).
    fn dispatch_actions(&mut self) {
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
                    // Off the loop: the answer comes back through the worker's eventfd.
                    let job = worker::Job {
                        env,
                        id,
                        name,
                        nonce,
                        data,
                    };
                    if let Err(done) = self.worker.submit(job) {
                        self.queue_response(done.env, done.id, done.response);
                    }
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
                Action::Spawn(order) => self.carry_out_spawn(&order),
                Action::Stop {
                    name, kill, why, ..
                } => self.carry_out_stop(&name, kill, &why),
            }
        }
    }
}
