//! `report`: the side-by-side tables and ratios of one run, from the records its measurements
//! printed (JSON lines; other lines are ignored).
//!
//! The machine is noisy and its latencies bimodal (a wake-up that crosses vCPUs costs about
//! 40 µs here), so `bench/ipc.sh` runs every variant once per round, interleaved, and this
//! reports the median over rounds of each figure, and each ratio as the median of the ratios
//! computed within the same round.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::record::Record;

/// The targets.
const RTT_TARGET: f64 = 1.3;
const THROUGHPUT_RATIO_TARGET: f64 = 0.5;
const THROUGHPUT_TARGET: f64 = 10e6;
const MEMORY_TARGET: f64 = 1024.0;

type Key = (String, String, String, String);

/// Records by (system, test, variant, placement), then by round.
#[derive(Default)]
pub struct Results {
    by_key: BTreeMap<Key, BTreeMap<u32, Record>>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn key(system: &str, test: &str, variant: &str, placement: &str) -> Key {
    (system.into(), test.into(), variant.into(), placement.into())
}

impl Results {
    /// Reads every record line of `paths`.
    pub fn load(paths: &[impl AsRef<Path>]) -> anyhow::Result<Results> {
        let mut r = Results::default();
        for p in paths {
            let p = p.as_ref();
            let text =
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            for line in text.lines() {
                if let Ok(rec) = serde_json::from_str::<Record>(line.trim()) {
                    r.add(rec);
                }
            }
        }
        Ok(r)
    }

    /// Adds one record (a later one of the same key and round replaces an earlier one).
    pub fn add(&mut self, rec: Record) {
        let k = key(&rec.system, &rec.test, &rec.variant, &rec.placement);
        self.by_key.entry(k).or_default().insert(rec.round, rec);
    }

    fn series(&self, k: &Key, f: impl Fn(&Record) -> Option<f64>) -> BTreeMap<u32, f64> {
        self.by_key
            .get(k)
            .map(|rounds| {
                rounds
                    .iter()
                    .filter_map(|(&r, rec)| f(rec).map(|v| (r, v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn med(&self, k: &Key, f: impl Fn(&Record) -> Option<f64>) -> Option<f64> {
        median(self.series(k, f).into_values().collect())
    }

    /// The median over rounds of `a / b`, within each round.
    fn ratio(&self, a: &Key, b: &Key, f: impl Fn(&Record) -> Option<f64> + Copy) -> Option<f64> {
        let (sa, sb) = (self.series(a, f), self.series(b, f));
        median(
            sa.iter()
                .filter_map(|(r, x)| sb.get(r).map(|y| x / y))
                .collect(),
        )
    }

    fn variants(&self, system: &str, test: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_key
            .keys()
            .filter(|(s, t, _, _)| s == system && t == test)
            .map(|(_, _, v, _)| v.clone())
            .collect();
        v.dedup();
        v
    }

    fn rounds(&self) -> usize {
        self.by_key.values().map(|r| r.len()).max().unwrap_or(0)
    }

    /// The markdown report. `relay_batch` names the relay variant the batched targets compare
    /// with (the reference is 64 frames per packet); `warren_batch` Warren's batched one.
    pub fn render(&self, relay_batch: &str, warren_batch: &str) -> String {
        let mut o = String::new();
        let p = |v: Option<f64>, digits: usize| match v {
            Some(x) => format!("{x:.digits$}"),
            None => "–".into(),
        };
        let systems = ["floor", "relay", "warren", "rabbitmq"];
        let label = |s: &str, v: &str| match s {
            "floor" => format!("socketpair, direct ({v})"),
            "relay" => format!("socketpair + plain relay ({v})"),
            "warren" => format!("**Warren kernel** ({v})"),
            "rabbitmq" => format!("RabbitMQ, loopback ({v})"),
            _ => format!("{s} ({v})"),
        };

        let _ = writeln!(
            o,
            "Rounds: {}. Figures are medians over rounds; ratios are medians of same-round ratios.\n",
            self.rounds()
        );
        let _ = writeln!(o, "### Round trip, 64-byte message (µs)\n");
        let _ = writeln!(
            o,
            "| path | pinned p50 | pinned p99 | unpinned p50 | unpinned p99 |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|");
        for s in systems {
            for v in self.variants(s, "rtt") {
                let kp = key(s, "rtt", &v, "pinned");
                let ku = key(s, "rtt", &v, "unpinned");
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |",
                    label(s, &v),
                    p(self.med(&kp, |r| r.p50_us), 1),
                    p(self.med(&kp, |r| r.p99_us), 1),
                    p(self.med(&ku, |r| r.p50_us), 1),
                    p(self.med(&ku, |r| r.p99_us), 1),
                );
            }
        }

        let _ = writeln!(o, "\n### Throughput, 64-byte messages, one way (M msg/s)\n");
        let _ = writeln!(o, "| path | pinned | unpinned |");
        let _ = writeln!(o, "|---|---:|---:|");
        let mps = |r: &Record| r.msgs_per_s.map(|x| x / 1e6);
        for s in systems {
            for v in self.variants(s, "throughput") {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} |",
                    label(s, &v),
                    p(self.med(&key(s, "throughput", &v, "pinned"), mps), 3),
                    p(self.med(&key(s, "throughput", &v, "unpinned"), mps), 3),
                );
            }
        }

        let _ = writeln!(o, "\n### Ratios and targets\n");
        let _ = writeln!(o, "| ratio | pinned | unpinned | target | met |");
        let _ = writeln!(o, "|---|---:|---:|---|---|");
        let met = |ok: Option<bool>| match ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let rtt = |r: &Record| r.p50_us;
        for v in self.variants("warren", "rtt") {
            let a = |pl: &str| {
                self.ratio(
                    &key("warren", "rtt", &v, pl),
                    &key("relay", "rtt", "1 per packet", pl),
                    rtt,
                )
            };
            let (rp, ru) = (a("pinned"), a("unpinned"));
            let _ = writeln!(
                o,
                "| Warren RTT ({v}) / relay RTT, p50 | {} | {} | ≤ {RTT_TARGET} | {} |",
                p(rp, 2),
                p(ru, 2),
                met(rp.map(|x| x <= RTT_TARGET))
            );
            // Against the relay whose endpoints run under the same isolation as Warren's.
            let env_relay = "1 per packet, endpoints in environments";
            if v.contains("host processes")
                || !self.variants("relay", "rtt").iter().any(|r| r == env_relay)
            {
                continue;
            }
            let a = |pl: &str| {
                self.ratio(
                    &key("warren", "rtt", &v, pl),
                    &key("relay", "rtt", env_relay, pl),
                    rtt,
                )
            };
            let (rp, ru) = (a("pinned"), a("unpinned"));
            let _ = writeln!(
                o,
                "| Warren RTT ({v}) / relay RTT (endpoints in environments), p50 | {} | {} | ≤ {RTT_TARGET} | {} |",
                p(rp, 2),
                p(ru, 2),
                met(rp.map(|x| x <= RTT_TARGET))
            );
        }
        let thr = |r: &Record| r.msgs_per_s;
        let t = |pl: &str| {
            self.ratio(
                &key("warren", "throughput", warren_batch, pl),
                &key("relay", "throughput", relay_batch, pl),
                thr,
            )
        };
        let (tp, tu) = (t("pinned"), t("unpinned"));
        let best = tp
            .into_iter()
            .chain(tu)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let _ = writeln!(
            o,
            "| Warren throughput ({warren_batch}) / relay ({relay_batch}) | {} | {} | ≥ {THROUGHPUT_RATIO_TARGET} | {} |",
            p(tp, 3),
            p(tu, 3),
            met(best.map(|x| x >= THROUGHPUT_RATIO_TARGET))
        );
        // The relay variant with as many messages per packet as Warren's frames carry.
        let relay_same = match warren_batch.split_once(" per frame") {
            Some((n, _)) => format!("{n} per packet"),
            None => warren_batch.to_owned(),
        };
        if relay_batch != relay_same {
            let same = |pl: &str| {
                self.ratio(
                    &key("warren", "throughput", warren_batch, pl),
                    &key("relay", "throughput", &relay_same, pl),
                    thr,
                )
            };
            let _ = writeln!(
                o,
                "| Warren throughput ({warren_batch}) / relay ({relay_same}) | {} | {} | – | – |",
                p(same("pinned"), 3),
                p(same("unpinned"), 3),
            );
        }
        let wt = ["pinned", "unpinned"]
            .map(|pl| self.med(&key("warren", "throughput", warren_batch, pl), thr));
        let wbest = wt
            .iter()
            .flatten()
            .fold(None, |m: Option<f64>, &x| Some(m.map_or(x, |m| m.max(x))));
        let _ = writeln!(
            o,
            "| Warren throughput ({warren_batch}), M msg/s | {} | {} | ≥ {} | {} |",
            p(wt[0].map(|x| x / 1e6), 3),
            p(wt[1].map(|x| x / 1e6), 3),
            THROUGHPUT_TARGET / 1e6,
            met(wbest.map(|x| x >= THROUGHPUT_TARGET))
        );
        for v in self.variants("rabbitmq", "rtt") {
            for w in self.variants("warren", "rtt") {
                let r = self.ratio(
                    &key("rabbitmq", "rtt", &v, "unpinned"),
                    &key("warren", "rtt", &w, "unpinned"),
                    rtt,
                );
                let _ = writeln!(
                    o,
                    "| RabbitMQ RTT / Warren RTT ({w}), p50 | – | {} | – | – |",
                    p(r, 1)
                );
            }
        }
        for v in self.variants("rabbitmq", "throughput") {
            let r = self.ratio(
                &key("warren", "throughput", warren_batch, "unpinned"),
                &key("rabbitmq", "throughput", &v, "unpinned"),
                thr,
            );
            let _ = writeln!(
                o,
                "| Warren throughput ({warren_batch}) / RabbitMQ | – | {} | – | – |",
                p(r, 1)
            );
        }

        let mem = self.variants("warren", "memory");
        if !mem.is_empty() {
            let _ = writeln!(o, "\n### Kernel memory, idle (bytes)\n");
            let _ = writeln!(
                o,
                "| what | daemon RSS growth each | Linux slab growth each (indicative) | target | met |"
            );
            let _ = writeln!(o, "|---|---:|---:|---|---|");
            for v in mem {
                let k = key("warren", "memory", &v, "unpinned");
                let b = self.med(&k, |r| r.bytes_each);
                let slab = self.med(&k, |r| {
                    r.extra
                        .as_ref()
                        .and_then(|e| e["linux_slab_bytes_per_env"].as_f64())
                });
                let _ = writeln!(
                    o,
                    "| {v} | {} | {} | < {MEMORY_TARGET} | {} |",
                    p(b, 0),
                    p(slab, 0),
                    met(b.map(|x| x < MEMORY_TARGET))
                );
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(system: &str, test: &str, variant: &str, round: u32, p50: f64, mps: f64) -> Record {
        Record {
            system: system.into(),
            test: test.into(),
            variant: variant.into(),
            placement: "pinned".into(),
            round,
            count: 1,
            p50_us: Some(p50),
            p99_us: Some(p50 * 2.0),
            msgs_per_s: Some(mps),
            ..Record::default()
        }
    }

    #[test]
    fn ratios_are_medians_of_same_round_ratios() {
        let mut r = Results::default();
        // Round 0: warren 20 vs relay 10 (2.0); round 1: 30 vs 20 (1.5); round 2: 12 vs 10.
        for (round, w, rl) in [(0, 20.0, 10.0), (1, 30.0, 20.0), (2, 12.0, 10.0)] {
            r.add(rec("warren", "rtt", "plain", round, w, 0.0));
            r.add(rec("relay", "rtt", "1 per packet", round, rl, 0.0));
        }
        let ratio = r
            .ratio(
                &key("warren", "rtt", "plain", "pinned"),
                &key("relay", "rtt", "1 per packet", "pinned"),
                |x| x.p50_us,
            )
            .unwrap();
        assert!((ratio - 1.5).abs() < 1e-9, "{ratio}");
        // The median of the medians is not what the ratio uses: 20/10 = 2.0.
        assert_eq!(
            r.med(&key("warren", "rtt", "plain", "pinned"), |x| x.p50_us),
            Some(20.0)
        );
        let text = r.render("64 per packet", "512 per packet");
        assert!(text.contains("| 1.50 |"), "{text}");
        assert!(text.contains("**no**"), "{text}");
    }

    #[test]
    fn median_of_even_counts_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
