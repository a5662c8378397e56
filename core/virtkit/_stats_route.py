"""Per-group routing of ``connect_get_all_domain_stats`` and the checks of its arguments.

Kept apart from the records (``_stats``) so that composing a connection imports no NamedTuple
class it does not need; see ``_stats`` for the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

from ._errors import DriverError, InvalidArgument, Unsupported, VirtError
from ._explain import Candidate, Explanation, Route
from ._types import DomainRef, DomainState, DomainStateInfo

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from ._stats import DomainStats

    _F = TypeVar("_F", bound=Callable[..., Any])
    Slot = Callable[..., Any]

__all__ = ["STATS_GROUPS", "check_domains", "check_groups", "groups_of", "route_groups", "stats_groups"]

#: The groups of ``connect_get_all_domain_stats``, in their canonical order (libvirt's names,
#: ``net`` for libvirt's ``interface``).
STATS_GROUPS: tuple[str, ...] = ("state", "cpu", "balloon", "vcpu", "block", "net")
_GROUP_SET = frozenset(STATS_GROUPS)
_GROUPS_ATTR = "virtkit_stats_groups"


def check_groups(groups: Iterable[str] | str | None, served: Collection[str] = STATS_GROUPS) -> tuple[str, ...]:
    """The requested groups in canonical order; None or empty: every group in ``served``.

    An unknown name is an InvalidArgument; a known group nobody serves here, Unsupported."""
    if groups is None:
        return tuple(g for g in STATS_GROUPS if g in served)
    if isinstance(groups, str):  # "cpu" would otherwise be c, p, u
        groups = (groups,)
    try:
        wanted = set(groups)
    except TypeError:
        raise InvalidArgument(f"groups must be a collection of group names, got {type(groups).__name__}") from None
    unknown = sorted(map(repr, wanted - _GROUP_SET))
    if unknown:
        raise InvalidArgument(f"unknown stats group(s) {', '.join(unknown)[:120]} (known: {', '.join(STATS_GROUPS)})")
    if not wanted:
        return tuple(g for g in STATS_GROUPS if g in served)
    missing = [g for g in STATS_GROUPS if g in wanted and g not in served]
    if missing:
        raise Unsupported(f"stats group(s) {', '.join(missing)} not served on this connection")
    return tuple(g for g in STATS_GROUPS if g in wanted)


def check_domains(domains: Iterable[DomainRef] | None) -> list[DomainRef] | None:
    if domains is None:
        return None
    try:
        refs = list(domains)
    except TypeError:
        raise InvalidArgument(f"domains must be a list of domains or None, got {type(domains).__name__}") from None
    bad = [type(r).__name__ for r in refs if not isinstance(r, DomainRef)]
    if bad:
        raise InvalidArgument(f"domains must hold DomainRefs, got {bad[0]}")
    return refs


def stats_groups(*groups: str) -> Callable[[_F], _F]:
    """Declare the groups a driver's ``connect_get_all_domain_stats`` serves (default: all)."""
    unknown = [g for g in groups if g not in _GROUP_SET]
    if unknown or not groups:
        raise TypeError(f"stats_groups takes one or more of {', '.join(STATS_GROUPS)}, got {groups!r}")

    def mark(fn: _F) -> _F:
        setattr(fn, _GROUPS_ATTR, frozenset(groups))
        return fn

    return mark


def groups_of(method: object) -> frozenset[str]:
    found = getattr(method, _GROUPS_ATTR, None)
    return frozenset(found) & _GROUP_SET if isinstance(found, Collection) else _GROUP_SET


OP = "connect_get_all_domain_stats"
_SHUT_OFF = DomainStateInfo(DomainState.SHUTOFF, None)


def served_groups(driver: object, method: object) -> frozenset[str]:
    """The groups a driver serves: a remote driver's are what its far side's composition serves
    (the generated method declares nothing), else the method's declaration."""
    far = getattr(driver, "virtkit_remote_explanation", None)
    if isinstance(far, Explanation) and far.groups:
        return frozenset(r.operation for r in far.groups if r.plugin is not None) & _GROUP_SET
    return groups_of(method)


def route_groups(
    cands: Sequence[tuple[str, Slot, int, object]],
    preferred: str | None,
    route: Route,
    slot: Slot,
    namer: str | None = None,
) -> tuple[tuple[Route, ...], Slot]:
    """Per-group routes and the bulk operation's slot.

    ``cands``: (plugin, method, priority, driver) of every opened, not excluded provider, in open
    order; ``route``/``slot``: what ordinary routing chose for the operation as a whole;
    ``namer``: of the providers, the one ranking highest for ``domain_lookup_by_uuid``. A
    fanned-out call asks it first (with the groups it won, possibly none) so that the records
    carry the names it knows: on xen:/// the hypervisor (xen_hyper) knows only ids and UUIDs,
    xenstore knows names."""
    routes: list[Route] = []
    winners: dict[str, tuple[str, Slot]] = {}
    serves = [served_groups(driver, m) for _n, m, _p, driver in cands]
    for group in STATS_GROUPS:
        mine = [(-c[2], i, c[0], c[1]) for i, c in enumerate(cands) if group in serves[i]]
        mine.sort(key=lambda c: (c[0], c[1]))
        note = ""
        hit = [c for c in mine if c[2] == preferred]
        if hit:
            mine.remove(hit[0])
            mine.insert(0, hit[0])
            note = f"{preferred} preferred by integrator"
        if not mine:
            routes.append(Route(group, None, None, note="no plugin serves this group"))
            continue
        top = mine[0]
        routes.append(Route(group, top[2], -top[0], tuple(Candidate(c[2], -c[0]) for c in mine[1:]), note))
        winners[group] = (top[2], top[3])
    served = frozenset(winners)
    plugins = {name for name, _m in winners.values()}
    namer_slot = next((c[1] for c in cands if c[0] == namer), None)
    if namer_slot is None or (namer == route.plugin and plugins <= {namer}):
        namer = None
    if plugins <= {route.plugin} and namer is None:
        inner = slot  # one plugin serves every group: its own slot (a fallback chain, if asked)
        single = True
    else:
        single = False

    def get_all_domain_stats(
        groups: Iterable[str] | None = None, domains: Iterable[DomainRef] | None = None, *, flags: int = 0
    ) -> Any:
        wanted = check_groups(groups, served)
        refs = check_domains(domains)
        if single:
            return inner(wanted, refs, flags=flags)
        return _fan_out(wanted, refs, flags, winners, namer, namer_slot)

    get_all_domain_stats.__name__ = OP
    return tuple(routes), get_all_domain_stats


def _fan_out(
    wanted: tuple[str, ...],
    refs: list[DomainRef] | None,
    flags: int,
    winners: dict[str, tuple[str, Slot]],
    namer: str | None = None,
    namer_slot: Slot | None = None,
) -> list[DomainStats]:
    parts: dict[str, tuple[Slot, list[str]]] = {}
    if namer is not None and namer_slot is not None:
        parts[namer] = (namer_slot, [])  # first: its records name the domains
    for group in wanted:
        name, method = winners[group]
        parts.setdefault(name, (method, []))[1].append(group)
    if not parts:
        return []
    (first, (first_method, first_groups)), *rest = parts.items()
    records = _part(first, first_method, first_groups, refs, flags)
    if not rest:
        return records
    asked = [r.domain for r in records]
    merged = {r.domain.uuid: r for r in records}
    for name, (method, groups) in rest:
        got = {r.domain.uuid: r for r in _part(name, method, groups, asked, flags)}
        for uuid, rec in list(merged.items()):
            other = got.get(uuid)
            if other is None:
                if rec.domain.id is not None:  # a running domain that vanished between the reads
                    del merged[uuid]
                elif "state" in groups:
                    merged[uuid] = rec._replace(state=_SHUT_OFF)
                # a shut-off domain (no id), which a source of running domains' figures (the
                # hypervisor's) does not know: kept, without the groups only a running one has
            else:
                merged[uuid] = rec._replace(**{g: getattr(other, g) for g in groups})
    return [merged[r.domain.uuid] for r in records if r.domain.uuid in merged]


def _part(name: str, method: Slot, groups: list[str], refs: list[DomainRef] | None, flags: int) -> list[DomainStats]:
    """One plugin's share of a fanned-out call; its errors name it, not the operation's winner."""
    try:
        records: list[DomainStats] = method(tuple(groups), refs, flags=flags)
    except VirtError as exc:
        if exc.driver is None:
            exc.driver = name
        raise
    except Exception as exc:
        raise DriverError(f"{type(exc).__name__}: {exc}", operation=OP, driver=name) from exc
    return records
