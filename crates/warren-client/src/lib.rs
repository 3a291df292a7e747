//! The client library a program inside a Warren environment links to reach the kernel.
//!
//! Small and blocking: one [`Client`] owns the environment's connection (the inherited
//! descriptor named by `WARREN_FD`, normally 3) and turns each call into one request frame and
//! its response. On protocol version 2 (negotiated at connect), [`Client::send_many`] and
//! [`Client::recv_many`] move many plain messages per frame, checked and answered once per
//! frame, which is how a sender and a receiver reach the protocol's throughput; on version 1,
//! [`Client::send_batch`] and [`Client::recv_batch`] pipeline one request per message in one
//! packet. [`Client::send_and_recv`] is a server's answer-and-wait step in one system call.
//! The byte layout is `docs/protocol.md`.
//!
//! ```no_run
//! use warren_client::{Client, Message};
//! let mut k = Client::connect()?;
//! let (db, _rights) = k.lookup("db")?;
//! k.send(db, Message { body: b"hello".to_vec(), ..Message::default() })?;
//! let reply = k.recv(Some(std::time::Duration::from_secs(1)))?;
//! # Ok::<(), warren_client::ClientError>(())
//! ```
//!
//! **Architecture Invariant:** besides `warren-proto` this crate depends only on `warren-sys`,
//! for the one `unsafe` act of taking ownership of the inherited descriptor.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub use warren_proto::{
    Bodies, Deliveries, Delivery, ErrorCode, Filter, Handle, Identity, Limits, MIN_VERSION,
    Message, Rights, Run, SPAWN_VERSION, Sender, Spawn, Spawned, VERSION,
};
use warren_proto::{Frame, PacketBuilder, Request, RequestId, Response};

/// How long past a receive's own timeout the client waits for the kernel's answer before it
/// concludes the answer was lost (a kernel restart loses the requests it had parked).
const RESTART_GRACE: Duration = Duration::from_secs(2);

/// The default mailbox's handle in every environment's table.
pub const DEFAULT_MAILBOX: Handle = 1;

/// The largest packet the batch calls assemble: large enough that a system call carries
/// hundreds of small messages, small enough to stay far below the socket buffers.
const BATCH_PACKET: usize = 64 * 1024;

/// How many batch frames [`Client::send_many`] keeps in flight when it waits for room: enough
/// to keep the kernel busy while the sender fills the next ones, few enough that a full
/// mailbox holds back only a bounded amount (each frame that does not fit is one waiting send,
/// and the kernel bounds those per environment).
const SEND_WINDOW: usize = 8;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `WARREN_FD` is not set to a usable descriptor: the program runs outside an environment
    /// with a mailbox, or the descriptor was closed.
    #[error("no kernel connection: {0}")]
    NoConnection(String),
    /// Reading or writing the connection failed.
    #[error("kernel connection: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel closed the connection.
    #[error("the kernel closed the connection")]
    Closed,
    /// The kernel sent bytes that do not decode.
    #[error("undecodable packet from the kernel: {0}")]
    Decode(#[from] warren_proto::DecodeError),
    /// A request could not be encoded (a field exceeds the protocol's limits).
    #[error("request too large: {0}")]
    Encode(#[from] warren_proto::EncodeError),
    /// The kernel refused the request.
    #[error("{code}: {detail}")]
    Kernel {
        /// The stable error code.
        code: ErrorCode,
        /// The kernel's explanation (not stable).
        detail: String,
    },
    /// The kernel answered with something the request does not expect.
    #[error("unexpected answer from the kernel: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The kernel's error code, when the kernel refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Kernel { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What one batch receive ([`Client::recv_many`]) took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Plain messages (bodies only), in runs by sender and badge, oldest first.
    Batch(Deliveries),
    /// One message that is not plain (headers, correlation, capabilities, a reply handle, or a
    /// `down` notice): it was the oldest, and goes alone.
    One(Delivery),
}

impl Received {
    /// How many messages.
    pub fn len(&self) -> usize {
        match self {
            Received::Batch(d) => d.len(),
            Received::One(_) => 1,
        }
    }

    /// Whether there is none (a batch receive never answers with none).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection to the kernel.
#[derive(Debug)]
pub struct Client {
    sock: UnixDatagram,
    env: String,
    /// The protocol version agreed in the handshake.
    version: u16,
    /// The most bodies [`Client::send_many`] puts in one batch frame.
    frame_bodies: usize,
    next_id: RequestId,
    /// Responses that arrived for other requests than the one being waited for, with their
    /// place in the stream of answers (see `read`).
    early: VecDeque<(u64, Frame<Response>)>,
    /// Receives this client gave up waiting for (no answer by their timeout plus a grace): the
    /// kernel may still answer them, and a message it hands over then must not be lost.
    abandoned: Vec<RequestId>,
    /// Messages that answered abandoned receives, oldest first (by their place in the stream
    /// of answers): the next receives that accept them take them before asking the kernel, and
    /// a receive answered with a newer message returns the older one first.
    unclaimed: VecDeque<(u64, Delivery)>,
    /// Frames read so far: each answer's place in the stream, which is the order in which the
    /// kernel took the messages they carry.
    read_seq: u64,
    buf: Vec<u8>,
}

impl Client {
    /// Connect through the descriptor named by `WARREN_FD` (3 when unset) and shake hands.
    pub fn connect() -> Result<Client, ClientError> {
        let fd = match std::env::var("WARREN_FD") {
            Ok(v) => v.trim().parse::<i32>().map_err(|_| {
                ClientError::NoConnection(format!("WARREN_FD={v:?} is not a descriptor number"))
            })?,
            Err(_) => 3,
        };
        let owned = warren_sys::take_inherited_socket(fd)
            .map_err(|e| ClientError::NoConnection(format!("descriptor {fd}: {e}")))?;
        Client::from_fd(owned)
    }

    /// Use `fd` (one end of a kernel connection) and shake hands.
    pub fn from_fd(fd: OwnedFd) -> Result<Client, ClientError> {
        let mut c = Client {
            sock: UnixDatagram::from(fd),
            env: String::new(),
            version: MIN_VERSION,
            frame_bodies: warren_proto::MAX_BATCH,
            next_id: 1,
            early: VecDeque::new(),
            abandoned: Vec::new(),
            unclaimed: VecDeque::new(),
            read_seq: 0,
            buf: vec![0u8; warren_proto::MAX_PACKET],
        };
        match c.request(Request::Hello {
            min_version: MIN_VERSION,
            max_version: VERSION,
        })? {
            Response::Welcome { env, version } => {
                c.env = env;
                c.version = version;
            }
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        Ok(c)
    }

    /// The environment's name, as the kernel knows it.
    pub fn env(&self) -> &str {
        &self.env
    }

    /// The protocol version agreed with the kernel (batch frames need 2).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Caps the bodies [`Client::send_many`] puts in one batch frame (1 ..=
    /// [`MAX_BATCH`](warren_proto::MAX_BATCH)); by default a frame takes as many as fit in
    /// 64 KiB.
    pub fn set_frame_bodies(&mut self, bodies: usize) {
        self.frame_bodies = bodies.clamp(1, warren_proto::MAX_BATCH);
    }

    fn need_batches(&self) -> Result<(), ClientError> {
        if self.version < 2 {
            return Err(ClientError::Unexpected(format!(
                "the kernel speaks protocol version {}; batch frames need 2",
                self.version
            )));
        }
        Ok(())
    }

    /// Send plain messages (bodies only) through `handle` in batch frames: one capability
    /// check and one answer per frame, the bodies copied once into the packet and once into
    /// the receiver's. With `wait`, every body is accepted (the kernel holds back what does
    /// not fit until there is room) and the frames travel pipelined, at most eight awaiting
    /// their answer at a time; without, the frames go one at a time and sending stops at the
    /// first that is not accepted whole. Returns how many bodies were accepted: a prefix of
    /// `bodies`, in order.
    pub fn send_many<'a>(
        &mut self,
        handle: Handle,
        bodies: impl IntoIterator<Item = &'a [u8]>,
        wait: bool,
    ) -> Result<usize, ClientError> {
        self.need_batches()?;
        let mut accepted = 0;
        let mut chunk = Bodies::with_capacity(BATCH_PACKET);
        let mut ids: VecDeque<(RequestId, usize)> = VecDeque::new();
        let mut packet = Vec::with_capacity(BATCH_PACKET);
        let mut bodies = bodies.into_iter().peekable();
        while bodies.peek().is_some() {
            chunk.clear();
            while let Some(b) = bodies.peek() {
                let fits = chunk.encoded_len() + 4 + b.len() <= BATCH_PACKET - 64;
                if !chunk.is_empty() && !fits {
                    break;
                }
                chunk.push(b)?;
                bodies.next();
                if chunk.len() == self.frame_bodies {
                    break;
                }
            }
            let id = self.next_id();
            packet.clear();
            warren_proto::encode_send_batch(&mut packet, id, handle, wait, false, &chunk)?;
            self.sock.send(&packet)?;
            if wait {
                ids.push_back((id, chunk.len()));
                if ids.len() >= SEND_WINDOW {
                    let (id, n) = ids.pop_front().expect("not empty");
                    accepted += self.await_whole_batch(id, n)?;
                }
                continue;
            }
            let count = Self::expect_accepted(self.wait_for(id)?)?;
            accepted += count;
            if count < chunk.len() {
                return Ok(accepted);
            }
        }
        for (id, n) in ids {
            accepted += self.await_whole_batch(id, n)?;
        }
        Ok(accepted)
    }

    /// The answer to a waiting batch of `n`: all of it accepted.
    fn await_whole_batch(&mut self, id: RequestId, n: usize) -> Result<usize, ClientError> {
        let count = Self::expect_accepted(self.wait_for(id)?)?;
        if count != n {
            return Err(ClientError::Unexpected(format!(
                "a waiting batch of {n} was answered accepted {count}"
            )));
        }
        Ok(count)
    }

    fn expect_accepted(r: Response) -> Result<usize, ClientError> {
        match r {
            Response::Accepted { count } => Ok(count as usize),
            Response::Error { code, detail } => Err(ClientError::Kernel { code, detail }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Take up to `max` messages from the default mailbox with one request, waiting up to
    /// `timeout` (`None`: forever) for the first: plain messages come as one
    /// [`Received::Batch`], borrowed from one buffer; a message that is not plain comes alone
    /// as [`Received::One`]. Nothing is taken on a timeout ([`ErrorCode::Timeout`]).
    pub fn recv_many(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<Received, ClientError> {
        self.need_batches()?;
        if let Some(d) = self.take_unclaimed(None, &Filter::default()) {
            return Ok(Received::One(d));
        }
        let max = max.clamp(1, warren_proto::MAX_BATCH) as u32;
        let timeout_ms = timeout.map(|t| t.as_millis().min(u64::MAX as u128) as u64);
        let (seq, answer) = self.request_seq(Request::RecvBatch {
            mailbox: None,
            max,
            timeout_ms,
        })?;
        // A message that answered an abandoned receive before this answer is older: it comes
        // first, and this batch waits behind it.
        if self
            .older_unclaimed(seq, DEFAULT_MAILBOX, &Filter::default())
            .is_some()
        {
            match answer {
                Response::Deliveries(d) => {
                    for d in owned_deliveries(&d) {
                        self.insert_unclaimed(seq, d);
                    }
                }
                Response::Delivery(d) => self.insert_unclaimed(seq, d),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
            let first = self.take_unclaimed(None, &Filter::default());
            return Ok(Received::One(first.expect("an older message is unclaimed")));
        }
        match answer {
            Response::Deliveries(d) => Ok(Received::Batch(d)),
            Response::Delivery(d) => Ok(Received::One(d)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    fn next_id(&mut self) -> RequestId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// One packet's frames, each with its place in the stream of answers; answers to
    /// abandoned receives are set aside as unclaimed messages at once, in that order.
    fn read(&mut self) -> Result<Vec<(u64, Frame<Response>)>, ClientError> {
        let frames = self.read_packet()?;
        let mut out = Vec::with_capacity(frames.len());
        for f in frames {
            self.read_seq += 1;
            let seq = self.read_seq;
            if let Some(pos) = self.abandoned.iter().position(|&a| a == f.id) {
                self.abandoned.swap_remove(pos);
                self.absorb(seq, f.body);
            } else {
                out.push((seq, f));
            }
        }
        Ok(out)
    }

    fn read_packet(&mut self) -> Result<Vec<Frame<Response>>, ClientError> {
        let n = match self.sock.recv(&mut self.buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ClientError::Kernel {
                    code: ErrorCode::Timeout,
                    detail: "no answer from the kernel in time (was it restarted?)".into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(ClientError::Closed);
        }
        Ok(warren_proto::decode_responses(&self.buf[..n])?)
    }

    fn wait_for(&mut self, id: RequestId) -> Result<Response, ClientError> {
        Ok(self.wait_for_seq(id)?.1)
    }

    /// The answer to `id` and its place in the stream of answers.
    fn wait_for_seq(&mut self, id: RequestId) -> Result<(u64, Response), ClientError> {
        if let Some(pos) = self.early.iter().position(|(_, f)| f.id == id) {
            let (seq, f) = self.early.remove(pos).expect("position is in range");
            return Ok((seq, f.body));
        }
        loop {
            let mut found = None;
            for (seq, f) in self.read()? {
                if f.id == id && found.is_none() {
                    found = Some((seq, f.body));
                } else {
                    self.early.push_back((seq, f));
                }
            }
            if let Some(r) = found {
                return Ok(r);
            }
        }
    }

    /// A block of `n` consecutive request ids (never including 0): the answers of a pipelined
    /// batch are then placed by `id - first` without searching.
    fn reserve_ids(&mut self, n: usize) -> RequestId {
        let n = u32::try_from(n).unwrap_or(u32::MAX - 1);
        if self.next_id.checked_add(n).is_none() {
            self.next_id = 1;
        }
        let first = self.next_id;
        self.next_id = first.wrapping_add(n).max(1);
        first
    }

    /// The answers to the `n` requests with ids `first..first + n`, in id order; answers to
    /// other requests met on the way are kept for their own waiters.
    fn wait_for_block(&mut self, first: RequestId, n: usize) -> Result<Vec<Response>, ClientError> {
        let answers = self.wait_for_block_seq(first, n)?;
        Ok(answers.into_iter().map(|(_, r)| r).collect())
    }

    /// [`Client::wait_for_block`], each answer with its place in the stream of answers.
    fn wait_for_block_seq(
        &mut self,
        first: RequestId,
        n: usize,
    ) -> Result<Vec<(u64, Response)>, ClientError> {
        let index = |id: RequestId| {
            let i = id.wrapping_sub(first) as usize;
            (i < n).then_some(i)
        };
        let mut slots: Vec<Option<(u64, Response)>> = Vec::with_capacity(n);
        slots.resize_with(n, || None);
        let mut missing = n;
        if !self.early.is_empty() {
            let early = std::mem::take(&mut self.early);
            for (seq, f) in early {
                match index(f.id) {
                    Some(i) if slots[i].is_none() => {
                        slots[i] = Some((seq, f.body));
                        missing -= 1;
                    }
                    _ => self.early.push_back((seq, f)),
                }
            }
        }
        while missing > 0 {
            for (seq, f) in self.read()? {
                match index(f.id) {
                    Some(i) if slots[i].is_none() => {
                        slots[i] = Some((seq, f.body));
                        missing -= 1;
                    }
                    _ => self.early.push_back((seq, f)),
                }
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }

    fn request(&mut self, req: Request) -> Result<Response, ClientError> {
        Ok(self.request_seq(req)?.1)
    }

    /// [`Client::request`], with the answer's place in the stream of answers.
    fn request_seq(&mut self, req: Request) -> Result<(u64, Response), ClientError> {
        // A receive with a timeout is answered by then; if the kernel restarted meanwhile (its
        // parked requests are lost) the client gives up on its own, a little later.
        let deadline = match &req {
            Request::Recv {
                timeout_ms: Some(ms),
                ..
            }
            | Request::RecvBatch {
                timeout_ms: Some(ms),
                ..
            } => Some(Duration::from_millis(*ms) + RESTART_GRACE),
            _ => None,
        };
        let id = self.next_id();
        let mut out = Vec::new();
        warren_proto::encode_request(&Frame { id, body: req }, &mut out)?;
        self.sock.send(&out)?;
        self.sock.set_read_timeout(deadline)?;
        let answer = self.wait_for_seq(id);
        self.sock.set_read_timeout(None)?;
        if answer.is_err() && deadline.is_some() {
            // The kernel may still answer this receive with a message (e.g. it was slow, not
            // restarted): keep the id so that answer is kept for a later receive.
            self.abandoned.push(id);
        }
        match answer? {
            (_, Response::Error { code, detail }) => Err(ClientError::Kernel { code, detail }),
            r => Ok(r),
        }
    }

    /// Moves the answers of abandoned receives that have arrived into `unclaimed` (messages)
    /// or drops them (errors: nothing was taken).
    fn absorb_abandoned(&mut self) {
        if self.abandoned.is_empty() {
            return;
        }
        let early = std::mem::take(&mut self.early);
        for (seq, f) in early {
            let Some(pos) = self.abandoned.iter().position(|&a| a == f.id) else {
                self.early.push_back((seq, f));
                continue;
            };
            self.abandoned.swap_remove(pos);
            self.absorb(seq, f.body);
        }
    }

    /// Keep the message(s) of an abandoned receive's answer, which was number `seq` in the
    /// stream of answers (errors are dropped: nothing was taken).
    fn absorb(&mut self, seq: u64, answer: Response) {
        match answer {
            Response::Delivery(d) => self.insert_unclaimed(seq, d),
            Response::Deliveries(d) => {
                for d in owned_deliveries(&d) {
                    self.insert_unclaimed(seq, d);
                }
            }
            _ => {}
        }
    }

    /// Put a message with stream place `seq` among the unclaimed ones, in stream order (after
    /// those of the same place, so a batch keeps its order).
    fn insert_unclaimed(&mut self, seq: u64, d: Delivery) {
        let at = self.unclaimed.partition_point(|(s, _)| *s <= seq);
        self.unclaimed.insert(at, (seq, d));
    }

    /// Where the oldest unclaimed message accepted by a receive of `mailbox` with `filter` is,
    /// if it came before the answer with stream place `seq`.
    fn older_unclaimed(&mut self, seq: u64, mailbox: Handle, filter: &Filter) -> Option<usize> {
        self.absorb_abandoned();
        self.unclaimed
            .iter()
            .position(|(s, d)| *s < seq && accepts(d, mailbox, filter))
    }

    /// `d`, the answer (stream place `seq`) to a receive of `mailbox` with `filter`, or an
    /// older unclaimed message that receive accepts (then `d` waits among the unclaimed):
    /// messages are returned in the order the kernel handed them out.
    fn oldest_first(
        &mut self,
        seq: u64,
        d: Delivery,
        mailbox: Handle,
        filter: &Filter,
    ) -> Delivery {
        match self.older_unclaimed(seq, mailbox, filter) {
            Some(pos) => {
                let (_, older) = self.unclaimed.remove(pos).expect("position is in range");
                self.insert_unclaimed(seq, d);
                older
            }
            None => d,
        }
    }

    /// The oldest unclaimed message (see `abandoned`) in `mailbox` that passes `filter`.
    fn take_unclaimed(&mut self, mailbox: Option<Handle>, filter: &Filter) -> Option<Delivery> {
        self.absorb_abandoned();
        let mailbox = mailbox.unwrap_or(DEFAULT_MAILBOX);
        let pos = self
            .unclaimed
            .iter()
            .position(|(_, d)| accepts(d, mailbox, filter))?;
        self.unclaimed.remove(pos).map(|(_, d)| d)
    }

    fn expect_ok(r: Response) -> Result<(), ClientError> {
        match r {
            Response::Ok => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    fn expect_handle(r: Response) -> Result<(Handle, Rights), ClientError> {
        match r {
            Response::Handle { handle, rights } => Ok((handle, rights)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Send `message` through `handle`, waiting for room if the mailbox is full.
    pub fn send(&mut self, handle: Handle, message: Message) -> Result<(), ClientError> {
        Self::expect_ok(self.request(Request::Send {
            handle,
            message,
            wait: true,
        })?)
    }

    /// Send `message` through `handle`; fail with [`ErrorCode::Full`] rather than wait.
    pub fn try_send(&mut self, handle: Handle, message: Message) -> Result<(), ClientError> {
        Self::expect_ok(self.request(Request::Send {
            handle,
            message,
            wait: false,
        })?)
    }

    /// Send many messages, as many per packet as fit, and collect each one's outcome in
    /// order. This is the fast path: one system call carries many messages.
    pub fn send_batch(
        &mut self,
        items: impl IntoIterator<Item = (Handle, Message)>,
        wait: bool,
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        let requests: Vec<Request> = items
            .into_iter()
            .map(|(handle, message)| Request::Send {
                handle,
                message,
                wait,
            })
            .collect();
        Ok(self
            .pipeline(requests)?
            .into_iter()
            .map(|r| match r {
                Response::Ok => Ok(()),
                Response::Error { code, detail } => Err(ClientError::Kernel { code, detail }),
                other => Err(ClientError::Unexpected(format!("{other:?}"))),
            })
            .collect())
    }

    /// Send `requests` pipelined (as many per packet as fit, ids a contiguous block) and
    /// return their answers in request order.
    fn pipeline(&mut self, requests: Vec<Request>) -> Result<Vec<Response>, ClientError> {
        let answers = self.pipeline_seq(requests)?;
        Ok(answers.into_iter().map(|(_, r)| r).collect())
    }

    /// [`Client::pipeline`], each answer with its place in the stream of answers.
    fn pipeline_seq(
        &mut self,
        requests: Vec<Request>,
    ) -> Result<Vec<(u64, Response)>, ClientError> {
        let n = requests.len();
        let first = self.reserve_ids(n);
        let mut packet = PacketBuilder::with_limit(BATCH_PACKET);
        for (i, body) in requests.into_iter().enumerate() {
            let frame = Frame {
                id: first.wrapping_add(i as u32),
                body,
            };
            self.push_pipelined(&mut packet, &frame)?;
        }
        if !packet.is_empty() {
            self.sock.send(packet.as_bytes())?;
        }
        self.wait_for_block_seq(first, n)
    }

    /// Appends `frame` to `packet`, sending the packet first when the frame does not fit.
    fn push_pipelined(
        &mut self,
        packet: &mut PacketBuilder,
        frame: &Frame<Request>,
    ) -> Result<(), ClientError> {
        if let Err(warren_proto::EncodeError::PacketFull { .. }) = packet.push_request(frame) {
            self.sock.send(packet.as_bytes())?;
            packet.clear();
            packet.push_request(frame)?;
        }
        Ok(())
    }

    /// Receive up to `n` messages from the default mailbox in one go: `n` receives travel
    /// pipelined in one packet, each waiting up to `timeout` (`None`: forever), and their
    /// outcomes come back in request order. The kernel hands arriving messages to the waiting
    /// receives oldest first, so the deliveries are in mailbox order; a receive that found
    /// nothing in time is `Err` with [`ErrorCode::Timeout`]. This is the receiving half of the
    /// fast path ([`Client::send_batch`] is the other): one packet each way carries many
    /// messages. `n` counts against the kernel's limit of waiting requests per environment
    /// (1024 by default), beyond which receives answer [`ErrorCode::Unavailable`].
    pub fn recv_batch(
        &mut self,
        n: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<Result<Delivery, ClientError>>, ClientError> {
        let timeout_ms = timeout.map(|t| t.as_millis().min(u64::MAX as u128) as u64);
        let requests = (0..n)
            .map(|_| Request::Recv {
                mailbox: None,
                filter: Filter::default(),
                timeout_ms,
            })
            .collect();
        let answers = self.pipeline_seq(requests)?;
        // Messages that answered abandoned receives before these answers came are older: they
        // go first, to the receives that got a message, then these in request order; what is
        // left over (the newest) stays unclaimed for the next receive.
        let newest = answers.iter().map(|(s, _)| *s).max().unwrap_or(0);
        self.absorb_abandoned();
        let mut taken: Vec<Delivery> = Vec::new();
        let mut kept = VecDeque::with_capacity(self.unclaimed.len());
        for (seq, d) in std::mem::take(&mut self.unclaimed) {
            if seq < newest && accepts(&d, DEFAULT_MAILBOX, &Filter::default()) {
                taken.push(d);
            } else {
                kept.push_back((seq, d));
            }
        }
        self.unclaimed = kept;
        let mut out = Vec::with_capacity(answers.len());
        for (_, r) in answers {
            out.push(match r {
                Response::Delivery(d) => {
                    taken.push(d);
                    None
                }
                Response::Error { code, detail } => Some(ClientError::Kernel { code, detail }),
                other => Some(ClientError::Unexpected(format!("{other:?}"))),
            });
        }
        let mut taken = taken.into_iter();
        let out: Vec<Result<Delivery, ClientError>> = out
            .into_iter()
            .map(|e| match e {
                Some(e) => Err(e),
                None => Ok(taken.next().expect("one message per receive that got one")),
            })
            .collect();
        for d in taken {
            self.insert_unclaimed(newest, d);
        }
        Ok(out)
    }

    /// Send `message` through `handle` (waiting for room if the mailbox is full) and take the
    /// next message from the default mailbox, with both requests in one packet: the step of a
    /// server that answers one request and waits for the next (seL4's ReplyRecv), or of a
    /// client that sends and waits for whatever comes back. The receive does not depend on the
    /// send: it waits (up to `timeout`, `None`: forever) even when the send fails. Returns the
    /// send's outcome and the receive's.
    #[allow(clippy::type_complexity)]
    pub fn send_and_recv(
        &mut self,
        handle: Handle,
        message: Message,
        timeout: Option<Duration>,
    ) -> Result<(Result<(), ClientError>, Result<Delivery, ClientError>), ClientError> {
        let timeout_ms = timeout.map(|t| t.as_millis().min(u64::MAX as u128) as u64);
        let plain = message.headers.is_empty()
            && message.correlation.is_none()
            && message.caps.is_empty()
            && message.reply_to.is_none();
        if self.version >= 2 && plain {
            return self.quiet_send_and_recv(handle, &message.body, timeout_ms);
        }
        let first = self.reserve_ids(2);
        let mut packet = PacketBuilder::with_limit(warren_proto::MAX_PACKET);
        packet.push_request(&Frame {
            id: first,
            body: Request::Send {
                handle,
                message,
                wait: true,
            },
        })?;
        packet.push_request(&Frame {
            id: first.wrapping_add(1),
            body: Request::Recv {
                mailbox: None,
                filter: Filter::default(),
                timeout_ms,
            },
        })?;
        self.sock.send(packet.as_bytes())?;
        let mut answers = self.wait_for_block(first, 2)?.into_iter();
        let sent = match answers.next() {
            Some(Response::Ok) => Ok(()),
            Some(Response::Error { code, detail }) => Err(ClientError::Kernel { code, detail }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        let got = match answers.next() {
            Some(Response::Delivery(d)) => Ok(d),
            Some(Response::Error { code, detail }) => Err(ClientError::Kernel { code, detail }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        Ok((sent, got))
    }

    /// [`Client::send_and_recv`] for a plain message on protocol version 2: the send is a
    /// quiet one-body batch, which the kernel answers only if it refuses it, so the round trip
    /// costs one packet each way per side. A refusal is produced in the same kernel turn as the
    /// send, so it arrives no later than the receive's answer; only a send that waited for room
    /// and then found the mailbox dead is reported later (kept with the unclaimed answers).
    #[allow(clippy::type_complexity)]
    fn quiet_send_and_recv(
        &mut self,
        handle: Handle,
        body: &[u8],
        timeout_ms: Option<u64>,
    ) -> Result<(Result<(), ClientError>, Result<Delivery, ClientError>), ClientError> {
        let first = self.reserve_ids(2);
        let mut bodies = Bodies::with_capacity(4 + body.len());
        bodies.push(body)?;
        let mut packet = Vec::with_capacity(64 + body.len());
        warren_proto::encode_send_batch(&mut packet, first, handle, true, true, &bodies)?;
        warren_proto::encode_request(
            &Frame {
                id: first.wrapping_add(1),
                body: Request::Recv {
                    mailbox: None,
                    filter: Filter::default(),
                    timeout_ms,
                },
            },
            &mut packet,
        )?;
        self.sock.send(&packet)?;
        let got = match self.wait_for(first.wrapping_add(1))? {
            Response::Delivery(d) => Ok(d),
            Response::Error { code, detail } => Err(ClientError::Kernel { code, detail }),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        let sent = match self.early.iter().position(|(_, f)| f.id == first) {
            None => Ok(()),
            Some(pos) => match self.early.remove(pos).expect("in range").1.body {
                Response::Error { code, detail } => Err(ClientError::Kernel { code, detail }),
                other => Err(ClientError::Unexpected(format!("{other:?}"))),
            },
        };
        Ok((sent, got))
    }

    /// Take the oldest message from the default mailbox, waiting up to `timeout` (`None`:
    /// forever). A timeout is [`ErrorCode::Timeout`].
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Delivery, ClientError> {
        self.recv_matching(None, Filter::default(), timeout)
    }

    /// Selective receive: the oldest message in `mailbox` (`None`: the default one) that
    /// matches `filter`; others stay queued in order.
    pub fn recv_matching(
        &mut self,
        mailbox: Option<Handle>,
        filter: Filter,
        timeout: Option<Duration>,
    ) -> Result<Delivery, ClientError> {
        if let Some(d) = self.take_unclaimed(mailbox, &filter) {
            return Ok(d);
        }
        let timeout_ms = timeout.map(|t| t.as_millis().min(u64::MAX as u128) as u64);
        let (seq, answer) = self.request_seq(Request::Recv {
            mailbox,
            filter: filter.clone(),
            timeout_ms,
        })?;
        match answer {
            Response::Delivery(d) => {
                Ok(self.oldest_first(seq, d, mailbox.unwrap_or(DEFAULT_MAILBOX), &filter))
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Request and reply in one call: send `message` with a one-shot reply capability to the
    /// default mailbox and a fresh correlation id, then wait for the answer carrying it.
    pub fn call(
        &mut self,
        handle: Handle,
        mut message: Message,
        timeout: Option<Duration>,
    ) -> Result<Delivery, ClientError> {
        let correlation = (u64::from(std::process::id()) << 32) | u64::from(self.next_id());
        message.correlation = Some(correlation);
        message.reply_to = Some(DEFAULT_MAILBOX);
        self.send(handle, message)?;
        let filter = Filter {
            correlation: Some(correlation),
            header: None,
        };
        self.recv_matching(None, filter, timeout)
    }

    /// A handle for the mailbox named `name`, where policy lets this environment discover it.
    pub fn lookup(&mut self, name: &str) -> Result<(Handle, Rights), ClientError> {
        Self::expect_handle(self.request(Request::Lookup {
            name: name.to_owned(),
        })?)
    }

    /// This environment's name and every handle in its table.
    pub fn whoami(&mut self) -> Result<Identity, ClientError> {
        match self.request(Request::Whoami)? {
            Response::Identity(i) => Ok(i),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A quote from the host's root of trust that binds this environment's own launch record
    /// and `data` to the verifier's `nonce`: the JSON document `warren attest verify` checks.
    pub fn attest(&mut self, nonce: &[u8], data: &[u8]) -> Result<Vec<u8>, ClientError> {
        match self.request(Request::Attest {
            nonce: nonce.to_vec(),
            data: data.to_vec(),
        })? {
            Response::Quote { quote } => Ok(quote),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A weaker handle derived from `handle`: `rights` kept (intersected), at most `uses`
    /// sends, expiring after `expires_in`, with `badge` shown to receivers.
    pub fn attenuate(
        &mut self,
        handle: Handle,
        rights: Rights,
        uses: Option<u32>,
        expires_in: Option<Duration>,
        badge: Option<u64>,
    ) -> Result<(Handle, Rights), ClientError> {
        let expires_in_ms = expires_in.map(|d| d.as_millis().min(u64::MAX as u128) as u64);
        Self::expect_handle(self.request(Request::Attenuate {
            handle,
            rights,
            uses,
            expires_in_ms,
            badge,
        })?)
    }

    /// Revoke every capability derived from `handle`.
    pub fn revoke(&mut self, handle: Handle) -> Result<(), ClientError> {
        Self::expect_ok(self.request(Request::Revoke { handle })?)
    }

    /// Remove `handle` from this environment's table.
    pub fn drop_handle(&mut self, handle: Handle) -> Result<(), ClientError> {
        Self::expect_ok(self.request(Request::Drop { handle })?)
    }

    /// Be sent a `down` notice when the owner of `handle`'s mailbox ends; returns the
    /// reference the notice will carry.
    pub fn monitor(&mut self, handle: Handle) -> Result<u64, ClientError> {
        match self.request(Request::Monitor { handle })? {
            Response::Monitor { reference } => Ok(reference),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Create another mailbox owned by this environment.
    pub fn create_mailbox(&mut self, name: Option<&str>) -> Result<Handle, ClientError> {
        Ok(Self::expect_handle(self.request(Request::CreateMailbox {
            name: name.map(str::to_owned),
        })?)?
        .0)
    }

    /// Version 3: create a child environment from the template `spawn.handle` designates (a
    /// handle with SPAWN), with `spawn.names` as its initial names. Waits until the child runs
    /// (or could not be started: [`ErrorCode::SpawnFailed`]). On a connection below version 3
    /// it fails with [`ClientError::Unexpected`] without asking the kernel.
    pub fn spawn(&mut self, spawn: Spawn) -> Result<Spawned, ClientError> {
        self.need_spawn()?;
        match self.request(Request::Spawn(spawn))? {
            Response::Spawned(s) => Ok(s),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Version 3: stop the environment `handle` designates (a handle with STOP): SIGTERM and
    /// SIGKILL after the grace period, or SIGKILL at once with `kill`. Its end arrives as the
    /// `down` notice.
    pub fn stop(&mut self, handle: Handle, kill: bool) -> Result<(), ClientError> {
        self.need_spawn()?;
        Self::expect_ok(self.request(Request::Stop { handle, kill })?)
    }

    /// Version 3: a new SPAWN handle derived from `handle`, allowing at most `share` live
    /// children and the lower of its ceilings and `limits`.
    pub fn restrict(
        &mut self,
        handle: Handle,
        share: Option<u32>,
        limits: Limits,
    ) -> Result<(Handle, Rights), ClientError> {
        self.need_spawn()?;
        Self::expect_handle(self.request(Request::Restrict {
            handle,
            share,
            limits,
        })?)
    }

    fn need_spawn(&self) -> Result<(), ClientError> {
        if self.version() < SPAWN_VERSION {
            return Err(ClientError::Unexpected(format!(
                "spawn needs protocol version {SPAWN_VERSION}; the kernel speaks {}",
                self.version()
            )));
        }
        Ok(())
    }
}

/// Whether a receive of `mailbox` with `filter` accepts `d`.
fn accepts(d: &Delivery, mailbox: Handle, filter: &Filter) -> bool {
    d.mailbox == mailbox
        && filter.correlation.is_none_or(|c| d.correlation == Some(c))
        && filter
            .header
            .as_ref()
            .is_none_or(|(n, v)| d.headers.iter().any(|(hn, hv)| hn == n && hv == v))
}

/// The messages of a `Deliveries` answer, each as a [`Delivery`] of its own, in order.
fn owned_deliveries(d: &Deliveries) -> Vec<Delivery> {
    d.iter()
        .map(|(from, body)| Delivery {
            mailbox: d.mailbox,
            from: from.clone(),
            headers: Vec::new(),
            correlation: None,
            body: body.to_vec(),
            caps: Vec::new(),
            reply: None,
            down: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake kernel on the other end of a datagram pair: it answers the handshake, then runs
    /// `script` with the socket.
    fn with_fake_kernel(
        script: impl FnOnce(&UnixDatagram) + Send + 'static,
    ) -> (Client, std::thread::JoinHandle<()>) {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        let kernel = std::thread::spawn(move || {
            let hello = read_requests(&theirs);
            assert!(matches!(hello[0].body, Request::Hello { .. }));
            answer(
                &theirs,
                &[Frame {
                    id: hello[0].id,
                    body: Response::Welcome {
                        version: VERSION,
                        env: "t".into(),
                    },
                }],
            );
            script(&theirs);
        });
        (Client::from_fd(OwnedFd::from(ours)).unwrap(), kernel)
    }

    fn read_requests(sock: &UnixDatagram) -> Vec<Frame<Request>> {
        let mut buf = vec![0u8; warren_proto::MAX_PACKET];
        let n = sock.recv(&mut buf).unwrap();
        warren_proto::decode_requests(&buf[..n]).unwrap()
    }

    fn answer(sock: &UnixDatagram, frames: &[Frame<Response>]) {
        let mut p = PacketBuilder::new();
        for f in frames {
            p.push_response(f).unwrap();
        }
        sock.send(p.as_bytes()).unwrap();
    }

    fn delivery(body: &str) -> Response {
        Response::Delivery(Delivery {
            mailbox: DEFAULT_MAILBOX,
            from: Sender {
                env: "peer".into(),
                badge: 0,
            },
            headers: vec![],
            correlation: None,
            body: body.as_bytes().to_vec(),
            caps: vec![],
            reply: None,
            down: None,
        })
    }

    #[test]
    fn recv_batch_pipelines_the_receives_in_one_packet_and_answers_in_request_order() {
        let (mut k, kernel) = with_fake_kernel(|sock| {
            let reqs = read_requests(sock);
            assert_eq!(reqs.len(), 3, "all three receives travel in one packet");
            for r in &reqs {
                assert_eq!(
                    r.body,
                    Request::Recv {
                        mailbox: None,
                        filter: Filter::default(),
                        timeout_ms: Some(1000),
                    }
                );
            }
            let ids: Vec<u32> = reqs.iter().map(|r| r.id).collect();
            // Out of order, split over two packets, with an answer to something else between.
            answer(
                sock,
                &[
                    Frame {
                        id: ids[2],
                        body: delivery("c"),
                    },
                    Frame {
                        id: ids[2].wrapping_add(100),
                        body: Response::Ok,
                    },
                ],
            );
            answer(
                sock,
                &[
                    Frame {
                        id: ids[0],
                        body: delivery("a"),
                    },
                    Frame {
                        id: ids[1],
                        body: Response::Error {
                            code: ErrorCode::Timeout,
                            detail: "nothing".into(),
                        },
                    },
                ],
            );
        });
        let got = k.recv_batch(3, Some(Duration::from_secs(1))).unwrap();
        kernel.join().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().body, b"a");
        assert_eq!(
            got[1].as_ref().unwrap_err().code(),
            Some(ErrorCode::Timeout)
        );
        assert_eq!(got[2].as_ref().unwrap().body, b"c");
        // The stray answer was kept, not mistaken for one of the batch.
        assert_eq!(k.early.len(), 1);
    }

    #[test]
    fn a_message_answering_a_receive_the_client_gave_up_on_is_kept_for_the_next_receive() {
        let (mut k, kernel) = with_fake_kernel(|sock| {
            // The first receive gets no answer in time (the client waits its timeout plus the
            // restart grace); the kernel answers it only after the second receive arrived.
            let first = read_requests(sock);
            let second = read_requests(sock);
            answer(
                sock,
                &[Frame {
                    id: first[0].id,
                    body: delivery("late"),
                }],
            );
            answer(
                sock,
                &[Frame {
                    id: second[0].id,
                    body: Response::Error {
                        code: ErrorCode::Timeout,
                        detail: "timeout".into(),
                    },
                }],
            );
            // No third request: the kept message answers the third receive. Positive control
            // of the fake: had a third request come, this read would see it.
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut buf = [0u8; 64];
            assert!(
                sock.recv(&mut buf).is_err(),
                "a third request reached the kernel"
            );
        });
        let t = Some(Duration::from_millis(1));
        assert_eq!(
            k.recv(t).unwrap_err().code(),
            Some(ErrorCode::Timeout),
            "no answer in time"
        );
        assert_eq!(k.recv(t).unwrap_err().code(), Some(ErrorCode::Timeout));
        assert_eq!(
            k.recv(t).unwrap().body,
            b"late",
            "the late message was lost"
        );
        kernel.join().unwrap();
        assert!(k.abandoned.is_empty() && k.unclaimed.is_empty());
    }

    /// The fake kernel's side of the check that no request reached it.
    fn no_more_requests(sock: &UnixDatagram) {
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(sock.recv(&mut buf).is_err(), "a request reached the kernel");
    }

    /// The federation test's reorder (one message 256 places late): a receive the client gave
    /// up on is answered with a message after the client asked again, and the next answer
    /// carries the message after it. The older message must come out first.
    #[test]
    fn a_late_answer_to_an_abandoned_receive_comes_out_before_the_newer_message() {
        let (mut k, kernel) = with_fake_kernel(|sock| {
            let first = read_requests(sock);
            let second = read_requests(sock);
            // The kernel took message 1 for the first receive, then 2 for the second.
            answer(
                sock,
                &[
                    Frame {
                        id: first[0].id,
                        body: delivery("1"),
                    },
                    Frame {
                        id: second[0].id,
                        body: delivery("2"),
                    },
                ],
            );
            no_more_requests(sock);
        });
        let t = Some(Duration::from_millis(1));
        assert_eq!(k.recv(t).unwrap_err().code(), Some(ErrorCode::Timeout));
        assert_eq!(
            k.recv(t).unwrap().body,
            b"1",
            "the newer message came first"
        );
        assert_eq!(k.recv(t).unwrap().body, b"2", "the newer message was lost");
        kernel.join().unwrap();
        assert!(k.abandoned.is_empty() && k.unclaimed.is_empty());
    }

    #[test]
    fn a_late_answer_to_an_abandoned_receive_comes_first_in_a_receive_batch() {
        let (mut k, kernel) = with_fake_kernel(|sock| {
            let first = read_requests(sock);
            let batch = read_requests(sock);
            assert_eq!(batch.len(), 2);
            answer(
                sock,
                &[Frame {
                    id: first[0].id,
                    body: delivery("1"),
                }],
            );
            answer(
                sock,
                &[
                    Frame {
                        id: batch[0].id,
                        body: delivery("2"),
                    },
                    Frame {
                        id: batch[1].id,
                        body: delivery("3"),
                    },
                ],
            );
            no_more_requests(sock);
        });
        let t = Some(Duration::from_millis(1));
        assert_eq!(k.recv(t).unwrap_err().code(), Some(ErrorCode::Timeout));
        let got: Vec<Vec<u8>> = k
            .recv_batch(2, t)
            .unwrap()
            .into_iter()
            .map(|d| d.unwrap().body)
            .collect();
        assert_eq!(got, vec![b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(k.recv(t).unwrap().body, b"3");
        kernel.join().unwrap();
        assert!(k.abandoned.is_empty() && k.unclaimed.is_empty());
    }

    /// Positive control of the ordering: an abandoned receive's message that the kernel took
    /// *after* the next receive's (its answer comes later in the stream) is not put first.
    #[test]
    fn a_message_taken_after_the_answer_stays_behind_it() {
        let (mut k, kernel) = with_fake_kernel(|sock| {
            let first = read_requests(sock);
            let second = read_requests(sock);
            answer(
                sock,
                &[
                    Frame {
                        id: second[0].id,
                        body: delivery("1"),
                    },
                    Frame {
                        id: first[0].id,
                        body: delivery("2"),
                    },
                ],
            );
            no_more_requests(sock);
        });
        let t = Some(Duration::from_millis(1));
        assert_eq!(k.recv(t).unwrap_err().code(), Some(ErrorCode::Timeout));
        assert_eq!(k.recv(t).unwrap().body, b"1");
        assert_eq!(k.recv(t).unwrap().body, b"2");
        kernel.join().unwrap();
    }

    #[test]
    fn spawn_sends_one_frame_and_returns_the_childs_handles() {
        let (mut k, kernel) = with_fake_kernel(|sock| {
            let reqs = read_requests(sock);
            assert_eq!(reqs.len(), 1);
            let Request::Spawn(s) = &reqs[0].body else {
                panic!("{:?}", reqs[0].body)
            };
            assert_eq!(s.handle, 4);
            assert_eq!(s.names, vec![("db".to_string(), 2)]);
            assert_eq!(s.args, vec!["--once".to_string()]);
            answer(
                sock,
                &[Frame {
                    id: reqs[0].id,
                    body: Response::Spawned(Spawned {
                        child: "req-1".into(),
                        mailbox: 5,
                        control: 6,
                        reference: 9,
                    }),
                }],
            );
            let reqs = read_requests(sock);
            assert_eq!(
                reqs[0].body,
                Request::Stop {
                    handle: 6,
                    kill: true
                }
            );
            answer(
                sock,
                &[Frame {
                    id: reqs[0].id,
                    body: Response::Error {
                        code: ErrorCode::Dead,
                        detail: "it has ended".into(),
                    },
                }],
            );
        });
        let s = k
            .spawn(Spawn {
                handle: 4,
                args: vec!["--once".into()],
                names: vec![("db".into(), 2)],
                ..Spawn::default()
            })
            .unwrap();
        assert_eq!((s.child.as_str(), s.mailbox, s.control), ("req-1", 5, 6));
        assert_eq!(k.stop(6, true).unwrap_err().code(), Some(ErrorCode::Dead));
        kernel.join().unwrap();
    }

    #[test]
    fn send_and_recv_puts_both_requests_in_one_packet() {
        let (mut k, kernel) = with_fake_kernel(|sock| {
            let reqs = read_requests(sock);
            assert_eq!(reqs.len(), 2);
            assert!(matches!(
                reqs[0].body,
                Request::Send {
                    handle: 2,
                    wait: true,
                    ..
                }
            ));
            assert!(matches!(
                reqs[1].body,
                Request::Recv {
                    timeout_ms: None,
                    ..
                }
            ));
            // The delivery may come before the send's answer.
            answer(
                sock,
                &[Frame {
                    id: reqs[1].id,
                    body: delivery("pong"),
                }],
            );
            answer(
                sock,
                &[Frame {
                    id: reqs[0].id,
                    body: Response::Error {
                        code: ErrorCode::Full,
                        detail: "full".into(),
                    },
                }],
            );
        });
        let msg = Message {
            body: b"ping".to_vec(),
            ..Message::default()
        };
        // Version 1: an ordinary send, answered `ok` (or an error).
        k.version = 1;
        let (sent, got) = k.send_and_recv(2, msg, None).unwrap();
        kernel.join().unwrap();
        assert_eq!(sent.unwrap_err().code(), Some(ErrorCode::Full));
        assert_eq!(got.unwrap().body, b"pong");
    }

    #[test]
    fn on_version_2_send_and_recv_sends_a_quiet_batch_and_still_sees_a_refusal() {
        let (mut k, kernel) = with_fake_kernel(|sock| {
            let reqs = read_requests(sock);
            assert_eq!(reqs.len(), 2, "one packet");
            match &reqs[0].body {
                Request::SendBatch {
                    handle: 2,
                    wait: true,
                    quiet: true,
                    bodies,
                } => assert_eq!(bodies.iter().collect::<Vec<_>>(), vec![&b"ping"[..]]),
                other => panic!("{other:?}"),
            }
            // Refused, then (same packet) the receive's delivery.
            answer(
                sock,
                &[
                    Frame {
                        id: reqs[0].id,
                        body: Response::Error {
                            code: ErrorCode::Dead,
                            detail: "gone".into(),
                        },
                    },
                    Frame {
                        id: reqs[1].id,
                        body: delivery("pong"),
                    },
                ],
            );
            // A quiet send accepted whole gets no answer: the next round trip's receive is
            // answered alone.
            let reqs = read_requests(sock);
            answer(
                sock,
                &[Frame {
                    id: reqs[1].id,
                    body: delivery("pong2"),
                }],
            );
        });
        assert_eq!(k.version(), VERSION);
        let msg = |b: &[u8]| Message {
            body: b.to_vec(),
            ..Message::default()
        };
        let (sent, got) = k.send_and_recv(2, msg(b"ping"), None).unwrap();
        assert_eq!(sent.unwrap_err().code(), Some(ErrorCode::Dead));
        assert_eq!(got.unwrap().body, b"pong");
        let (sent, got) = k.send_and_recv(2, msg(b"ping"), None).unwrap();
        kernel.join().unwrap();
        assert!(sent.is_ok());
        assert_eq!(got.unwrap().body, b"pong2");
        assert!(k.early.is_empty());
    }

    #[test]
    fn send_many_without_wait_stops_at_a_partial_count_and_recv_many_takes_a_batch() {
        let (mut k, kernel) = with_fake_kernel(|sock| {
            let reqs = read_requests(sock);
            assert_eq!(reqs.len(), 1);
            let Request::SendBatch {
                wait: false,
                quiet: false,
                bodies,
                ..
            } = &reqs[0].body
            else {
                panic!("{:?}", reqs[0].body)
            };
            assert_eq!(bodies.len(), 3);
            answer(
                sock,
                &[Frame {
                    id: reqs[0].id,
                    body: Response::Accepted { count: 2 },
                }],
            );
            let reqs = read_requests(sock);
            assert_eq!(
                reqs[0].body,
                Request::RecvBatch {
                    mailbox: None,
                    max: 8,
                    timeout_ms: Some(0)
                }
            );
            let run = Run {
                from: Sender {
                    env: "peer".into(),
                    badge: 3,
                },
                bodies: [&b"a"[..], b"b"].into_iter().collect(),
            };
            answer(
                sock,
                &[Frame {
                    id: reqs[0].id,
                    body: Response::Deliveries(Deliveries {
                        mailbox: DEFAULT_MAILBOX,
                        runs: vec![run],
                    }),
                }],
            );
        });
        let n = k
            .send_many(2, [&b"x"[..], b"y", b"z"], false)
            .expect("send_many");
        assert_eq!(n, 2);
        let got = k.recv_many(8, Some(Duration::ZERO)).unwrap();
        kernel.join().unwrap();
        let Received::Batch(d) = got else {
            panic!("{got:?}")
        };
        let seen: Vec<(u64, &[u8])> = d.iter().map(|(s, b)| (s.badge, b)).collect();
        assert_eq!(seen, vec![(3, &b"a"[..]), (3, &b"b"[..])]);
    }

    #[test]
    fn batch_ids_never_wrap_inside_a_block() {
        let (mut k, kernel) = with_fake_kernel(|_| {});
        kernel.join().unwrap();
        k.next_id = u32::MAX - 1;
        let first = k.reserve_ids(4);
        assert_eq!(first, 1);
        assert_eq!(k.next_id, 5);
        assert_ne!(k.reserve_ids(1), 0);
    }
}
