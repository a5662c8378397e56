"""``virtkit serve --stdio [URI]``: this host's plugins, served over stdin/stdout.

The far end of a ``SCHEME+ssh://`` or ``SCHEME+ext://`` connection. It opens URI here with normal
discovery and composition and answers the protocol of :mod:`virtkit._rpc`: every catalogue
operation the composition serves, nothing else. Read-only is enforced here too (the client's
hello may ask for it, ``--readonly`` forces it), and every value entering goes through the same
checks as the public API's.

Calls are answered by the thread that read them. One thread reads and answers in turn while
calls are quick; a watcher sees a call running longer than 20 ms with no thread reading, and
starts another reader (up to 8 threads), so a slow operation delays a keepalive answer or
another call by 20 ms at most. The
protocol owns the real stdin and stdout: fd 1 is pointed at stderr and fd 0 at /dev/null before
any plugin is imported, so a plugin that prints cannot corrupt the stream.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from ._catalogue import CATALOGUE
from ._connection import Connection
from ._connection import open as open_connection
from ._errors import InvalidArgument, ProtocolError, ReadOnlyError, VirtError
from ._input import check_domain_config, check_memory, check_timeout, check_vcpus
from ._rpc import PROTOCOL, FrameReader, decode_value, encode_error, encode_event, encode_frame, encode_value
from ._types import DomainEvent

__all__ = ["serve_stdio"]

log = logging.getLogger("virtkit.serve")

_WORKERS = 8
#: How long a call may run with no thread reading before the watcher starts a reader.
_TAKEOVER = 0.02
#: The watcher ticks only while the link is busy: after this long without a message it sleeps
#: until the next one.
_QUIET = 0.5
_HELLO_WAIT = 60.0  # a client that never says hello is not a client
_REGISTER = "connect_domain_event_register"
_FLAGS_LIMIT = 2**32


def _checked(name: str, type_name: str, value: Any) -> Any:
    """The public API's input checks, for values that arrive over the link instead."""
    if type_name == "DomainConfig":
        return check_domain_config(value)
    if name == "memory":
        return check_memory(value)
    if name == "count":
        return check_vcpus(value)
    return value


class _Server:
    def __init__(self, rfd: int, wfd: int, uri: str | None, readonly: bool) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.uri = uri
        self.readonly = readonly
        self.conn: Connection | None = None
        self.silence = _HELLO_WAIT
        self._wlock = threading.Lock()
        self._subs: dict[int, Callable[[], None]] = {}
        self._plock = threading.Lock()
        self._lead = threading.Lock()  # held by the one thread reading the stream
        self._threads = 0
        self._spare = 0  # threads waiting to lead
        self._unread_since: float | None = None  # every thread answers a call: none reads
        self._busy = threading.Event()  # wakes the watcher from a quiet link
        self._done = threading.Event()
        self._rc = 0
        self._floor = 0
        self._frames = FrameReader()
        self._backlog: collections.deque[dict[str, Any]] = collections.deque()
        self._poller = select.poll()
        self._poller.register(rfd, select.POLLIN)
        self._last = time.monotonic()
        self._broken = False

    # -- output ------------------------------------------------------------------------------

    def send(self, msg: dict[str, Any]) -> None:
        try:
            frame = encode_frame(msg)
        except (ProtocolError, TypeError, ValueError) as exc:  # a reply too big, or not JSON
            err = exc if isinstance(exc, VirtError) else ProtocolError(f"reply does not encode: {exc}")
            frame = encode_frame({"k": "error", "id": msg.get("id", 0), "error": encode_error(err)})
        with self._wlock:
            if self._broken:
                return
            view = memoryview(frame)
            try:
                while view:
                    view = view[os.write(self.wfd, view) :]
            except OSError:  # the client went away: the reader sees EOF and ends the loop
                self._broken = True

    def fail(self, call_id: int, exc: BaseException) -> None:
        if call_id == 0:  # the link itself failed: the server's status is 1, even if EOF follows at once
            self._floor = 1
        self.send({"k": "error", "id": call_id, "error": encode_error(exc)})

    # -- the loop ----------------------------------------------------------------------------

    # One thread at a time reads (the leader). Having read a call, it answers it itself: the
    # reply leaves from the thread that read the call, and no other thread is woken on the way
    # (a hand-over per call, on two cores shared with ssh, costs more than the rest of serving
    # it). If no thread is back at reading 20 ms later, the watcher starts one more, up to 8:
    # a slow call never holds up a keepalive or another call for longer. Extra threads end
    # once they are not needed to read.

    def run(self) -> int:
        self._spawn()
        threading.Thread(target=self._watch, name="virtkit-serve-watch", daemon=True).start()
        self._done.wait()
        return self._rc

    def _finish(self, rc: int) -> None:
        with self._plock:
            if not self._done.is_set():
                self._rc = max(rc, self._floor)
                self._done.set()
        self._busy.set()  # the watcher ends too

    def _spawn(self) -> None:
        with self._plock:
            self._threads += 1
        threading.Thread(target=self._follow, name="virtkit-serve", daemon=True).start()

    def _follow(self) -> None:
        while not self._done.is_set():
            with self._plock:
                self._spare += 1
            with self._lead:
                with self._plock:
                    self._spare -= 1
                    self._unread_since = None
                if self._done.is_set():
                    return
                msg = self._read()
                with self._plock:
                    if self._spare == 0:
                        self._unread_since = time.monotonic()
            if msg is None:
                return
            if not self.handle(msg):
                self._finish(1)
                return
            with self._plock:
                if self._threads > 1 and (self._spare > 0 or self._lead.locked()):
                    self._threads -= 1  # another thread reads: this one is not needed
                    return

    def _watch(self) -> None:
        while not self._done.is_set():
            if time.monotonic() - self._last > _QUIET and self._unread_since is None:
                self._busy.clear()
                if time.monotonic() - self._last > _QUIET and self._unread_since is None:
                    self._busy.wait()  # a quiet link: no ticking until the next message
                    continue
            self._done.wait(_TAKEOVER)
            with self._plock:
                since = self._unread_since
                start = since is not None and time.monotonic() - since >= _TAKEOVER and self._threads < _WORKERS
                if start:
                    self._unread_since = None  # the new thread reads
            if start:
                self._spawn()

    def _read(self) -> dict[str, Any] | None:
        """The next message from the client (one: several read at once are answered by several
        threads); None when the server ends (EOF, silence, garbage)."""
        while not self._done.is_set():
            if self._backlog:
                return self._backlog.popleft()
            wait = self.silence - (time.monotonic() - self._last)
            if wait <= 0:
                log.warning("serve: nothing from the client for %.0fs, ending", self.silence)
                self._finish(1)
                return None
            if not self._poller.poll(int(wait * 1000) + 1):
                continue
            try:
                data = os.read(self.rfd, 1 << 16)
            except OSError:
                self._finish(1)
                return None
            if not data:
                self._finish(0)
                return None
            now = time.monotonic()
            quiet, self._last = now - self._last > _QUIET, now
            if quiet:  # after _last moved: the watcher checks it between clearing and waiting
                self._busy.set()  # wake the watcher: a quiet link got busy
            try:
                self._backlog.extend(self._frames.feed(data))
            except ProtocolError as exc:
                self.fail(0, exc)  # the stream cannot be resynchronised: say why and end
                self._finish(1)
                return None
        return None

    def handle(self, msg: dict[str, Any]) -> bool:
        kind = msg["k"]
        if self.conn is None:
            return self.hello(msg)
        if kind == "call":
            call_id = msg.get("id")
            if not isinstance(call_id, int) or isinstance(call_id, bool) or call_id <= 0:
                self.fail(0, ProtocolError(f"call without a valid id: {call_id!r:.40}"))
                return False
            self.call(msg)
        elif kind == "keepalive":
            if not msg.get("ack"):
                self.send({"k": "keepalive", "ack": True})
        elif kind == "cancel":
            cancel = self._subs.pop(msg.get("sub"), None)  # type: ignore[arg-type]
            if cancel is not None:
                cancel()
        else:
            self.fail(0, ProtocolError(f"unknown message kind {kind!r:.40}"))
            return False
        return True

    def hello(self, msg: dict[str, Any]) -> bool:
        if msg["k"] != "hello":
            self.fail(0, ProtocolError(f"expected hello, got {msg['k']!r:.40}"))
            return False
        if msg.get("proto") != PROTOCOL:
            self.fail(0, ProtocolError(f"protocol {msg.get('proto')!r:.20} is not spoken here (this side: {PROTOCOL})"))
            return False
        try:
            timeout = check_timeout(msg.get("timeout", 30.0))
            interval = check_timeout(msg.get("keepalive", 10.0), "keepalive")
            self.readonly = self.readonly or bool(msg.get("readonly"))
            self.conn = open_connection(self.uri, readonly=self.readonly, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - every failure to open is told to the client, typed
            self.fail(0, exc)
            return False
        # The client pings every `interval` when idle: silence well past that is a dead client.
        self.silence = 4 * interval + timeout
        from ._version import __version__

        served = {op: plugin for op in CATALOGUE if (plugin := self.conn.served_by(op))}
        self.send(
            {
                "k": "hello",
                "proto": PROTOCOL,
                "virtkit": __version__,
                "uri": str(self.conn.uri),
                "readonly": self.readonly,
                "served": served,
                "explain": self.conn.explain().to_dict(),
            }
        )
        return True

    # -- calls ---------------------------------------------------------------------------------

    def call(self, msg: dict[str, Any]) -> None:
        call_id: int = msg["id"]
        name = msg.get("op")
        conn = self.conn
        assert conn is not None
        op = CATALOGUE.get(name) if isinstance(name, str) else None
        try:
            if op is None:
                raise ProtocolError(f"unknown operation {name!r:.60}")
            args, flags = msg.get("args", []), msg.get("flags", 0)
            wanted = 0 if op.name == _REGISTER else len(op.params)  # the callback stays on the client
            if not isinstance(args, list) or len(args) != wanted:
                raise ProtocolError(f"{op.name} takes {wanted} argument(s) over the link")
            if not isinstance(flags, int) or isinstance(flags, bool) or not 0 <= flags < _FLAGS_LIMIT:
                raise InvalidArgument(f"bad flags {flags!r:.40}")
            if op.mutates and self.readonly:
                raise ReadOnlyError(f"{op.name} mutates and the connection to {conn.uri} is read-only")
            if op.name == _REGISTER:
                self._subs[call_id] = conn.vtable[_REGISTER](self._forward(call_id), flags=flags)
                self.send({"k": "reply", "id": call_id, "value": call_id})
                return
            values = [_checked(p.name, p.type, decode_value(p.type, a)) for p, a in zip(op.params, args, strict=True)]
            result = conn.vtable[op.name](*values, flags=flags)
            self.send({"k": "reply", "id": call_id, "value": encode_value(op.returns, result)})
        except Exception as exc:  # noqa: BLE001 - every failure goes back typed, as the API would raise it
            self.fail(call_id, conn._fail(op.name, exc) if op is not None else exc)

    def _forward(self, sub: int) -> Callable[[DomainEvent], None]:
        def forward(event: DomainEvent) -> None:
            self.send({"k": "event", "sub": sub, "event": encode_event(event)})

        return forward

    def close(self) -> None:
        for cancel in list(self._subs.values()):
            try:
                cancel()
            except Exception as exc:  # noqa: BLE001 - closing goes on
                log.warning("serve: cancelling an event subscription failed: %s", exc)
        self._subs.clear()
        if self.conn is not None:
            try:
                self.conn.close()
            except VirtError as exc:
                log.warning("serve: closing %s failed: %s", self.conn.uri, exc)


def serve_stdio(uri: str | None, *, readonly: bool = False) -> int:
    """Serve ``uri`` (None: the default URI) over this process's stdin and stdout until EOF."""
    rfd, wfd = os.dup(0), os.dup(1)
    # From here on fd 0/1 are not the protocol's: a plugin's print() lands on stderr.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    server = _Server(rfd, wfd, uri, readonly)
    try:
        return server.run()
    finally:
        server.close()
        for fd in (rfd, wfd):
            try:
                os.close(fd)
            except OSError:
                pass
