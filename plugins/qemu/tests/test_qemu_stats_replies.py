"""The stats replies the driver reads (query-blockstats, qom-get guest-stats, query-cpus-fast):
QEMU's real shapes map field by field; any other shape is a ProtocolError, never a KeyError."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest

import virtkit
from virtkit import ProtocolError
from virtkit_qemu._stats import _vcpus, block_stats, disks_of, guest_memory, thread_stats

# Captured from QEMU 7.2.22 (Debian 12, qemu-system-x86 1:7.2+dfsg-7+deb12u18) on 2026-11-30: the
# tests' guest after writing 1 MiB onto its disk (-drive if=virtio,index=0); "parent" and the
# zero unmap/invalid/merged counters trimmed.
BLOCKSTATS: list[dict[str, Any]] = [
    {
        "device": "virtio0",
        "qdev": "/machine/peripheral-anon/device[0]/virtio-backend",
        "node-name": "#block100",
        "stats": {
            "flush_total_time_ns": 5715595,
            "wr_highest_offset": 1048576,
            "wr_total_time_ns": 523851,
            "failed_wr_operations": 0,
            "failed_rd_operations": 0,
            "wr_bytes": 1048576,
            "timed_stats": [],
            "failed_flush_operations": 0,
            "account_invalid": True,
            "rd_total_time_ns": 10077946,
            "flush_operations": 1,
            "wr_operations": 2,
            "rd_bytes": 1061376,
            "account_failed": True,
            "idle_time_ns": 145859127,
            "rd_operations": 260,
        },
    }
]
# Same QEMU, qom-get /machine/peripheral/balloon0 guest-stats, 5 s after polling was enabled.
GUEST_STATS = {
    "stats": {
        "stat-htlb-pgalloc": 0,
        "stat-swap-out": 0,
        "stat-available-memory": 56922112,
        "stat-htlb-pgfail": 0,
        "stat-free-memory": 51761152,
        "stat-minor-faults": 1073,
        "stat-major-faults": 0,
        "stat-total-memory": 81580032,
        "stat-swap-in": 0,
        "stat-disk-caches": 2412544,
    },
    "last-update": 1796042489,
}


def config(*paths: str) -> virtkit.DomainConfig:
    return virtkit.DomainConfig(name="d", memory=65536, devices=[{"type": "disk", "path": p} for p in paths])


def test_blockstats_map_field_by_field() -> None:
    (vda,) = block_stats(BLOCKSTATS, disks_of(config("/d.img")))
    assert vda == virtkit.BlockStats("vda", 260, 1061376, 2, 1048576, 1, 10077946, 523851, 5715595, 0, "/d.img")
    # a disk QEMU does not report (not attached) has no record; names follow the guest's
    assert [d.target for d in disks_of(config(*(f"/{i}" for i in range(28))))][-3:] == ["vdz", "vdaa", "vdab"]
    assert block_stats(BLOCKSTATS, disks_of(config("/a", "/b")))[0].device == "vda"
    assert len(block_stats(BLOCKSTATS, disks_of(config("/a", "/b")))) == 1


@pytest.mark.parametrize(
    "reply",
    [
        None,
        {"device": "virtio0"},
        ["virtio0"],
        [{"device": "virtio0", "stats": None}],
        [{"device": "virtio0", "stats": [1]}],
        [{"device": "virtio0", "stats": {}}],
    ],
)
def test_blockstats_of_another_shape_are_a_protocol_error(reply: Any) -> None:
    with pytest.raises(ProtocolError):
        block_stats(reply, disks_of(config("/d.img")))


@pytest.mark.parametrize("value", [-1, "1", 1.5, True, None, 1 << 63])
def test_a_block_counter_that_is_not_a_count_is_a_protocol_error(value: Any) -> None:
    reply = copy.deepcopy(BLOCKSTATS)
    reply[0]["stats"]["wr_bytes"] = value
    with pytest.raises(ProtocolError, match="wr_bytes"):
        block_stats(reply, disks_of(config("/d.img")))


def test_guest_memory_statistics_map_as_libvirt_maps_them() -> None:
    mem = guest_memory(131072, GUEST_STATS, 50000)
    assert mem == virtkit.MemoryStats(
        actual_kib=131072,
        swap_in_kib=0,
        swap_out_kib=0,
        major_faults=0,
        minor_faults=1073,
        unused_kib=51761152 // 1024,
        available_kib=81580032 // 1024,
        usable_kib=56922112 // 1024,
        rss_kib=50000,
        disk_caches_kib=2412544 // 1024,
    )
    # a guest that never reported (polling off, or no balloon driver): only what the host knows
    never = {"stats": {k: -1 for k in GUEST_STATS["stats"]}, "last-update": 0}  # type: ignore[attr-defined]
    assert guest_memory(131072, never, None) == virtkit.MemoryStats(131072)
    partial = copy.deepcopy(GUEST_STATS)
    partial["stats"]["stat-disk-caches"] = -1  # type: ignore[index]
    assert guest_memory(1, partial, None).disk_caches_kib is None


@pytest.mark.parametrize(
    "reply", [None, [], {"stats": {}}, {"last-update": 1}, {"stats": {"stat-swap-in": "x"}, "last-update": 1}]
)
def test_guest_stats_of_another_shape_are_a_protocol_error(reply: Any) -> None:
    with pytest.raises(ProtocolError):
        guest_memory(1, reply, None)


def test_vcpus_read_their_threads_and_refuse_odd_replies() -> None:
    me = os.getpid()
    time_ns, cpu = thread_stats(me, me) or (None, None)
    assert isinstance(time_ns, int) and cpu in range(os.cpu_count() or 1)
    assert thread_stats(me, 1 << 30) is None  # a thread that is gone
    (v,) = _vcpus([{"cpu-index": 0, "thread-id": me}], me, running=False)
    assert v.number == 0 and v.state is virtkit.VcpuState.BLOCKED and v.time_ns >= time_ns
    for bad in (None, [1], [{"cpu-index": -1, "thread-id": me}], [{"cpu-index": 0, "thread-id": "x"}]):
        with pytest.raises(ProtocolError):
            _vcpus(bad, me, running=True)
