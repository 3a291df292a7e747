//! The byte encoding of frames and packets, written by hand so that the layout is documented
//! (`docs/protocol.md`) and stable.
//!
//! A **packet** is what one `send`/`recv` moves on the `SOCK_SEQPACKET` socket: one or more
//! **frames** back to back, never more than [`MAX_PACKET`] bytes. Putting many frames in one
//! packet is the protocol's throughput lever (one syscall and one wake-up for the lot), so
//! [`PacketBuilder`] exists to fill packets. A frame is:
//!
//! ```text
//! u32 length   bytes that follow in this frame (op + id + fields), 5 ..= MAX_FRAME - 4
//! u8  op       which request or response (requests 0x01.., responses 0x81..)
//! u32 id       the request id
//! ...          the op's fields
//! ```
//!
//! Integers are little-endian. The encoding is canonical: every byte string that decodes
//! re-encodes to exactly the same bytes (there is one way to write each value), which the fuzz
//! target checks.
//!
//! Decoding never panics, and never allocates more than the input justifies: every length and
//! count is checked against its limit and against the bytes that remain before anything is
//! allocated. Every [`DecodeError`] says what was wrong and at which offset of the packet. The
//! same limits are enforced when encoding, so whatever encodes also decodes.

use thiserror::Error;

use crate::spawn::{
    Limits, MAX_SPAWN_ARGS, MAX_SPAWN_ENV, MAX_SPAWN_NAMES, MAX_SPAWN_TEXT, Spawn, Spawned,
};
use crate::types::{
    Bodies, Deliveries, Delivery, ErrorCode, Filter, Frame, Handle, Identity, Message, Request,
    Response, Rights, Run, Sender,
};

/// The largest packet, in bytes: the receive buffer a peer needs. Both ends' `SO_SNDBUF` must
/// allow it (Linux's default send buffer only allows 212,960-byte packets).
pub const MAX_PACKET: usize = 1 << 20;
/// The largest frame, in bytes, counting its 4-byte length field: a lone frame may fill a packet.
pub const MAX_FRAME: usize = MAX_PACKET;
/// The bytes every frame starts with: length (4), op (1), request id (4).
pub const FRAME_HEADER_LEN: usize = 9;
/// The longest name, in bytes of UTF-8: environment, mailbox, lookup and header names.
pub const MAX_NAME: usize = 255;
/// The most headers one message may carry.
pub const MAX_HEADERS: usize = 32;
/// The longest header value, in bytes.
pub const MAX_HEADER_VALUE: usize = 1024;
/// The longest message body, in bytes: a frame less 64 KiB for everything else, so that the
/// [`Delivery`] of any valid [`Message`] still fits in one frame.
pub const MAX_BODY: usize = MAX_FRAME - 64 * 1024;
/// The most capabilities one message may carry.
pub const MAX_CAPS: usize = 16;
/// The longest error detail, in bytes of UTF-8.
pub const MAX_DETAIL: usize = 1024;
/// The most handles one [`Identity`] may list.
pub const MAX_IDENTITY_HANDLES: usize = 1024;
/// Version 2: the most bodies one batch send carries, the most messages one batch receive
/// asks for, and the most bodies (and runs) one batch delivery carries.
pub const MAX_BATCH: usize = 16384;
/// The longest nonce an `Attest` request carries.
pub const MAX_NONCE: usize = 64;
/// The most data an `Attest` request binds into a quote.
pub const MAX_ATTEST_DATA: usize = 1024;

/// Operation codes: the byte after a frame's length.
mod op {
    pub const HELLO: u8 = 0x01;
    pub const SEND: u8 = 0x02;
    pub const RECV: u8 = 0x03;
    pub const LOOKUP: u8 = 0x04;
    pub const WHOAMI: u8 = 0x05;
    pub const ATTENUATE: u8 = 0x06;
    pub const REVOKE: u8 = 0x07;
    pub const DROP: u8 = 0x08;
    pub const MONITOR: u8 = 0x09;
    pub const CREATE_MAILBOX: u8 = 0x0a;
    pub const SEND_BATCH: u8 = 0x0b;
    pub const RECV_BATCH: u8 = 0x0c;
    pub const ATTEST: u8 = 0x10;
    pub const SPAWN: u8 = 0x20;
    pub const STOP: u8 = 0x21;
    pub const RESTRICT: u8 = 0x22;

    pub const WELCOME: u8 = 0x81;
    pub const OK: u8 = 0x82;
    pub const HANDLE: u8 = 0x83;
    pub const MONITOR_REF: u8 = 0x84;
    pub const DELIVERY: u8 = 0x85;
    pub const IDENTITY: u8 = 0x86;
    pub const ERROR: u8 = 0x87;
    pub const DELIVERIES: u8 = 0x88;
    pub const ACCEPTED: u8 = 0x89;
    pub const QUOTE: u8 = 0x90;
    pub const SPAWNED: u8 = 0xa0;
}

/// Encoded size of the largest possible message block (headers, correlation, body, caps,
/// reply handle) when every field is at its limit.
const MAX_MESSAGE_BLOCK: usize = 2
    + MAX_HEADERS * (1 + MAX_NAME + 4 + MAX_HEADER_VALUE)
    + 9
    + 4
    + MAX_BODY
    + 2
    + 4 * MAX_CAPS
    + 5;

// Every frame whose fields are within their limits fits in MAX_FRAME: the largest are a
// Delivery (a Send plus sender and mailbox), an Identity and an Error.
const _: () = assert!(FRAME_HEADER_LEN + 4 + 1 + MAX_NAME + 8 + MAX_MESSAGE_BLOCK + 9 <= MAX_FRAME);
const _: () = assert!(
    FRAME_HEADER_LEN + 1 + MAX_NAME + 2 + MAX_IDENTITY_HANDLES * (4 + 1 + MAX_NAME + 4)
        <= MAX_FRAME
);
const _: () = assert!(FRAME_HEADER_LEN + 2 + 2 + MAX_DETAIL <= MAX_FRAME);
// The largest Spawn: handle, suffix, args, env, limits, detach, names.
const _: () = assert!(
    FRAME_HEADER_LEN
        + 4
        + 1
        + 1
        + MAX_NAME
        + 2
        + MAX_SPAWN_ARGS * (2 + MAX_SPAWN_TEXT)
        + 2
        + MAX_SPAWN_ENV * (1 + MAX_NAME + 2 + MAX_SPAWN_TEXT)
        + 4 * 9
        + 1
        + 2
        + MAX_SPAWN_NAMES * (1 + MAX_NAME + 4)
        <= MAX_FRAME
);
const _: () = assert!(MAX_FRAME <= MAX_PACKET && MAX_DETAIL <= u16::MAX as usize);

/// Why bytes could not be decoded. `offset` is always counted from the start of the packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The packet has no bytes: a packet carries at least one frame.
    #[error("empty packet: a packet carries at least one frame")]
    EmptyPacket,
    /// The input ends (or the frame ends) before a field does.
    #[error("truncated {what} at offset {offset}: needs {need} bytes, {have} left")]
    Truncated {
        /// Where the field starts.
        offset: usize,
        /// The field.
        what: &'static str,
        /// How many bytes it needs.
        need: usize,
        /// How many bytes were left.
        have: usize,
    },
    /// A frame's length field is below the 5 bytes of op and request id.
    #[error("frame at offset {offset} has length {len}, below the minimum of 5")]
    FrameTooShort {
        /// Where the frame starts.
        offset: usize,
        /// The length it claims.
        len: u32,
    },
    /// A length, count or size exceeds the protocol's limit.
    #[error("{what} at offset {offset}: {len} exceeds the limit of {limit}")]
    TooLarge {
        /// Where the length or count (or the packet) starts.
        offset: usize,
        /// What is too large.
        what: &'static str,
        /// The length or count found.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// An op code that is not a request (when decoding requests) or not a response.
    #[error("unknown {direction} op {op:#04x} at offset {offset}")]
    UnknownOp {
        /// Where the op byte is.
        offset: usize,
        /// The op byte.
        op: u8,
        /// `"request"` or `"response"`: what was being decoded.
        direction: &'static str,
    },
    /// Rights with bits that have no meaning.
    #[error("unknown rights bits {bits:#x} in {what} at offset {offset}")]
    UnknownRights {
        /// Where the rights field starts.
        offset: usize,
        /// The field.
        what: &'static str,
        /// The unknown bits only.
        bits: u32,
    },
    /// A string that is not UTF-8.
    #[error("invalid utf-8 in {what} at offset {offset}")]
    BadUtf8 {
        /// The first byte that is not valid UTF-8.
        offset: usize,
        /// The field.
        what: &'static str,
    },
    /// An option tag or a boolean other than 0 or 1.
    #[error("invalid {what} tag {tag} at offset {offset}: expected 0 or 1")]
    BadTag {
        /// Where the tag is.
        offset: usize,
        /// The field.
        what: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// An error code this version does not define.
    #[error("unknown error code {code} at offset {offset}")]
    UnknownErrorCode {
        /// Where the code starts.
        offset: usize,
        /// The code.
        code: u16,
    },
    /// A frame's fields end before its length says.
    #[error("{count} trailing bytes at offset {offset} in the frame")]
    TrailingBytes {
        /// Where the first unread byte is.
        offset: usize,
        /// How many bytes were left over.
        count: usize,
    },
}

impl DecodeError {
    /// Where in the packet the problem is (0 for an empty packet).
    pub fn offset(&self) -> usize {
        match *self {
            DecodeError::EmptyPacket => 0,
            DecodeError::Truncated { offset, .. }
            | DecodeError::FrameTooShort { offset, .. }
            | DecodeError::TooLarge { offset, .. }
            | DecodeError::UnknownOp { offset, .. }
            | DecodeError::UnknownRights { offset, .. }
            | DecodeError::BadUtf8 { offset, .. }
            | DecodeError::BadTag { offset, .. }
            | DecodeError::UnknownErrorCode { offset, .. }
            | DecodeError::TrailingBytes { offset, .. } => offset,
        }
    }
}

/// Why a frame could not be encoded. On any error the output buffer is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A field, a count or the whole frame exceeds the protocol's limit.
    #[error("{what} is {len}, over the limit of {limit}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its length or count.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Rights with bits that have no meaning.
    #[error("unknown rights bits {bits:#x} in {what}")]
    UnknownRights {
        /// The field.
        what: &'static str,
        /// The unknown bits only.
        bits: u32,
    },
    /// [`PacketBuilder`]: the frame is valid but does not fit in what is left of the packet;
    /// send the packet and push the frame into the next one.
    #[error("a frame of {len} bytes does not fit in the {remaining} bytes left in the packet")]
    PacketFull {
        /// The encoded frame's size.
        len: usize,
        /// Room left in the packet.
        remaining: usize,
    },
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Appends one request frame to `out`. On error `out` is unchanged.
pub fn encode_request(frame: &Frame<Request>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_frame(out, request_op(&frame.body), frame.id, |out| {
        request_fields(&frame.body, out)
    })
}

/// Appends one response frame to `out`. On error `out` is unchanged.
pub fn encode_response(frame: &Frame<Response>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_frame(out, response_op(&frame.body), frame.id, |out| {
        response_fields(&frame.body, out)
    })
}

/// Appends one `SendBatch` request frame for borrowed `bodies` (what
/// [`encode_request`] writes for [`Request::SendBatch`], without needing to own the bodies).
/// On error `out` is unchanged.
pub fn encode_send_batch(
    out: &mut Vec<u8>,
    id: u32,
    handle: Handle,
    wait: bool,
    quiet: bool,
    bodies: &Bodies,
) -> Result<(), EncodeError> {
    encode_frame(out, op::SEND_BATCH, id, |out| {
        put_u32(out, handle);
        put_bool(out, wait);
        put_bool(out, quiet);
        put_bodies(out, bodies)
    })
}

/// Writes the frame header, the fields, then the length; undoes everything on error.
fn encode_frame(
    out: &mut Vec<u8>,
    op: u8,
    id: u32,
    fields: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(op);
    put_u32(out, id);
    let result = fields(out).and_then(|()| {
        let len = out.len() - start;
        if len > MAX_FRAME {
            return Err(EncodeError::TooLarge {
                what: "frame",
                len,
                limit: MAX_FRAME,
            });
        }
        Ok(len)
    });
    match result {
        Ok(len) => {
            // `len <= MAX_FRAME`, which fits in a u32.
            let body_len = (len - 4) as u32;
            out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn request_op(request: &Request) -> u8 {
    match request {
        Request::Hello { .. } => op::HELLO,
        Request::Send { .. } => op::SEND,
        Request::Recv { .. } => op::RECV,
        Request::Lookup { .. } => op::LOOKUP,
        Request::Whoami => op::WHOAMI,
        Request::Attenuate { .. } => op::ATTENUATE,
        Request::Revoke { .. } => op::REVOKE,
        Request::Drop { .. } => op::DROP,
        Request::Monitor { .. } => op::MONITOR,
        Request::CreateMailbox { .. } => op::CREATE_MAILBOX,
        Request::SendBatch { .. } => op::SEND_BATCH,
        Request::RecvBatch { .. } => op::RECV_BATCH,
        Request::Attest { .. } => op::ATTEST,
        Request::Spawn(_) => op::SPAWN,
        Request::Stop { .. } => op::STOP,
        Request::Restrict { .. } => op::RESTRICT,
    }
}

fn response_op(response: &Response) -> u8 {
    match response {
        Response::Welcome { .. } => op::WELCOME,
        Response::Ok => op::OK,
        Response::Handle { .. } => op::HANDLE,
        Response::Monitor { .. } => op::MONITOR_REF,
        Response::Delivery(_) => op::DELIVERY,
        Response::Identity(_) => op::IDENTITY,
        Response::Error { .. } => op::ERROR,
        Response::Deliveries(_) => op::DELIVERIES,
        Response::Accepted { .. } => op::ACCEPTED,
        Response::Quote { .. } => op::QUOTE,
        Response::Spawned(_) => op::SPAWNED,
    }
}

fn request_fields(request: &Request, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match request {
        Request::Hello {
            min_version,
            max_version,
        } => {
            put_u16(out, *min_version);
            put_u16(out, *max_version);
        }
        Request::Send {
            handle,
            message,
            wait,
        } => {
            put_u32(out, *handle);
            put_bool(out, *wait);
            let Message {
                headers,
                correlation,
                body,
                caps,
                reply_to,
            } = message;
            put_message_block(out, headers, *correlation, body, caps, *reply_to)?;
        }
        Request::Recv {
            mailbox,
            filter,
            timeout_ms,
        } => {
            put_opt(out, mailbox.as_ref(), |out, h| {
                put_u32(out, *h);
                Ok(())
            })?;
            put_opt(out, filter.correlation.as_ref(), |out, c| {
                put_u64(out, *c);
                Ok(())
            })?;
            put_opt(out, filter.header.as_ref(), |out, (name, value)| {
                put_name(out, name, "filter header name")?;
                put_bytes(out, value, MAX_HEADER_VALUE, "filter header value")
            })?;
            put_opt(out, timeout_ms.as_ref(), |out, t| {
                put_u64(out, *t);
                Ok(())
            })?;
        }
        Request::Lookup { name } => put_name(out, name, "lookup name")?,
        Request::Whoami => {}
        Request::Attenuate {
            handle,
            rights,
            uses,
            expires_in_ms,
            badge,
        } => {
            put_u32(out, *handle);
            put_rights(out, *rights, "attenuate rights")?;
            put_opt(out, uses.as_ref(), |out, u| {
                put_u32(out, *u);
                Ok(())
            })?;
            put_opt(out, expires_in_ms.as_ref(), |out, e| {
                put_u64(out, *e);
                Ok(())
            })?;
            put_opt(out, badge.as_ref(), |out, b| {
                put_u64(out, *b);
                Ok(())
            })?;
        }
        Request::Revoke { handle } | Request::Drop { handle } | Request::Monitor { handle } => {
            put_u32(out, *handle);
        }
        Request::CreateMailbox { name } => {
            put_opt(out, name.as_ref(), |out, n| {
                put_name(out, n, "mailbox name")
            })?;
        }
        Request::SendBatch {
            handle,
            wait,
            quiet,
            bodies,
        } => {
            put_u32(out, *handle);
            put_bool(out, *wait);
            put_bool(out, *quiet);
            put_bodies(out, bodies)?;
        }
        Request::RecvBatch {
            mailbox,
            max,
            timeout_ms,
        } => {
            put_opt(out, mailbox.as_ref(), |out, h| {
                put_u32(out, *h);
                Ok(())
            })?;
            if *max as usize > MAX_BATCH {
                return Err(too_large("batch max", *max as usize, MAX_BATCH));
            }
            put_u32(out, *max);
            put_opt(out, timeout_ms.as_ref(), |out, t| {
                put_u64(out, *t);
                Ok(())
            })?;
        }
        Request::Attest { nonce, data } => {
            put_bytes(out, nonce, MAX_NONCE, "attest nonce")?;
            put_bytes(out, data, MAX_ATTEST_DATA, "attest data")?;
        }
        Request::Spawn(spawn) => put_spawn(out, spawn)?,
        Request::Stop { handle, kill } => {
            put_u32(out, *handle);
            put_bool(out, *kill);
        }
        Request::Restrict {
            handle,
            share,
            limits,
        } => {
            put_u32(out, *handle);
            put_opt(out, share.as_ref(), |out, s| {
                put_u32(out, *s);
                Ok(())
            })?;
            put_limits(out, limits)?;
        }
    }
    Ok(())
}

/// A Spawn's fields: handle, suffix, args, env, limits, detach, names.
fn put_spawn(out: &mut Vec<u8>, spawn: &Spawn) -> Result<(), EncodeError> {
    let Spawn {
        handle,
        suffix,
        args,
        env,
        limits,
        detach,
        names,
    } = spawn;
    put_u32(out, *handle);
    put_opt(out, suffix.as_ref(), |out, s| {
        put_name(out, s, "spawn suffix")
    })?;
    put_count(out, args.len(), MAX_SPAWN_ARGS, "spawn args")?;
    for arg in args {
        put_text(out, arg, MAX_SPAWN_TEXT, "spawn arg")?;
    }
    put_count(out, env.len(), MAX_SPAWN_ENV, "spawn env")?;
    for (name, value) in env {
        put_name(out, name, "spawn env name")?;
        put_text(out, value, MAX_SPAWN_TEXT, "spawn env value")?;
    }
    put_limits(out, limits)?;
    put_bool(out, *detach);
    put_count(out, names.len(), MAX_SPAWN_NAMES, "spawn names")?;
    for (name, handle) in names {
        put_name(out, name, "spawn name")?;
        put_u32(out, *handle);
    }
    Ok(())
}

/// Four `option<u64>`: memory, pids, cpus, tmpfs_size.
fn put_limits(out: &mut Vec<u8>, limits: &Limits) -> Result<(), EncodeError> {
    for v in [limits.memory, limits.pids, limits.cpus, limits.tmpfs_size] {
        put_opt(out, v.as_ref(), |out, v| {
            put_u64(out, *v);
            Ok(())
        })?;
    }
    Ok(())
}

/// `text`: u16 length (at most `limit`), then UTF-8.
fn put_text(
    out: &mut Vec<u8>,
    text: &str,
    limit: usize,
    what: &'static str,
) -> Result<(), EncodeError> {
    if text.len() > limit {
        return Err(too_large(what, text.len(), limit));
    }
    put_u16(out, text.len() as u16);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn response_fields(response: &Response, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match response {
        Response::Welcome { version, env } => {
            put_u16(out, *version);
            put_name(out, env, "welcome env")?;
        }
        Response::Ok => {}
        Response::Handle { handle, rights } => {
            put_u32(out, *handle);
            put_rights(out, *rights, "handle rights")?;
        }
        Response::Monitor { reference } => put_u64(out, *reference),
        Response::Delivery(d) => {
            put_u32(out, d.mailbox);
            put_name(out, &d.from.env, "sender env")?;
            put_u64(out, d.from.badge);
            put_message_block(out, &d.headers, d.correlation, &d.body, &d.caps, d.reply)?;
            put_opt(out, d.down.as_ref(), |out, r| {
                put_u64(out, *r);
                Ok(())
            })?;
        }
        Response::Identity(identity) => {
            put_name(out, &identity.env, "identity env")?;
            put_count(
                out,
                identity.handles.len(),
                MAX_IDENTITY_HANDLES,
                "identity handles",
            )?;
            for (handle, designation, rights) in &identity.handles {
                put_u32(out, *handle);
                put_name(out, designation, "identity designation")?;
                put_rights(out, *rights, "identity rights")?;
            }
        }
        Response::Error { code, detail } => {
            put_u16(out, *code as u16);
            if detail.len() > MAX_DETAIL {
                return Err(too_large("error detail", detail.len(), MAX_DETAIL));
            }
            put_u16(out, detail.len() as u16);
            out.extend_from_slice(detail.as_bytes());
        }
        Response::Deliveries(d) => {
            put_u32(out, d.mailbox);
            put_count(out, d.runs.len(), MAX_BATCH, "runs")?;
            for run in &d.runs {
                put_name(out, &run.from.env, "sender env")?;
                put_u64(out, run.from.badge);
                put_bodies(out, &run.bodies)?;
            }
        }
        Response::Accepted { count } => put_u32(out, *count),
        Response::Quote { quote } => put_bytes(out, quote, MAX_BODY, "quote")?,
        Response::Spawned(Spawned {
            child,
            mailbox,
            control,
            reference,
        }) => {
            put_name(out, child, "spawned child")?;
            put_u32(out, *mailbox);
            put_u32(out, *control);
            put_u64(out, *reference);
        }
    }
    Ok(())
}

/// A `bodies` block: u32 count, u32 size of what follows, then each body's u32 length and
/// bytes. [`Bodies`] holds exactly that encoding, so this is one copy.
fn put_bodies(out: &mut Vec<u8>, bodies: &Bodies) -> Result<(), EncodeError> {
    if bodies.len() > MAX_BATCH {
        return Err(too_large("bodies", bodies.len(), MAX_BATCH));
    }
    let size = bodies.encoded_len();
    if size > MAX_FRAME {
        return Err(too_large("bodies size", size, MAX_FRAME));
    }
    put_u32(out, bodies.len() as u32);
    put_u32(out, size as u32);
    out.extend_from_slice(bodies.as_encoded());
    Ok(())
}

/// The part a Send and a Delivery share: headers, correlation, body, caps, reply handle.
fn put_message_block(
    out: &mut Vec<u8>,
    headers: &[(String, Vec<u8>)],
    correlation: Option<u64>,
    body: &[u8],
    caps: &[Handle],
    reply: Option<Handle>,
) -> Result<(), EncodeError> {
    put_count(out, headers.len(), MAX_HEADERS, "headers")?;
    for (name, value) in headers {
        put_name(out, name, "header name")?;
        put_bytes(out, value, MAX_HEADER_VALUE, "header value")?;
    }
    put_opt(out, correlation.as_ref(), |out, c| {
        put_u64(out, *c);
        Ok(())
    })?;
    put_bytes(out, body, MAX_BODY, "body")?;
    put_count(out, caps.len(), MAX_CAPS, "caps")?;
    for cap in caps {
        put_u32(out, *cap);
    }
    put_opt(out, reply.as_ref(), |out, h| {
        put_u32(out, *h);
        Ok(())
    })
}

fn too_large(what: &'static str, len: usize, limit: usize) -> EncodeError {
    EncodeError::TooLarge { what, len, limit }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

fn put_opt<T>(
    out: &mut Vec<u8>,
    value: Option<&T>,
    put: impl FnOnce(&mut Vec<u8>, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    match value {
        None => {
            out.push(0);
            Ok(())
        }
        Some(v) => {
            out.push(1);
            put(out, v)
        }
    }
}

/// A `name`: u8 length, then that many bytes of UTF-8.
fn put_name(out: &mut Vec<u8>, name: &str, what: &'static str) -> Result<(), EncodeError> {
    if name.len() > MAX_NAME {
        return Err(too_large(what, name.len(), MAX_NAME));
    }
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// `bytes`: u32 length, then that many bytes.
fn put_bytes(
    out: &mut Vec<u8>,
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<(), EncodeError> {
    if bytes.len() > limit {
        return Err(too_large(what, bytes.len(), limit));
    }
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
    Ok(())
}

/// A list's u16 element count.
fn put_count(
    out: &mut Vec<u8>,
    count: usize,
    limit: usize,
    what: &'static str,
) -> Result<(), EncodeError> {
    if count > limit {
        return Err(too_large(what, count, limit));
    }
    put_u16(out, count as u16);
    Ok(())
}

fn put_rights(out: &mut Vec<u8>, rights: Rights, what: &'static str) -> Result<(), EncodeError> {
    let unknown = rights.0 & !Rights::KNOWN.0;
    if unknown != 0 {
        return Err(EncodeError::UnknownRights {
            what,
            bits: unknown,
        });
    }
    put_u32(out, rights.0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

/// Collects frames into one packet of at most a given size (by default [`MAX_PACKET`]): how a
/// client or the kernel sends many frames with one syscall.
///
/// ```
/// use warren_proto::{Frame, PacketBuilder, Request, EncodeError};
/// let mut packet = PacketBuilder::new();
/// for id in 0..64 {
///     packet.push_request(&Frame { id, body: Request::Whoami }).unwrap();
/// }
/// assert_eq!(packet.frames(), 64);
/// let bytes = packet.take(); // send it as one packet
/// assert_eq!(warren_proto::decode_requests(&bytes).unwrap().len(), 64);
/// ```
#[derive(Debug, Clone)]
pub struct PacketBuilder {
    buf: Vec<u8>,
    limit: usize,
    frames: usize,
}

impl Default for PacketBuilder {
    fn default() -> Self {
        PacketBuilder::new()
    }
}

impl PacketBuilder {
    /// An empty packet that may grow to [`MAX_PACKET`] bytes; any valid frame fits in it when
    /// it is empty.
    pub fn new() -> Self {
        PacketBuilder::with_limit(MAX_PACKET)
    }

    /// An empty packet that may grow to `limit` bytes (at most [`MAX_PACKET`]): smaller packets
    /// bound latency. A frame larger than `limit` can never be pushed.
    pub fn with_limit(limit: usize) -> Self {
        PacketBuilder {
            buf: Vec::new(),
            limit: limit.min(MAX_PACKET),
            frames: 0,
        }
    }

    /// Appends a request frame. [`EncodeError::PacketFull`] means: send what is there, then
    /// push again; any other error means the frame is invalid. On error nothing is appended.
    pub fn push_request(&mut self, frame: &Frame<Request>) -> Result<(), EncodeError> {
        let start = self.buf.len();
        encode_request(frame, &mut self.buf)?;
        self.commit(start)
    }

    /// Appends a response frame; errors as for [`PacketBuilder::push_request`].
    pub fn push_response(&mut self, frame: &Frame<Response>) -> Result<(), EncodeError> {
        let start = self.buf.len();
        encode_response(frame, &mut self.buf)?;
        self.commit(start)
    }

    /// Keeps the frame just encoded at `start` if it fits, removes it otherwise.
    fn commit(&mut self, start: usize) -> Result<(), EncodeError> {
        if self.buf.len() > self.limit {
            let len = self.buf.len() - start;
            self.buf.truncate(start);
            return Err(EncodeError::PacketFull {
                len,
                remaining: self.limit - start,
            });
        }
        self.frames += 1;
        Ok(())
    }

    /// How many frames the packet holds.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The packet's size in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether it holds no frame (an empty packet must not be sent).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The packet's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Empties the packet, keeping its allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames = 0;
    }

    /// The packet's bytes, leaving the builder empty.
    pub fn take(&mut self) -> Vec<u8> {
        self.frames = 0;
        std::mem::take(&mut self.buf)
    }
}

/// Decodes a whole packet of requests (what the kernel reads). Fails if any frame fails: a
/// packet is acted on as a whole or not at all.
pub fn decode_requests(packet: &[u8]) -> Result<Vec<Frame<Request>>, DecodeError> {
    request_frames(packet).collect()
}

/// Decodes a whole packet of responses (what a client reads).
pub fn decode_responses(packet: &[u8]) -> Result<Vec<Frame<Response>>, DecodeError> {
    response_frames(packet).collect()
}

/// The request frames of a packet, one at a time.
pub fn request_frames(packet: &[u8]) -> Frames<'_, Request> {
    Frames::new(packet, "request", request_body)
}

/// The response frames of a packet, one at a time.
pub fn response_frames(packet: &[u8]) -> Frames<'_, Response> {
    Frames::new(packet, "response", response_body)
}

type BodyDecoder<T> = fn(u8, &mut Reader<'_>) -> Result<Option<T>, DecodeError>;

/// An iterator over the frames of one packet, from [`request_frames`] or [`response_frames`].
/// It yields each frame in order; after the first error it yields nothing more. An empty or
/// oversized packet yields one error.
#[derive(Debug, Clone)]
pub struct Frames<'a, T> {
    packet: &'a [u8],
    pos: usize,
    done: bool,
    direction: &'static str,
    body: BodyDecoder<T>,
}

impl<'a, T> Frames<'a, T> {
    fn new(packet: &'a [u8], direction: &'static str, body: BodyDecoder<T>) -> Self {
        Frames {
            packet,
            pos: 0,
            done: false,
            direction,
            body,
        }
    }

    /// Decodes the frame at `self.pos` and moves past it.
    fn next_frame(&mut self) -> Result<Frame<T>, DecodeError> {
        let start = self.pos;
        if start == 0 {
            if self.packet.is_empty() {
                return Err(DecodeError::EmptyPacket);
            }
            if self.packet.len() > MAX_PACKET {
                return Err(DecodeError::TooLarge {
                    offset: 0,
                    what: "packet",
                    len: self.packet.len(),
                    limit: MAX_PACKET,
                });
            }
        }
        let mut header = Reader {
            buf: &self.packet[start..],
            pos: 0,
            base: start,
        };
        let len = header.u32("frame length")?;
        if len < 5 {
            return Err(DecodeError::FrameTooShort { offset: start, len });
        }
        let len = len as usize;
        if len > MAX_FRAME - 4 {
            return Err(DecodeError::TooLarge {
                offset: start,
                what: "frame length",
                len,
                limit: MAX_FRAME - 4,
            });
        }
        let frame = header.take(len, "frame")?;
        let mut r = Reader {
            buf: frame,
            pos: 0,
            base: start + 4,
        };
        let op_offset = r.offset();
        let op = r.u8("op")?;
        let id = r.u32("request id")?;
        let Some(body) = (self.body)(op, &mut r)? else {
            return Err(DecodeError::UnknownOp {
                offset: op_offset,
                op,
                direction: self.direction,
            });
        };
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes {
                offset: r.offset(),
                count: r.remaining(),
            });
        }
        self.pos = start + 4 + len;
        Ok(Frame { id, body })
    }
}

impl<T> Iterator for Frames<'_, T> {
    type Item = Result<Frame<T>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || (self.pos != 0 && self.pos == self.packet.len()) {
            return None;
        }
        let item = self.next_frame();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

impl<T> std::iter::FusedIterator for Frames<'_, T> {}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// A cursor over one frame's bytes; `base` is the packet offset of `buf[0]`.
#[derive(Debug)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                offset: self.offset(),
                what,
                need: n,
                have: self.remaining(),
            });
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A byte that must be 0 or 1: a boolean or an option tag.
    fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let offset = self.offset();
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadTag { offset, what, tag }),
        }
    }

    fn opt<T>(
        &mut self,
        what: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.flag(what)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_u32(&mut self, what: &'static str) -> Result<Option<u32>, DecodeError> {
        self.opt(what, |r| r.u32(what))
    }

    fn opt_u64(&mut self, what: &'static str) -> Result<Option<u64>, DecodeError> {
        self.opt(what, |r| r.u64(what))
    }

    fn utf8(&mut self, len: usize, what: &'static str) -> Result<String, DecodeError> {
        let offset = self.offset();
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(DecodeError::BadUtf8 {
                offset: offset + e.valid_up_to(),
                what,
            }),
        }
    }

    /// A `name`: u8 length and UTF-8.
    fn name(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = self.u8(what)?;
        self.utf8(usize::from(len), what)
    }

    /// `text`: u16 length (at most `limit`) and UTF-8.
    fn text(&mut self, limit: usize, what: &'static str) -> Result<String, DecodeError> {
        let offset = self.offset();
        let len = usize::from(self.u16(what)?);
        if len > limit {
            return Err(DecodeError::TooLarge {
                offset,
                what,
                len,
                limit,
            });
        }
        self.utf8(len, what)
    }

    /// `bytes`: u32 length (at most `limit`) and raw bytes.
    fn bytes(&mut self, limit: usize, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let offset = self.offset();
        let len = self.u32(what)? as usize;
        if len > limit {
            return Err(DecodeError::TooLarge {
                offset,
                what,
                len,
                limit,
            });
        }
        Ok(self.take(len, what)?.to_vec())
    }

    /// A list's u16 count, checked against `limit` and against the bytes left, given that each
    /// element takes at least `min_size` bytes; so a list never allocates beyond its input.
    fn count(
        &mut self,
        limit: usize,
        min_size: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let offset = self.offset();
        let count = usize::from(self.u16(what)?);
        if count > limit {
            return Err(DecodeError::TooLarge {
                offset,
                what,
                len: count,
                limit,
            });
        }
        let need = count * min_size;
        if need > self.remaining() {
            return Err(DecodeError::Truncated {
                offset: self.offset(),
                what,
                need,
                have: self.remaining(),
            });
        }
        Ok(count)
    }

    /// A `bodies` block (see `put_bodies`): the count and size are checked against their
    /// limits and the frame, every body against `MAX_BODY`, and the lengths must tile the size
    /// exactly; then the block is copied once.
    fn bodies(&mut self) -> Result<Bodies, DecodeError> {
        let offset = self.offset();
        let count = self.u32("bodies count")? as usize;
        if count > MAX_BATCH {
            return Err(DecodeError::TooLarge {
                offset,
                what: "bodies count",
                len: count,
                limit: MAX_BATCH,
            });
        }
        let size = self.u32("bodies size")? as usize;
        if size > self.remaining() {
            return Err(DecodeError::Truncated {
                offset: self.offset(),
                what: "bodies",
                need: size,
                have: self.remaining(),
            });
        }
        let base = self.offset();
        let block = self.take(size, "bodies")?;
        let mut inner = Reader {
            buf: block,
            pos: 0,
            base,
        };
        for _ in 0..count {
            let at = inner.offset();
            let len = inner.u32("body")? as usize;
            if len > MAX_BODY {
                return Err(DecodeError::TooLarge {
                    offset: at,
                    what: "body",
                    len,
                    limit: MAX_BODY,
                });
            }
            inner.take(len, "body")?;
        }
        if inner.remaining() != 0 {
            return Err(DecodeError::TrailingBytes {
                offset: inner.offset(),
                count: inner.remaining(),
            });
        }
        Ok(Bodies::from_checked(block.to_vec(), count))
    }

    fn rights(&mut self, what: &'static str) -> Result<Rights, DecodeError> {
        let offset = self.offset();
        let bits = self.u32(what)?;
        let unknown = bits & !Rights::KNOWN.0;
        if unknown != 0 {
            return Err(DecodeError::UnknownRights {
                offset,
                what,
                bits: unknown,
            });
        }
        Ok(Rights(bits))
    }

    /// A Spawn's fields (see `put_spawn`).
    fn spawn(&mut self) -> Result<Spawn, DecodeError> {
        let handle = self.u32("handle")?;
        let suffix = self.opt("spawn suffix", |r| r.name("spawn suffix"))?;
        // Smallest arg: an empty text (2).
        let count = self.count(MAX_SPAWN_ARGS, 2, "spawn args")?;
        let mut args = Vec::with_capacity(count);
        for _ in 0..count {
            args.push(self.text(MAX_SPAWN_TEXT, "spawn arg")?);
        }
        // Smallest variable: an empty name (1) and an empty text (2).
        let count = self.count(MAX_SPAWN_ENV, 3, "spawn env")?;
        let mut env = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.name("spawn env name")?;
            let value = self.text(MAX_SPAWN_TEXT, "spawn env value")?;
            env.push((name, value));
        }
        let limits = self.limits()?;
        let detach = self.flag("detach")?;
        // Smallest name: an empty name (1) and a handle (4).
        let count = self.count(MAX_SPAWN_NAMES, 5, "spawn names")?;
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.name("spawn name")?;
            names.push((name, self.u32("spawn name handle")?));
        }
        Ok(Spawn {
            handle,
            suffix,
            args,
            env,
            limits,
            detach,
            names,
        })
    }

    /// Four `option<u64>`: memory, pids, cpus, tmpfs_size.
    fn limits(&mut self) -> Result<Limits, DecodeError> {
        Ok(Limits {
            memory: self.opt_u64("memory")?,
            pids: self.opt_u64("pids")?,
            cpus: self.opt_u64("cpus")?,
            tmpfs_size: self.opt_u64("tmpfs_size")?,
        })
    }

    fn message_block(&mut self) -> Result<MessageBlock, DecodeError> {
        // Smallest header: empty name (1) and empty value (4).
        let count = self.count(MAX_HEADERS, 5, "headers")?;
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.name("header name")?;
            let value = self.bytes(MAX_HEADER_VALUE, "header value")?;
            headers.push((name, value));
        }
        let correlation = self.opt_u64("correlation")?;
        let body = self.bytes(MAX_BODY, "body")?;
        let count = self.count(MAX_CAPS, 4, "caps")?;
        let mut caps = Vec::with_capacity(count);
        for _ in 0..count {
            caps.push(self.u32("cap")?);
        }
        let reply = self.opt_u32("reply handle")?;
        Ok(MessageBlock {
            headers,
            correlation,
            body,
            caps,
            reply,
        })
    }
}

/// The fields a Send and a Delivery share, in wire order.
struct MessageBlock {
    headers: Vec<(String, Vec<u8>)>,
    correlation: Option<u64>,
    body: Vec<u8>,
    caps: Vec<Handle>,
    reply: Option<Handle>,
}

/// The fields of a request with op `op`, or `None` if `op` is not a request op.
fn request_body(op: u8, r: &mut Reader<'_>) -> Result<Option<Request>, DecodeError> {
    let request = match op {
        op::HELLO => Request::Hello {
            min_version: r.u16("min_version")?,
            max_version: r.u16("max_version")?,
        },
        op::SEND => {
            let handle = r.u32("handle")?;
            let wait = r.flag("wait")?;
            let m = r.message_block()?;
            let message = Message {
                headers: m.headers,
                correlation: m.correlation,
                body: m.body,
                caps: m.caps,
                reply_to: m.reply,
            };
            Request::Send {
                handle,
                message,
                wait,
            }
        }
        op::RECV => {
            let mailbox = r.opt_u32("mailbox")?;
            let correlation = r.opt_u64("filter correlation")?;
            let header = r.opt("filter header", |r| {
                let name = r.name("filter header name")?;
                let value = r.bytes(MAX_HEADER_VALUE, "filter header value")?;
                Ok((name, value))
            })?;
            let timeout_ms = r.opt_u64("timeout_ms")?;
            Request::Recv {
                mailbox,
                filter: Filter {
                    correlation,
                    header,
                },
                timeout_ms,
            }
        }
        op::LOOKUP => Request::Lookup {
            name: r.name("lookup name")?,
        },
        op::WHOAMI => Request::Whoami,
        op::ATTENUATE => Request::Attenuate {
            handle: r.u32("handle")?,
            rights: r.rights("attenuate rights")?,
            uses: r.opt_u32("uses")?,
            expires_in_ms: r.opt_u64("expires_in_ms")?,
            badge: r.opt_u64("badge")?,
        },
        op::REVOKE => Request::Revoke {
            handle: r.u32("handle")?,
        },
        op::DROP => Request::Drop {
            handle: r.u32("handle")?,
        },
        op::MONITOR => Request::Monitor {
            handle: r.u32("handle")?,
        },
        op::CREATE_MAILBOX => Request::CreateMailbox {
            name: r.opt("mailbox name", |r| r.name("mailbox name"))?,
        },
        op::SEND_BATCH => Request::SendBatch {
            handle: r.u32("handle")?,
            wait: r.flag("wait")?,
            quiet: r.flag("quiet")?,
            bodies: r.bodies()?,
        },
        op::RECV_BATCH => {
            let mailbox = r.opt_u32("mailbox")?;
            let offset = r.offset();
            let max = r.u32("batch max")?;
            if max as usize > MAX_BATCH {
                return Err(DecodeError::TooLarge {
                    offset,
                    what: "batch max",
                    len: max as usize,
                    limit: MAX_BATCH,
                });
            }
            Request::RecvBatch {
                mailbox,
                max,
                timeout_ms: r.opt_u64("timeout_ms")?,
            }
        }
        op::ATTEST => Request::Attest {
            nonce: r.bytes(MAX_NONCE, "attest nonce")?,
            data: r.bytes(MAX_ATTEST_DATA, "attest data")?,
        },
        op::SPAWN => Request::Spawn(r.spawn()?),
        op::STOP => Request::Stop {
            handle: r.u32("handle")?,
            kill: r.flag("kill")?,
        },
        op::RESTRICT => Request::Restrict {
            handle: r.u32("handle")?,
            share: r.opt_u32("share")?,
            limits: r.limits()?,
        },
        _ => return Ok(None),
    };
    Ok(Some(request))
}

/// The fields of a response with op `op`, or `None` if `op` is not a response op.
fn response_body(op: u8, r: &mut Reader<'_>) -> Result<Option<Response>, DecodeError> {
    let response = match op {
        op::WELCOME => Response::Welcome {
            version: r.u16("version")?,
            env: r.name("welcome env")?,
        },
        op::OK => Response::Ok,
        op::HANDLE => Response::Handle {
            handle: r.u32("handle")?,
            rights: r.rights("handle rights")?,
        },
        op::MONITOR_REF => Response::Monitor {
            reference: r.u64("reference")?,
        },
        op::DELIVERY => {
            let mailbox = r.u32("mailbox")?;
            let env = r.name("sender env")?;
            let badge = r.u64("sender badge")?;
            let m = r.message_block()?;
            let down = r.opt_u64("down")?;
            Response::Delivery(Delivery {
                mailbox,
                from: Sender { env, badge },
                headers: m.headers,
                correlation: m.correlation,
                body: m.body,
                caps: m.caps,
                reply: m.reply,
                down,
            })
        }
        op::IDENTITY => {
            let env = r.name("identity env")?;
            // Smallest entry: handle (4), empty name (1), rights (4).
            let count = r.count(MAX_IDENTITY_HANDLES, 9, "identity handles")?;
            let mut handles = Vec::with_capacity(count);
            for _ in 0..count {
                let handle = r.u32("identity handle")?;
                let designation = r.name("identity designation")?;
                let rights = r.rights("identity rights")?;
                handles.push((handle, designation, rights));
            }
            Response::Identity(Identity { env, handles })
        }
        op::ERROR => {
            let offset = r.offset();
            let n = r.u16("error code")?;
            let code =
                ErrorCode::from_u16(n).ok_or(DecodeError::UnknownErrorCode { offset, code: n })?;
            let detail = r.text(MAX_DETAIL, "error detail")?;
            Response::Error { code, detail }
        }
        op::DELIVERIES => {
            let mailbox = r.u32("mailbox")?;
            // Smallest run: empty name (1), badge (8), count (4), size (4).
            let count = r.count(MAX_BATCH, 17, "runs")?;
            let mut runs = Vec::with_capacity(count);
            for _ in 0..count {
                let env = r.name("sender env")?;
                let badge = r.u64("sender badge")?;
                let bodies = r.bodies()?;
                runs.push(Run {
                    from: Sender { env, badge },
                    bodies,
                });
            }
            Response::Deliveries(Deliveries { mailbox, runs })
        }
        op::ACCEPTED => Response::Accepted {
            count: r.u32("accepted count")?,
        },
        op::QUOTE => Response::Quote {
            quote: r.bytes(MAX_BODY, "quote")?,
        },
        op::SPAWNED => Response::Spawned(Spawned {
            child: r.name("spawned child")?,
            mailbox: r.u32("spawned mailbox")?,
            control: r.u32("spawned control")?,
            reference: r.u64("spawned reference")?,
        }),
        _ => return Ok(None),
    };
    Ok(Some(response))
}

#[cfg(test)]
mod tests {
    //! Boundaries of the limits and the builder; byte layouts are in `tests/vectors.rs`.

    use super::*;

    fn send(body: Vec<u8>) -> Frame<Request> {
        Frame {
            id: 1,
            body: Request::Send {
                handle: 1,
                message: Message {
                    body,
                    ..Message::default()
                },
                wait: false,
            },
        }
    }

    #[test]
    fn largest_valid_delivery_fits_in_a_frame_and_round_trips() {
        let name = "n".repeat(MAX_NAME);
        let delivery = Delivery {
            mailbox: u32::MAX,
            from: Sender {
                env: name.clone(),
                badge: u64::MAX,
            },
            headers: vec![(name, vec![0xab; MAX_HEADER_VALUE]); MAX_HEADERS],
            correlation: Some(u64::MAX),
            body: vec![7; MAX_BODY],
            caps: vec![u32::MAX; MAX_CAPS],
            reply: Some(1),
            down: Some(2),
        };
        let frame = Frame {
            id: 9,
            body: Response::Delivery(delivery),
        };
        let mut out = Vec::new();
        encode_response(&frame, &mut out).unwrap();
        assert!(out.len() <= MAX_FRAME, "{} bytes", out.len());
        assert_eq!(decode_responses(&out).unwrap(), vec![frame]);
    }

    #[test]
    fn largest_identity_fits_in_a_frame() {
        let entry = (7, "d".repeat(MAX_NAME), Rights::KNOWN);
        let identity = Identity {
            env: "e".repeat(MAX_NAME),
            handles: vec![entry; MAX_IDENTITY_HANDLES],
        };
        let frame = Frame {
            id: 1,
            body: Response::Identity(identity),
        };
        let mut out = Vec::new();
        encode_response(&frame, &mut out).unwrap();
        assert_eq!(decode_responses(&out).unwrap(), vec![frame]);
    }

    #[test]
    fn body_at_the_limit_encodes_and_one_more_byte_does_not() {
        let mut out = vec![0xee];
        encode_request(&send(vec![0; MAX_BODY]), &mut out).unwrap();
        let mut out = vec![0xee];
        let err = encode_request(&send(vec![0; MAX_BODY + 1]), &mut out).unwrap_err();
        assert_eq!(
            err,
            EncodeError::TooLarge {
                what: "body",
                len: MAX_BODY + 1,
                limit: MAX_BODY
            }
        );
        assert_eq!(
            out,
            vec![0xee],
            "a failed encode leaves the buffer as it was"
        );
    }

    #[test]
    fn encode_rejects_what_decode_would_reject() {
        let mut out = Vec::new();
        let long = "x".repeat(MAX_NAME + 1);
        let cases: Vec<(Frame<Request>, EncodeError)> = vec![
            (
                Frame {
                    id: 0,
                    body: Request::Lookup { name: long.clone() },
                },
                too_large("lookup name", MAX_NAME + 1, MAX_NAME),
            ),
            (
                Frame {
                    id: 0,
                    body: Request::Attenuate {
                        handle: 1,
                        rights: Rights(0xc1),
                        uses: None,
                        expires_in_ms: None,
                        badge: None,
                    },
                },
                EncodeError::UnknownRights {
                    what: "attenuate rights",
                    bits: 0xc0,
                },
            ),
            (
                Frame {
                    id: 0,
                    body: Request::Spawn(Spawn {
                        args: vec![String::new(); MAX_SPAWN_ARGS + 1],
                        ..Spawn::default()
                    }),
                },
                too_large("spawn args", MAX_SPAWN_ARGS + 1, MAX_SPAWN_ARGS),
            ),
            (
                Frame {
                    id: 0,
                    body: Request::Spawn(Spawn {
                        env: vec![("V".into(), "x".repeat(MAX_SPAWN_TEXT + 1))],
                        ..Spawn::default()
                    }),
                },
                too_large("spawn env value", MAX_SPAWN_TEXT + 1, MAX_SPAWN_TEXT),
            ),
            (
                Frame {
                    id: 0,
                    body: Request::Spawn(Spawn {
                        names: vec![(String::new(), 1); MAX_SPAWN_NAMES + 1],
                        ..Spawn::default()
                    }),
                },
                too_large("spawn names", MAX_SPAWN_NAMES + 1, MAX_SPAWN_NAMES),
            ),
            (
                Frame {
                    id: 0,
                    body: Request::Send {
                        handle: 1,
                        message: Message {
                            caps: vec![1; MAX_CAPS + 1],
                            ..Message::default()
                        },
                        wait: true,
                    },
                },
                too_large("caps", MAX_CAPS + 1, MAX_CAPS),
            ),
            (
                Frame {
                    id: 0,
                    body: Request::Send {
                        handle: 1,
                        message: Message {
                            headers: vec![(String::new(), Vec::new()); MAX_HEADERS + 1],
                            ..Message::default()
                        },
                        wait: true,
                    },
                },
                too_large("headers", MAX_HEADERS + 1, MAX_HEADERS),
            ),
            (
                Frame {
                    id: 0,
                    body: Request::Recv {
                        mailbox: None,
                        filter: Filter {
                            correlation: None,
                            header: Some(("h".into(), vec![0; MAX_HEADER_VALUE + 1])),
                        },
                        timeout_ms: None,
                    },
                },
                too_large(
                    "filter header value",
                    MAX_HEADER_VALUE + 1,
                    MAX_HEADER_VALUE,
                ),
            ),
            (
                Frame {
                    id: 0,
                    body: Request::CreateMailbox { name: Some(long) },
                },
                too_large("mailbox name", MAX_NAME + 1, MAX_NAME),
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(encode_request(&frame, &mut out), Err(want), "{frame:?}");
            assert!(out.is_empty());
        }
        let error = Frame {
            id: 0,
            body: Response::Error {
                code: ErrorCode::Full,
                detail: "d".repeat(MAX_DETAIL + 1),
            },
        };
        assert_eq!(
            encode_response(&error, &mut out),
            Err(too_large("error detail", MAX_DETAIL + 1, MAX_DETAIL))
        );
        let identity = Frame {
            id: 0,
            body: Response::Identity(Identity {
                env: "e".into(),
                handles: vec![(1, String::new(), Rights::SEND); MAX_IDENTITY_HANDLES + 1],
            }),
        };
        assert_eq!(
            encode_response(&identity, &mut out),
            Err(too_large(
                "identity handles",
                MAX_IDENTITY_HANDLES + 1,
                MAX_IDENTITY_HANDLES
            ))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn decode_rejects_a_packet_over_the_limit() {
        let packet = vec![0; MAX_PACKET + 1];
        assert_eq!(
            decode_requests(&packet),
            Err(DecodeError::TooLarge {
                offset: 0,
                what: "packet",
                len: MAX_PACKET + 1,
                limit: MAX_PACKET
            })
        );
    }

    #[test]
    fn a_list_count_is_checked_against_the_input_before_allocating() {
        // Identity claiming 1024 entries with no bytes behind the count.
        let mut p = vec![0, 0, 0, 0, op::IDENTITY, 1, 0, 0, 0, 0, 0x00, 0x04];
        let len = (p.len() - 4) as u32;
        p[..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(
            decode_responses(&p),
            Err(DecodeError::Truncated {
                offset: 12,
                what: "identity handles",
                need: 9216,
                have: 0
            })
        );
    }

    #[test]
    fn builder_fills_up_to_its_limit_then_reports_full_without_appending() {
        let frame = Frame {
            id: 3,
            body: Request::Revoke { handle: 4 },
        };
        let mut one = Vec::new();
        encode_request(&frame, &mut one).unwrap();
        let mut b = PacketBuilder::with_limit(one.len() * 3 + 1);
        for _ in 0..3 {
            b.push_request(&frame).unwrap();
        }
        assert_eq!(
            b.push_request(&frame),
            Err(EncodeError::PacketFull {
                len: one.len(),
                remaining: 1
            })
        );
        assert_eq!(b.frames(), 3);
        assert_eq!(b.len(), one.len() * 3);
        assert_eq!(b.as_bytes(), one.repeat(3).as_slice());
        let bytes = b.take();
        assert!(b.is_empty() && b.frames() == 0);
        assert_eq!(decode_requests(&bytes).unwrap(), vec![frame.clone(); 3]);
        b.push_request(&frame).unwrap();
        b.clear();
        assert!(b.is_empty() && b.frames() == 0);
    }

    #[test]
    fn an_empty_default_builder_takes_the_largest_frame() {
        let mut b = PacketBuilder::default();
        b.push_request(&send(vec![1; MAX_BODY])).unwrap();
        assert_eq!(
            b.push_request(&send(vec![1; MAX_BODY]))
                .map_err(|e| matches!(e, EncodeError::PacketFull { .. })),
            Err(true)
        );
        let mut b = PacketBuilder::new();
        b.push_response(&Frame {
            id: 1,
            body: Response::Ok,
        })
        .unwrap();
        assert_eq!(decode_responses(b.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn frames_iterator_stops_after_the_first_error() {
        let mut p = Vec::new();
        encode_request(
            &Frame {
                id: 1,
                body: Request::Whoami,
            },
            &mut p,
        )
        .unwrap();
        p.extend_from_slice(&[5, 0, 0, 0, 0x7f, 0, 0, 0, 0]);
        encode_request(
            &Frame {
                id: 2,
                body: Request::Whoami,
            },
            &mut p,
        )
        .unwrap();
        let items: Vec<_> = request_frames(&p).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0],
            Ok(Frame {
                id: 1,
                body: Request::Whoami
            })
        );
        assert_eq!(
            items[1],
            Err(DecodeError::UnknownOp {
                offset: 13,
                op: 0x7f,
                direction: "request"
            })
        );
    }
}
