"""Statistics (catalogue 1.1), as libvirt's qemu driver reads them: QMP and /proc.

* block: ``query-blockstats``; a config's disk ``i`` is QEMU's drive ``virtio{i}`` (``-drive
  if=virtio,index=i`` without an id) and the guest's ``vd{a+i}``;
* cpu and vcpu: ``query-cpus-fast`` names each vcpu's host thread, whose utime + stime (and the
  host cpu it last ran on) /proc gives; ``query-stats`` has vcpu figures only under KVM, and
  these tests' QEMU runs TCG, so the threads are the one source that is always there. User and
  system time inside the guest are not visible from the host: None;
* balloon and memory: ``query-balloon``, and the balloon's guest statistics (``qom-get
  guest-stats``, polled every ``_command.BALLOON_POLL`` s as the command line asks; None until the guest's
  driver first reported, or when it has none), the resident set of QEMU from /proc;
* net: none. The domains this driver starts have no network device (``-nodefaults``, no
  ``-netdev``): every domain's ``net`` group is empty and every interface is unknown.

Every reply is checked: a shape QEMU never sends is a ProtocolError, not a KeyError.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import virtkit
from virtkit import (
    DomainRef,
    DomainState,
    DomainStateInfo,
    DriverError,
    InvalidArgument,
    InvalidOperation,
    ProtocolError,
    check_flags,
)

from ._deadline import Deadline, bounded
from ._qmp import Commands
from ._replies import balloon_kib, domain_state, status_of, vcpu_threads
from ._state import Running

if TYPE_CHECKING:
    from virtkit import BlockStats, DomainStats, InterfaceStats, MemoryStats, VcpuInfo

    from ._domains import Domains
    from ._monitor import Monitor
    from ._power import Power
    from ._process import Supervisor

__all__ = ["StatsMixin", "block_stats", "disks_of", "guest_memory", "thread_stats"]

_BALLOON_PATH = "/machine/peripheral/balloon0"
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_COUNT_MAX = 1 << 63


class Disk:
    __slots__ = ("drive", "path", "target")

    def __init__(self, drive: str, target: str, path: str) -> None:
        self.drive, self.target, self.path = drive, target, path


def disks_of(config: Any) -> list[Disk]:
    """The config's disks as QEMU and the guest name them (see ``_command.build_argv``)."""
    disks = [d for d in config.devices if isinstance(d, Mapping) and d.get("type") == "disk"]
    return [Disk(f"virtio{i}", "vd" + _letters(i), str(d.get("path"))) for i, d in enumerate(disks)]


def _letters(i: int) -> str:
    """Linux's disk suffixes: a..z, aa..zz, ..."""
    return _letters(i // 26 - 1) + chr(ord("a") + i % 26) if i >= 26 else chr(ord("a") + i)


def _count(stats: Mapping[str, Any], key: str, what: str) -> int:
    value = stats.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _COUNT_MAX:
        raise ProtocolError(f"QMP {what}: {key} is {value!r:.40}, not a count")
    return value


_BLOCK_KEYS = (
    "rd_operations", "rd_bytes", "wr_operations", "wr_bytes", "flush_operations",
    "rd_total_time_ns", "wr_total_time_ns", "flush_total_time_ns",
    "failed_rd_operations", "failed_wr_operations", "failed_flush_operations",
)  # fmt: skip


def block_stats(reply: object, disks: Sequence[Disk]) -> list[BlockStats]:
    """``query-blockstats`` -> a BlockStats per disk of the config that QEMU reports."""
    if not isinstance(reply, list) or not all(isinstance(e, dict) for e in reply):
        raise ProtocolError(f"QMP query-blockstats answered {str(reply)[:120]!r}")
    by_drive = {e.get("device"): e.get("stats") for e in reply}
    out = []
    for disk in disks:
        if disk.drive not in by_drive:
            continue  # not attached (yet): no counters to give
        s = by_drive[disk.drive]
        if not isinstance(s, dict):
            raise ProtocolError(f"QMP query-blockstats: {disk.drive} has stats {str(s)[:80]!r}")

        what = f"query-blockstats {disk.drive}"
        rd, rd_b, wr, wr_b, fl, rd_t, wr_t, fl_t, f_rd, f_wr, f_fl = (_count(s, k, what) for k in _BLOCK_KEYS)
        out.append(
            virtkit.BlockStats(
                disk.target,
                rd,
                rd_b,
                wr,
                wr_b,
                fl,
                rd_t,
                wr_t,
                fl_t,
                f_rd + f_wr + f_fl,
                disk.path,
            )
        )
    return out


def _sum_block(stats: Sequence[BlockStats]) -> BlockStats:
    rd, rd_b, wr, wr_b, fl, rd_t, wr_t, fl_t, err = (
        sum(getattr(s, f) or 0 for s in stats) for f in virtkit.BlockStats._fields[1:10]
    )
    return virtkit.BlockStats("", rd, rd_b, wr, wr_b, fl, rd_t, wr_t, fl_t, err)


def thread_stats(pid: int, tid: int) -> tuple[int, int | None] | None:
    """(utime + stime in ns, the host cpu it last ran on) of one of QEMU's threads; None when
    the thread is gone (QEMU is exiting)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as fh:  # not pathlib: on the per-call path
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return None
    cpu = int(fields[36]) if len(fields) > 36 else None  # field 39, "processor"
    return (int(fields[11]) + int(fields[12])) * _TICK_NS, cpu


def _vcpus(reply: object, pid: int | None, running: bool) -> list[VcpuInfo]:
    if not isinstance(reply, list) or not all(isinstance(c, dict) for c in reply):
        raise ProtocolError(f"QMP query-cpus-fast answered {str(reply)[:120]!r}")
    vcpu_threads(reply)  # the thread ids checked
    state = virtkit.VcpuState.RUNNING if running else virtkit.VcpuState.BLOCKED
    out = []
    for i, cpu in enumerate(reply):
        number = cpu.get("cpu-index", i)
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 1 << 16:
            raise ProtocolError(f"QMP query-cpus-fast: bad cpu-index in {str(cpu)[:80]!r}")
        tid = cpu.get("thread-id")
        got = thread_stats(pid, tid) if pid is not None and tid is not None else None
        time_ns, host_cpu = got if got is not None else (0, None)
        out.append(virtkit.VcpuInfo(number, state, time_ns, host_cpu))
    return out


def guest_memory(actual_kib: int, reply: object, rss_kib: int | None) -> MemoryStats:
    """``qom-get guest-stats`` of the balloon -> MemoryStats (libvirt's mapping: bytes to KiB;
    -1, or a guest that never reported, is None)."""
    stats = reply.get("stats") if isinstance(reply, dict) else None
    updated = reply.get("last-update") if isinstance(reply, dict) else None
    if not isinstance(stats, dict) or not isinstance(updated, int):
        raise ProtocolError(f"QMP qom-get guest-stats answered {str(reply)[:120]!r}")

    def get(key: str, scale: int = 1024) -> int | None:
        value = stats.get(key)
        if updated == 0 or value is None or value == -1:
            return None
        return _count(stats, key, "guest-stats") // scale

    return virtkit.MemoryStats(
        actual_kib=actual_kib,
        swap_in_kib=get("stat-swap-in"),
        swap_out_kib=get("stat-swap-out"),
        major_faults=get("stat-major-faults", 1),
        minor_faults=get("stat-minor-faults", 1),
        unused_kib=get("stat-free-memory"),
        available_kib=get("stat-total-memory"),
        usable_kib=get("stat-available-memory"),
        rss_kib=rss_kib,
        disk_caches_kib=get("stat-disk-caches"),
    )


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


_GUEST_STATS: Commands = (("qom-get", {"path": _BALLOON_PATH, "property": "guest-stats"}),)


class StatsMixin:
    """The stats operations of :class:`virtkit_qemu.Driver` (mixed in; uses its parts)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _deadline: Deadline
        _monitor: Monitor
        _procs: Supervisor
        _domains: Domains
        _power: Power

        def _open(self) -> None: ...
        def _active(self, ref: DomainRef, op: str) -> Running: ...

    def _ask(self, run: Running, cmds: Commands) -> list[Any] | None:
        """The replies, or None when the domain ended meanwhile."""
        try:
            return self._monitor.execute(run, cmds, self._deadline.until())
        except (ProtocolError, DriverError):
            if self._power.status(run) == "gone":
                return None
            raise

    def _running_replies(self, run: Running, cmds: Commands, op: str) -> list[Any]:
        replies = self._ask(run, cmds)
        if replies is None:
            self._active(run.ref, op)  # gone: NoSuchDomain, or InvalidOperation when defined
            raise InvalidOperation(f"cannot read {op} of domain {run.config.name!r}: it is not running")
        return replies

    @bounded
    def connect_get_all_domain_stats(
        self, groups: Iterable[str] | None, domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        check_flags(flags)
        want = frozenset(virtkit.STATS_GROUPS if groups is None else groups)
        unknown = want - frozenset(virtkit.STATS_GROUPS)
        if unknown:
            raise InvalidArgument(f"unknown stats group(s) {sorted(unknown)}"[:200])
        self._open()
        wanted = None if domains is None else {r.uuid for r in domains}
        cmds: list[tuple[str, Mapping[str, object] | None]] = [("query-status", None)]
        if "balloon" in want:
            cmds.append(("query-balloon", None))
        if want & {"cpu", "vcpu"}:
            cmds.append(("query-cpus-fast", None))
        if "block" in want:
            cmds.append(("query-blockstats", None))
        out = []
        seen = set()
        for run in sorted(self._procs.running(), key=lambda r: r.id):
            if wanted is not None and run.uuid not in wanted:
                continue
            replies = self._ask(run, tuple(cmds))
            if replies is None:
                continue  # it ended meanwhile: left out (a defined one shows as shut off below)
            seen.add(run.uuid)
            out.append(self._record(run, want, dict(zip((c for c, _ in cmds), replies, strict=True))))
        if wanted is None or wanted - seen:
            out += self._shut_off(want, wanted, seen)
        return out

    def _record(self, run: Running, want: frozenset[str], replies: dict[str, Any]) -> DomainStats:
        status = status_of(replies["query-status"])
        state = domain_state(status)
        pid = self._procs.pid(run)
        vcpus = _vcpus(replies["query-cpus-fast"], pid, status == "running") if want & {"cpu", "vcpu"} else []
        cfg = run.config
        return virtkit.DomainStats(
            run.ref,
            DomainStateInfo(state, {"running": "booted", "paused": "user"}.get(status, status))
            if "state" in want
            else None,
            virtkit.CpuStats(sum(v.time_ns for v in vcpus)) if "cpu" in want else None,
            virtkit.BalloonStats(balloon_kib(replies["query-balloon"]), run.max_memory) if "balloon" in want else None,
            virtkit.VcpuStats(len(vcpus), cfg.max_vcpus or cfg.vcpus, tuple(vcpus)) if "vcpu" in want else None,
            tuple(block_stats(replies["query-blockstats"], disks_of(cfg))) if "block" in want else None,
            () if "net" in want else None,
        )

    def _shut_off(self, want: frozenset[str], wanted: set[Any] | None, seen: set[Any]) -> list[DomainStats]:
        """The defined domains that do not run (asked for, or all when ``wanted`` is None)."""
        out = []
        for name in self._domains.defined_names():
            try:
                dom = self._domains.state.defined_record(name)
            except (FileNotFoundError, ProtocolError):
                continue  # undefined meanwhile, or a broken file (listing warns about it)
            if dom.uuid in seen or (wanted is not None and dom.uuid not in wanted):
                continue
            cfg = dom.config
            out.append(
                virtkit.DomainStats(
                    dom.ref,
                    DomainStateInfo(DomainState.SHUTOFF, "shutdown") if "state" in want else None,
                    virtkit.CpuStats(0) if "cpu" in want else None,
                    virtkit.BalloonStats(cfg.memory, dom.max_memory) if "balloon" in want else None,
                    virtkit.VcpuStats(cfg.vcpus, cfg.max_vcpus or cfg.vcpus) if "vcpu" in want else None,
                    () if "block" in want else None,
                    () if "net" in want else None,
                )
            )
        return out

    @bounded
    def domain_block_stats(self, dom: DomainRef, device: str, *, flags: int = 0) -> BlockStats:
        check_flags(flags)
        if not isinstance(device, str):
            raise InvalidArgument(f"device must be a str, got {type(device).__name__}")
        run = self._active(dom, "read block stats of")
        disks = disks_of(run.config)
        if device:
            disks = [d for d in disks if device in (d.target, d.path)]
            if not disks:
                raise InvalidArgument(f"domain {run.config.name!r} has no disk {device!r}"[:200])
        (reply,) = self._running_replies(run, (("query-blockstats", None),), "block stats")
        stats = block_stats(reply, disks)
        if device:
            if not stats:
                raise InvalidArgument(f"disk {device!r} of {run.config.name!r} is not attached in QEMU"[:200])
            return stats[0]
        return _sum_block(stats)

    @bounded
    def domain_interface_stats(self, dom: DomainRef, device: str, *, flags: int = 0) -> InterfaceStats:
        check_flags(flags)
        run = self._active(dom, "read interface stats of")
        why = f"domain {run.config.name!r} has no interface {device!r}"[:200]
        raise InvalidArgument(f"{why}: this driver gives its domains no network device")

    @bounded
    def domain_memory_stats(self, dom: DomainRef, *, flags: int = 0) -> MemoryStats:
        check_flags(flags)
        run = self._active(dom, "read memory stats of")
        balloon, guest = self._running_replies(run, (("query-balloon", None), *_GUEST_STATS), "memory stats")
        return guest_memory(balloon_kib(balloon), guest, rss_kib(self._procs.pid(run)))

    @bounded
    def domain_get_vcpu_info(self, dom: DomainRef, *, flags: int = 0) -> list[VcpuInfo]:
        check_flags(flags)
        run = self._active(dom, "read vcpu info of")
        status, cpus = self._running_replies(run, (("query-status", None), ("query-cpus-fast", None)), "vcpu info")
        return _vcpus(cpus, self._procs.pid(run), status_of(status) == "running")
