"""Statistics from the hypervisor (catalogue 1.1): groups state, cpu, balloon and vcpu.

One ``getdomaininfolist`` sysctl gives every domain's state, cpu time, memory and vcpu counts
(what ``xentop`` and libvirt's libxl driver read); the vcpu group adds one ``getvcpuinfo``
domctl per vcpu. Disks and interfaces are named in xenstore, so the block and net groups are
not served here (virtkit-xenstore serves them). The records' names are this plugin's synthetic
ones (``domain-<id>``) unless the caller named the domains: then its DomainRefs come back.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Iterable

import virtkit
from virtkit import DomainRef, DomainState, DomainStateInfo, InvalidOperation, check_flags, stats_groups

from . import _abi as A

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from virtkit import DomainStats, MemoryStats, VcpuInfo, VcpuStats

    from ._hyper import Hypervisor

__all__ = ["StatsMixin"]

_KIB_PER_PAGE = 4
_INACTIVE = (DomainState.DYING, DomainState.SHUTDOWN, DomainState.CRASHED)
_NO_VCPU = 0xFFFFFFFF  # max_vcpu_id of a domain without vcpus
_NIL = _uuid.UUID(int=0)


def _name(domid: int) -> str:
    return "Domain-0" if domid == 0 else f"domain-{domid}"


#: handle -> UUID: building a UUID is Python code, and listings ask for the same ones each time
_UUIDS: dict[bytes, _uuid.UUID] = {}


def _handle_uuid(handle: bytes) -> _uuid.UUID:
    u = _UUIDS.get(handle)
    if u is None:
        if len(_UUIDS) >= 4096:  # domains come and go: bounded
            _UUIDS.clear()
        u = _UUIDS[handle] = _uuid.UUID(bytes=handle)
    return u


def _vcpu_records(raw: list[tuple[int, int, int, int, int, int]]) -> tuple[VcpuInfo, ...]:
    """The online vcpus, with libvirt's libxl driver's state rule: blocked, else running."""
    info, running, blocked = virtkit.VcpuInfo, virtkit.VcpuState.RUNNING, virtkit.VcpuState.BLOCKED
    return tuple(info(n, blocked if b else running, t, cpu) for n, online, b, _r, t, cpu in raw if online)


class StatsMixin:
    """The stats operations of :class:`virtkit_xen_hyper.Driver` (mixed in)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _hv: Hypervisor

        def _info(self, dom: DomainRef) -> A.DomInfo: ...

    def _vcpu_stats(self, i: A.DomInfo) -> VcpuStats:
        maximum = 0 if i.max_vcpu_id == _NO_VCPU else i.max_vcpu_id + 1
        vcpus = _vcpu_records(self._hv.vcpus(i.domid, maximum)) if maximum else ()
        return virtkit.VcpuStats(i.nr_online_vcpus, maximum, vcpus)

    @stats_groups("state", "cpu", "balloon", "vcpu")
    def connect_get_all_domain_stats(
        self, groups: Iterable[str], domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        check_flags(flags)
        want = frozenset(groups)
        infos = self._hv.domains()
        if domains is None:
            pairs = [(DomainRef(_name(i.domid), _handle_uuid(i.handle), i.domid), i) for i in infos]
        else:
            pairs = _match(domains, infos)
        g_state, g_cpu, g_balloon, g_vcpu = ("state" in want, "cpu" in want, "balloon" in want, "vcpu" in want)
        record, cpu, balloon = virtkit.DomainStats, virtkit.CpuStats, virtkit.BalloonStats
        out = []
        for ref, i in pairs:
            vcpu = None
            if g_vcpu:
                try:
                    vcpu = self._vcpu_stats(i)
                except virtkit.NoSuchDomain:
                    continue  # gone between the list and its vcpus: left out
            out.append(
                record(
                    ref,
                    DomainStateInfo(*A.state_from_flags(i.flags)) if g_state else None,
                    cpu(i.cpu_time) if g_cpu else None,
                    balloon(i.tot_pages * _KIB_PER_PAGE, i.max_pages * _KIB_PER_PAGE) if g_balloon else None,
                    vcpu,
                )
            )
        return out

    def _live(self, dom: DomainRef, what: str) -> A.DomInfo:
        i = self._info(dom)
        state = A.state_from_flags(i.flags)[0]
        if state in _INACTIVE:
            raise InvalidOperation(f"cannot read {what} of domain {i.domid}: it is {state.label}")
        return i

    def domain_get_vcpu_info(self, dom: DomainRef, *, flags: int = 0) -> list[VcpuInfo]:
        check_flags(flags)
        return list(self._vcpu_stats(self._live(dom, "vcpu info")).vcpus)

    def domain_memory_stats(self, dom: DomainRef, *, flags: int = 0) -> MemoryStats:
        """The balloon's size and the domain's ceiling, as libvirt's libxl driver reports them;
        what the guest does with its memory is not visible to the hypervisor."""
        check_flags(flags)
        i = self._live(dom, "memory stats")
        return virtkit.MemoryStats(i.tot_pages * _KIB_PER_PAGE, available_kib=i.max_pages * _KIB_PER_PAGE)


def _match(domains: list[DomainRef], infos: list[A.DomInfo]) -> list[tuple[DomainRef, Any]]:
    """The caller's DomainRefs that still exist, each with its info: by id when it has one (the
    handle must still match unless the ref's UUID is nil), else by UUID."""
    by_id = {i.domid: i for i in infos}
    by_handle = {i.handle: i for i in infos}
    out = []
    for ref in domains:
        if ref.id is not None:
            i = by_id.get(ref.id)
            if i is None or (ref.uuid != _NIL and i.handle != ref.uuid.bytes):
                continue
        else:
            i = by_handle.get(ref.uuid.bytes)
            if i is None:
                continue
        out.append((ref, i))
    return out
