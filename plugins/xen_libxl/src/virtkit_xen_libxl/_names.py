"""Running domains' names and uuids from xenstore, cached and kept true by watches.

A running domain's ``name`` and ``vm`` nodes change only when it is renamed (``xl rename``) or
preserved (xl's rename-restart writes both in one transaction), and both end with the domain.
So an entry, keyed by (domid, hypervisor handle), stays until the watch on that domain's
``name`` node fires; the hypercall's list says which domains exist, so a domain ``xl create``
made outside virtkit is simply a key not seen yet (read once), and a dead one's key is dropped
(its watch too).

Freshness: xenstored queues a watch event on our connection when the write commits, before it
answers any later request of ours, and the client dispatches events in wire order. So each call
makes one round trip (the reads it needs, else one tiny read, sent by :meth:`start` before the
listing's hypercall so the two overlap) and only then trusts the cache, after applying every
event queued by then: a change completed before the listing began is always seen.
"""

from __future__ import annotations

import threading
import uuid as _uuid
from collections.abc import Callable, Sequence

from virtkit import VirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["XenstoreIdents", "vm_uuid"]

_ROOT = "/local/domain"
_PREFIX = f"{_ROOT}/"
#: Any node will do for the round trip that flushes the events queued before it.
_SYNC = f"{_ROOT}/0/name"

#: (domid, the hypervisor's handle as its 128-bit int: hashed in C, unlike a UUID)
Key = tuple[int, int]
Ident = tuple[str | None, _uuid.UUID | None]


def vm_uuid(vm: bytes | None) -> _uuid.UUID | None:
    """The uuid a ``vm`` link names (libxl writes ``/vm/<uuid>``; xend added ``-<n>``)."""
    if vm is None:
        return None
    try:
        return _uuid.UUID(vm.decode("ascii", "replace").rstrip("/").rsplit("/", 1)[-1][:36])
    except ValueError:
        return None


def _domid(path: str) -> int | None:
    """The domid of a ``/local/domain/<id>/name...`` event path, else None."""
    if not path.startswith(_PREFIX):
        return None
    head, _, rest = path[len(_PREFIX) :].partition("/")
    ok = head.isascii() and head.isdigit() and (rest == "name" or rest.startswith("name/"))
    return int(head) if ok else None


class XenstoreIdents:
    """``(name, uuid)`` of running domains by (domid, handle), through virtkit_xenstore's public
    client (a dependency of this distribution): name None for a domain without one (gone, or
    not named yet), uuid None where xenstore has no ``vm`` link. The first call reads without
    watching (a CLI lists once); the watches start with the second."""

    def __init__(self, timeout: float, path: str | None = None) -> None:
        self._timeout = timeout
        self._path = path
        self._xs: Any = None
        self._watch: Any = None
        self._known: dict[Key, Ident] = {}
        self._watched: set[int] = set()  # domids whose name node is watched
        self._dropped = 0
        self._not_found: type[Exception] = VirtError
        self._listed = False  # the first call reads without watching
        self._lock = threading.Lock()

    def start(self) -> Callable[[], object] | None:
        """Send the call's round trip now (the listing does before its hypercall, so xenstored
        answers meanwhile) and return it for the call: its sync point is then when xenstored
        answered, after the listing began."""
        with self._lock:
            if self._watch is None or self._watch.closed:
                return None  # the call reads what it needs anyway
            try:
                sync: Callable[[], object] = self._xs.read_later(_SYNC)
                return sync
            except VirtError:
                self._reset()
                raise

    def __call__(self, keys: Sequence[Key], started: Callable[[], object] | None = None) -> list[Ident]:
        with self._lock:
            try:
                return self._cached(keys, started)
            except VirtError:
                # a watch that may not be registered cannot vouch for anything: start afresh
                self._reset()
                raise

    def _cached(self, keys: Sequence[Key], started: Callable[[], object] | None) -> list[Ident]:
        if self._watch is None or self._watch.closed:
            if not self._listed:
                # A process that lists once (the CLI) gains nothing from watches: one read.
                self._listed = True
                self._client()
                fresh = self._read(list(keys))
                return [fresh[k] for k in keys]
            self._open()
        known = self._known
        self._forget(self._changed())  # what earlier calls' replies brought
        try:
            out = [known[k] for k in keys]
        except KeyError:
            pass
        else:  # the usual case: all known; one round trip, then nothing may have fired
            if started is None:
                self._sync()
            else:
                started()
            if not self._forget(self._changed()):
                return out
        missing = [k for k in keys if k not in known]
        new = [d for d, _h in missing if d not in self._watched]
        if new:
            # before the read: a rename between the two then shows as an event
            self._watch.add(*(f"{_PREFIX}{d}/name" for d in new))
            self._watched.update(new)
        fresh = self._read(missing)  # also the round trip after which the queue is complete
        changed = self._changed()
        if changed is None or changed:
            again = [k for k in keys if k in known and (changed is None or k[0] in changed)]
            self._forget(changed)
            fresh.update(self._read(again))
        for k, ident in fresh.items():
            # a domain that fired meanwhile (or was just watched) is read again next time
            if changed is not None and k[0] not in changed:
                known[k] = ident
        out = [fresh[k] if k in fresh else known[k] for k in keys]
        if len(known) > len(keys) or len(self._watched) > len(keys):
            self._prune(keys)
        return out

    def _client(self) -> Any:
        if self._xs is None:
            from virtkit_xenstore import Client, PathNotFound

            self._not_found = PathNotFound
            # no pump thread: events are looked at only after a round trip, which reads them
            self._xs = Client(self._path, timeout=self._timeout, pump=False)
        return self._xs

    def _open(self) -> None:
        if self._watch is not None:  # closed under us (reset_watches): start afresh
            self._reset()
        self._known.clear()
        # one token for every domain's name node; its first path is domain 0's
        self._watch = self._client().watch(_SYNC)
        self._watched = {0}
        self._dropped = self._watch.dropped

    def _reset(self) -> None:
        xs, self._xs, self._watch = self._xs, None, None
        self._known.clear()
        self._watched.clear()
        if xs is not None:
            xs.close()

    def _sync(self) -> None:
        try:
            self._xs.read(_SYNC)
        except self._not_found:
            pass

    def _read(self, keys: list[Key]) -> dict[Key, Ident]:
        paths = [f"{_PREFIX}{d}/{n}" for d, _h in keys for n in ("name", "vm")]
        raw: list[bytes | None] = self._xs.read_many(paths or [_SYNC])
        if not keys:
            return {}
        out: dict[Key, Ident] = {}
        for k, name, vm in zip(keys, raw[::2], raw[1::2], strict=True):
            out[k] = (None if name is None else name.decode("utf-8", "surrogateescape"), vm_uuid(vm))
        return out

    def _changed(self) -> set[int] | None:
        """Domids whose name fired since the last look; None when anything may have changed
        unseen (an event not of a name, events dropped from a full queue)."""
        events = self._watch.drain()
        dropped = self._watch.dropped
        if dropped != self._dropped:
            self._dropped = dropped
            return None
        out: set[int] = set()
        for ev in events:
            d = _domid(ev.path)
            if d is None:
                return None
            out.add(d)
        return out

    def _forget(self, changed: set[int] | None) -> bool:
        """Drop what ``changed`` names; whether it named anything."""
        if changed is None:
            self._known.clear()
            return True
        if changed:
            for k in [k for k in self._known if k[0] in changed]:
                del self._known[k]
            return True
        return False

    def _prune(self, keys: Sequence[Key]) -> None:
        """Drop the entries and name watches of domains that no longer exist."""
        live = set(keys)
        for k in [k for k in self._known if k not in live]:
            del self._known[k]
        ids = {d for d, _h in keys}
        gone = [d for d in self._watched if d not in ids and d != 0]
        if gone:
            self._watched.difference_update(gone)
            self._watch.remove(*(f"{_PREFIX}{d}/name" for d in gone))

    def close(self) -> None:
        with self._lock:
            self._reset()
