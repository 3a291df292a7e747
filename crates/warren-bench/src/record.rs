//! What one measurement prints: a [`Record`] as one line of JSON on standard output, and the
//! arithmetic to make one (percentiles of round trips, rates, CPU pinning).
//!
//! Every mode of `warren-ipc-bench` prints exactly one record line, whichever process measured
//! (the orchestrating process for the floor and relay, the program inside an environment for
//! Warren, the AMQP client for RabbitMQ), so `bench/ipc.sh` can gather them from anywhere and
//! `warren-ipc-bench report` can put them side by side.

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// What carried the messages: `floor` (two processes, one socketpair), `relay` (a plain
    /// forwarding process in the middle), `warren` (two environments through the kernel),
    /// `rabbitmq` (two AMQP connections through the broker), `idle` (memory per mailbox).
    pub system: String,
    /// `rtt`, `throughput` or `memory`.
    pub test: String,
    /// How the system was used, e.g. `1 per packet`, `64 per packet`, `pipelined`.
    pub variant: String,
    /// `pinned` (every process on one CPU) or `unpinned`.
    pub placement: String,
    /// The round of `bench/ipc.sh` it belongs to (rounds are interleaved).
    #[serde(default)]
    pub round: u32,
    /// Round trips timed, or messages counted, or mailboxes registered.
    pub count: u64,
    /// Median round trip, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// 99th-percentile round trip, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Messages per second received (from the first arrival to the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
    /// Bytes per idle mailbox or environment, for `memory` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_each: Option<f64>,
    /// Anything else worth keeping (raw counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

impl Record {
    /// A record of `system`/`test`/`variant`, placed as `cpu` says.
    pub fn new(system: &str, test: &str, variant: &str, cpu: Option<usize>, round: u32) -> Self {
        Record {
            system: system.into(),
            test: test.into(),
            variant: variant.into(),
            placement: placement(cpu).into(),
            round,
            ..Record::default()
        }
    }

    /// Fills in the round-trip percentiles from `samples` (nanoseconds; reordered).
    pub fn with_rtts(mut self, samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        self.count = samples.len() as u64;
        self.p50_us = Some(percentile(samples, 50.0) as f64 / 1000.0);
        self.p99_us = Some(percentile(samples, 99.0) as f64 / 1000.0);
        self
    }

    /// Fills in a rate: `messages` received in `elapsed`.
    pub fn with_rate(mut self, messages: u64, elapsed: Duration) -> Self {
        self.count = messages;
        self.msgs_per_s = Some(messages as f64 / elapsed.as_secs_f64().max(1e-9));
        self
    }

    /// Adds this process's CPU time since `start` (from [`cpu_ns`]) per counted message, in
    /// nanoseconds, as `extra.cpu_ns_per_msg`.
    pub fn with_cpu_since(mut self, start: Option<u64>) -> Self {
        if let (Some(a), Some(b)) = (start, cpu_ns()) {
            let per = b.saturating_sub(a) as f64 / self.count.max(1) as f64;
            let mut extra = self.extra.take().unwrap_or_else(|| serde_json::json!({}));
            extra["cpu_ns_per_msg"] = per.into();
            self.extra = Some(extra);
        }
        self
    }

    /// Prints the record as one JSON line on standard output.
    pub fn print(&self) -> anyhow::Result<()> {
        println!(
            "{}",
            serde_json::to_string(self).context("serialise a record")?
        );
        Ok(())
    }
}

/// `pinned` when every process of the measurement runs on one CPU, else `unpinned`.
pub fn placement(cpu: Option<usize>) -> &'static str {
    if cpu.is_some() { "pinned" } else { "unpinned" }
}

/// The `pct` percentile of sorted `samples` (nearest rank); 0 for no samples.
pub fn percentile(sorted: &[u64], pct: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Pins the calling process (all its future threads) to `cpu`, if given.
pub fn pin(cpu: Option<usize>) -> anyhow::Result<()> {
    if let Some(cpu) = cpu {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        rustix::thread::sched_setaffinity(None, &set)
            .with_context(|| format!("pin to CPU {cpu}"))?;
    }
    Ok(())
}

/// Nanoseconds this process has spent on a CPU so far (`/proc/self/schedstat`), if readable.
pub fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The 64-byte payload every benchmark sends.
pub const PAYLOAD: [u8; 64] = *b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn a_record_survives_its_json_line() {
        let mut s = vec![3000, 1000, 2000];
        let r = Record::new("relay", "rtt", "1 per packet", Some(0), 2).with_rtts(&mut s);
        assert_eq!(r.placement, "pinned");
        assert_eq!(r.p50_us, Some(2.0));
        let back: Record = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
