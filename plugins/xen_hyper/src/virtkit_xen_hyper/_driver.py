"""The driver connection: catalogue operations served by hypercalls alone.

The hypervisor knows domain ids and handles (UUIDs), not names: names live in xenstore. So the
lookups here carry a lower priority than the plugin's (xenstore's lookups, which know names, win
when it is installed), and the names they return are synthetic: ``Domain-0`` for dom0,
``domain-<id>`` otherwise.
"""

from __future__ import annotations

import os
import uuid as _uuid

from virtkit import (
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    InvalidArgument,
    InvalidOperation,
    NodeInfo,
    NoSuchDomain,
    VcpuFlags,
    Version,
    check_flags,
    priority,
)

from . import _abi as A
from ._hyper import Hypervisor
from ._stats import StatsMixin

__all__ = ["LOOKUP_PRIORITY", "Driver"]

#: Below xenstore's ~20 (it knows names), above xend's 10.
LOOKUP_PRIORITY = 15
_KIB_PER_PAGE = 4  # Xen's 4 KiB pages, as libxl's PAGE_TO_MEMKB
_INACTIVE = (DomainState.DYING, DomainState.SHUTDOWN, DomainState.CRASHED)
_NIL = _uuid.UUID(int=0)
_MACHINE = os.uname().machine  # dom0's architecture, as libvirt's node model; asked once


def _name(domid: int) -> str:
    return "Domain-0" if domid == 0 else f"domain-{domid}"


def _ref(info: A.DomInfo) -> DomainRef:
    return DomainRef(_name(info.domid), _uuid.UUID(bytes=info.handle), info.domid)


class Driver(StatsMixin):
    """One open privcmd connection; thread-safe through the Hypervisor's lock."""

    __slots__ = ("_hv", "_node", "_physinfo", "_uri")

    def __init__(self, hv: Hypervisor, uri: str = "xen:///") -> None:
        self._hv = hv
        self._uri = uri
        self._physinfo = hv.physinfo_values
        self._node: tuple[tuple[int, ...], NodeInfo] | None = None  # last physinfo -> its NodeInfo

    def __repr__(self) -> str:
        return f"<virtkit_xen_hyper.Driver {self._uri} Xen {self._hv.version}>"

    @property
    def hypervisor(self) -> Hypervisor:
        return self._hv

    def close(self) -> None:
        self._hv.close()

    # -- resolving a DomainRef -------------------------------------------------------------------

    def _info(self, dom: DomainRef) -> A.DomInfo:
        if dom.id is None:
            return self._by_uuid(dom.uuid)
        info = self._hv.dominfo(dom.id)
        # An id is reused after a domain dies: a handle that differs is another domain. A nil
        # UUID (dom0's handle, or a caller that knows only the id) cannot tell, so it is trusted.
        if dom.uuid != _NIL and info.handle != dom.uuid.bytes:
            raise NoSuchDomain(f"domain {dom.id} is no longer {dom.uuid}")
        return info

    def _by_uuid(self, uuid: _uuid.UUID) -> A.DomInfo:
        want = uuid.bytes
        for info in self._hv.domains():
            if info.handle == want:
                return info
        raise NoSuchDomain(f"no running domain with UUID {uuid}")

    # -- connection ----------------------------------------------------------------------------

    def connect_get_type(self, *, flags: int = 0) -> str:
        check_flags(flags)
        return "Xen"

    def connect_get_version(self, *, flags: int = 0) -> Version:
        check_flags(flags)
        return self._hv.version

    def connect_get_hostname(self, *, flags: int = 0) -> str:
        check_flags(flags)
        return os.uname().nodename  # dom0's host name, as libvirt reports it

    def node_get_info(self, *, flags: int = 0) -> NodeInfo:
        if flags:
            check_flags(flags)
        values = self._physinfo()  # a fresh hypercall every time
        last = self._node
        if last is not None and last[0] == values:
            return last[1]  # nothing changed (free memory included): the same immutable answer
        threads, cores, cpus, nodes, khz, _caps, total, free = values
        threads = threads or 1
        cores = cores or 1
        nodes = nodes or 1
        # Positional: keyword construction of a NamedTuple costs twice as much.
        info = NodeInfo(
            _MACHINE,
            total * _KIB_PER_PAGE,
            cpus,
            khz // 1000,
            nodes,
            max(1, cpus // (threads * cores * nodes)),
            cores,
            threads,
            free * _KIB_PER_PAGE,
        )
        self._node = (values, info)
        return info

    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        check_flags(flags)
        return [info.domid for info in self._hv.domains()]

    def connect_num_of_domains(self, *, flags: int = 0) -> int:
        check_flags(flags)
        return len(self._hv.domains())

    @priority(LOOKUP_PRIORITY)
    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002 - catalogue name
        check_flags(flags)
        return _ref(self._hv.dominfo(id))

    @priority(LOOKUP_PRIORITY)
    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        return _ref(self._by_uuid(uuid))

    # -- domain queries --------------------------------------------------------------------------

    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        check_flags(flags)
        i = self._info(dom)
        return DomainInfo(
            A.state_from_flags(i.flags)[0],
            i.max_pages * _KIB_PER_PAGE,
            i.tot_pages * _KIB_PER_PAGE,
            i.nr_online_vcpus,
            i.cpu_time,
        )

    def domain_get_state(self, dom: DomainRef, *, flags: int = 0) -> DomainStateInfo:
        check_flags(flags)
        return DomainStateInfo(*A.state_from_flags(self._info(dom).flags))

    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        check_flags(flags)
        return self._info(dom).max_pages * _KIB_PER_PAGE

    def domain_get_os_type(self, dom: DomainRef, *, flags: int = 0) -> str:
        check_flags(flags)
        return "hvm" if self._info(dom).flags & A.DOMINF_HVM else "linux"

    def domain_get_vcpus(self, dom: DomainRef, *, flags: int = 0) -> int:
        check_flags(flags, VcpuFlags.MAXIMUM)
        info = self._info(dom)
        if flags & VcpuFlags.MAXIMUM:
            return 0 if info.max_vcpu_id == 0xFFFFFFFF else info.max_vcpu_id + 1
        return info.nr_online_vcpus

    # -- domain changes --------------------------------------------------------------------------

    def _not_dom0(self, info: A.DomInfo, verb: str) -> None:
        if info.domid == 0:
            raise InvalidOperation(f"refusing to {verb} dom0: it runs this toolstack")

    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        info = self._info(dom)
        self._not_dom0(info, "pause")
        state = A.state_from_flags(info.flags)[0]
        # Xen counts pauses: a second one would need two resumes, so refuse it as libvirt does.
        if state is DomainState.PAUSED or state in _INACTIVE:
            raise InvalidOperation(f"cannot suspend domain {info.domid}: it is {state.label}")
        self._hv.pause(info.domid)

    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        info = self._info(dom)
        state = A.state_from_flags(info.flags)[0]
        if state is not DomainState.PAUSED:
            raise InvalidOperation(f"cannot resume domain {info.domid}: it is {state.label}, not paused")
        self._hv.unpause(info.domid)

    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        """Destroy at the hypervisor; xenstore, backends and device models are a toolstack's job."""
        check_flags(flags)
        info = self._info(dom)
        self._not_dom0(info, "destroy")
        self._hv.destroy(info.domid)

    def domain_set_max_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        check_flags(flags)
        if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
            raise InvalidArgument(f"max memory must be a positive number of KiB, got {memory!r}")
        self._hv.set_max_mem(self._info(dom).domid, memory)
