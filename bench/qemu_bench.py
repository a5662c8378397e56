"""qemu:///session: ``dom.info()`` per call against raw ``qemu.qmp`` calls for the same data.

One run, one booted tiny guest under TCG (built like the plugin's tests build it). ``dom.info()``
goes through the domain's relay (one request on a kept-open unix link; the relay sends the three
queries to QEMU at once on the monitor it holds). The peers, all raw ``qemu.qmp`` on ``qmp.sock``:

* raw-persistent: query-status + query-balloon + query-cpus-fast, one after the other, on one
  already-connected client (what a single long-lived owner of the monitor pays): the floor;
* raw-persistent-pipelined: the same three sent at once (``asyncio.gather``) on that client;
* raw-one-connection-per-info: the three commands on one fresh connection (what the plugin did
  before it had a relay);
* raw-per-call: each command on a fresh connection (what the plugin did first).

Usage: .venv/bin/python bench/qemu_bench.py [SECONDS_PER_FIGURE]
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import platform
import signal
import sys
import tempfile
import time
from typing import Any

from qemu.qmp import QMPClient

import virtkit

# The test guest's builder lives with the plugin's tests (it is no part of the plugin).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "plugins" / "qemu" / "tests"))
from _guest import CMDLINE, READY_MARK, guest_image

CMDS = ("query-status", "query-balloon", "query-cpus-fast")


def rate(fn: Any, seconds: float) -> float:
    """Calls per second, best of 3 runs of ``seconds`` each."""
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds:
            fn()
            n += 1
        best = max(best, n / dt)
    return best


async def _persistent(sock: str, seconds: float) -> float:
    client = QMPClient("bench")
    await client.connect(sock)
    try:
        best = 0.0
        for _ in range(3):
            n, t0 = 0, time.perf_counter()
            while (dt := time.perf_counter() - t0) < seconds:
                for cmd in CMDS:
                    await client.execute(cmd)
                n += 1
            best = max(best, n / dt)
        return best
    finally:
        await client.disconnect()


async def _pipelined(sock: str, seconds: float) -> float:
    client = QMPClient("bench")
    await client.connect(sock)
    try:
        best = 0.0
        for _ in range(3):
            n, t0 = 0, time.perf_counter()
            while (dt := time.perf_counter() - t0) < seconds:
                await asyncio.gather(*(client.execute(cmd) for cmd in CMDS))
                n += 1
            best = max(best, n / dt)
        return best
    finally:
        await client.disconnect()


async def _one_conn_per_info(sock: str, seconds: float) -> float:
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds:
            client = QMPClient("bench")
            await client.connect(sock)
            for cmd in CMDS:
                await client.execute(cmd)
            await client.disconnect()
            n += 1
        best = max(best, n / dt)
    return best


async def _per_call(sock: str, seconds: float) -> float:
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds:
            for cmd in CMDS:
                client = QMPClient("bench")
                await client.connect(sock)
                await client.execute(cmd)
                await client.disconnect()
            n += 1
        best = max(best, n / dt)
    return best


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    kernel, initrd = guest_image()
    with tempfile.TemporaryDirectory(prefix="vkq-bench-") as home:
        os.environ["XDG_STATE_HOME"] = home
        pid = None
        try:
            with virtkit.open("qemu:///session") as conn:
                cfg = virtkit.DomainConfig(
                    name="bench",
                    memory=128 * 1024,
                    kernel=str(kernel),
                    initrd=str(initrd),
                    cmdline=CMDLINE,
                    extra={"accel": "tcg"},
                )
                dom = conn.create(cfg)
                run = pathlib.Path(home) / "virtkit" / "qemu" / "run" / str(dom.id)
                pid = int((run / "qemu.pid").read_text())
                sock = str(run / "qmp.sock")
                # Measure an idle guest: a booting one competes for the 2 cpus.
                deadline = time.monotonic() + 120
                while READY_MARK not in (run / "console.log").read_text(errors="replace"):
                    if time.monotonic() > deadline:
                        raise SystemExit("the guest did not boot within 120 s")
                    time.sleep(0.2)
                ours = rate(dom.info, seconds)
                floor = asyncio.run(_persistent(sock, seconds))
                piped = asyncio.run(_pipelined(sock, seconds))
                fresh = asyncio.run(_one_conn_per_info(sock, seconds))
                per_call = asyncio.run(_per_call(sock, seconds))
                dom.destroy()
                pid = None
        finally:
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
    print(f"CPython {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, QEMU TCG guest")
    print(f"dom.info()                          {ours:8.0f} calls/s  {1e6 / ours:8.1f} us/call")
    print(f"raw qemu.qmp, one connection        {floor:8.0f} calls/s  {1e6 / floor:8.1f} us/call")
    print(f"raw qemu.qmp, one conn., pipelined  {piped:8.0f} calls/s  {1e6 / piped:8.1f} us/call")
    print(f"raw qemu.qmp, a connection per info {fresh:8.0f} calls/s  {1e6 / fresh:8.1f} us/call")
    print(f"raw qemu.qmp, connection per cmd    {per_call:8.0f} calls/s  {1e6 / per_call:8.1f} us/call")
    print(
        f"dom.info() time / floor: {floor / ours:.2f}x; / pipelined raw: {piped / ours:.2f}x;"
        f" / a fresh connection per info: {fresh / ours:.2f}x"
    )


if __name__ == "__main__":
    main()
