//! Mailboxes: bounded queues of stored messages, with the sends waiting for room and the
//! receives waiting for a message.
//!
//! The *logical queue* of a mailbox is its queue followed by its waiting sends, in the order the
//! kernel accepted them. A waiting send exists only while the queue cannot take the oldest of
//! them (it is full, or its owner's byte quota or the sender's share of it is reached), and
//! nothing enters the queue past a waiting send, so the two parts together are the order of
//! acceptance; `recv` takes the oldest matching message of the whole
//! logical queue (a selective receive can take a waiting send's message, which answers that
//! send), and a waiting receive matches nothing in it.
//!
//! An entry of either part is one message ([`Entry::One`]) or a run of plain messages from one
//! batch send ([`Entry::Run`]: bodies only, kept as the one buffer they arrived in). Capacity
//! counts messages, not entries: [`Mailbox::queued`] is the number of messages in the queue.
//! Byte quotas count [`crate::message_cost`] per message, whether it is one or part of a run.

use std::collections::VecDeque;
use std::sync::Arc;

use warren_proto::{Bodies, Filter, Handle, RequestId};

use crate::caps::CapId;
use crate::{EnvId, Millis};

/// A mailbox's identity in the kernel: allocated from a counter, never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Ord, PartialOrd)]
pub(crate) struct MailboxId(pub(crate) u64);

/// A message as the kernel keeps it until delivery.
#[derive(Debug)]
pub(crate) struct Stored {
    /// The sending environment's name.
    pub(crate) from: Arc<str>,
    /// The badge of the capability it was sent through.
    pub(crate) badge: u64,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) correlation: Option<u64>,
    pub(crate) body: Vec<u8>,
    /// Capability objects derived for the receiver, held by this message until delivery.
    pub(crate) caps: Vec<CapId>,
    /// The one-shot reply capability, held by this message until delivery.
    pub(crate) reply: Option<CapId>,
    /// Set on a `down` notice: the monitor reference.
    pub(crate) down: Option<u64>,
    /// Set on a message from another host: the driver's ticket, settled on delivery.
    pub(crate) ticket: Option<u64>,
}

impl Stored {
    /// How many handles delivering it installs.
    pub(crate) fn handles_needed(&self) -> usize {
        self.caps.len() + usize::from(self.reply.is_some())
    }

    /// Every capability object the message holds.
    pub(crate) fn held_caps(&self) -> impl Iterator<Item = CapId> + '_ {
        self.caps.iter().copied().chain(self.reply)
    }

    /// What it counts against a byte quota ([`crate::message_cost`]).
    pub(crate) fn cost(&self) -> usize {
        crate::message_cost(self.body.len(), &self.headers)
    }
}

impl Stored {
    /// A plain message: a body and nothing else.
    pub(crate) fn plain(from: Arc<str>, badge: u64, body: Vec<u8>) -> Stored {
        Stored {
            from,
            badge,
            headers: Vec::new(),
            correlation: None,
            body,
            caps: Vec::new(),
            reply: None,
            down: None,
            ticket: None,
        }
    }

    /// Whether it is plain: a body and nothing else (what a batch delivery can carry).
    pub(crate) fn is_plain(&self) -> bool {
        self.headers.is_empty()
            && self.correlation.is_none()
            && self.caps.is_empty()
            && self.reply.is_none()
            && self.down.is_none()
            && self.ticket.is_none()
    }
}

/// Plain messages of one batch send, in order: a sender, a badge and their bodies.
#[derive(Debug)]
pub(crate) struct RunStored {
    pub(crate) from: Arc<str>,
    pub(crate) badge: u64,
    /// Never empty while in a mailbox.
    pub(crate) bodies: Bodies,
}

/// What `k` bodies whose encoding takes `encoded` bytes count against a byte quota: each is its
/// body plus [`crate::MESSAGE_OVERHEAD`] (the encoding has 4 bytes of length per body).
pub(crate) fn bodies_cost(k: usize, encoded: usize) -> usize {
    encoded - 4 * k + k * crate::MESSAGE_OVERHEAD
}

/// The quota cost of each body, in order.
pub(crate) fn body_costs(bodies: &Bodies) -> impl Iterator<Item = usize> + '_ {
    bodies.iter().map(|b| crate::message_cost(b.len(), &[]))
}

impl RunStored {
    /// What it counts against a byte quota.
    pub(crate) fn cost(&self) -> usize {
        bodies_cost(self.bodies.len(), self.bodies.encoded_len())
    }

    /// Takes its first message out (the run must keep at least one more).
    pub(crate) fn take_one(&mut self) -> Stored {
        let one = self.bodies.split_front(1);
        let body = one.iter().next().expect("one body").to_vec();
        Stored::plain(self.from.clone(), self.badge, body)
    }
}

/// One entry of a mailbox's queue or waiting line.
#[derive(Debug)]
pub(crate) enum Entry {
    /// One message.
    One(Stored),
    /// Plain messages from one batch send.
    Run(RunStored),
}

impl Entry {
    /// Its only message (a run must hold exactly one).
    pub(crate) fn into_first(self) -> Stored {
        match self {
            Entry::One(m) => m,
            Entry::Run(run) => {
                let body = run.bodies.iter().next().expect("a run is never empty");
                let body = body.to_vec();
                Stored::plain(run.from, run.badge, body)
            }
        }
    }

    /// What it counts against a byte quota.
    pub(crate) fn cost(&self) -> usize {
        match self {
            Entry::One(m) => m.cost(),
            Entry::Run(r) => r.cost(),
        }
    }

    /// Who sent it.
    pub(crate) fn from(&self) -> &Arc<str> {
        match self {
            Entry::One(m) => &m.from,
            Entry::Run(r) => &r.from,
        }
    }

    /// How many messages it holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Entry::One(_) => 1,
            Entry::Run(r) => r.bodies.len(),
        }
    }

    /// Whether its first message passes `filter`.
    pub(crate) fn first_matches(&self, filter: &Filter) -> bool {
        match self {
            Entry::One(m) => matches(filter, m.correlation, &m.headers),
            Entry::Run(_) => takes_plain(filter),
        }
    }
}

/// Whether `filter` accepts a plain message (no correlation, no headers): only the empty one.
pub(crate) fn takes_plain(filter: &Filter) -> bool {
    filter.correlation.is_none() && filter.header.is_none()
}

/// How a waiting send is answered once all of its messages have entered the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendReply {
    /// `ok` (a `Send`).
    Ok,
    /// `accepted` with the batch's whole count (a `SendBatch`).
    Accepted(u32),
    /// Nothing (a quiet `SendBatch`).
    Quiet,
}

/// Whether a message with these headers and correlation passes `filter`.
pub(crate) fn matches(
    filter: &Filter,
    correlation: Option<u64>,
    headers: &[(String, Vec<u8>)],
) -> bool {
    filter.correlation.is_none_or(|c| correlation == Some(c))
        && filter
            .header
            .as_ref()
            .is_none_or(|(name, value)| headers.iter().any(|(n, v)| n == name && v == value))
}

/// A send accepted while the queue was full: it is answered when its last message enters the
/// queue (or is taken by a receive).
#[derive(Debug)]
pub(crate) struct WaitingSend {
    pub(crate) env: EnvId,
    pub(crate) id: RequestId,
    pub(crate) entry: Entry,
    pub(crate) reply: SendReply,
}

/// A receive waiting for a matching message.
#[derive(Debug)]
pub(crate) struct WaitingRecv {
    /// Unique among waiting receives; orders deadlines.
    pub(crate) seq: u64,
    pub(crate) env: EnvId,
    pub(crate) id: RequestId,
    /// The RECEIVE handle the receive named (the default mailbox's for `None`).
    pub(crate) handle: Handle,
    pub(crate) filter: Filter,
    pub(crate) deadline: Option<Millis>,
    /// `Some(max)` for a batch receive (`RecvBatch`), `None` for a single one.
    pub(crate) batch: Option<u32>,
}

/// One mailbox. An idle one allocates nothing but its designation.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) owner: EnvId,
    /// The owner's name (kept after it ends, for `down` notices and designations).
    pub(crate) owner_name: Arc<str>,
    /// How it is called: `db`, `db/session`, or `db/#2` for an unnamed one.
    pub(crate) designation: Box<str>,
    /// The name given at creation (extra mailboxes only).
    pub(crate) name: Option<Box<str>>,
    pub(crate) capacity: usize,
    /// The owner still exists and has not destroyed it.
    pub(crate) alive: bool,
    /// How many capability objects designate it; a dead mailbox goes when this reaches zero.
    pub(crate) cap_refs: u32,
    /// Messages in `queue` (entries can hold several).
    pub(crate) queued: usize,
    pub(crate) queue: VecDeque<Entry>,
    pub(crate) senders: VecDeque<WaitingSend>,
    pub(crate) receivers: VecDeque<WaitingRecv>,
}

impl Mailbox {
    pub(crate) fn new(
        owner: EnvId,
        owner_name: Arc<str>,
        designation: Box<str>,
        name: Option<Box<str>>,
        capacity: usize,
    ) -> Mailbox {
        Mailbox {
            owner,
            owner_name,
            designation,
            name,
            capacity,
            alive: true,
            cap_refs: 0,
            queued: 0,
            queue: VecDeque::new(),
            senders: VecDeque::new(),
            receivers: VecDeque::new(),
        }
    }

    /// Whether a new message can enter the queue without waiting.
    pub(crate) fn has_room(&self) -> bool {
        self.queued < self.capacity
    }

    /// How many more messages the queue can take.
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.queued)
    }

    /// Appends an entry to the queue.
    pub(crate) fn push_queue(&mut self, entry: Entry) {
        self.queued += entry.len();
        self.queue.push_back(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_correlation_and_header() {
        let headers = vec![("kind".to_string(), b"ping".to_vec())];
        let any = Filter::default();
        assert!(matches(&any, None, &[]));
        let by_corr = Filter {
            correlation: Some(9),
            header: None,
        };
        assert!(matches(&by_corr, Some(9), &headers));
        assert!(!matches(&by_corr, Some(8), &headers));
        assert!(!matches(&by_corr, None, &headers));
        let by_header = Filter {
            correlation: None,
            header: Some(("kind".into(), b"ping".to_vec())),
        };
        assert!(matches(&by_header, None, &headers));
        let wrong_value = Filter {
            correlation: None,
            header: Some(("kind".into(), b"pong".to_vec())),
        };
        assert!(!matches(&wrong_value, None, &headers));
        let both = Filter {
            correlation: Some(1),
            header: by_header.header.clone(),
        };
        assert!(matches(&both, Some(1), &headers));
        assert!(!matches(&both, Some(2), &headers));
    }

    #[test]
    fn an_idle_mailbox_is_small_and_allocates_nothing_but_its_designation() {
        let mb = Mailbox::new(EnvId(1), Arc::from("db"), "db".into(), None, 64);
        let size = std::mem::size_of::<Mailbox>();
        println!("size_of::<Mailbox>() = {size} bytes");
        assert!(size < 256, "mailbox struct is {size} bytes");
        assert_eq!(mb.queue.capacity(), 0);
        assert_eq!(mb.senders.capacity(), 0);
        assert_eq!(mb.receivers.capacity(), 0);
    }
}
