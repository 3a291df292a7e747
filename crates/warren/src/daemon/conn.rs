//! The daemon's environment connections: one `SOCK_SEQPACKET` pair per environment, whose
//! other end is the environment's descriptor 3.
//!
//! * **Handshake** (`docs/protocol.md` §6): the first frame must be a Hello; the kernel answers
//!   it (Welcome, or Error `version` after which the connection closes). A first frame that is
//!   not a Hello is answered `bad-request` and the connection closes. Frames after the Hello in
//!   the first packet are answered `bad-request` and not acted on. A later Hello (another
//!   process sharing the descriptor) is answered Welcome with the version already agreed when
//!   its range holds it, else Error `version`; it never changes the version, nor closes.
//! * **Fair**: one connection gets at most `turn_packets` packets, `turn_frames` frames and a
//!   slice of the daemon thread's CPU time (`turn_slice`, 500 µs) per turn of the loop, and its
//!   turn ends early (checked every 16 frames, the epoll set looked at every 50 µs at most)
//!   when anyone else is waiting. What is left of a packet (its remaining frames, as bytes,
//!   never moved: offsets advance) waits for the next turn, and the socket keeps the rest. A
//!   connection with input left after its turn is *heavy*: its EPOLLIN leaves the interest set
//!   (so a readable epoll set means that someone else waits) and it is served from the ready
//!   list, after every connection with fresh input and (without federation) after their
//!   answers are written, until a turn reads its socket empty. The slice is the daemon
//!   thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): a turn is charged its frames' decoding, the
//!   kernel's work, its answers and audit records, and not the time the daemon was preempted.
//!   Per-sender order is kept: a connection's frames are acted on strictly in the order they
//!   were sent (its tail before its socket), whichever list it is served from. A packet over
//!   16 KiB is checked (decoded) a slice at a time in the same turns before any of its frames
//!   is acted on (a malformed packet is acted on not at all, §1), so that decoding 1 MiB of
//!   tiny frames no longer happens outside every budget.
//! * **Bounded**: answers count against the connection before they are queued. While its unsent
//!   answers exceed `max_unsent`, or what is left of the environment's byte quota after the
//!   bytes it pins in the kernel (never less than 256 KiB, so that it can always read and
//!   receive), the daemon stops acting on its frames and stops reading it
//!   (EPOLLIN is dropped); it reads again once the environment has read half of them. A
//!   connection whose unsent answers reach `max_backlog` anyway (answers produced without new
//!   requests, e.g. deliveries to receives it parked earlier) is cut off at that point.
//! * Answers for one environment are batched into packets of up to 64 KiB (a larger frame
//!   travels alone) and written when the socket takes them.

use std::collections::VecDeque;
use std::os::fd::{AsFd as _, OwnedFd};
use std::time::Instant;

use rustix::event::epoll::{self, EventFlags};
use rustix::net::{RecvFlags, SendFlags};
use warren_kernel::EnvId;
use warren_proto::{ErrorCode, Frame, PacketBuilder, Request, Response};

use super::{Conn, Daemon, token_event};

/// Packets the daemon assembles for one environment at most (responses are batched into them).
const OUT_PACKET: usize = 64 * 1024;
/// Decoded frames whose room the daemon keeps between packets.
const FRAMES_KEPT: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    /// No frame yet: the first must be a Hello.
    Waiting,
    /// The Hello was answered Welcome with this version.
    Greeted(u16),
    /// The handshake failed: the answer is written, then the connection closes.
    Closing(&'static str),
}

/// A packet not wholly acted on yet (the budget or the quota stopped the turn), or a large one
/// still being checked.
struct Tail {
    bytes: Vec<u8>,
    /// Frames before this offset were acted on.
    pos: usize,
    /// The packet is checked (decoded) up to this offset; none of its frames is acted on before
    /// all of it is (`docs/protocol.md` §1: a malformed packet is acted on not at all).
    checked: usize,
    /// They belong to the connection's first packet.
    first: bool,
}

impl Tail {
    fn checked(&self) -> bool {
        self.checked >= self.bytes.len()
    }
}

/// Packets up to this size are decoded at once when read; a larger one (up to 1 MiB of tiny
/// frames, which takes milliseconds to decode) is checked in slices, a turn at a time, so that
/// its sender's turn stays within its time slice like any other work it causes.
const CHECK_AT_ONCE: usize = 16 * 1024;

/// One environment's kernel connection.
pub(super) struct EnvConn {
    pub(super) fd: OwnedFd,
    pub(super) env: EnvId,
    handshake: Handshake,
    /// A packet has been read (the next one is not the first).
    seen_packet: bool,
    building: PacketBuilder,
    out: VecDeque<Vec<u8>>,
    /// Bytes in `out`.
    backlog: usize,
    /// EPOLLIN is in the interest set.
    reading: bool,
    want_write: bool,
    /// Whether the connection is on the daemon's list of connections with output to flush.
    pub(super) dirty: bool,
    tail: Option<Tail>,
    /// The environment closed its end: answers are dropped, what it sent is still served.
    peer_gone: bool,
    /// It had input left after its turn: its EPOLLIN is out of the interest set (so a
    /// readable epoll set means that someone else is waiting) and it is served from the
    /// daemon's ready list, after every connection with fresh input, until a turn reads its
    /// socket empty.
    heavy: bool,
}

/// The high half of the socket mark that notes a connection's agreed version (low half).
const VERSION_MARK: u32 = 0x5772_0000;

/// What the previous kernel noted on the kernel's end of a re-attached connection: `Some(v)`,
/// the version it agreed at the Welcome; `None`, no Hello yet (the connection still owes
/// one). A connection from a kernel that noted nothing, or with a note this kernel cannot
/// read, counts as having agreed `VERSION`.
pub(super) fn agreed_version(fd: &OwnedFd) -> Option<u16> {
    match warren_sys::socket_mark(fd.as_fd()) {
        Ok(m) if m & 0xffff_0000 == VERSION_MARK => match (m & 0xffff) as u16 {
            0 => None,
            v if (warren_proto::MIN_VERSION..=warren_proto::VERSION).contains(&v) => Some(v),
            _ => Some(warren_proto::VERSION),
        },
        _ => Some(warren_proto::VERSION),
    }
}

/// Note on the kernel's end of a new connection that it has not been greeted yet.
pub(super) fn note_waiting(fd: &OwnedFd) {
    let _ = warren_sys::set_socket_mark(fd.as_fd(), VERSION_MARK);
}

impl EnvConn {
    /// A new connection; `greeted` with the version agreed for one re-attached after a kernel
    /// restart whose Hello went to the previous kernel ([`agreed_version`]).
    pub(super) fn new(fd: OwnedFd, env: EnvId, greeted: Option<u16>) -> EnvConn {
        EnvConn {
            fd,
            env,
            handshake: match greeted {
                Some(v) => Handshake::Greeted(v),
                None => Handshake::Waiting,
            },
            seen_packet: greeted.is_some(),
            building: PacketBuilder::with_limit(OUT_PACKET),
            out: VecDeque::new(),
            backlog: 0,
            reading: true,
            want_write: false,
            dirty: false,
            tail: None,
            peer_gone: false,
            heavy: false,
        }
    }

    /// Answers decided and not yet taken by the environment's socket.
    fn unsent(&self) -> usize {
        self.backlog + self.building.len()
    }

    fn rearm(&self, epoll_fd: &OwnedFd, token: u64) {
        let (flags, data) = token_event(token, self.reading && !self.heavy, self.want_write);
        let _ = epoll::modify(epoll_fd, &self.fd, data, flags);
    }
}

/// The byte offset of frame `index` in a valid packet (frames are length-prefixed).
fn frame_offset(packet: &[u8], index: usize) -> usize {
    let mut off = 0;
    for _ in 0..index {
        let len = packet
            .get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .unwrap_or(packet.len());
        off = (off + 4 + len).min(packet.len());
    }
    off
}

/// Whether the kernel accepts a Hello offering `min..=max` (the rule of §6.2).
fn common_version(min: u16, max: u16) -> bool {
    max.min(warren_proto::VERSION) >= min.max(warren_proto::MIN_VERSION)
}

/// The least room for unsent answers, whatever the environment pins: it can always read its
/// answers and receive, and so free what it pins (a full mailbox of its own drains only
/// through its receives).
const UNSENT_FLOOR: usize = 256 << 10;

/// How many unsent answer bytes `env` may have before the daemon stops acting on its requests:
/// `max_unsent`, and within the kernel's byte quota for the environment less what it pins there
/// (queued messages in its mailboxes, its waiting sends), but never under [`UNSENT_FLOOR`].
fn unsent_limit(kernel: &warren_kernel::Kernel, limits: &super::Limits, env: EnvId) -> usize {
    let quota = kernel.quota(env);
    if quota == 0 {
        return limits.max_unsent;
    }
    let room = quota.saturating_sub(kernel.pinned_bytes(env));
    limits.max_unsent.min(room).max(UNSENT_FLOOR)
}

/// How often, at most, a connection's turn looks whether another connection is waiting.
const YIELD_CHECK: std::time::Duration = std::time::Duration::from_micros(50);

/// The daemon thread's CPU time so far (what a connection's turn is charged).
fn thread_cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// How a connection's turn ended.
enum TurnEnd {
    /// Everything it sent was read and acted on.
    Drained,
    /// Input is left (a tail, or packets in the socket) for a later turn.
    Left,
    /// It is paused (quota), closing or closed.
    Stopped,
}

/// What stopped the frames of a packet.
enum Stop {
    /// All were handled.
    Done,
    /// The turn's frame budget ran out (the rest waits for the next turn).
    Budget,
    /// The connection's unsent answers are over its quota.
    Quota,
    /// The connection is closing or closed.
    Closed,
}

impl Daemon {
    /// An environment connection is readable or writable (or `flags` is empty: its turn from
    /// the ready list, input left from the last turn).
    pub(super) fn on_env(&mut self, token: u64, flags: EventFlags) {
        if flags.contains(EventFlags::OUT) {
            self.flush(token);
        }
        let hup = flags.intersects(EventFlags::HUP | EventFlags::RDHUP | EventFlags::ERR);
        if hup {
            if let Some(Conn::Env(c)) = self.conns.get_mut(&token) {
                if !c.peer_gone {
                    // Nobody will read the answers any more; what the environment sent before
                    // it went is still served (a send before an exit must arrive).
                    c.peer_gone = true;
                    c.out.clear();
                    c.backlog = 0;
                    c.building.clear();
                    if !c.reading && !matches!(c.handshake, Handshake::Closing(_)) {
                        c.reading = true;
                        c.rearm(&self.epoll, token);
                    }
                }
            }
        }
        let Some(Conn::Env(c)) = self.conns.get(&token) else {
            return;
        };
        // A heavy connection's input waits for its turn from the ready list, after every
        // connection with fresh input (its events here are for output or the hang-up).
        if c.heavy && !flags.is_empty() && !hup {
            return;
        }
        self.slice_end = thread_cpu() + self.limits.turn_slice;
        self.next_yield_check = Instant::now() + YIELD_CHECK;
        match self.turn(token, hup) {
            TurnEnd::Drained => self.set_heavy(token, false),
            TurnEnd::Left => {
                self.set_heavy(token, true);
                self.ready.push(token);
            }
            TurnEnd::Stopped => {}
        }
    }

    /// One turn of connection `token`: its tail, then packets from its socket, while its
    /// budgets, its time slice and its quota allow.
    fn turn(&mut self, token: u64, hup: bool) -> TurnEnd {
        let mut budget = self.limits.turn_frames;
        let mut packets = 0;
        loop {
            let Some(Conn::Env(c)) = self.conns.get_mut(&token) else {
                return TurnEnd::Stopped;
            };
            if let Handshake::Closing(_) = c.handshake {
                return TurnEnd::Stopped;
            }
            if let Some(tail) = c.tail.take() {
                match self.handle_tail(token, tail, &mut budget) {
                    Stop::Done => continue,
                    Stop::Budget => return TurnEnd::Left,
                    Stop::Quota | Stop::Closed => return TurnEnd::Stopped,
                }
            }
            if packets >= self.limits.turn_packets || budget == 0 {
                // More may wait in the socket: the next turn, from the ready list, says.
                return TurnEnd::Left;
            }
            if !c.peer_gone && c.unsent() > unsent_limit(&self.kernel, &self.limits, c.env) {
                self.pause(token);
                return TurnEnd::Stopped;
            }
            let n = match rustix::net::recv(
                &c.fd,
                &mut self.buf,
                RecvFlags::DONTWAIT | RecvFlags::TRUNC,
            ) {
                // The packet's real length (`MSG_TRUNC`), not what fitted in the buffer: a
                // larger packet is refused whole, never acted on cut short (§1).
                Ok((_, len)) => len,
                Err(rustix::io::Errno::AGAIN) => {
                    if hup || c.peer_gone {
                        self.drop_env_conn(token, None);
                        return TurnEnd::Stopped;
                    }
                    return TurnEnd::Drained;
                }
                Err(_) => 0,
            };
            if n == 0 || n > self.buf.len() {
                let why = (n != 0).then_some("packet larger than 1 MiB");
                self.drop_env_conn(token, why);
                return TurnEnd::Stopped;
            }
            packets += 1;
            let first = !c.seen_packet;
            c.seen_packet = true;
            let buf = std::mem::take(&mut self.buf);
            let stop = self.handle_packet(token, &buf[..n], first, &mut budget);
            self.buf = buf;
            match stop {
                Stop::Done => {}
                Stop::Budget => return TurnEnd::Left,
                Stop::Quota | Stop::Closed => return TurnEnd::Stopped,
            }
        }
    }

    /// Whether connection `token` waits on the ready list for input left from its last turn.
    pub(super) fn is_heavy(&self, token: u64) -> bool {
        matches!(self.conns.get(&token), Some(Conn::Env(c)) if c.heavy)
    }

    fn set_heavy(&mut self, token: u64, heavy: bool) {
        if let Some(Conn::Env(c)) = self.conns.get_mut(&token) {
            if c.heavy != heavy {
                c.heavy = heavy;
                c.rearm(&self.epoll, token);
            }
        }
    }

    /// Whether the connection being served has had its turn: its CPU time slice is used, or
    /// another connection (or the control socket, a signal, the worker, the link) is waiting.
    /// Heavy connections are out of the epoll set's input interest, so a readable epoll set
    /// means someone else has something.
    fn turn_over(&mut self) -> bool {
        if thread_cpu() >= self.slice_end {
            return true;
        }
        // One look at the epoll set per [`YIELD_CHECK`] at most: a connection alone with the
        // kernel pays almost nothing for it.
        let now = Instant::now();
        if now < self.next_yield_check {
            return false;
        }
        self.next_yield_check = now + YIELD_CHECK;
        let mut fds = [rustix::event::PollFd::new(
            &self.epoll,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// Hand a packet's frames to the kernel while the budget and the quota allow, and keep the
    /// rest as the connection's tail. A small packet is decoded whole first (a malformed one
    /// closes the connection before any frame is acted on); a large one becomes a tail at once
    /// and is checked in slices before any of it is acted on (`handle_tail`).
    fn handle_packet(
        &mut self,
        token: u64,
        packet: &[u8],
        first: bool,
        budget: &mut usize,
    ) -> Stop {
        if packet.len() > CHECK_AT_ONCE {
            let tail = Tail {
                bytes: packet.to_vec(),
                pos: 0,
                checked: 0,
                first,
            };
            return self.handle_tail(token, tail, budget);
        }
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        if let Err(e) =
            warren_proto::request_frames(packet).try_for_each(|f| f.map(|f| frames.push(f)))
        {
            self.frames = frames;
            let why = format!("malformed packet: {e}");
            self.drop_env_conn(token, Some(&why));
            return Stop::Closed;
        }
        let mut stop = Stop::Done;
        let mut left_at = None;
        for (i, f) in frames.drain(..).enumerate() {
            if let Some(s) = self.may_handle(token, i, budget) {
                stop = s;
                left_at = Some(i);
                break;
            }
            self.handle_frame(token, f, first);
        }
        // A packet of many tiny frames must not leave a large vector behind.
        frames.clear();
        frames.shrink_to(FRAMES_KEPT);
        self.frames = frames;
        if let Some(i) = left_at {
            let bytes = packet[frame_offset(packet, i)..].to_vec();
            let tail = Tail {
                checked: bytes.len(),
                bytes,
                pos: 0,
                first,
            };
            self.keep_tail(token, &stop, tail);
        }
        stop
    }

    /// Go on with a tail: first check the rest of its packet (decoding it, a slice of the turn
    /// at a time; a malformed frame closes the connection with none of the packet acted on),
    /// then act on its frames, decoded a frame at a time, as far as this turn goes. Its bytes
    /// are never moved: the offsets advance.
    fn handle_tail(&mut self, token: u64, mut tail: Tail, budget: &mut usize) -> Stop {
        if !tail.checked() {
            let mut n = 0usize;
            for f in warren_proto::request_frames(&tail.bytes[tail.checked..]) {
                if let Err(e) = f {
                    let why = format!("malformed packet: {e}");
                    self.drop_env_conn(token, Some(&why));
                    return Stop::Closed;
                }
                tail.checked += frame_offset(&tail.bytes[tail.checked..], 1);
                n += 1;
                if n % 64 == 0 && !self.stopping && self.turn_over() {
                    break;
                }
            }
            if !tail.checked() {
                self.keep_tail(token, &Stop::Budget, tail);
                return Stop::Budget;
            }
        }
        let mut stop = Stop::Done;
        let mut stopped = false;
        for (i, f) in warren_proto::request_frames(&tail.bytes[tail.pos..]).enumerate() {
            let Ok(f) = f else {
                self.drop_env_conn(token, Some("malformed packet"));
                return Stop::Closed;
            };
            if let Some(s) = self.may_handle(token, i, budget) {
                stop = s;
                stopped = true;
                break;
            }
            tail.pos += frame_offset(&tail.bytes[tail.pos..], 1);
            self.handle_frame(token, f, tail.first);
        }
        if stopped {
            self.keep_tail(token, &stop, tail);
        }
        stop
    }

    /// The daemon is stopping: act on the frames that were read and not yet acted on (the
    /// tails a budget or a quota left for a later turn, which this kernel will not have), so
    /// that every request read from an environment is answered before the kernel goes; the
    /// next kernel re-attaches the connection and reads only what is still in the socket.
    /// Budgets no longer apply; the quota still does: frames are acted on, and their answers
    /// flushed, for as long as the sockets take the answers (an answer the socket cannot take
    /// would be lost with the kernel, and with it a message a receive took).
    pub(super) fn serve_tails(&mut self) {
        self.stopping = true;
        let mut acted = 0;
        loop {
            let tokens: Vec<u64> = self
                .conns
                .iter()
                .filter_map(|(&t, c)| match c {
                    Conn::Env(c) if c.tail.is_some() => Some(t),
                    _ => None,
                })
                .collect();
            let mut progress = 0;
            for token in tokens {
                let before = self.tail_frames(token);
                let Some(Conn::Env(c)) = self.conns.get_mut(&token) else {
                    continue;
                };
                let Some(tail) = c.tail.take() else { continue };
                let mut budget = usize::MAX;
                self.handle_tail(token, tail, &mut budget);
                progress += before - self.tail_frames(token).min(before);
            }
            // Answers out (durable first, for federation) as far as the sockets take them,
            // which makes room for more.
            self.drain_actions();
            self.flush_all();
            acted += progress;
            if progress == 0 {
                break;
            }
        }
        let left: usize = self
            .conns
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| self.tail_frames(t))
            .sum();
        if acted > 0 {
            tracing::info!("acted on {acted} request(s) read before the stop");
        }
        if left > 0 {
            tracing::warn!(
                "{left} request(s) read before the stop stay unanswered: their environments do \
                 not read their answers"
            );
        }
    }

    /// Frames in connection `token`'s tail not acted on yet.
    fn tail_frames(&self, token: u64) -> usize {
        match self.conns.get(&token) {
            Some(Conn::Env(EnvConn {
                tail: Some(tail), ..
            })) => warren_proto::request_frames(&tail.bytes[tail.pos..]).count(),
            _ => 0,
        }
    }

    /// Keep the frames not acted on for a later turn (pausing the connection when its quota
    /// stopped them).
    fn keep_tail(&mut self, token: u64, stop: &Stop, tail: Tail) {
        let closed = matches!(stop, Stop::Closed);
        if let Some(Conn::Env(c)) = self.conns.get_mut(&token) {
            if !closed && tail.pos < tail.bytes.len() {
                c.tail = Some(tail);
            }
        }
        if let Stop::Quota = stop {
            self.pause(token);
        }
    }

    /// Whether frame `i` of a packet may be acted on in this turn; if not, why.
    fn may_handle(&mut self, token: u64, i: usize, budget: &mut usize) -> Option<Stop> {
        // The turn is checked every 16 frames, after the kernel's answers so far have been
        // encoded and its audit records written: that work is the connection's too.
        if i % 16 == 15 {
            self.dispatch_actions();
            if self.turn_over() {
                *budget = 0;
            }
        }
        let Some(Conn::Env(c)) = self.conns.get_mut(&token) else {
            return Some(Stop::Closed);
        };
        if let Handshake::Closing(_) = c.handshake {
            return Some(Stop::Closed);
        }
        // A stopping daemon has no later turn to leave frames for (see `serve_tails`).
        if *budget == 0 && !self.stopping {
            return Some(Stop::Budget);
        }
        if !c.peer_gone && c.unsent() > unsent_limit(&self.kernel, &self.limits, c.env) {
            return Some(Stop::Quota);
        }
        *budget = budget.saturating_sub(1);
        None
    }

    /// Act on one frame: the handshake rules of §6, then the kernel.
    fn handle_frame(&mut self, token: u64, f: Frame<Request>, first: bool) {
        let now = self.now();
        let Some(Conn::Env(c)) = self.conns.get_mut(&token) else {
            return;
        };
        let env = c.env;
        match (c.handshake, f.body) {
            (
                Handshake::Waiting,
                Request::Hello {
                    min_version,
                    max_version,
                },
            ) => {
                c.handshake = if common_version(min_version, max_version) {
                    let agreed = max_version.min(warren_proto::VERSION);
                    // Noted on the kernel's end of the socket, which the launcher keeps: the
                    // next kernel re-attaches the connection speaking the same version.
                    let _ =
                        warren_sys::set_socket_mark(c.fd.as_fd(), VERSION_MARK | u32::from(agreed));
                    Handshake::Greeted(agreed)
                } else {
                    Handshake::Closing("no common protocol version")
                };
                // The kernel answers Welcome or Error `version`.
                let hello = Request::Hello {
                    min_version,
                    max_version,
                };
                self.kernel.handle_request(env, f.id, hello, now);
            }
            (Handshake::Waiting, _) => {
                c.handshake = Handshake::Closing("the first frame was not a hello");
                self.bad_request(env, f.id, "the first frame must be a hello (protocol §6)");
            }
            (Handshake::Greeted(_), _) if first => {
                self.bad_request(
                    env,
                    f.id,
                    "no frame may follow the hello in the first packet (protocol §6)",
                );
            }
            (
                Handshake::Greeted(agreed),
                Request::Hello {
                    min_version,
                    max_version,
                },
            ) => {
                // Another process sharing the descriptor starts its own session: the version
                // agreed by the first Hello stays (§6).
                let response = if (min_version..=max_version).contains(&agreed) {
                    Response::Welcome {
                        version: agreed,
                        env: self.kernel.env_name(env).unwrap_or("?").to_owned(),
                    }
                } else {
                    Response::Error {
                        code: ErrorCode::Version,
                        detail: format!(
                            "this connection speaks version {agreed}, agreed by its first hello; \
                             a later hello must offer it, not {min_version}..={max_version}"
                        ),
                    }
                };
                self.dispatch_actions();
                self.queue_response(env, f.id, response);
            }
            (Handshake::Greeted(_), body) => self.kernel.handle_request(env, f.id, body, now),
            (Handshake::Closing(_), _) => {}
        }
    }

    /// Answer `bad-request` from the daemon itself, after the kernel's earlier answers (answers
    /// keep the order of their requests).
    fn bad_request(&mut self, env: EnvId, id: u32, detail: &str) {
        self.dispatch_actions();
        let response = Response::Error {
            code: ErrorCode::BadRequest,
            detail: detail.to_owned(),
        };
        self.queue_response(env, id, response);
    }

    /// Stop reading a connection until its unsent answers drain.
    fn pause(&mut self, token: u64) {
        if let Some(Conn::Env(c)) = self.conns.get_mut(&token) {
            if c.reading {
                c.reading = false;
                c.rearm(&self.epoll, token);
            }
        }
    }

    /// Close an environment's kernel connection (a malformed packet, a failed handshake, a
    /// reader that does not read, or the environment closed it); only that connection suffers.
    /// The environment itself lives until its launcher ends.
    pub(super) fn drop_env_conn(&mut self, token: u64, why: Option<&str>) {
        let env = match self.conns.get(&token) {
            Some(Conn::Env(c)) => Some(c.env),
            _ => None,
        };
        if let Some(env) = env {
            if let Some(why) = why {
                let name = self.kernel.env_name(env).unwrap_or("?").to_owned();
                let rec = warren_kernel::AuditRecord {
                    at: self.now(),
                    env: name,
                    op: "connection",
                    handle: None,
                    target: None,
                    code: ErrorCode::BadRequest.as_str(),
                    reason: format!("{why}; connection closed"),
                    repeated: None,
                };
                self.write_audit(&rec);
            }
            self.env_conn.remove(&env);
        }
        // The launcher keeps a copy of our end (to re-attach after a kernel restart), so closing
        // ours would not reach the environment: shut the connection down for both sides.
        if let Some(Conn::Env(c)) = self.conns.get(&token) {
            let _ = rustix::net::shutdown(&c.fd, rustix::net::Shutdown::Both);
        }
        self.close_env(token);
    }

    pub(super) fn close_env(&mut self, token: u64) {
        if let Some(Conn::Env(c)) = self.conns.remove(&token) {
            let _ = epoll::delete(&self.epoll, &c.fd);
            // The kernel keeps the environment until its launcher reports the end.
        }
    }

    /// Queue an answer for `env`, counting it against the connection first: one that has
    /// reached its backlog is cut off instead.
    pub(super) fn queue_response(&mut self, env: EnvId, id: u32, response: Response) {
        let Some(&token) = self.env_conn.get(&env) else {
            return;
        };
        let Some(Conn::Env(c)) = self.conns.get_mut(&token) else {
            return;
        };
        if c.peer_gone {
            return;
        }
        if c.unsent() >= self.limits.max_backlog {
            let why = format!(
                "the environment does not read its answers: {} bytes unsent reached the backlog \
                 limit of {}",
                c.unsent(),
                self.limits.max_backlog
            );
            self.drop_env_conn(token, Some(&why));
            return;
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(token);
        }
        let frame = Frame { id, body: response };
        match c.building.push_response(&frame) {
            Ok(()) => {}
            Err(warren_proto::EncodeError::PacketFull { .. }) => {
                if !c.building.is_empty() {
                    let packet = c.building.take();
                    c.backlog += packet.len();
                    c.out.push_back(packet);
                }
                if let Err(warren_proto::EncodeError::PacketFull { .. }) =
                    c.building.push_response(&frame)
                {
                    // Larger than the daemon's usual packets (a large delivery): it travels
                    // alone, in a packet of up to the protocol's limit, which every frame fits.
                    let mut alone = PacketBuilder::new();
                    match alone.push_response(&frame) {
                        Ok(()) => {
                            let packet = alone.take();
                            c.backlog += packet.len();
                            c.out.push_back(packet);
                        }
                        Err(e) => tracing::warn!("cannot encode a response to {env:?}: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot encode a response: {e}"),
        }
    }

    pub(super) fn flush_all(&mut self) {
        let mut tokens = std::mem::take(&mut self.dirty);
        for &t in &tokens {
            if let Some(Conn::Env(c)) = self.conns.get_mut(&t) {
                c.dirty = false;
                if !c.building.is_empty() {
                    let packet = c.building.take();
                    c.backlog += packet.len();
                    c.out.push_back(packet);
                }
                self.flush(t);
            }
        }
        // Keep the list's allocation for the next turn.
        tokens.clear();
        self.dirty = tokens;
    }

    /// Write what the socket takes; read again once half the quota has drained; close a
    /// connection whose handshake failed once its answer is out.
    pub(super) fn flush(&mut self, token: u64) {
        let Some(Conn::Env(c)) = self.conns.get_mut(&token) else {
            return;
        };
        while let Some(p) = c.out.front() {
            match rustix::net::send(&c.fd, p, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
                Ok(_) => {
                    c.backlog -= p.len();
                    c.out.pop_front();
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    c.out.clear();
                    c.backlog = 0;
                    break;
                }
            }
        }
        if let Handshake::Closing(why) = c.handshake {
            if c.out.is_empty() && c.building.is_empty() {
                self.drop_env_conn(token, Some(why));
                return;
            }
        }
        let want = !c.out.is_empty();
        let mut changed = want != c.want_write;
        c.want_write = want;
        let resume = !c.reading
            && !matches!(c.handshake, Handshake::Closing(_))
            && c.unsent() <= unsent_limit(&self.kernel, &self.limits, c.env) / 2;
        if resume {
            c.reading = true;
            changed = true;
        }
        if changed {
            c.rearm(&self.epoll, token);
        }
        if resume {
            // Its tail (if any) is served next turn even if no new packet comes.
            self.ready.push(token);
        }
        if c.backlog > self.limits.max_backlog {
            self.drop_env_conn(token, Some("the environment does not read its responses"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_offsets_walk_length_prefixes() {
        let mut b = PacketBuilder::new();
        for id in 0..3 {
            b.push_request(&Frame {
                id,
                body: Request::Whoami,
            })
            .unwrap();
        }
        let packet = b.take();
        assert_eq!(frame_offset(&packet, 0), 0);
        let one = frame_offset(&packet, 1);
        let frames: Vec<_> = warren_proto::request_frames(&packet[one..])
            .map(|f| f.unwrap().id)
            .collect();
        assert_eq!(frames, vec![1, 2]);
        assert_eq!(frame_offset(&packet, 3), packet.len());
    }

    #[test]
    fn versions_are_chosen_as_section_6_says() {
        assert!(common_version(1, 2));
        assert!(common_version(1, 1));
        assert!(common_version(2, 200));
        let next = warren_proto::VERSION + 1;
        assert!(
            !common_version(next, next + 6),
            "only versions above ours offered"
        );
        assert!(!common_version(2, 1));
        assert!(!common_version(0, 0));
    }
}
