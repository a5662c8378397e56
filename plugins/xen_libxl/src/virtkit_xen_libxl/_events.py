"""Domain events for xen:/// while this plugin is composed in: one source, so no duplicates.

Composition gives ``connect_domain_event_register`` to one plugin; this one outbids xenstore's
(STARTED/STOPPED only) and reports every lifecycle change, of domains made by virtkit, ``xl`` or
libvirt alike: each scan compares the running domains (the inner plugins: one hypercall list,
one domctl per domain) and the state directory with the previous scan. Scans run when xenstored
fires ``@introduceDomain``/``@releaseDomain`` (it fires the latter when a guest shuts down,
before its babysitter acts, so the shutdown reason is seen) and every half second, since a
pause fires no watch.

How a guest's end is told: shut down with reason poweroff -> SHUTDOWN then STOPPED; reason
reboot and back under a new id (xl's on_reboot=restart) -> REBOOTED, no STOPPED/STARTED; a
crash -> CRASHED then STOPPED; gone without a shutdown -> STOPPED ("destroyed").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid as _uuid
from typing import TYPE_CHECKING, Any, NamedTuple

from virtkit import DomainEvent, DomainEventType, DomainRef, DomainState, NoSuchDomain, VirtError

from ._plugin import ended_reason

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._driver import Driver

__all__ = ["Watcher"]

log = logging.getLogger("virtkit.xen_libxl")

POLL_S = 0.5
#: How long a domain that shut down to reboot may take to come back before it counts as stopped.
REBOOT_GRACE_S = 20.0
#: A new domain seen paused is being built (libxl builds paused); after this it is reported anyway.
BUILD_GRACE_S = 10.0
_ACTIVE = {DomainState.RUNNING, DomainState.BLOCKED, DomainState.NOSTATE}
_OVER = {DomainState.SHUTDOWN, DomainState.CRASHED}
E = DomainEventType
_NOTE_DETAIL = {
    E.DEFINED: "added",
    E.UNDEFINED: "removed",
    E.STARTED: "booted",
    E.SUSPENDED: "paused",
    E.RESUMED: "unpaused",
    E.STOPPED: "destroyed",
}


class _Seen(NamedTuple):
    ref: DomainRef
    state: DomainState
    reason: str | None


class Watcher:
    """One subscription: a thread that scans and reports."""

    def __init__(self, driver: Driver, callback: Callable[[DomainEvent], None]) -> None:
        self._drv = driver
        self._cb = callback
        self._stop = threading.Event()
        self._watch: Any = None
        self._xs: Any = None
        self._building: dict[_uuid.UUID, float] = {}  # first seen paused, not yet reported
        self._rebooting: dict[_uuid.UUID, tuple[_Seen, float]] = {}
        self._lock = threading.Lock()  # the known state: changed by the scans and by note()
        self._noted: dict[_uuid.UUID, float] = {}
        self._running: dict[_uuid.UUID, _Seen] = {}
        self._running, self._defined = self._scan()
        self._open_watch()
        self._thread = threading.Thread(target=self._run, name="xen-libxl-events", daemon=True)

    def _open_watch(self) -> None:
        try:
            from virtkit_xenstore import Client

            self._xs = Client(timeout=self._drv.xl.timeout)
            self._watch = self._xs.watch("@introduceDomain", "@releaseDomain")
        except (VirtError, OSError) as exc:
            log.debug("no xenstore watch (polling only): %s", exc)
            if self._xs is not None:
                self._xs.close()
            self._xs = self._watch = None

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._stop.set()
        if self._watch is not None:
            try:
                self._watch.close()
            except VirtError:
                pass
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=self._drv.xl.timeout)
        if self._xs is not None:
            self._xs.close()

    # -- scanning ------------------------------------------------------------------------------

    def _scan(self) -> tuple[dict[_uuid.UUID, _Seen], dict[_uuid.UUID, str]]:
        drv = self._drv
        by_id = {s.ref.id: s for s in list(self._running.values())}
        running: dict[_uuid.UUID, _Seen] = {}
        for domid in drv._inner("connect_list_domains"):
            try:
                old = by_id.get(domid)
                ref = old.ref if old is not None else drv._inner("domain_lookup_by_id", domid)
                st = drv._inner("domain_get_state", ref)
            except NoSuchDomain:
                if old is not None:  # still listed by the hypervisor: a failed read is not its end
                    running[old.ref.uuid] = old
                continue  # going, or not named in xenstore yet
            running[ref.uuid] = _Seen(ref, st.state, st.reason)
        defined = {r.config.uuid: r.config.name for r in drv.state.records() if r.config.uuid is not None}
        return running, defined

    def note(self, kind: DomainEventType, ref: DomainRef) -> None:
        """This connection changed ``ref`` (defined, undefined, started, paused, unpaused,
        destroyed it): report it now and take it as known. A change undone within one scan
        period (a define and an undefine, a pause and a resume) would otherwise go unseen, and a
        domain paused right after its create would look like one still being built. A scan
        begun before the note does not override it (``_noted``). A change a scan reported
        already (a create takes a while to return after xl unpaused the guest) is not again."""
        t = time.time()
        with self._lock:
            known = self._known(kind, ref)
            self._noted[ref.uuid] = time.monotonic()
            if kind is E.DEFINED:
                self._defined = {**self._defined, ref.uuid: ref.name}
            elif kind is E.UNDEFINED:
                self._defined = {u: n for u, n in self._defined.items() if u != ref.uuid}
            elif kind is E.STOPPED:
                self._running = {u: v for u, v in self._running.items() if u != ref.uuid}
            else:
                self._building.pop(ref.uuid, None)
                state = DomainState.PAUSED if kind is E.SUSPENDED else DomainState.RUNNING
                self._running = {**self._running, ref.uuid: _Seen(ref, state, None)}
        if known:
            return
        if kind in (E.DEFINED, E.UNDEFINED):
            ref = DomainRef(ref.name, ref.uuid, None)
        self._emit(DomainEvent(kind, ref, _NOTE_DETAIL[kind], t))

    def _known(self, kind: DomainEventType, ref: DomainRef) -> bool:
        """Whether the last scan already left things as ``kind`` on ``ref`` makes them."""
        if kind is E.DEFINED:
            return ref.uuid in self._defined
        if kind is E.UNDEFINED:
            return ref.uuid not in self._defined
        seen = self._running.get(ref.uuid)
        if kind is E.STOPPED:
            return seen is None or seen.ref.id != ref.id
        if seen is None or seen.ref.id != ref.id:
            return False
        return seen.state is DomainState.PAUSED if kind is E.SUSPENDED else seen.state in _ACTIVE

    def _diff(self) -> list[DomainEvent]:
        begun = time.monotonic()
        now, defs = self._scan()
        t = time.time()
        with self._lock:
            for uid, when in list(self._noted.items()):
                if when >= begun:  # this scan is older than what the connection told: keep that
                    if uid in self._running:
                        now[uid] = self._running[uid]
                    else:
                        now.pop(uid, None)
                    if uid in self._defined:
                        defs[uid] = self._defined[uid]
                    else:
                        defs.pop(uid, None)
                else:
                    del self._noted[uid]
            out = self._compare(self._running, now, self._defined, defs, t)
            self._running, self._defined = now, defs
        return out

    def _compare(
        self,
        before: dict[_uuid.UUID, _Seen],
        now: dict[_uuid.UUID, _Seen],
        defs_before: dict[_uuid.UUID, str],
        defs: dict[_uuid.UUID, str],
        t: float,
    ) -> list[DomainEvent]:
        out: list[DomainEvent] = []
        for uid in defs.keys() - defs_before.keys():
            out.append(DomainEvent(E.DEFINED, DomainRef(defs[uid], uid, None), "added", t))
        for uid, seen in list(now.items()):
            old = before.get(uid)
            if old is None and seen.state in _OVER:
                continue  # first seen already shut down (xl's renamed old run): it never started
            if old is None or old.ref.id != seen.ref.id:
                if seen.state is DomainState.PAUSED and t - self._building.setdefault(uid, t) < BUILD_GRACE_S:
                    if old is not None:
                        now[uid] = old  # still the old run, as far as anyone was told
                    else:
                        del now[uid]  # new again on the next scan: reported once it runs
                    continue
                self._building.pop(uid, None)
                back = self._rebooting.pop(uid, None)
                if back is not None or old is not None:
                    out.append(DomainEvent(E.REBOOTED, seen.ref, "restarted", t))
                else:
                    out.append(DomainEvent(E.STARTED, seen.ref, "booted", t))
                continue
            out.extend(self._change(old, seen, t))
        for uid, old in before.items():
            if uid in now:
                continue
            reason = old.reason or self._ended(uid)
            if reason == "reboot":  # shut down (or dying) to reboot: its babysitter may restart it
                self._rebooting[uid] = (old, t + REBOOT_GRACE_S)
                continue
            if reason and not old.reason:  # gone before a scan saw it shut down: say so first
                kind = E.CRASHED if reason == "crash" else E.SHUTDOWN
                out.append(DomainEvent(kind, old.ref, "crashed" if reason == "crash" else reason, t))
            detail = "crashed" if reason == "crash" else "shutdown" if reason else "destroyed"
            out.append(DomainEvent(E.STOPPED, old.ref, detail, t))
        for uid, (old, deadline) in list(self._rebooting.items()):
            if uid not in now and t > deadline:
                del self._rebooting[uid]
                out.append(DomainEvent(E.STOPPED, old.ref, "shutdown", t))
        for uid in defs_before.keys() - defs.keys():
            out.append(DomainEvent(E.UNDEFINED, DomainRef(defs_before[uid], uid, None), "removed", t))
        return out

    @staticmethod
    def _change(old: _Seen, new: _Seen, t: float) -> list[DomainEvent]:
        if old.state == new.state and old.reason == new.reason:
            return []
        if new.state is DomainState.PAUSED and old.state in _ACTIVE:
            return [DomainEvent(E.SUSPENDED, new.ref, "paused", t)]
        if new.state in _ACTIVE and old.state is DomainState.PAUSED:
            return [DomainEvent(E.RESUMED, new.ref, "unpaused", t)]
        # A shut-down domain is often dying already when seen (its babysitter acts at once): the
        # reason is what tells, whatever the state.
        if new.reason and new.reason != old.reason:
            if new.reason == "crash":
                return [DomainEvent(E.CRASHED, new.ref, "crashed", t)]
            if new.reason != "reboot":
                return [DomainEvent(E.SHUTDOWN, new.ref, new.reason, t)]
        return []

    def _ended(self, uid: _uuid.UUID) -> str | None:
        """Why the libxl engine saw this domain's run end: it acts on a shutdown (destroys,
        restarts) faster than a scan sees the reason, so it says so in its run directory."""
        rundir = getattr(self._drv.engine, "rundir", None)
        if rundir is None:
            return None
        return ended_reason(rundir, str(uid))

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._watch is not None:
                ev = self._watch.get(timeout=POLL_S)
                if ev is not None:
                    self._watch.drain()
                elif self._watch.closed and not self._stop.is_set():
                    self._watch = None
            else:
                self._stop.wait(POLL_S)
            if self._stop.is_set():
                return
            try:
                t0 = time.monotonic()
                events = self._diff()
            except VirtError as exc:
                log.debug("xen_libxl event scan failed (retrying): %s", exc)
                continue
            if log.isEnabledFor(logging.DEBUG):
                states = {s.ref.id: s.state.name for s in self._running.values()}
                log.debug("scan %.3fs: %s -> %s", time.monotonic() - t0, states, [e.type.value for e in events])
            for event in events:
                self._emit(event)

    def _emit(self, event: DomainEvent) -> None:
        if self._stop.is_set():
            return
        try:
            self._cb(event)
        except Exception:  # a subscriber's bug must not end the others' events
            log.exception("virtkit domain event callback failed")
