"""A XenStore watch: the events of one token, queued for the caller (the client's pump fills it)."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Iterator

from virtkit import ConnectionClosed, InvalidArgument, VirtError

from ._channel import SLICE
from ._wire import Op, PathExists, PathNotFound, check_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    from ._client import Client

    class _WatchEvent(NamedTuple):
        path: str
        token: str
else:
    _WatchEvent = collections.namedtuple("_WatchEvent", "path token", module=__name__)

__all__ = ["Watch", "WatchEvent"]


class WatchEvent(_WatchEvent):
    __slots__ = ()


class Watch:
    """Events of one watch token over one or more paths. ``get(timeout)`` returns the next
    :class:`WatchEvent` or None; iterating yields events until the watch is closed. The queue is
    bounded: beyond ``maxsize`` the oldest event is dropped and counted in ``dropped``."""

    __slots__ = ("_client", "_closed", "_cv", "_maxsize", "_q", "dropped", "paths", "token")

    def __init__(self, client: Client, token: bytes, paths: tuple[str, ...], maxsize: int) -> None:
        self._client = client
        self.token = token
        self.paths = paths
        self._q: collections.deque[WatchEvent] = collections.deque()
        self._cv = threading.Condition(threading.Lock())
        self._closed = False
        self._maxsize = max(1, maxsize)
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<virtkit_xenstore.Watch {list(self.paths)} token={self.token.decode()!r}>"

    def _push(self, ev: WatchEvent) -> None:
        with self._cv:
            if len(self._q) >= self._maxsize:
                self._q.popleft()
                self.dropped += 1
            self._q.append(ev)
            self._cv.notify()

    def _end(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event; None after ``timeout`` seconds (None or inf: no limit; 0 or less:
        don't wait) or once the watch is closed."""
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout):
                raise InvalidArgument(f"timeout must be a number of seconds or None, got {timeout!r}")
            if math.isinf(timeout) and timeout > 0:
                timeout = None
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        with self._cv:
            while not self._q:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cv.wait(remaining if remaining is not None else SLICE * 5)
            return self._q.popleft()

    def drain(self) -> list[WatchEvent]:
        with self._cv:
            out = list(self._q)
            self._q.clear()
            return out

    def __iter__(self) -> Iterator[WatchEvent]:
        while True:
            ev = self.get(SLICE * 5)
            if ev is not None:
                yield ev
            elif self._closed:
                return

    def add(self, *paths: str) -> None:
        """Watch more paths under this token, pipelined (one round trip); xenstored fires once
        for each right away. Like the first ones, they are registered again after a reconnect."""
        new = self._checked(paths)
        new = [p for p in dict.fromkeys(new) if p not in self.paths]
        if self._closed:
            raise ConnectionClosed("xenstore: the watch is closed")
        if not new:
            return
        # Known before sending: a reconnect in between registers them (then EEXIST, harmless).
        self.paths = (*self.paths, *new)
        self._send(Op.WATCH, new, PathExists)

    def remove(self, *paths: str) -> None:
        """Stop watching these paths (UNWATCH, pipelined); paths not watched are ignored."""
        gone = [p for p in dict.fromkeys(self._checked(paths)) if p in self.paths]
        if not gone:
            return
        self.paths = tuple(p for p in self.paths if p not in gone)
        if not self._closed:
            self._send(Op.UNWATCH, gone, PathNotFound)

    @staticmethod
    def _checked(paths: tuple[str, ...]) -> list[str]:
        if not paths:
            raise InvalidArgument("name at least one path")
        for p in paths:
            check_path(p, watch=True)
        return list(paths)

    def _send(self, op: Op, paths: list[str], harmless: type[VirtError]) -> None:
        tok = self.token + b"\0"
        with self._client.deadline():
            replies = self._client._request_many([(op, check_path(p, watch=True) + tok, p) for p in paths])
        refused = [
            (p, r)
            for p, r in zip(paths, replies, strict=True)
            if isinstance(r, VirtError) and not isinstance(r, harmless)
        ]
        if refused:
            if op == Op.WATCH:  # not registered: not to be registered again after a reconnect
                self.paths = tuple(p for p in self.paths if p not in {p for p, _r in refused})
            raise refused[0][1]

    def close(self) -> None:
        """UNWATCH every path; further events are ignored."""
        if self._closed:
            return
        self._client._forget(self)
        self._end()
        errors: list[VirtError] = []
        with self._client.deadline():  # one deadline for all the UNWATCHes (a frozen daemon)
            for p in self.paths:
                try:
                    self._client.unwatch(p, self.token.decode())
                except VirtError as exc:
                    errors.append(exc)
        if errors and not isinstance(errors[0], ConnectionClosed):
            raise errors[0]

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
