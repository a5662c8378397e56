"""Events: the hub that delivers them to a connection's callbacks, and the subscriptions that
feed it -- one to each running domain's relay, and a watch for domains other connections start.

The hub knows nothing of QEMU; the subscriptions tell the driver that a domain's QEMU (or its
relay) went away through ``settle``, a callback: neither imports the driver.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from virtkit import DomainEvent, DomainEventType, DomainRef, ProtocolError
from virtkit import TimeoutError as VirtTimeout

from ._monitor import Monitor
from ._process import Supervisor
from ._state import Running

__all__ = ["WATCH_INTERVAL", "Callback", "EventHub", "Relays"]

log = logging.getLogger("virtkit.qemu")

Callback = Callable[[DomainEvent], None]
#: Seconds between two looks for domains other connections started, while this one listens.
WATCH_INTERVAL = 0.5


class EventHub:
    """A connection's callbacks, and one thread that delivers each event to all of them."""

    __slots__ = ("_callbacks", "_dispatcher", "_events", "_lock", "_next_token", "_reported")

    def __init__(self) -> None:
        self._callbacks: dict[int, Callback] = {}
        self._next_token = 1
        self._lock = threading.Lock()
        self._events: queue.SimpleQueue[DomainEvent | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None
        self._reported: set[int | None] = set()  # ids whose end was reported (once each)

    @property
    def active(self) -> bool:
        """Someone listens: events are worth making."""
        return bool(self._callbacks)

    def register(self, callback: Callback) -> tuple[Callable[[], None], bool]:
        """Add ``callback``; returns its cancel function, and whether it is the first ever."""
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._callbacks[token] = callback
            first = self._dispatcher is None
            if first:
                self._dispatcher = threading.Thread(target=self._dispatch, name="virtkit-qemu-events", daemon=True)
                self._dispatcher.start()

        def cancel() -> None:
            with self._lock:
                self._callbacks.pop(token, None)

        return cancel, first

    def emit(self, kind: DomainEventType, ref: DomainRef, detail: str) -> None:
        if self._callbacks:
            self._events.put(DomainEvent(kind, ref, detail, time.time()))

    def report_end(self, ref: DomainRef, reason: str) -> None:
        """crashed (if so) and stopped, once per domain: from the relay's last word to every
        listener, or from reaping the run directory, whichever comes first."""
        with self._lock:
            if ref.id in self._reported:
                return
            self._reported.add(ref.id)
        if reason == "crashed":
            self.emit(DomainEventType.CRASHED, ref, "QEMU process died")
        self.emit(DomainEventType.STOPPED, ref, reason)

    def _dispatch(self) -> None:
        # One thread delivers events, outside every lock: a callback may call the driver back.
        while (ev := self._events.get()) is not None:
            for cb in list(self._callbacks.values()):
                try:
                    cb(ev)
                except Exception:
                    log.exception("domain event callback failed")

    def close(self) -> None:
        if self._dispatcher is not None:
            self._events.put(None)
            self._dispatcher.join(5)


class Relays:
    """This connection's subscriptions to its domains' relays (a relay started when missing)."""

    __slots__ = ("_closed", "_hub", "_lock", "_monitor", "_procs", "_settle", "_until", "listening")

    def __init__(
        self,
        hub: EventHub,
        monitor: Monitor,
        procs: Supervisor,
        *,
        until: Callable[[], float],
        closed: Callable[[], bool],
        settle: Callable[[Running, str], None],
    ) -> None:
        self._hub = hub
        self._monitor = monitor
        self._procs = procs
        self._until = until
        self._closed = closed  # the connection's: the watch ends with it
        self._settle = settle  # after the relay said QEMU is gone ("gone"), or died itself ("lost")
        self._lock = threading.Lock()
        self.listening: set[int] = set()  # ids of the domains whose relay sends us events

    def listen(self, run: Running) -> None:
        """Subscribe to the domain's relay (starting it if it is missing); returns once subscribed.

        One at a time (the watcher, a registration, a start may race): never subscribed twice.
        """
        with self._lock:
            if run.id not in self.listening:
                self._subscribe(run)

    def _subscribe(self, run: Running) -> None:
        ref = run.ref

        def on_event(kind: str, detail: str) -> None:  # on the loop thread
            if kind in ("gone", "lost"):
                # QEMU went away (the relay says how), or the relay did (then find out here).
                self.listening.discard(run.id)
                if kind == "gone" and run.id not in self._procs.finishing:  # else: ours reports it
                    self._hub.report_end(ref, detail or "shutdown")
                threading.Thread(target=self._settle, args=(run, kind), daemon=True).start()
                return
            try:
                self._hub.emit(DomainEventType(kind), ref, detail)
            except ValueError:
                log.debug("unknown relay event %r", kind)

        why: str | None = None
        try:
            ok = self._monitor.listen(run, on_event, self._until())
            if not ok:
                why = self._procs.spawn_relay(run)
                ok = why is None and self._monitor.listen(run, on_event, self._until())
        except (ProtocolError, VirtTimeout) as exc:
            why, ok = str(exc), False
        if ok:
            self.listening.add(run.id)
        elif self._procs.alive(run.id) is not None:
            log.warning("no events from domain %r: its relay is missing and cannot start: %s", run.config.name, why)

    def watch(self, known: set[int]) -> None:
        """Listen to every domain that comes up after the first registration, and report it
        started (a domain this connection starts is listened to and reported by its start)."""
        threading.Thread(target=self._watch, args=(known,), name="virtkit-qemu-watch", daemon=True).start()

    def _watch(self, known: set[int]) -> None:
        while not self._closed():
            time.sleep(WATCH_INTERVAL)
            if self._closed() or not self._hub.active:
                continue
            try:
                self._watch_once(known)
            except Exception:
                log.debug("watching the state directory failed; trying again", exc_info=True)

    def _watch_once(self, known: set[int]) -> None:
        for dom_id in self._procs.state.running_ids():
            if dom_id in known or dom_id in self._procs.started_here or dom_id in self.listening:
                continue
            try:
                run = self._procs.alive(dom_id)
            except ProtocolError:
                known.add(dom_id)  # corrupted: the listings warn about it
                continue
            if run is None:
                continue  # still starting: next round
            known.add(dom_id)
            self.listen(run)
            self._hub.emit(DomainEventType.STARTED, run.ref, "booted")
