//! Property tests for batch sends and receives (protocol version 2): random interleavings of
//! batch and single sends from two senders (waiting or not, quiet or not) and batch and single
//! receives, into one bounded mailbox. Checked after every step: the queue never holds more
//! than its capacity; every answer is one the rules allow (a batch that does not wait is
//! accepted as a prefix, counted exactly; a waiting one is answered once, with its whole count,
//! when its last message is in). At the end the mailbox is drained: each sender's delivered
//! messages are exactly the ones it had accepted, in the order it sent them — nothing lost,
//! nothing duplicated, nothing reordered — and every waiting send has been answered.

use std::collections::BTreeMap;

use proptest::prelude::*;
use warren_kernel::{Action, Config, EnvId, EnvSpec, Kernel};
use warren_proto::{Bodies, Filter, Message, Request, Response};

#[derive(Debug, Clone)]
enum Op {
    /// Sender 0 or 1: a batch of `n` bodies.
    Batch {
        from: usize,
        n: usize,
        wait: bool,
        quiet: bool,
    },
    /// Sender 0 or 1: one ordinary send.
    Single { from: usize, wait: bool },
    /// The receiver: a batch receive of up to `max`, not waiting.
    RecvBatch { max: u32 },
    /// The receiver: one ordinary receive, not waiting.
    Recv,
    /// The receiver parks a batch receive (answered when something arrives).
    ParkBatch { max: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..7usize, any::<bool>(), any::<bool>())
            .prop_map(|(from, n, wait, quiet)| Op::Batch { from, n, wait, quiet }),
        2 => (0..2usize, any::<bool>()).prop_map(|(from, wait)| Op::Single { from, wait }),
        3 => (1..6u32).prop_map(|max| Op::RecvBatch { max }),
        1 => Just(Op::Recv),
        1 => (1..4u32).prop_map(|max| Op::ParkBatch { max }),
    ]
}

/// One send the model is waiting to hear about.
#[derive(Debug)]
struct Pending {
    from: usize,
    /// The sequence numbers offered, in order.
    seqs: Vec<u32>,
    wait: bool,
    quiet: bool,
    single: bool,
}

struct World {
    k: Kernel,
    senders: [EnvId; 2],
    receiver: EnvId,
    capacity: usize,
    next_id: u32,
    next_seq: [u32; 2],
    pending: BTreeMap<u32, Pending>,
    /// Per sender: the sequence numbers accepted, in acceptance order.
    accepted: [Vec<u32>; 2],
    /// Per sender: what the receiver got, in order.
    delivered: [Vec<u32>; 2],
    /// The receiver's requests not answered yet.
    receives: Vec<u32>,
}

fn body(from: usize, seq: u32) -> Vec<u8> {
    format!("{from}:{seq}").into_bytes()
}

fn parse(b: &[u8]) -> (usize, u32) {
    let s = std::str::from_utf8(b).expect("utf-8");
    let (f, q) = s.split_once(':').expect("from:seq");
    (f.parse().expect("from"), q.parse().expect("seq"))
}

impl World {
    fn new(capacity: usize) -> World {
        let mut k = Kernel::new(Config {
            max_waiting_per_env: 64,
            ..Config::default()
        });
        let receiver = k
            .add_env(
                EnvSpec {
                    name: "r".into(),
                    mailbox_capacity: Some(capacity),
                    mailbox_bytes: None,
                    ..EnvSpec::default()
                },
                0,
            )
            .unwrap();
        let mk = |k: &mut Kernel, name: &str| {
            k.add_env(
                EnvSpec {
                    name: name.into(),
                    may_send: vec!["r".into()],
                    ..EnvSpec::default()
                },
                0,
            )
            .unwrap()
        };
        let senders = [mk(&mut k, "s0"), mk(&mut k, "s1")];
        while k.poll_action().is_some() {}
        World {
            k,
            senders,
            receiver,
            capacity,
            next_id: 1,
            next_seq: [0, 0],
            pending: BTreeMap::new(),
            accepted: [Vec::new(), Vec::new()],
            delivered: [Vec::new(), Vec::new()],
            receives: Vec::new(),
        }
    }

    fn submit(&mut self, env: EnvId, req: Request) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.k.handle_request(env, id, req, 0);
        id
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Batch {
                from,
                n,
                wait,
                quiet,
            } => {
                let seqs: Vec<u32> = (0..n as u32).map(|i| self.next_seq[from] + i).collect();
                self.next_seq[from] += n as u32;
                let owned: Vec<Vec<u8>> = seqs.iter().map(|&s| body(from, s)).collect();
                let bodies: Bodies = owned.iter().map(Vec::as_slice).collect();
                let id = self.submit(
                    self.senders[from],
                    Request::SendBatch {
                        handle: 2,
                        wait,
                        quiet,
                        bodies,
                    },
                );
                if wait {
                    // Accepted whole, now: its order among this sender's messages is fixed.
                    self.accepted[from].extend(&seqs);
                }
                self.pending.insert(
                    id,
                    Pending {
                        from,
                        seqs,
                        wait,
                        quiet,
                        single: false,
                    },
                );
            }
            Op::Single { from, wait } => {
                let seq = self.next_seq[from];
                self.next_seq[from] += 1;
                let id = self.submit(
                    self.senders[from],
                    Request::Send {
                        handle: 2,
                        message: Message {
                            body: body(from, seq),
                            ..Message::default()
                        },
                        wait,
                    },
                );
                if wait {
                    self.accepted[from].push(seq);
                }
                self.pending.insert(
                    id,
                    Pending {
                        from,
                        seqs: vec![seq],
                        wait,
                        quiet: false,
                        single: true,
                    },
                );
            }
            Op::RecvBatch { max } => {
                let id = self.submit(
                    self.receiver,
                    Request::RecvBatch {
                        mailbox: None,
                        max,
                        timeout_ms: Some(0),
                    },
                );
                self.receives.push(id);
            }
            Op::Recv => {
                let id = self.submit(
                    self.receiver,
                    Request::Recv {
                        mailbox: None,
                        filter: Filter::default(),
                        timeout_ms: Some(0),
                    },
                );
                self.receives.push(id);
            }
            Op::ParkBatch { max } => {
                let id = self.submit(
                    self.receiver,
                    Request::RecvBatch {
                        mailbox: None,
                        max,
                        timeout_ms: None,
                    },
                );
                self.receives.push(id);
            }
        }
        self.process()?;
        let queued = self.k.stats().queued;
        prop_assert!(
            queued <= self.capacity,
            "{queued} queued, capacity {}",
            self.capacity
        );
        Ok(())
    }

    fn process(&mut self) -> Result<(), TestCaseError> {
        while let Some(a) = self.k.poll_action() {
            let Action::Respond { env, id, response } = a else {
                continue;
            };
            if env == self.receiver {
                prop_assert!(self.receives.contains(&id), "an answer to no receive: {id}");
                self.receives.retain(|&r| r != id);
                match response {
                    Response::Deliveries(d) => {
                        prop_assert!(!d.is_empty());
                        for (sender, b) in d.iter() {
                            let (from, seq) = parse(b);
                            prop_assert_eq!(&sender.env, &format!("s{from}"));
                            self.delivered[from].push(seq);
                        }
                    }
                    Response::Delivery(d) => {
                        let (from, seq) = parse(&d.body);
                        prop_assert_eq!(&d.from.env, &format!("s{from}"));
                        self.delivered[from].push(seq);
                    }
                    Response::Error { code, .. } => {
                        prop_assert_eq!(code, warren_proto::ErrorCode::Timeout)
                    }
                    other => prop_assert!(false, "receiver got {other:?}"),
                }
                continue;
            }
            let p = self.pending.remove(&id);
            prop_assert!(p.is_some(), "an answer to no send: {id} {response:?}");
            let p = p.unwrap();
            let n = p.seqs.len();
            match (p.single, response) {
                (true, Response::Ok) => {
                    if !p.wait {
                        self.accepted[p.from].push(p.seqs[0]);
                    }
                }
                (true, Response::Error { code, .. }) => {
                    prop_assert!(!p.wait, "a waiting send refused: {code:?}");
                    prop_assert_eq!(code, warren_proto::ErrorCode::Full);
                }
                (false, Response::Accepted { count }) => {
                    let count = count as usize;
                    if p.wait {
                        prop_assert_eq!(count, n, "a waiting batch is answered whole");
                        prop_assert!(!p.quiet, "a quiet batch answered though all accepted");
                    } else {
                        prop_assert!(count <= n);
                        prop_assert!(!(p.quiet && count == n), "quiet yet answered");
                        self.accepted[p.from].extend(&p.seqs[..count]);
                    }
                }
                (single, other) => prop_assert!(false, "send (single {single}) got {other:?}"),
            }
        }
        // Quiet batches that do not wait and got no answer were accepted whole.
        let quiet_done: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.single && p.quiet && !p.wait)
            .map(|(&id, _)| id)
            .collect();
        for id in quiet_done {
            let p = self.pending.remove(&id).expect("listed above");
            self.accepted[p.from].extend(&p.seqs);
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        // Parked receives first take what arrives; then take until nothing is left.
        for _ in 0..1000 {
            if self.k.stats().queued == 0 && self.k.stats().waiting_sends == 0 {
                break;
            }
            self.step(&Op::RecvBatch { max: 5 })?;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn batches_keep_order_capacity_and_every_accepted_message(
        capacity in 0..5usize,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut w = World::new(capacity);
        for op in &ops {
            w.step(op)?;
        }
        w.drain()?;
        // A quiet waiting batch is answered only if refused (never, here).
        let waiting: Vec<_> = w.pending.iter().filter(|(_, p)| p.wait && !p.quiet).collect();
        prop_assert!(waiting.is_empty(), "waiting sends never answered: {waiting:?}");
        for from in 0..2 {
            prop_assert_eq!(
                &w.delivered[from],
                &w.accepted[from],
                "sender {}: delivered vs accepted", from
            );
        }
    }
}
