//! The connection behind a `warren_client`: safe Rust, no `unsafe`.
//!
//! One kernel connection with an outgoing packet being filled (`submit` appends a request frame,
//! `flush` sends the packet), the answers read so far and not yet claimed (`done`), and the
//! blocking wait for one answer (`wait_for`). The blocking calls of the C ABI are
//! submit + flush + wait; the event-loop calls are submit, flush, and `read_ready` (read what
//! is readable without blocking) followed by popping completions.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{RecvFlags, SendFlags};
use warren_proto::{Bodies, ErrorCode, Frame, MAX_PACKET, Request, Response};

/// How long past a receive's own timeout a blocking call waits for the kernel's answer before
/// it concludes the answer was lost (the same grace as the Rust client's).
pub const RESTART_GRACE: Duration = Duration::from_secs(2);

/// Why a call failed, before it becomes a `warren_status` and a message.
#[derive(Debug)]
pub enum Failure {
    /// The kernel answered Error.
    Kernel(ErrorCode, String),
    /// A system call on the connection failed.
    Io(io::Error),
    /// The kernel closed the connection.
    Closed,
    /// The kernel's bytes did not decode.
    Decode(warren_proto::DecodeError),
    /// The request would exceed a protocol limit.
    Encode(warren_proto::EncodeError),
    /// The kernel answered with a response the request does not expect.
    Unexpected(String),
    /// The socket has no room (non-blocking flush) or nothing to read.
    WouldBlock,
    /// A bad argument from the caller.
    Invalid(String),
    /// No connection could be made.
    NoConnection(String),
    /// The agreed protocol version lacks the operation (which one, and what the kernel speaks).
    Unsupported(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::WouldBlock {
            Failure::WouldBlock
        } else {
            Failure::Io(e)
        }
    }
}

impl From<rustix::io::Errno> for Failure {
    fn from(e: rustix::io::Errno) -> Failure {
        Failure::from(io::Error::from(e))
    }
}

impl From<warren_proto::EncodeError> for Failure {
    fn from(e: warren_proto::EncodeError) -> Failure {
        Failure::Encode(e)
    }
}

impl From<warren_proto::DecodeError> for Failure {
    fn from(e: warren_proto::DecodeError) -> Failure {
        Failure::Decode(e)
    }
}

/// A kernel connection.
pub struct Conn {
    fd: OwnedFd,
    /// The environment's name from the Welcome.
    pub env: String,
    /// The protocol version agreed in the handshake.
    pub version: u16,
    next_id: u32,
    /// Frames submitted and not yet sent: the next packet.
    out: Vec<u8>,
    /// Answers read and not yet claimed, in arrival order.
    done: VecDeque<Frame<Response>>,
    buf: Vec<u8>,
}

impl Conn {
    /// Take `fd` (one end of a kernel connection) and shake hands, offering versions 1 and 2.
    pub fn handshake(fd: OwnedFd) -> Result<Conn, Failure> {
        let mut c = Conn {
            fd,
            env: String::new(),
            version: warren_proto::MIN_VERSION,
            next_id: 1,
            out: Vec::with_capacity(64 * 1024),
            done: VecDeque::new(),
            buf: vec![0u8; MAX_PACKET],
        };
        let id = c.submit(Request::Hello {
            min_version: warren_proto::MIN_VERSION,
            max_version: warren_proto::VERSION,
        })?;
        match c.wait_for(id, None)? {
            Response::Welcome { version, env } => {
                c.env = env;
                c.version = version;
                Ok(c)
            }
            Response::Error { code, detail } => Err(Failure::Kernel(code, detail)),
            other => Err(Failure::Unexpected(format!("{other:?}"))),
        }
    }

    /// The connection's descriptor, for an event loop.
    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// A fresh request id (never 0).
    pub fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Append `req` to the outgoing packet under a fresh id; when the packet would pass
    /// `MAX_PACKET`, the frames before it are sent first (blocking). Returns the id.
    pub fn submit(&mut self, req: Request) -> Result<u32, Failure> {
        let id = self.next_id();
        self.submit_with_id(id, req)?;
        Ok(id)
    }

    /// [`Conn::submit`] with the caller's id.
    pub fn submit_with_id(&mut self, id: u32, req: Request) -> Result<(), Failure> {
        let mark = self.out.len();
        let frame = Frame { id, body: req };
        if let Err(e) = warren_proto::encode_request(&frame, &mut self.out) {
            self.out.truncate(mark);
            return Err(e.into());
        }
        self.make_room(mark)
    }

    /// Append a SendBatch frame (bodies already encoded) under a fresh id.
    pub fn submit_send_batch(
        &mut self,
        handle: u32,
        wait: bool,
        quiet: bool,
        bodies: &Bodies,
    ) -> Result<u32, Failure> {
        let id = self.next_id();
        let mark = self.out.len();
        if let Err(e) =
            warren_proto::encode_send_batch(&mut self.out, id, handle, wait, quiet, bodies)
        {
            self.out.truncate(mark);
            return Err(e.into());
        }
        self.make_room(mark)?;
        Ok(id)
    }

    /// If the frame just appended at `mark` made the packet too large, send what came before
    /// it and keep the frame as the start of the next packet.
    fn make_room(&mut self, mark: usize) -> Result<(), Failure> {
        if self.out.len() <= MAX_PACKET || mark == 0 {
            return Ok(());
        }
        let frame = self.out.split_off(mark);
        self.flush(true)?;
        self.out = frame;
        Ok(())
    }

    /// Whether frames wait to be sent.
    pub fn pending_out(&self) -> bool {
        !self.out.is_empty()
    }

    /// Send the outgoing packet. Non-blocking: `WouldBlock` when the socket has no room (the
    /// packet is kept; wait for the descriptor to be writable and flush again).
    pub fn flush(&mut self, block: bool) -> Result<(), Failure> {
        if self.out.is_empty() {
            return Ok(());
        }
        let flags = if block {
            SendFlags::empty()
        } else {
            SendFlags::DONTWAIT
        };
        loop {
            match rustix::net::send(self.fd.as_fd(), &self.out, flags) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Read one packet into `done`. Returns false when `block` is off and nothing is readable.
    pub fn read_one(&mut self, block: bool) -> Result<bool, Failure> {
        let flags = if block {
            RecvFlags::TRUNC
        } else {
            RecvFlags::TRUNC | RecvFlags::DONTWAIT
        };
        let n = loop {
            match rustix::net::recv(self.fd.as_fd(), &mut self.buf[..], flags) {
                Ok((_, real)) => break real,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) if !block => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Err(Failure::Closed);
        }
        if n > MAX_PACKET {
            return Err(Failure::Unexpected(format!(
                "a packet of {n} bytes from the kernel (the protocol's limit is {MAX_PACKET})"
            )));
        }
        let frames = warren_proto::decode_responses(&self.buf[..n])?;
        self.done.extend(frames);
        Ok(true)
    }

    /// Read everything readable now, without blocking. Returns how many packets were read.
    pub fn read_ready(&mut self) -> Result<usize, Failure> {
        let mut n = 0;
        while self.read_one(false)? {
            n += 1;
        }
        Ok(n)
    }

    /// How many answers wait to be claimed.
    pub fn ready(&self) -> usize {
        self.done.len()
    }

    /// The oldest unclaimed answer.
    pub fn pop(&mut self) -> Option<Frame<Response>> {
        self.done.pop_front()
    }

    /// The unclaimed answer to `id`, if it has arrived.
    pub fn take(&mut self, id: u32) -> Option<Response> {
        let pos = self.done.iter().position(|f| f.id == id)?;
        self.done.remove(pos).map(|f| f.body)
    }

    /// Flush, then block until the answer to `id` arrives (answers to other requests are kept)
    /// or `deadline` passes (`Failure::Kernel(Timeout)`).
    pub fn wait_for(&mut self, id: u32, deadline: Option<Instant>) -> Result<Response, Failure> {
        self.flush(true)?;
        loop {
            if let Some(r) = self.take(id) {
                return Ok(r);
            }
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() || !self.poll_readable(left)? {
                    return Err(Failure::Kernel(
                        ErrorCode::Timeout,
                        "no answer from the kernel in time (was it restarted?)".into(),
                    ));
                }
            }
            self.read_one(true)?;
        }
    }

    fn poll_readable(&self, left: Duration) -> Result<bool, Failure> {
        let ts = Timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        loop {
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(n) => return Ok(n > 0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One request, answered: submit, flush, wait. A receive with a timeout gives up at its
    /// timeout plus [`RESTART_GRACE`].
    pub fn request(&mut self, req: Request) -> Result<Response, Failure> {
        let deadline = match &req {
            Request::Recv {
                timeout_ms: Some(ms),
                ..
            }
            | Request::RecvBatch {
                timeout_ms: Some(ms),
                ..
            } => Instant::now().checked_add(Duration::from_millis(*ms) + RESTART_GRACE),
            _ => None,
        };
        let id = self.submit(req)?;
        match self.wait_for(id, deadline)? {
            Response::Error { code, detail } => Err(Failure::Kernel(code, detail)),
            r => Ok(r),
        }
    }
}
