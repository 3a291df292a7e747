//! Federation: remote mailboxes between Warren hosts over AMQP 0-9-1 (RabbitMQ).
//!
//! The kernel (`warren-kernel`) knows remote mailboxes only as proxies whose messages it hands
//! to its driver, and injects what arrives with the remote sender's identity. Everything
//! between two kernels is here:
//!
//! * [`wire`] — the bytes between hosts: signed batches of messages and signed capability
//!   tokens bound to their bearer (pure, fuzz-style tested);
//! * [`trust`] — whose signatures to believe: the [`trust::Trust`] trait and the trusted-keys
//!   file; the host's own key (pure apart from reading the files);
//! * [`inbox`] — exactly-once, in-order admission of batches despite redeliveries (pure);
//! * [`store`] — the outbox and the settlement journal on disk, so daemon restarts lose and
//!   repeat nothing;
//! * [`amqp`] — the broker driver (`lapin` on a single-threaded tokio runtime in its own
//!   thread), bridged to the daemon's epoll loop by channels and an eventfd.
//!
//! The daemon glues them (`crates/warren/src/daemon/link.rs`); `docs/federation.md` describes
//! the guarantees and how they are obtained.
//!
//! **Architecture Invariant:** only `amqp` does network I/O and only `store` and the key
//! loading touch files; the decisions (what to admit, what is a duplicate, whether a signature
//! or a token holds) are pure functions of their inputs.
#![forbid(unsafe_code)]

pub mod amqp;
pub mod inbox;
pub mod store;
pub mod trust;
pub mod wire;

pub use ed25519_dalek::{SigningKey, VerifyingKey};
