"""QMP through ``qemu.qmp``: one private asyncio loop thread per driver, every wait bounded.

Commands and events go through the domain's relay (``_relay``), which holds the domain's QMP
monitor; any number of drivers (in any process) share it. Per domain, a driver keeps a blocking
:class:`CommandLink` for commands (on the caller's thread) and, once it listens, a
:class:`RelayClient` on its loop thread for events. When a domain has no relay (it died, or is
being replaced), a command uses a short-lived QMP connection of its own on ``qmp.sock``
(connect, negotiate, execute, disconnect), the monitor kept free for exactly that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from virtkit import ConnectionClosed, DriverError, InvalidOperation, ProtocolError
from virtkit import TimeoutError as VirtTimeout

from ._relay import RELAY

__all__ = ["CommandLink", "Commands", "Loop", "QMPError", "RelayClient", "RelayMissing"]

_T = TypeVar("_T")
log = logging.getLogger("virtkit.qemu")

# Errors QEMU reports for a command the current state forbids ("VM is not running", ...).
_STATE_ERRORS = ("GenericError",)

Commands = tuple[tuple[str, Mapping[str, object] | None], ...]


def _refused(cmd: str, cls: str, desc: str) -> Exception:
    if cls in _STATE_ERRORS:
        return InvalidOperation(f"QEMU refused {cmd!r}: {desc}")
    if cls == "RelayError":
        return ProtocolError(f"QMP {cmd!r} through the relay failed: {desc}")
    return DriverError(f"QEMU refused {cmd!r}: {desc}")


class Loop:
    """An event loop on a daemon thread; sync callers submit coroutines with a timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._relays: dict[str, RelayClient] = {}  # run directory -> this driver's relay connection
        self._connecting = asyncio.Lock()
        self._thread = threading.Thread(target=self._loop.run_forever, name="virtkit-qemu-qmp", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        if self._loop.is_closed() or not self._loop.is_running():
            coro.close()  # never scheduled: close it so it is not reported as never awaited
            raise ConnectionClosed("the qemu driver connection is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            # The coroutine bounds itself; this outer bound is a backstop one second later.
            return fut.result((timeout or self.timeout) + 1.0)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise VirtTimeout(f"QMP did not answer within {timeout or self.timeout:g} s") from None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        if self._loop.is_closed() or not self._loop.is_running():
            coro.close()
            raise ConnectionClosed("the qemu driver connection is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def _shutdown() -> None:
            for client in list(self._relays.values()):
                client.close()
            self._relays.clear()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=3)
                for t in pending:
                    t.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=2)

        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(10)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("QMP loop did not wind down within 10 s")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def execute_direct(self, sock: str, cmds: Commands) -> list[Any]:
        """Several commands on one fresh QMP connection (when the domain has no relay)."""
        client = QMPClient("virtkit")
        cmd = cmds[0][0]
        try:
            await asyncio.wait_for(client.connect(sock), self.timeout)
            out = []
            for cmd, args in cmds:
                out.append(await asyncio.wait_for(client.execute(cmd, args), self.timeout))
            return out
        except TimeoutError:
            raise VirtTimeout(f"QMP {cmd!r} on {sock} timed out after {self.timeout:g} s") from None
        except ExecuteError as exc:
            raise _refused(cmd, exc.error_class, str(exc)) from exc
        except QMPError as exc:
            raise ProtocolError(f"QMP {cmd!r} on {sock} failed: {exc}") from exc
        except (OSError, EOFError) as exc:
            # EOFError: QEMU closed the monitor mid-command (it is quitting or dying).
            raise ProtocolError(f"QMP socket {sock}: {type(exc).__name__} {exc}") from exc
        finally:
            try:
                await asyncio.wait_for(client.disconnect(), self.timeout)
            except (TimeoutError, QMPError, OSError, EOFError):
                pass

    async def _quiet_disconnect(self, client: QMPClient) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), min(self.timeout, 5.0))
        except (TimeoutError, QMPError, OSError, EOFError):
            pass

    # -- the relay ---------------------------------------------------------------------------

    async def _relay(self, rundir: str) -> RelayClient | None:
        """This driver's connection to the relay of ``rundir``, made on first use; None if none."""
        client = self._relays.get(rundir)
        if client is not None and not client.closed:
            return client
        async with self._connecting:
            client = self._relays.get(rundir)
            if client is not None and not client.closed:
                return client
            client = RelayClient(os.path.join(rundir, RELAY), self.timeout)
            try:
                await client.connect()
            except RelayMissing:
                return None
            self._relays[rundir] = client
            return client

    def forget(self, rundir: str) -> None:
        """Drop the relay connection of a domain that is gone (call from any thread)."""
        client = self._relays.pop(rundir, None)
        if client is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(client.close)

    async def listen(self, rundir: str, on_event: Callable[[str, str], None]) -> bool:
        """Subscribe ``on_event(kind, detail)`` to the domain's events; False when it has no relay.

        Returns once the relay confirmed the subscription: every later change is seen.
        """
        client = await self._relay(rundir)
        if client is None:
            return False
        try:
            await client.listen(on_event)
        except RelayMissing:
            return False
        return True


class RelayMissing(ProtocolError):
    """No relay answers on the socket (not started, or gone)."""


class RelayClient:
    """One unix connection to a domain's relay: commands (matched by id) and, once asked, events."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.closed = False
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 1
        self._on_event: Callable[[str, str], None] | None = None
        self._gone = False  # the relay said the domain is gone
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path), self.timeout)
            greeting = json.loads(await asyncio.wait_for(reader.readline(), self.timeout) or b"null")
        except (OSError, ValueError, TimeoutError) as exc:
            self.closed = True
            raise RelayMissing(f"no relay on {self.path}: {type(exc).__name__} {exc}") from None
        if not isinstance(greeting, dict) or greeting.get("relay") != 1:
            self.closed = True
            writer.close()
            raise RelayMissing(f"no relay on {self.path}: greeted with {greeting!r}")
        self._writer = writer
        self._reader = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif "event" in msg:
                    kind = str(msg["event"])
                    self._gone = self._gone or kind == "gone"
                    if self._on_event is not None:
                        self._deliver(kind, str(msg.get("detail", "")))
        except (OSError, ValueError):
            pass
        self.closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(RelayMissing(f"the relay on {self.path} closed"))
        self._pending.clear()
        if self._on_event is not None and not self._gone:
            self._deliver("lost", "")  # the relay died under a running domain
        if self._writer is not None:
            self._writer.close()

    def _deliver(self, kind: str, detail: str) -> None:
        assert self._on_event is not None
        try:
            self._on_event(kind, detail)
        except Exception:
            log.exception("relay event handler failed")

    def close(self) -> None:
        self._on_event = None
        self.closed = True
        if self._writer is not None:
            self._writer.close()
        if self._reader is not None:
            self._reader.cancel()

    async def call(self, msg: dict[str, Any]) -> Any:
        if self.closed or self._writer is None:
            raise RelayMissing(f"the relay on {self.path} closed")
        rid = self._next
        self._next += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._writer.write((json.dumps({**msg, "id": rid}) + "\n").encode())
            # The relay bounds the command by the same timeout; this bound is a backstop.
            return await asyncio.wait_for(fut, self.timeout + 1)
        except TimeoutError:
            raise VirtTimeout(f"the relay on {self.path} did not answer within {self.timeout:g} s") from None
        finally:
            self._pending.pop(rid, None)

    async def listen(self, on_event: Callable[[str, str], None]) -> None:
        self._on_event = on_event
        await self.call({"listen": True})


class CommandLink:
    """A blocking unix connection to a domain's relay, for commands only (no event arrives on it).

    Synchronous on purpose: a command costs one write and one read on the caller's thread, with
    no hop to the event-loop thread. One command batch at a time (a lock); every read bounded.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next = 1

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buf = b""

    def _readline(self, sock: socket.socket) -> bytes:
        while b"\n" not in self._buf:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise EOFError("the relay closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    @staticmethod
    def _stale(sock: socket.socket) -> bool:
        """Nothing ever arrives on an idle link but its end (EOF), or junk: either way, reconnect."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            self._buf = b""
            greeting = json.loads(self._readline(sock))
        except (OSError, EOFError, ValueError) as exc:
            sock.close()
            raise RelayMissing(f"no relay on {self.path}: {type(exc).__name__} {exc}") from None
        if not isinstance(greeting, dict) or greeting.get("relay") != 1:
            sock.close()
            raise RelayMissing(f"no relay on {self.path}: greeted with {greeting!r}")
        return sock

    def execute_many(self, cmds: Commands) -> list[Any]:
        """The commands' results, in order; raises RelayMissing when no relay could be reached
        before anything was sent (the caller may then go to QEMU directly)."""
        with self._lock:
            if self._sock is not None and self._stale(self._sock):
                self._drop()  # the relay went away since our last command (a new one may be up)
            if self._sock is None:
                self._sock = self._connect()
            sock, rid = self._sock, self._next
            self._next += 1
            batch = [[c, dict(a) if a else None] for c, a in cmds]
            try:
                sock.sendall((json.dumps({"id": rid, "batch": batch}) + "\n").encode())
                while True:
                    reply = json.loads(self._readline(sock))
                    if isinstance(reply, dict) and reply.get("id") == rid:
                        break
            except TimeoutError:
                self._drop()
                raise VirtTimeout(f"the relay on {self.path} did not answer within {self.timeout:g} s") from None
            except (OSError, EOFError, ValueError) as exc:
                self._drop()
                why = f"{type(exc).__name__} {exc}"
                raise ProtocolError(f"the relay on {self.path} failed mid-command: {why}") from None
        out = []
        for (cmd, _), res in zip(cmds, reply.get("results") or [], strict=True):
            if "return" not in res:
                err = res.get("error") or {}
                raise _refused(cmd, str(err.get("class", "")), str(err.get("desc", res)))
            out.append(res["return"])
        return out
