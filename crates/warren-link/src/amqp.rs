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

use std::collections::{BTreeMap, HashSet};
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

async fn run(config: BrokerConfig, mut commands: mpsc::UnboundedReceiver<Command>, out: Out) {
    let mut unconfirmed: Unconfirmed = BTreeMap::new();
    let mut generation = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        generation += 1;
        match session(&config, &mut commands, &out, &mut unconfirmed, generation).await {
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

struct Publisher<'a> {
    ch: Channel,
    config: &'a BrokerConfig,
    declared: HashSet<String>,
    confirms: mpsc::UnboundedSender<(String, u64, lapin::Result<Confirmation>)>,
}

impl Publisher<'_> {
    async fn publish(&mut self, dest: &str, seq: u64, bytes: &[u8]) -> lapin::Result<()> {
        if !self.declared.contains(dest) {
            declare(&self.ch, dest, self.config.queue_type).await?;
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
            .await?;
        let tx = self.confirms.clone();
        let dest = dest.to_owned();
        tokio::spawn(async move {
            let r = confirm.await;
            let _ = tx.send((dest, seq, r));
        });
        Ok(())
    }
}

async fn session(
    config: &BrokerConfig,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    out: &Out,
    unconfirmed: &mut Unconfirmed,
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
        config,
        declared: HashSet::new(),
        confirms: conf_tx,
    };
    // Everything not confirmed goes out again, in order; receivers drop what they already have.
    let again: Vec<(String, u64)> = unconfirmed.keys().cloned().collect();
    for (dest, seq) in again {
        let bytes = unconfirmed[&(dest.clone(), seq)].clone();
        if let Err(e) = publisher.publish(&dest, seq, &bytes).await {
            return fail("publish", e);
        }
    }
    loop {
        tokio::select! {
            c = commands.recv() => match c {
                None | Some(Command::Stop) => {
                    let _ = conn.close(200, "warren daemon stopping".into()).await;
                    return Ended::Stop;
                }
                Some(Command::Publish { dest, seq, bytes }) => {
                    if let Err(e) = publisher.publish(&dest, seq, &bytes).await {
                        unconfirmed.insert((dest, seq), bytes);
                        return fail("publish", e);
                    }
                    unconfirmed.insert((dest, seq), bytes);
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
                let Some((dest, seq, r)) = r else { continue };
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
