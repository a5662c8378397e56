"""Events from scans of the pretend host: every change once, whoever made it."""

from __future__ import annotations

import pathlib

import pytest
from conftest import Host
from fakexen import world

import virtkit
from virtkit import DomainConfig, DomainEventType
from virtkit.testing import EventRecorder

T = 10.0
E = DomainEventType


def cfg(name: str, **kw: object) -> DomainConfig:
    return DomainConfig(name=name, memory=131072, kernel="/fake/vmlinux", **kw)  # type: ignore[arg-type]


@pytest.fixture
def rec(conn: virtkit.Connection) -> EventRecorder:
    r = EventRecorder()
    cancel = conn.domain_event_register(r)
    yield r  # type: ignore[misc]
    cancel()


def test_lifecycle_events(conn: virtkit.Connection, rec: EventRecorder) -> None:
    d = conn.define(cfg("e1"))
    rec.expect(E.DEFINED, d.uuid, T)
    m = rec.mark()
    d.start()
    assert rec.expect(E.STARTED, d.uuid, T, after=m).domain.id == d.id
    m = rec.mark()
    d.suspend()
    rec.expect(E.SUSPENDED, d.uuid, T, after=m)
    m = rec.mark()
    d.resume()
    rec.expect(E.RESUMED, d.uuid, T, after=m)
    m = rec.mark()
    d.reboot()
    rec.expect(E.REBOOTED, d.uuid, T, after=m)
    m = rec.mark()
    conn.lookup_by_uuid(d.uuid).destroy()
    assert rec.expect(E.STOPPED, d.uuid, T, after=m).detail == "destroyed"
    m = rec.mark()
    conn.lookup_by_uuid(d.uuid).undefine()
    rec.expect(E.UNDEFINED, d.uuid, T, after=m)
    kinds = [e.type for e in rec.events if e.domain.uuid == d.uuid]
    assert kinds == [E.DEFINED, E.STARTED, E.SUSPENDED, E.RESUMED, E.REBOOTED, E.STOPPED, E.UNDEFINED]


def test_guest_power_off_and_crash_are_seen_before_the_domain_goes(
    conn: virtkit.Connection, rec: EventRecorder, host: Host
) -> None:
    a = conn.create(cfg("off"))
    rec.expect(E.STARTED, a.uuid, T)
    with world(host.world) as w:
        w["doms"][str(a.id)].update(state="shutdown", reason="poweroff")  # the guest powered off
    rec.expect(E.SHUTDOWN, a.uuid, T)
    with world(host.world) as w:
        del w["doms"][str(a.id)]  # its babysitter destroyed it
    assert rec.expect(E.STOPPED, a.uuid, T).detail == "shutdown"
    b = conn.create(cfg("boom"))
    rec.expect(E.STARTED, b.uuid, T)
    with world(host.world) as w:
        w["doms"][str(b.id)].update(state="crashed", reason="crash")
    rec.expect(E.CRASHED, b.uuid, T)


def test_domains_made_elsewhere_are_reported_once(host: Host, rec: EventRecorder) -> None:
    other = host.open()  # another connection (another process would see the same files)
    try:
        d = other.define(cfg("x1"))
        d.start()
        rec.expect(E.DEFINED, d.uuid, T)
        rec.expect(E.STARTED, d.uuid, T)
        d.destroy()
        rec.expect(E.STOPPED, d.uuid, T)
    finally:
        other.close()
    assert [e.type for e in rec.events if e.domain.uuid == d.uuid] == [E.DEFINED, E.STARTED, E.STOPPED]


def test_a_failing_callback_does_not_stop_the_others(conn: virtkit.Connection, rec: EventRecorder) -> None:
    def broken(_e: object) -> None:
        raise RuntimeError("subscriber bug")

    cancel = conn.domain_event_register(broken)
    try:
        d = conn.define(cfg("cb"))
        rec.expect(E.DEFINED, d.uuid, T)
    finally:
        cancel()


def test_define_then_undefine_between_two_scans_are_both_reported(conn: virtkit.Connection, rec: EventRecorder) -> None:
    d = conn.define(cfg("quick"))
    conn.lookup_by_uuid(d.uuid).undefine()
    rec.expect(E.UNDEFINED, d.uuid, T)
    import time

    time.sleep(1.2)  # two more scans: they must not report either change again
    assert [e.type for e in rec.events if e.domain.uuid == d.uuid] == [E.DEFINED, E.UNDEFINED]


def test_a_pause_shorter_than_a_scan_is_reported_by_the_connection_that_made_it(
    conn: virtkit.Connection, rec: EventRecorder
) -> None:
    d = conn.create(cfg("blink"))
    d.suspend()
    d.resume()
    d.destroy()
    rec.expect(E.STOPPED, d.uuid, T)
    import time

    time.sleep(1.2)  # later scans add nothing
    assert [e.type for e in rec.events if e.domain.uuid == d.uuid] == [E.STARTED, E.SUSPENDED, E.RESUMED, E.STOPPED]


def test_a_start_a_scan_reported_before_the_create_returned_is_not_reported_again(
    conn: virtkit.Connection, rec: EventRecorder, host: Host
) -> None:
    # In the lab xl create returns ~0.6 s after it unpaused the guest: a scan can see it first.
    d = conn.create(cfg("early"))
    rec.expect(E.STARTED, d.uuid, T)
    driver = dict(conn._drivers)["xen_libxl"]  # type: ignore[attr-defined]
    driver._note(E.STARTED, d.ref)  # what the create's return would tell after that scan
    d.destroy()
    rec.expect(E.STOPPED, d.uuid, T)
    driver._note(E.STOPPED, d.ref)  # and a destroy a scan saw first
    import time

    time.sleep(1.2)
    assert [e.type for e in rec.events if e.domain.uuid == d.uuid] == [E.STARTED, E.STOPPED]


def test_a_run_the_libxl_engine_ended_faster_than_a_scan_is_told_by_its_mark(tmp_path: pathlib.Path) -> None:
    """The engine destroys a shut-down domain within milliseconds, before a scan sees its
    shutdown reason; it marks why in its run directory, and the watcher reads the mark."""
    import os
    import time
    import uuid
    from types import SimpleNamespace

    from virtkit import DomainRef, DomainState
    from virtkit_xen_libxl._events import Watcher, _Seen
    from virtkit_xen_libxl._plugin import ENDED, ended_reason

    (tmp_path / ENDED).mkdir()
    w = Watcher.__new__(Watcher)
    w._drv = SimpleNamespace(engine=SimpleNamespace(rundir=tmp_path))  # type: ignore[assignment]
    w._building, w._rebooting = {}, {}

    def run(name: str, domid: int) -> tuple[uuid.UUID, _Seen]:
        u = uuid.uuid5(uuid.NAMESPACE_DNS, name)
        return u, _Seen(DomainRef(name, u, domid), DomainState.RUNNING, None)

    def gone(name: str, mark: str | None) -> list[DomainEventType]:
        u, seen = run(name, 5)
        if mark is not None:
            (tmp_path / ENDED / str(u)).write_text(mark)
        return [e.type for e in w._compare({u: seen}, {}, {}, {}, 1.0)]

    assert gone("plain", None) == [E.STOPPED]  # no mark: destroyed
    assert gone("off", "poweroff") == [E.SHUTDOWN, E.STOPPED]
    assert gone("crashed", "crash") == [E.CRASHED, E.STOPPED]
    assert gone("again", "reboot") == []  # rebooting: its new run decides
    u, back = run("again", 6)
    assert [e.type for e in w._compare({}, {u: back}, {}, {}, 2.0)] == [E.REBOOTED]
    old = tmp_path / ENDED / str(u)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert ended_reason(tmp_path, str(u)) is None  # a mark of a run long gone says nothing


def test_reading_a_mark_does_not_load_the_engines_module(tmp_path: pathlib.Path) -> None:
    """The engine process's module brings logging, dataclasses and socketserver; the watcher of
    a client reads the marks without it (a fresh interpreter: imports are the process's)."""
    import subprocess
    import sys

    probe = f"""
import sys, uuid, pathlib
from types import SimpleNamespace
from virtkit import DomainRef, DomainState
from virtkit_xen_libxl._plugin import ENDED
from virtkit_xen_libxl._events import Watcher, _Seen
rundir = pathlib.Path({str(tmp_path)!r})
u = uuid.uuid5(uuid.NAMESPACE_DNS, "off")
(rundir / ENDED).mkdir()
(rundir / ENDED / str(u)).write_text("poweroff")
w = Watcher.__new__(Watcher)
w._drv = SimpleNamespace(engine=SimpleNamespace(rundir=rundir))
w._building, w._rebooting = {{}}, {{}}
seen = _Seen(DomainRef("off", u, 5), DomainState.RUNNING, None)
print([e.type.name for e in w._compare({{u: seen}}, {{}}, {{}}, {{}}, 1.0)])
print("virtkit_xen_libxl._engine" in sys.modules)
"""
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["['SHUTDOWN', 'STOPPED']", "False"]


def test_a_listed_domain_whose_read_fails_once_is_not_taken_for_gone() -> None:
    """Still listed by the hypervisor, its state read failing (xenstore busy, the domain being
    dumped): the scan keeps what it knew rather than report a stop and a new start."""
    import uuid
    from types import SimpleNamespace

    from virtkit import DomainRef, DomainState, NoSuchDomain
    from virtkit_xen_libxl._events import Watcher, _Seen

    ref = DomainRef("flaky", uuid.uuid4(), 7)

    def inner(op: str, *args: object) -> object:
        if op == "connect_list_domains":
            return [7]
        raise NoSuchDomain("no state just now")

    w = Watcher.__new__(Watcher)
    w._drv = SimpleNamespace(_inner=inner, state=SimpleNamespace(records=list))  # type: ignore[assignment]
    w._running = {ref.uuid: _Seen(ref, DomainState.RUNNING, None)}
    running, _defined = w._scan()
    assert running == w._running
