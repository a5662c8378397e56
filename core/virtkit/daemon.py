"""A plugin's helper process as a daemon: ``import virtkit.daemon`` (not imported by ``virtkit``).

A process-based backend keeps a process beside its domains that outlives the command that
started it (libvirt's split: driver / process / command / monitor): the qemu plugin's per-domain
QMP relay, the xen_libxl plugin's libxl engine. :func:`run_daemon` is such a process's ``main``,
after its arguments are read:

- the run directory's ``NAME.lock`` is taken for the daemon's whole life: a second start finds
  it held and returns 0 (one is alive);
- the process forks; the parent waits up to ``wait`` seconds for the child's word and returns 0
  on ``ready("ok")``, else prints the reason on stderr and returns 1, as QEMU's ``-daemonize``
  does;
- the child leaves the session, drops its working directory, points stdin and stdout at
  /dev/null and stderr at ``NAME.log`` (warnings logged there), writes ``NAME.pid``, and returns
  ``serve(ready)``; what ``serve`` raises is the parent's answer (if it had none yet) and is
  logged; ``NAME.pid`` is removed at the end if it is still this process's.

A client keeping a connection to such a daemon asks :func:`stale` before each request (the qemu
plugin's relay link and xen_libxl's engine client do).
This module is light to import (no logging, no pathlib): clients load it on their start-up path.
"""

from __future__ import annotations

import fcntl
import os
import select
import sys
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    import pathlib
    import socket

__all__ = ["run_daemon", "stale"]


def stale(sock: socket.socket) -> bool:
    """Whether a kept connection to a daemon must be made anew before sending: nothing arrives on
    an idle link but its end (a daemon that idled out or was restarted) or junk; a closed or
    broken socket is stale too."""
    try:
        readable, _w, _x = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def run_daemon(
    rundir: pathlib.Path,
    name: str,
    serve: Callable[[Callable[[str], None]], int],
    *,
    wait: float,
    what: str,
    log: logging.Logger,
) -> int:
    """Run ``serve`` as the daemon of ``rundir`` named ``name`` (see the module's text); ``what``
    names it in the parent's error line, ``log`` takes ``serve``'s failure."""
    lock = os.open(rundir / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # one is alive (it holds the lock for its whole life)
    rfd, wfd = os.pipe()
    if os.fork() > 0:
        os.close(wfd)
        os.close(lock)
        readable, _, _ = select.select([rfd], [], [], wait)
        answer = os.read(rfd, 4096).decode(errors="replace") if readable else "no answer in time"
        if answer == "ok":
            return 0
        print(f"{what}: {answer}", file=sys.stderr)
        return 1
    os.close(rfd)
    os.setsid()
    os.chdir("/")  # a daemon holds no directory busy
    null = os.open(os.devnull, os.O_RDWR)
    logfd = os.open(rundir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(logfd, 2)
    os.close(null)
    os.close(logfd)
    pidfile = rundir / f"{name}.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    import logging  # the daemon's side only: a client importing this module does not load it

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    def ready(answer: str) -> None:
        try:
            os.write(wfd, answer.encode())
            os.close(wfd)
        except OSError:
            pass  # said already, or the parent is gone

    try:
        return serve(ready)
    except Exception as exc:
        ready(f"{type(exc).__name__}: {exc}")
        log.exception("%s failed", name)
        return 1
    finally:
        try:
            if pidfile.read_text().strip() == str(os.getpid()):
                pidfile.unlink()
        except OSError:
            pass
