//! Exactly-once, in-order admission of batches from other hosts (pure).
//!
//! Each sending host numbers its batches to this host 1, 2, 3, ... within an epoch (a stream).
//! The broker may hand a batch over again (after a broker restart, a lost connection, or this
//! daemon's restart: unacknowledged deliveries are redelivered) and, after a publisher retry,
//! out of order. [`Inbox`] decides for each arrival:
//!
//! * **Ready** — the next batch of its stream: admit it (and any batches held behind it that
//!   are now next), skipping the messages of it already settled before a restart.
//! * **Open** — it is already admitted and not yet fully settled: this copy is a redelivery;
//!   keep it only to acknowledge the broker with its newer delivery tag.
//! * **Done** — already settled: acknowledge and drop it.
//! * **Held** — a later batch than the next one: keep it until the gap fills.
//!
//! A message is *settled* when it was delivered to a receiving environment, or refused for good
//! (policy, no such mailbox in time); a batch is settled when all its messages are. The driver
//! persists each settlement (and syncs it) before the environment sees the message, and
//! restores them with [`Inbox::restore`] after a restart, so a redelivered message already
//! delivered is never delivered again.
//!
//! A stream first seen starts at the first batch that arrives (the broker's queue is FIFO, so
//! that is the oldest one it holds).

use std::collections::{BTreeMap, BTreeSet};

/// A sender's numbering: its host and epoch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// The sending host.
    pub host: String,
    /// Its outbox epoch.
    pub epoch: u64,
}

/// What to do with an arriving batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival<T> {
    /// Admit these batches, in this order: (seq, item, indices of messages already settled).
    Ready(Vec<(u64, T, BTreeSet<u32>)>),
    /// Already admitted, not yet settled: a redelivery (the item is given back).
    Open(T),
    /// Already settled: acknowledge and drop (the item is given back).
    Done(T),
    /// Ahead of the next batch: kept until the gap fills. A copy it replaced is given back.
    Held(Option<T>),
}

#[derive(Debug, Default)]
struct Stream<T> {
    /// Every batch up to and including this one is settled.
    done: u64,
    /// Settled batches above `done`.
    done_above: BTreeSet<u64>,
    /// Admitted batches not yet settled: message count and settled indices.
    open: BTreeMap<u64, (u32, BTreeSet<u32>)>,
    /// Partly settled batches restored after a restart, not admitted again yet.
    partial: BTreeMap<u64, (u32, BTreeSet<u32>)>,
    /// The next batch to admit (0: none seen yet).
    next: u64,
    /// Batches held until the gap before them fills.
    early: BTreeMap<u64, T>,
    /// Since when (the caller's clock) batches have been held ahead of a gap.
    gap_seen: Option<u64>,
}

impl<T> Stream<T> {
    fn new() -> Stream<T> {
        Stream {
            done: 0,
            done_above: BTreeSet::new(),
            open: BTreeMap::new(),
            partial: BTreeMap::new(),
            next: 0,
            early: BTreeMap::new(),
            gap_seen: None,
        }
    }

    fn is_done(&self, seq: u64) -> bool {
        seq <= self.done || self.done_above.contains(&seq)
    }

    /// Moves `next` past batches already settled.
    fn skip_done(&mut self) {
        while self.next != 0 && self.is_done(self.next) {
            self.next += 1;
        }
    }

    fn settle_batch(&mut self, seq: u64) {
        self.open.remove(&seq);
        self.partial.remove(&seq);
        self.done_above.insert(seq);
        while self.done_above.first() == Some(&(self.done + 1)) {
            self.done += 1;
            self.done_above.pop_first();
        }
        // Keep `done` meaningful for a stream whose first batches we never saw.
        if self.done == 0 {
            if let Some(&first) = self.done_above.first() {
                if self.open.keys().all(|&s| s > first) && self.next > first {
                    self.done = first;
                    self.done_above.pop_first();
                    while self.done_above.first() == Some(&(self.done + 1)) {
                        self.done += 1;
                        self.done_above.pop_first();
                    }
                }
            }
        }
    }
}

/// The admission state of every stream.
#[derive(Debug, Default)]
pub struct Inbox<T> {
    streams: BTreeMap<StreamId, Stream<T>>,
}

/// Batches that never arrived, given up on by [`Inbox::skip_gaps`], and what that released.
#[derive(Debug, PartialEq, Eq)]
pub struct Skipped<T> {
    /// The stream.
    pub stream: StreamId,
    /// The first and last missing batch.
    pub missing: (u64, u64),
    /// The held batches now admitted, in order, as in [`Arrival::Ready`].
    pub ready: Vec<(u64, T, BTreeSet<u32>)>,
}

/// One settlement, as the driver persists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The stream.
    pub stream: StreamId,
    /// The batch.
    pub seq: u64,
    /// The message's index in it.
    pub index: u32,
    /// How many messages the batch has.
    pub count: u32,
}

impl<T> Inbox<T> {
    /// An inbox that has seen nothing.
    pub fn new() -> Inbox<T> {
        Inbox {
            streams: BTreeMap::new(),
        }
    }

    /// Replays a settlement persisted before a restart (in any order).
    pub fn restore(&mut self, s: &Settlement) {
        let st = self
            .streams
            .entry(s.stream.clone())
            .or_insert_with(Stream::new);
        if st.is_done(s.seq) {
            return;
        }
        let entry = st
            .partial
            .entry(s.seq)
            .or_insert_with(|| (s.count, BTreeSet::new()));
        entry.1.insert(s.index);
        if entry.1.len() as u64 >= u64::from(entry.0) {
            st.settle_batch(s.seq);
        }
    }

    /// Restores a stream's watermark (from a compacted log): every batch up to `done` settled.
    pub fn restore_done(&mut self, stream: &StreamId, done: u64) {
        let st = self
            .streams
            .entry(stream.clone())
            .or_insert_with(Stream::new);
        st.done = st.done.max(done);
        st.done_above.retain(|&s| s > done);
        st.partial.retain(|&s, _| s > done);
    }

    /// Finishes restoring: each stream continues after its settled prefix.
    pub fn restored(&mut self) {
        for st in self.streams.values_mut() {
            st.next = st.done + 1;
            st.skip_done();
        }
    }

    /// Every stream's watermark and its settlements above it (what a compacted log keeps).
    pub fn snapshot(&self) -> Vec<(StreamId, u64, Vec<Settlement>)> {
        self.streams
            .iter()
            .map(|(id, st)| {
                let mut rest = Vec::new();
                for &seq in &st.done_above {
                    // A settled batch above the watermark: one settlement of a one-message
                    // batch stands for it.
                    rest.push(Settlement {
                        stream: id.clone(),
                        seq,
                        index: 0,
                        count: 1,
                    });
                }
                for (&seq, (count, set)) in st.partial.iter().chain(st.open.iter()) {
                    for &index in set {
                        rest.push(Settlement {
                            stream: id.clone(),
                            seq,
                            index,
                            count: *count,
                        });
                    }
                }
                (id.clone(), st.done, rest)
            })
            .collect()
    }

    /// Whether the next arrival of `stream` starts it (the stream was never seen, nor restored
    /// from the journal): the driver then journals where it starts, so that a restart does not
    /// wait for the batches before it.
    pub fn is_new(&self, stream: &StreamId) -> bool {
        self.streams.get(stream).is_none_or(|st| st.next == 0)
    }

    /// A batch `seq` of `stream` with `count` messages arrived (see [`Arrival`]).
    pub fn arrive(&mut self, stream: &StreamId, seq: u64, count: u32, item: T) -> Arrival<T> {
        let st = self
            .streams
            .entry(stream.clone())
            .or_insert_with(Stream::new);
        if st.next == 0 {
            st.next = seq;
            st.skip_done();
        }
        if st.is_done(seq) {
            return Arrival::Done(item);
        }
        if st.open.contains_key(&seq) {
            return Arrival::Open(item);
        }
        if seq != st.next {
            if seq < st.next {
                // Below the next batch, neither settled nor open: a stream first seen in the
                // middle got an older batch late. Admitting it now keeps it from being lost.
                let skip = st.partial.remove(&seq).map(|p| p.1).unwrap_or_default();
                st.open.insert(seq, (count, skip.clone()));
                return Arrival::Ready(vec![(seq, item, skip)]);
            }
            let old = st.early.insert(seq, item);
            return Arrival::Held(old);
        }
        let mut ready = Vec::new();
        let mut cur = Some((seq, count, item));
        while let Some((s, n, it)) = cur.take() {
            let skip = st.partial.remove(&s).map(|p| p.1).unwrap_or_default();
            st.open.insert(s, (n, skip.clone()));
            ready.push((s, it, skip));
            st.next = s.saturating_add(1);
            st.skip_done();
            if let Some(e) = st.early.remove(&st.next) {
                // Held batches do not know their count here; the driver reports it on settle.
                cur = Some((st.next, u32::MAX, e));
            }
        }
        Arrival::Ready(ready)
    }

    /// Gives up on gaps that have held batches back for `wait` or longer (`now` and `wait` on
    /// the caller's clock): the stream continues at its first held batch, which is admitted
    /// with the ones behind it. A missing batch that arrives after all is still admitted (see
    /// [`Inbox::arrive`]: below the next batch and not settled), late and out of order, rather
    /// than lost. Also notes when a stream's gap began; call it every turn.
    pub fn skip_gaps(&mut self, now: u64, wait: u64) -> Vec<Skipped<T>> {
        let mut out = Vec::new();
        for (id, st) in self.streams.iter_mut() {
            let Some(&first_held) = st.early.keys().next() else {
                st.gap_seen = None;
                continue;
            };
            let since = *st.gap_seen.get_or_insert(now);
            if now.saturating_sub(since) < wait {
                continue;
            }
            let missing = (st.next, first_held - 1);
            st.next = first_held;
            let mut ready = Vec::new();
            while let Some(item) = st.early.remove(&st.next) {
                let s = st.next;
                let skip = st.partial.remove(&s).map(|p| p.1).unwrap_or_default();
                // Held batches do not know their count here; the driver reports it.
                st.open.insert(s, (u32::MAX, skip.clone()));
                ready.push((s, item, skip));
                st.next = s.saturating_add(1);
                st.skip_done();
            }
            st.gap_seen = (!st.early.is_empty()).then_some(now);
            out.push(Skipped {
                stream: id.clone(),
                missing,
                ready,
            });
        }
        out
    }

    /// When the oldest gap reaches `wait` (for the caller's timer), if any stream has one.
    pub fn gap_deadline(&self, wait: u64) -> Option<u64> {
        self.streams
            .values()
            .filter(|st| !st.early.is_empty())
            .filter_map(|st| st.gap_seen)
            .map(|since| since.saturating_add(wait))
            .min()
    }

    /// Sets the message count of an admitted batch (for batches released from the held set).
    pub fn set_count(&mut self, stream: &StreamId, seq: u64, count: u32) {
        if let Some(st) = self.streams.get_mut(stream) {
            if let Some(o) = st.open.get_mut(&seq) {
                o.0 = count;
            }
        }
    }

    /// Message `index` of admitted batch `seq` is settled. Returns whether the whole batch is
    /// now settled (time to acknowledge it to the broker).
    pub fn settle(&mut self, stream: &StreamId, seq: u64, index: u32) -> bool {
        let Some(st) = self.streams.get_mut(stream) else {
            return false;
        };
        let Some((count, set)) = st.open.get_mut(&seq) else {
            return st.is_done(seq);
        };
        set.insert(index);
        if set.len() as u64 >= u64::from(*count) {
            st.settle_batch(seq);
            true
        } else {
            false
        }
    }

    /// Whether message `index` of batch `seq` was settled.
    pub fn is_settled(&self, stream: &StreamId, seq: u64, index: u32) -> bool {
        self.streams.get(stream).is_some_and(|st| {
            st.is_done(seq)
                || st.open.get(&seq).is_some_and(|o| o.1.contains(&index))
                || st.partial.get(&seq).is_some_and(|o| o.1.contains(&index))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> StreamId {
        StreamId {
            host: "alpha".into(),
            epoch: 1,
        }
    }

    fn seqs<T>(a: &Arrival<T>) -> Vec<u64> {
        match a {
            Arrival::Ready(v) => v.iter().map(|(s, _, _)| *s).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn in_order_batches_are_admitted_once_and_redeliveries_recognised() {
        let mut ib = Inbox::new();
        assert_eq!(seqs(&ib.arrive(&s(), 1, 2, "a")), vec![1]);
        assert_eq!(ib.arrive(&s(), 1, 2, "a'"), Arrival::Open("a'"));
        assert!(!ib.settle(&s(), 1, 0));
        assert!(ib.settle(&s(), 1, 1));
        assert_eq!(ib.arrive(&s(), 1, 2, "a''"), Arrival::Done("a''"));
        assert_eq!(seqs(&ib.arrive(&s(), 2, 1, "b")), vec![2]);
    }

    #[test]
    fn a_gap_that_outlasts_the_wait_is_given_up_and_a_late_batch_still_admitted() {
        let mut ib = Inbox::new();
        assert_eq!(seqs(&ib.arrive(&s(), 1, 1, 1)), vec![1]);
        assert!(ib.settle(&s(), 1, 0));
        // 2 and 3 are missing; 4, 5 and 7 are held.
        for q in [4, 5, 7] {
            assert_eq!(ib.arrive(&s(), q, 1, q), Arrival::Held(None));
        }
        assert_eq!(ib.gap_deadline(1000), None); // not noted yet
        assert!(ib.skip_gaps(100, 1000).is_empty()); // noted at 100
        assert_eq!(ib.gap_deadline(1000), Some(1100));
        assert!(ib.skip_gaps(1099, 1000).is_empty()); // the control: not yet
        let skipped = ib.skip_gaps(1100, 1000);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].missing, (2, 3));
        let ready: Vec<u64> = skipped[0].ready.iter().map(|r| r.0).collect();
        assert_eq!(ready, vec![4, 5]);
        // 6 is the next gap, noted now; 7 waits for it.
        assert_eq!(ib.gap_deadline(1000), Some(2100));
        for q in [4, 5] {
            ib.set_count(&s(), q, 1);
            assert!(ib.settle(&s(), q, 0));
        }
        // A missing batch that turns up after all is admitted, not dropped.
        assert_eq!(seqs(&ib.arrive(&s(), 2, 1, 2)), vec![2]);
        // 6 arrives: 7 follows; no gap is left.
        assert_eq!(seqs(&ib.arrive(&s(), 6, 1, 6)), vec![6, 7]);
        assert!(ib.skip_gaps(5000, 1000).is_empty());
        assert_eq!(ib.gap_deadline(1000), None);
    }

    #[test]
    fn a_gap_holds_later_batches_until_it_fills() {
        let mut ib = Inbox::new();
        assert_eq!(seqs(&ib.arrive(&s(), 1, 1, 1)), vec![1]);
        assert_eq!(ib.arrive(&s(), 3, 1, 3), Arrival::Held(None));
        assert_eq!(ib.arrive(&s(), 4, 1, 4), Arrival::Held(None));
        assert_eq!(seqs(&ib.arrive(&s(), 2, 1, 2)), vec![2, 3, 4]);
        for q in 1..=4 {
            ib.set_count(&s(), q, 1);
            assert!(ib.settle(&s(), q, 0));
        }
        assert_eq!(ib.arrive(&s(), 3, 1, 3), Arrival::Done(3));
    }

    #[test]
    fn settlements_survive_a_restart_message_by_message() {
        let mut ib = Inbox::new();
        let mut log = Vec::new();
        assert_eq!(seqs(&ib.arrive(&s(), 1, 3, ())), vec![1]);
        for i in [0, 2] {
            ib.settle(&s(), 1, i);
            log.push(Settlement {
                stream: s(),
                seq: 1,
                index: i,
                count: 3,
            });
        }
        // Restart: only the log is left.
        let mut again: Inbox<()> = Inbox::new();
        for r in &log {
            again.restore(r);
        }
        again.restored();
        match again.arrive(&s(), 1, 3, ()) {
            Arrival::Ready(v) => assert_eq!(v[0].2, BTreeSet::from([0, 2])),
            other => panic!("{other:?}"),
        }
        assert!(again.is_settled(&s(), 1, 2));
        assert!(!again.is_settled(&s(), 1, 1));
        assert!(again.settle(&s(), 1, 1));
    }

    #[test]
    fn after_a_restart_settled_batches_are_skipped_and_the_rest_admitted() {
        let mut ib: Inbox<()> = Inbox::new();
        for seq in [1, 2, 4] {
            ib.restore(&Settlement {
                stream: s(),
                seq,
                index: 0,
                count: 1,
            });
        }
        ib.restored();
        assert_eq!(ib.arrive(&s(), 2, 1, ()), Arrival::Done(()));
        assert_eq!(seqs(&ib.arrive(&s(), 3, 1, ())), vec![3]);
        assert_eq!(ib.arrive(&s(), 4, 1, ()), Arrival::Done(()));
        assert_eq!(seqs(&ib.arrive(&s(), 5, 1, ())), vec![5]);
    }

    proptest::proptest! {
        /// Batches 1..=n arrive in order with random redeliveries of earlier ones, settle
        /// late, and the receiver restarts at random (keeping only its settlement log; what
        /// was admitted and not settled arrives again): every batch is delivered exactly once,
        /// in order.
        #[test]
        fn redeliveries_and_restarts_deliver_each_batch_once_in_order(
            n in 1u64..40,
            steps in proptest::collection::vec(0u8..8, 0..200),
        ) {
            let mut ib: Inbox<()> = Inbox::new();
            let mut log: Vec<Settlement> = Vec::new();
            let mut delivered: Vec<u64> = Vec::new();
            let mut pending: Vec<u64> = Vec::new(); // admitted, not settled
            let mut held = std::collections::BTreeSet::new(); // arrived early, kept
            let mut next_new = 1u64;
            let mut queue: std::collections::VecDeque<u64> = Default::default();
            let mut steps = steps.into_iter();
            let mut guard = 0;
            while (next_new <= n || !queue.is_empty() || !pending.is_empty()) && guard < 10_000 {
                guard += 1;
                match steps.next().unwrap_or(0) {
                    // A redelivery of something already seen.
                    0 if next_new > 1 => queue.push_back(1 + (guard as u64 % (next_new - 1))),
                    // Settle the oldest pending batch (a receive takes it).
                    1 | 2 if !pending.is_empty() => {
                        let seq = pending.remove(0);
                        delivered.push(seq);
                        ib.settle(&s(), seq, 0);
                        log.push(Settlement { stream: s(), seq, index: 0, count: 1 });
                    }
                    // Restart: only the log survives; unsettled batches come again.
                    3 => {
                        let mut again: Inbox<()> = Inbox::new();
                        for r in &log {
                            again.restore(r);
                        }
                        again.restored();
                        ib = again;
                        // The broker hands back everything not acknowledged, in queue order.
                        let mut back: Vec<u64> = pending.drain(..).chain(held.iter().copied()).collect();
                        back.sort_unstable();
                        back.dedup();
                        held.clear();
                        for seq in back.into_iter().rev() {
                            queue.push_front(seq);
                        }
                    }
                    _ => {
                        if next_new <= n {
                            queue.push_back(next_new);
                            next_new += 1;
                        }
                    }
                }
                if let Some(seq) = queue.pop_front() {
                    let a = ib.arrive(&s(), seq, 1, ());
                    if let Arrival::Held(_) = a {
                        held.insert(seq);
                    }
                    if let Arrival::Ready(list) = a {
                        for (q, (), skip) in list {
                            held.remove(&q);
                            ib.set_count(&s(), q, 1);
                            if skip.is_empty() {
                                pending.push(q);
                            }
                        }
                    }
                }
            }
            // Whatever is still pending is taken now.
            for seq in pending.drain(..) {
                delivered.push(seq);
            }
            let expect: Vec<u64> = (1..next_new).collect();
            proptest::prop_assert_eq!(delivered, expect);
        }
    }

    #[test]
    fn a_snapshot_restores_the_same_decisions() {
        let mut ib: Inbox<()> = Inbox::new();
        for seq in 1..=3 {
            ib.arrive(&s(), seq, 2, ());
        }
        ib.settle(&s(), 1, 0);
        ib.settle(&s(), 1, 1);
        ib.settle(&s(), 3, 0);
        ib.settle(&s(), 3, 1);
        ib.settle(&s(), 2, 1);
        let mut again: Inbox<()> = Inbox::new();
        for (id, done, rest) in ib.snapshot() {
            again.restore_done(&id, done);
            for r in rest {
                again.restore(&r);
            }
        }
        again.restored();
        assert_eq!(again.arrive(&s(), 1, 2, ()), Arrival::Done(()));
        match again.arrive(&s(), 2, 2, ()) {
            Arrival::Ready(v) => assert_eq!(v[0].2, BTreeSet::from([1])),
            other => panic!("{other:?}"),
        }
        assert_eq!(again.arrive(&s(), 3, 2, ()), Arrival::Done(()));
    }
}
