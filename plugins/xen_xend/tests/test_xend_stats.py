"""Statistics from xend (catalogue 1.1), against the emulator over real HTTP: the groups xend has
the data for (state, cpu, balloon, vcpu), per-vcpu figures from op=vcpuinfo, and nothing else."""

from __future__ import annotations

import uuid

import pytest

import virtkit
from virtkit import DomainState, VcpuState
from virtkit_xen_xend import XendDomain, parse_one
from virtkit_xen_xend._stats import vcpu_info
from virtkit_xen_xend.emulator import XendEmulator

RHEL5 = "rhel5"  # seed sexpr2xml-curmem.sexpr: (memory 175) (maxmem 385) (cpu_time 137.189121425)


def by_name(records: list[virtkit.DomainStats]) -> dict[str, virtkit.DomainStats]:
    return {r.domain.name: r for r in records}


def test_the_groups_xend_has_come_from_its_records(conn: virtkit.Connection, emu: XendEmulator) -> None:
    records = by_name(conn.all_domain_stats())
    assert set(records) == {d.name for d in emu.host.domains}
    rhel5 = records[RHEL5]
    assert rhel5.balloon == virtkit.BalloonStats(175 * 1024, 385 * 1024)
    assert rhel5.cpu is not None and rhel5.cpu.time_ns >= 137_189_121_425
    assert (rhel5.cpu.user_ns, rhel5.cpu.system_ns) == (None, None)
    assert rhel5.state == conn.lookup_by_name(RHEL5).state()
    assert rhel5.vcpu is not None and (rhel5.vcpu.current, rhel5.vcpu.maximum) == (1, 1)
    (v0,) = rhel5.vcpu.vcpus
    assert v0.number == 0 and v0.state is VcpuState.RUNNING and v0.cpu == 0 and v0.time_ns > 0
    assert (rhel5.block, rhel5.net) == (None, None)  # xend has no device counters
    off = records["test"]  # seed sexpr2xml-no-source-cdrom.sexpr: defined, halted
    assert off.domain.id is None and off.state is not None and off.state.state is DomainState.SHUTOFF
    assert off.cpu == virtkit.CpuStats(0) and off.vcpu == virtkit.VcpuStats(1, 1, ())
    assert off.balloon == virtkit.BalloonStats(350 * 1024, 382 * 1024)


def test_cpu_time_grows_while_running_and_stands_still_while_paused(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name(RHEL5)
    (a,) = conn.all_domain_stats(["cpu"], [dom])
    (b,) = conn.all_domain_stats(["cpu"], [dom])
    assert a.cpu is not None and b.cpu is not None and b.cpu.time_ns > a.cpu.time_ns
    dom.suspend()
    (c,) = conn.all_domain_stats(["cpu", "state", "vcpu"], [dom])
    (d,) = conn.all_domain_stats(["cpu"], [dom])
    assert c.cpu == d.cpu and c.state is not None and c.state.state is DomainState.PAUSED
    assert c.vcpu is not None and [v.state for v in c.vcpu.vcpus] == [VcpuState.BLOCKED]
    dom.resume()


def test_only_the_groups_asked_for_and_only_those_xend_serves(conn: virtkit.Connection) -> None:
    (rec,) = conn.all_domain_stats(["balloon"], [conn.lookup_by_name(RHEL5)])
    assert rec.balloon is not None and (rec.state, rec.cpu, rec.vcpu, rec.block, rec.net) == (None,) * 5
    with pytest.raises(virtkit.Unsupported):
        conn.all_domain_stats(["block"])
    with pytest.raises(virtkit.InvalidArgument, match="unknown stats group"):
        conn.all_domain_stats(["disk"])
    groups = {g.operation: g.plugin for g in conn.explain().groups}
    assert groups == {"state": "xen_xend", "cpu": "xen_xend", "balloon": "xen_xend", "vcpu": "xen_xend"} | {
        "block": None,
        "net": None,
    }


def test_named_domains_and_one_that_is_gone(conn: virtkit.Connection) -> None:
    rhel5 = conn.lookup_by_name(RHEL5)
    ghost = virtkit.DomainRef("ghost", uuid.uuid4(), 99)
    renamed = virtkit.DomainRef(RHEL5, uuid.uuid4(), 5)  # the name, another domain's uuid
    assert [r.domain.name for r in conn.all_domain_stats(["cpu"], [ghost, rhel5, renamed])] == [RHEL5]
    assert conn.all_domain_stats(None, [ghost]) == []


def test_vcpu_info_lists_offline_vcpus_too(conn: virtkit.Connection, emu: XendEmulator) -> None:
    dom = conn.create(virtkit.DomainConfig(name="two", memory=65536, vcpus=1, max_vcpus=2, kernel="/boot/vmlinuz"))
    info = dom.vcpu_info()
    assert [(v.number, v.state) for v in info] == [(0, VcpuState.RUNNING), (1, VcpuState.OFFLINE)]
    assert info[1].time_ns == 0
    (rec,) = conn.all_domain_stats(["vcpu"], [dom])
    assert rec.vcpu is not None and (rec.vcpu.current, rec.vcpu.maximum) == (1, 2)
    assert [v.number for v in rec.vcpu.vcpus] == [0]
    before = info[0].time_ns
    assert dom.vcpu_info()[0].time_ns >= before
    mem = dom.memory_stats()
    assert mem == virtkit.MemoryStats(65536)  # the balloon only: xend has no guest figures
    dom.destroy()
    with pytest.raises(virtkit.NoSuchDomain):
        dom.vcpu_info()
    off = conn.lookup_by_name("test")
    with pytest.raises(virtkit.InvalidOperation):
        off.memory_stats()
    with pytest.raises(virtkit.InvalidOperation):
        off.vcpu_info()
    for op in ("block_stats", "interface_stats"):
        with pytest.raises(virtkit.Unsupported):
            getattr(conn.lookup_by_name(RHEL5), op)("xvda")


# The shape of XendDomainInfo.getVCPUInfo (xend 3.0-4.1; ../shared/reference xend.md, "GET
# /xend/domain/<id>?op=vcpuinfo"), an inactive domain's vcpu with cpu -1 as that code writes it.
VCPUINFO = (
    "(domain (domid 5) (name rhel5) (vcpu_count 3)"
    " (vcpu (number 0) (online 1) (blocked 0) (running 1) (cpu_time 12.5) (cpu 2) (cpumap (0 1 2 3)))"
    " (vcpu (number 1) (online 1) (blocked 1) (running 0) (cpu_time 0.25) (cpu 0) (cpumap (0 1 2 3)))"
    " (vcpu (number 2) (online 0) (blocked 0) (running 0) (cpu_time 0.0) (cpu -1) (cpumap (0 1 2 3))))"
)


def _rec() -> XendDomain:
    return XendDomain.from_text(
        "(domain (domid 5) (name rhel5) (uuid 4f77abd2-3019-58e8-3bab-6fbf2118f880) (memory 175) (vcpus 3))"
    )


def test_vcpuinfo_maps_field_by_field() -> None:
    assert vcpu_info(parse_one(VCPUINFO), _rec()) == [
        virtkit.VcpuInfo(0, VcpuState.RUNNING, 12_500_000_000, 2),
        virtkit.VcpuInfo(1, VcpuState.BLOCKED, 250_000_000, 0),
        virtkit.VcpuInfo(2, VcpuState.OFFLINE, 0, None),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "(node)",
        "(domain (name other) (vcpu (number 0)))",
        "(domain (vcpu (online 1)))",
        "(domain (vcpu (number -1)))",
        "(domain (vcpu (number 0) (cpu_time -1.0)))",
        "(domain (vcpu (number 0) (cpu_time nan)))",
        "(domain (vcpu (number 0) (online 2)))",
        "(domain (vcpu (number 0)) (vcpu (number 0)))",
        "(domain (vcpu (number 0) (cpu x)))",
    ],
)
def test_a_vcpuinfo_of_another_shape_is_a_protocol_error(text: str) -> None:
    with pytest.raises(virtkit.ProtocolError):
        vcpu_info(parse_one(text), _rec())
