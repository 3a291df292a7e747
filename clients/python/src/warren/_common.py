"""What the blocking and the asyncio clients share: handles, batches, argument conversion and
the reading of answers. Not public: import from ``warren``."""

import os
import socket
import stat
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import protocol as p
from .errors import EncodeError, KernelError, NoConnection, UnsupportedError, WarrenError, kernel_error

if TYPE_CHECKING:  # pragma: no cover
    from typing import Protocol

    class _Dropper(Protocol):
        def drop(self, handle: int) -> Any: ...


#: How long past a receive's own timeout a client waits for the kernel's answer before it
#: concludes the answer was lost (a restarted kernel loses parked requests), in seconds.
RESTART_GRACE = 2.0
#: The largest packet the batch send fills, as the Rust client.
BATCH_PACKET = 64 * 1024
#: Batch frames in flight when a batch send waits for room.
SEND_WINDOW = 8

HeaderArg = Union[Mapping[str, Union[bytes, str]], Sequence[Tuple[str, Union[bytes, str]]], None]


class Handle(int):
    """A handle (an index in this environment's capability table) with the rights the kernel
    reported. It is an ``int`` and goes wherever a handle does; as a context manager it drops
    itself on exit (``with k.lookup("db") as db: ...``; ``async with`` for the asyncio client).
    """

    rights: int

    def __new__(cls, value: int, rights: int = 0, client: Any = None) -> "Handle":
        h = super().__new__(cls, value)
        h.rights = rights
        h._client = client
        return h

    def __repr__(self) -> str:
        return f"Handle({int(self)}, rights={self.rights:#x})"

    def __enter__(self) -> "Handle":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._client is not None:
            self._client.drop(self)

    async def __aenter__(self) -> "Handle":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.drop(self)


class Batch:
    """What one batch receive took: plain messages in runs by sender and badge (oldest first),
    or, when the oldest message was not plain, that one message alone in ``delivery``.
    Iterating gives the bodies, oldest first."""

    __slots__ = ("mailbox", "runs", "delivery")

    def __init__(self, mailbox: int, runs: List[p.Run], delivery: Optional[p.Delivery] = None) -> None:
        self.mailbox = mailbox
        self.runs = runs
        self.delivery = delivery

    def __len__(self) -> int:
        if self.delivery is not None:
            return 1
        return sum(len(r.bodies) for r in self.runs)

    def __iter__(self) -> Iterator[bytes]:
        if self.delivery is not None:
            yield self.delivery.body
            return
        for r in self.runs:
            yield from r.bodies

    def messages(self) -> Iterator[Tuple[str, int, bytes]]:
        """(sender, badge, body) for every message, oldest first."""
        if self.delivery is not None:
            d = self.delivery
            yield d.sender, d.badge, d.body
            return
        for r in self.runs:
            for b in r.bodies:
                yield r.sender, r.badge, b

    def __repr__(self) -> str:
        return f"Batch(mailbox={self.mailbox}, messages={len(self)})"


def inherited_fd(fd: Optional[int]) -> int:
    """The kernel connection's descriptor: ``fd``, else ``WARREN_FD``, else 3; checked to be a
    socket."""
    if fd is None:
        v = os.environ.get("WARREN_FD")
        if v is None:
            fd = 3
        else:
            try:
                fd = int(v.strip())
            except ValueError:
                raise NoConnection(f"WARREN_FD={v!r} is not a descriptor number") from None
    try:
        st = os.fstat(fd)
    except OSError as e:
        raise NoConnection(f"descriptor {fd}: {e.strerror} (not inside a Warren environment?)") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise NoConnection(f"descriptor {fd} is not a socket")
    return fd


def open_socket(fd: int, blocking: bool) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fileno=fd)
    s.setblocking(blocking)
    return s


# Argument conversion. The convention (docs/python.md, "Errors"): an argument of a type the
# parameter does not take raises TypeError; a value of the right type that the protocol cannot
# carry (a negative timeout, a number outside its field, a string that is not valid UTF-8,
# anything over a limit) raises EncodeError, a WarrenError and a ValueError. Both happen before
# anything is sent. The protocol encoders check the fields they write the same way.


def pair_arg(item: Any, what: str) -> Tuple[Any, Any]:
    try:
        n, v = item
    except (TypeError, ValueError):
        raise TypeError(f"{what} is a (name, value) pair, not {item!r}") from None
    return n, v


def pairs_arg(pairs: Any, what: str) -> List[Tuple[Any, Any]]:
    """A mapping or a sequence of (name, value) pairs, as a list of pairs."""
    if not pairs:
        return []
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return [pair_arg(item, what) for item in items]


def headers_arg(headers: HeaderArg) -> List[Tuple[str, bytes]]:
    return [(n, body_arg(v)) for n, v in pairs_arg(headers, "a header")]


def body_arg(body: Union[bytes, bytearray, memoryview, str]) -> bytes:
    """Bytes from a bytes-like object or a str (UTF-8)."""
    if type(body) is bytes:
        return body
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError as e:
            raise EncodeError(f"a str that is not valid UTF-8: {e}") from None
    if isinstance(body, int):  # bytes(5) would be five zero bytes
        raise TypeError("a body or header value is bytes or str, not int")
    return bytes(body)


def ms(seconds: Optional[float], what: str = "timeout") -> Optional[int]:
    """Seconds (None: no limit) as whole milliseconds."""
    if seconds is None:
        return None
    if not seconds >= 0:  # negative, or NaN
        raise EncodeError(f"{what} must be a number of seconds, 0 or more, not {seconds!r}")
    try:
        return int(round(seconds * 1000))
    except OverflowError:
        raise EncodeError(f"{what} of {seconds!r} seconds is out of range") from None


def header_filter(header: Optional[Tuple[str, Union[bytes, str]]]) -> Optional[Tuple[str, bytes]]:
    if header is None:
        return None
    n, v = pair_arg(header, "a header filter")
    return n, body_arg(v)


def caps_arg(caps: Iterable[int]) -> List[int]:
    return list(caps)


def check(v: Any) -> Any:
    """The answer, or the kernel's refusal raised."""
    if type(v) is p.Error:
        raise kernel_error(v.code, v.detail)
    return v


def unexpected(v: Any) -> WarrenError:
    return WarrenError(f"unexpected answer from the kernel: {v!r}")


def as_ok(v: Any) -> None:
    if type(check(v)) is not p.Ok:
        raise unexpected(v)


def as_handle(v: Any, client: Any) -> Handle:
    v = check(v)
    if type(v) is not p.HandleAnswer:
        raise unexpected(v)
    return Handle(v.handle, v.rights, client)


def as_delivery(v: Any) -> p.Delivery:
    v = check(v)
    if type(v) is not p.Delivery:
        raise unexpected(v)
    return v


def as_batch(v: Any) -> Batch:
    v = check(v)
    if type(v) is p.Deliveries:
        return Batch(v.mailbox, v.runs)
    if type(v) is p.Delivery:
        return Batch(v.mailbox, [], v)
    raise unexpected(v)


def as_identity(v: Any) -> p.Identity:
    v = check(v)
    if type(v) is not p.Identity:
        raise unexpected(v)
    return v


def as_monitor(v: Any) -> int:
    v = check(v)
    if type(v) is not p.MonitorAnswer:
        raise unexpected(v)
    return v.reference


def as_quote(v: Any) -> bytes:
    v = check(v)
    if type(v) is not p.Quote:
        raise unexpected(v)
    return v.quote


def as_accepted(v: Any) -> int:
    v = check(v)
    if type(v) is not p.Accepted:
        raise unexpected(v)
    return v.count


def need_version(version: int, needed: int, what: str) -> None:
    """:class:`UnsupportedError` unless the agreed ``version`` has the operation ``what``."""
    if version < needed:
        raise UnsupportedError(f"{what} needs protocol version {needed}; the kernel agreed {version}")


def need_batches(version: int) -> None:
    need_version(version, 2, "a batch frame")


def as_spawned(v: Any) -> p.Spawned:
    v = check(v)
    if type(v) is not p.Spawned:
        raise unexpected(v)
    return v


def spawn_request(
    template: int,
    suffix: Optional[str],
    args: Iterable[str],
    env: Any,
    memory: Optional[int],
    pids: Optional[int],
    cpus: Optional[int],
    tmpfs_size: Optional[int],
    detach: bool,
    names: Any,
) -> p.Spawn:
    """The Spawn request of :meth:`Client.spawn` (``env`` and ``names``: a mapping or pairs)."""
    return p.Spawn(
        template, suffix, list(args), pairs_arg(env, "an env entry"), memory, pids, cpus, tmpfs_size,
        bool(detach), pairs_arg(names, "a name"),
    )


def send_recv_frames(
    version: int, send_id: int, recv_id: int, handle: int, body: bytes, timeout_ms: Optional[int], message: Dict[str, Any]
) -> Tuple[bytes, bool]:
    """The packet of :meth:`Client.send_recv`: a Send (or, on version 2 and later, a plain
    message as a quiet one-body batch, answered only if refused) and a Recv of the default
    mailbox; and whether the send is quiet."""
    unknown = set(message) - {"headers", "correlation", "caps", "reply_to"}
    if unknown:
        raise TypeError(f"send_recv got unexpected keyword arguments {sorted(unknown)}")
    plain = (
        not message.get("headers") and not message.get("caps")
        and message.get("correlation") is None and message.get("reply_to") is None
    )
    quiet = plain and version >= 2
    if quiet:
        first = p.encode_send_batch(send_id, handle, True, True, [body])
    else:
        first = p.encode_send(
            send_id, handle, True, body, headers_arg(message.get("headers")), message.get("correlation"),
            caps_arg(message.get("caps", ())), message.get("reply_to"),
        )
    return first + p.encode_recv(recv_id, None, None, None, timeout_ms), quiet


def send_recv_result(sent: Any, got: Any) -> Tuple[Optional[KernelError], p.Delivery]:
    """The send's refusal (None if it was accepted, or quiet and unanswered) and the delivery."""
    err: Optional[KernelError] = None
    if type(sent) is p.Error:
        err = kernel_error(sent.code, sent.detail)
    return err, as_delivery(got)


def chunks(bodies: Sequence[bytes]) -> List[List[bytes]]:
    """Bodies grouped into batch frames of at most ``BATCH_PACKET`` bytes (one body at least)."""
    out: List[List[bytes]] = []
    cur: List[bytes] = []
    size = 0
    for b in bodies:
        if len(b) > p.MAX_BODY:
            raise EncodeError(f"body is {len(b)}, over the limit of {p.MAX_BODY}")
        if cur and (size + 4 + len(b) > BATCH_PACKET - 64 or len(cur) == p.MAX_BATCH):
            out.append(cur)
            cur, size = [], 0
        cur.append(b)
        size += 4 + len(b)
    if cur:
        out.append(cur)
    return out


def rights_arg(rights: int) -> int:
    if rights & ~p.KNOWN_RIGHTS:
        raise EncodeError(f"unknown rights bits {rights & ~p.KNOWN_RIGHTS:#x}")
    return rights


Answers = Dict[int, Any]


def take_matching(
    kept: List[p.Delivery], mailbox: Optional[int], correlation: Optional[int], header: Optional[Tuple[str, bytes]]
) -> Optional[p.Delivery]:
    """Remove and return the oldest of ``kept`` (late answers to receives given up on) that a
    receive with these filters accepts."""
    want = p.DEFAULT_MAILBOX if mailbox is None else mailbox
    for k, d in enumerate(kept):
        if d.mailbox != want or (correlation is not None and d.correlation != correlation):
            continue
        if header is not None and header not in [(n, bytes(v)) for n, v in d.headers]:
            continue
        return kept.pop(k)
    return None
