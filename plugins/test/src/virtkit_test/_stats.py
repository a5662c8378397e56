"""Statistics of the in-memory hypervisor: deterministic counters derived from cpu time.

Every counter is a pure function of the domain's cpu time ``t`` (ns) read under the driver's
lock, so it grows while the domain runs, stands still while paused, restarts from 0 when the
domain is started again (a new series), and a test can compute the exact value from ``t``. The
formulas are in the plugin's README.
"""

from __future__ import annotations

import time
import uuid as _uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

import virtkit
from virtkit import DomainRef, DomainState, DomainStateInfo, InvalidArgument, InvalidOperation, NodeInfo, check_flags

TYPE_CHECKING = False  # typing is not imported at run time (a CLI's start-up path)
if TYPE_CHECKING:
    import _thread
    from typing import Any

    from virtkit import BlockStats, DomainStats, InterfaceStats, MemoryStats, VcpuInfo

    from ._dom import Dom

# The stats records are taken from virtkit when first needed (virtkit.BlockStats, ...): opening
# test:/// for anything else then never loads them.

__all__ = ["Disk", "Nic", "StatsMixin", "block_stats", "devices_of", "interface_stats", "memory_stats"]

_ACTIVE = frozenset({DomainState.RUNNING, DomainState.PAUSED})
_SECOND = 1_000_000_000


class Disk:
    __slots__ = ("path", "target")

    def __init__(self, target: str, path: str | None) -> None:
        self.target, self.path = target, path


class Nic:
    __slots__ = ("mac", "target")

    def __init__(self, target: str, mac: str) -> None:
        self.target, self.mac = target, mac


def devices_of(config: Any, uuid: _uuid.UUID) -> tuple[tuple[Disk, ...], tuple[Nic, ...]]:
    """The disks and interfaces a config's ``devices`` describe, with default names filled in."""
    prefix = "vd" if config.os_type == "hvm" else "xvd"
    disks: list[Disk] = []
    nics: list[Nic] = []
    for dev in config.devices:
        if not isinstance(dev, Mapping):
            continue
        kind = dev.get("type")
        if kind == "disk":
            target = dev.get("target") or dev.get("vdev") or f"{prefix}{chr(ord('a') + len(disks) % 26)}"
            path = dev.get("path")
            disks.append(Disk(str(target), None if path is None else str(path)))
        elif kind == "interface":
            n = len(nics)
            mac = dev.get("mac") or "52:54:00:{:02x}:{:02x}:{:02x}".format(
                *uuid.bytes[13:15], (uuid.bytes[15] + n) % 256
            )
            nics.append(Nic(str(dev.get("target") or f"net{n}"), str(mac).lower()))
    return tuple(disks), tuple(nics)


def block_stats(disk: Disk, index: int, t: int) -> BlockStats:
    """Disk ``index`` (0-based) after ``t`` ns of cpu time: (100 reads + 40 writes + 2 flushes)
    per second per disk number (index + 1), 4 KiB reads, 8 KiB writes."""
    m = index + 1
    rd, wr, fl = t * 100 * m // _SECOND, t * 40 * m // _SECOND, t * 2 * m // _SECOND
    return virtkit.BlockStats(
        disk.target, rd, rd * 4096, wr, wr * 8192, fl, rd * 100_000, wr * 250_000, fl * 1_000_000, 0, disk.path
    )


def interface_stats(nic: Nic, index: int, t: int) -> InterfaceStats:
    """Interface ``index`` after ``t`` ns: 300 packets of 1000 bytes in, 200 of 600 bytes out, per
    second per interface number (index + 1)."""
    m = index + 1
    rx, tx = t * 300 * m // _SECOND, t * 200 * m // _SECOND
    return virtkit.InterfaceStats(nic.target, rx * 1000, rx, tx * 600, tx, 0, 0, 0, 0, nic.mac)


def memory_stats(memory: int, t: int) -> MemoryStats:
    return virtkit.MemoryStats(
        actual_kib=memory,
        swap_in_kib=0,
        swap_out_kib=0,
        major_faults=t // _SECOND,
        minor_faults=t * 1000 // _SECOND,
        unused_kib=memory // 4,
        available_kib=memory,
        usable_kib=memory // 2,
        rss_kib=memory,
        disk_caches_kib=memory // 8,
    )


def _sum_block(stats: Sequence[BlockStats]) -> BlockStats:
    def total(name: str) -> int:
        return sum(getattr(s, name) or 0 for s in stats)

    rd, rd_b, wr, wr_b, fl, rd_t, wr_t, fl_t, err = (total(f) for f in virtkit.BlockStats._fields[1:10])
    return virtkit.BlockStats("", rd, rd_b, wr, wr_b, fl, rd_t, wr_t, fl_t, err)


def vcpu_times(d: Dom, t: int) -> list[int]:
    """Each online vcpu's share of ``t``: its time at the last change of the vcpu count, plus an
    even split (Hermite's identity: the shares sum to what elapsed) of the time since."""
    n = d.vcpus
    elapsed = t - d.vcpu_t0
    base = d.vcpu_base
    return [(base[i] if i < len(base) else 0) + (elapsed + i) // n for i in range(n)]


class StatsMixin:
    """The stats operations of :class:`virtkit_test.Driver` (mixed in; uses its lock and state)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _lock: _thread.LockType
        _active: dict[int, Dom]
        _by_uuid: dict[_uuid.UUID, Dom]
        _node: NodeInfo

        def _find(self, ref: DomainRef) -> Dom: ...
        def _open(self) -> None: ...

    def connect_get_all_domain_stats(
        self, groups: Iterable[str], domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        check_flags(flags)
        want = frozenset(groups)
        known = frozenset(virtkit.STATS_GROUPS)
        if not want <= known:
            raise InvalidArgument(f"unknown stats group(s) {sorted(want - known)}")
        record = _recorder(want, self._node.cpus)
        with self._lock:
            self._open()
            now = time.monotonic_ns()
            if domains is None:
                doms = [self._active[i] for i in sorted(self._active)]
                doms += sorted((d for d in self._by_uuid.values() if d.id is None), key=lambda d: d.name)
            else:  # a domain gone since the caller listed it is left out
                doms = [d for r in domains if (d := self._by_uuid.get(r.uuid)) is not None]
            return [record(d, now) for d in doms]

    def _live(self, dom: DomainRef, what: str) -> tuple[Dom, int]:
        d = self._find(dom)
        if d.state not in _ACTIVE:
            raise InvalidOperation(f"cannot read {what} of {d.name!r}: it is {d.state.label}, not running")
        return d, d.cpu_time(time.monotonic_ns())

    def domain_block_stats(self, dom: DomainRef, device: str, *, flags: int = 0) -> BlockStats:
        check_flags(flags)
        with self._lock:
            d, t = self._live(dom, "block stats")
            if device == "":
                return _sum_block([block_stats(k, i, t) for i, k in enumerate(d.disks)])
            for i, k in enumerate(d.disks):
                if device in (k.target, k.path):
                    return block_stats(k, i, t)
            raise InvalidArgument(f"domain {d.name!r} has no disk {device!r}"[:200])

    def domain_interface_stats(self, dom: DomainRef, device: str, *, flags: int = 0) -> InterfaceStats:
        check_flags(flags)
        with self._lock:
            d, t = self._live(dom, "interface stats")
            for i, nic in enumerate(d.nets):
                if device == nic.target or (isinstance(device, str) and device.lower() == nic.mac):
                    return interface_stats(nic, i, t)
            raise InvalidArgument(f"domain {d.name!r} has no interface {device!r}"[:200])

    def domain_memory_stats(self, dom: DomainRef, *, flags: int = 0) -> MemoryStats:
        check_flags(flags)
        with self._lock:
            d, t = self._live(dom, "memory stats")
            return memory_stats(d.memory, t)

    def domain_get_vcpu_info(self, dom: DomainRef, *, flags: int = 0) -> list[VcpuInfo]:
        check_flags(flags)
        with self._lock:
            d, t = self._live(dom, "vcpu info")
            return _vcpus(d, t, self._node.cpus)


def _vcpus(d: Dom, t: int, cpus: int) -> list[VcpuInfo]:
    state = virtkit.VcpuState.RUNNING if d.state is DomainState.RUNNING else virtkit.VcpuState.BLOCKED
    info = virtkit.VcpuInfo
    return [info(i, state, ns, i % cpus) for i, ns in enumerate(vcpu_times(d, t))]


def _recorder(want: frozenset[str], cpus: int) -> Callable[[Dom, int], DomainStats]:
    """One domain's record of the wanted groups; the group tests are taken once per bulk call."""
    g_state, g_block, g_net = "state" in want, "block" in want, "net" in want
    g_cpu, g_balloon, g_vcpu = "cpu" in want, "balloon" in want, "vcpu" in want
    # A group's record class is taken only when the group is asked for: a listing (the state
    # group alone) loads none of them.
    new_record = virtkit.DomainStats
    cpu_stats = virtkit.CpuStats if g_cpu else None
    balloon_stats = virtkit.BalloonStats if g_balloon else None
    vcpu_stats = virtkit.VcpuStats if g_vcpu else None

    def record(d: Dom, now: int) -> DomainStats:
        t = d.cpu_ns if d.since is None else d.cpu_ns + (now - d.since)
        active = d.id is not None
        user = t * 3 // 4
        return new_record(
            d.ref,
            DomainStateInfo(d.state, d.reason) if g_state else None,
            cpu_stats(t, user, t - user) if cpu_stats else None,
            balloon_stats(d.memory, d.max_memory) if balloon_stats else None,
            vcpu_stats(d.vcpus, d.max_vcpus, tuple(_vcpus(d, t, cpus)) if active else ()) if vcpu_stats else None,
            (tuple(block_stats(k, i, t) for i, k in enumerate(d.disks)) if active else ()) if g_block else None,
            (tuple(interface_stats(n, i, t) for i, n in enumerate(d.nets)) if active else ()) if g_net else None,
        )

    return record
