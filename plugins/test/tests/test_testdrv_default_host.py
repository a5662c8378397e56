"""The fixed test:///default host, seen through the public API."""

from __future__ import annotations

import doctest
import uuid

import pytest

import virtkit
import virtkit_test
from virtkit import DomainState, VcpuFlags

# name -> (id, state, uuid, max_memory, memory, vcpus, max_vcpus, os_type)
EXPECTED = {
    "test": (1, DomainState.RUNNING, "6695eb01-f6a4-8304-79aa-97f2502e193f", 1048576, 524288, 2, 2, "hvm"),
    "web": (2, DomainState.RUNNING, "6695eb01-f6a4-8304-79aa-97f2502e1940", 2097152, 1048576, 4, 8, "linux"),
    "paused-vm": (3, DomainState.PAUSED, "6695eb01-f6a4-8304-79aa-97f2502e1941", 524288, 262144, 1, 2, "linux"),
    "defined-vm": (None, DomainState.SHUTOFF, "6695eb01-f6a4-8304-79aa-97f2502e1942", 524288, 524288, 1, 2, "hvm"),
}


def test_connection_facts(conn: virtkit.Connection) -> None:
    assert conn.type() == "Test"
    assert conn.version() == virtkit.Version.parse(virtkit_test.__version__)
    assert conn.hostname() == "test-host"


def test_node_info_is_libvirts_test_node(conn: virtkit.Connection) -> None:
    node = conn.node_info()
    assert (node.model, node.memory, node.cpus, node.mhz) == ("x86_64", 3 * 1024 * 1024, 16, 1400)
    assert (node.nodes, node.sockets, node.cores, node.threads) == (2, 2, 2, 2)
    running = 524288 + 1048576 + 262144  # test, web, paused-vm hold memory; defined-vm doesn't
    assert node.free_memory == node.memory - running


def test_listing(conn: virtkit.Connection) -> None:
    assert conn.list_domains() == [1, 2, 3]
    assert conn.num_of_domains() == 3
    assert conn.list_defined_domains() == ["defined-vm"]
    assert [d.name for d in conn.domains()] == ["test", "web", "paused-vm"]
    assert [d.name for d in conn.domains(all=True)] == ["test", "web", "paused-vm", "defined-vm"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_domain(conn: virtkit.Connection, name: str) -> None:
    dom_id, state, uid, max_mem, mem, vcpus, max_vcpus, os_type = EXPECTED[name]
    dom = conn.lookup_by_name(name)
    assert (dom.name, dom.id, dom.uuid) == (name, dom_id, uuid.UUID(uid))
    info = dom.info()
    assert (info.state, info.max_memory, info.memory, info.vcpus) == (state, max_mem, mem, vcpus)
    assert dom.state().state is state
    assert dom.max_memory() == max_mem
    assert dom.vcpus() == vcpus
    assert dom.vcpus(flags=VcpuFlags.MAXIMUM) == max_vcpus
    assert dom.os_type() == os_type
    assert conn.lookup_by_uuid(uid) == dom
    cfg = dom.config()
    assert (cfg.name, cfg.uuid, cfg.memory, cfg.max_memory, cfg.vcpus, cfg.max_vcpus) == (
        name,
        uuid.UUID(uid),
        mem,
        max_mem,
        vcpus,
        max_vcpus,
    )


def test_state_reasons(conn: virtkit.Connection) -> None:
    reasons = {d.name: d.state().reason for d in conn.domains(all=True)}
    assert reasons == {"test": "booted", "web": "booted", "paused-vm": "user", "defined-vm": "unknown"}


def test_lookup_by_id_finds_running_and_paused_only(conn: virtkit.Connection) -> None:
    assert conn.lookup_by_id(1).name == "test"
    assert conn.lookup_by_id(3).name == "paused-vm"
    for missing in (0, 4, 99, -1):
        with pytest.raises(virtkit.NoSuchDomain, match=str(missing)):
            conn.lookup_by_id(missing)


def test_missing_domain_lookups(conn: virtkit.Connection) -> None:
    with pytest.raises(virtkit.NoSuchDomain, match="nope"):
        conn.lookup_by_name("nope")
    with pytest.raises(virtkit.NoSuchDomain) as err:
        conn.lookup_by_uuid(uuid.UUID(int=7))
    assert err.value.driver == "test"
    assert err.value.operation == "domain_lookup_by_uuid"


def test_lookup_like_virsh(conn: virtkit.Connection) -> None:
    assert conn.lookup("2").name == "web"
    assert conn.lookup("6695eb01-f6a4-8304-79aa-97f2502e1942").name == "defined-vm"
    assert conn.lookup("paused-vm").id == 3


def test_every_operation_is_served_by_test(conn: virtkit.Connection) -> None:
    for op in virtkit.CATALOGUE:
        assert conn.served_by(op) == "test", op


def test_default_uri_is_proposed() -> None:
    with virtkit.open(None, entry_points=False, plugins=[virtkit_test.plugin]) as c:
        assert str(c.uri) == "test:///default"
        assert c.hostname() == "test-host"


def test_package_doctest() -> None:
    failed, tried = doctest.testmod(virtkit_test)
    assert tried > 0
    assert failed == 0
