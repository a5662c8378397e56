"""The xen:/// driver over the in-memory xenstored, composed by the core."""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import virtkit
import virtkit_xenstore
from virtkit import DomainEventType, DomainState

U1 = uuid.UUID("11111111-2222-3333-4444-555555555555")
U2 = uuid.UUID("66666666-7777-8888-9999-aaaaaaaaaaaa")


def add_domain(d: Any, domid: int, name: str, u: uuid.UUID, *, features: bool = True, kib: int = 131072) -> None:
    base = f"/local/domain/{domid}"
    d.put(f"{base}/name", name)
    d.put(f"{base}/domid", str(domid))
    d.put(f"{base}/vm", f"/vm/{u}")
    d.put(f"/vm/{u}/uuid", str(u))
    d.put(f"/vm/{u}/image/ostype", "linux")
    d.put(f"/libxl/{domid}/type", "pv")
    d.put(f"{base}/memory/target", str(kib))
    d.put(f"{base}/memory/static-max", str(kib * 2))
    d.put(f"{base}/cpu/0/availability", "online")
    d.put(f"{base}/cpu/1/availability", "offline")
    if features:
        d.put(f"{base}/control/feature-poweroff", "1")
        d.put(f"{base}/control/feature-reboot", "1")
    d.introduced.add(domid)


@pytest.fixture
def host(fake_xs: Any) -> Any:
    fake_xs.put("/local/domain/0/name", "Domain-0")
    fake_xs.put("/local/domain/0/domid", "0")
    add_domain(fake_xs, 3, "guest-a", U1)
    add_domain(fake_xs, 5, "guest-b", U2, features=False)
    return fake_xs


@pytest.fixture
def conn(host: Any) -> Iterator[virtkit.Connection]:
    c = virtkit.open(
        "xen:///",
        plugins=[virtkit_xenstore.Plugin()],
        entry_points=False,
        params={"xenstore_path": host.path},
        timeout=10,
    )
    yield c
    c.close()


def test_list_and_lookups(conn: virtkit.Connection) -> None:
    assert conn.list_domains() == [0, 3, 5]
    assert conn.num_of_domains() == 3
    d = conn.lookup_by_name("guest-a")
    assert (d.id, d.uuid) == (3, U1)
    assert conn.lookup_by_uuid(U2).name == "guest-b"
    assert conn.lookup_by_id(0).name == "Domain-0"
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_name("nope")
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_id(42)


def test_info_is_partial(conn: virtkit.Connection) -> None:
    d = conn.lookup_by_id(3)
    info = d.info()
    assert info.state == DomainState.NOSTATE  # the hypervisor's business, not xenstore's
    assert (info.memory, info.max_memory, info.vcpus) == (131072, 262144, 1)
    assert d.max_memory() == 262144
    assert d.vcpus(flags=virtkit.VcpuFlags.MAXIMUM) == 2
    assert d.os_type() == "linux"


def test_shutdown_and_reboot_write_control_shutdown(conn: virtkit.Connection, host: Any) -> None:
    conn.lookup_by_name("guest-a").shutdown()
    assert host.store.nodes["/local/domain/3/control/shutdown"] == b"poweroff"
    conn.lookup_by_name("guest-a").reboot()
    assert host.store.nodes["/local/domain/3/control/shutdown"] == b"reboot"


def test_shutdown_needs_the_guest_feature(conn: virtkit.Connection, host: Any) -> None:
    with pytest.raises(virtkit.InvalidOperation, match="feature-poweroff"):
        conn.lookup_by_name("guest-b").shutdown()
    assert "/local/domain/5/control/shutdown" not in host.store.nodes


def test_shutdown_dom0_refused(conn: virtkit.Connection) -> None:
    with pytest.raises(virtkit.InvalidOperation):
        conn.lookup_by_id(0).shutdown()


def test_stale_ref_is_no_such_domain(conn: virtkit.Connection, host: Any) -> None:
    d = conn.lookup_by_name("guest-a")
    host.remove("/local/domain/3")
    with pytest.raises(virtkit.NoSuchDomain):
        d.shutdown()
    assert "/local/domain/3" not in host.store.nodes  # the write did not recreate the tree


def test_set_memory(conn: virtkit.Connection, host: Any) -> None:
    d = conn.lookup_by_name("guest-a")
    d.set_memory(200000)
    assert host.store.nodes["/local/domain/3/memory/target"] == b"200000"
    with pytest.raises(virtkit.InvalidArgument, match="exceeds"):
        d.set_memory(10**9)


def test_readonly_refuses_mutations(host: Any) -> None:
    with (
        virtkit.open(
            "xen:///",
            readonly=True,
            plugins=[virtkit_xenstore.Plugin()],
            entry_points=False,
            params={"xenstore_path": host.path},
        ) as c,
        pytest.raises(virtkit.ReadOnlyError),
    ):
        c.lookup_by_id(3).shutdown()


def test_events_started_and_stopped_with_names(conn: virtkit.Connection, host: Any) -> None:
    got: queue.Queue[virtkit.DomainEvent] = queue.Queue()
    cancel = conn.domain_event_register(got.put)
    # the watch lives on a connection of its own, so ordinary calls never wait on the pump
    assert len(host.conns) == 2
    assert [w[1] for w in host.watches] == ["@introduceDomain", "@releaseDomain"]
    assert all(w[0] is not host.conns[0] for w in host.watches)
    try:
        add_domain(host, 7, "newcomer", uuid.uuid4())
        host.fire("@introduceDomain")
        ev = got.get(timeout=10)
        assert (ev.type, ev.domain.name, ev.domain.id) == (DomainEventType.STARTED, "newcomer", 7)
        host.remove("/local/domain/3")
        host.fire("@releaseDomain")
        ev = got.get(timeout=10)
        assert (ev.type, ev.domain.name, ev.domain.id) == (DomainEventType.STOPPED, "guest-a", 3)
    finally:
        cancel()
    deadline = time.monotonic() + 10
    while len(host.conns) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(host.conns) == 1  # cancel closed the event connection


def test_event_for_a_domain_not_yet_introduced_waits(conn: virtkit.Connection, host: Any) -> None:
    got: queue.Queue[virtkit.DomainEvent] = queue.Queue()
    cancel = conn.domain_event_register(got.put)
    try:
        add_domain(host, 9, "building", uuid.uuid4())
        host.introduced.discard(9)
        host.fire("@releaseDomain")  # some other event while 9 is being built
        host.introduced.add(9)
        host.fire("@introduceDomain")
        ev = got.get(timeout=10)
        assert ev.domain.id == 9 and ev.type == DomainEventType.STARTED
        assert got.empty()
    finally:
        cancel()


def test_explain_and_priorities(conn: virtkit.Connection) -> None:
    text = str(conn.explain())
    assert "xenstore" in text
    assert virtkit_xenstore.PRIORITY == 20


def test_declines_without_daemon(tmp_path: Any) -> None:
    p = virtkit_xenstore.Plugin()
    with pytest.raises(virtkit.NoDriver) as info:
        virtkit.open("xen:///", plugins=[p], entry_points=False, params={"xenstore_path": str(tmp_path / "none")})
    assert "no xenstored reachable" in str(info.value.explanation)


def test_declines_remote_and_other_transports() -> None:
    p = virtkit_xenstore.Plugin()
    assert not p.can_handle(virtkit.parse_uri("xen://host/"))
    assert "local host" in p.can_handle(virtkit.parse_uri("xen://host/")).reason  # type: ignore[union-attr]
    assert not p.can_handle(virtkit.parse_uri("xen+tcp:///"))
    assert not p.can_handle(virtkit.parse_uri("test:///default"))
    assert p.can_handle(virtkit.parse_uri("xen:///system")) is True


def test_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="virtkit.drivers") if ep.name == "xen.xenstore"]
    assert len(eps) == 1 and eps[0].value == "virtkit_xenstore:plugin"
    assert virtkit_xenstore.plugin.virtkit_catalogue == "1.1"
