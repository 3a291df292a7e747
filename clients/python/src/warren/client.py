"""The blocking client: one :class:`Client` owns the environment's kernel connection.

Each call sends one packet (a request frame, or several when the call is a pipeline) and
waits for its answer; answers to other requests met on the way are kept for their callers.
Timeouts are in seconds (``None``: wait forever, ``0``: do not wait). Not thread-safe: use one
client from one thread at a time.
"""

import os
import socket
import time
from typing import Any, Iterable, List, Optional, Tuple, Union

from . import _common as c
from . import protocol as p
from ._common import Batch, Handle, HeaderArg
from .errors import ConnectionClosed, KernelError, ProtocolError, Timeout, WarrenError

Body = Union[bytes, bytearray, memoryview, str]


class Client:
    """A connection to the kernel, through the inherited descriptor (``WARREN_FD``, else 3) or
    ``fd``. The handshake happens here; :attr:`env` is this environment's name and
    :attr:`version` the protocol version agreed."""

    def __init__(self, fd: Optional[int] = None) -> None:
        self._sock = c.open_socket(c.inherited_fd(fd), True)
        self._buf = bytearray(p.MAX_PACKET)
        self._view = memoryview(self._buf)
        self._next = 1
        self._early: c.Answers = {}
        # Receives given up on client-side (the kernel was slower than timeout + grace): their
        # late answers are messages taken from a mailbox, kept here for the next receive.
        self._abandoned: set = set()
        self._unclaimed: List[p.Delivery] = []
        self._closed = False
        self.env = ""
        self.version = p.MIN_VERSION
        try:
            w = c.check(self._request(p.encode_request(self._id(), p.Hello(p.MIN_VERSION, p.VERSION)), self._next - 1))
        except BaseException:
            self.close()
            raise
        if type(w) is not p.Welcome:
            self.close()
            raise c.unexpected(w)
        self.env = w.env
        self.version = w.version

    # -- plumbing ------------------------------------------------------------------------

    def fileno(self) -> int:
        """The connection's descriptor (do not read or write it yourself)."""
        return self._sock.fileno()

    def close(self) -> None:
        """Close the connection (there is no reconnecting)."""
        if not self._closed:
            self._closed = True
            self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _id(self) -> int:
        i = self._next
        self._next = (i + 1) & 0xFFFFFFFF or 1
        return i

    def _send(self, data: bytes) -> None:
        """Write one packet; a closed client or a failed socket is :class:`ConnectionClosed`."""
        if self._closed:
            raise ConnectionClosed("the client was closed")
        try:
            self._sock.send(data)
        except OSError as e:
            raise ConnectionClosed(f"kernel connection: {e}") from None

    def _read(self, deadline: Optional[float]) -> None:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("no answer from the kernel in time (was it restarted?)")
            self._sock.settimeout(left)
        try:
            n = self._sock.recv_into(self._buf, 0, socket.MSG_TRUNC)
        except socket.timeout:
            raise Timeout("no answer from the kernel in time (was it restarted?)") from None
        except OSError as e:
            raise ConnectionClosed(f"kernel connection: {e}") from None
        finally:
            if deadline is not None:
                self._sock.settimeout(None)
        if n == 0:
            raise ConnectionClosed("the kernel closed the connection")
        if n > p.MAX_PACKET:
            raise ProtocolError(f"a packet of {n} bytes from the kernel", 0)
        for i, v in p.decode_responses(self._view[:n]):
            self._early[i] = v

    def _wait(self, id: int, deadline: Optional[float] = None) -> Any:
        early = self._early
        while id not in early:
            self._read(deadline)
        return early.pop(id)

    def _request(self, frame: bytes, id: int, timeout_ms: Optional[int] = None) -> Any:
        self._send(frame)
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000 + c.RESTART_GRACE
        return self._wait(id, deadline)

    # -- messages ------------------------------------------------------------------------

    def send(
        self,
        handle: int,
        body: Body = b"",
        *,
        headers: HeaderArg = None,
        correlation: Optional[int] = None,
        caps: Iterable[int] = (),
        reply_to: Optional[int] = None,
        wait: bool = True,
    ) -> None:
        """Send a message through ``handle`` (needs SEND). ``wait``: when the mailbox is full,
        wait for room; else raise :class:`~warren.errors.Full`."""
        i = self._id()
        f = p.encode_send(i, handle, wait, c.body_arg(body), c.headers_arg(headers), correlation, c.caps_arg(caps), reply_to)
        c.as_ok(self._request(f, i))

    def try_send(self, handle: int, body: Body = b"", **kw: Any) -> None:
        """:meth:`send` without waiting for room."""
        self.send(handle, body, wait=False, **kw)

    def recv(
        self,
        timeout: Optional[float] = None,
        *,
        mailbox: Optional[int] = None,
        correlation: Optional[int] = None,
        header: Optional[Tuple[str, Union[bytes, str]]] = None,
    ) -> p.Delivery:
        """Take the oldest message of ``mailbox`` (None: the default one) that matches the
        filters (``correlation=``, ``header=(name, value)``; others stay queued in order),
        waiting up to ``timeout`` seconds; :class:`~warren.errors.Timeout` if none came."""
        hf = c.header_filter(header)
        t = c.ms(timeout)
        if self._closed:
            raise ConnectionClosed("the client was closed")
        kept = self._take_unclaimed(mailbox, correlation, hf)
        if kept is not None:
            return kept
        i = self._id()
        f = p.encode_recv(i, mailbox, correlation, hf, t)
        try:
            got = self._request(f, i, t)
        except Timeout:
            # The kernel may still answer with a message: keep it for a later receive.
            self._abandoned.add(i)
            raise
        # A late message met while waiting is older than this answer: it goes first.
        kept = self._take_unclaimed(mailbox, correlation, hf)
        if kept is not None:
            if type(got) is p.Delivery:
                self._unclaimed.insert(0, got)
            return kept
        return c.as_delivery(got)

    def _take_unclaimed(
        self, mailbox: Optional[int], correlation: Optional[int], header: Optional[Tuple[str, bytes]]
    ) -> Optional[p.Delivery]:
        """The oldest kept late message that this receive's filters accept."""
        for i in [i for i in self._early if i in self._abandoned]:
            self._abandoned.discard(i)
            v = self._early.pop(i)
            if type(v) is p.Delivery:
                self._unclaimed.append(v)
        return c.take_matching(self._unclaimed, mailbox, correlation, header)

    def send_recv(
        self, handle: int, body: Body = b"", *, timeout: Optional[float] = None, **message: Any
    ) -> Tuple[Optional[KernelError], p.Delivery]:
        """Send a message through ``handle`` (waiting for room) and take the next message of the
        default mailbox, both requests in one packet: a server's answer-and-wait step. Returns
        the send's refusal (or None) and the message; a failed receive raises. On protocol
        version 2 a plain message goes as a quiet one-body batch (answered only if refused),
        as the Rust client's ``send_and_recv``."""
        s = self._id()
        r = self._id()
        t = c.ms(timeout)
        packet, quiet = c.send_recv_frames(self.version, s, r, handle, c.body_arg(body), t, message)
        self._send(packet)
        deadline = None if t is None else time.monotonic() + t / 1000 + c.RESTART_GRACE
        got = self._wait(r, deadline)
        # A quiet send is answered only if refused, and then before the receive.
        sent = self._early.pop(s, None) if quiet else self._wait(s)
        return c.send_recv_result(sent, got)

    def call(
        self,
        handle: int,
        body: Body = b"",
        *,
        headers: HeaderArg = None,
        caps: Iterable[int] = (),
        timeout: Optional[float] = None,
    ) -> p.Delivery:
        """Request and reply (the convention of ``warren-msg call``): send with a fresh
        correlation id, ``(pid << 32) | request id``, and a one-shot reply capability to the
        default mailbox, then wait up to ``timeout`` for the message carrying that id."""
        c.ms(timeout)  # a bad timeout is refused before the request goes out
        i = self._id()
        corr = (os.getpid() << 32) | i
        f = p.encode_send(i, handle, True, c.body_arg(body), c.headers_arg(headers), corr, c.caps_arg(caps), p.DEFAULT_MAILBOX)
        c.as_ok(self._request(f, i))
        return self.recv(timeout, correlation=corr)

    def reply(self, request: p.Delivery, body: Body = b"", *, headers: HeaderArg = None, caps: Iterable[int] = ()) -> None:
        """Answer ``request`` (received with a reply handle): one send through its reply handle
        with its correlation id. The kernel removes the spent handle by itself; if the send is
        refused, the handle is dropped here and the refusal raised."""
        if request.reply is None:
            raise WarrenError("the request carries no reply handle")
        s = self._id()
        f = p.encode_send(s, request.reply, True, c.body_arg(body), c.headers_arg(headers), request.correlation, c.caps_arg(caps), None)
        try:
            c.as_ok(self._request(f, s))
        except KernelError:
            try:
                self.drop(request.reply)
            except KernelError:
                pass
            raise

    def send_many(self, handle: int, bodies: Iterable[Body], wait: bool = True) -> int:
        """Send plain messages (bodies only) in batch frames (version 2), one capability check
        per frame. With ``wait`` every body is accepted (frames pipelined, at most 8 awaiting
        their answer); without, sending stops at the first frame not accepted whole. Returns
        how many were accepted: a prefix, in order."""
        c.need_batches(self.version)
        total = 0
        inflight: List[Tuple[int, int]] = []
        for chunk in c.chunks([c.body_arg(b) for b in bodies]):
            i = self._id()
            self._send(p.encode_send_batch(i, handle, wait, False, chunk))
            if wait:
                inflight.append((i, len(chunk)))
                if len(inflight) >= c.SEND_WINDOW:
                    j, n = inflight.pop(0)
                    total += min(c.as_accepted(self._wait(j)), n)
                continue
            got = c.as_accepted(self._wait(i))
            total += got
            if got < len(chunk):
                return total
        for j, n in inflight:
            total += min(c.as_accepted(self._wait(j)), n)
        return total

    def recv_many(self, max: int = p.MAX_BATCH, timeout: Optional[float] = None, *, mailbox: Optional[int] = None) -> Batch:
        """Take up to ``max`` messages in one request (version 2), waiting up to ``timeout`` for
        the first: plain messages as one :class:`Batch`; a message that is not plain comes
        alone (``batch.delivery``)."""
        c.need_batches(self.version)
        i = self._id()
        t = c.ms(timeout)
        f = p.encode_recv_batch(i, mailbox, min(builtins_max(max, 1), p.MAX_BATCH), t)
        return c.as_batch(self._request(f, i, t))

    # -- capabilities --------------------------------------------------------------------

    def lookup(self, name: str) -> Handle:
        """A handle for the mailbox ``name`` (``env``, ``env/mailbox``, ``env@host``), where
        policy lets this environment discover it; :class:`~warren.errors.NotFound` otherwise."""
        i = self._id()
        return c.as_handle(self._request(p.encode_request(i, p.Lookup(name)), i), self)

    def whoami(self) -> p.Identity:
        """This environment's name and every handle in its table."""
        i = self._id()
        return c.as_identity(self._request(p.encode_request(i, p.Whoami()), i))

    def spawn(
        self,
        template: int,
        *,
        suffix: Optional[str] = None,
        args: Iterable[str] = (),
        env: Optional[dict] = None,
        memory: Optional[int] = None,
        pids: Optional[int] = None,
        cpus: Optional[int] = None,
        tmpfs_size: Optional[int] = None,
        detach: bool = False,
        names: Optional[dict] = None,
    ) -> p.Spawned:
        """A child environment from the template ``template`` designates (needs SPAWN;
        protocol version 3, docs/protocol.md section 16): ``names`` maps the child's initial
        names to handles of this table; limits are bytes, processes and millionths of a cpu.
        Returns the child's name, a SEND|MONITOR handle on its mailbox, a STOP handle on it and
        the reference its ``down`` notice will carry."""
        c.need_version(self.version, 3, "spawn")
        i = self._id()
        req = c.spawn_request(template, suffix, args, env, memory, pids, cpus, tmpfs_size, detach, names)
        return c.as_spawned(self._request(p.encode_request(i, req), i))

    def stop(self, handle: int, kill: bool = False) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) or, with ``kill``, kill at once
        the environment a STOP handle designates; its end comes as the ``down`` notice."""
        c.need_version(self.version, 3, "stop")
        i = self._id()
        c.as_ok(self._request(p.encode_request(i, p.Stop(handle, kill)), i))

    def restrict(
        self,
        template: int,
        *,
        share: Optional[int] = None,
        memory: Optional[int] = None,
        pids: Optional[int] = None,
        cpus: Optional[int] = None,
        tmpfs_size: Optional[int] = None,
    ) -> Handle:
        """A weaker SPAWN handle derived from ``template``: at most ``share`` live children
        through it, and lower limit ceilings."""
        c.need_version(self.version, 3, "restrict")
        i = self._id()
        req = p.Restrict(template, share, memory, pids, cpus, tmpfs_size)
        return c.as_handle(self._request(p.encode_request(i, req), i), self)

    def attenuate(
        self,
        handle: int,
        rights: int = p.SEND | p.GRANT | p.MONITOR,
        *,
        uses: Optional[int] = None,
        expires_in: Optional[float] = None,
        badge: Optional[int] = None,
    ) -> Handle:
        """A weaker handle derived from ``handle``: ``rights`` kept (intersected), at most
        ``uses`` sends, expiring after ``expires_in`` seconds, showing ``badge`` to receivers."""
        i = self._id()
        req = p.Attenuate(handle, c.rights_arg(rights), uses, c.ms(expires_in, "expires_in"), badge)
        return c.as_handle(self._request(p.encode_request(i, req), i), self)

    def revoke(self, handle: int) -> None:
        """Revoke every capability derived from ``handle`` (which stays valid)."""
        i = self._id()
        c.as_ok(self._request(p.encode_request(i, p.Revoke(handle)), i))

    def drop(self, handle: int) -> None:
        """Remove ``handle`` from this environment's table."""
        i = self._id()
        c.as_ok(self._request(p.encode_request(i, p.Drop(handle)), i))

    def monitor(self, handle: int) -> int:
        """Be sent a down notice when the owner of ``handle``'s mailbox ends; returns the
        reference the notice carries (``delivery.down``)."""
        i = self._id()
        return c.as_monitor(self._request(p.encode_request(i, p.Monitor(handle)), i))

    def create_mailbox(self, name: Optional[str] = None) -> Handle:
        """A new mailbox of this environment's (RECEIVE|SEND|GRANT|MONITOR); dropping the handle
        destroys it."""
        i = self._id()
        return c.as_handle(self._request(p.encode_request(i, p.CreateMailbox(name)), i), self)

    def attest(self, nonce: bytes, data: bytes = b"") -> bytes:
        """A quote (the JSON document of docs/attestation.md) binding this environment's launch
        record and ``data`` to ``nonce``."""
        i = self._id()
        return c.as_quote(self._request(p.encode_request(i, p.Attest(bytes(nonce), bytes(data))), i))


def builtins_max(a: int, b: int) -> int:
    return a if a > b else b
