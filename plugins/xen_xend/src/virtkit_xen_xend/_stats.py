"""Statistics (catalogue 1.1) from what xend really tells: the domain record and ``op=vcpuinfo``.

A domain's record carries ``cpu_time`` (seconds, float), ``memory`` and ``maxmem`` (MiB),
``vcpus`` and ``online_vcpus``: groups ``state``, ``cpu``, ``balloon`` and ``vcpu`` come from
it, the last with each vcpu from ``GET /xend/domain/NAME?op=vcpuinfo`` (xend's
``XendDomainInfo.getVCPUInfo``: number, online, blocked, running, cpu_time, cpu). xend has no
disk or interface counters (libvirt's old Xen driver read those from dom0's sysfs and
/proc/net/dev, never from xend), so ``block`` and ``net`` are not served here, and neither are
``domain_block_stats`` and ``domain_interface_stats``; on a local ``xen:///`` other plugins
serve them. ``domain_memory_stats`` has the balloon's size only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import virtkit
from virtkit import (
    DomainRef,
    InvalidArgument,
    InvalidOperation,
    NoSuchDomain,
    ProtocolError,
    Unsupported,
    check_flags,
)

from ._model import XendDomain
from ._numbers import MAX_CPU_SECONDS, number, real
from ._sxp import Sxp, children, dumps, value

if TYPE_CHECKING:
    from virtkit import DomainStats, MemoryStats, VcpuInfo

    from ._transport import Transport

__all__ = ["SERVED", "StatsMixin", "vcpu_info"]

#: The groups xend has the data for.
SERVED = ("state", "cpu", "balloon", "vcpu")
_MAX_VCPU = 1 << 16
_MAX_CPU = 1 << 20


def _flag(vcpu: Sxp, key: str) -> bool:
    return bool(number(value(vcpu, key), f"vcpuinfo field {key!r}", high=1, default=0))


def vcpu_info(reply: Sxp | None, rec: XendDomain) -> list[VcpuInfo]:
    """An ``op=vcpuinfo`` reply about ``rec`` -> a VcpuInfo per vcpu xend lists (an offline one
    OFFLINE); a reply of another shape, or about another domain, is a ProtocolError."""
    if not isinstance(reply, list) or not reply or reply[0] != "domain":
        raise ProtocolError(f"xend sent {dumps(reply)[:80]!r} for vcpuinfo of {rec.name!r}")
    if value(reply, "name") not in (None, rec.name):
        raise ProtocolError(f"xend answered vcpuinfo of {rec.name!r} about {value(reply, 'name')!r}")
    out = []
    for v in children(reply, "vcpu"):
        n = number(value(v, "number"), "vcpuinfo field 'number'", high=_MAX_VCPU)
        if n is None:
            raise ProtocolError(f"xend vcpuinfo of {rec.name!r}: a vcpu without a number")
        seconds = real(value(v, "cpu_time"), "vcpuinfo field 'cpu_time'", 0.0, MAX_CPU_SECONDS) or 0.0
        raw_cpu = value(v, "cpu")
        cpu = None if raw_cpu in (None, "", "-1") else number(raw_cpu, "vcpuinfo field 'cpu'", high=_MAX_CPU)
        if not _flag(v, "online"):
            state = virtkit.VcpuState.OFFLINE
        elif _flag(v, "running"):
            state = virtkit.VcpuState.RUNNING
        else:  # online, blocked or waiting for a cpu
            state = virtkit.VcpuState.BLOCKED
        out.append(virtkit.VcpuInfo(n, state, round(seconds * 1e9), cpu))
    if len({v.number for v in out}) != len(out):
        raise ProtocolError(f"xend vcpuinfo of {rec.name!r} repeats vcpu numbers")
    return out


class StatsMixin:
    """The stats operations of :class:`virtkit_xen_xend.Driver` (mixed in)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _t: Transport

        def _records(self) -> list[XendDomain]: ...
        def _get(self, dom: DomainRef) -> XendDomain: ...
        def _call(
            self, method: str, path: str, *, params: dict[str, str] | None = None, what: str = ""
        ) -> Sxp | None: ...
        def _path(self, key: str, what: str) -> str: ...

    def _vcpus(self, rec: XendDomain) -> list[VcpuInfo]:
        reply = self._call("GET", self._path(rec.name, repr(rec.name)), params={"op": "vcpuinfo"}, what=repr(rec.name))
        return vcpu_info(reply, rec)

    def _live(self, dom: DomainRef, what: str) -> XendDomain:
        rec = self._get(dom)
        if not rec.active:
            raise InvalidOperation(f"cannot read {what} of domain {rec.name!r}: it is not running")
        return rec

    @virtkit.stats_groups(*SERVED)
    def connect_get_all_domain_stats(
        self, groups: Iterable[str] | None, domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        check_flags(flags)
        want = frozenset(SERVED if groups is None else groups)
        unknown = want - frozenset(virtkit.STATS_GROUPS)
        if unknown:
            raise InvalidArgument(f"unknown stats group(s) {sorted(unknown)}"[:200])
        if not want <= frozenset(SERVED):
            raise Unsupported(f"xend has no {', '.join(sorted(want - frozenset(SERVED)))} statistics")
        with self._t.operation():
            if domains is None:
                recs = self._records()
            else:  # a domain gone since the caller listed it is left out
                recs = []
                for ref in domains:
                    try:
                        recs.append(self._get(ref))
                    except NoSuchDomain:
                        continue
            recs.sort(key=lambda r: (not r.active, r.id if r.id is not None else 0, r.name))
            out = []
            for rec in recs:
                vcpus: tuple[VcpuInfo, ...] = ()
                if "vcpu" in want and rec.active:
                    try:
                        vcpus = tuple(v for v in self._vcpus(rec) if v.state is not virtkit.VcpuState.OFFLINE)
                    except NoSuchDomain:
                        continue  # gone meanwhile
                out.append(
                    virtkit.DomainStats(
                        rec.ref,
                        rec.state_info() if "state" in want else None,
                        virtkit.CpuStats(rec.cpu_time) if "cpu" in want else None,
                        virtkit.BalloonStats(rec.memory, rec.max_memory) if "balloon" in want else None,
                        virtkit.VcpuStats(rec.online_vcpus if rec.active else rec.vcpus, rec.max_vcpus, vcpus)
                        if "vcpu" in want
                        else None,
                    )
                )
            return out

    def domain_memory_stats(self, dom: DomainRef, *, flags: int = 0) -> MemoryStats:
        check_flags(flags)
        with self._t.operation():
            return virtkit.MemoryStats(self._live(dom, "memory stats").memory)

    def domain_get_vcpu_info(self, dom: DomainRef, *, flags: int = 0) -> list[VcpuInfo]:
        check_flags(flags)
        with self._t.operation():
            return self._vcpus(self._live(dom, "vcpu info"))
