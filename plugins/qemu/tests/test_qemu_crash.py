"""QEMU processes that die under virtkit (kill -9), and destroy: no hang, the right state.

These QEMUs are never waited for to boot: the process is what matters here.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from typing import Any

import pytest
from _guest import CMDLINE, READY_MARK

import virtkit
from virtkit import DomainEventType, DomainState


def _recorder() -> tuple[list[virtkit.DomainEvent], Any]:
    seen: list[virtkit.DomainEvent] = []
    lock = threading.Lock()

    def record(ev: virtkit.DomainEvent) -> None:
        with lock:
            seen.append(ev)

    return seen, record


def test_kill9_of_a_persistent_domain_is_crashed_then_startable(glab: Any) -> None:
    with glab.open() as conn:
        dom = conn.define(glab.config("p1"))
        seen, record = _recorder()
        cancel = conn.domain_event_register(record)
        dom.start()
        dom = conn.lookup_by_name("p1")
        assert dom.id is not None and conn.list_domains() == [dom.id]
        pid = glab.qemu_pid(dom.id)
        os.kill(pid, signal.SIGKILL)
        glab.wait_until(lambda: not glab.pid_alive(pid), "the killed QEMU to die")
        glab.wait_until(lambda: conn.lookup_by_name("p1").id is None, "p1 to be seen stopped")
        assert conn.list_domains() == []
        assert conn.list_defined_domains() == ["p1"]
        assert conn.lookup_by_name("p1").info().state is DomainState.SHUTOFF
        glab.wait_until(
            lambda: DomainEventType.CRASHED in [e.type for e in seen if e.domain.uuid == dom.uuid], "a crashed event"
        )
        cancel()
        # It starts again, under a new id, and destroy shuts it off but keeps it defined.
        again = conn.lookup_by_name("p1")
        again.start()
        again = conn.lookup_by_name("p1")
        assert again.id is not None and again.id != dom.id
        assert again.is_persistent() is True
        pid2 = glab.qemu_pid(again.id)
        assert glab.pid_alive(pid2)
        again.destroy()
        assert not glab.pid_alive(pid2)
        assert conn.lookup_by_name("p1").id is None
        assert conn.list_defined_domains() == ["p1"]
        conn.lookup_by_name("p1").undefine()
        assert conn.list_defined_domains() == []


def test_undefine_while_running_leaves_a_transient_domain(glab: Any) -> None:
    """libvirt's rule: the domain runs on, no longer persistent, and is gone once it stops."""
    with glab.open() as conn:
        dom = conn.define(glab.config("p2"))
        dom.start()
        dom = conn.lookup_by_name("p2")
        assert dom.is_persistent() is True
        dom.undefine()
        assert dom.is_persistent() is False and conn.lookup_by_name("p2").id == dom.id
        with glab.open() as other:  # the state directory says so to every connection
            assert other.lookup_by_name("p2").is_persistent() is False
        dom.destroy()
        with pytest.raises(virtkit.NoSuchDomain):
            conn.lookup_by_name("p2")


def test_kill9_of_a_transient_domain_is_gone(glab: Any) -> None:
    with glab.open() as conn:
        dom = conn.create(glab.config("t1"))
        other = conn.create(glab.config("t2"))
        os.kill(glab.qemu_pid(dom.id), signal.SIGKILL)
        with glab.open() as fresh:  # a new connection, which never saw it running, too

            def gone() -> bool:
                try:
                    fresh.lookup_by_uuid(dom.uuid)
                except virtkit.NoSuchDomain:
                    return True
                return False

            glab.wait_until(gone, "t1 to disappear")
            assert fresh.list_domains() == [other.id]  # the other domain is unaffected
        with pytest.raises(virtkit.NoSuchDomain):
            dom.info()
        assert other.info().state is DomainState.RUNNING
        other.destroy()
        assert conn.list_domains() == []


def test_same_name_twice_is_refused(glab: Any) -> None:
    with glab.open() as conn:
        dom = conn.create(glab.config("once"))
        with pytest.raises((virtkit.InvalidOperation, virtkit.InvalidArgument)):
            conn.create(glab.config("once"))
        assert conn.list_domains() == [dom.id]
        dom.destroy()


def test_two_connections_both_get_events(glab: Any) -> None:
    with glab.open() as a, glab.open() as b:
        dom = a.create(glab.config("ev2"))
        seen_a, rec_a = _recorder()
        seen_b, rec_b = _recorder()
        cancel_a = a.domain_event_register(rec_a)
        cancel_b = b.domain_event_register(rec_b)
        try:
            dom.suspend()
            want = [DomainEventType.SUSPENDED]
            for seen in (seen_a, seen_b):
                glab.wait_until(lambda s=seen: [e.type for e in s if e.domain.uuid == dom.uuid] == want, "events")
        finally:
            cancel_a()
            cancel_b()
        dom.destroy()


def test_destroy_kills_a_qemu_that_does_not_answer(glab: Any) -> None:
    with virtkit.open("qemu:///session", timeout=2) as conn:
        dom = conn.create(glab.config("hung"))
        pid = glab.qemu_pid(dom.id)
        os.kill(pid, signal.SIGSTOP)  # QMP gets no answer from a stopped process
        try:
            dom.destroy()  # quit times out, then SIGKILL after the timeout: no hang
        finally:
            if glab.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        assert not glab.pid_alive(pid)
        assert conn.list_domains() == []
        with pytest.raises(virtkit.NoSuchDomain):
            conn.lookup_by_name("hung")


def test_a_reboot_the_guest_ignores_expires_and_the_guest_runs_on(glab: Any) -> None:
    """reboot() returns once the press is delivered (as libvirt's); the request then stays
    pending for the connection's timeout, and is dropped: the guest runs on, untouched."""
    with virtkit.open("qemu:///session", timeout=5) as conn:
        # acpi=off: the guest has no power button, so it ignores every press.
        cfg = dataclasses.replace(glab.config("deaf"), cmdline=CMDLINE + " acpi=off")
        dom = conn.create(cfg)
        glab.wait_for_console(dom.id)
        pid = glab.qemu_pid(dom.id)
        seen, record = _recorder()
        cancel = conn.domain_event_register(record)
        try:
            dom.reboot()
            glab.wait_until(lambda: not (glab.rundir(dom.id) / "reboot").exists(), "the request to be dropped")
            assert dom.info().state is DomainState.RUNNING
            assert glab.qmp(dom.id, "query-status")["status"] == "running"
            assert glab.qemu_pid(dom.id) == pid
            console = (glab.rundir(dom.id) / "console.log").read_text(errors="replace")
            assert console.count(READY_MARK) == 1 and "virtkit-guest: power button" not in console
        finally:
            cancel()
        assert [e.type for e in seen if e.domain.uuid == dom.uuid] == []  # no reboot, no shutdown
        dom.destroy()
