//! The Warren kernel's decision logic: environments, mailboxes, capability tables (c-lists),
//! monitors and the audit trail, as a pure, deterministic state machine.
//!
//! It follows quinn-proto's sans-io shape: the driver (the daemon loop) feeds it events —
//! [`Kernel::add_env`], [`Kernel::remove_env`], [`Kernel::handle_request`],
//! [`Kernel::handle_timeout`] — each with the driver's `now` in milliseconds ([`Millis`]), and
//! takes out what to do with [`Kernel::poll_action`] (answers to requests, audit records) and
//! when to wake it with [`Kernel::poll_timeout`]. It does no I/O, reads no clock, starts no
//! thread, and the same inputs give the same outputs.
//!
//! **Architecture Invariant:** this crate knows nothing about sockets, processes or tokio; it
//! depends only on `warren-proto`'s vocabulary. Every authority decision of the kernel is made
//! here, so it can be tested in virtual time.
//!
//! # The rules
//!
//! **Environments and handles.** Every environment has a default mailbox named after it;
//! handle 1 ([`DEFAULT_MAILBOX_HANDLE`]) in its table designates it with
//! RECEIVE|SEND|GRANT|MONITOR and cannot be dropped (`bad-request`). Handles are allocated from
//! a per-environment counter and never reused: a dropped handle number stays dead, and a handle
//! number means nothing in another environment's table.
//!
//! **Capabilities** are kernel objects: mailbox, rights, uses left, expiry, badge, the object it
//! was derived from (its parent) and what was derived from it, and a revoked flag. A table maps
//! handles to objects. Objects minted from policy (initial grants, lookups) and the owners'
//! RECEIVE capabilities are roots; every other object is derived from another.
//!
//! **Policy.** For each environment name in `may_send`, the environment gets at start a handle
//! with SEND|GRANT|MONITOR (badge 0) to that environment's default mailbox (handles 2, 3, ... in
//! declaration order; duplicates count once). If the named environment is not running, the grant
//! waits and is installed (as a new handle, visible in `whoami`) when an environment of that name
//! is added — again each time one is added under that name, while the old handles answer `dead`.
//! `lookup(name)` answers a new handle only if `name` is in the caller's `may_send` or
//! `may_discover` and a running mailbox has that name (`env` for a default mailbox,
//! `env/mailbox` for another): SEND|GRANT|MONITOR through `may_send`, SEND|MONITOR through
//! `may_discover` alone. Anything else — hidden, missing, or remote (`name@host`, not served
//! yet) — is the same `not-found`: no oracle.
//!
//! **Send** through a handle checks, in this order: the handle exists (`no-such-handle`), is
//! not revoked (`revoked`), not expired (`expired`: `now >= expires_at`), has uses left on its
//! whole derivation chain (`used-up`), has SEND (`no-right`), and the mailbox is alive
//! (`dead`). Each attached handle must exist, be neither revoked nor expired, and carry GRANT;
//! `reply_to` must be a handle with RECEIVE (one of the sender's mailboxes). All of it is checked
//! before anything changes. On acceptance one use is spent (on the handle and on every limited
//! ancestor: a use limit is shared with everything derived from it, so deriving never multiplies
//! it), and the message is stored with the sender's identity as the kernel saw it (environment
//! name and the badge of the capability used), a new object derived from each attached
//! capability (same rights minus RECEIVE, same badge, expiry and uses), and, with `reply_to`, a
//! new one-shot SEND-only reply capability derived from the sender's RECEIVE capability.
//! A reply handle whose last use a Send spends leaves the sender's table by itself (a handle
//! attenuated from it stays, used up), so that a server answering calls does not fill its
//! table with spent handles.
//!
//! **Room and ordering.** A mailbox's logical queue is its queue followed by the sends waiting
//! for room, in acceptance order. An accepted message goes to the first waiting receive whose
//! filter it matches, else into the queue if nothing waits for room and it has room — by count
//! and by bytes (below) — else, if the sender asked to wait, to the end of the waiting line
//! (answered `ok` when it enters the queue or a selective receive takes it, `dead` if the
//! mailbox dies first). A send that does not wait answers `full` when the queue is full (or
//! sends wait for room) and no waiting receive takes it, `quota` when only bytes are lacking,
//! and also while any send of the same sender to that mailbox is waiting, so
//! it cannot overtake it: per sender→receiver order holds. Authority is decided when a send is
//! accepted: a waiting send is already in the logical queue, like a queued message.
//!
//! **Receive** takes the oldest message of the logical queue that matches the filter
//! (correlation equal, if set; a header with that name and value, if set), leaving the others in
//! order — taking a waiting send's message answers that send. Delivery installs the attached and
//! reply capabilities as new handles in the receiver's table. With nothing matching, `timeout
//! Some(0)` answers `timeout` at once; otherwise the receive waits until a matching message is
//! accepted or its deadline passes (`timeout` via [`Kernel::handle_timeout`]); `None` waits
//! forever. Taking from the queue admits waiting sends while there is room. A delivery that
//! would take the receiver's table past [`Config::max_handles`] answers `unavailable` and the
//! message stays where it was.
//!
//! **Batches** (protocol version 2; a version-1 connection gets `bad-request` for them).
//! A *send batch* carries plain messages (bodies only) through one handle and is checked once,
//! in Send's order, needing one use per body on a use-limited handle; refused, nothing of it
//! enters. Accepted bodies go, in order, to waiting receives that take plain messages (a
//! single receive one, a batch receive up to its `max`), then into the queue while it has room
//! (stored as one run, capacity counted per message), and the rest either waits as one waiting
//! send (`wait`: answered `accepted` with the whole count once the last body is in, `dead` if
//! the mailbox dies first) or is refused (answered `accepted` with the count of the prefix
//! taken). Without `wait`, behind a waiting send of the same sender to that mailbox, it takes
//! nothing. A *quiet* batch is answered only when something was refused. A *batch receive*
//! takes up to `max` plain messages from the front of the logical queue as runs (one sender
//! and badge each), within a frame's size; a message that is not plain is taken alone when it
//! is the oldest (answered as a single delivery) and ends the batch otherwise; with nothing
//! queued it waits like a receive without a filter.
//!
//! **Attenuate** makes a new handle derived from the given one: rights intersected (never
//! RECEIVE, which is not transferable), uses and expiry the smaller of the old and the asked
//! (`expires_in_ms` from now), badge kept unless set — and it can be set only on a capability
//! whose badge is 0 (`no-right` otherwise, as in seL4). It needs no GRANT: the caller only
//! weakens what it already has, and the result keeps GRANT only if both had it. A revoked,
//! expired, used-up or dead handle cannot be attenuated.
//!
//! **Revoke** marks every object derived from the handle's object — transitively, in any
//! environment's table and in messages still queued or waiting — revoked; the handle itself
//! stays valid. **Drop** removes a handle; what was derived from it stays alive (and still
//! within reach of a revocation through its ancestors). Dropping the RECEIVE handle of a
//! non-default mailbox destroys that mailbox: queued messages are discarded (one audit record),
//! waiting sends and receives on it answer `dead`, other holders' handles to it answer `dead`,
//! and its monitors fire.
//!
//! **Monitor** needs MONITOR and answers a reference (a kernel-wide counter). When the mailbox's
//! owner ends, or the owner destroys that mailbox, the monitoring environment's default mailbox
//! gets a `down` notice: a delivery
//! with `down = Some(reference)`, `from` = the owner's name with badge 0, the header
//! `warren-down: ended` ([`DOWN_HEADER`]) and no body. Down notices are never refused for room.
//! Monitoring a mailbox that is already gone (owner ended, or destroyed) queues the notice at
//! once.
//!
//! **Create mailbox** makes a mailbox owned by the caller (a RECEIVE|SEND|GRANT|MONITOR handle),
//! named with a label unique among the caller's mailboxes (`bad-request` otherwise) and then
//! discoverable as `env/name`, or unnamed (`env/#n`); at most
//! [`Config::max_mailboxes_per_env`], default one included (`unavailable`).
//!
//! **Whoami** lists every handle, sorted, with what it designates (`db`, `web/session`,
//! `db (reply)`) and its rights. **Hello** answers `welcome` with the highest version in both
//! the client's range and [`warren_proto::MIN_VERSION`]`..=`[`warren_proto::VERSION`], and
//! `version` when there is none; the environment then speaks that version.
//!
//! **An environment ends** ([`Kernel::remove_env`]): its mailboxes die (waiting senders get
//! `dead`; queued messages are discarded with an audit record), its own waiting requests are
//! dropped unanswered (its connection is gone), its table is freed, and its monitors get `down`
//! notices. Messages it had sent and that were accepted stay queued and are delivered.
//!
//! **Spawn** (protocol version 3; `kernel/spawn.rs` has the rules): templates, SPAWN
//! capabilities on them (attenuable with `restrict`, revocable), the spawn decision emitting
//! [`Action::Spawn`], completion with [`Kernel::spawned`] / [`Kernel::spawn_failed`], initial
//! names in the child's table (resolvable by `lookup`, shown by `whoami`), STOP handles,
//! links (linked children get [`Action::Stop`] when their parent ends) and `down` notices to
//! the parent with the exit status. A connection of version 1 or 2 never sees the SPAWN and
//! STOP rights bits.
//!
//! **Audit.** Every error answer except `full` and `timeout` (outcomes, not denials) comes with
//! an [`Action::Audit`] record: who, the operation, the handle, the target where known, the code,
//! and why (more precisely than the client is told, e.g. whether a lookup was hidden or
//! missing). Discarded messages are recorded too. Records are rate limited per environment
//! (`audit.rs`): past [`Config::audit_records_per_window`] in a window of
//! [`Config::audit_window_ms`], they are counted into one aggregate per (operation, code)
//! ([`Repeated`]: count, first, last), written when the window ends — never dropped uncounted.
//!
//! **Byte quotas.** Every environment has a byte quota ([`EnvSpec::mailbox_bytes`], default
//! [`Config::default_mailbox_bytes`]); what it *pins* ([`Kernel::pinned_bytes`]) is the bytes
//! ([`message_cost`]) of the messages queued in every mailbox it owns plus those of its own
//! sends waiting for room. A message enters a queue only within its owner's quota and within
//! the sender's share of it (1/[`SENDER_SHARE_DIVISOR`]); a send that would wait is charged
//! to the sender, within the sender's own quota; an empty account always takes one message.
//! Refusals answer `quota` ([`warren_proto::QUOTA_VERSION`] and later; `unavailable` before).
//!
//! **Limits** ([`Config`]): handles per table and monitors per environment, mailboxes per
//! environment, and waiting requests per environment answer `unavailable` when exceeded. An idle
//! mailbox allocates nothing but its designation (its queues are empty `VecDeque`s).
//!
//! **Time** never goes backwards: a `now` earlier than one already seen counts as the latest.

#![forbid(unsafe_code)]

mod action;
mod audit;
mod caps;
mod kernel;
mod mailbox;

pub use action::{Action, AuditRecord, Repeated, SpawnOrder};
#[doc(hidden)]
pub use kernel::CapInfo;
pub use kernel::check_label;
pub use kernel::spawn::{
    CHILD_MAILBOX_RIGHTS, DEFAULT_MAX_CHILDREN, EXIT_HEADER, ExitStatus, GAVE_UP_HEADER, KeptChild,
    KeptName, RESTARTS_HEADER, SPAWN_RIGHTS, TEMPLATE_PREFIX, TemplateInfo,
};
pub use kernel::{
    Config, DEFAULT_MAILBOX_HANDLE, DOWN_HEADER, EnvSpec, Export, Import, Inbound, InjectError,
    Kernel, KernelError, MESSAGE_OVERHEAD, Outbound, SENDER_SHARE_DIVISOR, Stats, accepts,
    message_cost,
};

/// Virtual time: milliseconds on the driver's clock.
pub type Millis = u64;

/// A running (or once running) environment, as the kernel numbers them; never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Ord, PartialOrd)]
pub struct EnvId(pub u32);

#[cfg(test)]
mod tests;
