"""A TCP relay that adds latency: ``delay_proxy.py UPSTREAM_PORT N DELAY_S`` listens on N loopback
ports (printed, one line) and relays each connection to UPSTREAM_PORT, every byte held DELAY_S in
each direction (a round trip costs 2 x DELAY_S), order kept. For bench/fleet_latency_bench.py:
this kernel has no netem, and N ports make N "hosts" of one sshd. Ends when stdin closes."""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                writer.close()
                return
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()

    task = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    finally:
        queue.put_nowait((loop.time() + delay, b""))
        await task


async def main() -> None:
    upstream, n, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(_pipe(r, uw, delay), _pipe(ur, w, delay), return_exceptions=True)

    servers = [await asyncio.start_server(handle, "127.0.0.1", 0) for _ in range(n)]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
