"""Statistics (catalogue 1.1): the typed records returned by the stats operations.

Units are in the field names: ``_ns`` nanoseconds, ``_kib`` KiB, ``_bytes`` bytes, ``_requests``
and ``_packets`` counts. Counters only grow while one boot of a domain lasts; a domain that is
started again (a new id) starts a new series from 0, as libvirt's and Xen's counters do.

Per-group composition (in ``_stats_route``, which does not import these records, so composing
a connection never loads them): ``connect_get_all_domain_stats`` is one operation in the vtable,
but a driver may serve only some groups (``@virtkit.stats_groups("cpu", "balloon")``;
undeclared means every group). At open the core routes each group to its highest-priority
provider, by the same rules as operations (method priority, prefer, exclude). When one plugin
wins every group its method is called directly; otherwise the call fans out, one call per plugin
with its groups, the first part naming the domains the others are asked about, and records are
merged by UUID (a domain missing from any part vanished meanwhile and is left out).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from ._stats_route import STATS_GROUPS, check_groups, stats_groups
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


class DomainStats(NamedTuple):
    """One domain's record in a bulk call: the requested groups set, the others None."""

    domain: DomainRef
    state: DomainStateInfo | None = None
    cpu: CpuStats | None = None
    balloon: BalloonStats | None = None
    vcpu: VcpuStats | None = None
    block: tuple[BlockStats, ...] | None = None
    net: tuple[InterfaceStats, ...] | None = None
