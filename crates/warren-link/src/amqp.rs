//! The broker driver: one thread of the daemon running a single-threaded tokio runtime with
//! `lapin`, bridged to the daemon's epoll loop by two channels and an eventfd.
//!
//! The daemon sends [`Command`]s (publish a sealed batch, acknowledge a delivery); the driver
//! answers with [`Event`]s (connected, down, confirmed, a delivery) and bumps the eventfd, which
//! the daemon's epoll set watches. The driver keeps every batch it was asked to publish until
//! the broker confirms it, and publishes them all again, in order, after each reconnection.
//!
//! On the broker, each host consumes from its own durable queue `warren.<host>` (classic, or
//! quorum on a cluster); a sender declares the destination's queue too (idempotent), so a batch
//! for a host that has not started yet waits in its queue. Batches are persistent
//! (`delivery_mode = 2`) and published `mandatory` on a channel in confirm mode; the consumer
//! acknowledges manually, with a bounded prefetch.
//!
//! Acknowledgements name a connection generation: a delivery tag of an earlier connection means
//! nothing on the new one (the broker has requeued that delivery), so it is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::mpsc;

/// The kind of queue each host consumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    /// A classic durable queue (one broker node).
    Classic,
    /// A quorum queue (replicated across a RabbitMQ cluster).
    Quorum,
}

/// How to reach the broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This host's name: it consumes `warren.<host>`.
    pub host: String,
    /// `amqp://user:password@host:port/vhost` or `amqps://...`.
    pub url: String,
    /// PEM certificates to trust for `amqps` (the broker's CA), instead of the system roots.
    pub tls_ca: Option<String>,
    /// The queue type.
    pub queue_type: QueueType,
    /// Most unacknowledged batches the broker may hand this host at once.
    pub prefetch: u16,
}

/// The queue of a host.
pub fn queue_name(host: &str) -> String {
    format!("warren.{host}")
}

/// The URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// What the daemon asks of the driver.
#[derive(Debug)]
pub enum Command {
    /// Publish a sealed batch to `dest`'s queue and keep it until the broker confirms it.
    Publish {
        /// The destination host.
        dest: String,
        /// The batch's sequence number (for the confirmation).
        seq: u64,
        /// The sealed batch.
        bytes: Vec<u8>,
    },
    /// Acknowledge a delivery of connection `generation`.
    Ack {
        /// The delivery tag.
        tag: u64,
        /// The connection it came on.
        generation: u64,
    },
    /// Close the connection and end the thread.
    Stop,
}

/// What the driver tells the daemon.
#[derive(Debug)]
pub enum Event {
    /// Connected (again): connection number `generation`.
    Connected {
        /// The connection's number.
        generation: u64,
    },
    /// The broker is unreachable or the connection failed; the driver retries.
    Down {
        /// Why, for the log.
        error: String,
    },
    /// The broker refused to take batches for `dest` (its queue exists with other arguments,
    /// or this host may not use it): they stay in the outbox and are published again after
    /// `retry`, while every other destination and this host's own queue go on.
    Refused {
        /// The destination host.
        dest: String,
        /// The broker's reason.
        error: String,
        /// When the driver tries that destination again.
        retry: Duration,
    },
    /// The broker confirmed batch `seq` to `dest`: it is durable there.
    Confirmed {
        /// The destination host.
        dest: String,
        /// The batch.
        seq: u64,
    },
    /// A batch arrived for this host.
    Delivery {
        /// The sealed batch.
        bytes: Vec<u8>,
        /// Its delivery tag.
        tag: u64,
        /// The connection it came on.
        generation: u64,
    },
}

/// The daemon's end of the driver.
pub struct Driver {
    commands: mpsc::UnboundedSender<Command>,
    events: std_mpsc::Receiver<Event>,
    wake: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Driver {
    /// Starts the driver thread. The returned eventfd becomes readable when events wait.
    pub fn start(config: BrokerConfig) -> std::io::Result<Driver> {
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        let theirs = wake.try_clone()?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("warren-link".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ev_tx.send(Event::Down {
                            error: format!("cannot start the link runtime: {e}"),
                        });
                        return;
                    }
                };
                let out = Out {
                    tx: ev_tx,
                    wake: theirs,
                };
                rt.block_on(run(config, cmd_rx, out));
            })?;
        Ok(Driver {
            commands: cmd_tx,
            events: ev_rx,
            wake,
            thread: Some(thread),
        })
    }

    /// The eventfd to watch.
    pub fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Sends a command (ignored once the thread has ended).
    pub fn send(&self, c: Command) {
        let _ = self.commands.send(c);
    }

    /// Takes the next waiting event, resetting the eventfd when none is left.
    pub fn poll(&self) -> Option<Event> {
        match self.events.try_recv() {
            Ok(e) => Some(e),
            Err(_) => {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(&self.wake, &mut b);
                // An event may have raced in between: look once more.
                self.events.try_recv().ok()
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Out {
    tx: std_mpsc::Sender<Event>,
    wake: OwnedFd,
}

impl Out {
    fn send(&self, e: Event) {
        if self.tx.send(e).is_ok() {
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        }
    }
}

enum Ended {
    Stop,
    Failed(String),
}

/// Batches published and not yet confirmed, by (destination, seq).
type Unconfirmed = BTreeMap<(String, u64), Vec<u8>>;

/// Destinations whose batches the broker refused, each with when to try it again and the
/// wait after that one.
type Parked = HashMap<String, (tokio::time::Instant, Duration)>;

/// The first wait before a refused destination is tried again, and the longest.
const PARK_FIRST: Duration = Duration::from_secs(1);
const PARK_MAX: Duration = Duration::from_secs(60);

async fn run(config: BrokerConfig, mut commands: mpsc::UnboundedReceiver<Command>, out: Out) {
    let mut unconfirmed: Unconfirmed = BTreeMap::new();
    let mut parked: Parked = HashMap::new();
    let mut generation = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        generation += 1;
        let session = session(
            &config,
            &mut commands,
            &out,
            &mut unconfirmed,
            &mut parked,
            generation,
        );
        match session.await {
            Ended::Stop => return,
            Ended::Failed(error) => {
                out.send(Event::Down {
                    error: format!("broker {}: {error}", redact(&config.url)),
                });
            }
        }
        // Wait before reconnecting, still taking commands.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                c = commands.recv() => match c {
                    None | Some(Command::Stop) => return,
                    Some(Command::Publish { dest, seq, bytes }) => {
                        unconfirmed.insert((dest, seq), bytes);
                    }
                    Some(Command::Ack { .. }) => {} // that connection is gone
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn queue_args(t: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    if t == QueueType::Quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    args
}

async fn declare(ch: &Channel, host: &str, t: QueueType) -> lapin::Result<()> {
    let opts = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue_name(host).into(), opts, queue_args(t))
        .await?;
    Ok(())
}

/// A publisher confirmation: destination, batch, the channel it was published on, the result.
type Confirm = (String, u64, u64, lapin::Result<Confirmation>);

struct Publisher<'a> {
    ch: Channel,
    /// The channel's number: confirmations of an earlier (closed) channel are ignored, as what
    /// they were for is published again on the new one.
    chan: u64,
    config: &'a BrokerConfig,
    declared: HashSet<String>,
    confirms: mpsc::UnboundedSender<Confirm>,
}

/// Why a publish failed.
enum PubError {
    /// The broker refused the destination's queue (a channel error: the queue exists with
    /// other arguments, access refused, ...): only that destination is affected.
    Refused(String),
    /// Anything else: the connection is in doubt.
    Failed(lapin::Error),
}

/// Whether `e` is the broker closing the channel over what was asked (an AMQP soft error),
/// as opposed to a broken connection.
fn is_refusal(e: &lapin::Error) -> bool {
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(p)
            if matches!(p.kind(), lapin::protocol::AMQPErrorKind::Soft(_))
    )
}

impl Publisher<'_> {
    async fn publish(&mut self, dest: &str, seq: u64, bytes: &[u8]) -> Result<(), PubError> {
        if !self.declared.contains(dest) {
            if let Err(e) = declare(&self.ch, dest, self.config.queue_type).await {
                return Err(if is_refusal(&e) {
                    PubError::Refused(format!("declare {}: {e}", queue_name(dest)))
                } else {
                    PubError::Failed(e)
                });
            }
            self.declared.insert(dest.to_owned());
        }
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(format!("{}:{seq}", self.config.host).into());
        let opts = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = self
            .ch
            .basic_publish("".into(), queue_name(dest).into(), opts, bytes, props)
            .await
            .map_err(PubError::Failed)?;
        let tx = self.confirms.clone();
        let dest = dest.to_owned();
        let chan = self.chan;
        tokio::spawn(async move {
            let r = confirm.await;
            let _ = tx.send((dest, seq, chan, r));
        });
        Ok(())
    }

    /// A new publishing channel after the broker closed the last one.
    async fn reopen(&mut self, conn: &Connection) -> lapin::Result<()> {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        self.ch = ch;
        self.chan += 1;
        Ok(())
    }

    /// Publishes every unconfirmed batch of the destinations not parked, in order. A refused
    /// destination is parked (and reported) and the rest go on, on a new channel.
    async fn publish_all(
        &mut self,
        conn: &Connection,
        unconfirmed: &Unconfirmed,
        parked: &mut Parked,
        out: &Out,
    ) -> Result<(), lapin::Error> {
        'again: loop {
            for ((dest, seq), bytes) in unconfirmed {
                if parked.contains_key(dest) {
                    continue;
                }
                match self.publish(dest, *seq, bytes).await {
                    Ok(()) => {}
                    Err(PubError::Failed(e)) => return Err(e),
                    Err(PubError::Refused(error)) => {
                        park(parked, dest, error, out);
                        // The broker closed the channel: what was published on it is in
                        // doubt, so everything not parked goes out again on a new one.
                        self.reopen(conn).await?;
                        continue 'again;
                    }
                }
            }
            return Ok(());
        }
    }
}

/// Parks `dest` after the broker refused it: the next try waits twice as long as the last
/// (from [`PARK_FIRST`] to [`PARK_MAX`]).
fn park(parked: &mut Parked, dest: &str, error: String, out: &Out) {
    let wait = parked
        .get(dest)
        .map_or(PARK_FIRST, |&(_, w)| (w * 2).min(PARK_MAX));
    parked.insert(dest.to_owned(), (tokio::time::Instant::now() + wait, wait));
    out.send(Event::Refused {
        dest: dest.to_owned(),
        error,
        retry: wait,
    });
}

async fn session(
    config: &BrokerConfig,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    out: &Out,
    unconfirmed: &mut Unconfirmed,
    parked: &mut Parked,
    generation: u64,
) -> Ended {
    let fail = |what: &str, e: lapin::Error| Ended::Failed(format!("{what}: {e}"));
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: config.tls_ca.clone(),
    };
    let runtime = match lapin::runtime::default_runtime() {
        Ok(r) => r,
        Err(e) => return fail("runtime", e),
    };
    let conn = match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect_with_config(&config.url, ConnectionProperties::default(), tls, runtime),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail("cannot connect", e),
        Err(_) => return Ended::Failed("cannot connect: timed out after 10 s".into()),
    };
    let setup = async {
        let pub_ch = conn.create_channel().await?;
        pub_ch
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let sub_ch = conn.create_channel().await?;
        declare(&sub_ch, &config.host, config.queue_type).await?;
        sub_ch
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = sub_ch
            .basic_consume(
                queue_name(&config.host).into(),
                format!("warren-{}", config.host).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>((pub_ch, sub_ch, consumer))
    };
    let (pub_ch, sub_ch, mut consumer) = match setup.await {
        Ok(x) => x,
        Err(e) => return fail("cannot set up channels", e),
    };
    out.send(Event::Connected { generation });
    let (conf_tx, mut conf_rx) = mpsc::unbounded_channel();
    let mut publisher = Publisher {
        ch: pub_ch,
        chan: 0,
        config,
        declared: HashSet::new(),
        confirms: conf_tx,
    };
    // Everything not confirmed goes out again, in order; receivers drop what they already have.
    // A destination the broker refused keeps its wait.
    if let Err(e) = publisher.publish_all(&conn, unconfirmed, parked, out).await {
        return fail("publish", e);
    }
    loop {
        let next_retry = parked.values().map(|&(at, _)| at).min();
        let retry = async {
            match next_retry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = retry => {
                // Destinations whose wait is over are tried again (their wait is kept, to
                // double if the broker refuses again).
                let now = tokio::time::Instant::now();
                let due: Vec<String> = parked
                    .iter()
                    .filter(|(_, (at, _))| *at <= now)
                    .map(|(d, _)| d.clone())
                    .collect();
                let mut waits = Vec::new();
                for d in &due {
                    if let Some((_, w)) = parked.remove(d) {
                        waits.push((d.clone(), w));
                    }
                }
                let retried: Unconfirmed = unconfirmed
                    .iter()
                    .filter(|((d, _), _)| due.contains(d))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                // Keep the waits so that a second refusal doubles them.
                let mut keep: Parked = HashMap::new();
                for (d, w) in waits {
                    keep.insert(d, (now, w));
                }
                if let Err(e) = publisher
                    .publish_all(&conn, &retried, &mut keep, out)
                    .await
                {
                    return fail("publish", e);
                }
                // `keep` now holds the refused again (with their new waits) and the
                // others with a wait that is already over: only the first stay parked.
                for (d, (at, w)) in keep {
                    if at > now {
                        parked.insert(d, (at, w));
                    }
                }
            }
            c = commands.recv() => match c {
                None | Some(Command::Stop) => {
                    let _ = conn.close(200, "warren daemon stopping".into()).await;
                    return Ended::Stop;
                }
                Some(Command::Publish { dest, seq, bytes }) => {
                    let parked_now = parked.contains_key(&dest);
                    let r = if parked_now {
                        Ok(())
                    } else {
                        publisher.publish(&dest, seq, &bytes).await
                    };
                    unconfirmed.insert((dest.clone(), seq), bytes);
                    match r {
                        Ok(()) => {}
                        Err(PubError::Failed(e)) => return fail("publish", e),
                        Err(PubError::Refused(error)) => {
                            park(parked, &dest, error, out);
                            if let Err(e) = publisher.reopen(&conn).await {
                                return fail("reopen the publishing channel", e);
                            }
                            if let Err(e) = publisher
                                .publish_all(&conn, unconfirmed, parked, out)
                                .await
                            {
                                return fail("publish", e);
                            }
                        }
                    }
                }
                Some(Command::Ack { tag, generation: g }) => {
                    if g == generation {
                        if let Err(e) = sub_ch.basic_ack(tag, BasicAckOptions::default()).await {
                            return fail("acknowledge", e);
                        }
                    }
                }
            },
            d = consumer.next() => match d {
                Some(Ok(delivery)) => out.send(Event::Delivery {
                    bytes: delivery.data,
                    tag: delivery.delivery_tag,
                    generation,
                }),
                Some(Err(e)) => return fail("consume", e),
                None => return Ended::Failed("the broker cancelled the consumer".into()),
            },
            r = conf_rx.recv() => {
                let Some((dest, seq, chan, r)) = r else { continue };
                if chan != publisher.chan {
                    continue; // published again on the current channel
                }
                match r {
                    Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
                        if unconfirmed.remove(&(dest.clone(), seq)).is_some() {
                            out.send(Event::Confirmed { dest, seq });
                        }
                    }
                    Ok(other) => {
                        // Returned (no such queue) or refused: try again shortly, in order.
                        tracing::warn!("batch {seq} to {dest} not taken by the broker ({other:?}); retrying");
                        return Ended::Failed(format!("batch {seq} to {dest} was not accepted"));
                    }
                    Err(e) => return fail("publisher confirm", e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            redact("amqp://warren:s3cret@127.0.0.1:5672/%2f"),
            "amqp://warren:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
    }
}
