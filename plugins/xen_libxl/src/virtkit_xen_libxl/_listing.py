"""Which domains exist, cheaply: the running ones from the hypercall plugin's ``state`` stats
group (one ``getdomaininfolist`` for all of them, through the inner xen:///), their names and
``vm`` links from xenstore in one round trip, the defined ones from the state directory.

This plugin serves the ``state`` group of ``connect_get_all_domain_stats`` itself: it alone
knows the defined domains (``SHUTOFF``, id None) and the hypercall plugin knows no names, so
``virtkit list --all`` (one bulk call where the state group is served) lists both, by name.

A running domain's uuid is xenstore's (its ``vm`` link), as the xenstore plugin's lookups give
it: the two differ for the old run xl keeps after ``rename-restart`` (libxl gives it a new uuid
in xenstore; the hypervisor's handle, which ``xl list`` prints, stays the original's).
"""

from __future__ import annotations

import threading
import uuid as _uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import virtkit
from virtkit import Connection, DomainRef, DomainState, DomainStateInfo, NoSuchDomain, check_flags, stats_groups

if TYPE_CHECKING:
    from virtkit import DomainStats

    from ._state import State

__all__ = ["PRIORITY", "Idents", "ListingMixin", "XenstoreIdents", "serves_state"]

#: Above xenstore's 90 and xen_hyper's 50 for the operations a defined domain can be asked.
PRIORITY = 95

#: Running domains' (name, uuid) by id, in one go: name None for a domain without one (gone, or
#: not named yet), uuid None where xenstore has no ``vm`` link (the hypervisor's handle counts).
Idents = Callable[[Sequence[int]], list[tuple[str | None, _uuid.UUID | None]]]
_NIL = _uuid.UUID(int=0)
_ROOT = "/local/domain"
_SHUTOFF = DomainStateInfo(DomainState.SHUTOFF, None)


def serves_state(conn: Connection) -> bool:
    """Whether ``conn`` serves the ``state`` stats group (xen_hyper does from catalogue 1.1)."""
    return any(r.operation == "state" and r.plugin is not None for r in conn.explain().groups)


class XenstoreIdents:
    """The ``name`` and ``vm`` nodes of running domains, read pipelined through virtkit_xenstore's
    public client (a dependency of this distribution): one xenstored round trip for all."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._xs: Any = None
        self._lock = threading.Lock()

    def __call__(self, domids: Sequence[int]) -> list[tuple[str | None, _uuid.UUID | None]]:
        paths = [f"{_ROOT}/{d}/{node}" for d in domids for node in ("name", "vm")]
        with self._lock:
            if self._xs is None:
                from virtkit_xenstore import Client

                self._xs = Client(timeout=self._timeout)
            raw: list[bytes | None] = self._xs.read_many(paths)
        out = []
        for name, vm in zip(raw[::2], raw[1::2], strict=True):
            out.append((None if name is None else name.decode("utf-8", "surrogateescape"), _vm_uuid(vm)))
        return out

    def close(self) -> None:
        with self._lock:
            xs, self._xs = self._xs, None
        if xs is not None:
            xs.close()


def _vm_uuid(vm: bytes | None) -> _uuid.UUID | None:
    """The uuid a ``vm`` link names (libxl writes ``/vm/<uuid>``; xend added ``-<n>``)."""
    if vm is None:
        return None
    try:
        return _uuid.UUID(vm.decode("ascii", "replace").rstrip("/").rsplit("/", 1)[-1][:36])
    except ValueError:
        return None


class ListingMixin:
    """The listing side of :class:`virtkit_xen_libxl.Driver` (mixed in)."""

    if TYPE_CHECKING:
        state: State
        _by_stats: bool
        _idents: Idents

        def _inner(self, op: str, *args: Any, flags: int = 0) -> Any: ...

    def _running_ids(self) -> dict[_uuid.UUID, int]:
        """uuid -> id of every running domain: one bulk state read where the inner xen:///
        serves it, else the id list and one lookup per id (xenstore: a round trip each)."""
        if self._by_stats:
            rows = self._inner("connect_get_all_domain_stats", ("state",), None)
            # by id: of two runs with one handle (xl's rename-restart) the newer one counts
            return {r.domain.uuid: r.domain.id for r in sorted(rows, key=lambda r: r.domain.id or 0)}
        out: dict[_uuid.UUID, int] = {}
        for domid in self._inner("connect_list_domains"):
            try:
                ref: DomainRef = self._inner("domain_lookup_by_id", domid)
            except NoSuchDomain:  # gone between the list and the lookup
                continue
            out[ref.uuid] = domid
        return out

    def _running_by_uuid(self, uuid: _uuid.UUID) -> DomainRef | None:
        """The running domain with ``uuid``, or None: the bulk state read, then one lookup by
        id for its name (xenstore's lookup by uuid reads every domain's ``vm`` node)."""
        if not self._by_stats:
            try:
                ref: DomainRef = self._inner("domain_lookup_by_uuid", uuid)
                return ref
            except NoSuchDomain:
                return None
        domid = self._running_ids().get(uuid)
        if domid is None:
            return None
        try:
            ref = self._inner("domain_lookup_by_id", domid)
        except NoSuchDomain:
            return None
        return ref if ref.uuid == uuid else None

    def _running_states(self) -> list[DomainStats]:
        """Every running domain's state record, named: the bulk state read, then names and uuids
        from xenstore (one round trip)."""
        rows = self._inner("connect_get_all_domain_stats", ("state",), None)
        idents = self._idents([r.domain.id for r in rows])
        out = []
        for r, (name, uid) in zip(rows, idents, strict=True):
            if name is None and r.domain.id != 0:
                continue  # gone since the hypercall, or still being built
            ref = DomainRef(name or "Domain-0", uid or r.domain.uuid, r.domain.id)
            out.append(r._replace(domain=ref))
        return out

    def _running_by_name(self, name: str) -> DomainRef | None:
        if self._by_stats:
            return next((r.domain for r in self._running_states() if r.domain.name == name), None)
        try:
            ref: DomainRef = self._inner("domain_lookup_by_name", name)
            return ref
        except NoSuchDomain:
            return None

    @virtkit.priority(PRIORITY)
    @stats_groups("state")
    def connect_get_all_domain_stats(
        self, groups: Iterable[str], domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        """Every running domain (by id, named from xenstore) then every definition not running
        (SHUTOFF, id None); with ``domains``, those of them that exist, as they are now. Asked
        for no group (the core asks this plugin first to name the domains of a call whose groups
        others serve), the records carry the domains only."""
        check_flags(flags)
        running = self._running_states()
        up = {r.domain.uuid for r in running}
        defined = [
            virtkit.DomainStats(DomainRef(rec.config.name, rec.config.uuid, None), _SHUTOFF)
            for rec in self.state.records()
            if rec.config.uuid is not None and rec.config.uuid not in up
        ]
        out = running + defined if domains is None else _select(domains, running, defined)
        return out if "state" in frozenset(groups) else [r._replace(state=None) for r in out]


def _select(domains: list[DomainRef], running: list[DomainStats], defined: list[DomainStats]) -> list[DomainStats]:
    """The asked domains as they are now: a ref with an id is that running domain (its uuid
    must match unless nil), else the domain with its uuid, running or defined (a persistent
    domain restarted under a new id, or stopped, is still itself)."""
    by_id = {r.domain.id: r for r in running}
    by_uuid: dict[_uuid.UUID, DomainStats] = {}
    for r in defined + running[::-1]:  # running wins; the first of duplicated uuids wins
        by_uuid[r.domain.uuid] = r
    out = []
    for ref in domains:
        hit = by_id.get(ref.id) if ref.id is not None else None
        if hit is not None and ref.uuid not in (_NIL, hit.domain.uuid):
            hit = None
        if hit is None and ref.uuid != _NIL:
            hit = by_uuid.get(ref.uuid)
        if hit is not None:
            out.append(hit)
    return out
