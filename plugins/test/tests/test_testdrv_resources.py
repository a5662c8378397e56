"""Memory and vcpus: limits, the clamp on lowering the maximum, VcpuFlags.MAXIMUM."""

from __future__ import annotations

import pytest

import virtkit
from virtkit import VcpuFlags


def test_set_memory_within_max(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("web")
    dom.set_memory(2097152)  # up to the maximum exactly
    assert dom.info().memory == 2097152
    dom.set_memory(131072)
    assert dom.info().memory == 131072
    assert dom.config().memory == 131072
    assert conn.node_info().free_memory == 3145728 - (524288 + 131072 + 262144)


def test_set_memory_above_max_is_refused(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    with pytest.raises(virtkit.InvalidArgument, match="above its maximum 1048576") as err:
        dom.set_memory(1048577)
    assert err.value.operation == "domain_set_memory"
    assert dom.info().memory == 524288


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "512"])
def test_set_memory_rejects_non_positive_ints(conn: virtkit.Connection, bad: object) -> None:
    dom = conn.lookup_by_name("test")
    with pytest.raises(virtkit.InvalidArgument, match=r"memory \(KiB\) must be"):
        dom.set_memory(bad)  # type: ignore[arg-type]
    with pytest.raises(virtkit.InvalidArgument, match=r"memory \(KiB\) must be"):
        dom.set_max_memory(bad)  # type: ignore[arg-type]


def test_set_memory_on_shut_off_domain_changes_its_config(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("defined-vm")
    dom.set_memory(262144)
    dom.start()
    assert dom.info().memory == 262144


def test_raise_max_memory_then_memory(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    dom.set_max_memory(4194304)
    assert dom.max_memory() == 4194304
    dom.set_memory(3000000)
    assert dom.info().memory == 3000000


def test_lowering_max_memory_below_current_clamps_current(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("web")  # memory 1 GiB, max 2 GiB
    dom.set_max_memory(524288)
    info = dom.info()
    assert (info.max_memory, info.memory) == (524288, 524288)
    dom.set_max_memory(1048576)  # raising it again does not inflate the balloon
    assert dom.info().memory == 524288


def test_set_vcpus(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("web")
    dom.set_vcpus(8)
    assert dom.vcpus() == 8
    assert dom.info().vcpus == 8
    dom.set_vcpus(1)
    assert dom.vcpus() == 1
    assert dom.vcpus(flags=VcpuFlags.MAXIMUM) == 8


def test_vcpus_above_max_are_refused(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    with pytest.raises(virtkit.InvalidArgument, match="above its maximum 2"):
        dom.set_vcpus(3)
    with pytest.raises(virtkit.InvalidArgument, match="vcpus must be between 1 and"):
        dom.set_vcpus(0)
    assert dom.vcpus() == 2


def test_maximum_vcpus_change_only_while_shut_off(conn: virtkit.Connection) -> None:
    running = conn.lookup_by_name("web")
    with pytest.raises(virtkit.InvalidOperation, match="while it is active"):
        running.set_vcpus(16, flags=VcpuFlags.MAXIMUM)
    off = conn.lookup_by_name("defined-vm")
    off.set_vcpus(4, flags=VcpuFlags.MAXIMUM)
    assert off.vcpus(flags=VcpuFlags.MAXIMUM) == 4
    off.set_vcpus(4)
    assert off.vcpus() == 4
    off.set_vcpus(2, flags=VcpuFlags.MAXIMUM)  # lowering the maximum clamps the current count
    assert (off.vcpus(), off.vcpus(flags=VcpuFlags.MAXIMUM)) == (2, 2)
    assert off.config().max_vcpus == 2


def test_vcpu_flags_beyond_maximum_are_refused(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("web")
    with pytest.raises(virtkit.InvalidArgument, match="flags"):
        dom.vcpus(flags=1)
    with pytest.raises(virtkit.InvalidArgument, match="flags"):
        dom.set_vcpus(2, flags=VcpuFlags.MAXIMUM | 2)


def test_resource_ops_on_a_gone_domain(conn: virtkit.Connection) -> None:
    dom = conn.create(virtkit.DomainConfig("tmp", 65536))
    dom.destroy()
    for call in (lambda: dom.set_memory(1024), lambda: dom.set_vcpus(1), dom.max_memory, dom.os_type, dom.config):
        with pytest.raises(virtkit.NoSuchDomain, match="tmp"):
            call()
