"""Statistics of a real guest under TCG that writes 1 MiB onto its disk, checked against QMP.

The guest (tests/_guest.py, ``virtkit.write=1024``) writes 1,024 KiB of zeros onto its first
virtio disk with ``dd ... conv=fsync`` and says so on its console; from then on it only sleeps,
so its disk counters stand still and virtkit's figures can be compared with QMP's exactly. The
tests run in file order and share the guest: the last one destroys it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

import virtkit
from virtkit import DomainState, VcpuState

WRITTEN = 1024 * 1024


@pytest.fixture(scope="module")
def writer(mlab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[virtkit.Connection, virtkit.Domain]]:
    disk = tmp_path_factory.mktemp("disk") / "disk.img"
    with disk.open("wb") as fh:
        fh.truncate(8 << 20)
    cfg = mlab.config("writer", vcpus=2, devices=[{"type": "disk", "path": str(disk)}])
    cfg = dataclasses.replace(cfg, cmdline=f"{cfg.cmdline} virtkit.write={WRITTEN // 1024}")
    with mlab.open() as conn:
        dom = conn.create(cfg)
        log = mlab.rundir(dom.id) / "console.log"
        mlab.wait_until(lambda: "virtkit-guest: wrote" in log.read_text(errors="replace"), "the guest's write", 180)
        assert f"virtkit-guest: wrote {WRITTEN // 1024} KiB" in log.read_text(errors="replace")
        yield conn, dom


def _qmp_disk(lab: Any, dom: virtkit.Domain) -> dict[str, int]:
    (entry,) = [e for e in lab.qmp(dom.id, "query-blockstats") if e["device"] == "virtio0"]
    return dict(entry["stats"])


def test_block_counters_hold_the_guests_write_exactly_as_qmp_counts_them(writer: Any, mlab: Any) -> None:
    conn, dom = writer
    (rec,) = conn.all_domain_stats(["block"], [dom])
    raw = _qmp_disk(mlab, dom)
    (vda,) = rec.block
    assert vda.device == "vda" and vda.path == dom.config().devices[0]["path"]
    assert vda.write_bytes >= WRITTEN and vda.write_requests >= 1 and vda.flush_requests >= 1
    assert vda.read_bytes > 0  # the kernel read the partition table
    mine = {
        "rd_operations": vda.read_requests,
        "rd_bytes": vda.read_bytes,
        "wr_operations": vda.write_requests,
        "wr_bytes": vda.write_bytes,
        "flush_operations": vda.flush_requests,
        "rd_total_time_ns": vda.read_time_ns,
        "wr_total_time_ns": vda.write_time_ns,
        "flush_total_time_ns": vda.flush_time_ns,
    }
    assert mine == {k: raw[k] for k in mine}
    assert vda.errors == raw["failed_rd_operations"] + raw["failed_wr_operations"] + raw["failed_flush_operations"] == 0
    assert dom.block_stats("vda") == dom.block_stats(vda.path) == vda
    total = dom.block_stats()
    assert total == vda._replace(device="", path=None)


def test_cpu_and_vcpus_come_from_the_vcpu_threads(writer: Any, mlab: Any) -> None:
    conn, dom = writer
    threads = {c["cpu-index"]: c["thread-id"] for c in mlab.qmp(dom.id, "query-cpus-fast")}
    (rec,) = conn.all_domain_stats(["cpu", "vcpu", "state"], [dom])
    assert rec.state == virtkit.DomainStateInfo(DomainState.RUNNING, "booted")
    assert rec.vcpu is not None and rec.cpu is not None
    assert (rec.vcpu.current, rec.vcpu.maximum) == (2, 2)
    assert [v.number for v in rec.vcpu.vcpus] == sorted(threads) == [0, 1]
    assert rec.cpu.time_ns == sum(v.time_ns for v in rec.vcpu.vcpus) > 0
    assert (rec.cpu.user_ns, rec.cpu.system_ns) == (None, None)  # not visible from the host
    for v in rec.vcpu.vcpus:
        assert v.state is VcpuState.RUNNING and v.cpu in range(os.cpu_count() or 1)
    later = dom.vcpu_info()
    assert [v.time_ns >= w.time_ns for v, w in zip(later, rec.vcpu.vcpus, strict=True)] == [True, True]
    # the vcpu thread's own clock, read after virtkit's: never less
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    for v in later:
        fields = pathlib.Path(f"/proc/{mlab.qemu_pid(dom.id)}/task/{threads[v.number]}/stat").read_text()
        utime, stime = (int(x) for x in fields.rpartition(")")[2].split()[11:13])
        assert (utime + stime) * tick >= v.time_ns


def test_balloon_and_the_guests_memory_statistics(writer: Any, mlab: Any) -> None:
    conn, dom = writer
    mlab.wait_until(lambda: mlab.qmp(dom.id, "query-balloon")["actual"] == 128 << 20, "the balloon target")
    (rec,) = conn.all_domain_stats(["balloon"], [dom])
    assert rec.balloon == virtkit.BalloonStats(128 * 1024, 160 * 1024)
    # the guest's balloon driver reports every 5 s once QEMU polls it (the command line asks)
    mlab.wait_until(lambda: dom.memory_stats().minor_faults is not None, "the guest's memory statistics", 60)
    mem = dom.memory_stats()
    assert mem.actual_kib == 128 * 1024
    assert mem.minor_faults is not None and mem.minor_faults > 0 and mem.major_faults is not None
    assert mem.available_kib is not None and 0 < mem.available_kib <= 128 * 1024  # what the guest's kernel has
    assert mem.unused_kib is not None and 0 < mem.unused_kib < mem.available_kib
    assert mem.rss_kib is not None and mem.rss_kib > 0
    status = pathlib.Path(f"/proc/{mlab.qemu_pid(dom.id)}/status").read_text()
    assert "VmRSS:" in status


def test_no_network_device_and_unknown_devices(writer: Any) -> None:
    conn, dom = writer
    (rec,) = conn.all_domain_stats(["net"], [dom])
    assert rec.net == ()
    for bad in ("vdb", "/nowhere.img", "virtio0"):
        with pytest.raises(virtkit.InvalidArgument, match="no disk"):
            dom.block_stats(bad)
    with pytest.raises(virtkit.InvalidArgument, match="no interface"):
        dom.interface_stats("net0")
    with pytest.raises(virtkit.InvalidArgument, match="unknown stats group"):
        conn.all_domain_stats(["disk"])


def test_a_defined_domain_that_does_not_run_is_shut_off_with_empty_devices(writer: Any, mlab: Any) -> None:
    conn, _ = writer
    off = conn.define(mlab.config("resting", vcpus=1))
    try:
        recs = {r.domain.name: r for r in conn.all_domain_stats()}
        assert set(recs) == {"writer", "resting"}
        rec = recs["resting"]
        assert rec.domain.id is None and rec.state is not None and rec.state.state is DomainState.SHUTOFF
        assert rec.cpu == virtkit.CpuStats(0)
        assert rec.balloon == virtkit.BalloonStats(128 * 1024, 160 * 1024)
        assert rec.vcpu == virtkit.VcpuStats(1, 1, ())
        assert (rec.block, rec.net) == ((), ())
        assert [r.domain.name for r in conn.all_domain_stats(["cpu"], [off])] == ["resting"]
        with pytest.raises(virtkit.InvalidOperation):
            off.block_stats()
        with pytest.raises(virtkit.InvalidOperation):
            off.memory_stats()
    finally:
        off.undefine()


def test_a_paused_guest_keeps_its_counters_and_its_vcpus_are_not_running(writer: Any) -> None:
    conn, dom = writer
    dom.suspend()
    try:
        (before,) = conn.all_domain_stats(["cpu", "block", "vcpu", "state"], [dom])
        (after,) = conn.all_domain_stats(["cpu", "block", "vcpu", "state"], [dom])
        assert after.state is not None and after.state.state is DomainState.PAUSED
        assert after.block == before.block
        assert after.vcpu is not None and {v.state for v in after.vcpu.vcpus} == {VcpuState.BLOCKED}
    finally:
        dom.resume()


def test_a_destroyed_guest_is_left_out_and_gone(writer: Any) -> None:
    conn, dom = writer
    dom.destroy()
    assert [r.domain.name for r in conn.all_domain_stats(["state"])] == []
    assert conn.all_domain_stats(None, [dom]) == []
    with pytest.raises(virtkit.NoSuchDomain):
        dom.block_stats()
