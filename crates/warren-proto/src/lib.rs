//! The wire protocol between an environment and the Warren kernel.
//!
//! An environment reaches the kernel only through the `SOCK_SEQPACKET` descriptor it inherits
//! (fd 3, `WARREN_FD=3`). This crate defines what travels on it: the operations a program may
//! ask for ([`Request`]), the kernel's answers ([`Response`]), the messages that move between
//! mailboxes ([`Message`], [`Delivery`]), and stable error codes ([`ErrorCode`]). It is sans-io:
//! no sockets, no clock, no `unsafe`; `docs/protocol.md` specifies the byte layout.
//!
//! **Architecture Invariant:** this crate depends on no other crate of Warren's; the client
//! library depends only on it.
#![forbid(unsafe_code)]

mod types;

pub use types::*;
