"""The asyncio client: :class:`AsyncClient`, the same operations as :class:`warren.Client`,
awaited. No thread: the connection's descriptor is watched with ``loop.add_reader``; requests
made in one turn of the loop travel in one packet; answers go to their callers by id, in any
order, so any number of requests may be in flight (``asyncio.gather``).
"""

import asyncio
import os
import socket
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from . import _common as c
from . import protocol as p
from ._common import Batch, Handle, HeaderArg
from .errors import ConnectionClosed, KernelError, ProtocolError, Timeout, WarrenError

Body = Union[bytes, bytearray, memoryview, str]


class AsyncClient:
    """Create with ``await AsyncClient.connect()`` (inside a running event loop)."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._loop = loop
        self._buf = bytearray(p.MAX_PACKET)
        self._view = memoryview(self._buf)
        self._next = 1
        self._pending: Dict[int, "asyncio.Future[Any]"] = {}
        # Receives given up on client-side (the kernel was slower than timeout + grace): their
        # late answers are messages taken from a mailbox, kept here for the next receive.
        self._abandoned: set = set()
        self._unclaimed: List[p.Delivery] = []
        self._out: List[bytes] = []
        self._flush_scheduled = False
        self._writing = False
        self._failed: Optional[BaseException] = None
        self.env = ""
        self.version = p.MIN_VERSION
        loop.add_reader(sock.fileno(), self._on_readable)

    @classmethod
    async def connect(cls, fd: Optional[int] = None) -> "AsyncClient":
        """Connect through ``fd`` (else ``WARREN_FD``, else 3) and shake hands."""
        loop = asyncio.get_running_loop()
        k = cls(c.open_socket(c.inherited_fd(fd), False), loop)
        try:
            i = k._id()
            w = c.check(await k._request(p.encode_request(i, p.Hello(p.MIN_VERSION, p.VERSION)), i))
            if type(w) is not p.Welcome:
                raise c.unexpected(w)
        except BaseException:
            k.close()
            raise
        k.env, k.version = w.env, w.version
        return k

    # -- plumbing ------------------------------------------------------------------------

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        """Close the connection; requests in flight fail with ConnectionClosed."""
        if self._sock.fileno() < 0:
            return
        self._loop.remove_reader(self._sock.fileno())
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
        self._fail(ConnectionClosed("the client was closed"))
        self._sock.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def _id(self) -> int:
        i = self._next
        self._next = (i + 1) & 0xFFFFFFFF or 1
        return i

    def _fail(self, e: BaseException) -> None:
        self._failed = e
        for f in self._pending.values():
            if not f.done():
                f.set_exception(e)
        self._pending.clear()

    def _on_readable(self) -> None:
        while True:
            try:
                n = self._sock.recv_into(self._buf, 0, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._loop.remove_reader(self._sock.fileno())
                self._fail(ConnectionClosed(f"kernel connection: {e}"))
                return
            if n == 0 or n > p.MAX_PACKET:
                self._loop.remove_reader(self._sock.fileno())
                self._fail(ConnectionClosed("the kernel closed the connection") if n == 0 else ProtocolError(f"a packet of {n} bytes", 0))
                return
            try:
                frames = p.decode_responses(self._view[:n])
            except ProtocolError as e:
                self._loop.remove_reader(self._sock.fileno())
                self._fail(e)
                return
            pending = self._pending
            for i, v in frames:
                f = pending.pop(i, None)
                if f is not None and not f.done():
                    f.set_result(v)
                elif i in self._abandoned:
                    self._abandoned.discard(i)
                    if type(v) is p.Delivery:
                        self._unclaimed.append(v)

    def _queue(self, frame: bytes) -> None:
        self._out.append(frame)
        if not self._flush_scheduled and not self._writing:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._out:
            packet: List[bytes] = []
            size = 0
            while self._out and (not packet or size + len(self._out[0]) <= p.MAX_PACKET):
                f = self._out.pop(0)
                packet.append(f)
                size += len(f)
            data = b"".join(packet)
            try:
                self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                self._out.insert(0, data)
                if not self._writing:
                    self._writing = True
                    self._loop.add_writer(self._sock.fileno(), self._on_writable)
                return
            except OSError as e:
                self._fail(ConnectionClosed(f"kernel connection: {e}"))
                return

    def _on_writable(self) -> None:
        self._loop.remove_writer(self._sock.fileno())
        self._writing = False
        self._flush()

    def _submit(self, frame: bytes, id: int) -> "asyncio.Future[Any]":
        if self._failed is not None:
            raise self._failed
        f = self._loop.create_future()
        self._pending[id] = f
        self._queue(frame)
        return f

    async def _request(self, frame: bytes, id: int, timeout_ms: Optional[int] = None, keep_late: bool = False) -> Any:
        f = self._submit(frame, id)
        if timeout_ms is None:
            return await f
        try:
            return await asyncio.wait_for(f, timeout_ms / 1000 + c.RESTART_GRACE)
        except asyncio.TimeoutError:
            self._pending.pop(id, None)
            if keep_late:
                # The kernel may still answer with a message: keep it for a later receive.
                self._abandoned.add(id)
            raise Timeout("no answer from the kernel in time (was it restarted?)") from None

    # -- operations (see warren.Client for each one's meaning) ----------------------------

    async def send(
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
        i = self._id()
        f = p.encode_send(i, handle, wait, c.body_arg(body), c.headers_arg(headers), correlation, c.caps_arg(caps), reply_to)
        c.as_ok(await self._request(f, i))

    async def try_send(self, handle: int, body: Body = b"", **kw: Any) -> None:
        await self.send(handle, body, wait=False, **kw)

    async def recv(
        self,
        timeout: Optional[float] = None,
        *,
        mailbox: Optional[int] = None,
        correlation: Optional[int] = None,
        header: Optional[Tuple[str, Union[bytes, str]]] = None,
    ) -> p.Delivery:
        t = c.ms(timeout)
        hf = c.header_filter(header)
        kept = c.take_matching(self._unclaimed, mailbox, correlation, hf)
        if kept is not None:
            return kept
        i = self._id()
        f = p.encode_recv(i, mailbox, correlation, hf, t)
        got = await self._request(f, i, t, keep_late=True)
        # A late message that came while waiting is older than this answer: it goes first.
        kept = c.take_matching(self._unclaimed, mailbox, correlation, hf)
        if kept is not None:
            if type(got) is p.Delivery:
                self._unclaimed.insert(0, got)
            return kept
        return c.as_delivery(got)

    async def call(
        self,
        handle: int,
        body: Body = b"",
        *,
        headers: HeaderArg = None,
        caps: Iterable[int] = (),
        timeout: Optional[float] = None,
    ) -> p.Delivery:
        c.ms(timeout)  # a bad timeout is refused before the request goes out
        i = self._id()
        corr = (os.getpid() << 32) | i
        f = p.encode_send(i, handle, True, c.body_arg(body), c.headers_arg(headers), corr, c.caps_arg(caps), p.DEFAULT_MAILBOX)
        c.as_ok(await self._request(f, i))
        return await self.recv(timeout, correlation=corr)

    async def send_recv(
        self, handle: int, body: Body = b"", *, timeout: Optional[float] = None, **message: Any
    ) -> Tuple[Optional[KernelError], p.Delivery]:
        s = self._id()
        r = self._id()
        t = c.ms(timeout)
        packet, quiet = c.send_recv_frames(self.version, s, r, handle, c.body_arg(body), t, message)
        if self._failed is not None:
            raise self._failed
        sent_f = self._loop.create_future()
        self._pending[s] = sent_f
        try:
            got = await self._request(packet, r, t)
        except BaseException:
            self._pending.pop(s, None)
            raise
        if quiet:
            # A quiet send is answered only if refused, and then before the receive.
            self._pending.pop(s, None)
            sent = sent_f.result() if sent_f.done() else None
        else:
            sent = await sent_f
        return c.send_recv_result(sent, got)

    async def reply(self, request: p.Delivery, body: Body = b"", *, headers: HeaderArg = None, caps: Iterable[int] = ()) -> None:
        if request.reply is None:
            raise WarrenError("the request carries no reply handle")
        s = self._id()
        f = p.encode_send(s, request.reply, True, c.body_arg(body), c.headers_arg(headers), request.correlation, c.caps_arg(caps), None)
        try:
            c.as_ok(await self._request(f, s))
        except KernelError:
            try:
                await self.drop(request.reply)
            except KernelError:
                pass
            raise

    async def send_many(self, handle: int, bodies: Iterable[Body], wait: bool = True) -> int:
        c.need_batches(self.version)
        total = 0
        inflight: List[Tuple["asyncio.Future[Any]", int]] = []
        for chunk in c.chunks([c.body_arg(b) for b in bodies]):
            i = self._id()
            f = self._submit(p.encode_send_batch(i, handle, wait, False, chunk), i)
            if wait:
                inflight.append((f, len(chunk)))
                if len(inflight) >= c.SEND_WINDOW:
                    g, n = inflight.pop(0)
                    total += min(c.as_accepted(await g), n)
                continue
            got = c.as_accepted(await f)
            total += got
            if got < len(chunk):
                return total
        for g, n in inflight:
            total += min(c.as_accepted(await g), n)
        return total

    async def recv_many(self, max: int = p.MAX_BATCH, timeout: Optional[float] = None, *, mailbox: Optional[int] = None) -> Batch:
        c.need_batches(self.version)
        i = self._id()
        t = c.ms(timeout)
        f = p.encode_recv_batch(i, mailbox, min(max if max > 1 else 1, p.MAX_BATCH), t)
        return c.as_batch(await self._request(f, i, t))

    async def lookup(self, name: str) -> Handle:
        i = self._id()
        return c.as_handle(await self._request(p.encode_request(i, p.Lookup(name)), i), self)

    async def whoami(self) -> p.Identity:
        i = self._id()
        return c.as_identity(await self._request(p.encode_request(i, p.Whoami()), i))

    async def spawn(
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
        c.need_version(self.version, 3, "spawn")
        i = self._id()
        req = c.spawn_request(template, suffix, args, env, memory, pids, cpus, tmpfs_size, detach, names)
        return c.as_spawned(await self._request(p.encode_request(i, req), i))

    async def stop(self, handle: int, kill: bool = False) -> None:
        c.need_version(self.version, 3, "stop")
        i = self._id()
        c.as_ok(await self._request(p.encode_request(i, p.Stop(handle, kill)), i))

    async def restrict(
        self,
        template: int,
        *,
        share: Optional[int] = None,
        memory: Optional[int] = None,
        pids: Optional[int] = None,
        cpus: Optional[int] = None,
        tmpfs_size: Optional[int] = None,
    ) -> Handle:
        c.need_version(self.version, 3, "restrict")
        i = self._id()
        req = p.Restrict(template, share, memory, pids, cpus, tmpfs_size)
        return c.as_handle(await self._request(p.encode_request(i, req), i), self)

    async def attenuate(
        self,
        handle: int,
        rights: int = p.SEND | p.GRANT | p.MONITOR,
        *,
        uses: Optional[int] = None,
        expires_in: Optional[float] = None,
        badge: Optional[int] = None,
    ) -> Handle:
        i = self._id()
        req = p.Attenuate(handle, c.rights_arg(rights), uses, c.ms(expires_in, "expires_in"), badge)
        return c.as_handle(await self._request(p.encode_request(i, req), i), self)

    async def revoke(self, handle: int) -> None:
        i = self._id()
        c.as_ok(await self._request(p.encode_request(i, p.Revoke(handle)), i))

    async def drop(self, handle: int) -> None:
        i = self._id()
        c.as_ok(await self._request(p.encode_request(i, p.Drop(handle)), i))

    async def monitor(self, handle: int) -> int:
        i = self._id()
        return c.as_monitor(await self._request(p.encode_request(i, p.Monitor(handle)), i))

    async def create_mailbox(self, name: Optional[str] = None) -> Handle:
        i = self._id()
        return c.as_handle(await self._request(p.encode_request(i, p.CreateMailbox(name)), i), self)

    async def attest(self, nonce: bytes, data: bytes = b"") -> bytes:
        i = self._id()
        return c.as_quote(await self._request(p.encode_request(i, p.Attest(bytes(nonce), bytes(data))), i))


__all__ = ["AsyncClient", "KernelError"]
