"""A real tiny Linux guest under TCG, booted once for this module, driven through virtkit.

Each step is checked against QMP's own view (qemu.qmp directly) and the process table. The tests
run in file order and share the guest: the last one shuts it down.
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import virtkit
from virtkit import DomainEventType, DomainState


class Events:
    def __init__(self) -> None:
        self.seen: list[virtkit.DomainEvent] = []
        self.lock = threading.Lock()

    def __call__(self, ev: virtkit.DomainEvent) -> None:
        with self.lock:
            self.seen.append(ev)

    def kinds(self, dom: virtkit.Domain) -> list[DomainEventType]:
        with self.lock:
            return [e.type for e in self.seen if e.domain.uuid == dom.uuid]


@pytest.fixture(scope="module")
def booted(mlab: Any) -> Iterator[tuple[virtkit.Connection, virtkit.Domain, Any]]:
    with mlab.open() as conn:
        dom = conn.create(mlab.config("guest1", vcpus=2))
        mlab.wait_for_console(dom.id)
        yield conn, dom, mlab


def test_info_matches_qmp_and_the_process(booted: Any) -> None:
    _, dom, lab = booted
    info = dom.info()
    assert info.state is DomainState.RUNNING
    assert lab.qmp(dom.id, "query-status")["status"] == "running"
    assert info.vcpus == len(lab.qmp(dom.id, "query-cpus-fast")) == 2
    assert info.memory == lab.qmp(dom.id, "query-balloon")["actual"] // 1024 == 128 * 1024
    assert info.max_memory == 160 * 1024
    assert info.cpu_time > 0  # it booted a kernel: the vcpu threads used cpu
    assert dom.state().state is DomainState.RUNNING
    pid = lab.qemu_pid(dom.id)
    cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert str(dom.uuid).encode() in cmdline and b"guest1" in cmdline


def test_lookups_and_listings(booted: Any) -> None:
    conn, dom, _ = booted
    assert conn.list_domains() == [dom.id]
    assert conn.list_defined_domains() == []
    assert conn.lookup_by_id(dom.id).uuid == dom.uuid
    assert conn.lookup_by_name("guest1").id == dom.id
    assert conn.lookup_by_uuid(dom.uuid).name == "guest1"


def test_a_new_connection_reattaches(booted: Any) -> None:
    _, dom, lab = booted
    with lab.open() as other:
        again = other.lookup_by_name("guest1")
        assert (again.id, again.uuid) == (dom.id, dom.uuid)
        assert again.info().state is DomainState.RUNNING


def test_suspend_resume_and_their_events(booted: Any) -> None:
    conn, dom, lab = booted
    events = Events()
    cancel = conn.domain_event_register(events)
    try:
        dom.suspend()
        assert dom.info().state is DomainState.PAUSED
        assert lab.qmp(dom.id, "query-status")["status"] == "paused"
        with pytest.raises(virtkit.InvalidOperation):
            dom.suspend()
        dom.resume()
        assert lab.qmp(dom.id, "query-status")["status"] == "running"
        with pytest.raises(virtkit.InvalidOperation):
            dom.resume()
        lab.wait_until(lambda: events.kinds(dom) == [DomainEventType.SUSPENDED, DomainEventType.RESUMED], "events")
    finally:
        cancel()
    assert lab.pid_alive(lab.qemu_pid(dom.id))


def test_set_memory_balloons_the_guest(booted: Any) -> None:
    _, dom, lab = booted
    for bad in (0, 160 * 1024 + 1024):
        with pytest.raises(virtkit.InvalidArgument):
            dom.set_memory(bad)
    dom.set_memory(100 * 1024)
    # The guest's balloon driver gives the memory back: QMP reports what it actually did.
    lab.wait_until(lambda: dom.info().memory == 100 * 1024, "the balloon to deflate the guest")
    assert lab.qmp(dom.id, "query-balloon")["actual"] == 100 * 1024 * 1024


def test_reboot_resets_the_same_process(booted: Any) -> None:
    conn, dom, lab = booted
    pid = lab.qemu_pid(dom.id)
    events = Events()
    cancel = conn.domain_event_register(events)
    try:
        dom.reboot()
        lab.wait_for_console(dom.id, count=2)  # the guest's init ran a second time
        lab.wait_until(lambda: DomainEventType.REBOOTED in events.kinds(dom), "the reboot event")
    finally:
        cancel()
    assert lab.qemu_pid(dom.id) == pid and lab.pid_alive(pid)
    assert dom.info().state is DomainState.RUNNING


def test_shutdown_really_powers_the_guest_off(booted: Any) -> None:
    conn, dom, lab = booted
    pid = lab.qemu_pid(dom.id)
    events = Events()
    cancel = conn.domain_event_register(events)
    try:
        dom.shutdown()

        def gone() -> bool:
            try:
                conn.lookup_by_uuid(dom.uuid)
            except virtkit.NoSuchDomain:
                return True
            return False

        lab.wait_until(gone, "the transient domain to disappear after its shutdown")
        lab.wait_until(lambda: DomainEventType.STOPPED in events.kinds(dom), "the stopped event")
    finally:
        cancel()
    assert not lab.pid_alive(pid)
    assert conn.list_domains() == []
    assert DomainEventType.SHUTDOWN in events.kinds(dom)
    assert not lab.rundir(dom.id).exists()
