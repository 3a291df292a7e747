"""The asyncio client against a real kernel, from inside an environment (clients/tests/live.sh
runs this with PYWARREN_LIVE=async): the operations, error paths, and many requests in flight."""

import asyncio

import pytest

import warren
from warren.aio import AsyncClient

from conftest import live

pytestmark = live("async")


def test_the_asyncio_client():
    asyncio.run(_main())


async def _main():
    async with await AsyncClient.connect() as k:
        assert k.env == "py-tests-async" and k.version == warren.protocol.VERSION
        # Many requests in flight at once; answers matched by id whatever their order.
        await asyncio.gather(*(k.send(1, b"m%d" % i, correlation=i) for i in range(50)))
        got = await asyncio.gather(*(k.recv(1, correlation=i) for i in reversed(range(50))))
        assert [d.body for d in got] == [b"m%d" % i for i in reversed(range(50))]
        # A receive waiting while other requests are answered.
        waiting = asyncio.ensure_future(k.recv(5, header=("k", "v")))
        me = await k.whoami()
        assert me.env == k.env
        await k.send(1, b"late", headers={"k": "v"})
        assert (await waiting).body == b"late"
        with pytest.raises(warren.Timeout):
            await k.recv(0)
        with pytest.raises(warren.NotFound):
            await k.lookup("nobody-here")
        once = await k.attenuate(1, warren.SEND, uses=1)
        await k.send(once, b"x")
        with pytest.raises(warren.UsedUp):
            await k.send(once, b"y")
        await k.recv(1)
        # send_recv: the send and the next receive in one packet; a refused send is reported.
        err, d = await k.send_recv(1, b"to myself", timeout=1)
        assert err is None and d.body == b"to myself"
        once = await k.attenuate(1, warren.SEND, uses=1)
        await k.send(once, b"spent")
        err, d = await k.send_recv(once, b"refused", timeout=1)
        assert isinstance(err, warren.UsedUp) and d.body == b"spent"
        err, d = await k.send_recv(1, b"with a header", headers={"h": "v"}, timeout=1)
        assert err is None and d.header("h") == b"v"
        async with await k.create_mailbox() as box:
            to_box = await k.attenuate(box, warren.SEND)
            with pytest.raises(warren.Full):
                for _ in range(100000):
                    await k.try_send(box, b"f")
        with pytest.raises(warren.Dead):
            await k.send(to_box, b"z")
        assert await k.send_many(1, [b"a", b"b", b"c"]) == 3
        assert list(await k.recv_many(10, timeout=1)) == [b"a", b"b", b"c"]
        g = await k.attenuate(1, warren.SEND)
        await k.revoke(1)
        with pytest.raises(warren.Revoked):
            await k.send(g, b"r")
        await k.drop(g)
        with pytest.raises(warren.NoSuchHandle):
            await k.drop(g)
