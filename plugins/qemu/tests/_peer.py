"""A scripted unix-socket peer for the qemu plugin's fault tests: a relay or a QMP server that
drips, freezes, answers in part or answers well, as each test's ``behave`` says."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Behave", "Peer"]

Behave = Callable[["Peer", socket.socket], None]


class Peer:
    """A unix socket server in a thread; each connection is handled by ``behave(peer, conn)``
    on a thread of its own, until ``stop``. ``honest`` switches later connections to ``then``."""

    def __init__(self, path: str, behave: Behave) -> None:
        self.behave = behave
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.listener.settimeout(0.1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.behave(self, conn)
        except OSError:
            pass

    def drip(self, conn: socket.socket, data: bytes) -> None:
        """One byte a second (the first at once)."""
        for b in data:
            conn.send(bytes([b]))
            if self.stop.wait(1.0):
                return

    def line(self, conn: socket.socket) -> dict[str, Any]:
        buf = b""
        conn.settimeout(30)
        while b"\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("closed")
            buf += chunk
        msg: dict[str, Any] = json.loads(buf.split(b"\n")[0])
        return msg

    def freeze(self) -> None:
        self.stop.wait(30)

    def closed_by_client(self, conn: socket.socket, timeout: float = 5) -> bool:
        conn.settimeout(timeout)
        try:
            while conn.recv(65536):
                pass
        except TimeoutError:
            return False
        except OSError:
            pass
        return True

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)
        for c in self.conns:
            c.close()
