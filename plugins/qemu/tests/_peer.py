"""A scripted unix-socket peer for the qemu plugin's fault tests: a relay or a QMP server that
drips, freezes, answers in part or answers well, as each test's ``behave`` says."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

from virtkit.testing import ScriptedPeer

__all__ = ["Behave", "Peer"]

Behave = Callable[["Peer", socket.socket], None]


class Peer(ScriptedPeer):
    """A unix socket server in a thread; each connection is handled by ``behave(peer, conn)``
    on a thread of its own, until ``close``."""

    def __init__(self, path: str, behave: Behave) -> None:
        self.behave = behave
        super().__init__(path, lambda conn: behave(self, conn))

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
