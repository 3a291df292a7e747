//! `warren-spawn-bench`: the spawn benchmark of issue 16, run inside environments by
//! `bench/spawn.sh`. One binary plays every part:
//!
//! * `latency TEMPLATE N`: the parent. N times, one after the other: spawn a child of TEMPLATE
//!   passing the parent's own mailbox as the initial name `out`, and wait for the child's first
//!   message. Prints one JSON line with the percentiles of spawn → `Spawned` and of spawn →
//!   first message, in milliseconds, every spawn -> first message time, and the rate of whole
//!   cycles (spawn, one message, the child's `down` notice) per second.
//! * `live TEMPLATE N`: the parent of N idle children: spawns them, prints `{"ready":N}` and
//!   waits (the script measures the host's memory meanwhile, then stops the parent, which stops
//!   its linked children).
//! * `child`: sends `hi` to its initial name `out` and exits.
//! * `idle`: waits for a message that never comes.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use warren_client::{Client, Message, Spawn};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1), arg(2)) {
        (Some("latency"), Some(t), Some(n)) => latency(t, n.parse().context("N")?),
        (Some("live"), Some(t), Some(n)) => live(t, n.parse().context("N")?),
        (Some("child"), _, _) => child(),
        (Some("idle"), _, _) => idle(),
        _ => bail!("usage: warren-spawn-bench latency TEMPLATE N | live TEMPLATE N | child | idle"),
    }
}

/// The `p`th percentile (0..=100) of sorted `v`, in milliseconds.
fn pct(v: &[Duration], p: usize) -> f64 {
    let i = ((v.len().saturating_sub(1)) * p) / 100;
    v[i].as_secs_f64() * 1000.0
}

fn spawn_req(k: &mut Client, template: &str) -> anyhow::Result<Spawn> {
    let (handle, _) = k.lookup(&format!("template:{template}"))?;
    Ok(Spawn {
        handle,
        names: vec![("out".into(), warren_client::DEFAULT_MAILBOX)],
        ..Spawn::default()
    })
}

fn latency(template: &str, n: usize) -> anyhow::Result<()> {
    let mut k = Client::connect()?;
    let req = spawn_req(&mut k, template)?;
    let (mut answered, mut first) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut downs = 0usize;
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        let s = k.spawn(req.clone())?;
        answered.push(t0.elapsed());
        loop {
            let d = k.recv(Some(Duration::from_secs(30)))?;
            if d.down.is_some() {
                downs += 1;
                continue;
            }
            if d.from.env == s.child {
                first.push(t0.elapsed());
                // The child's handles go (its link stays), so the table does not fill up
                // however many cycles are run.
                k.drop_handle(s.mailbox)?;
                k.drop_handle(s.control)?;
                break;
            }
        }
    }
    // Every child's down notice, so that the rate counts whole cycles.
    while downs < n {
        let d = k.recv(Some(Duration::from_secs(30)))?;
        downs += usize::from(d.down.is_some());
    }
    let total = start.elapsed();
    answered.sort();
    first.sort();
    println!(
        "{}",
        serde_json::json!({
            "mode": "spawn-latency",
            "n": n,
            "spawned_ms": { "p50": pct(&answered, 50), "p90": pct(&answered, 90), "p99": pct(&answered, 99) },
            "first_message_ms": { "p50": pct(&first, 50), "p90": pct(&first, 90), "p99": pct(&first, 99) },
            "cycles_per_s": n as f64 / total.as_secs_f64(),
            // Every cycle's spawn -> first message, for a percentile over several runs.
            "first_message_samples_ms": first.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

fn live(template: &str, n: usize) -> anyhow::Result<()> {
    let mut k = Client::connect()?;
    let mut req = spawn_req(&mut k, template)?;
    req.names.clear();
    let start = Instant::now();
    for _ in 0..n {
        // Only the link is kept: the handles go, so the table does not fill up.
        let s = k.spawn(req.clone())?;
        k.drop_handle(s.mailbox)?;
        k.drop_handle(s.control)?;
    }
    println!(
        "{}",
        serde_json::json!({ "ready": n, "spawn_s": start.elapsed().as_secs_f64() })
    );
    loop {
        let _ = k.recv(None);
    }
}

fn child() -> anyhow::Result<()> {
    let mut k = Client::connect()?;
    let (out, _) = k.lookup("out")?;
    k.send(
        out,
        Message {
            body: b"hi".to_vec(),
            ..Message::default()
        },
    )?;
    Ok(())
}

fn idle() -> anyhow::Result<()> {
    let mut k = Client::connect()?;
    loop {
        let _ = k.recv(None);
    }
}
