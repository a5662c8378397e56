"""The link's local child: ssh, or the ``+ext`` command, in a session of its own.

It is started with three pipes; its stderr is kept (the last few KiB) for the one thing the
link needs from it: when its stdout ends, the typed error its last words and exit status mean
(a refused key is ``PermissionDenied``, a far side without virtkit ``NoDriver``). Ending it
signals its whole session, so ssh's ProxyCommand children go too.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import time

from virtkit import ConnectionClosed, NoDriver, PermissionDenied, VirtError

from ._transport import Endpoint

__all__ = ["Child", "ms"]

log = logging.getLogger("virtkit.remote")

_STDERR_KEEP = 8192


def ms(seconds: float) -> int:
    """poll()'s timeout: milliseconds, rounded up so a wait never ends early and spins."""
    return max(0, int(seconds * 1000) + 1)


def _classify(rc: int | None, stderr: str, ep: Endpoint) -> VirtError:
    """The child ended before or while we spoke: the typed error its words and status mean."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    said = "; ".join(lines[-4:])[-600:] or "(nothing on stderr)"
    status = f"exit status {rc}" if rc is not None and rc >= 0 else f"signal {-rc}" if rc is not None else "no status"
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        return PermissionDenied(f"{ep.where}: authentication refused: {said}")
    if "Host key verification failed" in stderr or "HOST IDENTIFICATION HAS CHANGED" in stderr:
        return PermissionDenied(f"{ep.where}: the host key is not trusted: {said}")
    if rc == 127 or "command not found" in stderr:
        return NoDriver(
            f"{ep.where}: the far side cannot run {ep.command!r} ({said}): install virtkit there, "
            "or name it with ?command=/path/to/virtkit"
        )
    if "invalid choice: 'serve'" in stderr:
        return NoDriver(f"{ep.where}: {ep.command!r} on the far side has no 'serve' command (virtkit too old?)")
    return ConnectionClosed(f"{ep.where} ended ({status}): {said}")


class Child:
    """The running child of one link and what it said on stderr."""

    __slots__ = ("efd", "ep", "proc", "rfd", "stderr", "wfd")

    def __init__(self, ep: Endpoint) -> None:
        try:
            self.proc = subprocess.Popen(
                ep.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # our own signals; a terminal's Ctrl-C is ours to handle
            )
        except OSError as exc:
            raise NoDriver(f"{ep.where}: cannot run {ep.argv[0]!r}: {exc.strerror or exc}") from None
        self.ep = ep
        self.stderr = bytearray()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.wfd, self.rfd, self.efd = proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def keep_stderr(self, chunk: bytes) -> None:
        self.stderr += chunk
        del self.stderr[:-_STDERR_KEEP]
        for line in chunk.decode("utf-8", "replace").splitlines():
            if line.strip():
                log.debug("%s: %s", self.ep.where, line.rstrip())

    def ended(self) -> VirtError:
        """Why the child's stdout ended: wait briefly for its status and last words."""
        deadline = time.monotonic() + 1.0
        poller = select.poll()  # poll, not select: a process with many links has fds above 1024
        poller.register(self.efd, select.POLLIN)
        while time.monotonic() < deadline:
            if not poller.poll(ms(deadline - time.monotonic())):
                break
            try:
                chunk = os.read(self.efd, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.keep_stderr(chunk)
        try:
            rc: int | None = self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = None
        return _classify(rc, self.stderr.decode("utf-8", "replace"), self.ep)

    def hang_up(self, grace: float) -> None:
        """EOF on its stdin, then up to ``grace`` seconds for it to end on its own."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()  # EOF: the far serve closes its connection and ends, then ssh ends
        except OSError:
            pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        if self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGCONT):  # SIGCONT: a stopped child must see its SIGTERM
            try:
                os.killpg(self.proc.pid, sig)  # its own session: ssh's ProxyCommand children too
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()

    def close_pipes(self) -> None:
        """Its stdout and stderr, once nothing reads them any more."""
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
