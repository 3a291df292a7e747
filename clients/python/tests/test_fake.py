"""The clients against a fake kernel on a socket pair (no environment needed): the handshake's
`version` refusal, a closed connection, undecodable bytes, answers out of request order, a
quiet batch send's refusal, and the call/reply convention's bytes."""

import asyncio
import os
import socket
import threading

import pytest

import warren
from warren import protocol as p
from warren.aio import AsyncClient


def fake(script):
    """A client connected to a thread that runs script(sock) as the kernel."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    t = threading.Thread(target=script, args=(theirs,), daemon=True)
    t.start()
    return ours.detach(), t


def requests(sock):
    return p.decode_requests(sock.recv(p.MAX_PACKET))


def answer(sock, *frames):
    sock.send(b"".join(p.encode_response(i, v) for i, v in frames))


def welcome(sock, version=2):
    [(i, hello)] = requests(sock)
    assert hello == p.Hello(1, p.VERSION)
    answer(sock, (i, p.Welcome(version, "fake")))


def test_no_common_version_is_refused_with_version_mismatch():
    def kernel(s):
        [(i, _)] = requests(s)
        answer(s, (i, p.Error(11, "no common version")))
        s.close()

    fd, t = fake(kernel)
    with pytest.raises(warren.VersionMismatch):
        warren.Client(fd)
    t.join()


def test_a_closed_connection_and_undecodable_bytes():
    def kernel(s):
        welcome(s)
        requests(s)
        s.send(b"\x05\x00\x00\x00\x99\x01\x00\x00\x00")  # op 0x99 does not exist
        requests(s)
        s.close()

    fd, t = fake(kernel)
    k = warren.Client(fd)
    with pytest.raises(warren.ProtocolError):
        k.whoami()
    with pytest.raises(warren.ConnectionClosed):
        k.whoami()
    t.join()


def test_batches_need_version_2():
    def kernel(s):
        welcome(s, version=1)

    fd, t = fake(kernel)
    k = warren.Client(fd)
    t.join()
    with pytest.raises(warren.UnsupportedError):
        k.send_many(2, [b"x"])


def test_call_sends_a_fresh_correlation_id_and_a_reply_capability_and_reply_echoes_it():
    seen = {}

    def kernel(s):
        welcome(s)
        [(i, send)] = requests(s)
        seen["send"] = send
        answer(s, (i, p.Ok()))
        [(j, recv)] = requests(s)
        seen["recv"] = recv
        answer(s, (j, p.Delivery(1, "srv", 0, [], send.correlation, b"pong", [], None, None)))
        # The server side: one send through the reply handle (the kernel removes it).
        frames = requests(s)
        seen["reply"] = frames
        answer(s, *((i, p.Ok()) for i, _ in frames))

    fd, t = fake(kernel)
    k = warren.Client(fd)
    d = k.call(5, b"ping", timeout=1)
    assert d.body == b"pong"
    send, recv = seen["send"], seen["recv"]
    assert send.reply_to == 1 and send.correlation >> 32 == os.getpid()
    assert recv == p.Recv(None, send.correlation, None, 1000)
    request = p.Delivery(1, "cli", 0, [], 42, b"q", [], 9, None)
    k.reply(request, b"a")
    t.join()
    [(_, r)] = seen["reply"]
    assert r == p.Send(9, True, [], 42, b"a", [], None)


def test_send_recv_sends_a_quiet_batch_and_sees_its_refusal():
    def kernel(s):
        welcome(s)
        frames = requests(s)
        assert isinstance(frames[0][1], p.SendBatch) and frames[0][1].quiet
        answer(s, (frames[0][0], p.Error(10, "gone")),
               (frames[1][0], p.Delivery(1, "x", 0, [], None, b"next", [], None, None)))

    fd, t = fake(kernel)
    k = warren.Client(fd)
    err, d = k.send_recv(2, b"ping")
    t.join()
    assert isinstance(err, warren.Dead) and d.body == b"next"


def test_asyncio_answers_out_of_order_reach_their_callers():
    def kernel(s):
        welcome(s)
        frames = []
        while len(frames) < 3:
            frames += requests(s)
        # Answer in reverse order, in one packet.
        answer(s, *((i, p.Delivery(1, "x", 0, [], None, b"%d" % i, [], None, None)) for i, _ in reversed(frames)))

    async def main():
        fd, t = fake(kernel)
        k = await AsyncClient.connect(fd)
        got = await asyncio.gather(k.recv(), k.recv(), k.recv())
        t.join()
        k.close()
        return got

    got = asyncio.run(main())
    ids = [int(d.body) for d in got]
    assert ids == sorted(ids), "each caller got the answer to its own request"


def test_a_message_answering_a_receive_given_up_on_is_kept_for_the_next_receive():
    late = p.Delivery(p.DEFAULT_MAILBOX, "peer", 0, [], None, b"late", [], None, None)

    def kernel(s):
        welcome(s)
        [(first, _)] = requests(s)
        # Slower than the receive's timeout and the client's grace: the client gives up.
        import time

        time.sleep(warren._common.RESTART_GRACE + 0.3)
        answer(s, (first, late))
        [(second, _)] = requests(s)
        answer(s, (second, p.Error(8, "timeout")))

    fd, t = fake(kernel)
    k = warren.Client(fd)
    with pytest.raises(warren.Timeout):
        k.recv(timeout=0)
    got = k.recv(timeout=0)
    assert got.body == b"late", "the late message was lost"
    t.join()

    # The same with the asyncio client.
    async def main():
        fd, t = fake(kernel)
        k = await AsyncClient.connect(fd)
        with pytest.raises(warren.Timeout):
            await k.recv(timeout=0)
        got = await k.recv(timeout=0)
        t.join()
        k.close()
        return got

    assert asyncio.run(main()).body == b"late", "the asyncio client lost the late message"


# -- a kernel that answers by a rule, and records what it was asked ----------------------------


def serving(version, rule):
    """A fake kernel on a socket pair that agrees ``version`` and answers every request with
    ``rule(request)`` (None: no answer), every packet's answers in one packet. Returns the
    client's descriptor, the thread, and the list of packets received (each a list of
    requests; the thread ends when the client closes its end)."""
    packets = []

    def kernel(s):
        welcome(s, version)
        while True:
            packet = s.recv(p.MAX_PACKET)
            if not packet:
                return
            frames = p.decode_requests(packet)
            packets.append([r for _, r in frames])
            answers = [(i, rule(r)) for i, r in frames]
            answers = [(i, a) for i, a in answers if a is not None]
            if answers:
                answer(s, *answers)

    fd, t = fake(kernel)
    return fd, t, packets


def spawn_rule(r):
    if isinstance(r, p.Spawn):
        return p.Spawned("tpl-%s" % r.suffix, 40, 41, 77)
    if isinstance(r, p.Stop):
        return p.Ok()
    if isinstance(r, p.Restrict):
        return p.HandleAnswer(42, p.SPAWN)
    if isinstance(r, p.SendBatch):
        return p.Error(10, "gone") if r.handle == 9 else None
    if isinstance(r, p.Send):
        return p.Ok()
    if isinstance(r, p.Recv):
        return p.Delivery(1, "x", 0, [], None, b"next", [], None, None)
    raise AssertionError(f"unexpected request {r!r}")


def blocking_version3_calls(k):
    got = [
        k.spawn(3, suffix="a", args=["x"], env={"V": "1"}, memory=1 << 20, detach=True, names={"db": 5}),
        k.stop(40, kill=True),
        k.restrict(3, share=2, pids=10),
        k.send_recv(9, b"ping", timeout=1),
        k.send_recv(2, b"ping", correlation=7),
    ]
    k.close()
    return got


async def async_version3_calls(k):
    got = [
        await k.spawn(3, suffix="a", args=["x"], env={"V": "1"}, memory=1 << 20, detach=True, names={"db": 5}),
        await k.stop(40, kill=True),
        await k.restrict(3, share=2, pids=10),
        await k.send_recv(9, b"ping", timeout=1),
        await k.send_recv(2, b"ping", correlation=7),
    ]
    k.close()
    return got


def test_the_asyncio_client_has_spawn_stop_restrict_and_send_recv_as_the_blocking_one():
    fd, t, sync_packets = serving(3, spawn_rule)
    sync = blocking_version3_calls(warren.Client(fd))
    t.join()

    async def main():
        fd, t, packets = serving(3, spawn_rule)
        got = await async_version3_calls(await AsyncClient.connect(fd))
        t.join()
        return got, packets

    got, async_packets = asyncio.run(main())
    # The same requests on the wire, each send_recv's two in one packet.
    assert async_packets == sync_packets
    assert [len(packet) for packet in sync_packets] == [1, 1, 1, 2, 2]
    assert isinstance(sync_packets[3][0], p.SendBatch) and sync_packets[3][0].quiet
    assert sync_packets[0] == [p.Spawn(3, "a", ["x"], [("V", "1")], 1 << 20, None, None, None, True, [("db", 5)])]
    # The same answers.
    for g in (sync, got):
        spawned, stopped, restricted, (err, d), (err2, d2) = g
        assert spawned == p.Spawned("tpl-a", 40, 41, 77) and isinstance(spawned, warren.Spawned)
        assert stopped is None
        assert isinstance(restricted, warren.Handle) and restricted == 42 and restricted.rights == warren.SPAWN
        assert isinstance(err, warren.Dead) and d.body == b"next"
        assert err2 is None and d2.body == b"next"


def test_version_3_operations_on_a_version_2_kernel_are_unsupported_and_send_nothing():
    calls = [
        ("spawn", lambda k: k.spawn(3)),
        ("stop", lambda k: k.stop(4)),
        ("restrict", lambda k: k.restrict(3, share=1)),
    ]
    fd, t, packets = serving(2, spawn_rule)
    k = warren.Client(fd)
    for what, call in calls:
        with pytest.raises(warren.UnsupportedError, match=f"{what} needs protocol version 3; the kernel agreed 2"):
            call(k)
    k.close()
    t.join()
    assert packets == []

    async def main():
        fd, t, packets = serving(2, spawn_rule)
        k = await AsyncClient.connect(fd)
        for what, call in calls:
            with pytest.raises(warren.UnsupportedError, match=f"{what} needs protocol version 3"):
                await call(k)
        k.close()
        t.join()
        return packets

    assert asyncio.run(main()) == []


def test_a_closed_client_raises_connection_closed():
    fd, t, packets = serving(3, lambda r: p.Ok())
    k = warren.Client(fd)
    k.close()
    for call in (k.whoami, lambda: k.send(1, b"x"), lambda: k.recv(0), lambda: k.send_many(1, [b"x"]),
                 lambda: k.send_recv(1, b"x"), lambda: k.call(1, b"x")):
        with pytest.raises(warren.ConnectionClosed) as e:
            call()
        assert isinstance(e.value, warren.WarrenError)
    t.join()

    async def main():
        fd, t, _ = serving(3, lambda r: p.Ok())
        k = await AsyncClient.connect(fd)
        k.close()
        for call in (k.whoami, lambda: k.send(1, b"x"), lambda: k.recv(0), lambda: k.send_recv(1, b"x")):
            with pytest.raises(warren.ConnectionClosed):
                await call()
        t.join()

    asyncio.run(main())
    assert packets == []


def test_arguments_the_protocol_cannot_carry_are_encode_errors_and_wrong_types_type_errors():
    fd, t, packets = serving(3, lambda r: p.Ok())
    k = warren.Client(fd)
    cannot_carry = [
        lambda: k.recv(timeout=-1),
        lambda: k.recv(timeout=float("nan")),
        lambda: k.call(1, b"x", timeout=-0.5),
        lambda: k.send_recv(1, b"x", timeout=-1),
        lambda: k.recv_many(timeout=-1),
        lambda: k.attenuate(1, warren.SEND, expires_in=-1),
        lambda: k.send(-1, b"x"),
        lambda: k.send(1 << 32, b"x"),
        lambda: k.send(1, b"x", correlation=-5),
        lambda: k.send(1, "\udc80"),
        lambda: k.lookup("\udc80"),
        lambda: k.attenuate(1, 0x40),
    ]
    for call in cannot_carry:
        with pytest.raises(warren.EncodeError) as e:
            call()
        assert isinstance(e.value, warren.WarrenError) and isinstance(e.value, ValueError)
    wrong_type = [
        lambda: k.send("one", b"x"),
        lambda: k.send(1, 5),
        lambda: k.send(1, b"x", headers=[("a", "b", "c")]),
        lambda: k.lookup(5),
        lambda: k.recv(timeout="1"),
    ]
    for call in wrong_type:
        with pytest.raises(TypeError):
            call()
    k.close()
    t.join()
    assert packets == [], "nothing was sent"

    async def main():
        fd, t, packets = serving(3, lambda r: p.Ok())
        k = await AsyncClient.connect(fd)
        for call in (lambda: k.recv(timeout=-1), lambda: k.call(1, b"x", timeout=-1), lambda: k.send(-1, b"x")):
            with pytest.raises(warren.EncodeError):
                await call()
        k.close()
        t.join()
        return packets

    assert asyncio.run(main()) == []
