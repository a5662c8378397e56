"""Fault-test harness for plugins that talk to a daemon over a unix socket: a scripted peer that
misbehaves on cue (drips, freezes, answers in part, dies), and a check that the client left no
thread of its own behind once it gave up on it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["ScriptedPeer", "no_threads_left"]


class ScriptedPeer:
    """A unix-socket server in a daemon thread: every accepted connection is handed to
    ``handle(conn)`` on a thread of its own, until :meth:`close`. ``handle`` scripts the daemon
    (answer, drip, freeze, close); an :class:`OSError` in it (the client went away) ends that
    connection quietly. ``stop`` is set by :meth:`close`: a scripted wait should use it
    (:meth:`sleep`, :meth:`freeze`) so that closing the peer ends every connection's script."""

    def __init__(self, path: str, handle: Callable[[socket.socket], None], *, backlog: int = 8) -> None:
        self.path = path
        self.handle = handle
        self.stop = threading.Event()
        #: Every connection accepted so far, in order.
        self.conns: list[socket.socket] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(backlog)
        self.listener.settimeout(0.1)  # how soon the accept loop sees stop
        self.thread = threading.Thread(target=self._serve, name="scripted-peer", daemon=True)
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
            threading.Thread(target=self._run, args=(conn,), name="scripted-peer-conn", daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.handle(conn)

    def sleep(self, seconds: float) -> bool:
        """Sleep unless closed meanwhile; False once closed."""
        return not self.stop.wait(seconds)

    def freeze(self, seconds: float = 30.0) -> None:
        """Answer nothing (a daemon stopped by SIGSTOP, a deadlock) until closed or ``seconds``."""
        self.stop.wait(seconds)

    def close(self) -> None:
        """Stop accepting, end every connection's script, close every connection."""
        self.stop.set()
        self.listener.close()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()

    def __enter__(self) -> ScriptedPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def no_threads_left(prefix: str, timeout: float = 5.0) -> Iterator[None]:
    """Fail (:class:`AssertionError`) when threads whose name starts with ``prefix`` that were
    started inside the block are still alive ``timeout`` seconds after it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + timeout
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.name.startswith(prefix)]
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"threads left behind: {left}")
        time.sleep(0.05)
