"""A real tiny Linux guest under TCG, booted once for this module, driven through virtkit.

Each step is checked against QMP's own view (qemu.qmp directly) and the process table. The tests
run in file order and share the guest: the last one shuts it down.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from _guest import READY_MARK

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
    # the guest's balloon driver deflates to the target a while after boot, on a loaded host later
    lab.wait_until(lambda: lab.qmp(dom.id, "query-balloon")["actual"] // 1024 == 128 * 1024, "the balloon target")
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
    assert dom.is_persistent() is False  # created, not defined
    with pytest.raises(virtkit.Unsupported):
        dom.autostart()  # nothing of the plugin runs at boot to honour a mark


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


def _console(lab: Any, dom: virtkit.Domain) -> str:
    return str((lab.rundir(dom.id) / "console.log").read_text(errors="replace"))


def test_reboot_is_cooperative_and_keeps_the_process(booted: Any) -> None:
    """libvirt's ACPI "fake reboot": a power-button press, the guest powers itself off, then
    system_reset + cont: a second boot in the same QEMU process, same id."""
    conn, dom, lab = booted
    pid = lab.qemu_pid(dom.id)
    events = Events()
    cancel = conn.domain_event_register(events)
    try:
        dom.reboot()  # returns once the press is delivered
        lab.wait_for_console(dom.id, count=2)  # the guest's init ran a second time
        lab.wait_until(lambda: DomainEventType.REBOOTED in events.kinds(dom), "the reboot event")
    finally:
        cancel()
    console = _console(lab, dom)
    assert console.count(READY_MARK) == 2
    assert "virtkit-guest: power button" in console  # the guest went down by itself: no hard reset
    assert lab.qemu_pid(dom.id) == pid and lab.pid_alive(pid)
    assert dom.info().state is DomainState.RUNNING
    assert lab.qmp(dom.id, "query-status")["status"] == "running"
    assert conn.lookup_by_id(dom.id).uuid == dom.uuid and conn.list_domains() == [dom.id]
    # A reboot is neither a shutdown nor a stop, for the listeners either.
    assert DomainEventType.SHUTDOWN not in events.kinds(dom) and DomainEventType.STOPPED not in events.kinds(dom)
    assert next(e.detail for e in events.seen if e.type is DomainEventType.REBOOTED) == "reboot"
    assert not (lab.rundir(dom.id) / "reboot").exists()  # the request was consumed


def test_reboot_outlives_the_connection_and_process_that_asked(booted: Any) -> None:
    """The request is recorded in the state directory: the relay acts on the power-off."""
    _, dom, lab = booted
    pid = lab.qemu_pid(dom.id)
    code = (
        "import sys, virtkit\n"
        "with virtkit.open('qemu:///session') as c:\n"
        "    c.lookup_by_id(int(sys.argv[1])).reboot()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(dom.id)], check=True, timeout=120)
    lab.wait_for_console(dom.id, count=3)
    assert lab.qemu_pid(dom.id) == pid
    lab.wait_until(lambda: dom.info().state is DomainState.RUNNING, "the domain running again")
    assert lab.qmp(dom.id, "query-status")["status"] == "running"


def test_reboot_without_a_relay_is_done_by_the_next_connection_that_looks(booted: Any) -> None:
    """With the domain's relay gone, whichever virtkit connection next looks at the powered-off
    guest resets it (instead of quitting QEMU)."""
    _, dom, lab = booted
    pid = lab.qemu_pid(dom.id)
    relay = int((lab.rundir(dom.id) / "relay.pid").read_text())
    os.kill(relay, signal.SIGKILL)
    lab.wait_until(lambda: not lab.pid_alive(relay), "the relay to die")
    with lab.open() as other:  # no listener: nothing restarts the relay
        again = other.lookup_by_id(dom.id)
        again.reboot()
        console = lambda: _console(lab, dom)  # noqa: E731
        lab.wait_until(lambda: console().count("virtkit-guest: power button") >= 3, "the guest to power off")
        # Looking is what resets it: poll the state until the second boot shows up.
        lab.wait_until(
            lambda: again.info().state is DomainState.RUNNING and console().count(READY_MARK) >= 4,
            "the guest to boot again",
            timeout=120,
        )
    assert lab.qemu_pid(dom.id) == pid and lab.pid_alive(pid)
    assert lab.qmp(dom.id, "query-status")["status"] == "running"


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
