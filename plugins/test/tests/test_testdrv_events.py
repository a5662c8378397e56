"""Lifecycle events: one per change, after the change, outside the lock; bad callbacks don't hurt."""

from __future__ import annotations

import logging
import threading

import pytest

import virtkit
from virtkit import DomainConfig, DomainEvent, DomainEventType, DomainState

E = DomainEventType


@pytest.fixture
def seen(conn: virtkit.Connection) -> list[DomainEvent]:
    events: list[DomainEvent] = []
    conn.domain_event_register(events.append)
    return events


def _kinds(events: list[DomainEvent]) -> list[tuple[DomainEventType, str, str]]:
    return [(e.type, e.domain.name, e.detail) for e in events]


def test_every_lifecycle_change_fires(conn: virtkit.Connection, seen: list[DomainEvent]) -> None:
    test = conn.lookup_by_name("test")
    test.suspend()
    test.resume()
    test.reboot()
    test.shutdown()
    test.start()
    test.destroy()
    new = conn.define(DomainConfig("new", 1024))
    new.undefine()
    tmp = conn.create(DomainConfig("tmp", 1024))
    tmp.destroy()
    assert _kinds(seen) == [
        (E.SUSPENDED, "test", "paused"),
        (E.RESUMED, "test", "unpaused"),
        (E.REBOOTED, "test", ""),
        (E.SHUTDOWN, "test", "finished"),
        (E.STOPPED, "test", "shutdown"),
        (E.STARTED, "test", "booted"),
        (E.STOPPED, "test", "destroyed"),
        (E.DEFINED, "new", "added"),
        (E.UNDEFINED, "new", "removed"),
        (E.STARTED, "tmp", "booted"),
        (E.STOPPED, "tmp", "destroyed"),
    ]


def test_event_carries_the_domain_after_the_change(conn: virtkit.Connection, seen: list[DomainEvent]) -> None:
    dom = conn.lookup_by_name("defined-vm")
    dom.start()
    dom.destroy()
    started, stopped = seen
    assert started.domain == virtkit.DomainRef("defined-vm", dom.uuid, 4)
    assert stopped.domain.id is None
    assert started.timestamp > 0 and stopped.timestamp >= started.timestamp


def test_refused_operations_fire_nothing(conn: virtkit.Connection, seen: list[DomainEvent]) -> None:
    with pytest.raises(virtkit.InvalidOperation):
        conn.lookup_by_name("test").resume()
    with pytest.raises(virtkit.InvalidArgument):
        conn.create(DomainConfig("test", 1024))
    conn.lookup_by_name("web").set_memory(1024)  # not a lifecycle change
    assert seen == []


def test_delivered_after_the_change_and_outside_the_lock(conn: virtkit.Connection) -> None:
    observed: list[tuple[DomainState, list[int]]] = []

    def callback(event: DomainEvent) -> None:
        # Calling back into the driver would deadlock if we were still under its lock.
        dom = conn.lookup_by_uuid(event.domain.uuid)
        observed.append((dom.info().state, conn.list_domains()))

    conn.domain_event_register(callback)
    conn.lookup_by_name("web").suspend()
    assert observed == [(DomainState.PAUSED, [1, 2, 3])]


def test_callback_may_change_state_reentrantly(conn: virtkit.Connection, seen: list[DomainEvent]) -> None:
    def resume_when_suspended(event: DomainEvent) -> None:
        if event.type is E.SUSPENDED:
            conn.lookup_by_uuid(event.domain.uuid).resume()

    conn.domain_event_register(resume_when_suspended)
    dom = conn.lookup_by_name("test")
    dom.suspend()
    assert dom.info().state is DomainState.RUNNING
    assert [e.type for e in seen] == [E.SUSPENDED, E.RESUMED]  # in order, each delivered once


def test_raising_callback_is_logged_and_others_still_run(
    conn: virtkit.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: DomainEvent) -> None:
        raise RuntimeError("callback bug")

    got: list[DomainEvent] = []
    conn.domain_event_register(broken)
    conn.domain_event_register(got.append)
    dom = conn.lookup_by_name("test")
    with caplog.at_level(logging.ERROR, logger="virtkit.test"):
        dom.suspend()
        dom.resume()
    assert [e.type for e in got] == [E.SUSPENDED, E.RESUMED]
    assert dom.info().state is DomainState.RUNNING
    assert [r.exc_info[1].args for r in caplog.records if r.exc_info and r.exc_info[1]] == [("callback bug",)] * 2


def test_cancel_stops_delivery(conn: virtkit.Connection) -> None:
    got: list[DomainEvent] = []
    cancel = conn.domain_event_register(got.append)
    dom = conn.lookup_by_name("test")
    dom.suspend()
    cancel()
    cancel()  # idempotent
    dom.resume()
    assert [e.type for e in got] == [E.SUSPENDED]


def test_callback_must_be_callable(conn: virtkit.Connection) -> None:
    with pytest.raises(virtkit.InvalidArgument, match="callable"):
        conn.domain_event_register(42)  # type: ignore[arg-type]


def test_event_stream(conn: virtkit.Connection) -> None:
    with conn.events() as stream:
        conn.lookup_by_name("paused-vm").resume()
        ev = stream.get(timeout=1.0)
    assert ev is not None
    assert (ev.type, ev.domain.name) == (E.RESUMED, "paused-vm")


def test_events_from_other_threads_all_arrive(conn: virtkit.Connection, seen: list[DomainEvent]) -> None:
    def churn(i: int) -> None:
        for j in range(20):
            conn.create(DomainConfig(f"t{i}-{j}", 1024)).destroy()

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(seen) == 4 * 20 * 2
    per_domain: dict[str, list[DomainEventType]] = {}
    for e in seen:
        per_domain.setdefault(e.domain.name, []).append(e.type)
    assert all(kinds == [E.STARTED, E.STOPPED] for kinds in per_domain.values())  # ordered per domain


def test_closed_driver_refuses_calls(seen: list[DomainEvent], conn: virtkit.Connection) -> None:
    driver = conn.vtable["domain_suspend"].__self__  # type: ignore[attr-defined]
    ref = conn.lookup_by_name("test").ref
    driver.close()
    with pytest.raises(virtkit.ConnectionClosed):
        driver.domain_suspend(ref)
    assert seen == []
