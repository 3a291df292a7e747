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
    return os.dup(ours.detach()), t


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
