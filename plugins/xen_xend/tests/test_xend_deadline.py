"""A timeout is a total deadline per operation on every xend channel (issue 12, item 2).

Real peers on 127.0.0.1, on a unix socket and over TLS answer the open properly, then (a) drip a
reply one byte per second, (b) send their headers one line per second, (c) accept and never
answer, or (d) send half a body and freeze. Each operation must end in virtkit.TimeoutError
within its timeout + 10 % (+ a constant for a loaded machine), not after the peer gives up.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import virtkit
from virtkit_xen_xend import Transport, dumps
from virtkit_xen_xend.emulator import XendEmulator, default_node

TIMEOUT = 1.0
SLACK = 0.5  # a loaded 2-core machine
# a regression must fail in seconds, not hang until the suite's own limit
pytestmark = pytest.mark.timeout(30)


def _within(start: float, timeout: float = TIMEOUT) -> float:
    elapsed = time.monotonic() - start
    assert elapsed <= timeout * 1.1 + SLACK, f"took {elapsed:.2f}s for a {timeout}s timeout"
    return elapsed


_BODY = dumps(default_node()).encode()
_HEAD = b"HTTP/1.1 200 OK\r\nContent-type: application/sxp\r\nContent-length: %d\r\nConnection: close\r\n\r\n" % len(
    _BODY
)
_GOOD = _HEAD + _BODY


class Peer:
    """A misbehaving xend: the first ``good`` requests get a proper reply (so open() succeeds), the
    rest get ``mode``: drip, slow_headers, silent or half_body. Stops itself when the test ends."""

    def __init__(self, mode: str, *, unix: str | None = None, tls: ssl.SSLContext | None = None, good: int = 1):
        self.mode = mode
        self.good = good
        self.tls = tls
        self.served = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        if unix is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix)
            self.uri = f"xen+unix:///?socket={unix}"
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            scheme = "xen+https" if tls is not None else "xen"
            self.uri = f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}/" + ("?no_verify=1" if tls else "")
        self.sock.listen(16)
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"peer-{mode}")
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self._conns.append(conn)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            with self._lock:
                self.served += 1
                nth = self.served
            if nth <= self.good:
                conn.sendall(_GOOD)
                return
            if self.mode == "drip":
                self._drip(conn, _GOOD, 1.0)
            elif self.mode == "slow_headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                for i in range(600):
                    if self._stop.wait(1.0):
                        return
                    conn.sendall(b"X-Slow-%d: y\r\n" % i)
            elif self.mode == "half_body":
                conn.sendall(_HEAD + _BODY[: len(_BODY) // 2])
            self._stop.wait(600)  # silent, or frozen after what was sent

    def _drip(self, conn: socket.socket, data: bytes, every: float) -> None:
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])
            if self._stop.wait(every):
                return

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()
        self._thread.join(5)


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


PeerFactory = Callable[..., Peer]


@pytest.fixture(params=["tcp", "unix", "tls"])
def peer(request: pytest.FixtureRequest, sockdir: Path, tmp_path: Path) -> Iterator[PeerFactory]:
    made: list[Peer] = []
    channel: str = request.param

    def make(mode: str, good: int = 1) -> Peer:
        if channel == "unix":
            p = Peer(mode, unix=str(sockdir / f"xend-{len(made)}"), good=good)
        elif channel == "tls":
            p = Peer(mode, tls=request.getfixturevalue("tls_context"), good=good)
        else:
            p = Peer(mode, good=good)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.mark.parametrize("mode", ["drip", "slow_headers", "silent", "half_body"])
def test_an_operation_ends_by_its_deadline(peer: PeerFactory, mode: str) -> None:
    p = peer(mode)
    with virtkit.open(p.uri, timeout=TIMEOUT) as conn:
        start = time.monotonic()
        with pytest.raises(virtkit.TimeoutError, match=r"did not answer GET /xend/node/ within 1s") as info:
            conn.node_info()
        _within(start)
        assert info.value.operation == "node_get_info" and info.value.driver == "xen_xend"


@pytest.mark.parametrize("mode", ["drip", "silent"])
def test_open_ends_by_its_deadline(peer: PeerFactory, mode: str) -> None:
    p = peer(mode, good=0)
    start = time.monotonic()
    with pytest.raises(virtkit.TimeoutError):
        virtkit.open(p.uri, timeout=TIMEOUT)
    _within(start)


def test_a_frozen_tls_handshake_ends_by_the_deadline() -> None:
    # a TCP peer that accepts and never speaks: the TLS handshake itself must give up in time
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        start = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            virtkit.open(f"xen+https://127.0.0.1:{srv.getsockname()[1]}/?no_verify=1", timeout=TIMEOUT)
        _within(start)


def test_the_deadline_spans_every_request_of_an_operation(emu: XendEmulator) -> None:
    # each request is answered within the timeout, but suspend takes two (the record, then the
    # op): the operation, not each request, is what the timeout bounds
    with virtkit.open(emu.uri, timeout=TIMEOUT) as conn:
        dom = conn.lookup_by_name("rhel5")
        emu.fault("delay", path="/xend/domain", delay=0.7)
        start = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            dom.suspend()
        _within(start)
        emu.clear_faults()
        assert conn.hostname() == "talon"  # the connection is still usable


def test_keep_alive_survives_the_deadline_machinery(emu: XendEmulator) -> None:
    with virtkit.open(emu.uri, timeout=TIMEOUT) as conn:
        before = emu.connections
        for _ in range(5):
            conn.lookup_by_name("rhel5").info()
        assert emu.connections == before  # one kept-alive connection, not one per request


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), float("-inf"), "1", None, True])
def test_the_transport_refuses_timeouts_requests_cannot_take(bad: object) -> None:
    with pytest.raises(virtkit.InvalidArgument, match="timeout"):
        Transport.tcp("127.0.0.1", 1, timeout=bad)  # type: ignore[arg-type]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The system resolver, except for two names under .invalid: ``hung.invalid`` is a resolver
    that does not answer (until the test ends), ``gone.invalid`` one that says no such name."""
    real = socket.getaddrinfo
    release = threading.Event()

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        numeric = len(args) >= 5 and isinstance(args[4], int) and args[4] & socket.AI_NUMERICHOST
        if numeric:  # an address literal only: no look-up, as the real one does
            return real(host, *args, **kwargs)  # type: ignore[arg-type]
        if host == "hung.invalid":
            release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host == "gone.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        yield release
    finally:
        release.set()


def test_a_resolver_that_does_not_answer_ends_by_the_deadline(resolver: threading.Event) -> None:
    start = time.monotonic()
    with pytest.raises(virtkit.TimeoutError, match="within 1s"):
        virtkit.open("xen://hung.invalid:8000/", timeout=TIMEOUT)
    _within(start)


def test_a_name_that_does_not_resolve_is_a_driver_error(resolver: threading.Event) -> None:
    with pytest.raises(virtkit.DriverError, match=r"cannot reach xend at http://gone\.invalid:8000: .*not known"):
        virtkit.open("xen://gone.invalid:8000/", timeout=TIMEOUT)


def test_a_host_name_is_looked_up_and_each_address_tried(emu: XendEmulator, resolver: threading.Event) -> None:
    # localhost may resolve to ::1 first, where the emulator does not listen: the next address serves
    with virtkit.open(f"xen://localhost:{emu.port}/", timeout=5.0) as conn:
        assert conn.hostname() == "talon"
    with socket.socket() as srv:  # nothing listens on the port any address of localhost gives
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]
    with pytest.raises(virtkit.DriverError, match="cannot reach xend"):
        virtkit.open(f"xen://localhost:{port}/", timeout=5.0)
