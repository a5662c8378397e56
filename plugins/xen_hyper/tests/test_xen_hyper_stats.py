"""Stats from the hypervisor (groups state, cpu, balloon, vcpu) against the simulated Xen."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from virtkit import (
    BalloonStats,
    CpuStats,
    DomainRef,
    DomainState,
    InvalidOperation,
    MemoryStats,
    NoSuchDomain,
    VcpuInfo,
    VcpuState,
    VcpuStats,
)
from virtkit_xen_hyper import Driver
from virtkit_xen_hyper._hyper import Hypervisor

Make = Callable[..., tuple[Any, Hypervisor]]
DOMCTL, SYSCTL = 36, 35
ALL = ("state", "cpu", "balloon", "vcpu")


def ref(xen: Any, domid: int, name: str = "x") -> DomainRef:
    return DomainRef(name, uuid.UUID(bytes=xen.domains[domid].handle), domid)


@pytest.mark.parametrize("release", ["4.5.0", "4.11.0", "4.17.7", "4.22.0"])
def test_every_group_from_one_list_and_the_vcpu_domctls(fake_xen: Make, release: str) -> None:
    xen, hv = fake_xen(release)
    xen.add(
        3,
        tot_pages=32000,
        max_pages=33024,
        cpu_time=7_000_000_000,
        online=2,
        max_vcpu_id=3,
        vcpus=[(1, 0, 1, 4_000_000_000, 1), (1, 1, 0, 3_000_000_000, 0), (0, 0, 0, 0, 0), (0, 0, 0, 0, 0)],
    )
    xen.add(5, flags=1 << 3, cpu_time=10, max_vcpu_id=0xFFFFFFFF, online=0)  # paused, no vcpu
    d = Driver(hv)
    d.connect_get_all_domain_stats(("state",))  # the first listing confirms the domctl version
    xen.calls.clear()
    recs = d.connect_get_all_domain_stats(ALL)
    # one sysctl for the list, one domctl per vcpu of each domain (dom0 1, domain 3 4, domain 5 none)
    assert [c for c in xen.calls if c == (SYSCTL, 6)] == [(SYSCTL, 6)]
    assert [c for c in xen.calls if c[0] == DOMCTL] == [(DOMCTL, 14)] * 5
    assert [r.domain.id for r in recs] == [0, 3, 5]
    assert recs[0].domain == DomainRef("Domain-0", uuid.UUID(int=0), 0)
    r3 = recs[1]
    assert r3.domain == DomainRef("domain-3", uuid.UUID(bytes=xen.domains[3].handle), 3)
    assert r3.state == (DomainState.BLOCKED, None)
    assert r3.cpu == CpuStats(7_000_000_000)
    assert r3.balloon == BalloonStats(128000, 132096)
    assert r3.vcpu == VcpuStats(
        2,
        4,
        (VcpuInfo(0, VcpuState.RUNNING, 4_000_000_000, 1), VcpuInfo(1, VcpuState.BLOCKED, 3_000_000_000, 0)),
    )
    assert r3.block is None and r3.net is None
    assert recs[2].state == (DomainState.PAUSED, None)
    assert recs[2].vcpu == VcpuStats(0, 0, ())


def test_only_the_groups_asked_for_and_no_vcpu_calls_without_vcpu(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    xen.add(2)
    d = Driver(hv)
    d.connect_get_all_domain_stats(("state",))
    xen.calls.clear()
    recs = d.connect_get_all_domain_stats(("state",))
    assert xen.calls == [(SYSCTL, 6)]
    assert all(r.state is not None and r.cpu is None and r.balloon is None and r.vcpu is None for r in recs)


def test_named_domains_come_back_with_the_callers_refs(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    xen.add(2)
    xen.add(4)
    d = Driver(hv)
    named = ref(xen, 4, "web")
    by_uuid = DomainRef("db", uuid.UUID(bytes=xen.domains[2].handle), None)
    reused = DomainRef("old", uuid.uuid4(), 2)  # id 2 now belongs to another domain
    gone = DomainRef("gone", uuid.uuid4(), 9)
    recs = d.connect_get_all_domain_stats(("cpu",), [named, gone, by_uuid, reused])
    assert [r.domain for r in recs] == [named, by_uuid]


def test_a_domain_gone_before_its_vcpus_are_read_is_left_out(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    xen.add(2)
    xen.add(3)
    real = xen._domctl

    def vanish(cmd: int, domid: int, off: int) -> int:
        if cmd == 14 and domid == 2 and 2 in xen.domains:
            del xen.domains[2]  # destroyed between the list and its vcpus
        return real(cmd, domid, off)

    xen._domctl = vanish
    recs = Driver(hv).connect_get_all_domain_stats(ALL)
    assert [r.domain.id for r in recs] == [0, 3]


def test_counters_grow(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    dom = xen.add(2, cpu_time=100)
    d = Driver(hv)
    first = d.connect_get_all_domain_stats(("cpu", "vcpu"))[1]
    dom.cpu_time = 250
    second = d.connect_get_all_domain_stats(("cpu", "vcpu"))[1]
    assert (first.cpu.time_ns, second.cpu.time_ns) == (100, 250)
    assert (first.vcpu.vcpus[0].time_ns, second.vcpu.vcpus[0].time_ns) == (100, 250)


def test_per_domain_vcpu_info_and_memory(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    xen.add(2, tot_pages=1000, max_pages=1256, online=2, max_vcpu_id=1, cpu_time=8)
    d = Driver(hv)
    assert d.domain_get_vcpu_info(ref(xen, 2)) == [
        VcpuInfo(0, VcpuState.BLOCKED, 4, 0),
        VcpuInfo(1, VcpuState.BLOCKED, 4, 1),
    ]
    assert d.domain_memory_stats(ref(xen, 2)) == MemoryStats(4000, available_kib=5024)


def test_per_domain_stats_of_a_shut_down_or_missing_domain(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    xen.add(2, flags=(1 << 2) | (0 << 16))
    d = Driver(hv)
    with pytest.raises(InvalidOperation, match="shut"):
        d.domain_get_vcpu_info(ref(xen, 2))
    with pytest.raises(InvalidOperation):
        d.domain_memory_stats(ref(xen, 2))
    with pytest.raises(NoSuchDomain):
        d.domain_memory_stats(DomainRef("gone", uuid.uuid4(), 7))
