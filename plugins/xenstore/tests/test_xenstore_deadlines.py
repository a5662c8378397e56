"""Slow and frozen daemons (issue 12): every call ends with virtkit.TimeoutError within its
timeout + 10 % (+ a constant for a loaded machine), and leaves the connection in a defined state:
still usable when nothing of a reply was pending, shut down and replaced on the next call when
the daemon stopped in the middle of a packet. No thread is left behind.

Peers: a scripted unix socket server (drip one byte a second, accept and never answer, answer
part of a reply and freeze, never accept), a real daemon process frozen with SIGSTOP, and the
xenbus flavour of the channel (a non-blocking fd polled, not a socket).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import virtkit
from virtkit.testing import ScriptedPeer, no_threads_left
from virtkit_xenstore import Client, Driver, Op
from virtkit_xenstore._channel import Channel
from virtkit_xenstore._conn import Conn

HDR = struct.Struct("<IIII")
TIMEOUT = 1.0
SLACK = 0.5  # a loaded 2-core machine


def within(timeout: float, started: float) -> None:
    elapsed = time.monotonic() - started
    assert elapsed <= timeout * 1.1 + SLACK, f"took {elapsed:.2f} s for a {timeout} s timeout"


class Scripted(ScriptedPeer):
    """A daemon in a thread: accepts connections and answers each request as ``behave`` says."""

    def __init__(self, path: str, behave: Callable[[Scripted, socket.socket, tuple[int, int, int, bytes]], None]):
        self.behave = behave
        self.eof = threading.Event()  # the client closed (shut down) a connection
        self.requests: list[tuple[int, int, int, bytes]] = []
        super().__init__(path, self._conn)

    def _conn(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buf = b""
        while not self.stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                self.eof.set()
                break
            buf += data
            while len(buf) >= 16 and len(buf) >= 16 + HDR.unpack_from(buf)[3]:
                typ, rid, tx, ln = HDR.unpack_from(buf)
                pkt = (typ, rid, tx, buf[16 : 16 + ln])
                buf = buf[16 + ln :]
                self.requests.append(pkt)
                self.behave(self, conn, pkt)


def reply_bytes(pkt: tuple[int, int, int, bytes], payload: bytes) -> bytes:
    typ, rid, tx, _ = pkt
    return HDR.pack(typ, rid, tx, len(payload)) + payload


def recovered(peer: Scripted, conn: socket.socket, pkt: tuple[int, int, int, bytes]) -> bool:
    """On any connection but the first the daemon is well again: it answers at once."""
    if conn is peer.conns[0]:
        return False
    conn.sendall(reply_bytes(pkt, b"fine"))
    return True


def drip(peer: Scripted, conn: socket.socket, pkt: tuple[int, int, int, bytes]) -> None:
    """One byte a second of an honest reply (the first at once)."""
    if recovered(peer, conn, pkt):
        return
    for b in reply_bytes(pkt, b"dripped value"):
        try:
            conn.send(bytes([b]))
        except OSError:
            return
        # a second's pause, noticing at once when the client shuts the connection down
        readable, _, _ = select.select([conn], [], [], 1.0)
        if peer.stop.is_set() or (readable and not conn.recv(65536, socket.MSG_PEEK)):
            peer.eof.set()
            return
        if readable and not peer.sleep(1.0):  # another request came in: still one byte a second
            return


def frozen(peer: Scripted, conn: socket.socket, pkt: tuple[int, int, int, bytes]) -> None:
    """Accepts, reads, never answers."""


def half(peer: Scripted, conn: socket.socket, pkt: tuple[int, int, int, bytes]) -> None:
    """The header and part of the payload of the first reply, then nothing."""
    if not recovered(peer, conn, pkt) and len(peer.requests) == 1:
        conn.sendall(reply_bytes(pkt, b"a value of thirty-two bytes long")[:24])


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "xs.sock"
    if len(str(path)) >= 100:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="xsd")) / "xs.sock"
    yield str(path)


@pytest.fixture
def no_thread_left() -> Iterator[None]:
    with no_threads_left("xenstore"):
        yield


# Every operation of the client, each waiting for the (misbehaving) reply to its first request.
OPERATIONS: dict[str, Callable[[Client], object]] = {
    "read": lambda xs: xs.read("/a"),
    "read_many": lambda xs: xs.read_many(["/a", "/b", "/c"]),
    "write": lambda xs: xs.write("/a", b"v"),
    "directory": lambda xs: xs.directory("/local/domain"),
    "get_perms": lambda xs: xs.get_perms("/a"),
    "transaction": lambda xs: xs.transaction(),
    "transact": lambda xs: xs.transact(lambda tx: tx.read("/a")),
    "watch": lambda xs: xs.watch("/w"),
    "is_domain_introduced": lambda xs: xs.is_domain_introduced(1),
    "get_domain_path": lambda xs: xs.get_domain_path(1),
}


@pytest.mark.usefixtures("no_thread_left")
@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("behave", [drip, frozen, half], ids=["drip", "frozen", "half-reply"])
def test_every_operation_times_out_in_time(op: str, behave: Any, sock_path: str) -> None:
    peer = Scripted(sock_path, behave)
    xs = Client(sock_path, timeout=TIMEOUT)
    try:
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            OPERATIONS[op](xs)
        within(TIMEOUT, t0)
        conn = xs._conn
        assert conn is not None
        if behave is frozen:
            assert conn.broken is None  # nothing half-read: the connection stays, late replies dropped
        else:
            # stopped mid-packet: the connection is shut down (the daemon sees it) ...
            assert isinstance(conn.broken, virtkit.TimeoutError)
            assert peer.eof.wait(5)
            # ... and the next call starts afresh, on a new connection
            assert xs.read("/again") == b"fine"
            assert len(peer.conns) == 2
    finally:
        xs.close()
        peer.close()


def test_frozen_daemon_connection_stays_usable(sock_path: str) -> None:
    """A daemon that answers late: the late reply is dropped, the connection serves the next call."""
    answer = threading.Event()

    def late(peer: Scripted, conn: socket.socket, pkt: tuple[int, int, int, bytes]) -> None:
        if pkt[3] == b"/slow\0":
            answer.wait(10)
            conn.sendall(reply_bytes(pkt, b"too late"))
        else:
            conn.sendall(reply_bytes(pkt, b"in time"))

    peer = Scripted(sock_path, lambda p, c, k: threading.Thread(target=late, args=(p, c, k), daemon=True).start())
    with Client(sock_path, timeout=TIMEOUT) as xs:
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            xs.read("/slow")
        within(TIMEOUT, t0)
        answer.set()
        assert xs.read("/fast") == b"in time"
        assert len(peer.conns) == 1
    peer.close()


def test_slow_replies_cannot_stretch_a_multi_request_operation(sock_path: str) -> None:
    """Each reply comes in 0.3 s (well within the timeout) but the operation needs many: it
    ends at its one deadline, not at (requests x timeout)."""

    def slow(peer: Scripted, conn: socket.socket, pkt: tuple[int, int, int, bytes]) -> None:
        if not peer.sleep(0.3):
            return
        typ = pkt[0]
        if typ == Op.DIRECTORY:
            payload = b"".join(f"{i}\0".encode() for i in range(1, 40))
        elif typ == Op.READ:
            payload = b"a-name"
        else:
            payload = b"OK\0"
        try:
            conn.sendall(reply_bytes(pkt, payload))
        except OSError:
            pass

    peer = Scripted(sock_path, slow)
    xs = Client(sock_path, timeout=TIMEOUT)
    try:
        drv = Driver(xs)
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            # a name no domain has: a directory, then reads of every name... one deadline
            drv.domain_get_vcpus(virtkit.DomainRef("nobody", None, None))  # type: ignore[arg-type]
        within(TIMEOUT, t0)
    finally:
        xs.close()
    xs = Client(sock_path, timeout=TIMEOUT)  # a fresh connection: the peer still answers the old one
    try:
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError), xs.deadline():
            for _ in range(10):
                xs.read("/a")
        within(TIMEOUT, t0)
    finally:
        xs.close()
        peer.close()


def test_endless_directory_part_is_bounded(sock_path: str) -> None:
    """E2BIG, then DIRECTORY_PART chunks that never say 'done', promptly: one deadline."""

    def endless(peer: Scripted, conn: socket.socket, pkt: tuple[int, int, int, bytes]) -> None:
        if pkt[0] == Op.DIRECTORY:
            conn.sendall(HDR.pack(Op.ERROR, pkt[1], pkt[2], 6) + b"E2BIG\0")
        else:
            peer.sleep(0.05)
            conn.sendall(reply_bytes(pkt, b"1\0" + b"child\0" * 100))

    peer = Scripted(sock_path, endless)
    try:
        with Client(sock_path, timeout=TIMEOUT) as xs:
            t0 = time.monotonic()
            with pytest.raises(virtkit.TimeoutError):
                xs.directory("/big")
            within(TIMEOUT, t0)
    finally:
        peer.close()


def test_connect_to_a_daemon_that_stopped_accepting(sock_path: str) -> None:
    """Its listen backlog is full: connect() would wait forever; the call's deadline ends it."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(0)
    fillers = []
    for _ in range(4):  # fill the backlog
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(sock_path)
        except BlockingIOError:
            s.close()
            break
        fillers.append(s)
    try:
        with Client(sock_path, timeout=TIMEOUT) as xs:
            t0 = time.monotonic()
            with pytest.raises(virtkit.TimeoutError):
                xs.read("/a")
            within(TIMEOUT, t0)
    finally:
        for s in fillers:
            s.close()
        listener.close()


DAEMON = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import FakeXenstored
d = FakeXenstored({path!r})
d.put("/a", "alive")
print("ready", flush=True)
time.sleep(600)
"""


def test_daemon_process_frozen_with_sigstop(sock_path: str) -> None:
    """A real daemon process (the tests' in-memory xenstored) stopped with SIGSTOP: the kernel
    still accepts and buffers, nobody answers. The call times out; after SIGCONT the same
    connection serves again (the late reply to the timed-out call is dropped)."""
    code = DAEMON.format(tests=str(Path(__file__).parent), path=sock_path)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with Client(sock_path, timeout=TIMEOUT) as xs:
            assert xs.read("/a") == b"alive"
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                with pytest.raises(virtkit.TimeoutError):
                    xs.read("/a")
                within(TIMEOUT, t0)
                t0 = time.monotonic()
                with pytest.raises(virtkit.TimeoutError):
                    xs.write("/b", b"x")
                within(TIMEOUT, t0)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            assert xs.read("/a") == b"alive"
            assert xs._conn is not None and xs._conn.broken is None  # the same connection
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("what", ["drip", "frozen"])
def test_xenbus_channel_times_out_in_time(what: str) -> None:
    """The xenbus device flavour (a non-blocking fd, poll() and os.read): the same bounds."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = Conn(Channel("/dev/xen/xenbus (test)", None, os.dup(ours.fileno())), lambda p, t: None)
    stop = threading.Event()

    def peer() -> None:
        data = theirs.recv(65536)
        typ, rid, tx, _ = HDR.unpack_from(data)
        if what == "drip":
            for b in HDR.pack(typ, rid, tx, 4) + b"late":
                if stop.wait(1.0):
                    return
                theirs.send(bytes([b]))

    t = threading.Thread(target=peer, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            conn.call(Op.READ, b"/a\0", 0, "/a", TIMEOUT)
        within(TIMEOUT, t0)
    finally:
        stop.set()
        t.join(5)
        conn.close()
        ours.close()
        theirs.close()


@pytest.mark.usefixtures("no_thread_left")
def test_closing_a_watch_on_a_frozen_daemon_is_bounded_once(sock_path: str) -> None:
    """Watches on three paths, then the daemon stops answering: the three UNWATCHes share one
    deadline (not three timeouts), and closing the client ends the pump thread."""

    def watches_only(peer: Scripted, conn: socket.socket, pkt: tuple[int, int, int, bytes]) -> None:
        if pkt[0] == Op.WATCH:
            conn.sendall(reply_bytes(pkt, b"OK\0"))

    peer = Scripted(sock_path, watches_only)
    xs = Client(sock_path, timeout=TIMEOUT)
    try:
        w = xs.watch("/a", "/b", "/c")
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            w.close()
        within(TIMEOUT, t0)
    finally:
        xs.close()
        peer.close()


def test_read_later_is_bounded_from_when_it_was_sent(sock_path: str) -> None:
    peer = Scripted(sock_path, frozen)
    try:
        with Client(sock_path, timeout=TIMEOUT) as c:
            started = time.monotonic()
            result = c.read_later("/x")
            with pytest.raises(virtkit.TimeoutError):
                result()
            within(TIMEOUT, started)
    finally:
        peer.close()
