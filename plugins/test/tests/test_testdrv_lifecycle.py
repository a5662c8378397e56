"""State transitions: the valid ones change state and ids, the invalid ones raise typed errors."""

from __future__ import annotations

import time

import pytest

import virtkit
from virtkit import DomainState


def _state(dom: virtkit.Domain) -> DomainState:
    return dom.info().state


def test_suspend_and_resume(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    dom.suspend()
    assert _state(dom) is DomainState.PAUSED
    assert dom.state().reason == "user"
    assert dom.id == 1 and conn.list_domains() == [1, 2, 3]  # a paused domain keeps its id
    dom.resume()
    assert _state(dom) is DomainState.RUNNING
    assert dom.state().reason == "unpaused"


@pytest.mark.parametrize(
    ("name", "op", "match"),
    [
        ("test", "resume", "running, not paused"),
        ("defined-vm", "resume", "shut off, not paused"),
        ("paused-vm", "suspend", "paused, not running"),
        ("defined-vm", "suspend", "shut off, not running"),
        ("defined-vm", "destroy", "not running"),
        ("defined-vm", "shutdown", "not running"),
        ("defined-vm", "reboot", "not running"),
        ("test", "start", "already running"),
        ("paused-vm", "start", "already paused"),
    ],
)
def test_invalid_transitions(conn: virtkit.Connection, name: str, op: str, match: str) -> None:
    dom = conn.lookup_by_name(name)
    before = dom.info().state
    with pytest.raises(virtkit.InvalidOperation, match=match) as err:
        getattr(dom, op)()
    assert err.value.operation == f"domain_{op}"
    assert err.value.driver == "test"
    assert _state(dom) is before  # a refused transition changes nothing


def test_destroy_persistent_stays_defined(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("web")
    dom.destroy()
    assert dom.id is None
    assert _state(dom) is DomainState.SHUTOFF
    assert dom.state().reason == "destroyed"
    assert conn.list_domains() == [1, 3]
    assert conn.list_defined_domains() == ["defined-vm", "web"]
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_id(2)
    assert conn.lookup_by_name("web").id is None


def test_shutdown_persistent_stays_defined(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    dom.shutdown()
    assert dom.id is None
    assert dom.state() == virtkit.DomainStateInfo(DomainState.SHUTOFF, "shutdown")
    assert "test" in conn.list_defined_domains()


def test_shutdown_of_paused_domain(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("paused-vm")
    dom.shutdown()  # libvirt's test driver: an active domain shuts off whether paused or not
    assert _state(dom) is DomainState.SHUTOFF


def test_start_gives_a_new_id_never_reused(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("defined-vm")
    dom.start()
    assert dom.id == 4
    assert _state(dom) is DomainState.RUNNING
    assert dom.state().reason == "booted"
    assert conn.lookup_by_id(4) == dom
    dom.destroy()
    dom.start()
    assert dom.id == 5
    assert conn.list_domains() == [1, 2, 3, 5]
    assert [d.name for d in conn.domains()] == ["test", "web", "paused-vm", "defined-vm"]


def test_restarted_domain_orders_by_new_id(conn: virtkit.Connection) -> None:
    test = conn.lookup_by_name("test")
    test.destroy()
    test.start()
    assert [d.name for d in conn.domains()] == ["web", "paused-vm", "test"]


def test_reboot_keeps_the_domain_running(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("web")
    dom.reboot()
    assert dom.id == 2
    assert _state(dom) is DomainState.RUNNING


def test_reboot_of_paused_domain_runs_it(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("paused-vm")
    dom.reboot()
    assert _state(dom) is DomainState.RUNNING


def test_reboot_with_on_reboot_destroy_stops(conn: virtkit.Connection) -> None:
    dom = conn.define(virtkit.DomainConfig("oneshot", 65536, on_reboot="destroy"))
    dom.start()
    dom.reboot()
    assert _state(dom) is DomainState.SHUTOFF


def test_stale_domain_object_after_restart_still_resolves(conn: virtkit.Connection) -> None:
    old = conn.lookup_by_name("test")  # holds id 1
    fresh = conn.lookup_by_name("test")
    fresh.destroy()
    fresh.start()
    assert old.info().state is DomainState.RUNNING  # resolved by uuid, not the stale id
    old.suspend()
    assert fresh.info().state is DomainState.PAUSED


def test_cpu_time_grows_only_while_running(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    t0 = dom.info().cpu_time
    time.sleep(0.02)
    t1 = dom.info().cpu_time
    assert t1 - t0 >= 10_000_000  # at least 10 ms of the 20 ms slept
    dom.suspend()
    p0 = dom.info().cpu_time
    time.sleep(0.02)
    assert dom.info().cpu_time == p0  # frozen while paused
    assert p0 >= t1
    dom.resume()
    time.sleep(0.01)
    assert dom.info().cpu_time > p0


def test_paused_and_shutoff_cpu_time(conn: virtkit.Connection) -> None:
    paused = conn.lookup_by_name("paused-vm")
    assert paused.info().cpu_time == 1_500_000_000
    assert 4_200_000_000 <= conn.lookup_by_name("test").info().cpu_time < 4_200_000_000 + 60 * 10**9
    off = conn.lookup_by_name("defined-vm")
    assert off.info().cpu_time == 0
    web = conn.lookup_by_name("web")
    time.sleep(0.005)
    web.destroy()
    assert web.info().cpu_time == 0  # a stopped domain's count starts again at its next boot


def test_unknown_flags_are_refused(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    with pytest.raises(virtkit.InvalidArgument, match="flags"):
        dom.suspend(flags=1)
    assert _state(dom) is DomainState.RUNNING
    with pytest.raises(virtkit.InvalidArgument, match="flags"):
        conn.list_domains(flags=8)


def test_readonly_connection_refuses_transitions() -> None:
    with virtkit.open("test:///default", readonly=True) as ro:
        dom = ro.lookup_by_name("test")
        with pytest.raises(virtkit.ReadOnlyError):
            dom.destroy()
        assert dom.info().state is DomainState.RUNNING


def test_closed_connection() -> None:
    c = virtkit.open("test:///default")
    dom = c.lookup_by_name("test")
    c.close()
    with pytest.raises(virtkit.ConnectionClosed):
        dom.info()
