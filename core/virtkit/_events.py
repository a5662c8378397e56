"""Domain events as a stream: a bounded queue the driver's callback fills (``Connection.events()``).

Imported on first use: most processes never ask for events, and ``queue`` is not on the start-up path.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._errors import InvalidArgument, VirtError
from ._types import DomainEvent

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["EventStream"]


def _wait_seconds(timeout: object) -> float | None:
    """None for no limit, else seconds >= 0; NaN, negatives and non-numbers refused."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgument(f"timeout must be a number of seconds or None, got {type(timeout).__name__}")
    if not timeout >= 0:  # also NaN
        raise InvalidArgument(f"timeout must be 0 or more seconds, got {timeout!r}")
    # queue.get's wait ends in a C timespec: one past threading's ceiling is a wait without end
    return None if timeout >= threading.TIMEOUT_MAX else float(timeout)


class _Callback:
    """What an EventStream registers: called with each event. A driver whose event source dies
    (a remote link) calls ``virtkit_error(exc)`` where the callback has it; the stream raises it."""

    __slots__ = ("_stream",)

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream

    def __call__(self, event: DomainEvent) -> None:
        self._stream._push(event)

    def virtkit_error(self, error: VirtError) -> None:
        self._stream._end(error)


_ENDED: Any = object()  # queued after the last event of a stream whose source died


class EventStream:
    """Domain events delivered into a bounded queue; iterate with :meth:`get` or ``for``.

    The driver's callback runs on the driver's thread and only enqueues; a full queue drops the
    oldest event and counts it in ``dropped`` rather than blocking the driver. When the driver's
    event source dies (a remote link), :meth:`get` and :meth:`iter` raise its typed error after
    the events received before it, instead of waiting for events that cannot come.
    """

    def __init__(self, conn: Connection, maxsize: int = 1000) -> None:
        self._q: queue.Queue[DomainEvent] = queue.Queue(maxsize)
        self.dropped = 0
        self.error: VirtError | None = None
        self._cancel = conn.domain_event_register(_Callback(self))

    def _end(self, error: VirtError) -> None:
        if self.error is None:
            self.error = error
            self._push(_ENDED)

    def _push(self, event: DomainEvent) -> None:
        while True:
            try:
                self._q.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float | None) -> DomainEvent | None:
        """The next event, or None after ``timeout`` seconds: 0 polls, None or ``inf`` waits
        forever; a negative or NaN timeout is an InvalidArgument."""
        wait = _wait_seconds(timeout)
        try:
            event = self._q.get_nowait() if wait == 0 else self._q.get(timeout=wait)
        except queue.Empty:
            return None
        if event is _ENDED:
            self._push(_ENDED)  # every later get() raises too
            assert self.error is not None
            raise self.error
        return event

    def iter(self, timeout: float | None) -> Iterator[DomainEvent]:
        """Events until ``timeout`` seconds have passed in total (None or ``inf``: forever)."""
        wait = _wait_seconds(timeout)
        if wait is None:
            while True:
                ev = self.get(None)
                if ev is not None:
                    yield ev
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ev = self.get(left)
            if ev is not None:
                yield ev

    def close(self) -> None:
        self._cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
