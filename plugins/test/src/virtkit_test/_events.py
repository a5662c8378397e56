"""The in-memory hypervisor's event hub: subscriptions, and delivery outside the driver's lock.

Events are queued under the driver's lock (so their order is the order of the changes) and
delivered after it is released, by whichever thread gets the dispatch guard first: a callback
may call back into the driver, and a slow callback never holds the state.
"""

from __future__ import annotations

import _thread  # threading is not on a cold start's path: a lock is all this needs
import collections
import itertools
import time
from collections.abc import Callable

from virtkit import DomainEvent, DomainEventType, DomainRef

__all__ = ["Callback", "EventHub"]

Callback = Callable[[DomainEvent], None]


class EventHub:
    """One driver connection's subscribers and queued events; ``lock`` is the driver's."""

    __slots__ = ("_callbacks", "_dispatching", "_lock", "_pending", "_subs", "_tokens")

    def __init__(self, lock: _thread.LockType) -> None:
        self._lock = lock
        self._callbacks: dict[int, Callback] = {}
        self._subs: tuple[tuple[int, Callback], ...] = ()  # snapshot of _callbacks taken per event
        self._tokens = itertools.count(1)
        self._pending: collections.deque[tuple[DomainEvent, tuple[tuple[int, Callback], ...]]] = collections.deque()
        self._dispatching = _thread.allocate_lock()

    def emit(self, kind: DomainEventType, ref: DomainRef, detail: str) -> None:
        """Queue an event for the current subscribers (call with the lock held)."""
        if self._subs:
            self._pending.append((DomainEvent(kind, ref, detail, time.time()), self._subs))

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Add a subscriber (call with the lock held); returns the function that cancels it."""
        token = next(self._tokens)
        self._callbacks[token] = callback
        self._subs = tuple(self._callbacks.items())

        def cancel() -> None:
            with self._lock:
                if self._callbacks.pop(token, None) is not None:
                    self._subs = tuple(self._callbacks.items())

        return cancel

    def clear(self) -> None:
        """Forget subscribers and queued events (call with the lock held): the connection closed."""
        self._callbacks.clear()
        self._subs = ()
        self._pending.clear()

    def dispatch(self) -> None:
        """Deliver queued events in order, outside the state lock; one thread delivers at a time."""
        while self._pending:
            if not self._dispatching.acquire(blocking=False):
                return  # the thread holding it delivers ours too (it re-checks before leaving)
            try:
                while True:
                    with self._lock:
                        if not self._pending:
                            break
                        event, subs = self._pending.popleft()
                    for token, callback in subs:
                        if token not in self._callbacks:  # cancelled after the event was queued
                            continue
                        try:
                            callback(event)
                        except Exception:
                            import logging  # here, not at import: off the start-up path of a CLI

                            logging.getLogger("virtkit.test").exception(
                                "test driver: event callback %r raised on %s", callback, event
                            )
            finally:
                self._dispatching.release()
