"""The XenStore client: every 4.17 message type a toolstack uses, transactions, watches.

``Client`` is thread-safe: threads share one connection and their requests are pipelined (see
_conn.Conn). A broken connection is replaced on the next call and its watches re-registered.
The layers: _wire (packets, paths, errors), _channel (the byte pipe) -> _conn (one connection)
-> _ops (node operations) -> _transaction, _watch -> _client -> _driver (catalogue methods) ->
_plugin (the hooks).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator

from virtkit import ConnectionClosed, InvalidArgument, ProtocolError, VirtError, check_timeout
from virtkit import TimeoutError as XsTimeout

from ._channel import SLICE, open_channel
from ._conn import Conn
from ._ops import Ops, domid_bytes, number, text
from ._wire import (
    Op,
    PathExists,
    PathNotFound,
    TransactionConflict,
    check_path,
    check_payload,
    parse_tx_id,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    # Imported where used: a connection that only reads (the CLI's) never loads them.
    from ._transaction import Transaction
    from ._watch import Watch

    _T = TypeVar("_T")

__all__ = ["Client", "default_paths"]

_DEFAULT_RUNDIR = "/var/run/xenstored"
_XENBUS_DEVICES = ("/dev/xen/xenbus", "/proc/xen/xenbus")
_tokens = itertools.count(1)


def default_paths() -> list[str]:
    """Where libxenstore looks, in order: ``$XENSTORED_PATH``, else the daemon socket
    (``$XENSTORED_RUNDIR/socket``, /var/run/xenstored/socket, /run/xenstored/socket), then the
    kernel's xenbus device."""
    env = os.environ.get("XENSTORED_PATH")
    if env:
        return [env]
    rundir = os.environ.get("XENSTORED_RUNDIR")
    socks = [os.path.join(rundir, "socket")] if rundir else [f"{_DEFAULT_RUNDIR}/socket", "/run/xenstored/socket"]
    return [*socks, *_XENBUS_DEVICES]


class Client(Ops):
    """A XenStore client over the xenstored unix socket or the xenbus device.

    ``path`` picks the socket or device; by default the first of :func:`default_paths` that
    exists. ``timeout`` (seconds, finite, above 0) bounds each call as a whole: connecting,
    sending, every reply it waits for (``virtkit.TimeoutError`` when it is spent); wrap several
    calls in :meth:`deadline` to bound them together. Connects lazily. ``pump=False``: no thread
    reads watch events while no call runs; they arrive with the next call's reply (in order:
    for a caller that only looks after a round trip, and saves the thread's wake-ups).

    >>> with Client() as xs:                                    # doctest: +SKIP
    ...     xs.read("/local/domain/0/name")
    b'Domain-0'
    """

    __slots__ = (
        "__weakref__",
        "_bound",
        "_closed",
        "_conn",
        "_local",
        "_lock",
        "_pump",
        "_pumped",
        "_watches",
        "path",
        "timeout",
    )

    def __init__(self, path: str | None = None, *, timeout: float = 30.0, pump: bool = True) -> None:
        self.path = path
        self._pumped = pump
        self.timeout = check_timeout(timeout)
        self._local = threading.local()  # .until: this thread's deadline() in force, if any
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        self._bound: str | None = None
        self._closed = False
        self._watches: dict[bytes, Watch] = {}
        self._pump: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<virtkit_xenstore.Client {self.path or 'default'}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- deadlines -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def deadline(self, timeout: float | None = None) -> Iterator[None]:
        """Bound every call this thread makes in the block by one deadline, ``timeout`` seconds
        (default: the client's) from now. Nested blocks can only shorten it."""
        seconds = self.timeout if timeout is None else check_timeout(timeout)
        outer: float | None = getattr(self._local, "until", None)
        until = time.monotonic() + seconds
        self._local.until = until if outer is None else min(outer, until)
        try:
            yield
        finally:
            self._local.until = outer

    def _bounded(self) -> contextlib.AbstractContextManager[None]:
        return self.deadline()

    def _until(self) -> float:
        until: float | None = getattr(self._local, "until", None)
        return time.monotonic() + self.timeout if until is None else until

    @staticmethod
    def _left(until: float) -> float:
        left = until - time.monotonic()
        if left <= 0:
            raise XsTimeout("xenstore: the operation's deadline passed")
        return left

    # -- connection ----------------------------------------------------------------------------

    def connect(self) -> Client:
        """Connect now (otherwise the first request does)."""
        self._current(self._until())
        return self

    def _candidates(self) -> list[str]:
        if self.path:
            return [self.path]
        if self._bound is not None:
            # Reconnect to what worked: after the daemon's socket went away, falling back to
            # xenbus would only reach the same dead daemon through the kernel, and hang.
            return [self._bound]
        return [p for p in default_paths() if os.path.exists(p)] or default_paths()[:1]

    def _current(self, until: float | None = None) -> Conn:
        c = self._conn
        if c is not None and c.broken is None:
            return c
        if until is None:
            until = self._until()
        # Another thread may be connecting: wait for it only as long as our own deadline allows.
        if not self._lock.acquire(timeout=self._left(until)):
            raise XsTimeout("xenstore: the operation's deadline passed while connecting")
        try:
            if self._closed:
                raise ConnectionClosed("xenstore: the client is closed")
            c = self._conn
            if c is not None and c.broken is None:
                return c
            errors = []
            candidates = self._candidates()
            if c is not None:
                c.close()
                self._conn = None
            for path in candidates:
                try:
                    chan = open_channel(path, self._left(until))
                except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
                    errors.append(f"{path!r}: {getattr(exc, 'strerror', None) or exc}")
                    continue
                c = Conn(chan, self._on_event)
                try:
                    for w in list(self._watches.values()):  # re-register after a reconnect
                        for wp in w.paths:
                            c.call(Op.WATCH, check_path(wp, watch=True) + w.token + b"\0", 0, wp, self._left(until))
                except VirtError:
                    c.close()
                    raise
                self._conn = c
                self._bound = path
                return c
            raise ConnectionClosed("xenstore: cannot reach xenstored (" + "; ".join(errors) + ")")
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            c, self._conn = self._conn, None
            watches = list(self._watches.values())
            self._watches.clear()
        for w in watches:
            w._end()
        if c is not None:
            c.close()
        pump = self._pump
        if pump is not None and pump is not threading.current_thread():
            pump.join(timeout=self.timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def channel_path(self) -> str | None:
        """The socket or device actually in use (None before connecting)."""
        c = self._conn
        return c.chan.path if c is not None else None

    def _request(self, op: Op, payload: bytes, path: str | None) -> bytes:
        until: float | None = getattr(self._local, "until", None)
        if until is None:
            c = self._conn
            if c is not None and c.broken is None:  # the hot path: connected, no deadline() block
                return c.call(op, payload, 0, path, self.timeout)
            until = time.monotonic() + self.timeout
        return self._current(until).call(op, payload, 0, path, self._left(until))

    def _request_many(self, requests: list[tuple[int, bytes, str | None]]) -> list[bytes | VirtError]:
        until = self._until()
        return self._current(until).call_many(requests, 0, self._left(until))

    def read_later(self, path: str) -> Callable[[], bytes | None]:
        """Send a READ of ``path`` now; the returned function waits for its reply: the node's
        value, None if there is no such node. For overlapping a round trip with other work
        (events fired before the daemon answers it are queued once the reply is in); the
        deadline (the client's timeout, or the enclosing :meth:`deadline`) runs from now."""
        until = self._until()
        c = self._current(until)
        p = c.submit(Op.READ, check_path(path), 0, path, until)

        def result() -> bytes | None:
            try:
                return c.finish(p, until)
            except PathNotFound:
                return None

        return result

    # -- other message types -------------------------------------------------------------------

    def is_domain_introduced(self, domid: int) -> bool:
        return self._request(Op.IS_DOMAIN_INTRODUCED, domid_bytes(domid), None).rstrip(b"\0") == b"T"

    def introduce_domain(self, domid: int, gfn: int, evtchn: int) -> None:
        """XS_INTRODUCE (privileged): tell xenstored about a new domain's ring page and port."""
        payload = domid_bytes(domid) + f"{number(gfn, 'gfn')}\0{number(evtchn, 'evtchn')}\0".encode()
        self._request(Op.INTRODUCE, payload, None)

    def release_domain(self, domid: int) -> None:
        """XS_RELEASE (privileged): xenstored forgets the domain; @releaseDomain fires."""
        self._request(Op.RELEASE, domid_bytes(domid), None)

    def resume_domain(self, domid: int) -> None:
        """XS_RESUME (privileged): clear the domain's shutdown flag after a suspend."""
        self._request(Op.RESUME, domid_bytes(domid), None)

    def set_target(self, domid: int, target: int) -> None:
        """XS_SET_TARGET (privileged): ``domid`` (a device model) may act on ``target``'s nodes."""
        self._request(Op.SET_TARGET, domid_bytes(domid) + domid_bytes(target), None)

    def reset_watches(self) -> None:
        """Drop every watch of this connection (daemon side) and end our Watch objects."""
        self._request(Op.RESET_WATCHES, b"\0", None)
        with self._lock:
            watches = list(self._watches.values())
            self._watches.clear()
        for w in watches:
            w._end()

    def control(self, command: str, *args: str | bytes) -> bytes:
        """XS_CONTROL (privileged; commands are daemon-specific, e.g. C xenstored's 'print')."""
        if not isinstance(command, str) or not all(isinstance(a, str | bytes) for a in args):
            raise InvalidArgument("control takes a str command and str or bytes arguments")
        parts = [command.encode(), *(a.encode() if isinstance(a, str) else bytes(a) for a in args)]
        payload = b"".join(x + b"\0" for x in parts)
        check_payload(payload)
        return self._request(Op.CONTROL, payload, None)

    # -- transactions --------------------------------------------------------------------------

    def transaction(self) -> Transaction:
        """Start a transaction; use it as a context manager (commit on success, else abort)."""
        until = self._until()
        c = self._current(until)
        reply = c.call(Op.TRANSACTION_START, b"\0", 0, None, self._left(until))
        try:
            tx_id = parse_tx_id(reply)
        except ProtocolError as exc:
            c.fail(exc)  # the daemon holds a transaction we cannot name: start afresh
            raise
        from ._transaction import Transaction

        return Transaction(self, c, tx_id)

    def transact(self, fn: Callable[[Transaction], _T], *, timeout: float | None = None) -> _T:
        """Run ``fn(tx)`` in a transaction and commit; on EAGAIN (a conflict) run it again,
        with a short randomised back-off, until ``timeout`` (default: the client's) is spent.
        Every request of every attempt shares that deadline."""
        with self.deadline(timeout):
            return self._transact(fn, self._until())

    def _transact(self, fn: Callable[[Transaction], _T], deadline: float) -> _T:
        delay = 0.001
        while True:
            with self.transaction() as tx:
                result = fn(tx)
                try:
                    tx.commit()
                except TransactionConflict:
                    if time.monotonic() + delay > deadline:
                        raise
                else:
                    return result
            import random  # a conflict's back-off only

            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.1)

    # -- watches -------------------------------------------------------------------------------

    def watch(self, *paths: str, token: str | None = None, maxsize: int = 10_000) -> Watch:
        """Watch ``paths`` (node paths or ``@introduceDomain``/``@releaseDomain``); events arrive
        in the returned Watch (xenstored fires once for each path right away)."""
        if not paths:
            raise InvalidArgument("watch needs at least one path")
        for p in paths:
            check_path(p, watch=True)
        if token is not None and not isinstance(token, str):
            raise InvalidArgument(f"a watch token must be a str, not {type(token).__name__}")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise InvalidArgument(f"maxsize must be an int, not {type(maxsize).__name__}")
        tok = (token if token is not None else f"vk{os.getpid()}-{next(_tokens)}").encode()
        if not tok or b"\0" in tok:
            raise InvalidArgument("a watch token must be non-empty without NUL")
        from ._watch import Watch

        w = Watch(self, tok, paths, maxsize)
        with self.deadline():
            self._current(self._until())  # connect first: a fresh connection re-registers known watches
            with self._lock:
                if tok in self._watches:
                    raise InvalidArgument(f"watch token {tok!r} already in use on this client")
                self._watches[tok] = w
            try:
                for p in paths:
                    try:
                        self._request(Op.WATCH, check_path(p, watch=True) + tok + b"\0", p)
                    except PathExists:
                        pass  # a reconnect in between registered it already
            except BaseException:
                self._forget(w)
                raise
        if self._pumped:
            self._start_pump()
        return w

    def unwatch(self, path: str, token: str) -> None:
        """Send UNWATCH for one (path, token) pair (PathNotFound if there is no such watch)."""
        if not isinstance(token, str) or not token or "\0" in token:
            raise InvalidArgument("a watch token must be a non-empty str without NUL")
        self._request(Op.UNWATCH, check_path(path, watch=True) + token.encode() + b"\0", path)

    def _forget(self, w: Watch) -> None:
        with self._lock:
            if self._watches.get(w.token) is w:
                del self._watches[w.token]

    def _on_event(self, path: bytes, token: bytes) -> None:
        w = self._watches.get(token)
        if w is not None:  # events for a token already unwatched may still arrive: ignore
            from ._watch import WatchEvent  # loaded by watch() already: a dict lookup

            w._push(WatchEvent(text(path), text(token)))

    def _start_pump(self) -> None:
        with self._lock:
            if self._pump is not None and self._pump.is_alive():
                return
            self._pump = threading.Thread(target=self._pump_loop, name="xenstore-watch-pump", daemon=True)
            self._pump.start()

    def _pump_loop(self) -> None:
        # While watches exist, someone must read even when no call is waiting: this thread.
        backoff = 0.05
        while not self._closed and self._watches:
            try:
                c = self._current(time.monotonic() + self.timeout)
            except VirtError:
                time.sleep(backoff)  # xenstored down: keep trying, watches come back with it
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            c.pump(time.monotonic() + SLICE)
        with self._lock:
            if self._pump is threading.current_thread():
                self._pump = None
