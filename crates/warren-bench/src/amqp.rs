//! RabbitMQ on loopback, measured the same way: AMQP 0-9-1 through `lapin` on tokio, two
//! connections in one process (one per side, as two services would have), transient messages
//! on non-durable auto-delete queues, no publisher confirms, automatic acknowledgement — the
//! broker's fastest mode, so the comparison flatters RabbitMQ.
//!
//! Round trip: publish to a ping queue; an echoing consumer on the other connection publishes
//! each body to a pong queue; the pinger waits for it. Throughput: one connection publishes
//! `count` messages to a queue the other consumes, timed from the first arrival to the last.

use std::time::Instant;

use anyhow::{Context, bail};
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

use crate::record::{PAYLOAD, Record, pin};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start tokio")
}

async fn channel(url: &str) -> anyhow::Result<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connect to RabbitMQ at {url}"))?;
    let ch = conn.create_channel().await.context("open a channel")?;
    Ok((conn, ch))
}

async fn declare(ch: &Channel, name: &str) -> anyhow::Result<()> {
    let opts = QueueDeclareOptions {
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(name.into(), opts, FieldTable::default())
        .await
        .with_context(|| format!("declare the queue {name}"))?;
    Ok(())
}

async fn consume(ch: &Channel, queue: &str, tag: &str) -> anyhow::Result<Consumer> {
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    ch.basic_consume(queue.into(), tag.into(), opts, FieldTable::default())
        .await
        .with_context(|| format!("consume {queue}"))
}

async fn publish(ch: &Channel, queue: &str, body: &[u8]) -> anyhow::Result<()> {
    // Without confirms the returned confirmation is already settled: not awaited.
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .with_context(|| format!("publish to {queue}"))?;
    Ok(())
}

/// `amqp-pingpong`.
pub fn pingpong(
    url: &str,
    iters: usize,
    warmup: usize,
    cpu: Option<usize>,
    round: u32,
) -> anyhow::Result<Record> {
    pin(cpu)?;
    let tag = std::process::id();
    let (ping, pong) = (
        format!("warren-bench-ping-{tag}"),
        format!("warren-bench-pong-{tag}"),
    );
    let mut samples = runtime()?.block_on(async {
        let (conn_a, a) = channel(url).await?;
        let (conn_b, b) = channel(url).await?;
        declare(&a, &ping).await?;
        declare(&a, &pong).await?;
        let mut echo_in = consume(&b, &ping, "echo").await?;
        let pong_q = pong.clone();
        let echo = tokio::spawn(async move {
            while let Some(d) = echo_in.next().await {
                let d = d.context("echo delivery")?;
                publish(&b, &pong_q, &d.data).await?;
            }
            anyhow::Ok(())
        });
        let mut answers = consume(&a, &pong, "pinger").await?;
        let mut samples = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            let t = Instant::now();
            publish(&a, &ping, &PAYLOAD).await?;
            let d = answers
                .next()
                .await
                .context("the pong stream ended")?
                .context("pong delivery")?;
            let dt = t.elapsed();
            if d.data.len() != PAYLOAD.len() {
                bail!("a pong of {} bytes", d.data.len());
            }
            if i >= warmup {
                samples.push(dt.as_nanos() as u64);
            }
        }
        echo.abort();
        let _ = conn_a.close(200, "done".into()).await;
        let _ = conn_b.close(200, "done".into()).await;
        anyhow::Ok(samples)
    })?;
    Ok(
        Record::new("rabbitmq", "rtt", "transient, no confirms", cpu, round)
            .with_rtts(&mut samples),
    )
}

/// `amqp-throughput`.
pub fn throughput(url: &str, count: u64, cpu: Option<usize>, round: u32) -> anyhow::Result<Record> {
    pin(cpu)?;
    let queue = format!("warren-bench-thru-{}", std::process::id());
    let (got, elapsed) = runtime()?.block_on(async {
        let (conn_p, p) = channel(url).await?;
        let (conn_c, c) = channel(url).await?;
        declare(&p, &queue).await?;
        let mut incoming = consume(&c, &queue, "counter").await?;
        let counter = tokio::spawn(async move {
            let mut got = 0u64;
            let mut first: Option<(Instant, u64)> = None;
            while got < count {
                let d = incoming
                    .next()
                    .await
                    .context("the delivery stream ended")?
                    .context("delivery")?;
                if d.data.len() != PAYLOAD.len() {
                    bail!("a message of {} bytes", d.data.len());
                }
                got += 1;
                first.get_or_insert((Instant::now(), got));
            }
            let (t0, before) = first.context("nothing arrived")?;
            anyhow::Ok((got - before, t0.elapsed()))
        });
        for _ in 0..count {
            publish(&p, &queue, &PAYLOAD).await?;
        }
        let result = counter.await.context("the counting task")??;
        let _ = conn_p.close(200, "done".into()).await;
        let _ = conn_c.close(200, "done".into()).await;
        anyhow::Ok(result)
    })?;
    Ok(Record::new(
        "rabbitmq",
        "throughput",
        "transient, no confirms",
        cpu,
        round,
    )
    .with_rate(got, elapsed))
}
