"""The kit's checks of the stats records (catalogue 1.1): types, units, and monotonic counters."""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Callable, Iterable
from typing import Any

from .._stats import (
    BalloonStats,
    BlockStats,
    CpuStats,
    DomainStats,
    InterfaceStats,
    MemoryStats,
    VcpuInfo,
    VcpuState,
    VcpuStats,
)
from .._types import DomainRef, DomainState, DomainStateInfo

__all__ = ["COUNTERS", "STATS_CHECKS", "counter_regressions"]

Check = Callable[[object], "str | None"]


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _record(kind: type, required: Iterable[str], optional: Iterable[str] = (), texts: Iterable[str] = ()) -> Check:
    """A NamedTuple whose ``required`` fields are ints >= 0, ``optional`` ones such ints or None."""
    req, opt, txt = tuple(required), tuple(optional), tuple(texts)

    def check(v: object) -> str | None:
        if not isinstance(v, kind):
            return f"expected {kind.__name__}, got {type(v).__name__}"
        f: dict[str, Any] = v._asdict()  # type: ignore[attr-defined]
        bad = [n for n in req if not _count(f[n])] + [n for n in opt if f[n] is not None and not _count(f[n])]
        if bad:
            return f"{kind.__name__} fields not counts (ints >= 0{', or None' if opt else ''}): {bad}"
        bad = [n for n in txt if f[n] is not None and not isinstance(f[n], str)]
        return f"{kind.__name__} fields neither str nor None: {bad}" if bad else None

    return check


_BLOCK_OPT = ("flush_requests", "read_time_ns", "write_time_ns", "flush_time_ns", "errors")
_check_block_counts = _record(
    BlockStats, ("read_requests", "read_bytes", "write_requests", "write_bytes"), _BLOCK_OPT, ("path",)
)
_check_net_counts = _record(
    InterfaceStats,
    ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets"),
    ("rx_errors", "rx_drops", "tx_errors", "tx_drops"),
    ("mac",),
)


def _named(check: Check) -> Check:
    def named(v: object) -> str | None:
        why = check(v)
        if why is None and not isinstance(v.device, str):  # type: ignore[attr-defined]
            return "device is not a str"
        return why

    return named


_check_block = _named(_check_block_counts)
_check_net = _named(_check_net_counts)
_check_memory = _record(MemoryStats, ("actual_kib",), [f for f in MemoryStats._fields if f != "actual_kib"])
_check_cpu = _record(CpuStats, ("time_ns",), ("user_ns", "system_ns"))
_check_balloon = _record(BalloonStats, ("current_kib", "maximum_kib"))


def _check_vcpu(v: object) -> str | None:
    why = _record(VcpuInfo, ("number", "time_ns"), ("cpu",))(v)
    if why is None and not isinstance(v.state, VcpuState):  # type: ignore[attr-defined]
        return f"VcpuInfo.state is {type(v.state).__name__}, not VcpuState"  # type: ignore[attr-defined]
    return why


def _check_vcpus(v: object) -> str | None:
    if not isinstance(v, list | tuple):
        return f"expected a list of VcpuInfo, got {type(v).__name__}"
    for x in v:
        why = _check_vcpu(x)
        if why:
            return why
    numbers = [x.number for x in v]
    return f"vcpu numbers repeat: {numbers}" if len(set(numbers)) != len(numbers) else None


def _check_vcpu_stats(v: object) -> str | None:
    why = _record(VcpuStats, ("current", "maximum"))(v)
    if why is None:
        assert isinstance(v, VcpuStats)
        why = _check_vcpus(v.vcpus) if isinstance(v.vcpus, tuple) else "VcpuStats.vcpus is not a tuple"
    return why


def _tuple_of(check: Check, label: str) -> Check:
    def tuple_of(v: object) -> str | None:
        if not isinstance(v, tuple):
            return f"{label} is {type(v).__name__}, not a tuple"
        for x in v:
            why = check(x)
            if why:
                return why
        names = [x.device for x in v]
        return f"{label} repeats devices: {names}" if len(set(names)) != len(names) else None

    return tuple_of


_GROUP_CHECKS: dict[str, Check] = {
    "state": lambda v: (
        None
        if isinstance(v, DomainStateInfo) and isinstance(v.state, DomainState)
        else f"state is {v!r:.80}, not a DomainStateInfo"
    ),
    "cpu": _check_cpu,
    "balloon": _check_balloon,
    "vcpu": _check_vcpu_stats,
    "block": _tuple_of(_check_block, "block"),
    "net": _tuple_of(_check_net, "net"),
}


def _check_domain_stats(v: object) -> str | None:
    if not isinstance(v, list):
        return f"expected a list of DomainStats, got {type(v).__name__}"
    seen: set[_uuid.UUID] = set()
    for rec in v:
        if not isinstance(rec, DomainStats):
            return f"holds {type(rec).__name__}, not DomainStats"
        ref: object = rec.domain  # a driver may have put anything there
        if not isinstance(ref, DomainRef) or not isinstance(ref.uuid, _uuid.UUID):
            return f"a record's domain is {ref!r:.80}, not a DomainRef"
        if rec.domain.uuid in seen:
            return f"domain {rec.domain.name!r} appears twice"
        seen.add(rec.domain.uuid)
        for group, check in _GROUP_CHECKS.items():
            value = getattr(rec, group)
            why = None if value is None else check(value)
            if why:
                return f"{rec.domain.name}: {why}"
    return None


#: Return types of the stats operations, each with its checker (joined into RESULT_CHECKS).
STATS_CHECKS: dict[str, Check] = {
    "list[DomainStats]": _check_domain_stats,
    "BlockStats": _check_block,
    "InterfaceStats": _check_net,
    "MemoryStats": _check_memory,
    "list[VcpuInfo]": _check_vcpus,
}

#: Per record type, the fields that are counters: they never decrease within one boot.
COUNTERS: dict[type, tuple[str, ...]] = {
    CpuStats: CpuStats._fields,
    BlockStats: ("read_requests", "read_bytes", "write_requests", "write_bytes", *_BLOCK_OPT),
    InterfaceStats: tuple(f for f in InterfaceStats._fields if f not in ("device", "mac")),
    VcpuInfo: ("time_ns",),
    MemoryStats: ("major_faults", "minor_faults"),
}


def counter_regressions(before: object, after: object, where: str = "") -> list[str]:
    """The counters that went backwards from ``before`` to ``after`` (records of one type)."""
    fields = COUNTERS.get(type(before), ())
    out = []
    for name in fields:
        a, b = getattr(before, name), getattr(after, name)
        if a is not None and b is not None and b < a:
            out.append(f"{where}{name} went from {a} to {b}")
    return out
