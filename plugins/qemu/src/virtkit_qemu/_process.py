"""The process supervisor, as libvirt's qemu_process.c: start, stop, kill and reap a domain's
QEMU (and its relay), each within a deadline.

It reports what it saw through the callbacks it is given (``on_started``, ``on_ended``): it
knows neither the driver nor the event hub. A QEMU that exits cleanly removes its pidfile; one
whose pidfile names a dead process was killed or crashed. Whoever renames the run directory away
first reaps it, so exactly one thread or process reports an end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from virtkit import DriverError, InvalidOperation, ProtocolError
from virtkit import TimeoutError as VirtTimeout

from ._relay import spawn
from ._state import Defined, Running, StateDir

__all__ = ["Supervisor", "cpu_ns", "pid_alive"]

log = logging.getLogger("virtkit.qemu")

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str:
    with open(path) as fh:  # not pathlib: these reads are on the per-call path
        return fh.read()


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a daemonized QEMU may be reparented to a pid 1 that never reaps)."""
    try:
        stat = _read(f"/proc/{pid}/stat")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def cpu_ns(pid: int, tids: list[int]) -> int:
    """utime + stime of the vcpu threads (the whole process when QEMU names no threads)."""
    paths = [f"/proc/{pid}/task/{t}/stat" for t in tids] if tids else [f"/proc/{pid}/stat"]
    total = 0
    for p in paths:
        try:
            fields = _read(p).rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14, 15 of stat
    return total * _TICK_NS


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Supervisor:
    """The QEMU processes of one state directory, as one connection sees them."""

    __slots__ = ("_on_ended", "_on_started", "_pids", "finishing", "started_here", "state", "timeout")

    def __init__(
        self,
        state: StateDir,
        timeout: float,
        *,
        on_started: Callable[[Running], None],
        on_ended: Callable[[Running, str], None],
    ) -> None:
        self.state = state
        self.timeout = timeout
        self._on_started = on_started
        self._on_ended = on_ended
        self._pids: dict[str, int] = {}  # run directory -> QEMU's pid (info()'s fast path)
        self.started_here: set[int] = set()  # ids this connection started (it reports them)
        self.finishing: set[int] = set()  # ids this connection is ending (it reports them)

    # -- looking ----------------------------------------------------------------------------------

    def pid(self, run: Running) -> int | None:
        """QEMU's pid, read once per domain."""
        pid = self._pids.get(run.key)
        if pid is None:
            pid = run.pid()
            if pid is not None:
                self._pids[run.key] = pid
        return pid

    def alive(self, dom_id: int) -> Running | None:
        """The running record of ``dom_id``, reaping it (None) when its QEMU is gone."""
        try:
            run = self.state.running(dom_id)
        except FileNotFoundError:
            return None
        if not (run.rundir / "started").exists():
            # Starting right now, or a start that died half-way (then reaped after the timeout).
            try:
                if time.time() - run.rundir.stat().st_mtime > self.timeout + 5:
                    self.reap(run, "crashed")
            except FileNotFoundError:
                pass
            return None
        pid = run.pid()
        if pid is None:
            self.reap(run, "shutdown")  # QEMU removes its pidfile when it exits cleanly
            return None
        if not pid_alive(pid):
            self.reap(run, "crashed")  # killed: the pidfile stayed behind
            return None
        return run

    def running(self) -> list[Running]:
        """Every domain whose QEMU runs; a corrupted entry hides only itself (a warning)."""
        out = []
        for i in self.state.running_ids():
            try:
                run = self.alive(i)
            except ProtocolError as exc:
                log.warning("%s", exc)
                continue
            if run is not None:
                out.append(run)
        return out

    # -- starting ---------------------------------------------------------------------------------

    def start(self, dom: Defined, persistent: bool, argv_for: Callable[[Running], list[str]]) -> Running:
        """Start QEMU (``argv_for`` its run directory) and its relay; ``on_started`` once up."""
        cfg = dom.config
        with self.state.locked():
            for other in self.running():
                if other.config.name == cfg.name or other.uuid == dom.uuid:
                    raise InvalidOperation(f"domain {cfg.name!r} is already running (id {other.id})")
            dom_id = self.state.next_id()
            self.started_here.add(dom_id)
            run = self.state.make_rundir(dom_id, dom, persistent)
        try:
            # With -daemonize the parent exits once QEMU is initialised (sockets listening).
            proc = subprocess.run(argv_for(run), capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            self._kill_starting(run)
            raise VirtTimeout(f"QEMU for {cfg.name!r} did not start within {self.timeout:g} s") from None
        except BaseException:
            self._kill_starting(run)
            raise
        (run.rundir / "qemu.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            self._kill_starting(run)
            raise DriverError(f"QEMU for {cfg.name!r} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        # The relay: the domain's watcher (events, power-off handling), for as long as QEMU runs.
        why = self.spawn_relay(run)
        if why is not None:
            log.warning("domain %r runs without its relay (no events until one starts): %s", cfg.name, why)
        (run.rundir / "started").touch()
        self._on_started(run)
        return run

    def spawn_relay(self, run: Running) -> str | None:
        """Start the domain's relay; None once it serves, else why not."""
        return spawn(sys.executable, run.rundir, self.timeout)

    def _kill_starting(self, run: Running) -> None:
        pid = run.pid()
        if pid is not None and pid_alive(pid):
            _kill(pid)
        self.state.remove_rundir(run.rundir)

    # -- ending -----------------------------------------------------------------------------------

    def finish(self, run: Running, reason: str, ask_quit: Callable[[], object], until: float) -> None:
        """Ask QEMU to quit (``ask_quit``), wait until ``until``, SIGKILL it then, and reap it with ``reason``."""
        pid = run.pid()
        self.finishing.add(run.id)
        with contextlib.suppress(OSError):
            (run.rundir / "ending").write_text(f"{reason}\n")  # for the relay's last word, even after a SIGKILL
        try:
            with contextlib.suppress(ProtocolError, DriverError, InvalidOperation, VirtTimeout):
                ask_quit()  # it may be gone already, or hung: the kill below settles it
            if pid is not None:
                self._wait_or_kill(pid, until)
        finally:
            self.finishing.discard(run.id)
        self.reap(run, reason)

    def _wait_or_kill(self, pid: int, until: float) -> None:
        # what is left of the operation's deadline (a quit that timed out used it up)
        deadline = max(until, time.monotonic() + 0.2)
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_alive(pid):
            log.warning("QEMU pid %d ignored quit for %g s: SIGKILL", pid, self.timeout)
            _kill(pid)
            # SIGKILL is delivered asynchronously: return only once the process is gone.
            deadline = time.monotonic() + 10
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)

    def wait_exit(self, run: Running, seconds: float) -> None:
        """Let a QEMU that closed its monitor finish exiting (up to ``seconds``) before judging."""
        pid = run.pid()
        deadline = time.monotonic() + seconds
        while pid is not None and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def reap(self, run: Running, reason: str) -> None:
        """Forget a QEMU that is gone (``reason`` 'crashed' when it died without us) and report it.

        Renaming the run directory away claims it atomically, so when several threads or
        processes notice the same death, exactly one reports it.
        """
        grave = run.rundir.with_name(f".gone-{run.rundir.name}-{os.getpid()}-{threading.get_ident()}")
        try:
            os.rename(run.rundir, grave)
        except FileNotFoundError:
            return  # someone else reaped it
        self.state.remove_rundir(grave)
        self.state.forget(run.rundir)
        self._pids.pop(run.key, None)
        if reason == "crashed":
            log.warning("QEMU of domain %r (id %s) died on its own: reported crashed", run.config.name, run.id)
        self._on_ended(run, reason)
