//! The daemon's side of federation: glue between the kernel's `Forward`/`Settled` actions and
//! `inject`, the journals of `warren-link`, and its broker driver thread.
//!
//! Per turn of the daemon loop:
//!
//! 1. Driver events are taken when its eventfd fires ([`Link::on_wake`]): confirmations shrink
//!    the outbox; each delivery is opened (signature against the trusted keys, addressed to
//!    this host), admitted by the [`Inbox`] (new, redelivered, already settled, or early), and
//!    its messages queue for injection, in order per sending host.
//! 2. [`Link::tick`] injects what can be injected (a message for an environment that has not
//!    registered yet waits, up to [`HOLD_MS`], and holds back the later messages of its stream).
//! 3. While the kernel's actions are drained, `Forward`s collect into one batch per destination
//!    host ([`Link::forward`]) and `Settled`s are journalled ([`Link::settled`]).
//! 4. [`Link::commit`], before any response is flushed to an environment: the new batches are
//!    sealed, numbered and appended to the outbox, both journals are synced (one `fdatasync`
//!    each), and only then are the batches handed to the driver and the broker acknowledged.
//!    So a sender is answered `ok` only for a message that is on disk, and a receiver is given
//!    a message only once its settlement is on disk (a redelivery of it will be dropped).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::Context;
use warren_kernel::{AuditRecord, Import, Inbound, InjectError, Kernel, Outbound};
use warren_link::amqp::{BrokerConfig, Command, Driver, Event, QueueType, redact};
use warren_link::inbox::{Arrival, Inbox, Settlement, StreamId};
use warren_link::store::{InboxLog, Outbox};
use warren_link::trust::{Trust, TrustedKeys, format_public, load_or_create_host_key};
use warren_link::wire::{self, Batch, Envelope, Token};
use warren_link::{SigningKey, VerifyingKey};
use warren_spec::HostSpec;

use super::gate::{self, ATTEST_MAILBOX, Gate, KIND_HEADER};
use crate::control::ControlResponse;

/// How long a message for a mailbox that does not exist (yet) waits before it is refused.
pub const HOLD_MS: u64 = 30_000;
/// Most unacknowledged batches the broker hands this host at once.
const PREFETCH: u16 = 256;
/// Most messages per batch.
const BATCH_MAX: usize = 4096;
/// Most bytes of messages per batch. A turn's messages for one host are cut into batches of at
/// most this much (a batch holds at least one message, and one message is at most ~1.1 MiB):
/// far below the broker's `max_message_size` (16 MiB by default since RabbitMQ 4.0, 128 MiB
/// before), which refuses a bigger publish and would stall the host's whole link.
const BATCH_MAX_BYTES: usize = 8 << 20;
/// Most driver events taken in one turn of the daemon loop, and most messages injected: a
/// burst (a reconnection brings everything the broker held) is spread over several short
/// turns, so that environments' requests and timeouts are served in between.
const EVENTS_PER_TURN: usize = 64;
const INJECT_PER_TURN: usize = 4096;
/// How long (seconds) batches held ahead of a gap in a sender's numbering wait for the missing
/// ones, unless `[host] gap_wait` says otherwise. Held batches count in the [`PREFETCH`]
/// window shared by every sender, so a batch that never comes (deleted from the queue) must
/// not hold the window for ever.
const DEFAULT_GAP_WAIT_S: u64 = 60;

/// A batch admitted, and the delivery that carries it now.
struct Admitted {
    tag: u64,
    generation: u64,
    count: u32,
}

/// A batch the inbox released for admission: its number, the batch with the delivery that
/// carries it (tag, connection), and the indices of its messages already settled.
type Released = (u64, (Batch, u64, u64), std::collections::BTreeSet<u32>);

/// One message of an admitted batch, waiting to be injected.
struct Waiting {
    stream: StreamId,
    seq: u64,
    index: u32,
    from_host: String,
    env: Envelope,
    since: u64,
}

/// Federation state of a running daemon.
pub struct Link {
    host: String,
    key: SigningKey,
    public: VerifyingKey,
    trust: TrustedKeys,
    url: String,
    driver: Driver,
    outbox: Outbox,
    inbox: Inbox<(Batch, u64, u64)>,
    inbox_log: InboxLog,
    /// Messages forwarded this turn, per destination host.
    forwards: Vec<(String, Vec<Envelope>)>,
    /// Batches sealed this turn, handed to the driver after the commit.
    sealed: Vec<(String, u64, Vec<u8>)>,
    /// Acknowledgements to send after the commit.
    acks: Vec<(u64, u64)>,
    admitted: HashMap<(StreamId, u64), Admitted>,
    tickets: HashMap<u64, (StreamId, u64, u32)>,
    next_ticket: u64,
    waiting: VecDeque<Waiting>,
    up: Option<bool>,
    audits: Vec<AuditRecord>,
    /// The daemon's clock (milliseconds since this instant), read afresh before injecting.
    clock: std::time::Instant,
    /// Injectable messages were left for the next turn.
    more: bool,
    /// The attestation mailbox and the verdicts on peer hosts (`gate.rs`).
    gate: Gate,
    /// How long batches held ahead of a gap wait for it before it is given up (ms).
    gap_wait: u64,
}

/// Where the `[host]` section of the last manifest the kernel started with is kept, so a
/// restarted kernel (without a manifest) federates the same way.
fn saved_host(state_dir: &Path) -> PathBuf {
    state_dir.join("link").join("host.json")
}

/// Keeps the `[host]` section the kernel started with, for a restart without a manifest (or
/// forgets it, for a manifest without a broker).
pub fn remember_host(state_dir: &Path, host: &HostSpec) -> anyhow::Result<()> {
    let path = saved_host(state_dir);
    if host.broker.is_none() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let json = serde_json::json!({
        "name": host.name, "broker": host.broker, "broker_ca": host.broker_ca, "key": host.key,
        "trusted_keys": host.trusted_keys, "queue_type": host.queue_type,
        "gap_wait": host.gap_wait,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("write {}", path.display()))
}

/// The `[host]` section to use: the manifest's, else the one the kernel last started with.
pub fn host_spec(state_dir: &Path, from_manifest: Option<&HostSpec>) -> anyhow::Result<HostSpec> {
    let path = saved_host(state_dir);
    match from_manifest {
        Some(h) => Ok(h.clone()),
        None => match std::fs::read(&path) {
            Ok(b) => {
                let v: serde_json::Value = serde_json::from_slice(&b)
                    .with_context(|| format!("read {}", path.display()))?;
                let s = |k: &str| v[k].as_str().map(str::to_owned);
                Ok(HostSpec {
                    name: s("name"),
                    broker: s("broker"),
                    broker_ca: s("broker_ca").map(PathBuf::from),
                    key: s("key").map(PathBuf::from),
                    trusted_keys: s("trusted_keys").map(PathBuf::from),
                    queue_type: s("queue_type"),
                    gap_wait: v["gap_wait"].as_u64(),
                })
            }
            Err(_) => Ok(HostSpec::default()),
        },
    }
}

impl Link {
    /// Starts federation if the `[host]` section names a broker.
    pub fn start(
        host: &HostSpec,
        state_dir: &Path,
        clock: std::time::Instant,
    ) -> anyhow::Result<Option<Link>> {
        let Some(url) = host.broker.clone() else {
            return Ok(None);
        };
        let name = host
            .name
            .clone()
            .context("[host] broker needs [host] name")?;
        // What only reads comes first, so that a mistake there leaves nothing behind.
        let trusted = host
            .trusted_keys
            .as_ref()
            .context("[host] broker needs [host] trusted_keys")?;
        let trust = TrustedKeys::load(trusted).context("the trusted keys")?;
        let tls_ca = match &host.broker_ca {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("read the broker CA {}", p.display()))?,
            ),
            None => None,
        };
        let key_path = host
            .key
            .clone()
            .unwrap_or_else(|| state_dir.join("link").join("host.key"));
        let key = load_or_create_host_key(&key_path).context("the host key")?;
        let dir = state_dir.join("link");
        let outbox = Outbox::open(&dir.join("outbox.log"))?;
        let mut inbox = Inbox::new();
        let inbox_log = InboxLog::open(&dir.join("inbox.log"), &mut inbox)?;
        let queue_type = match host.queue_type.as_deref() {
            Some("quorum") => QueueType::Quorum,
            _ => QueueType::Classic,
        };
        let driver = Driver::start(BrokerConfig {
            host: name.clone(),
            url: url.clone(),
            tls_ca,
            queue_type,
            prefetch: PREFETCH,
        })
        .context("start the link thread")?;
        for (dest, seq, bytes) in outbox.unconfirmed() {
            driver.send(Command::Publish {
                dest: dest.to_owned(),
                seq,
                bytes: bytes.to_vec(),
            });
        }
        let wake = driver
            .wake_fd()
            .try_clone_to_owned()
            .context("the link's eventfd")?;
        let gate = Gate::open(state_dir, wake)?;
        let public = key.verifying_key();
        tracing::info!(
            "federation: host {name} ({}), broker {}, {} batch(es) waiting in the outbox, trusted: {}",
            format_public(&public),
            redact(&url),
            outbox.len(),
            trust.hosts().collect::<Vec<_>>().join(", ")
        );
        Ok(Some(Link {
            host: name,
            key,
            public,
            trust,
            url,
            driver,
            outbox,
            inbox,
            inbox_log,
            forwards: Vec::new(),
            sealed: Vec::new(),
            acks: Vec::new(),
            admitted: HashMap::new(),
            tickets: HashMap::new(),
            next_ticket: 1,
            waiting: VecDeque::new(),
            up: None,
            audits: Vec::new(),
            clock,
            more: false,
            gate,
            gap_wait: host.gap_wait.unwrap_or(DEFAULT_GAP_WAIT_S) * 1000,
        }))
    }

    /// This host's name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The hosts in the trusted keys, this one excepted: the only hosts sends may go to.
    pub fn trusted_hosts(&self) -> Vec<String> {
        self.trust
            .hosts()
            .filter(|h| *h != self.host)
            .map(str::to_owned)
            .collect()
    }

    /// The eventfd the daemon's epoll set watches.
    pub fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.driver.wake_fd()
    }

    /// Audit records produced outside the kernel (forged or misaddressed batches).
    pub fn take_audits(&mut self) -> Vec<AuditRecord> {
        std::mem::take(&mut self.audits)
    }

    /// A status summary for `warren` status requests.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "host": self.host,
            "broker": redact(&self.url),
            "connected": self.up == Some(true),
            "outbox": self.outbox.len(),
            "waiting": self.waiting.len(),
            "in_kernel": self.tickets.len(),
            "gate": self.gate.view(),
            "peers": self.trust.hosts().filter(|h| *h != self.host).collect::<Vec<_>>(),
        })
    }

    /// `attest-peer`: asks `host`'s attestation mailbox for a quote over `nonce`; the control
    /// connection `token` is answered when it comes, or after `timeout_ms`.
    pub fn attest_peer(
        &mut self,
        token: u64,
        host: &str,
        nonce: Vec<u8>,
        timeout_ms: u64,
        now: u64,
    ) -> Result<(), String> {
        self.check_peer(host)?;
        if nonce.is_empty() || nonce.len() > gate::MAX_NONCE {
            return Err(format!(
                "the nonce must be 1 to {} bytes, not {}",
                gate::MAX_NONCE,
                nonce.len()
            ));
        }
        let env = self.gate.ask(token, host, nonce, now + timeout_ms);
        self.push_forward(host, env);
        Ok(())
    }

    fn check_peer(&self, host: &str) -> Result<(), String> {
        if host == self.host {
            return Err(format!("{host:?} is this host, not a peer"));
        }
        if !self.trust.hosts().any(|h| h == host) {
            return Err(format!(
                "host {host:?} is not in the trusted keys ({})",
                self.trust.hosts().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }

    /// `gate`: a verifier's verdict on `host` (see `gate.rs`): cuts it off or lets it back in,
    /// in the kernel too, audited when its state changes.
    #[allow(clippy::too_many_arguments)] // the fields of the `gate` control request
    pub fn verdict(
        &mut self,
        kernel: &mut Kernel,
        host: &str,
        pass: bool,
        code: &str,
        reason: &str,
        valid_ms: Option<u64>,
        now: u64,
    ) -> Result<serde_json::Value, String> {
        self.check_peer(host)?;
        if !pass && code.is_empty() {
            return Err("a failing verdict needs a reason code".into());
        }
        let (data, change) = self.gate.verdict(host, pass, code, reason, valid_ms);
        match change {
            Some(Some(text)) => self.cut(kernel, host, text, code, now),
            Some(None) => {
                kernel.set_cut_off(host, None);
                tracing::info!("federation: host {host} let back in: attestation passed");
                self.audits.push(AuditRecord {
                    at: now,
                    env: "-".into(),
                    op: "attest",
                    handle: None,
                    target: Some(format!("host {host}")),
                    code: "readmitted",
                    reason: "a quote passed verification; the host is let back in".into(),
                    repeated: None,
                });
            }
            None => {}
        }
        Ok(data)
    }

    fn cut(&mut self, kernel: &mut Kernel, host: &str, text: String, code: &str, now: u64) {
        tracing::warn!("federation: host {host} {text}");
        kernel.set_cut_off(host, Some(format!("host {host} is {text}")));
        self.audits.push(AuditRecord {
            at: now,
            env: "-".into(),
            op: "attest",
            handle: None,
            target: Some(format!("host {host}")),
            code: "cut-off",
            reason: format!("{text} [{code}]"),
            repeated: None,
        });
    }

    /// Control answers that became ready (`attest-peer`).
    pub fn take_control_answers(&mut self) -> Vec<(u64, ControlResponse)> {
        self.gate.take_answers()
    }

    /// The remote mailboxes the kernel has proxies for, with their host's gate state, for
    /// `warren ps` and `inspect`.
    pub fn remote_view(&self, kernel: &Kernel) -> serde_json::Value {
        let gates = self.gate.view();
        let rows: Vec<serde_json::Value> = kernel
            .remote_addresses()
            .into_iter()
            .map(|a| {
                let host = a.rsplit_once('@').map_or("", |(_, h)| h).to_owned();
                let g = &gates[&host];
                let state = match self.gate.cut_off(&host) {
                    Some(t) => t.to_owned(),
                    None => g["shown"].as_str().unwrap_or("admitted").to_owned(),
                };
                serde_json::json!({ "address": a, "host": host, "state": state, "gate": g })
            })
            .collect();
        serde_json::Value::Array(rows)
    }

    /// Queues `env` for `dest` in this turn's batch.
    fn push_forward(&mut self, dest: &str, env: Envelope) {
        match self.forwards.iter_mut().find(|(d, _)| d == dest) {
            Some((_, v)) => v.push(env),
            None => self.forwards.push((dest.to_owned(), vec![env])),
        }
    }

    /// The gate's timers and finished quotes (every turn).
    fn gate_turn(&mut self, kernel: &mut Kernel, now: u64) {
        for (host, text) in self.gate.unsynced() {
            kernel.set_cut_off(&host, Some(format!("host {host} is {text}")));
        }
        for (host, text) in self.gate.expire(now) {
            self.cut(kernel, &host, text, "expired", now);
        }
        for (host, env) in self.gate.finished_quotes() {
            self.push_forward(&host, env);
        }
    }

    /// A message to the attestation mailbox (settled by the caller).
    fn on_attest_message(&mut self, w: &Waiting, now: u64) {
        let kind = gate::header(&w.env, KIND_HEADER);
        let from = &w.from_host;
        if w.env.from_env != ATTEST_MAILBOX {
            // An environment's message (a `may_send` name `warren.attest@HOST`): the
            // attestation mailbox speaks only to other hosts' kernels.
            let target = format!("{}@{from} -> {ATTEST_MAILBOX}", w.env.from_env);
            let why = "only a host's kernel may use the attestation mailbox".to_owned();
            self.audit(now, "-", target, "no-right", why);
            return;
        }
        // The shape the table in federation.md gives every attestation message: no via, caps
        // or reply, and a request carries the asker's correlation (else no answer could be
        // matched to it).
        let malformed = if w.env.via.is_some() || !w.env.caps.is_empty() || w.env.reply.is_some() {
            Some("a message to warren.attest carries no via, caps or reply".to_owned())
        } else if kind.as_deref() == Some("request") && w.env.correlation.is_none() {
            Some("a quote request needs a correlation".to_owned())
        } else {
            None
        };
        if let Some(why) = malformed {
            let target = format!("{}@{from} -> {ATTEST_MAILBOX}", w.env.from_env);
            self.audit(now, "-", target, "bad-request", why);
            return;
        }
        match kind.as_deref() {
            Some("request") => {
                if let Some(refusal) = self.gate.quote_for(from, &w.env) {
                    self.push_forward(&from.clone(), refusal);
                }
            }
            Some("quote" | "error") => {
                if !self.gate.answered(from, &w.env) {
                    tracing::info!(
                        "federation: an attestation answer from {from} that nobody waits for \
                         (correlation {:?}; late or replayed)",
                        w.env.correlation
                    );
                }
            }
            other => {
                let target = format!("{}@{from} -> {ATTEST_MAILBOX}", w.env.from_env);
                let why = match other {
                    Some(k) => format!("{KIND_HEADER}: {k:?} is not request, quote or error"),
                    None => format!("no {KIND_HEADER} header (request, quote or error)"),
                };
                self.audit(now, "-", target, "bad-request", why);
            }
        }
    }

    /// Audits an inbound refusal. `to` is the mailbox it was for (or `-`): the record's `env`
    /// is the receiving environment it names, or `-` (the same rule as the kernel's).
    fn audit(&mut self, now: u64, to: &str, target: String, code: &'static str, reason: String) {
        tracing::warn!("federation: refused {target}: {reason}");
        self.audits.push(AuditRecord {
            at: now,
            env: warren_kernel::receiving_env(to).to_owned(),
            op: "inbound",
            handle: None,
            target: Some(target),
            code,
            reason,
            repeated: None,
        });
    }

    /// Driver events: see the module documentation.
    pub fn on_wake(&mut self, kernel: &mut Kernel, now: u64) {
        // What is left stays signalled on the eventfd: the next turn takes it.
        for _ in 0..EVENTS_PER_TURN {
            let Some(ev) = self.driver.poll() else { break };
            match ev {
                Event::Connected { generation } => {
                    tracing::info!(
                        "federation: connected to the broker (connection {generation}); {} batch(es) to confirm",
                        self.outbox.len()
                    );
                    self.up = Some(true);
                }
                Event::Down { error } => {
                    if self.up != Some(false) {
                        tracing::error!(
                            "federation: the broker is unreachable: {error}; sends are kept in the \
                             outbox ({} batch(es)) and resume when it comes back",
                            self.outbox.len()
                        );
                    }
                    self.up = Some(false);
                }
                Event::Refused { dest, error, retry } => {
                    tracing::error!(
                        "federation: the broker refuses batches for host {dest}: {error}; they \
                         are kept in the outbox and tried again in {} s (other hosts are not \
                         affected)",
                        retry.as_secs()
                    );
                }
                Event::Confirmed { dest, seq } => {
                    if let Err(e) = self.outbox.confirmed(&dest, seq) {
                        tracing::error!("federation: outbox: {e}");
                    }
                }
                Event::Delivery {
                    bytes,
                    tag,
                    generation,
                } => self.on_delivery(&bytes, tag, generation, now),
            }
        }
        // After the driver's events, which reset the shared eventfd: a quote finished since
        // is seen now or signals the eventfd again.
        self.gate_turn(kernel, now);
        self.tick(kernel, now);
    }

    fn on_delivery(&mut self, bytes: &[u8], tag: u64, generation: u64, now: u64) {
        let batch = match wire::open_batch(bytes, &self.trust) {
            Ok(b) => b,
            Err(e) => {
                self.audit(now, "-", "batch".into(), "forged", e.to_string());
                self.acks.push((tag, generation));
                return;
            }
        };
        if batch.to_host != self.host {
            let why = format!(
                "a batch for host {:?} arrived at {:?}",
                batch.to_host, self.host
            );
            let target = format!("batch {} from {}", batch.seq, batch.from_host);
            self.audit(now, "-", target, "misrouted", why);
            self.acks.push((tag, generation));
            return;
        }
        let stream = StreamId {
            host: batch.from_host.clone(),
            epoch: batch.epoch,
        };
        let (seq, count) = (batch.seq, batch.messages.len() as u32);
        if seq > 1 && self.inbox.is_new(&stream) {
            // A stream first seen in the middle (this host's inbox journal was lost, or the
            // sender's first batches were refused): journal where it starts, or after a
            // restart it would wait for the batches before forever.
            if let Err(e) = self.inbox_log.started(&stream, seq) {
                tracing::error!("federation: inbox journal: {e}");
            }
        }
        match self
            .inbox
            .arrive(&stream, seq, count, (batch, tag, generation))
        {
            Arrival::Ready(list) => self.admit(&stream, list, now),
            Arrival::Open((_, tag, generation)) => {
                // A redelivery of a batch still in the kernel: acknowledge through this copy.
                if let Some(a) = self.admitted.get_mut(&(stream, seq)) {
                    a.tag = tag;
                    a.generation = generation;
                }
            }
            Arrival::Done(_) => self.acks.push((tag, generation)),
            Arrival::Held(old) => {
                if let Some((_, tag, generation)) = old {
                    self.acks.push((tag, generation));
                }
            }
        }
    }

    /// Admits batches the inbox released (in order): their messages wait for injection.
    fn admit(&mut self, stream: &StreamId, list: Vec<Released>, now: u64) {
        for (seq, (batch, tag, generation), skip) in list {
            let count = batch.messages.len() as u32;
            self.inbox.set_count(stream, seq, count);
            let admitted = Admitted {
                tag,
                generation,
                count,
            };
            self.admitted.insert((stream.clone(), seq), admitted);
            if count == 0 {
                // Journalled like any settlement, or a restart would wait for it.
                self.settle(stream, seq, 0);
                continue;
            }
            for (i, env) in batch.messages.into_iter().enumerate() {
                let index = i as u32;
                if skip.contains(&index) {
                    continue;
                }
                self.waiting.push_back(Waiting {
                    stream: stream.clone(),
                    seq,
                    index,
                    from_host: batch.from_host.clone(),
                    env,
                    since: now,
                });
            }
        }
    }

    /// Gives up on gaps that held batches back for `gap_wait`: audited (`lost`: the missing
    /// batches, by number), and the held batches are admitted.
    fn skip_gaps(&mut self, now: u64) {
        for sk in self.inbox.skip_gaps(now, self.gap_wait) {
            let (first, last) = sk.missing;
            let which = if first == last {
                format!("batch {first}")
            } else {
                format!("batches {first}-{last}")
            };
            let target = format!(
                "{which} from {} (epoch {})",
                sk.stream.host, sk.stream.epoch
            );
            let why = format!(
                "{which} of {}'s stream never arrived within {} s while {} later one(s) did; \
                 those are delivered now, and a missing batch that arrives after all is \
                 delivered then, out of order",
                sk.stream.host,
                self.gap_wait / 1000,
                sk.ready.len()
            );
            self.audit(now, "-", target, "lost", why);
            self.admit(&sk.stream, sk.ready, now);
        }
    }

    /// Injects waiting messages, oldest first; a stream whose head cannot be injected yet
    /// keeps the rest of it waiting.
    pub fn tick(&mut self, kernel: &mut Kernel, now: u64) {
        self.gate_turn(kernel, now);
        self.skip_gaps(now);
        self.more = false;
        if self.waiting.is_empty() {
            return;
        }
        // Receives whose deadline has passed by the daemon's clock are answered `timeout`
        // before anything is injected: a message must not go to a receive its client is
        // about to give up on (the client would drop the late answer).
        let now = now.max(self.clock.elapsed().as_millis() as u64);
        kernel.handle_timeout(now);
        let mut blocked: Vec<StreamId> = Vec::new();
        let mut keep = VecDeque::new();
        let mut injected = 0;
        while let Some(w) = self.waiting.pop_front() {
            if blocked.contains(&w.stream) {
                keep.push_back(w);
                continue;
            }
            if injected == INJECT_PER_TURN {
                self.more = true;
                keep.push_back(w);
                continue;
            }
            injected += 1;
            if w.env.to == ATTEST_MAILBOX && w.env.via.is_none() {
                self.on_attest_message(&w, now);
                self.settle(&w.stream, w.seq, w.index);
                continue;
            }
            match self.inject(kernel, &w, now) {
                Ok(()) => {}
                Err(Some(to)) if now.saturating_sub(w.since) < HOLD_MS => {
                    let _ = to;
                    blocked.push(w.stream.clone());
                    keep.push_back(w);
                }
                Err(Some(to)) => {
                    let target = format!("{}@{} -> {to}", w.env.from_env, w.from_host);
                    let why = format!("no mailbox {to:?} on this host within {} s", HOLD_MS / 1000);
                    self.audit(now, &to, target, "not-found", why);
                    self.settle(&w.stream, w.seq, w.index);
                }
                Err(None) => self.settle(&w.stream, w.seq, w.index),
            }
        }
        self.waiting = keep;
    }

    /// When the daemon should wake for the link even without an event: at once if injectable
    /// messages were left, else when the oldest held message's wait ends.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.more {
            return Some(0);
        }
        let held = self
            .waiting
            .iter()
            .map(|w| w.since + HOLD_MS)
            .chain(self.inbox.gap_deadline(self.gap_wait))
            .min();
        let now = self.clock.elapsed().as_millis() as u64;
        match (held, self.gate.next_deadline(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Injects one message. `Err(Some(mailbox))`: no such mailbox yet; `Err(None)`: refused
    /// for good (audited).
    fn inject(&mut self, kernel: &mut Kernel, w: &Waiting, now: u64) -> Result<(), Option<String>> {
        let from = format!("{}@{}", w.env.from_env, w.from_host);
        if let Some(text) = self.gate.cut_off(&w.from_host) {
            // Refused for good, not held: what a host sent while it failed attestation is
            // not delivered after it is let back in.
            let why = format!("host {} is {text}", w.from_host);
            let to = w.env.to.clone();
            self.audit(now, &to, format!("{from} -> {to}"), "cut-off", why);
            return Err(None);
        }
        // The names a sending kernel writes (federation.md, "Message fields"): a peer that
        // writes anything else is refused, not presented as a sender no policy foresaw.
        if let Err(why) = warren_kernel::check_label(&w.env.from_env) {
            let to = w.env.to.clone();
            let why = format!(
                "from_env {:?} is not an environment name: {why}",
                w.env.from_env
            );
            self.audit(now, &to, format!("{from} -> {to}"), "bad-request", why);
            return Err(None);
        }
        if w.env.via.is_none() {
            if let Err(why) = check_mailbox_name(&w.env.to) {
                let to = w.env.to.clone();
                let why = format!("to {to:?} is not a mailbox name (ENV or ENV/MAILBOX): {why}");
                self.audit(now, "-", format!("{from} -> {to}"), "bad-request", why);
                return Err(None);
            }
        }
        let mut to = w.env.to.clone();
        let mut via = None;
        if let Some(t) = &w.env.via {
            match wire::open_token(t, &self.public) {
                Ok(tok) if tok.issuer == self.host && tok.bearer == from => {
                    to = tok.target.clone();
                    via = Some(tok.id);
                }
                Ok(tok) => {
                    let why = format!(
                        "token {} of {} is bound to {}, not {from}",
                        tok.id, tok.issuer, tok.bearer
                    );
                    self.audit(
                        now,
                        &tok.target,
                        format!("{from} -> {}", tok.target),
                        "forged",
                        why,
                    );
                    return Err(None);
                }
                Err(e) => {
                    self.audit(now, &to, format!("{from} -> {to}"), "forged", e.to_string());
                    return Err(None);
                }
            }
        }
        let mut imports = Vec::with_capacity(w.env.caps.len());
        let mut reply = None;
        let all = w.env.caps.iter().map(|c| (c, false));
        // Tokens passed along are the sending host's own (a host can only export its own
        // mailboxes), signed with its key, and bound to the environment that receives them.
        // (Worked out only for a message that carries tokens: most carry none.)
        let (issuer_key, bearer) = if w.env.caps.is_empty() && w.env.reply.is_none() {
            (None, String::new())
        } else {
            let bearer = format!("{}@{}", warren_kernel::receiving_env(&to), self.host);
            (self.trust.verifying_key(&w.from_host).ok(), bearer)
        };
        for (bytes, is_reply) in all.chain(w.env.reply.iter().map(|c| (c, true))) {
            let opened = match &issuer_key {
                Some(key) => wire::open_token(bytes, key),
                None => wire::peek_token(bytes),
            };
            match opened {
                Ok(tok) if tok.issuer == w.from_host && tok.bearer != bearer => {
                    let why = format!(
                        "token {} of {} is bound to {}, not to {bearer} that receives it",
                        tok.id, tok.issuer, tok.bearer
                    );
                    self.audit(now, &to, format!("{from} -> {to}"), "forged", why);
                    return Err(None);
                }
                Ok(tok) if tok.issuer == w.from_host => {
                    let import = Import {
                        address: format!("{}@{}", tok.target, tok.issuer),
                        token: bytes.as_slice().into(),
                        rights: warren_proto::Rights(u32::from(tok.rights)),
                        uses: tok.uses,
                    };
                    if is_reply {
                        reply = Some(import);
                    } else {
                        imports.push(import);
                    }
                }
                Ok(tok) => {
                    let why = format!("{} passed a token issued by {}", w.from_host, tok.issuer);
                    self.audit(now, &to, format!("{from} -> {to}"), "forged", why);
                    return Err(None);
                }
                Err(e) => {
                    self.audit(now, &to, format!("{from} -> {to}"), "forged", e.to_string());
                    return Err(None);
                }
            }
        }
        let ticket = self.next_ticket;
        let msg = Inbound {
            to: to.clone(),
            from,
            headers: w.env.headers.clone(),
            correlation: w.env.correlation,
            body: w.env.body.clone(),
            via,
            imports,
            reply,
            ticket,
        };
        match kernel.inject(msg, now) {
            Ok(()) => {
                self.next_ticket += 1;
                self.tickets
                    .insert(ticket, (w.stream.clone(), w.seq, w.index));
                Ok(())
            }
            Err(InjectError::NoMailbox { to }) => Err(Some(to)),
            Err(InjectError::Refused { .. }) => Err(None),
        }
    }

    fn settle(&mut self, stream: &StreamId, seq: u64, index: u32) {
        let record = Settlement {
            stream: stream.clone(),
            seq,
            index,
            count: self.batch_count(stream, seq),
        };
        if let Err(e) = self.inbox_log.settled(&record) {
            tracing::error!("federation: inbox journal: {e}");
        }
        if self.inbox.settle(stream, seq, index) {
            self.batch_settled(stream, seq);
        }
    }

    fn batch_count(&self, stream: &StreamId, seq: u64) -> u32 {
        self.admitted
            .get(&(stream.clone(), seq))
            .map_or(1, |a| a.count)
    }

    fn batch_settled(&mut self, stream: &StreamId, seq: u64) {
        if let Some(a) = self.admitted.remove(&(stream.clone(), seq)) {
            self.acks.push((a.tag, a.generation));
        }
    }

    /// The kernel settled an injected message (`Action::Settled`).
    pub fn settled(&mut self, ticket: u64) {
        if let Some((stream, seq, index)) = self.tickets.remove(&ticket) {
            self.settle(&stream, seq, index);
        }
    }

    /// The kernel forwarded a message (`Action::Forward`): it joins this turn's batch for its
    /// destination host.
    pub fn forward(&mut self, out: Outbound) {
        let Some((mailbox, dest)) = out.to.split_once('@') else {
            return;
        };
        let bearer_env = mailbox.split('/').next().unwrap_or(mailbox);
        let bearer = format!("{bearer_env}@{dest}");
        let token = |e: &warren_kernel::Export| {
            wire::seal_token(
                &Token {
                    issuer: self.host.clone(),
                    id: e.id,
                    target: e.designation.clone(),
                    rights: (e.rights.0 & 0xff) as u8,
                    uses: e.uses,
                    bearer: bearer.clone(),
                },
                &self.key,
            )
        };
        let env = Envelope {
            to: mailbox.to_owned(),
            from_env: out.from,
            correlation: out.correlation,
            headers: out.headers,
            body: out.body,
            via: out.token.map(|t| t.to_vec()),
            caps: out.exports.iter().map(token).collect(),
            reply: out.reply.as_ref().map(token),
        };
        self.push_forward(dest, env);
    }

    /// Seals this turn's batches into the outbox and syncs both journals; then hands the
    /// batches to the driver and acknowledges settled batches. Call before responses are
    /// flushed to environments.
    pub fn commit(&mut self) {
        for (dest, mut msgs) in std::mem::take(&mut self.forwards) {
            while !msgs.is_empty() {
                let rest = msgs.split_off(batch_len(&msgs));
                let seq = self.outbox.take_seq(&dest);
                let batch = Batch {
                    from_host: self.host.clone(),
                    to_host: dest.clone(),
                    epoch: self.outbox.epoch(),
                    seq,
                    messages: msgs,
                };
                let bytes = wire::seal_batch(&batch, &self.key);
                if let Err(e) = self.outbox.push(&dest, seq, bytes.clone()) {
                    tracing::error!("federation: outbox: {e}");
                }
                self.sealed.push((dest.clone(), seq, bytes));
                msgs = rest;
            }
        }
        if let Err(e) = self.outbox.commit() {
            tracing::error!("federation: cannot sync the outbox: {e}");
        }
        if let Err(e) = self.inbox_log.commit() {
            tracing::error!("federation: cannot sync the inbox journal: {e}");
        }
        for (dest, seq, bytes) in self.sealed.drain(..) {
            self.driver.send(Command::Publish { dest, seq, bytes });
        }
        for (tag, generation) in self.acks.drain(..) {
            self.driver.send(Command::Ack { tag, generation });
        }
    }
}

/// How many of `msgs` (in order) the next batch takes: at most [`BATCH_MAX`] messages and
/// [`BATCH_MAX_BYTES`] bytes of them, and at least one.
fn batch_len(msgs: &[Envelope]) -> usize {
    let mut bytes = 0;
    for (i, m) in msgs.iter().take(BATCH_MAX).enumerate() {
        bytes += wire::message_size(m);
        if bytes > BATCH_MAX_BYTES {
            return i.max(1);
        }
    }
    msgs.len().min(BATCH_MAX)
}

/// A mailbox name as a message's `to` carries it: `env` or `env/mailbox`, each a label.
fn check_mailbox_name(to: &str) -> Result<(), String> {
    let (env, mailbox) = match to.split_once('/') {
        Some((e, m)) => (e, Some(m)),
        None => (to, None),
    };
    warren_kernel::check_label(env).map_err(|why| format!("the environment part: {why}"))?;
    if let Some(m) = mailbox {
        warren_kernel::check_label(m).map_err(|why| format!("the mailbox part: {why}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: usize) -> Envelope {
        Envelope {
            to: "db".into(),
            from_env: "web".into(),
            body: vec![0; body],
            ..Envelope::default()
        }
    }

    #[test]
    fn a_turns_messages_are_cut_into_batches_by_count_and_by_bytes() {
        // Small messages: by count.
        let small: Vec<_> = (0..BATCH_MAX + 5).map(|_| msg(10)).collect();
        assert_eq!(batch_len(&small), BATCH_MAX);
        assert_eq!(batch_len(&small[BATCH_MAX..]), 5);
        // The largest bodies: by bytes, never over the cap, never empty.
        let big: Vec<_> = (0..40).map(|_| msg(983_040)).collect();
        let mut rest = &big[..];
        let mut batches = Vec::new();
        while !rest.is_empty() {
            let n = batch_len(rest);
            let bytes: usize = rest[..n].iter().map(wire::message_size).sum();
            assert!(
                n >= 1 && bytes <= BATCH_MAX_BYTES,
                "{n} messages, {bytes} bytes"
            );
            batches.push(n);
            rest = &rest[n..];
        }
        assert_eq!(batches.iter().sum::<usize>(), 40);
        assert_eq!(batches[0], BATCH_MAX_BYTES / wire::message_size(&big[0]));
        // One message over the cap on its own still leaves, alone.
        let huge = [msg(BATCH_MAX_BYTES + 1), msg(1)];
        assert_eq!(batch_len(&huge), 1);
    }

    #[test]
    fn to_must_be_a_mailbox_name() {
        for good in ["db", "db/inbox", "a-1/b-2"] {
            assert!(check_mailbox_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "DB",
            "db@beta",
            "db/",
            "/inbox",
            "db/in/box",
            "-db",
            "db/x.y",
        ] {
            assert!(check_mailbox_name(bad).is_err(), "{bad}");
        }
    }
}
