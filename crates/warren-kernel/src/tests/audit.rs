//! Audit that cannot flood: pipelined denials of one environment are written up to the rate
//! limit, then aggregated per (operation, code) with a count and first/last times; nothing is
//! lost, and a neighbour's records are not held back by the flooder.

use proptest::prelude::*;

use super::*;
use crate::Repeated;

fn lookup_unknown(w: &mut World, env: EnvId, i: u64) {
    let r = w.call(
        env,
        Request::Lookup {
            name: format!("nobody-{i}"),
        },
    );
    assert_err(&r, ErrorCode::NotFound);
}

fn total(records: &[AuditRecord]) -> u64 {
    records
        .iter()
        .map(|r| r.repeated.map_or(1, |r| r.count))
        .sum()
}

#[test]
fn a_flood_of_unknown_lookups_writes_a_bounded_number_of_records_and_counts_the_rest() {
    let cfg = Config::default();
    let mut w = World::new();
    let flooder = w.add("flooder", &[], &[]);
    let neighbour = w.add("neighbour", &[], &[]);
    // 100,000 denied lookups within one window (the attack of issue 14 wrote 1.4 GB).
    for i in 0..100_000 {
        lookup_unknown(&mut w, flooder, i);
    }
    assert_eq!(w.audits.len(), cfg.audit_records_per_window as usize);
    // The kernel will wake the driver when the window ends.
    assert_eq!(w.k.poll_timeout(), Some(cfg.audit_window_ms));
    // A neighbour's denial is written at once: the limit is per environment.
    lookup_unknown(&mut w, neighbour, 0);
    assert_eq!(w.audits.last().unwrap().env, "neighbour");
    assert!(w.audits.last().unwrap().repeated.is_none());
    w.now = 5;
    lookup_unknown(&mut w, flooder, 0);
    w.advance(cfg.audit_window_ms);
    let flood: Vec<AuditRecord> = w
        .audits
        .iter()
        .filter(|r| r.env == "flooder")
        .cloned()
        .collect();
    assert_eq!(flood.len(), cfg.audit_records_per_window as usize + 1);
    let agg = flood.last().unwrap();
    let expected = 100_001 - u64::from(cfg.audit_records_per_window);
    assert_eq!(
        agg.repeated,
        Some(Repeated {
            count: expected,
            first: 0,
            last: 5
        })
    );
    assert_eq!((agg.op, agg.code), ("lookup", "not-found"));
    assert_eq!(total(&flood), 100_001);
    // The next window starts afresh.
    assert_eq!(w.k.poll_timeout(), None);
    lookup_unknown(&mut w, flooder, 1);
    assert!(w.audits.last().unwrap().repeated.is_none());
}

#[test]
fn flush_writes_what_is_held_back() {
    let mut w = World::new();
    let a = w.add("a", &[], &[]);
    for i in 0..50 {
        lookup_unknown(&mut w, a, i);
    }
    w.k.flush_audit();
    w.pump();
    assert_eq!(total(&w.audits), 50);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever the timing and mix of denials: every denial is counted exactly once once the
    /// windows have closed, and no environment gets more than its rate plus one aggregate per
    /// (operation, code) written in any window.
    #[test]
    fn every_denial_is_counted_once_and_writing_is_bounded(
        steps in prop::collection::vec((0usize..3, 0u8..3, 0u64..4_000), 1..400),
        window in 1u64..20_000,
        per_window in 0u32..8,
    ) {
        let mut w = World::with(Config {
            audit_window_ms: window,
            audit_records_per_window: per_window,
            ..Config::default()
        });
        let envs: Vec<EnvId> = ["x", "y", "z"].iter().map(|n| w.add(n, &[], &[])).collect();
        let mut denied = [0u64; 3];
        let mut t = 0;
        for (who, kind, dt) in steps {
            t += dt;
            w.advance(t);
            let env = envs[who];
            let r = match kind {
                0 => w.call(env, Request::Lookup { name: "hidden".into() }),
                1 => w.call(env, Request::Drop { handle: 99 }),
                _ => w.call(env, Request::Monitor { handle: 77 }),
            };
            assert!(matches!(r, Response::Error { .. }));
            denied[who] += 1;
        }
        w.advance(t + window);
        for (i, name) in ["x", "y", "z"].iter().enumerate() {
            let mine: Vec<AuditRecord> =
                w.audits.iter().filter(|r| r.env == *name).cloned().collect();
            prop_assert_eq!(total(&mine), denied[i]);
            for r in &mine {
                if let Some(rep) = r.repeated {
                    prop_assert!(rep.count >= 1 && rep.first <= rep.last && r.at == rep.last);
                }
            }
            // Bounded: windows are fixed (each opens with a record), so any span of one
            // window's length overlaps at most two: at most twice the rate of single records.
            let singles: Vec<Millis> =
                mine.iter().filter(|r| r.repeated.is_none()).map(|r| r.at).collect();
            for &start in &singles {
                let within = singles.iter().filter(|&&at| at >= start && at < start + window).count();
                prop_assert!(within <= 2 * per_window as usize, "{} singles in a window", within);
            }
        }
        prop_assert_eq!(w.k.poll_timeout(), None);
    }
}
