"""Statistics of test:///: exact, deterministic counters derived from cpu time (see the README)."""

from __future__ import annotations

import json
import pathlib

import pytest

import virtkit
from virtkit import (
    BalloonStats,
    BlockStats,
    CpuStats,
    DomainConfig,
    DomainState,
    DomainStateInfo,
    InterfaceStats,
    MemoryStats,
    VcpuInfo,
    VcpuState,
    VcpuStats,
)

S = 1_000_000_000


def disk(device: str, index: int, t: int, path: str | None) -> BlockStats:
    m = index + 1
    rd, wr, fl = t * 100 * m // S, t * 40 * m // S, t * 2 * m // S
    return BlockStats(device, rd, 4096 * rd, wr, 8192 * wr, fl, 100_000 * rd, 250_000 * wr, S // 1000 * fl, 0, path)


def nic(device: str, index: int, t: int, mac: str) -> InterfaceStats:
    m = index + 1
    rx, tx = t * 300 * m // S, t * 200 * m // S
    return InterfaceStats(device, 1000 * rx, rx, 600 * tx, tx, 0, 0, 0, 0, mac)


def test_paused_domain_exact_values(conn: virtkit.Connection) -> None:
    """paused-vm stopped at 1.5 s of cpu time: every figure is a constant."""
    dom = conn.lookup_by_name("paused-vm")
    xvda = BlockStats(
        "xvda", 150, 614400, 60, 491520, 3, 15_000_000, 15_000_000, 3_000_000, 0, "/var/lib/virtkit-test/paused.img"
    )
    vif = InterfaceStats("vif3.0", 450_000, 450, 180_000, 300, 0, 0, 0, 0, "00:16:3e:00:00:03")
    assert dom.block_stats("xvda") == xvda
    assert dom.block_stats("/var/lib/virtkit-test/paused.img") == xvda  # by path, as libvirt
    assert dom.block_stats() == xvda._replace(device="", path=None)  # '' sums every disk
    assert dom.interface_stats("vif3.0") == vif
    assert dom.interface_stats("00:16:3E:00:00:03") == vif  # by MAC, any case
    assert dom.memory_stats() == MemoryStats(262144, 0, 0, 1, 1500, 65536, 262144, 131072, 262144, 32768)
    assert dom.vcpu_info() == [VcpuInfo(0, VcpuState.BLOCKED, 1_500_000_000, 0)]
    (rec,) = conn.all_domain_stats(None, [dom])
    assert rec == virtkit.DomainStats(
        dom.ref,
        DomainStateInfo(DomainState.PAUSED, "user"),
        CpuStats(1_500_000_000, 1_125_000_000, 375_000_000),
        BalloonStats(262144, 524288),
        VcpuStats(1, 2, (VcpuInfo(0, VcpuState.BLOCKED, 1_500_000_000, 0),)),
        (xvda,),
        (vif,),
    )


def test_running_domain_counters_follow_cpu_time(conn: virtkit.Connection) -> None:
    """Within one record every counter is the formula of that record's cpu time, exactly."""
    for rec in conn.all_domain_stats(["cpu", "vcpu", "block", "net"]):
        assert rec.cpu is not None and rec.vcpu is not None and rec.block is not None and rec.net is not None
        t = rec.cpu.time_ns
        assert rec.cpu == CpuStats(t, t * 3 // 4, t - t * 3 // 4)
        if rec.domain.name == "web":
            assert t >= 37_500_000_000
            assert rec.block == (
                disk("xvda", 0, t, "/var/lib/virtkit-test/web-root.img"),
                disk("xvdb", 1, t, "/var/lib/virtkit-test/web-data.img"),
            )
            assert rec.net == (nic("vif2.0", 0, t, "00:16:3e:00:00:02"),)
            assert [v.time_ns for v in rec.vcpu.vcpus] == [(t + i) // 4 for i in range(4)]
        if rec.domain.id is not None:
            assert sum(v.time_ns for v in rec.vcpu.vcpus) == t  # the vcpu count never changed


def test_defined_domain_has_state_and_sizes_only(conn: virtkit.Connection) -> None:
    (rec,) = [r for r in conn.all_domain_stats() if r.domain.name == "defined-vm"]
    assert rec.state == DomainStateInfo(DomainState.SHUTOFF, "unknown")
    assert (rec.cpu, rec.balloon, rec.vcpu) == (CpuStats(0, 0, 0), BalloonStats(524288, 524288), VcpuStats(1, 2, ()))
    assert rec.block == () and rec.net == ()
    dom = conn.lookup_by_name("defined-vm")
    for read in (dom.block_stats, dom.memory_stats, dom.vcpu_info, lambda: dom.interface_stats("net0")):
        with pytest.raises(virtkit.InvalidOperation, match="not running"):
            read()


def test_counters_never_go_back_and_a_restart_is_a_new_series(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    a, b = dom.block_stats("vda"), dom.block_stats("vda")
    assert all(y >= x for x, y in zip(a[1:10], b[1:10], strict=True))
    dom.destroy()
    dom.start()
    fresh = dom.block_stats("vda")
    assert fresh.read_requests < a.read_requests  # 4.2 s of cpu time then, a few ms now
    (rec,) = conn.all_domain_stats(["cpu"], [dom])
    assert rec.domain.id == 4 and rec.cpu is not None and rec.cpu.time_ns < 1_000_000_000


def test_per_vcpu_time_survives_vcpu_count_changes(conn: virtkit.Connection) -> None:
    web = conn.lookup_by_name("web")
    before = web.vcpu_info()
    web.set_vcpus(6)
    grown = web.vcpu_info()
    assert [v.number for v in grown] == list(range(6))
    assert all(g.time_ns >= b.time_ns for b, g in zip(before, grown, strict=False))
    web.set_vcpus(2)
    web.set_vcpus(4)
    again = web.vcpu_info()
    assert all(x.time_ns >= y.time_ns for x, y in zip(again, grown, strict=False))


def test_named_domains_and_vanished_ones(conn: virtkit.Connection) -> None:
    dom = conn.create(DomainConfig(name="brief", memory=131072))
    ref = dom.ref
    dom.destroy()  # transient: gone
    web = conn.lookup_by_name("web")
    assert [r.domain.name for r in conn.all_domain_stats(["state"], [ref, web.ref])] == ["web"]
    assert conn.all_domain_stats(["state"], []) == []


def test_bad_input(conn: virtkit.Connection) -> None:
    web = conn.lookup_by_name("web")
    with pytest.raises(virtkit.InvalidArgument, match="no disk 'sdz'"):
        web.block_stats("sdz")
    with pytest.raises(virtkit.InvalidArgument, match="no interface"):
        web.interface_stats("vnet9")
    with pytest.raises(virtkit.InvalidArgument, match="flags"):
        web.memory_stats(flags=1)
    with pytest.raises(virtkit.InvalidArgument, match="unknown stats group"):
        conn.all_domain_stats(["cpu", "interface"])
    conn.close()
    with pytest.raises(virtkit.ConnectionClosed):
        conn.all_domain_stats()


def test_host_file_devices_get_default_names(tmp_path: pathlib.Path) -> None:
    host = {
        "domains": [
            {"name": "h", "memory": 1024, "os_type": "hvm", "devices": [{"type": "disk"}, {"type": "interface"}]},
            {"name": "p", "memory": 1024, "devices": [{"type": "disk", "path": "/p.img"}, {"type": "disk"}]},
        ]
    }
    path = tmp_path / "h.json"
    path.write_text(json.dumps(host), encoding="utf-8")
    with virtkit.open(f"test://{path}") as conn:
        h, p = conn.all_domain_stats(["block", "net"])
        assert h.block is not None and [b.device for b in h.block] == ["vda"]
        assert h.net is not None and [n.device for n in h.net] == ["net0"]
        assert h.net[0].mac is not None and h.net[0].mac.startswith("52:54:00:")
        assert p.block is not None and [(b.device, b.path) for b in p.block] == [("xvda", "/p.img"), ("xvdb", None)]
