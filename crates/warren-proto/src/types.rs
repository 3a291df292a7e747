//! The protocol's vocabulary: handles, rights, messages, requests, responses, error codes.

use std::fmt;

/// A capability handle: a small integer that indexes the holder's capability table (c-list) in
/// the kernel. It means nothing in any other environment.
pub type Handle = u32;

/// A request identifier chosen by the client; the kernel echoes it in the response.
pub type RequestId = u32;

/// What a capability allows. Rights only ever shrink: attenuation can remove, never add.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(pub u32);

impl Rights {
    /// No rights.
    pub const NONE: Rights = Rights(0);
    /// Send messages to the mailbox.
    pub const SEND: Rights = Rights(1);
    /// Pass the capability on (attach it to a message, or attenuate it for others).
    pub const GRANT: Rights = Rights(2);
    /// Be told (`down`) when the mailbox's owner ends.
    pub const MONITOR: Rights = Rights(4);
    /// Receive from the mailbox: held only by its owner, never transferable.
    pub const RECEIVE: Rights = Rights(8);
    /// Version 3: create children from a template (a handle on a template carries it).
    pub const SPAWN: Rights = Rights(0x10);
    /// Version 3: stop or kill an environment (the handle a spawn answers with carries it).
    pub const STOP: Rights = Rights(0x20);
    /// Every right a capability to someone else's mailbox can carry.
    pub const ALL_REMOTE: Rights = Rights(1 | 2 | 4);
    /// The bits that have a meaning; others are rejected on decode.
    pub const KNOWN: Rights = Rights(1 | 2 | 4 | 8 | 0x10 | 0x20);
    /// The bits versions 1 and 2 know: the kernel never shows a connection of those versions
    /// any other.
    pub const KNOWN_V2: Rights = Rights(1 | 2 | 4 | 8);

    /// Whether every right in `other` is in `self`.
    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// The rights in both.
    pub fn intersect(self, other: Rights) -> Rights {
        Rights(self.0 & other.0)
    }

    /// The union of both.
    pub fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        let names_of = [
            (1, "SEND"),
            (2, "GRANT"),
            (4, "MONITOR"),
            (8, "RECEIVE"),
            (0x10, "SPAWN"),
            (0x20, "STOP"),
        ];
        for (bit, name) in names_of {
            if self.0 & bit != 0 {
                names.push(name);
            }
        }
        if self.0 & !Rights::KNOWN.0 != 0 {
            names.push("?");
        }
        write!(f, "Rights({})", names.join("|"))
    }
}

/// One message as a sender hands it to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Free-form headers (name, value). Names are UTF-8; values are bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// An optional correlation id, for selective receive (`recv` with a correlation filter).
    pub correlation: Option<u64>,
    /// The body.
    pub body: Vec<u8>,
    /// Handles in the sender's table to attach: each must carry GRANT; the receiver gets a new
    /// handle with the same rights (minus nothing), and the sender keeps its own.
    pub caps: Vec<Handle>,
    /// One of the sender's own mailboxes (a handle with RECEIVE) for which the kernel mints a
    /// one-shot SEND capability into the receiver's table: Erlang's `From`.
    pub reply_to: Option<Handle>,
}

/// Who sent a delivered message, as the kernel saw it: no sender can forge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The sending environment's name (`name@host` for a remote sender).
    pub env: String,
    /// The badge of the capability the sender used (set when it was minted or attenuated).
    pub badge: u64,
}

/// A message as the kernel hands it to a receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The mailbox (a handle with RECEIVE in the receiver's table) it arrived in.
    pub mailbox: Handle,
    /// Who sent it.
    pub from: Sender,
    /// Headers, correlation and body as sent; `caps` and `reply_to` are empty.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Correlation id as sent.
    pub correlation: Option<u64>,
    /// The body.
    pub body: Vec<u8>,
    /// Handles newly installed in the receiver's table for the capabilities attached.
    pub caps: Vec<Handle>,
    /// A one-shot SEND handle to answer the sender, if it asked for one.
    pub reply: Option<Handle>,
    /// Set when this is a `down` notice from a monitor: the monitor reference.
    pub down: Option<u64>,
}

/// Which messages a `recv` accepts (all conditions must hold; an empty filter takes the oldest).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// Only messages with this correlation id.
    pub correlation: Option<u64>,
    /// Only messages with this header name and value.
    pub header: Option<(String, Vec<u8>)>,
}

/// An operation a program asks the kernel for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The first frame on a connection: the protocol versions the client speaks.
    Hello {
        /// Lowest version understood.
        min_version: u16,
        /// Highest version understood.
        max_version: u16,
    },
    /// Send a message through `handle` (needs SEND). With `wait`, a full mailbox makes the
    /// request wait for room; without, it fails with [`ErrorCode::Full`].
    Send {
        /// The capability used.
        handle: Handle,
        /// The message.
        message: Message,
        /// Wait for room rather than fail when the mailbox is full.
        wait: bool,
    },
    /// Take the oldest message matching `filter` from `mailbox` (a RECEIVE handle; `None` = the
    /// environment's default mailbox), waiting up to `timeout_ms` (`None` = forever, `Some(0)` =
    /// do not wait).
    Recv {
        /// Which mailbox.
        mailbox: Option<Handle>,
        /// Which messages.
        filter: Filter,
        /// How long to wait.
        timeout_ms: Option<u64>,
    },
    /// A handle for the mailbox named `name`, where policy lets the caller discover it.
    Lookup {
        /// `name`, or `name@host` for a remote mailbox.
        name: String,
    },
    /// The caller's own name, mailboxes and handles.
    Whoami,
    /// A new handle to the same mailbox with fewer rights, a use limit and/or an expiry, and a
    /// badge that receivers will see. Needs GRANT on `handle` unless only rights are dropped
    /// for the caller's own use.
    Attenuate {
        /// The handle to derive from.
        handle: Handle,
        /// The rights to keep (intersected with the handle's).
        rights: Rights,
        /// How many sends it allows (`None` = unlimited; `Some(1)` = one-shot).
        uses: Option<u32>,
        /// Lifetime in milliseconds from now (`None` = no expiry).
        expires_in_ms: Option<u64>,
        /// The badge receivers will see for messages sent through it (`None` = keep).
        badge: Option<u64>,
    },
    /// Revoke every capability derived from `handle` (the handle itself stays).
    Revoke {
        /// The handle whose derivations die.
        handle: Handle,
    },
    /// Remove `handle` from the caller's table.
    Drop {
        /// The handle.
        handle: Handle,
    },
    /// Be sent a `down` notice in the default mailbox when the owner of `handle`'s mailbox
    /// ends (needs MONITOR).
    Monitor {
        /// The handle.
        handle: Handle,
    },
    /// Create another mailbox owned by the caller; returns a RECEIVE|SEND|GRANT|MONITOR handle.
    CreateMailbox {
        /// An optional name (discoverable under `<env>/<name>` where policy allows).
        name: Option<String>,
    },
    /// Version 2: send many plain messages (a body each; no headers, correlation, caps or
    /// reply) through one `handle`, checked once. Answered [`Response::Accepted`] with how many
    /// entered the mailbox's logical queue, in order: a prefix of `bodies`.
    SendBatch {
        /// The capability used (needs SEND, and a use per body if it has a use limit).
        handle: Handle,
        /// When the mailbox cannot take every body now: true = the rest waits for room as one
        /// waiting send; false = the rest is refused and the answer counts what was accepted.
        wait: bool,
        /// Send no answer when every body was accepted (errors and partial counts are still
        /// answered).
        quiet: bool,
        /// The bodies, in order.
        bodies: Bodies,
    },
    /// Version 2: take up to `max` messages at once from `mailbox` (`None` = the default one),
    /// oldest first, waiting up to `timeout_ms` for the first. Answered [`Response::Deliveries`]
    /// (plain messages) or, when the oldest message is not plain, [`Response::Delivery`].
    RecvBatch {
        /// Which mailbox.
        mailbox: Option<Handle>,
        /// The most messages to take (1 ..= [`MAX_BATCH`](crate::MAX_BATCH)).
        max: u32,
        /// How long to wait for the first message.
        timeout_ms: Option<u64>,
    },
    /// Version 3: create a child environment from a template (answered
    /// [`Response::Spawned`]).
    Spawn(crate::Spawn),
    /// Version 3: stop (`kill` false: SIGTERM, then SIGKILL after a grace period) or kill at
    /// once the environment `handle` designates (needs STOP).
    Stop {
        /// A handle with STOP.
        handle: Handle,
        /// Kill at once rather than ask it to stop.
        kill: bool,
    },
    /// Version 3: a new SPAWN handle derived from `handle` with a smaller share of live
    /// children and lower limits (answered [`Response::Handle`]).
    Restrict {
        /// A handle with SPAWN.
        handle: Handle,
        /// Most live children spawned through the new handle and everything derived from it.
        share: Option<u32>,
        /// Lower ceilings for children spawned through it.
        limits: crate::Limits,
    },
    /// A quote from the host's root of trust binding the caller's own launch record and
    /// `data` to a verifier's `nonce` (answered with [`Response::Quote`]).
    Attest {
        /// The verifier's nonce (at most 64 bytes; the kernel refuses an empty one).
        nonce: Vec<u8>,
        /// Data the caller binds into the quote (at most 1024 bytes), e.g. a public key.
        data: Vec<u8>,
    },
}

/// Message bodies in one buffer, as the wire carries them: each body a `u32` length and its
/// bytes, back to back. A batch send hands the kernel one of these, the kernel stores it as one
/// block, and a batch delivery carries it on: no body is allocated or re-encoded on its own.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bodies {
    data: Vec<u8>,
    count: usize,
}

impl Bodies {
    /// No bodies.
    pub fn new() -> Bodies {
        Bodies::default()
    }

    /// No bodies, with room for `bytes` bytes of encoded bodies (4 + length each).
    pub fn with_capacity(bytes: usize) -> Bodies {
        Bodies {
            data: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Appends one body. Fails, leaving the bodies as they were, if the body is longer than
    /// [`MAX_BODY`](crate::MAX_BODY) or [`MAX_BATCH`](crate::MAX_BATCH) bodies are there already.
    pub fn push(&mut self, body: &[u8]) -> Result<(), crate::EncodeError> {
        if body.len() > crate::MAX_BODY {
            return Err(crate::EncodeError::TooLarge {
                what: "body",
                len: body.len(),
                limit: crate::MAX_BODY,
            });
        }
        if self.count >= crate::MAX_BATCH {
            return Err(crate::EncodeError::TooLarge {
                what: "bodies",
                len: self.count + 1,
                limit: crate::MAX_BATCH,
            });
        }
        self.data
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.data.extend_from_slice(body);
        self.count += 1;
        Ok(())
    }

    /// Bodies from their wire encoding, which the caller has checked tiles exactly.
    pub(crate) fn from_checked(data: Vec<u8>, count: usize) -> Bodies {
        Bodies { data, count }
    }

    /// How many bodies.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded size: 4 bytes plus the length of each body.
    pub fn encoded_len(&self) -> usize {
        self.data.len()
    }

    /// The encoding: each body's `u32` length and bytes, back to back.
    pub fn as_encoded(&self) -> &[u8] {
        &self.data
    }

    /// The bodies in order, borrowed.
    pub fn iter(&self) -> BodiesIter<'_> {
        BodiesIter {
            data: &self.data,
            left: self.count,
        }
    }

    /// The encoded size of the first `k` bodies (`k` at most [`len`](Self::len)).
    pub fn prefix_len(&self, k: usize) -> usize {
        let mut pos = 0;
        for _ in 0..k.min(self.count) {
            let len = u32::from_le_bytes(self.data[pos..pos + 4].try_into().expect("4 bytes"));
            pos += 4 + len as usize;
        }
        pos
    }

    /// Removes the first `k` bodies (all of them if `k` is larger) and returns them.
    pub fn split_front(&mut self, k: usize) -> Bodies {
        if k >= self.count {
            return std::mem::take(self);
        }
        let at = self.prefix_len(k);
        let front = self.data[..at].to_vec();
        self.data.drain(..at);
        self.count -= k;
        Bodies {
            data: front,
            count: k,
        }
    }

    /// Removes every body, keeping the allocation.
    pub fn clear(&mut self) {
        self.data.clear();
        self.count = 0;
    }

    /// Appends every body of `other`.
    pub fn append(&mut self, other: &Bodies) {
        self.data.extend_from_slice(&other.data);
        self.count += other.count;
    }
}

impl fmt::Debug for Bodies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<&'a [u8]> for Bodies {
    /// Collects bodies; panics if one is over [`MAX_BODY`](crate::MAX_BODY) or there are more
    /// than [`MAX_BATCH`](crate::MAX_BATCH) (use [`Bodies::push`] to handle that).
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Bodies {
        let mut b = Bodies::new();
        for body in iter {
            b.push(body).expect("bodies within the protocol's limits");
        }
        b
    }
}

/// The bodies of a [`Bodies`], borrowed, in order.
#[derive(Debug, Clone)]
pub struct BodiesIter<'a> {
    data: &'a [u8],
    left: usize,
}

impl<'a> Iterator for BodiesIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let len = u32::from_le_bytes(self.data[..4].try_into().expect("4 bytes")) as usize;
        let (body, rest) = self.data[4..].split_at(len);
        self.data = rest;
        self.left -= 1;
        Some(body)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for BodiesIter<'_> {}

/// Plain messages from one sender through one badge, in the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Who sent them, as the kernel saw it.
    pub from: Sender,
    /// Their bodies.
    pub bodies: Bodies,
}

/// Version 2: many plain messages taken from one mailbox by one [`Request::RecvBatch`], grouped
/// into runs of consecutive messages with the same sender and badge, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliveries {
    /// The mailbox (a handle with RECEIVE in the receiver's table) they were taken from.
    pub mailbox: Handle,
    /// The runs, oldest first.
    pub runs: Vec<Run>,
}

impl Deliveries {
    /// How many messages, over all runs.
    pub fn len(&self) -> usize {
        self.runs.iter().map(|r| r.bodies.len()).sum()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.runs.iter().all(|r| r.bodies.is_empty())
    }

    /// Every message as (sender, body), oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&Sender, &[u8])> {
        self.runs
            .iter()
            .flat_map(|r| r.bodies.iter().map(move |b| (&r.from, b)))
    }
}

/// The kernel's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The connection's version and the environment's identity.
    Welcome {
        /// The version both sides will speak.
        version: u16,
        /// The environment's name.
        env: String,
    },
    /// Done, nothing to return.
    Ok,
    /// A handle and its rights.
    Handle {
        /// The handle.
        handle: Handle,
        /// Its rights.
        rights: Rights,
    },
    /// A monitor reference.
    Monitor {
        /// The reference that `down` notices carry.
        reference: u64,
    },
    /// A received message.
    Delivery(Delivery),
    /// The caller's identity.
    Identity(Identity),
    /// Version 2: many plain messages, the answer to a [`Request::RecvBatch`].
    Deliveries(Deliveries),
    /// Version 2: how many bodies of a [`Request::SendBatch`] were accepted (a prefix).
    Accepted {
        /// The number accepted.
        count: u32,
    },
    /// Version 3: the child a [`Request::Spawn`] created.
    Spawned(crate::Spawned),
    /// A quote (the JSON document of docs/attestation.md), answering `Attest`.
    Quote {
        /// The quote's bytes.
        quote: Vec<u8>,
    },
    /// The request failed.
    Error {
        /// The stable code.
        code: ErrorCode,
        /// Human-readable detail (not stable; never parse it).
        detail: String,
    },
}

/// An environment's view of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its name.
    pub env: String,
    /// Every handle in its table: (handle, what it designates, rights).
    pub handles: Vec<(Handle, String, Rights)>,
}

/// Stable error codes: numbers never change meaning; new ones are only added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame could not be decoded or the request makes no sense.
    BadRequest = 1,
    /// No such handle in the caller's table.
    NoSuchHandle = 2,
    /// The handle lacks a right the operation needs.
    NoRight = 3,
    /// The capability was revoked.
    Revoked = 4,
    /// The capability expired.
    Expired = 5,
    /// A one-shot (or limited-use) capability has been used up.
    UsedUp = 6,
    /// The mailbox is full and the sender asked not to wait.
    Full = 7,
    /// Nothing arrived before the timeout.
    Timeout = 8,
    /// Lookup: no such name, or policy hides it (the two are indistinguishable on purpose).
    NotFound = 9,
    /// The mailbox's owner has ended.
    Dead = 10,
    /// No protocol version in common.
    Version = 11,
    /// A frame or field exceeds the protocol's limits.
    TooLarge = 12,
    /// The kernel is shutting down or cannot take more (e.g. too many handles).
    Unavailable = 13,
    /// A byte quota would be exceeded (version 3: the receiving environment's or the sender's;
    /// the detail names which). Older connections get [`ErrorCode::Unavailable`] instead.
    Quota = 14,
    /// Attest: the root of trust could not make a quote (no launch record, key or TPM failure).
    AttestFailed = 20,
    /// Version 3, Spawn: the child could not be started (the detail says why).
    SpawnFailed = 40,
    /// Version 3, Spawn: the template does not allow what was asked (arguments, a variable, a
    /// limit above its ceiling, detaching).
    NotAllowed = 41,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BadRequest,
        ErrorCode::NoSuchHandle,
        ErrorCode::NoRight,
        ErrorCode::Revoked,
        ErrorCode::Expired,
        ErrorCode::UsedUp,
        ErrorCode::Full,
        ErrorCode::Timeout,
        ErrorCode::NotFound,
        ErrorCode::Dead,
        ErrorCode::Version,
        ErrorCode::TooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Quota,
        ErrorCode::AttestFailed,
        ErrorCode::SpawnFailed,
        ErrorCode::NotAllowed,
    ];

    /// The code for `n`, if it is one.
    pub fn from_u16(n: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| *c as u16 == n)
    }

    /// The lowercase name used in documents and CLI output (`revoked`, `full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::NoSuchHandle => "no-such-handle",
            ErrorCode::NoRight => "no-right",
            ErrorCode::Revoked => "revoked",
            ErrorCode::Expired => "expired",
            ErrorCode::UsedUp => "used-up",
            ErrorCode::Full => "full",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Dead => "dead",
            ErrorCode::Version => "version",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Quota => "quota",
            ErrorCode::AttestFailed => "attest-failed",
            ErrorCode::SpawnFailed => "spawn-failed",
            ErrorCode::NotAllowed => "not-allowed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the kernel sends unprompted: nothing yet besides responses; deliveries answer `Recv`.
/// A frame on the wire is either a request (client → kernel) or a response (kernel → client),
/// each with the request id it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T> {
    /// The request id.
    pub id: RequestId,
    /// The request or response.
    pub body: T,
}

/// The highest protocol version this crate speaks: 2 adds batch sends and receives
/// ([`Request::SendBatch`], [`Request::RecvBatch`]); 3 adds the error code
/// [`ErrorCode::Quota`].
pub const VERSION: u16 = 3;

/// The first protocol version whose connections are answered [`ErrorCode::Quota`]; older ones
/// get [`ErrorCode::Unavailable`] for a quota refusal (their decoders do not know code 14).
pub const QUOTA_VERSION: u16 = 3;

/// The first protocol version with spawn: [`Request::Spawn`], [`Request::Stop`],
/// [`Request::Restrict`], [`Response::Spawned`], the rights [`Rights::SPAWN`] and
/// [`Rights::STOP`], and the error codes [`ErrorCode::SpawnFailed`] and
/// [`ErrorCode::NotAllowed`].
pub const SPAWN_VERSION: u16 = 3;

/// The lowest protocol version this crate speaks.
pub const MIN_VERSION: u16 = 1;
