//! `warren-fed-baseline`: the bare-lapin side of `bench/federation.sh`, with the settings
//! Warren's federation uses: a durable queue, persistent messages, publisher confirms
//! (pipelined: every publish's confirmation is awaited on its own task), manual
//! acknowledgements with a prefetch of 256. Bodies are 64 bytes.
//!
//! ```text
//! warren-fed-baseline throughput URL COUNT   # one publisher, one consumer, two connections
//! warren-fed-baseline rtt URL COUNT          # publish, an echo consumer republishes, await it
//! ```
//! Throughput is timed from the first arrival to the last (as the Warren receiver times it);
//! each prints one line: `BASE throughput msgs_per_s=...` or `BASE rtt n=... p50_us=... p99_us=...`.
#![forbid(unsafe_code)]

use std::time::Instant;

use anyhow::{Context, bail};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

const BODY: [u8; 64] = [b'x'; 64];

async fn channel(url: &str) -> anyhow::Result<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connect to {url}"))?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.basic_qos(256, BasicQosOptions::default()).await?;
    Ok((conn, ch))
}

async fn declare(ch: &Channel, q: &str) -> anyhow::Result<()> {
    let opts = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(q.into(), opts, FieldTable::default())
        .await?;
    Ok(())
}

async fn consume(ch: &Channel, q: &str) -> anyhow::Result<Consumer> {
    Ok(ch
        .basic_consume(
            q.into(),
            format!("base-{q}").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?)
}

/// Publishes persistently; the confirmation is awaited on a task of its own (returned, so
/// that the end of a run can wait for the last one).
async fn publish(
    ch: &Channel,
    q: &str,
    body: &[u8],
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let confirm = ch
        .basic_publish(
            "".into(),
            q.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?;
    Ok(tokio::spawn(async move {
        if let Err(e) = confirm.await {
            eprintln!("confirm failed: {e}");
        }
    }))
}

async fn throughput(url: &str, count: u64) -> anyhow::Result<f64> {
    let q = format!("warren-fed-base-{}", std::process::id());
    let (pc, p) = channel(url).await?;
    let (cc, c) = channel(url).await?;
    declare(&p, &q).await?;
    let mut incoming = consume(&c, &q).await?;
    let counter = tokio::spawn(async move {
        let mut first = None;
        for i in 0..count {
            let d = incoming.next().await.context("stream ended")??;
            if d.data.len() != BODY.len() {
                bail!("a body of {} bytes", d.data.len());
            }
            d.ack(BasicAckOptions::default()).await?;
            if i == 0 {
                first = Some(Instant::now());
            }
        }
        let secs = first.context("nothing arrived")?.elapsed().as_secs_f64();
        anyhow::Ok((count - 1) as f64 / secs)
    });
    let mut last = None;
    for _ in 0..count {
        last = Some(publish(&p, &q, &BODY).await?);
    }
    let rate = counter.await??;
    if let Some(l) = last {
        let _ = l.await;
    }
    p.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await?;
    let _ = pc.close(200, "done".into()).await;
    let _ = cc.close(200, "done".into()).await;
    Ok(rate)
}

async fn rtt(url: &str, count: usize) -> anyhow::Result<Vec<u64>> {
    let tag = std::process::id();
    let (ping, pong) = (
        format!("warren-fed-ping-{tag}"),
        format!("warren-fed-pong-{tag}"),
    );
    let (ac, a) = channel(url).await?;
    let (bc, b) = channel(url).await?;
    declare(&a, &ping).await?;
    declare(&a, &pong).await?;
    let mut echo_in = consume(&b, &ping).await?;
    let pong_q = pong.clone();
    let echo = tokio::spawn(async move {
        while let Some(d) = echo_in.next().await {
            let d = d?;
            drop(publish(&b, &pong_q, &d.data).await?);
            d.ack(BasicAckOptions::default()).await?;
        }
        anyhow::Ok(())
    });
    let mut answers = consume(&a, &pong).await?;
    let mut rtts = Vec::with_capacity(count);
    let mut last = None;
    for i in 0..count + count / 10 {
        let t = Instant::now();
        last = Some(publish(&a, &ping, &BODY).await?);
        let d = answers.next().await.context("stream ended")??;
        d.ack(BasicAckOptions::default()).await?;
        if i >= count / 10 {
            rtts.push(t.elapsed().as_micros() as u64);
        }
    }
    if let Some(l) = last {
        let _ = l.await;
    }
    // Let the echo's last confirmation arrive before its channel closes.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    echo.abort();
    for q in [&ping, &pong] {
        a.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    let _ = ac.close(200, "done".into()).await;
    let _ = bc.close(200, "done".into()).await;
    Ok(rtts)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["throughput", url, count] => {
            let rate = rt.block_on(throughput(url, count.parse()?))?;
            println!("BASE throughput msgs_per_s={rate:.0}");
        }
        ["rtt", url, count] => {
            let mut r = rt.block_on(rtt(url, count.parse()?))?;
            r.sort_unstable();
            let p = |q: f64| r[((r.len() as f64 - 1.0) * q) as usize];
            println!(
                "BASE rtt n={} p50_us={} p99_us={}",
                r.len(),
                p(0.5),
                p(0.99)
            );
        }
        _ => bail!("usage: warren-fed-baseline throughput|rtt URL COUNT"),
    }
    Ok(())
}
