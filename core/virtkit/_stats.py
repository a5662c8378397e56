"""Statistics (catalogue 1.1): the typed records, the group names, and per-group composition.

Units are in the field names: ``_ns`` nanoseconds, ``_kib`` KiB, ``_bytes`` bytes, ``_requests``
and ``_packets`` counts. Counters only grow while one boot of a domain lasts; a domain that is
started again (a new id) starts a new series from 0, as libvirt's and Xen's counters do.

Per-group composition: ``connect_get_all_domain_stats`` is one operation in the vtable, but a
driver may serve only some groups (``@virtkit.stats_groups("cpu", "balloon")``; undeclared means
every group). At open the core routes each group to its highest-priority provider, by the same
rules as operations (method priority, prefer, exclude). When one plugin wins every group its
method is called directly; otherwise the call fans out, one call per plugin with its groups, the
first part naming the domains the others are asked about, and records are merged by UUID (a
domain missing from any part vanished meanwhile and is left out).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

from ._errors import DriverError, InvalidArgument, Unsupported, VirtError
from ._explain import Candidate, Route
from ._types import DomainRef, DomainStateInfo

__all__ = [
    "STATS_GROUPS",
    "BalloonStats",
    "BlockStats",
    "CpuStats",
    "DomainStats",
    "InterfaceStats",
    "MemoryStats",
    "VcpuInfo",
    "VcpuState",
    "VcpuStats",
    "check_groups",
    "groups_of",
    "stats_groups",
]

#: The groups of ``connect_get_all_domain_stats``, in their canonical order (libvirt's names,
#: ``net`` for libvirt's ``interface``).
STATS_GROUPS: tuple[str, ...] = ("state", "cpu", "balloon", "vcpu", "block", "net")
_GROUP_SET = frozenset(STATS_GROUPS)
_GROUPS_ATTR = "virtkit_stats_groups"

_F = TypeVar("_F", bound=Callable[..., Any])


class VcpuState(enum.IntEnum):
    """libvirt's virVcpuState."""

    OFFLINE = 0
    RUNNING = 1
    BLOCKED = 2


class CpuStats(NamedTuple):
    """Group ``cpu``: the domain's cpu time, all vcpus together, in ns."""

    time_ns: int
    user_ns: int | None = None
    system_ns: int | None = None


class BalloonStats(NamedTuple):
    """Group ``balloon``: the balloon's current size and its maximum, in KiB."""

    current_kib: int
    maximum_kib: int


class VcpuInfo(NamedTuple):
    """One vcpu: its number, state, cpu time used (ns) and the physical cpu it last ran on."""

    number: int
    state: VcpuState
    time_ns: int
    cpu: int | None = None


class VcpuStats(NamedTuple):
    """Group ``vcpu``: online and maximum vcpus, and each online vcpu (none while shut off)."""

    current: int
    maximum: int
    vcpus: tuple[VcpuInfo, ...] = ()


class BlockStats(NamedTuple):
    """One disk's I/O counters (``device`` is its target name, e.g. ``xvda``; ``''`` for a sum).

    Counters a backend cannot see are None; times are ns spent on the requests."""

    device: str
    read_requests: int
    read_bytes: int
    write_requests: int
    write_bytes: int
    flush_requests: int | None = None
    read_time_ns: int | None = None
    write_time_ns: int | None = None
    flush_time_ns: int | None = None
    errors: int | None = None
    path: str | None = None


class InterfaceStats(NamedTuple):
    """One network interface's counters, seen from the guest (rx: received by the guest)."""

    device: str
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int
    rx_errors: int | None = None
    rx_drops: int | None = None
    tx_errors: int | None = None
    tx_drops: int | None = None
    mac: str | None = None


class MemoryStats(NamedTuple):
    """libvirt's virDomainMemoryStats: KiB, faults as counts; None where the backend cannot see it."""

    actual_kib: int
    swap_in_kib: int | None = None
    swap_out_kib: int | None = None
    major_faults: int | None = None
    minor_faults: int | None = None
    unused_kib: int | None = None
    available_kib: int | None = None
    usable_kib: int | None = None
    rss_kib: int | None = None
    disk_caches_kib: int | None = None


class DomainStats(NamedTuple):
    """One domain's record in a bulk call: the requested groups set, the others None."""

    domain: DomainRef
    state: DomainStateInfo | None = None
    cpu: CpuStats | None = None
    balloon: BalloonStats | None = None
    vcpu: VcpuStats | None = None
    block: tuple[BlockStats, ...] | None = None
    net: tuple[InterfaceStats, ...] | None = None


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


Slot = Callable[..., Any]
OP = "connect_get_all_domain_stats"


def route_groups(
    cands: Sequence[tuple[str, Slot, int]], preferred: str | None, route: Route, slot: Slot
) -> tuple[tuple[Route, ...], Slot]:
    """Per-group routes and the bulk operation's slot.

    ``cands``: (plugin, method, priority) of every opened, not excluded provider, in open order;
    ``route``/``slot``: what ordinary routing chose for the operation as a whole."""
    routes: list[Route] = []
    winners: dict[str, tuple[str, Slot]] = {}
    for group in STATS_GROUPS:
        mine = [(-p, i, name, m) for i, (name, m, p) in enumerate(cands) if group in groups_of(m)]
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
    if plugins <= {route.plugin}:
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
        return _fan_out(wanted, refs, flags, winners)

    get_all_domain_stats.__name__ = OP
    return tuple(routes), get_all_domain_stats


def _fan_out(
    wanted: tuple[str, ...], refs: list[DomainRef] | None, flags: int, winners: dict[str, tuple[str, Slot]]
) -> list[DomainStats]:
    parts: dict[str, tuple[Slot, list[str]]] = {}
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
            if other is None:  # vanished between the parts' reads
                del merged[uuid]
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
