//! The wire protocol between an environment and the Warren kernel.
//!
//! An environment reaches the kernel only through the `SOCK_SEQPACKET` descriptor it inherits
//! (fd 3, `WARREN_FD=3`). This crate defines what travels on it: the operations a program may
//! ask for ([`Request`]), the kernel's answers ([`Response`]), the messages that move between
//! mailboxes ([`Message`], [`Delivery`]), and stable error codes ([`ErrorCode`]). It is sans-io:
//! no sockets, no clock, no `unsafe`. The codec ([`encode_request`], [`decode_requests`],
//! [`PacketBuilder`], ...) turns frames into packets of bytes and back; `docs/protocol.md`
//! specifies the byte layout, and `tests/vectors.txt` pins it.
//!
//! **Architecture Invariant:** this crate depends on no other crate of Warren's; the client
//! library depends only on it.
#![forbid(unsafe_code)]

mod codec;
mod spawn;
mod types;

pub use codec::{
    DecodeError, EncodeError, FRAME_HEADER_LEN, Frames, MAX_ATTEST_DATA, MAX_BATCH, MAX_BODY,
    MAX_CAPS, MAX_DETAIL, MAX_FRAME, MAX_HEADER_VALUE, MAX_HEADERS, MAX_IDENTITY_HANDLES, MAX_NAME,
    MAX_NONCE, MAX_PACKET, PacketBuilder, decode_requests, decode_responses, encode_request,
    encode_response, encode_send_batch, request_frames, response_frames,
};
pub use spawn::{
    Limits, MAX_SPAWN_ARGS, MAX_SPAWN_ENV, MAX_SPAWN_NAMES, MAX_SPAWN_TEXT, Spawn, Spawned,
};
pub use types::*;
