"""Statistics (catalogue 1.1): the typed records returned by the stats operations.

Units are in the field names: ``_ns`` nanoseconds, ``_kib`` KiB, ``_bytes`` bytes, ``_requests``
and ``_packets`` counts. Counters only grow while one boot of a domain lasts; a domain that is
started again (a new id) starts a new series from 0, as libvirt's and Xen's counters do.
``DomainStats``, the bulk call's record, is made in ``_types`` (re-exported here): a listing asks
for the state group alone, and loads none of the records below.

Per-group composition (in ``_stats_route``, which does not import these records, so composing
a connection never loads them): ``connect_get_all_domain_stats`` is one operation in the vtable,
but a driver may serve only some groups (``@virtkit.stats_groups("cpu", "balloon")``;
undeclared means every group). At open the core routes each group to its highest-priority
provider, by the same rules as operations (method priority, prefer, exclude). When one plugin
wins every group its method is called directly; otherwise the call fans out, one call per plugin
with its groups, the first part naming the domains the others are asked about, and records are
merged by UUID (a domain missing from any part vanished meanwhile and is left out). The first
part is the provider ranking highest for ``domain_lookup_by_uuid`` (asked for no group if it won
none of those asked), so that records carry real names where another provider knows only ids.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from ._stats_route import STATS_GROUPS, check_groups, stats_groups
from ._types import DomainState, DomainStats

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any, NamedTuple
else:
    from ._record import NamedTuple

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
    "stats_groups",
]


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


def vcpu_data(v: VcpuInfo, vcpu_state: Callable[[int], Any]) -> dict[str, Any]:
    """One vcpu as plain data, its state rendered by ``vcpu_state``."""
    return {"number": v.number, "state": vcpu_state(v.state), "time_ns": v.time_ns, "cpu": v.cpu}


def groups_data(
    rec: DomainStats, state: Callable[[DomainState], Any], vcpu_state: Callable[[int], Any]
) -> dict[str, Any]:
    """The groups ``rec`` carries, as plain data (its ``domain`` left to the caller); ``state``
    and ``vcpu_state`` render the two enums: labels for people, numbers on the wire."""
    out: dict[str, Any] = {}
    if rec.state is not None:
        out["state"] = {"state": state(rec.state.state), "reason": rec.state.reason}
    for group in ("cpu", "balloon"):
        value = getattr(rec, group)
        if value is not None:
            out[group] = value._asdict()
    if rec.vcpu is not None:
        out["vcpu"] = {
            "current": rec.vcpu.current,
            "maximum": rec.vcpu.maximum,
            "vcpus": [vcpu_data(v, vcpu_state) for v in rec.vcpu.vcpus],
        }
    for group in ("block", "net"):
        value = getattr(rec, group)
        if value is not None:
            out[group] = [x._asdict() for x in value]
    return out


#: Each field's meaning and unit, per record (and each member's, per enum); docs/contract.md is
#: generated from it. None always means "the backend cannot see it", never 0.
FIELD_DOCS: Mapping[str, Mapping[str, str]] = {
    "VcpuState": {"OFFLINE": "not online", "RUNNING": "running on a physical cpu", "BLOCKED": "online, idle"},
    "CpuStats": {
        "time_ns": "ns of cpu time, all vcpus together (libvirt's cpu.time)",
        "user_ns": "ns of it in guest user mode, or None",
        "system_ns": "ns of it in guest kernel mode, or None",
    },
    "BalloonStats": {"current_kib": "KiB the balloon gives the guest now", "maximum_kib": "KiB at most"},
    "VcpuInfo": {
        "number": "the vcpu's number, from 0",
        "state": "VcpuState",
        "time_ns": "ns of cpu time this vcpu used",
        "cpu": "the physical cpu it last ran on, or None",
    },
    "VcpuStats": {
        "current": "online vcpus",
        "maximum": "maximum vcpus",
        "vcpus": "a VcpuInfo per online vcpu; empty while shut off",
    },
    "BlockStats": {
        "device": "the disk's target name (e.g. 'xvda', 'vda'); '' for the sum of every disk",
        "read_requests": "count of read requests",
        "read_bytes": "bytes read",
        "write_requests": "count of write requests",
        "write_bytes": "bytes written",
        "flush_requests": "count of flushes, or None",
        "read_time_ns": "ns spent on reads, or None",
        "write_time_ns": "ns spent on writes, or None",
        "flush_time_ns": "ns spent on flushes, or None",
        "errors": "count of I/O errors, or None",
        "path": "the disk's source path on the host, or None",
    },
    "InterfaceStats": {
        "device": "the interface's name (e.g. 'vif3.0', 'net0'), as the caller may name it",
        "rx_bytes": "bytes received by the guest",
        "rx_packets": "packets received by the guest",
        "tx_bytes": "bytes sent by the guest",
        "tx_packets": "packets sent by the guest",
        "rx_errors": "count, or None",
        "rx_drops": "count, or None",
        "tx_errors": "count, or None",
        "tx_drops": "count, or None",
        "mac": "the guest's MAC address, lower case, or None",
    },
    "MemoryStats": {
        "actual_kib": "KiB the balloon gives the guest now",
        "swap_in_kib": "KiB swapped in, or None",
        "swap_out_kib": "KiB swapped out, or None",
        "major_faults": "count of page faults that needed I/O, or None",
        "minor_faults": "count of page faults without I/O, or None",
        "unused_kib": "KiB the guest leaves unused, or None",
        "available_kib": "KiB the guest sees in total, or None",
        "usable_kib": "KiB the guest could use without swapping, or None",
        "rss_kib": "KiB resident on the host for the domain, or None",
        "disk_caches_kib": "KiB of the guest's disk caches, or None",
    },
    "DomainStats": {
        "domain": "the DomainRef the record is about",
        "state": "group 'state': DomainStateInfo",
        "cpu": "group 'cpu': CpuStats",
        "balloon": "group 'balloon': BalloonStats",
        "vcpu": "group 'vcpu': VcpuStats",
        "block": "group 'block': a BlockStats per disk (empty while shut off)",
        "net": "group 'net': an InterfaceStats per interface (empty while shut off)",
    },
}
