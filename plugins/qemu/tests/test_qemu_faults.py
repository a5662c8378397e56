"""Slow and frozen peers on every socket channel of the plugin (issue 12), scripted in the test:
the command link to a domain's relay, the event connection to it, and a direct QMP connection
(qemu.qmp). Each call ends with virtkit.TimeoutError within its timeout + 10 % (+ a constant for
a loaded machine) and leaves the channel defined: the command link closed (the next command
reconnects), the event connection closed, the direct connection gone, no thread behind.

A real relay and QEMU stopped with SIGSTOP: test_qemu_sigstop.py.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _peer import Behave, Peer  # beside this file (conftest puts the directory on sys.path)

import virtkit
from virtkit.testing import no_threads_left
from virtkit_qemu._driver import Driver
from virtkit_qemu._qmp import CommandLink, Loop
from virtkit_qemu._relay import RELAY

TIMEOUT = 1.0
SLACK = 0.5  # a loaded 2-core machine
GREETING = b'{"relay": 1, "pid": 1}\n'
QMP_GREETING = (
    json.dumps(
        {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}
    ).encode()
    + b"\r\n"
)


def within(timeout: float, started: float) -> None:
    elapsed = time.monotonic() - started
    assert elapsed <= timeout * 1.1 + SLACK, f"took {elapsed:.2f} s for a {timeout} s timeout"


@pytest.fixture
def rundir() -> Iterator[pathlib.Path]:
    # short: a unix socket path is at most 107 bytes
    d = pathlib.Path(tempfile.mkdtemp(prefix="vkqf"))
    yield d
    for p in sorted(d.rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() else p.rmdir()
    d.rmdir()


@pytest.fixture
def no_thread_left() -> Iterator[None]:
    with no_threads_left("virtkit-qemu"):
        yield


def _batch_reply(msg: dict[str, Any]) -> bytes:
    return json.dumps({"id": msg["id"], "results": [{"return": {"status": "running"}}]}).encode() + b"\n"


# -- the command link to a relay ------------------------------------------------------------------


def drip_greeting(peer: Peer, conn: socket.socket) -> None:
    peer.drip(conn, GREETING)


def no_greeting(peer: Peer, conn: socket.socket) -> None:
    peer.freeze()


def drip_reply(peer: Peer, conn: socket.socket) -> None:
    conn.sendall(GREETING)
    peer.drip(conn, _batch_reply(peer.line(conn)))


def no_reply(peer: Peer, conn: socket.socket) -> None:
    conn.sendall(GREETING)
    peer.line(conn)
    peer.freeze()


def half_reply(peer: Peer, conn: socket.socket) -> None:
    conn.sendall(GREETING)
    reply = _batch_reply(peer.line(conn))
    conn.sendall(reply[: len(reply) // 2])
    peer.freeze()


def honest(peer: Peer, conn: socket.socket) -> None:
    conn.sendall(GREETING)
    while not peer.stop.is_set():
        conn.sendall(_batch_reply(peer.line(conn)))


LINK_FAULTS = [drip_greeting, no_greeting, drip_reply, no_reply, half_reply]


@pytest.mark.parametrize("behave", LINK_FAULTS, ids=[f.__name__ for f in LINK_FAULTS])
def test_command_link_times_out_in_time_then_reconnects(behave: Behave, rundir: pathlib.Path) -> None:
    first: list[socket.socket] = []

    def script(peer: Peer, conn: socket.socket) -> None:
        if not first:
            first.append(conn)
            behave(peer, conn)
        else:
            honest(peer, conn)  # the relay is well again

    path = str(rundir / RELAY)
    peer = Peer(path, script)
    link = CommandLink(path, TIMEOUT)
    try:
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            link.execute_many((("query-status", None),), time.monotonic() + TIMEOUT)
        within(TIMEOUT, t0)
        assert not link.connected  # closed: a late reply cannot be taken for the next command's
        assert peer.closed_by_client(first[0])
        assert link.execute_many((("query-status", None),), time.monotonic() + TIMEOUT) == [{"status": "running"}]
    finally:
        link.close()
        peer.close()


def test_command_link_refuses_an_endless_line(rundir: pathlib.Path) -> None:
    """A peer that streams a reply line without end: the link stops reading at LINE_MAX."""

    def flood(peer: Peer, conn: socket.socket) -> None:
        conn.sendall(GREETING)
        peer.line(conn)
        chunk = b"x" * 65536
        while not peer.stop.is_set():
            conn.sendall(chunk)

    path = str(rundir / RELAY)
    peer = Peer(path, flood)
    link = CommandLink(path, 30)  # a generous timeout: the cap, not the deadline, must end it
    try:
        with pytest.raises(virtkit.ProtocolError, match="more than"):
            link.execute_many((("query-status", None),), time.monotonic() + 30)
        assert not link.connected
    finally:
        link.close()
        peer.close()


# -- the event connection to a relay --------------------------------------------------------------


def no_listen_confirmation(peer: Peer, conn: socket.socket) -> None:
    conn.sendall(GREETING)
    peer.line(conn)  # {"listen": true}: never confirmed
    peer.freeze()


EVENT_FAULTS = [drip_greeting, no_greeting, no_listen_confirmation]


@pytest.mark.usefixtures("no_thread_left")
@pytest.mark.parametrize("behave", EVENT_FAULTS, ids=[f.__name__ for f in EVENT_FAULTS])
def test_event_subscription_times_out_in_time(behave: Behave, rundir: pathlib.Path) -> None:
    conns: list[socket.socket] = []

    def script(peer: Peer, conn: socket.socket) -> None:
        conns.append(conn)
        behave(peer, conn)

    peer = Peer(str(rundir / RELAY), script)
    loop = Loop(TIMEOUT)
    try:
        t0 = time.monotonic()
        until = time.monotonic() + TIMEOUT
        with pytest.raises(virtkit.TimeoutError):
            loop.run(loop.listen(str(rundir), lambda kind, detail: None, until), until)
        within(TIMEOUT, t0)
        assert peer.closed_by_client(conns[0])  # the connection is not left half-open
    finally:
        loop.close()
        peer.close()


# -- a direct QMP connection (qemu.qmp), used when a domain has no relay --------------------------


def qmp_drip_greeting(peer: Peer, conn: socket.socket) -> None:
    peer.drip(conn, QMP_GREETING)


def qmp_no_capabilities_reply(peer: Peer, conn: socket.socket) -> None:
    conn.sendall(QMP_GREETING)
    peer.line(conn)
    peer.freeze()


def _qmp_negotiated(peer: Peer, conn: socket.socket) -> dict[str, Any]:
    conn.sendall(QMP_GREETING)
    caps = peer.line(conn)
    conn.sendall(json.dumps({"return": {}, "id": caps.get("id")}).encode() + b"\r\n")
    return peer.line(conn)


def qmp_no_reply(peer: Peer, conn: socket.socket) -> None:
    _qmp_negotiated(peer, conn)
    peer.freeze()


def qmp_half_reply(peer: Peer, conn: socket.socket) -> None:
    cmd = _qmp_negotiated(peer, conn)
    conn.sendall(json.dumps({"return": {"status": "running"}, "id": cmd.get("id")}).encode()[:20])
    peer.freeze()


def qmp_drip_reply(peer: Peer, conn: socket.socket) -> None:
    cmd = _qmp_negotiated(peer, conn)
    peer.drip(conn, json.dumps({"return": {"status": "running"}, "id": cmd.get("id")}).encode() + b"\r\n")


QMP_FAULTS = [no_greeting, qmp_drip_greeting, qmp_no_capabilities_reply, qmp_no_reply, qmp_half_reply, qmp_drip_reply]


@pytest.mark.usefixtures("no_thread_left")
@pytest.mark.parametrize("behave", QMP_FAULTS, ids=[f.__name__ for f in QMP_FAULTS])
def test_direct_qmp_times_out_in_time(behave: Behave, rundir: pathlib.Path) -> None:
    conns: list[socket.socket] = []

    def script(peer: Peer, conn: socket.socket) -> None:
        conns.append(conn)
        behave(peer, conn)

    peer = Peer(str(rundir / "qmp.sock"), script)
    loop = Loop(TIMEOUT)
    try:
        t0 = time.monotonic()
        until = time.monotonic() + TIMEOUT
        with pytest.raises(virtkit.TimeoutError):
            loop.run(loop.execute_direct(str(rundir / "qmp.sock"), (("query-status", None),), until), until)
        within(TIMEOUT, t0)
        assert peer.closed_by_client(conns[0])  # disconnected, not left open
    finally:
        loop.close()
        peer.close()


# -- the driver: one deadline per operation ----------------------------------------------------


@pytest.fixture
def fake_domain(tmp_path: pathlib.Path) -> Iterator[tuple[pathlib.Path, virtkit.DomainRef]]:
    """A state directory with one running domain (id 1) whose 'QEMU' is a sleeping process and
    whose relay socket the test serves; the root is short (socket paths)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="vkqd"))
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"never booted")
    uid = uuid.uuid4()
    cfg = virtkit.DomainConfig(name="fake", uuid=uid, memory=65536, max_memory=65536, kernel=str(kernel))
    rundir = root / "run" / "1"
    rundir.mkdir(parents=True)
    (root / "defined").mkdir()
    (rundir / "domain.json").write_text(json.dumps({"config": cfg.to_dict(), "persistent": False}))
    sleeper = subprocess.Popen(["sleep", "120"])
    (rundir / "qemu.pid").write_text(f"{sleeper.pid}\n")
    (rundir / "started").touch()
    try:
        yield root, virtkit.DomainRef("fake", uid, 1)
    finally:
        sleeper.kill()
        sleeper.wait()
        for p in sorted(root.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() else p.rmdir()
        root.rmdir()


def slow_relay(delay: float) -> Behave:
    """Answers every batch, each after ``delay`` (below the timeout), query-status: running."""

    def behave(peer: Peer, conn: socket.socket) -> None:
        conn.sendall(GREETING)
        while not peer.stop.is_set():
            msg = peer.line(conn)
            if peer.stop.wait(delay):
                return
            results = []
            for cmd, _args in msg["batch"]:
                ret: Any = {}
                if cmd == "query-status":
                    ret = {"status": "running"}
                elif cmd == "query-balloon":
                    ret = {"actual": 64 << 20}
                elif cmd == "query-cpus-fast":
                    ret = [{"thread-id": os.getpid()}]
                results.append({"return": ret})
            conn.sendall(json.dumps({"id": msg["id"], "results": results}).encode() + b"\n")

    return behave


OPERATIONS: dict[str, Callable[[Driver, virtkit.DomainRef], object]] = {
    "suspend": lambda d, ref: d.domain_suspend(ref),  # query-status, then stop
    "shutdown": lambda d, ref: d.domain_shutdown(ref),  # query-status, then system_powerdown
    "reboot": lambda d, ref: d.domain_reboot(ref),  # query-status, then system_powerdown
}


@pytest.mark.usefixtures("no_thread_left")
@pytest.mark.parametrize("op", OPERATIONS)
def test_operation_of_several_commands_ends_at_one_deadline(op: str, fake_domain: Any) -> None:
    """Each command is answered in 0.6 s (within the timeout), the operation needs two: it
    ends with TimeoutError at its one deadline, not at 2 x timeout."""
    root, ref = fake_domain
    peer = Peer(str(root / "run" / "1" / RELAY), slow_relay(0.6))
    drv = Driver(root, "qemu:///session", "/bin/false", TIMEOUT)
    try:
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            OPERATIONS[op](drv, ref)
        within(TIMEOUT, t0)
        # the link was closed on the timeout: the next operation reconnects and is answered
        assert drv.domain_get_info(ref).state is virtkit.DomainState.RUNNING
    finally:
        drv.close()
        peer.close()


@pytest.mark.usefixtures("no_thread_left")
def test_info_from_a_frozen_relay_does_not_go_around_it(fake_domain: Any) -> None:
    """A relay that accepts and never greets: info() ends with TimeoutError in time (it does not
    spend a second timeout on a direct QMP connection)."""
    root, ref = fake_domain
    peer = Peer(str(root / "run" / "1" / RELAY), no_greeting)
    qmp = Peer(str(root / "run" / "1" / "qmp.sock"), no_greeting)
    drv = Driver(root, "qemu:///session", "/bin/false", TIMEOUT)
    try:
        for call in (lambda: drv.domain_get_info(ref), lambda: drv.connect_list_domains()):
            t0 = time.monotonic()
            with pytest.raises(virtkit.TimeoutError):
                call()
            within(TIMEOUT, t0)
    finally:
        drv.close()
        peer.close()
        qmp.close()


@pytest.mark.usefixtures("no_thread_left")
def test_destroy_of_a_process_that_ignores_quit_ends_in_time(fake_domain: Any) -> None:
    """quit answered slowly and ignored (the 'QEMU' is a sleeping process): destroy SIGKILLs it
    when the operation's deadline is spent, not after a second full timeout."""
    root, ref = fake_domain
    pid = int((root / "run" / "1" / "qemu.pid").read_text())
    peer = Peer(str(root / "run" / "1" / RELAY), slow_relay(0.6))
    drv = Driver(root, "qemu:///session", "/bin/false", TIMEOUT)
    try:
        t0 = time.monotonic()
        drv.domain_destroy(ref)
        within(TIMEOUT, t0)
        assert not (root / "run" / "1").exists()
        with pytest.raises(virtkit.NoSuchDomain):
            drv.domain_get_info(ref)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pathlib.Path(f"/proc/{pid}").exists():
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
            if stat.rpartition(")")[2].split()[0] == "Z":
                break  # killed; reaped by the fixture
            time.sleep(0.05)
        else:
            assert not pathlib.Path(f"/proc/{pid}").exists()
    finally:
        drv.close()
        peer.close()


def monitor_going_away(peer: Peer, conn: socket.socket) -> None:
    """A relay whose QEMU is exiting: every command fails with the monitor's disconnection."""
    conn.sendall(GREETING)
    while not peer.stop.is_set():
        msg = peer.line(conn)
        error = {"error": {"class": "RelayError", "desc": "StateError: QMPClient is disconnecting."}}
        conn.sendall(json.dumps({"id": msg["id"], "results": [error for _ in msg["batch"]]}).encode() + b"\n")


@pytest.mark.usefixtures("no_thread_left")
def test_a_query_racing_qemus_exit_finds_the_domain_gone(fake_domain: Any) -> None:
    """The guest powered off and its relay quit QEMU; a lookup in that moment gets the relay's
    error for query-status: it waits (a moment, within its deadline) for QEMU to finish exiting
    and finds the domain gone, not a ProtocolError."""
    root, ref = fake_domain
    pid = int((root / "run" / "1" / "qemu.pid").read_text())
    peer = Peer(str(root / "run" / "1" / RELAY), monitor_going_away)
    drv = Driver(root, "qemu:///session", "/bin/false", TIMEOUT)
    exiting = threading.Timer(0.3, os.kill, (pid, signal.SIGTERM))
    try:
        exiting.start()
        t0 = time.monotonic()
        with pytest.raises(virtkit.NoSuchDomain):
            drv.domain_lookup_by_uuid(ref.uuid)
        within(TIMEOUT, t0)
    finally:
        exiting.join()
        drv.close()
        peer.close()
