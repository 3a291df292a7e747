"""The echo server of echo_server.py with the asyncio client: every request is answered by a
task of its own, so a slow answer does not hold up the others."""

import asyncio

from warren.aio import AsyncClient


async def main() -> None:
    async with await AsyncClient.connect() as k:
        tasks = set()
        while True:
            request = await k.recv()
            if request.reply is not None:
                t = asyncio.ensure_future(k.reply(request, request.body))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            if request.body == b"stop":
                break
        if tasks:
            await asyncio.gather(*tasks)


asyncio.run(main())
