//! Audit that cannot flood: a per-environment rate limit with aggregation of what it holds
//! back, in virtual time.
//!
//! Each environment (by the name its records carry) has a *window* of
//! [`Config::audit_window_ms`](crate::Config::audit_window_ms) that opens with its first
//! record. In a window, its first
//! [`Config::audit_records_per_window`](crate::Config::audit_records_per_window) records are
//! written as they come; every later one is counted into an aggregate per (operation, code)
//! that keeps the first such record's details. When the window ends, each aggregate is written
//! as one record with [`Repeated`] (`count`, `first`, `last`), and the environment starts
//! afresh with its next record. Nothing is dropped without being counted, and what one
//! environment can make the kernel write is bounded: at most `records_per_window` plus one
//! record per (operation, code) pair per window, whatever it sends.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::Millis;
use crate::action::{Action, AuditRecord, Repeated};

/// One environment's current window.
#[derive(Debug)]
struct Window {
    /// Records written in it.
    written: u32,
    /// Records held back, by (operation, code): the first one and its counts.
    held: BTreeMap<(&'static str, &'static str), (AuditRecord, Repeated)>,
}

/// The rate limiter (see the module documentation).
#[derive(Debug)]
pub(crate) struct AuditLimiter {
    window_ms: Millis,
    per_window: u32,
    windows: BTreeMap<String, Window>,
    /// (window end, environment): when each window must be closed.
    ends: BTreeSet<(Millis, String)>,
}

impl AuditLimiter {
    pub(crate) fn new(window_ms: Millis, per_window: u32) -> AuditLimiter {
        AuditLimiter {
            window_ms: window_ms.max(1),
            per_window,
            windows: BTreeMap::new(),
            ends: BTreeSet::new(),
        }
    }

    /// Counts a denial of `env` for (`op`, `code`) at `now` into its aggregate when the
    /// environment's window is already full and holds one for that pair — the case of every
    /// denial after the first few of a flood — without the caller building a record (no
    /// allocation). Returns false when the caller must build the record and call
    /// [`AuditLimiter::record`] (it may be written, or start an aggregate).
    pub(crate) fn count_repeat(
        &mut self,
        env: &str,
        op: &'static str,
        code: &'static str,
        now: Millis,
        out: &mut VecDeque<Action>,
    ) -> bool {
        self.handle_timeout(now, out);
        let Some(window) = self.windows.get_mut(env) else {
            return false;
        };
        if window.written < self.per_window {
            return false;
        }
        match window.held.get_mut(&(op, code)) {
            Some((_, r)) => {
                r.count += 1;
                r.last = now;
                true
            }
            None => false,
        }
    }

    /// Writes `rec` (decided at `now`) to `out`, or counts it into its aggregate.
    pub(crate) fn record(&mut self, rec: AuditRecord, now: Millis, out: &mut VecDeque<Action>) {
        self.handle_timeout(now, out);
        let window = match self.windows.get_mut(&rec.env) {
            Some(w) => w,
            None => {
                let ends = now.saturating_add(self.window_ms);
                self.ends.insert((ends, rec.env.clone()));
                self.windows.entry(rec.env.clone()).or_insert(Window {
                    written: 0,
                    held: BTreeMap::new(),
                })
            }
        };
        if window.written < self.per_window {
            window.written += 1;
            out.push_back(Action::Audit(rec));
            return;
        }
        let at = rec.at;
        window
            .held
            .entry((rec.op, rec.code))
            .and_modify(|(_, r)| {
                r.count += 1;
                r.last = at;
            })
            .or_insert((
                rec,
                Repeated {
                    count: 1,
                    first: at,
                    last: at,
                },
            ));
    }

    /// Closes the windows that have ended by `now`, writing their aggregates.
    pub(crate) fn handle_timeout(&mut self, now: Millis, out: &mut VecDeque<Action>) {
        while let Some((ends, _)) = self.ends.first() {
            if *ends > now {
                break;
            }
            let (_, env) = self.ends.pop_first().expect("looked at above");
            if let Some(w) = self.windows.remove(&env) {
                for (_, (mut rec, repeated)) in w.held {
                    rec.at = repeated.last;
                    rec.repeated = Some(repeated);
                    out.push_back(Action::Audit(rec));
                }
            }
        }
    }

    /// Writes every aggregate now (the driver is shutting down).
    pub(crate) fn flush(&mut self, out: &mut VecDeque<Action>) {
        self.handle_timeout(Millis::MAX, out);
    }

    /// When the next window with something held back ends (a window with nothing held back
    /// needs no wake-up: it is closed lazily).
    pub(crate) fn poll_timeout(&self) -> Option<Millis> {
        self.ends
            .iter()
            .find(|(_, env)| self.windows.get(env).is_some_and(|w| !w.held.is_empty()))
            .map(|(ends, _)| *ends)
    }
}
