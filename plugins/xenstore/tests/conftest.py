"""Peers for the xenstore unit tests: a scripted raw peer and a small in-memory xenstored.

The real daemons (oxenstored, C xenstored) are exercised in tests/lab/; these peers produce what
a real daemon can't on demand (malformed headers, unknown req_ids, oversize replies, EOF
mid-reply) and let the driver run without Xen.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

HDR = struct.Struct("<IIII")


def _sock_path(tmp_path: Path, name: str) -> str:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    path = tmp_path / name
    if len(str(path)) < 100:
        return str(path)
    import tempfile

    d = tempfile.mkdtemp(prefix="xs")
    return os.path.join(d, name)


class RawPeer:
    """A scripted daemon side: the test reads requests and writes whatever bytes it likes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.listener.settimeout(10)
        self.conn: socket.socket | None = None
        self.buf = b""

    def accept(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(10)
        self.buf = b""

    def recv_packet(self) -> tuple[int, int, int, bytes]:
        assert self.conn is not None
        while True:
            if len(self.buf) >= 16:
                t, rid, tx, ln = HDR.unpack_from(self.buf)
                if len(self.buf) >= 16 + ln:
                    payload = self.buf[16 : 16 + ln]
                    self.buf = self.buf[16 + ln :]
                    return t, rid, tx, payload
            data = self.conn.recv(65536)
            if not data:
                raise EOFError("client closed")
            self.buf += data

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def reply(self, typ: int, rid: int, payload: bytes, tx: int = 0) -> None:
        self.send(HDR.pack(typ, rid, tx, len(payload)) + payload)

    def close_conn(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.close_conn()
        self.listener.close()


@pytest.fixture
def raw_peer(tmp_path: Path) -> Iterator[RawPeer]:
    peer = RawPeer(_sock_path(tmp_path, "raw.sock"))
    yield peer
    peer.close()


# -- a small functional xenstored --------------------------------------------------------------

OK = b"OK\0"
T_READ, T_WRITE, T_MKDIR, T_RM, T_DIR, T_DIRPART = 2, 11, 12, 13, 1, 22
T_GETPERMS, T_SETPERMS, T_WATCH, T_UNWATCH, T_EVENT, T_ERROR = 3, 14, 4, 5, 15, 16
T_TSTART, T_TEND, T_GETDP, T_ISINTRO, T_RESETW, T_CONTROL = 6, 7, 10, 17, 21, 0


class Store:
    def __init__(self) -> None:
        self.nodes: dict[str, bytes] = {"/": b""}
        self.perms: dict[str, list[bytes]] = {}
        self.gen = 0

    def copy(self) -> Store:
        s = Store()
        s.nodes = dict(self.nodes)
        s.perms = {k: list(v) for k, v in self.perms.items()}
        s.gen = self.gen
        return s

    @staticmethod
    def parent(path: str) -> str:
        return path.rsplit("/", 1)[0] or "/"

    def children(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({k[len(prefix) :] for k in self.nodes if k.startswith(prefix) and "/" not in k[len(prefix) :]})

    def write(self, path: str, value: bytes) -> None:
        p = path
        while p not in self.nodes:
            self.nodes[p] = b""
            p = self.parent(p)
        self.nodes[path] = value
        self.gen += 1

    def rm(self, path: str) -> None:
        for k in [k for k in self.nodes if k == path or k.startswith(path + "/")]:
            del self.nodes[k]
        self.gen += 1


class FakeXenstored:
    """Enough of xenstored for the client and driver: nodes, perms, watches (with the initial
    event), transactions (EAGAIN when anything changed since start), DIRECTORY_PART, errors.

    ``directory_part=False`` answers ENOSYS like oxenstored; ``max_dir`` makes DIRECTORY answer
    E2BIG beyond that many bytes (default 4096, as C xenstored).
    """

    def __init__(self, path: str, *, directory_part: bool = True) -> None:
        self.path = path
        self.store = Store()
        self.lock = threading.Lock()
        self.directory_part = directory_part
        self.introduced: set[int] = {0}
        self.conns: list[socket.socket] = []
        self.accepted: list[socket.socket] = []
        self.watches: list[tuple[socket.socket, str, bytes]] = []
        self.tx: dict[int, tuple[Store, int]] = {}
        self.tx_ids = itertools.count(1)
        self.requests = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    # helpers for tests
    def put(self, path: str, value: bytes | str) -> None:
        with self.lock:
            self.store.write(path, value.encode() if isinstance(value, str) else value)
        self.fire(path)

    def remove(self, path: str) -> None:
        with self.lock:
            self.store.rm(path)
        self.fire(path)

    def fire(self, path: str) -> None:
        with self.lock:
            targets = [
                (s, tok)
                for s, wp, tok in self.watches
                if path == wp or path.startswith(wp.rstrip("/") + "/") or wp.startswith(path + "/")
            ]
        for s, tok in targets:
            self._send(s, T_EVENT, 0, 0, path.encode() + b"\0" + tok + b"\0")

    def kick_all(self) -> None:
        """Drop every client connection (as a daemon restart would)."""
        with self.lock:
            conns, self.conns = self.conns, []
            self.watches.clear()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop = True
        self.kick_all()
        self.listener.close()
        self.thread.join(timeout=10)
        for c in self.accepted:
            c.close()

    # server
    def _send(self, s: socket.socket, typ: int, rid: int, tx: int, payload: bytes) -> None:
        with contextlib.suppress(OSError):
            s.sendall(HDR.pack(typ, rid, tx, len(payload)) + payload)

    def _serve(self) -> None:
        bufs: dict[socket.socket, bytes] = {}
        while not self._stop:
            with self.lock:
                socks = list(self.conns)
            try:
                r, _, _ = select.select([self.listener, *socks], [], [], 0.05)
            except (OSError, ValueError):
                bufs = {s: b for s, b in bufs.items() if s.fileno() >= 0}
                continue
            for s in r:
                if s is self.listener:
                    try:
                        c, _ = self.listener.accept()
                    except OSError:
                        continue
                    with self.lock:
                        self.conns.append(c)
                        self.accepted.append(c)
                    bufs[c] = b""
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    with self.lock:
                        if s in self.conns:
                            self.conns.remove(s)
                        self.watches = [w for w in self.watches if w[0] is not s]
                    s.close()
                    bufs.pop(s, None)
                    continue
                buf = bufs.get(s, b"") + data
                while len(buf) >= 16:
                    t, rid, tx, ln = HDR.unpack_from(buf)
                    if len(buf) < 16 + ln:
                        break
                    payload, buf = buf[16 : 16 + ln], buf[16 + ln :]
                    self._handle(s, t, rid, tx, payload)
                bufs[s] = buf

    def _handle(self, s: socket.socket, t: int, rid: int, tx: int, payload: bytes) -> None:
        self.requests += 1
        args = payload.split(b"\0")
        fired: list[str] = []
        with self.lock:
            try:
                reply, fired = self._op(s, t, tx, payload, args)
            except KeyError as exc:
                self._send(s, T_ERROR, rid, tx, str(exc.args[0]).encode() + b"\0")
                return
        self._send(s, t, rid, tx, reply)
        if t == T_WATCH:
            self._send(s, T_EVENT, 0, 0, args[0] + b"\0" + args[1] + b"\0")
        for p in fired:
            self.fire(p)

    def _op(self, s: socket.socket, t: int, tx: int, payload: bytes, args: list[bytes]) -> tuple[bytes, list[str]]:
        store = self.store
        if tx:
            if tx not in self.tx:
                raise KeyError("ENOENT")
            store = self.tx[tx][0]
        path = args[0].decode(errors="replace")
        if t == T_READ:
            if path not in store.nodes:
                raise KeyError("ENOENT")
            return store.nodes[path], []
        if t == T_WRITE:
            store.write(path, payload[len(args[0]) + 1 :])
            return OK, [] if tx else [path]
        if t == T_MKDIR:
            if path not in store.nodes:
                store.write(path, b"")
            return OK, [] if tx else [path]
        if t == T_RM:
            if Store.parent(path) not in store.nodes:
                raise KeyError("ENOENT")
            store.rm(path)
            return OK, [] if tx else [path]
        if t == T_DIR:
            if path not in store.nodes:
                raise KeyError("ENOENT")
            out = b"".join(c.encode() + b"\0" for c in store.children(path))
            if len(out) > 4096:
                raise KeyError("E2BIG")
            return out, []
        if t == T_DIRPART:
            if not self.directory_part:
                raise KeyError("ENOSYS")
            if path not in store.nodes:
                raise KeyError("ENOENT")
            off = int(args[1])
            full = b"".join(c.encode() + b"\0" for c in store.children(path))
            gen = str(store.gen).encode() + b"\0"
            chunk = b""
            rest = full[off:]
            for child in rest.split(b"\0")[:-1]:
                if len(gen) + len(chunk) + len(child) + 2 > 4096:
                    return gen + chunk, []
                chunk += child + b"\0"
            return gen + chunk + b"\0", []
        if t == T_GETPERMS:
            if path not in store.nodes:
                raise KeyError("ENOENT")
            return b"".join(x + b"\0" for x in store.perms.get(path, [b"n0"])), []
        if t == T_SETPERMS:
            if path not in store.nodes:
                raise KeyError("ENOENT")
            store.perms[path] = [a for a in args[1:] if a]
            return OK, []
        if t == T_WATCH:
            if any(w[0] is s and w[1] == path and w[2] == args[1] for w in self.watches):
                raise KeyError("EEXIST")
            self.watches.append((s, path, args[1]))
            return OK, []
        if t == T_UNWATCH:
            for w in self.watches:
                if w[0] is s and w[1] == path and w[2] == args[1]:
                    self.watches.remove(w)
                    return OK, []
            raise KeyError("ENOENT")
        if t == T_TSTART:
            tid = next(self.tx_ids)
            self.tx[tid] = (self.store.copy(), self.store.gen)
            return str(tid).encode() + b"\0", []
        if t == T_TEND:
            snap, gen0 = self.tx.pop(tx)
            if args[0] == b"T":
                if self.store.gen != gen0:
                    raise KeyError("EAGAIN")
                keys = set(snap.nodes) | set(self.store.nodes)
                changed = [k for k in keys if snap.nodes.get(k) != self.store.nodes.get(k)]
                self.store = snap
                self.store.gen = gen0 + 1
                return OK, changed
            return OK, []
        if t == T_GETDP:
            return b"/local/domain/" + args[0] + b"\0", []
        if t == T_ISINTRO:
            return (b"T" if int(args[0]) in self.introduced else b"F") + b"\0", []
        if t == T_RESETW:
            self.watches = [w for w in self.watches if w[0] is not s]
            return OK, []
        if t == T_CONTROL:
            return b"echo:" + payload, []
        raise KeyError("ENOSYS")


@pytest.fixture
def fake_xs(tmp_path: Path) -> Iterator[FakeXenstored]:
    d = FakeXenstored(_sock_path(tmp_path, "xs.sock"))
    yield d
    d.close()


@pytest.fixture
def fake_xs_factory(tmp_path: Path) -> Iterator[type[FakeXenstored]]:
    made: list[FakeXenstored] = []

    class Factory:
        def __new__(cls, name: str = "xsf.sock", **kw: bool) -> FakeXenstored:  # type: ignore[misc]
            d = FakeXenstored(_sock_path(tmp_path, name), **kw)
            made.append(d)
            return d

    yield Factory  # type: ignore[misc]
    for d in made:
        d.close()
