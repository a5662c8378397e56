"""The stats types (catalogue 1.1) on virtkit's remote protocol: encoders and strict decoders.

Joined into ``virtkit._rpc``'s tables; a record of the wrong shape is a ProtocolError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._rpc import _bad, _encode_ref, _fields, _int, _opt_int, _ref, _state_info, _str
from ._stats import (
    BalloonStats,
    BlockStats,
    CpuStats,
    DomainStats,
    InterfaceStats,
    MemoryStats,
    VcpuInfo,
    VcpuState,
    VcpuStats,
    groups_data,
    vcpu_data,
)

__all__ = ["DECODERS", "ENCODERS"]


def _opt_str(data: object, what: str) -> str | None:
    return None if data is None else _str(data, what)


def _counts(kind: type, texts: tuple[str, ...] = ()) -> Callable[[object], Any]:
    """A NamedTuple of ints (None allowed where the field's default is None) and ``texts``."""
    fields: tuple[str, ...] = kind._fields  # type: ignore[attr-defined]
    defaults: dict[str, Any] = kind._field_defaults  # type: ignore[attr-defined]

    def decode(data: object) -> Any:
        d = _fields(data, kind.__name__, fields)
        values: list[Any] = []
        for name in fields:
            v = d.get(name)
            what = f"{kind.__name__}.{name}"
            if name in texts or name == "device":
                values.append(_str(v, what) if name == "device" else _opt_str(v, what))
            elif name in defaults:
                values.append(_opt_int(v, what))
            else:
                values.append(_int(v, what, 0))
        return kind(*values)

    return decode


_block = _counts(BlockStats, ("path",))
_net = _counts(InterfaceStats, ("mac",))
_cpu = _counts(CpuStats)
_balloon = _counts(BalloonStats)
_memory = _counts(MemoryStats)


def _vcpu_info(data: object) -> VcpuInfo:
    d = _fields(data, "VcpuInfo", VcpuInfo._fields)
    try:
        state = VcpuState(_int(d.get("state"), "vcpu state"))
    except ValueError:
        raise _bad("vcpu state", d.get("state")) from None
    return VcpuInfo(
        _int(d.get("number"), "vcpu number", 0),
        state,
        _int(d.get("time_ns"), "vcpu time", 0),
        _opt_int(d.get("cpu"), "vcpu cpu"),
    )


def _list(item: Callable[[object], Any], what: str) -> Callable[[object], list[Any]]:
    def decode(data: object) -> list[Any]:
        if not isinstance(data, list):
            raise _bad(what, data)
        return [item(x) for x in data]

    return decode


def _vcpu_stats(data: object) -> VcpuStats:
    d = _fields(data, "VcpuStats", VcpuStats._fields)
    vcpus = tuple(_list(_vcpu_info, "vcpus")(d.get("vcpus", [])))
    return VcpuStats(_int(d.get("current"), "vcpu current", 0), _int(d.get("maximum"), "vcpu maximum", 0), vcpus)


_GROUPS: dict[str, Callable[[object], Any]] = {
    "state": _state_info,
    "cpu": _cpu,
    "balloon": _balloon,
    "vcpu": _vcpu_stats,
    "block": lambda d: tuple(_list(_block, "block stats")(d)),
    "net": lambda d: tuple(_list(_net, "interface stats")(d)),
}


def _domain_stats(data: object) -> DomainStats:
    d = _fields(data, "DomainStats", DomainStats._fields)
    groups = {g: None if d.get(g) is None else dec(d.get(g)) for g, dec in _GROUPS.items()}
    return DomainStats(_ref(d.get("domain")), **groups)


def _encode_domain_stats(r: DomainStats) -> dict[str, Any]:
    return {"domain": _encode_ref(r.domain), **groups_data(r, int, int)}


def _groups(data: object) -> list[str]:
    if not isinstance(data, list):
        raise _bad("stats groups", data)
    return [_str(g, "stats group") for g in data]


def _opt_refs(data: object) -> list[Any] | None:
    return None if data is None else _list(_ref, "domains")(data)


DECODERS: dict[str, Callable[[object], Any]] = {
    "StatsGroups": _groups,
    "list[DomainRef] | None": _opt_refs,
    "list[DomainStats]": _list(_domain_stats, "domain stats"),
    "BlockStats": _block,
    "InterfaceStats": _net,
    "MemoryStats": _memory,
    "list[VcpuInfo]": _list(_vcpu_info, "vcpu info"),
}

ENCODERS: dict[str, Callable[[Any], Any]] = {
    "StatsGroups": lambda v: None if v is None else list(v),
    "list[DomainRef] | None": lambda v: None if v is None else [_encode_ref(r) for r in v],
    "list[DomainStats]": lambda v: [_encode_domain_stats(r) for r in v],
    "BlockStats": lambda v: v._asdict(),
    "InterfaceStats": lambda v: v._asdict(),
    "MemoryStats": lambda v: v._asdict(),
    "list[VcpuInfo]": lambda v: [vcpu_data(x, int) for x in v],
}
