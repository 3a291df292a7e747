"""The Warren wire protocol (docs/protocol.md), versions 1 to 3: values, encoder, decoder.

Sans-io and pure Python: :func:`encode_request` / :func:`decode_requests` for what a client
sends, :func:`encode_response` / :func:`decode_responses` for what the kernel answers. Every
value has exactly one encoding, so decoding then encoding gives back the same bytes; the
decoder rejects (:class:`~warren.errors.ProtocolError`) everything section 12 says a decoder
must reject, and checks every length against its limit and against the bytes left before it
takes anything. Conformance: ``tests/test_vectors.py`` runs the byte-exact vectors of
``crates/warren-proto/tests/vectors.txt``.
"""

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import BY_CODE, EncodeError, ProtocolError

MIN_VERSION = 1
#: The highest protocol version this package speaks (3: the error code `quota`).
VERSION = 3

MAX_PACKET = 1 << 20
MAX_FRAME = MAX_PACKET
MAX_NAME = 255
MAX_HEADERS = 32
MAX_HEADER_VALUE = 1024
MAX_BODY = MAX_FRAME - 64 * 1024
MAX_CAPS = 16
MAX_DETAIL = 1024
MAX_IDENTITY_HANDLES = 1024
MAX_BATCH = 16384
MAX_NONCE = 64
MAX_ATTEST_DATA = 1024

SEND, GRANT, MONITOR, RECEIVE = 0x1, 0x2, 0x4, 0x8
#: Version 3: SPAWN on a template handle, STOP on a child environment's handle (section 16).
SPAWN, STOP = 0x10, 0x20
KNOWN_RIGHTS = 0x3F
MAX_SPAWN_ARGS = 64
MAX_SPAWN_TEXT = 4096
MAX_SPAWN_ENV = 64
MAX_SPAWN_NAMES = 64
#: The default mailbox's handle in every environment's table.
DEFAULT_MAILBOX = 1

HELLO, SEND_OP, RECV, LOOKUP, WHOAMI, ATTENUATE = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
REVOKE, DROP, MONITOR_OP, CREATE_MAILBOX, SEND_BATCH, RECV_BATCH = 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C
ATTEST = 0x10
SPAWN_OP, STOP_OP, RESTRICT = 0x20, 0x21, 0x22
SPAWNED = 0xA0
WELCOME, OK, HANDLE, MONITOR_REF, DELIVERY, IDENTITY = 0x81, 0x82, 0x83, 0x84, 0x85, 0x86
ERROR, DELIVERIES, ACCEPTED, QUOTE = 0x87, 0x88, 0x89, 0x90

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<IBI")

Headers = List[Tuple[str, bytes]]


# ------------------------------------------------------------------------------------------
# Values


@dataclass
class Hello:
    min_version: int
    max_version: int


@dataclass
class Send:
    handle: int
    wait: bool
    headers: Headers = field(default_factory=list)
    correlation: Optional[int] = None
    body: bytes = b""
    caps: List[int] = field(default_factory=list)
    reply_to: Optional[int] = None


@dataclass
class Recv:
    mailbox: Optional[int] = None
    correlation: Optional[int] = None
    header: Optional[Tuple[str, bytes]] = None
    timeout_ms: Optional[int] = None


@dataclass
class Lookup:
    name: str


@dataclass
class Whoami:
    pass


@dataclass
class Attenuate:
    handle: int
    rights: int
    uses: Optional[int] = None
    expires_in_ms: Optional[int] = None
    badge: Optional[int] = None


@dataclass
class Revoke:
    handle: int


@dataclass
class Drop:
    handle: int


@dataclass
class Monitor:
    handle: int


@dataclass
class CreateMailbox:
    name: Optional[str] = None


@dataclass
class SendBatch:
    handle: int
    wait: bool
    quiet: bool
    bodies: List[bytes] = field(default_factory=list)


@dataclass
class RecvBatch:
    mailbox: Optional[int]
    max: int
    timeout_ms: Optional[int] = None


@dataclass
class Attest:
    nonce: bytes
    data: bytes = b""


@dataclass
class Welcome:
    version: int
    env: str


@dataclass
class Ok:
    pass


@dataclass
class HandleAnswer:
    handle: int
    rights: int


@dataclass
class MonitorAnswer:
    reference: int


class Delivery:
    """A message taken from a mailbox.

    ``sender`` (the environment's name as the kernel knows it) and ``badge`` are written by the
    kernel and cannot be forged: decide whom to serve from them, never from headers or body.
    ``reply`` is a one-shot handle to answer with (or None); ``caps`` are new handles in this
    environment's table; ``down`` is the monitor reference when this is a down notice.
    """

    __slots__ = ("mailbox", "sender", "badge", "headers", "correlation", "body", "caps", "reply", "down")

    def __init__(
        self,
        mailbox: int,
        sender: str,
        badge: int,
        headers: Headers,
        correlation: Optional[int],
        body: bytes,
        caps: List[int],
        reply: Optional[int],
        down: Optional[int],
    ) -> None:
        self.mailbox = mailbox
        self.sender = sender
        self.badge = badge
        self.headers = headers
        self.correlation = correlation
        self.body = body
        self.caps = caps
        self.reply = reply
        self.down = down

    def header(self, name: str) -> Optional[bytes]:
        """The value of the first header called ``name``, or None."""
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Delivery) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)
        return f"Delivery({fields})"


@dataclass
class Identity:
    env: str
    #: (handle, designation for people, rights), in handle order.
    entries: List[Tuple[int, str, int]] = field(default_factory=list)


@dataclass
class Run:
    """Consecutive plain messages from one sender with one badge."""

    sender: str
    badge: int
    bodies: List[bytes]


@dataclass
class Deliveries:
    mailbox: int
    runs: List[Run]


@dataclass
class Spawn:
    """Version 3 (section 16.1): a child from the template ``handle`` designates."""

    handle: int
    suffix: Optional[str] = None
    args: List[str] = field(default_factory=list)
    env: List[Tuple[str, str]] = field(default_factory=list)
    memory: Optional[int] = None
    pids: Optional[int] = None
    cpus: Optional[int] = None
    tmpfs_size: Optional[int] = None
    detach: bool = False
    names: List[Tuple[str, int]] = field(default_factory=list)


@dataclass
class Stop:
    """Version 3 (section 16.2): stop (or kill) the environment a STOP handle designates."""

    handle: int
    kill: bool = False


@dataclass
class Restrict:
    """Version 3 (section 16.3): a weaker SPAWN handle (a share, lower ceilings)."""

    handle: int
    share: Optional[int] = None
    memory: Optional[int] = None
    pids: Optional[int] = None
    cpus: Optional[int] = None
    tmpfs_size: Optional[int] = None


@dataclass
class Spawned:
    """The answer to Spawn (section 16.4)."""

    child: str
    mailbox: int
    control: int
    reference: int


@dataclass
class Accepted:
    count: int


@dataclass
class Quote:
    quote: bytes


@dataclass
class Error:
    code: int
    detail: str


# ------------------------------------------------------------------------------------------
# Encoding


def _argument_error(e: Exception) -> Exception:
    """What an encoder raises for a value a field cannot carry: :class:`TypeError` for a value
    of the wrong type (``struct`` says "required argument is not an integer"), else
    :class:`~warren.errors.EncodeError` (a number outside its field, a string that is not valid
    UTF-8). The encoders let ``struct`` check every integer field and translate here, on the
    failure path only, so that encoding a valid value costs nothing more."""
    if isinstance(e, struct.error) and "not an integer" in str(e):
        return TypeError(f"a handle, count or number field needs an int: {e}")
    return EncodeError(f"a value the protocol cannot carry: {e}")


def _limit(what: str, n: int, limit: int) -> None:
    if n > limit:
        raise EncodeError(f"{what} is {n}, over the limit of {limit}")


def _name(s: str, what: str) -> bytes:
    if type(s) is not str:
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    b = s.encode("utf-8")
    _limit(what, len(b), MAX_NAME)
    return bytes((len(b),)) + b


def _opt32(v: Optional[int]) -> bytes:
    return b"\x00" if v is None else b"\x01" + _U32.pack(v)


def _opt64(v: Optional[int]) -> bytes:
    return b"\x00" if v is None else b"\x01" + _U64.pack(v)


def _bytes(b: bytes, limit: int, what: str) -> bytes:
    _limit(what, len(b), limit)
    return _U32.pack(len(b)) + b


def _rights(r: int, what: str) -> bytes:
    if r & ~KNOWN_RIGHTS:
        raise EncodeError(f"unknown rights bits {r & ~KNOWN_RIGHTS:#x} in {what}")
    return _U32.pack(r)


def _text(t: str, limit: int, what: str) -> bytes:
    if type(t) is not str:
        raise TypeError(f"{what} must be a str, not {type(t).__name__}")
    b = t.encode("utf-8")
    _limit(what, len(b), limit)
    return _U16.pack(len(b)) + b


def _limits4(memory: Optional[int], pids: Optional[int], cpus: Optional[int], tmpfs: Optional[int]) -> bytes:
    return _opt64(memory) + _opt64(pids) + _opt64(cpus) + _opt64(tmpfs)


def _spawn_fields(r: "Spawn") -> bytes:
    _limit("spawn args", len(r.args), MAX_SPAWN_ARGS)
    _limit("spawn env", len(r.env), MAX_SPAWN_ENV)
    _limit("spawn names", len(r.names), MAX_SPAWN_NAMES)
    parts = [_U32.pack(r.handle), b"\x00" if r.suffix is None else b"\x01" + _name(r.suffix, "spawn suffix")]
    parts.append(_U16.pack(len(r.args)))
    parts += [_text(a, MAX_SPAWN_TEXT, "spawn arg") for a in r.args]
    parts.append(_U16.pack(len(r.env)))
    for k, v in r.env:
        parts += [_name(k, "spawn env name"), _text(v, MAX_SPAWN_TEXT, "spawn env value")]
    parts.append(_limits4(r.memory, r.pids, r.cpus, r.tmpfs_size))
    parts.append(b"\x01" if r.detach else b"\x00")
    parts.append(_U16.pack(len(r.names)))
    for n, h in r.names:
        parts += [_name(n, "spawn name"), _U32.pack(h)]
    return b"".join(parts)


def _frame(op: int, id: int, fields: bytes) -> bytes:
    n = 9 + len(fields)
    _limit("frame", n, MAX_FRAME)
    return _HDR.pack(n - 4, op, id) + fields


def encode_message(
    headers: Sequence[Tuple[str, bytes]],
    correlation: Optional[int],
    body: bytes,
    caps: Sequence[int],
    reply: Optional[int],
) -> bytes:
    """The message block shared by Send and Delivery (section 2)."""
    _limit("headers", len(headers), MAX_HEADERS)
    _limit("caps", len(caps), MAX_CAPS)
    _limit("body", len(body), MAX_BODY)
    parts = [_U16.pack(len(headers))]
    for n, v in headers:
        parts.append(_name(n, "header name"))
        parts.append(_bytes(bytes(v), MAX_HEADER_VALUE, "header value"))
    parts.append(_opt64(correlation))
    parts.append(_U32.pack(len(body)))
    parts.append(body)
    parts.append(_U16.pack(len(caps)))
    parts.extend(_U32.pack(c) for c in caps)
    parts.append(_opt32(reply))
    return b"".join(parts)


_PLAIN_TAIL = b"\x00\x00" + b"\x00"  # no headers, no correlation


def encode_send(
    id: int,
    handle: int,
    wait: bool,
    body: bytes,
    headers: Sequence[Tuple[str, bytes]] = (),
    correlation: Optional[int] = None,
    caps: Sequence[int] = (),
    reply_to: Optional[int] = None,
) -> bytes:
    """One Send frame."""
    try:
        if not headers and correlation is None and not caps and reply_to is None:
            _limit("body", len(body), MAX_BODY)
            n = 9 + 5 + 3 + 4 + len(body) + 3
            return b"".join(
                (
                    _HDR.pack(n - 4, SEND_OP, id),
                    _U32.pack(handle),
                    b"\x01" if wait else b"\x00",
                    _PLAIN_TAIL,
                    _U32.pack(len(body)),
                    body,
                    b"\x00\x00\x00",
                )
            )
        block = encode_message(headers, correlation, body, caps, reply_to)
        return _frame(SEND_OP, id, _U32.pack(handle) + (b"\x01" if wait else b"\x00") + block)
    except (struct.error, UnicodeEncodeError) as e:
        raise _argument_error(e) from None


def encode_recv(
    id: int,
    mailbox: Optional[int] = None,
    correlation: Optional[int] = None,
    header: Optional[Tuple[str, bytes]] = None,
    timeout_ms: Optional[int] = None,
) -> bytes:
    """One Recv frame."""
    try:
        if header is None:
            h = b"\x00"
        else:
            h = b"\x01" + _name(header[0], "filter header name") + _bytes(
                bytes(header[1]), MAX_HEADER_VALUE, "filter header value"
            )
        return _frame(RECV, id, _opt32(mailbox) + _opt64(correlation) + h + _opt64(timeout_ms))
    except (struct.error, UnicodeEncodeError) as e:
        raise _argument_error(e) from None


def encode_bodies(bodies: Sequence[bytes]) -> bytes:
    """A ``bodies`` block (version 2)."""
    _limit("bodies", len(bodies), MAX_BATCH)
    parts = []
    pack = _U32.pack
    for b in bodies:
        if len(b) > MAX_BODY:
            _limit("body", len(b), MAX_BODY)
        parts.append(pack(len(b)))
        parts.append(b)
    block = b"".join(parts)
    return _U32.pack(len(bodies)) + _U32.pack(len(block)) + block


def encode_send_batch(id: int, handle: int, wait: bool, quiet: bool, bodies: Sequence[bytes]) -> bytes:
    """One SendBatch frame."""
    try:
        flags = (b"\x01" if wait else b"\x00") + (b"\x01" if quiet else b"\x00")
        return _frame(SEND_BATCH, id, _U32.pack(handle) + flags + encode_bodies(bodies))
    except (struct.error, UnicodeEncodeError) as e:
        raise _argument_error(e) from None


def encode_recv_batch(id: int, mailbox: Optional[int], max: int, timeout_ms: Optional[int]) -> bytes:
    """One RecvBatch frame."""
    try:
        _limit("batch max", max, MAX_BATCH)
        return _frame(RECV_BATCH, id, _opt32(mailbox) + _U32.pack(max) + _opt64(timeout_ms))
    except (struct.error, UnicodeEncodeError) as e:
        raise _argument_error(e) from None


def encode_request(id: int, r: Any) -> bytes:
    """One request frame for the value ``r`` (a :class:`Hello`, :class:`Send`, ...)."""
    try:
        t = type(r)
        if t is Send:
            return encode_send(id, r.handle, r.wait, r.body, r.headers, r.correlation, r.caps, r.reply_to)
        if t is Recv:
            return encode_recv(id, r.mailbox, r.correlation, r.header, r.timeout_ms)
        if t is Hello:
            return _frame(HELLO, id, _U16.pack(r.min_version) + _U16.pack(r.max_version))
        if t is Lookup:
            return _frame(LOOKUP, id, _name(r.name, "lookup name"))
        if t is Whoami:
            return _frame(WHOAMI, id, b"")
        if t is Attenuate:
            return _frame(
                ATTENUATE,
                id,
                _U32.pack(r.handle) + _rights(r.rights, "attenuate rights") + _opt32(r.uses)
                + _opt64(r.expires_in_ms) + _opt64(r.badge),
            )
        if t is Revoke:
            return _frame(REVOKE, id, _U32.pack(r.handle))
        if t is Drop:
            return _frame(DROP, id, _U32.pack(r.handle))
        if t is Monitor:
            return _frame(MONITOR_OP, id, _U32.pack(r.handle))
        if t is CreateMailbox:
            return _frame(
                CREATE_MAILBOX, id, b"\x00" if r.name is None else b"\x01" + _name(r.name, "mailbox name")
            )
        if t is SendBatch:
            return encode_send_batch(id, r.handle, r.wait, r.quiet, r.bodies)
        if t is RecvBatch:
            return encode_recv_batch(id, r.mailbox, r.max, r.timeout_ms)
        if t is Attest:
            return _frame(
                ATTEST,
                id,
                _bytes(r.nonce, MAX_NONCE, "attest nonce") + _bytes(r.data, MAX_ATTEST_DATA, "attest data"),
            )
        if t is Spawn:
            return _frame(SPAWN_OP, id, _spawn_fields(r))
        if t is Stop:
            return _frame(STOP_OP, id, _U32.pack(r.handle) + (b"\x01" if r.kill else b"\x00"))
        if t is Restrict:
            return _frame(
                RESTRICT, id, _U32.pack(r.handle) + _opt32(r.share) + _limits4(r.memory, r.pids, r.cpus, r.tmpfs_size)
            )
        raise TypeError(f"not a request: {r!r}")
    except (struct.error, UnicodeEncodeError) as e:
        raise _argument_error(e) from None


def encode_response(id: int, r: Any) -> bytes:
    """One response frame for the value ``r`` (a :class:`Welcome`, :class:`Delivery`, ...)."""
    try:
        t = type(r)
        if t is Welcome:
            return _frame(WELCOME, id, _U16.pack(r.version) + _name(r.env, "welcome env"))
        if t is Ok:
            return _frame(OK, id, b"")
        if t is HandleAnswer:
            return _frame(HANDLE, id, _U32.pack(r.handle) + _rights(r.rights, "handle rights"))
        if t is MonitorAnswer:
            return _frame(MONITOR_REF, id, _U64.pack(r.reference))
        if t is Delivery:
            return _frame(
                DELIVERY,
                id,
                _U32.pack(r.mailbox) + _name(r.sender, "sender env") + _U64.pack(r.badge)
                + encode_message(r.headers, r.correlation, r.body, r.caps, r.reply) + _opt64(r.down),
            )
        if t is Identity:
            _limit("identity handles", len(r.entries), MAX_IDENTITY_HANDLES)
            parts = [_name(r.env, "identity env"), _U16.pack(len(r.entries))]
            for h, d, rights in r.entries:
                parts += [_U32.pack(h), _name(d, "identity designation"), _rights(rights, "identity rights")]
            return _frame(IDENTITY, id, b"".join(parts))
        if t is Error:
            if r.code not in BY_CODE:
                raise EncodeError(f"unknown error code {r.code}")
            d = r.detail.encode("utf-8")
            _limit("error detail", len(d), MAX_DETAIL)
            return _frame(ERROR, id, _U16.pack(r.code) + _U16.pack(len(d)) + d)
        if t is Deliveries:
            _limit("runs", len(r.runs), MAX_BATCH)
            parts = [_U32.pack(r.mailbox), _U16.pack(len(r.runs))]
            for run in r.runs:
                parts += [_name(run.sender, "sender env"), _U64.pack(run.badge), encode_bodies(run.bodies)]
            return _frame(DELIVERIES, id, b"".join(parts))
        if t is Accepted:
            return _frame(ACCEPTED, id, _U32.pack(r.count))
        if t is Quote:
            return _frame(QUOTE, id, _bytes(r.quote, MAX_BODY, "quote"))
        if t is Spawned:
            return _frame(
                SPAWNED,
                id,
                _name(r.child, "spawned child") + _U32.pack(r.mailbox) + _U32.pack(r.control) + _U64.pack(r.reference),
            )
        raise TypeError(f"not a response: {r!r}")
    except (struct.error, UnicodeEncodeError) as e:
        raise _argument_error(e) from None


# ------------------------------------------------------------------------------------------
# Decoding


class _Reader:
    """Reads the fields of one frame: ``buf[pos:end]``; offsets count from the packet's start."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def need(self, n: int, what: str) -> int:
        p = self.pos
        if self.end - p < n:
            raise ProtocolError(f"truncated {what}: needs {n} bytes, {self.end - p} left", p)
        self.pos = p + n
        return p

    def u8(self, what: str) -> int:
        return self.buf[self.need(1, what)]

    def u16(self, what: str) -> int:
        return _U16.unpack_from(self.buf, self.need(2, what))[0]

    def u32(self, what: str) -> int:
        return _U32.unpack_from(self.buf, self.need(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack_from(self.buf, self.need(8, what))[0]

    def flag(self, what: str) -> bool:
        p = self.pos
        t = self.u8(what)
        if t > 1:
            raise ProtocolError(f"invalid {what} tag {t}: expected 0 or 1", p)
        return t == 1

    def opt32(self, what: str) -> Optional[int]:
        return self.u32(what) if self.flag(what) else None

    def opt64(self, what: str) -> Optional[int]:
        return self.u64(what) if self.flag(what) else None

    def utf8(self, n: int, what: str) -> str:
        p = self.need(n, what)
        try:
            return self.buf[p : p + n].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"invalid utf-8 in {what}", p + e.start) from None

    def name(self, what: str) -> str:
        return self.utf8(self.u8(what), what)

    def text(self, limit: int, what: str) -> str:
        p = self.pos
        n = self.u16(what)
        if n > limit:
            raise ProtocolError(f"{what}: {n} exceeds the limit of {limit}", p)
        return self.utf8(n, what)

    def bytes_(self, limit: int, what: str) -> bytes:
        p = self.pos
        n = self.u32(what)
        if n > limit:
            raise ProtocolError(f"{what}: {n} exceeds the limit of {limit}", p)
        q = self.need(n, what)
        return self.buf[q : q + n]

    def count(self, limit: int, min_size: int, what: str) -> int:
        p = self.pos
        n = self.u16(what)
        if n > limit:
            raise ProtocolError(f"{what}: {n} exceeds the limit of {limit}", p)
        if n * min_size > self.end - self.pos:
            raise ProtocolError(f"truncated {what}", self.pos)
        return n

    def rights(self, what: str) -> int:
        p = self.pos
        r = self.u32(what)
        if r & ~KNOWN_RIGHTS:
            raise ProtocolError(f"unknown rights bits {r & ~KNOWN_RIGHTS:#x} in {what}", p)
        return r

    def bodies(self) -> List[bytes]:
        p = self.pos
        count = self.u32("bodies count")
        if count > MAX_BATCH:
            raise ProtocolError(f"bodies count: {count} exceeds the limit of {MAX_BATCH}", p)
        size = self.u32("bodies size")
        start = self.need(size, "bodies")
        end = start + size
        buf = self.buf
        if count and size >= 4:
            # The common case, bodies of one length L: the prefixes sit every 4 + L bytes, and
            # four strided slices check them all at C speed.
            n = _U32.unpack_from(buf, start)[0]
            stride = 4 + n
            if n <= MAX_BODY and stride * count == size:
                pre = buf[start : start + 4]
                if all(buf[start + j : end : stride] == pre[j : j + 1] * count for j in range(4)):
                    return [buf[q : q + n] for q in range(start + 4, start + 4 + count * stride, stride)]
        unpack = _U32.unpack_from
        out: List[bytes] = []
        append = out.append
        pos = start
        for _ in range(count):
            if end - pos < 4:
                raise ProtocolError("truncated body", pos)
            n = unpack(buf, pos)[0]
            if n > MAX_BODY:
                raise ProtocolError(f"body: {n} exceeds the limit of {MAX_BODY}", pos)
            pos += 4
            if end - pos < n:
                raise ProtocolError("truncated body", pos)
            append(buf[pos : pos + n])
            pos += n
        if pos != end:
            raise ProtocolError(f"{end - pos} trailing bytes", pos)
        return out

    def message(self) -> Tuple[Headers, Optional[int], bytes, List[int], Optional[int]]:
        n = self.count(MAX_HEADERS, 5, "headers")
        headers = [(self.name("header name"), self.bytes_(MAX_HEADER_VALUE, "header value")) for _ in range(n)]
        correlation = self.opt64("correlation")
        body = self.bytes_(MAX_BODY, "body")
        n = self.count(MAX_CAPS, 4, "caps")
        caps = [self.u32("cap") for _ in range(n)]
        reply = self.opt32("reply handle")
        return headers, correlation, body, caps, reply


def _request_body(op: int, r: _Reader) -> Any:
    if op == SEND_OP:
        handle = r.u32("handle")
        wait = r.flag("wait")
        headers, correlation, body, caps, reply = r.message()
        return Send(handle, wait, headers, correlation, body, caps, reply)
    if op == RECV:
        mailbox = r.opt32("mailbox")
        correlation = r.opt64("filter correlation")
        header = None
        if r.flag("filter header"):
            header = (r.name("filter header name"), r.bytes_(MAX_HEADER_VALUE, "filter header value"))
        return Recv(mailbox, correlation, header, r.opt64("timeout_ms"))
    if op == HELLO:
        return Hello(r.u16("min_version"), r.u16("max_version"))
    if op == LOOKUP:
        return Lookup(r.name("lookup name"))
    if op == WHOAMI:
        return Whoami()
    if op == ATTENUATE:
        return Attenuate(r.u32("handle"), r.rights("attenuate rights"), r.opt32("uses"), r.opt64("expires_in_ms"), r.opt64("badge"))
    if op == REVOKE:
        return Revoke(r.u32("handle"))
    if op == DROP:
        return Drop(r.u32("handle"))
    if op == MONITOR_OP:
        return Monitor(r.u32("handle"))
    if op == CREATE_MAILBOX:
        return CreateMailbox(r.name("mailbox name") if r.flag("mailbox name") else None)
    if op == SEND_BATCH:
        return SendBatch(r.u32("handle"), r.flag("wait"), r.flag("quiet"), r.bodies())
    if op == RECV_BATCH:
        mailbox = r.opt32("mailbox")
        p = r.pos
        mx = r.u32("batch max")
        if mx > MAX_BATCH:
            raise ProtocolError(f"batch max: {mx} exceeds the limit of {MAX_BATCH}", p)
        return RecvBatch(mailbox, mx, r.opt64("timeout_ms"))
    if op == ATTEST:
        return Attest(r.bytes_(MAX_NONCE, "attest nonce"), r.bytes_(MAX_ATTEST_DATA, "attest data"))
    if op == SPAWN_OP:
        handle = r.u32("handle")
        suffix = r.name("spawn suffix") if r.flag("spawn suffix") else None
        n = r.count(MAX_SPAWN_ARGS, 2, "spawn args")
        args = [r.text(MAX_SPAWN_TEXT, "spawn arg") for _ in range(n)]
        n = r.count(MAX_SPAWN_ENV, 3, "spawn env")
        env = [(r.name("spawn env name"), r.text(MAX_SPAWN_TEXT, "spawn env value")) for _ in range(n)]
        memory, pids, cpus, tmpfs = (r.opt64(w) for w in ("memory", "pids", "cpus", "tmpfs_size"))
        detach = r.flag("detach")
        n = r.count(MAX_SPAWN_NAMES, 5, "spawn names")
        names = [(r.name("spawn name"), r.u32("spawn name handle")) for _ in range(n)]
        return Spawn(handle, suffix, args, env, memory, pids, cpus, tmpfs, detach, names)
    if op == STOP_OP:
        return Stop(r.u32("handle"), r.flag("kill"))
    if op == RESTRICT:
        handle = r.u32("handle")
        share = r.opt32("share")
        memory, pids, cpus, tmpfs = (r.opt64(w) for w in ("memory", "pids", "cpus", "tmpfs_size"))
        return Restrict(handle, share, memory, pids, cpus, tmpfs)
    return None


_OK = Ok()


def _response_body(op: int, r: _Reader) -> Any:
    if op == OK:
        return _OK
    if op == DELIVERY:
        mailbox = r.u32("mailbox")
        env = r.name("sender env")
        badge = r.u64("sender badge")
        headers, correlation, body, caps, reply = r.message()
        return Delivery(mailbox, env, badge, headers, correlation, body, caps, reply, r.opt64("down"))
    if op == DELIVERIES:
        mailbox = r.u32("mailbox")
        n = r.count(MAX_BATCH, 17, "runs")
        runs = []
        for _ in range(n):
            env = r.name("sender env")
            badge = r.u64("sender badge")
            runs.append(Run(env, badge, r.bodies()))
        return Deliveries(mailbox, runs)
    if op == ERROR:
        p = r.pos
        code = r.u16("error code")
        if code not in BY_CODE:
            raise ProtocolError(f"unknown error code {code}", p)
        return Error(code, r.text(MAX_DETAIL, "error detail"))
    if op == WELCOME:
        return Welcome(r.u16("version"), r.name("welcome env"))
    if op == HANDLE:
        return HandleAnswer(r.u32("handle"), r.rights("handle rights"))
    if op == MONITOR_REF:
        return MonitorAnswer(r.u64("reference"))
    if op == IDENTITY:
        env = r.name("identity env")
        n = r.count(MAX_IDENTITY_HANDLES, 9, "identity handles")
        entries = [(r.u32("identity handle"), r.name("identity designation"), r.rights("identity rights")) for _ in range(n)]
        return Identity(env, entries)
    if op == ACCEPTED:
        return Accepted(r.u32("accepted count"))
    if op == QUOTE:
        return Quote(r.bytes_(MAX_BODY, "quote"))
    if op == SPAWNED:
        return Spawned(r.name("spawned child"), r.u32("spawned mailbox"), r.u32("spawned control"), r.u64("spawned reference"))
    return None


def _decode(packet: bytes, body: Callable[[int, _Reader], Any], direction: str) -> List[Tuple[int, Any]]:
    n = len(packet)
    if n == 0:
        raise ProtocolError("empty packet: a packet carries at least one frame", 0)
    if n > MAX_PACKET:
        raise ProtocolError(f"packet: {n} exceeds the limit of {MAX_PACKET}", 0)
    out = []
    pos = 0
    r = _Reader(packet, 0, 0)
    while pos < n:
        if n - pos < 4:
            raise ProtocolError(f"truncated frame length: needs 4 bytes, {n - pos} left", pos)
        length = _U32.unpack_from(packet, pos)[0]
        if length < 5:
            raise ProtocolError(f"frame has length {length}, below the minimum of 5", pos)
        if length > MAX_FRAME - 4:
            raise ProtocolError(f"frame length: {length} exceeds the limit of {MAX_FRAME - 4}", pos)
        end = pos + 4 + length
        if end > n:
            raise ProtocolError(f"truncated frame: needs {length} bytes, {n - pos - 4} left", pos + 4)
        op = packet[pos + 4]
        id = _U32.unpack_from(packet, pos + 5)[0]
        r.pos = pos + 9
        r.end = end
        value = body(op, r)
        if value is None:
            raise ProtocolError(f"unknown {direction} op {op:#04x}", pos + 4)
        if r.pos != end:
            raise ProtocolError(f"{end - r.pos} trailing bytes in the frame", r.pos)
        out.append((id, value))
        pos = end
    return out


def decode_requests(packet: bytes) -> List[Tuple[int, Any]]:
    """The frames of a client-to-kernel packet, as (id, request) pairs."""
    return _decode(bytes(packet), _request_body, "request")


def decode_responses(packet: bytes) -> List[Tuple[int, Any]]:
    """The frames of a kernel-to-client packet, as (id, response) pairs."""
    return _decode(bytes(packet), _response_body, "response")
