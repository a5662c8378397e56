"""Which domains exist, cheaply: the running ones from the hypercall plugin's ``state`` stats
group (one ``getdomaininfolist`` for all of them, through the inner xen:///), their names and
``vm`` links from xenstore (cached, kept true by watches: _names; one round trip), the defined
ones from the state directory (cached while it is unchanged: _state).

This plugin serves the ``state`` group of ``connect_get_all_domain_stats`` itself: it alone
knows the defined domains (``SHUTOFF``, id None) and the hypercall plugin knows no names, so
``virtkit list --all`` (one bulk call where the state group is served) lists both, by name.

A running domain's uuid is xenstore's (its ``vm`` link), as the xenstore plugin's lookups give
it: the two differ for the old run xl keeps after ``rename-restart`` (libxl gives it a new uuid
in xenstore; the hypervisor's handle, which ``xl list`` prints, stays the original's).
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Callable, Iterable, Sequence

import virtkit
from virtkit import Connection, DomainRef, DomainState, DomainStateInfo, NoSuchDomain, check_flags, stats_groups

from ._names import XenstoreIdents

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from virtkit import DomainStats

    from ._state import Record, State

__all__ = ["PRIORITY", "Idents", "ListingMixin", "XenstoreIdents", "serves_state"]

#: Above xenstore's 90 and xen_hyper's 50 for the operations a defined domain can be asked.
PRIORITY = 95

#: Running domains' (name, uuid) by (id, hypervisor handle as an int), in one go: name None for
#: a domain without one (gone, or not named yet), uuid None where xenstore has no ``vm`` link
#: (the hypervisor's handle counts).
Idents = Callable[[Sequence[tuple[int, int]]], list[tuple[str | None, _uuid.UUID | None]]]
_NIL = _uuid.UUID(int=0)
_SHUTOFF = DomainStateInfo(DomainState.SHUTOFF, None)


def serves_state(conn: Connection) -> bool:
    """Whether ``conn`` serves the ``state`` stats group (xen_hyper does from catalogue 1.1)."""
    return any(r.operation == "state" and r.plugin is not None for r in conn.explain().groups)


class ListingMixin:
    """The listing side of :class:`virtkit_xen_libxl.Driver` (mixed in)."""

    if TYPE_CHECKING:
        state: State
        _by_stats: bool
        _idents: Idents
        _defined: tuple[list[Record], list[tuple[int, DomainStats]]] | None

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
        start = getattr(self._idents, "start", None)
        started = start() if start is not None else None  # xenstored answers during the hypercall
        rows = self._inner("connect_get_all_domain_stats", ("state",), None)
        keys = [(r.domain.id, r.domain.uuid.int) for r in rows]
        idents = self._idents(keys) if started is None else self._idents(keys, started)  # type: ignore[call-arg]
        out, stats = [], virtkit.DomainStats
        for r, (name, uid) in zip(rows, idents, strict=True):
            dom = r.domain
            if name is None and dom.id != 0:
                continue  # gone since the hypercall, or still being built
            out.append(stats(DomainRef(name or "Domain-0", uid or dom.uuid, dom.id), *r[1:]))
        return out

    def _defined_states(self, up: set[int]) -> list[DomainStats]:
        """The definitions not running (SHUTOFF, id None); records built once per listing of
        the state directory."""
        records = self.state.records()
        cached = getattr(self, "_defined", None)
        if cached is None or cached[0] is not records:
            stats = virtkit.DomainStats
            built = [
                (rec.config.uuid.int, stats(DomainRef(rec.config.name, rec.config.uuid, None), _SHUTOFF))
                for rec in records
                if rec.config.uuid is not None
            ]
            cached = self._defined = (records, built)
        return [s for uid, s in cached[1] if uid not in up]

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
        defined = self._defined_states({r.domain.uuid.int for r in running})  # ints: hashed in C
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
