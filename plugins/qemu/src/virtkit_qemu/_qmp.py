"""QMP through ``qemu.qmp``: one private asyncio loop thread per driver, every wait bounded.

Commands use a short-lived QMP connection each (connect, negotiate, execute, disconnect) on the
domain's ``qmp.sock``: a QEMU monitor serves one client at a time, and several virtkit connections
(other processes too) must be able to drive the same domain. Events use one of the domain's
event monitors (``events-N.sock``), held open by a connection that listens: one per listener.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from virtkit import ConnectionClosed, DriverError, InvalidOperation, ProtocolError
from virtkit import TimeoutError as VirtTimeout

__all__ = ["Loop", "QMPError"]

_T = TypeVar("_T")
log = logging.getLogger("virtkit.qemu")

# Errors QEMU reports for a command the current state forbids ("VM is not running", ...).
_STATE_ERRORS = ("GenericError",)


class Loop:
    """An event loop on a daemon thread; sync callers submit coroutines with a timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._clients: set[QMPClient] = set()  # the events listeners' connections
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
            # Disconnecting ends each listener's ``async for`` normally; cancel only stragglers.
            await asyncio.gather(*(self._quiet_disconnect(c) for c in list(self._clients)))
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

    async def execute(self, sock: str, cmd: str, args: Mapping[str, object] | None = None) -> Any:
        """One command on a fresh QMP connection; QMP errors become virtkit errors."""
        return (await self.execute_many(sock, ((cmd, args),)))[0]

    async def execute_many(self, sock: str, cmds: tuple[tuple[str, Mapping[str, object] | None], ...]) -> list[Any]:
        """Several commands on one fresh connection (a connection costs more than a command)."""
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
            if exc.error_class in _STATE_ERRORS:
                raise InvalidOperation(f"QEMU refused {cmd!r}: {exc}") from exc
            raise DriverError(f"QEMU refused {cmd!r}: {exc}") from exc
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

    async def _connect_first(self, socks: list[str]) -> QMPClient | None:
        """Connect to every socket at once; keep the first monitor that greets, drop the rest.

        A monitor another connection holds never greets (QEMU serves one client per monitor), so
        a domain has several event monitors and each listener takes a free one.
        """
        clients = [QMPClient("virtkit-events") for _ in socks]
        tasks = [asyncio.ensure_future(c.connect(s)) for c, s in zip(clients, socks, strict=True)]
        winner: QMPClient | None = None
        pending = set(tasks)
        deadline = asyncio.get_running_loop().time() + min(self.timeout, 5.0)
        while pending and winner is None:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if winner is None and not t.cancelled() and t.exception() is None:
                    winner = clients[tasks.index(t)]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)
        for c in clients:
            if c is not winner:
                await self._quiet_disconnect(c)
        return winner

    async def listen(
        self,
        socks: list[str],
        on_event: Callable[[str, Mapping[str, Any]], None],
        ready: concurrent.futures.Future[bool] | None = None,
    ) -> None:
        """Hold a free event monitor and hand every QMP event to ``on_event`` until it closes.

        ``ready`` gets True once connected (events from then on are seen), False if none was free.
        """
        try:
            client = await self._connect_first(socks)
        except asyncio.CancelledError:
            if ready is not None and not ready.done():
                ready.set_result(False)
            raise
        if ready is not None and not ready.done():
            ready.set_result(client is not None)
        if client is None:
            return
        self._clients.add(client)
        try:
            async for event in client.events:
                data = event.get("data")
                on_event(str(event["event"]), data if isinstance(data, Mapping) else {})
        except (TimeoutError, QMPError, OSError, EOFError):
            pass  # the domain went away
        except asyncio.CancelledError:
            self._clients.discard(client)
            await self._quiet_disconnect(client)
            raise
        # Not in a finally: a coroutine closed by the garbage collector must not await.
        self._clients.discard(client)
        await self._quiet_disconnect(client)

    async def _quiet_disconnect(self, client: QMPClient) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), min(self.timeout, 5.0))
        except (TimeoutError, QMPError, OSError, EOFError):
            pass
