//! Mailboxes: bounded queues of stored messages, with the sends waiting for room and the
//! receives waiting for a message.
//!
//! The *logical queue* of a mailbox is its queue followed by its waiting sends, in the order the
//! kernel accepted them. A waiting send exists only while the queue is full, so the two parts
//! together are the order of acceptance; `recv` takes the oldest matching message of the whole
//! logical queue (a selective receive can take a waiting send's message, which answers that
//! send), and a waiting receive matches nothing in it.

use std::collections::VecDeque;
use std::sync::Arc;

use warren_proto::{Filter, Handle, RequestId};

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

/// A send accepted while the queue was full: it is answered when its message enters the queue.
#[derive(Debug)]
pub(crate) struct WaitingSend {
    pub(crate) env: EnvId,
    pub(crate) id: RequestId,
    pub(crate) msg: Stored,
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
    pub(crate) queue: VecDeque<Stored>,
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
            queue: VecDeque::new(),
            senders: VecDeque::new(),
            receivers: VecDeque::new(),
        }
    }

    /// Whether a new message can enter the queue without waiting.
    pub(crate) fn has_room(&self) -> bool {
        self.queue.len() < self.capacity
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
