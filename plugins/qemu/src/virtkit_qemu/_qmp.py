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
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from virtkit import ConnectionClosed, DriverError, InvalidOperation, ProtocolError
from virtkit import TimeoutError as VirtTimeout
from virtkit.daemon import stale

from ._relay import RELAY

__all__ = ["CommandLink", "Commands", "Loop", "QMPError", "RelayClient", "RelayMissing", "batch_results"]

_T = TypeVar("_T")
log = logging.getLogger("virtkit.qemu")

# Errors QEMU reports for a command the current state forbids ("VM is not running", ...).
_STATE_ERRORS = ("GenericError",)
#: A line from the relay longer than this is not a reply (the largest, info()'s three queries,
#: is a few KiB per vcpu): the link is dropped instead of buffering without end.
LINE_MAX = 4 << 20

Commands = tuple[tuple[str, Mapping[str, object] | None], ...]


def _refused(cmd: str, cls: str, desc: str) -> Exception:
    if cls in _STATE_ERRORS:
        return InvalidOperation(f"QEMU refused {cmd!r}: {desc}")
    if cls == "RelayTimeout":  # QEMU did not answer the relay in time (hung, or stopped)
        return VirtTimeout(f"QMP {cmd!r}: {desc}")
    if cls == "RelayError":
        return ProtocolError(f"QMP {cmd!r} through the relay failed: {desc}")
    return DriverError(f"QEMU refused {cmd!r}: {desc}")


def _left(until: float, what: str) -> float:
    left = until - time.monotonic()
    if left <= 0:
        raise VirtTimeout(f"{what}: the operation's deadline passed")
    return left


def batch_results(cmds: Commands, reply: object) -> list[Any]:
    """The results of a batch reply from the relay, in order, or the first command's error.

    A reply of the wrong shape (not one result object per command) is a ProtocolError.
    """
    results = reply.get("results") if isinstance(reply, dict) else None
    if not isinstance(results, list) or len(results) != len(cmds) or not all(isinstance(r, dict) for r in results):
        raise ProtocolError(f"the relay answered a batch of {len(cmds)} with {str(reply)[:120]}")
    out = []
    for (cmd, _), res in zip(cmds, results, strict=True):
        if "return" not in res:
            err = res.get("error")
            err = err if isinstance(err, dict) else {}
            raise _refused(cmd, str(err.get("class", "")), str(err.get("desc", res))[:500])
        out.append(res["return"])
    return out


class Loop:
    """An event loop on a daemon thread; sync callers submit coroutines with a timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._relays: dict[str, RelayClient] = {}  # run directory -> this driver's relay connection
        self._connecting = asyncio.Lock()
        self._thread = threading.Thread(target=self._loop.run_forever, name="virtkit-qemu-qmp", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], until: float) -> _T:
        """Run ``coro`` on the loop; it bounds itself by ``until`` (a time.monotonic() deadline,
        the loop's clock too), and this wait is a backstop a little later."""
        if self._loop.is_closed() or not self._loop.is_running():
            coro.close()  # never scheduled: close it so it is not reported as never awaited
            raise ConnectionClosed("the qemu driver connection is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(max(0.0, until - time.monotonic()) + 0.2)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise VirtTimeout(f"QMP did not answer within {self.timeout:g} s") from None
        except concurrent.futures.CancelledError:  # the loop was shut down under the call
            raise ConnectionClosed("the qemu driver connection is closed") from None

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

    async def execute_direct(self, sock: str | socket.socket, cmds: Commands, until: float) -> list[Any]:
        """Several commands on one fresh QMP connection to ``sock`` (a path, or a connected
        socket) when the domain has no relay, all of it (connect, greeting, negotiation, the
        commands, the goodbye) ending by ``until``."""
        client = QMPClient("virtkit")
        cmd = cmds[0][0]
        try:
            async with asyncio.timeout_at(until):
                await client.connect(sock)
                out = []
                for cmd, args in cmds:
                    out.append(await client.execute(cmd, args))
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
        except Exception as exc:
            # qemu.qmp lets some failures of its reader through untyped (an AssertionError in
            # connect when the monitor's first lines break it, the parser's own errors): the
            # monitor sent what QMP is not
            raise ProtocolError(f"QMP {cmd!r} on {sock}: {type(exc).__name__} {exc}") from exc
        finally:
            try:
                # what is left of the deadline (a moment at least: closing a socket is quick)
                await asyncio.wait_for(client.disconnect(), max(0.05, until - time.monotonic()))
            except Exception:  # noqa: BLE001 - disconnect re-raises the reader's failure: reported above
                pass

    async def _quiet_disconnect(self, client: QMPClient) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), min(self.timeout, 5.0))
        except (TimeoutError, QMPError, OSError, EOFError):
            pass

    # -- the relay ---------------------------------------------------------------------------

    async def _relay(self, rundir: str, until: float) -> RelayClient | None:
        """This driver's connection to the relay of ``rundir``, made on first use; None if none."""
        client = self._relays.get(rundir)
        if client is not None and not client.closed:
            return client
        async with asyncio.timeout_at(until), self._connecting:
            client = self._relays.get(rundir)
            if client is not None and not client.closed:
                return client
            client = RelayClient(os.path.join(rundir, RELAY), self.timeout)
            try:
                await client.connect(until)
            except RelayMissing:
                return None
            self._relays[rundir] = client
            return client

    def forget(self, rundir: str) -> None:
        """Drop the relay connection of a domain that is gone (call from any thread)."""
        client = self._relays.pop(rundir, None)
        if client is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(client.close)

    async def listen(self, rundir: str, on_event: Callable[[str, str], None], until: float) -> bool:
        """Subscribe ``on_event(kind, detail)`` to the domain's events; False when it has no relay.

        Returns once the relay confirmed the subscription: every later change is seen.
        """
        try:
            client = await self._relay(rundir, until)
        except TimeoutError:
            raise VirtTimeout(f"the relay of {rundir} did not answer within {self.timeout:g} s") from None
        if client is None:
            return False
        try:
            await client.listen(on_event, until)
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

    async def connect(self, until: float) -> None:
        """Connect and read the greeting by ``until``: no relay (nothing listens, or something
        else answers) is RelayMissing; a relay that does not greet in time, TimeoutError."""
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                async with asyncio.timeout_at(until):
                    reader, writer = await asyncio.open_unix_connection(self.path, limit=LINE_MAX)
                    greeting = json.loads(await reader.readline() or b"null")
            except TimeoutError:
                raise VirtTimeout(f"the relay on {self.path} did not greet within {self.timeout:g} s") from None
            except (OSError, ValueError, RecursionError) as exc:
                raise RelayMissing(f"no relay on {self.path}: {type(exc).__name__} {exc}") from None
            if not isinstance(greeting, dict) or greeting.get("relay") != 1:
                raise RelayMissing(f"no relay on {self.path}: greeted with {str(greeting)[:120]}")
        except BaseException:  # also a cancellation by an enclosing deadline: close, don't leak
            self.closed = True
            if writer is not None:
                writer.close()
            raise
        self._writer = writer
        self._reader = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                self._handle(json.loads(line))
        except (OSError, ValueError, RecursionError):
            pass  # a broken line or stream ends the connection like EOF
        self.closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(RelayMissing(f"the relay on {self.path} closed"))
        self._pending.clear()
        if self._on_event is not None and not self._gone:
            self._deliver("lost", "")  # the relay died under a running domain
        if self._writer is not None:
            self._writer.close()

    def _handle(self, msg: object) -> None:
        if not isinstance(msg, dict):
            raise ValueError(f"not a relay message: {str(msg)[:80]}")
        rid = msg.get("id")
        if isinstance(rid, int):
            fut = self._pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif "event" in msg:
            kind = str(msg["event"])
            self._gone = self._gone or kind == "gone"
            if self._on_event is not None:
                self._deliver(kind, str(msg.get("detail", "")))

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

    async def call(self, msg: dict[str, Any], until: float) -> Any:
        if self.closed or self._writer is None:
            raise RelayMissing(f"the relay on {self.path} closed")
        rid = self._next
        self._next += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._writer.write((json.dumps({**msg, "id": rid}) + "\n").encode())
            async with asyncio.timeout_at(until):
                return await fut
        except TimeoutError:
            # A relay that does not answer in time is stuck (stopped, overloaded): this
            # connection is dropped (a late answer could not be matched to anything useful).
            self.close()
            raise VirtTimeout(f"the relay on {self.path} did not answer within {self.timeout:g} s") from None
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            self._pending.pop(rid, None)

    async def listen(self, on_event: Callable[[str, str], None], until: float) -> None:
        self._on_event = on_event
        try:
            await self.call({"listen": True}, until)
        except BaseException:
            self._on_event = None
            raise


class CommandLink:
    """A blocking unix connection to a domain's relay, for commands only (no event arrives on it).

    Synchronous on purpose: a command costs one write and one read on the caller's thread, with
    no hop to the event-loop thread. One command batch at a time (a lock). Everything a command
    waits for (the lock, connecting, the greeting, sending, the reply) ends by its deadline;
    after a timeout or a broken reply the link is closed, and the next command reconnects.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next = 1

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buf = b""

    def _readline(self, sock: socket.socket, until: float) -> bytes:
        while b"\n" not in self._buf:
            if len(self._buf) > LINE_MAX:
                raise ValueError(f"a line of more than {LINE_MAX} bytes")
            sock.settimeout(_left(until, f"the relay on {self.path}"))
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise EOFError("the relay closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _connect(self, until: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(_left(until, f"the relay on {self.path}"))
            sock.connect(self.path)
            self._buf = b""
            greeting = json.loads(self._readline(sock, until))
        except (TimeoutError, VirtTimeout):
            # Something listens but does not greet in time: a relay that is stuck (stopped,
            # overloaded). Going around it to QEMU would overrun the deadline: say so instead.
            sock.close()
            raise VirtTimeout(f"the relay on {self.path} did not greet within {self.timeout:g} s") from None
        except (OSError, EOFError, ValueError, RecursionError) as exc:
            sock.close()
            raise RelayMissing(f"no relay on {self.path}: {type(exc).__name__} {exc}") from None
        if not isinstance(greeting, dict) or greeting.get("relay") != 1:
            sock.close()
            raise RelayMissing(f"no relay on {self.path}: greeted with {str(greeting)[:120]}")
        return sock

    def execute_many(self, cmds: Commands, until: float) -> list[Any]:
        """The commands' results, in order, by ``until`` (a time.monotonic() deadline); raises
        RelayMissing when no relay could be reached before anything was sent (the caller may
        then go to QEMU directly)."""
        if not self._lock.acquire(timeout=_left(until, f"the relay on {self.path}")):
            raise VirtTimeout(f"the relay on {self.path}: another command held the link past the deadline")
        try:
            if self._sock is not None and stale(self._sock):
                self._drop()  # the relay went away since our last command (a new one may be up)
            if self._sock is None:
                self._sock = self._connect(until)
            sock, rid = self._sock, self._next
            self._next += 1
            batch = [[c, dict(a) if a else None] for c, a in cmds]
            try:
                sock.settimeout(_left(until, f"the relay on {self.path}"))
                sock.sendall((json.dumps({"id": rid, "batch": batch}) + "\n").encode())
                while True:
                    reply = json.loads(self._readline(sock, until))
                    if isinstance(reply, dict) and reply.get("id") == rid:
                        break
            except (TimeoutError, VirtTimeout):
                self._drop()  # a late reply must not be taken for the next command's
                raise VirtTimeout(f"the relay on {self.path} did not answer within {self.timeout:g} s") from None
            except (OSError, EOFError, ValueError, RecursionError) as exc:  # RecursionError: deep JSON
                self._drop()
                why = f"{type(exc).__name__} {exc}"
                raise ProtocolError(f"the relay on {self.path} failed mid-command: {why}") from None
        finally:
            self._lock.release()
        return batch_results(cmds, reply)
