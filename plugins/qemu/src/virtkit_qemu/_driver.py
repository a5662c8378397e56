"""The driver connection: a domain is a daemonized QEMU process, driven through QMP.

QEMU runs with ``-no-shutdown``: when the guest powers off, QEMU stays (stopped, status
"shutdown") until the domain's relay (``_relay``) -- or, without one, the first virtkit
connection that looks -- resets it (a pending cooperative reboot) or quits it. So a QEMU process
that died any other way (``kill -9``, a QEMU crash) is told apart: its run directory is left
behind with a dead pid, and the domain is reported crashed (a persistent one: shut off with
reason "crashed").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import pathlib
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid as _uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from virtkit import (
    ConnectionClosed,
    DomainConfig,
    DomainEvent,
    DomainEventType,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    DriverError,
    InvalidArgument,
    InvalidOperation,
    NodeInfo,
    NoSuchDomain,
    PermissionDenied,
    ProtocolError,
    VcpuFlags,
    Version,
    check_domain_config,
)
from virtkit import TimeoutError as VirtTimeout

from ._qmp import CommandLink, Commands, Loop, RelayMissing
from ._relay import (
    MONITOR,
    RELAY,
    cancel_reboot,
    claim_reboot,
    reboot_deadline,
    reboot_pending,
    release_claim,
    request_reboot,
    spawn,
)
from ._replies import balloon_kib, status_of, vcpu_threads
from ._state import Record, StateDir

__all__ = ["Driver", "find_qemu"]

log = logging.getLogger("virtkit.qemu")

Callback = Callable[[DomainEvent], None]
_F = TypeVar("_F", bound=Callable[..., Any])


def _bounded(method: _F) -> _F:
    """Every QMP exchange of the operation shares one deadline, the connection's timeout from
    the call (a quit that times out leaves the rest of it for the SIGKILL), so an operation of
    several round trips still ends within it."""

    @functools.wraps(method)
    def bounded(self: Driver, *args: Any, **kwargs: Any) -> Any:
        local = self._local
        if getattr(local, "until", None) is not None:
            return method(self, *args, **kwargs)  # an operation calling another: the outer bound
        local.until = time.monotonic() + self.timeout
        try:
            return method(self, *args, **kwargs)
        finally:
            local.until = None

    return bounded  # type: ignore[return-value]


_STATUS = {
    "running": DomainState.RUNNING,
    "paused": DomainState.PAUSED,
    "suspended": DomainState.PMSUSPENDED,
    "shutdown": DomainState.SHUTDOWN,
    "guest-panicked": DomainState.CRASHED,
    "internal-error": DomainState.CRASHED,
    "io-error": DomainState.PAUSED,
    "prelaunch": DomainState.PAUSED,
    "debug": DomainState.PAUSED,
}
_ACTIVE = frozenset({DomainState.RUNNING, DomainState.PAUSED})
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_MAXIMUM = int(VcpuFlags.MAXIMUM)
_FORMAT = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # qcow2, raw, vmdk, ...: never options
_INFO_QUERIES: Commands = (("query-status", None), ("query-balloon", None), ("query-cpus-fast", None))
#: Seconds between two power-button presses while a shutdown or reboot request is pending.
PRESS_INTERVAL = 2.0
#: Seconds between two looks for domains other connections started, while this one listens.
WATCH_INTERVAL = 0.5


def find_qemu(arch: str | None = None) -> str | None:
    """The qemu-system binary for ``arch`` (default: the host's), else None."""
    arch = arch or {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())
    return shutil.which(f"qemu-system-{arch}")


def any_qemu() -> list[str]:
    """Every qemu-system-* on PATH (the plugin declines when there is none)."""
    found: list[str] = []
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        try:
            found += [str(p) for p in pathlib.Path(d).glob("qemu-system-*") if os.access(p, os.X_OK)]
        except OSError:
            continue
    return found


def _check_flags(flags: int, allowed: int = 0) -> None:
    if flags & ~allowed:
        raise InvalidArgument(f"unsupported flags {flags:#x}")


def _read(path: str) -> str:
    with open(path) as fh:  # not pathlib: these reads are on the per-call path
        return fh.read()


def _pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a daemonized QEMU may be reparented to a pid 1 that never reaps)."""
    try:
        stat = _read(f"/proc/{pid}/stat")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _read_pid(rundir: pathlib.Path) -> int | None:
    try:
        return int(_read(f"{rundir}/qemu.pid").strip())
    except (OSError, ValueError):
        return None


def _cpu_ns(pid: int, tids: list[int]) -> int:
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


def kvm_usable(qemu: str, timeout: float = 10.0) -> bool:
    """Probe KVM for real (an openable /dev/kvm is not enough), bounded by ``timeout``."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    cmds = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'
    argv = [qemu, "-accel", "kvm", "-machine", "none", "-nodefaults", "-display", "none", "-qmp", "stdio"]
    try:
        proc = subprocess.run(argv, input=cmds, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _arg(value: object, what: str) -> str:
    """A value that goes onto QEMU's command line: a str without NUL (exec would refuse it)."""
    if not isinstance(value, str) or "\0" in value:
        raise InvalidArgument(f"{what} must be a string without NUL, got {str(value)[:60]!r}")
    return value


def _check_qemu_values(config: DomainConfig) -> None:
    for what in ("kernel", "initrd", "cmdline"):
        value = getattr(config, what)
        if value is not None:
            _arg(value, what)
    for dev in config.devices:
        if not isinstance(dev, Mapping):
            raise InvalidArgument(f"a device must be a mapping, got {str(dev)[:60]!r}")
        if dev.get("type") == "disk":
            _arg(dev.get("path"), "a disk's 'path'")
            if not _FORMAT.fullmatch(str(_arg(dev.get("format", "raw"), "a disk's 'format'"))):
                raise InvalidArgument(f"a disk's 'format' must be a QEMU format name, got {dev.get('format')!r}")
    if not isinstance(config.extra, Mapping):
        raise InvalidArgument("extra must be a mapping")
    _arg(config.extra.get("machine", "pc"), "extra['machine']")
    args = config.extra.get("qemu_args", ())
    if not isinstance(args, list | tuple):
        raise InvalidArgument(f"extra['qemu_args'] must be a list of strings, got {type(args).__name__}")
    for a in args:
        _arg(a, "each of extra['qemu_args']")


def check_config(config: object) -> DomainConfig:
    config = check_domain_config(config)  # the core's rules: name, memory, vcpus
    _check_qemu_values(config)
    if config.memory < 1024:
        raise InvalidArgument(f"memory {config.memory} KiB: QEMU needs at least 1 MiB")
    max_mem = config.max_memory or config.memory
    if max_mem < config.memory:
        raise InvalidArgument(f"memory {config.memory} KiB is above max_memory {max_mem} KiB")
    max_vcpus = config.max_vcpus or config.vcpus
    if max_vcpus < config.vcpus:
        raise InvalidArgument(f"vcpus {config.vcpus} is above max_vcpus {max_vcpus}")
    disks = [d for d in config.devices if d.get("type") == "disk"]
    if not config.kernel and not disks:
        raise InvalidArgument("a QEMU domain needs a kernel or a disk device ({'type': 'disk', 'path': ...})")
    for path in [config.kernel, config.initrd, *(d.get("path") for d in disks)]:
        if path is not None and not os.path.isfile(str(path)):
            raise InvalidArgument(f"no such file: {path}")
    accel = config.extra.get("accel", "auto")
    if accel not in ("auto", "tcg", "kvm"):
        raise InvalidArgument(f"extra['accel'] must be 'auto', 'tcg' or 'kvm', got {accel!r}")
    return dataclasses.replace(
        config, uuid=config.uuid or _uuid.uuid4(), max_memory=max_mem, max_vcpus=max_vcpus, os_type="hvm"
    )


class Driver:
    """A ``qemu:///session`` or ``qemu:///system`` driver connection."""

    def __init__(self, root: pathlib.Path, uri: str, qemu: str, timeout: float = 30.0) -> None:
        self.uri = uri
        self.qemu = qemu
        self.timeout = timeout
        self.state = StateDir(root)  # created by the first mutation that needs it: reads create nothing
        self._local = threading.local()  # .until: the deadline of this thread's operation
        self._loop = Loop(timeout)
        self._lock = threading.Lock()
        self._closed = False
        self._kvm: bool | None = None
        self._callbacks: dict[int, Callback] = {}
        self._next_token = 1
        self._listening: set[int] = set()  # ids of the domains whose relay sends us events
        self._links: dict[str, CommandLink] = {}  # run directory -> command link to its relay
        self._pids: dict[str, int] = {}  # run directory -> QEMU's pid, for info()'s fast path
        self._reported: set[int] = set()  # ids whose end this connection reported (once each)
        self._starting_here: set[int] = set()  # ids this connection started (it reports them)
        self._listen_lock = threading.Lock()
        self._finishing: set[int] = set()  # ids this connection is quitting (it reports them)
        self._events: queue.SimpleQueue[DomainEvent | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None
        self._version: Version | None = None

    def __repr__(self) -> str:
        return f"<virtkit_qemu.Driver {self.uri} {self.state.root}>"

    def close(self) -> None:
        # Closing a connection never stops domains: they outlive it, as libvirt's do.
        if self._closed:
            return
        self._closed = True
        for link in list(self._links.values()):
            link.close()
        self._loop.close()
        if self._dispatcher is not None:
            self._events.put(None)
            self._dispatcher.join(5)

    # -- internals -------------------------------------------------------------------------------

    def _open(self) -> None:
        if self._closed:
            raise ConnectionClosed("the qemu driver connection is closed")

    def _ensure(self) -> None:
        """Create the state directory (a mutation that needs it is about to write there)."""
        try:
            self.state.ensure()
        except PermissionError as exc:
            raise PermissionDenied(f"{self.uri}: cannot use the state directory {self.state.root}: {exc}") from exc

    def _emit(self, kind: DomainEventType, ref: DomainRef, detail: str) -> None:
        if self._callbacks:
            self._events.put(DomainEvent(kind, ref, detail, time.time()))

    def _dispatch(self) -> None:
        # One thread delivers events, outside every lock: a callback may call the driver back.
        while (ev := self._events.get()) is not None:
            for cb in list(self._callbacks.values()):
                try:
                    cb(ev)
                except Exception:
                    log.exception("domain event callback failed")

    def _until(self) -> float:
        until: float | None = getattr(self._local, "until", None)
        return time.monotonic() + self.timeout if until is None else until

    def _qmp(self, rec: Record, cmd: str, args: Mapping[str, object] | None = None) -> Any:
        return self._commands(rec, ((cmd, args),))[0]

    def _link(self, rundir: str) -> CommandLink:
        link = self._links.get(rundir)
        if link is None:
            link = self._links.setdefault(rundir, CommandLink(os.path.join(rundir, RELAY), self.timeout))
        return link

    def _commands(self, rec: Record, cmds: Commands) -> list[Any]:
        """Through this connection's link to the domain's relay; straight to QEMU without one."""
        self._open()
        assert rec.rundir is not None
        rundir = str(rec.rundir)
        until = self._until()
        try:
            return self._link(rundir).execute_many(cmds, until)
        except RelayMissing:
            return self._loop.run(self._loop.execute_direct(os.path.join(rundir, "qmp.sock"), cmds, until), until)

    def _reap(self, rec: Record, reason: str) -> None:
        """Forget a QEMU that is gone; ``reason`` 'crashed' when it died without us.

        Renaming the run directory away claims it atomically, so when several threads or
        processes notice the same death, exactly one reports it.
        """
        assert rec.rundir is not None
        ref = DomainRef(rec.config.name, rec.uuid, rec.id)
        grave = rec.rundir.with_name(f".gone-{rec.rundir.name}-{os.getpid()}-{threading.get_ident()}")
        try:
            os.rename(rec.rundir, grave)
        except FileNotFoundError:
            return  # someone else reaped it
        self.state.remove_rundir(grave)
        self.state.forget(rec.rundir)
        self._listening.discard(rec.id or -1)
        self._loop.forget(str(rec.rundir))
        link = self._links.pop(str(rec.rundir), None)
        if link is not None:
            link.close()
        self._pids.pop(str(rec.rundir), None)
        if reason == "crashed":
            log.warning("QEMU of domain %r (id %s) died on its own: reported crashed", rec.config.name, rec.id)
        self._report_end(ref, reason)

    def _report_end(self, ref: DomainRef, reason: str) -> None:
        """crashed (if so) and stopped, once per domain on this connection: from the relay's
        last word to every listener, or from reaping the run directory, whichever comes first."""
        with self._lock:
            if ref.id in self._reported:
                return
            self._reported.add(ref.id or -1)
        if reason == "crashed":
            self._emit(DomainEventType.CRASHED, ref, "QEMU process died")
        self._emit(DomainEventType.STOPPED, ref, reason)

    def _live(self, dom_id: int) -> Record | None:
        """The running record of ``dom_id``, reaping it (None) when its QEMU is gone."""
        try:
            rec = self.state.running(dom_id)
        except FileNotFoundError:
            return None
        assert rec.rundir is not None
        if not (rec.rundir / "started").exists():
            # Starting right now, or a start that died half-way (then reaped after the timeout).
            try:
                if time.time() - rec.rundir.stat().st_mtime > self.timeout + 5:
                    self._reap(rec, "crashed")
            except FileNotFoundError:
                pass
            return None
        pid = _read_pid(rec.rundir)
        if pid is None:
            self._reap(rec, "shutdown")  # QEMU removes its pidfile when it exits cleanly
            return None
        if not _pid_alive(pid):
            self._reap(rec, "crashed")  # killed: the pidfile stayed behind
            return None
        return rec

    def _status(self, rec: Record) -> str:
        """query-status; a guest that powered off is finished here (quit: shut off)."""
        try:
            status = status_of(self._qmp(rec, "query-status"))
        except ProtocolError:
            if self._live(rec.id or -1) is None:
                return "gone"
            raise
        if status == "shutdown":
            return self._powered_off(rec)
        return status

    def _powered_off(self, rec: Record) -> str:
        """The guest powered off and its relay has not acted (yet, or it has none): do it here.

        A pending cooperative reboot -> system_reset + cont ("running"); otherwise quit ("gone").
        """
        assert rec.rundir is not None
        claim = claim_reboot(rec.rundir) if rec.config.on_reboot != "destroy" else False
        if claim is True:
            return "running"  # the relay (or another connection) is resetting it right now
        if claim:
            assert isinstance(claim, pathlib.Path)
            try:
                self._qmp(rec, "system_reset")
                self._qmp(rec, "cont")
            finally:
                release_claim(claim)
            return "running"
        # No claim: either a shutdown, or a reset that completed between our two looks.
        try:
            status = status_of(self._qmp(rec, "query-status"))
        except ProtocolError:
            status = "shutdown"
        if status != "shutdown":
            return status
        cancel_reboot(rec.rundir)
        self._finish(rec, "shutdown")
        return "gone"

    def _finish(self, rec: Record, reason: str) -> None:
        """quit, wait, SIGKILL after the timeout, then forget the run directory."""
        assert rec.rundir is not None
        pid = _read_pid(rec.rundir)
        self._finishing.add(rec.id or -1)
        with contextlib.suppress(OSError):
            (rec.rundir / "ending").write_text(f"{reason}\n")  # for the relay's last word, even after a SIGKILL
        try:
            self._finish_quit(rec, pid)
        finally:
            self._finishing.discard(rec.id or -1)
        self._reap(rec, reason)

    def _finish_quit(self, rec: Record, pid: int | None) -> None:
        try:
            self._qmp(rec, "quit")
        except (ProtocolError, DriverError, InvalidOperation, VirtTimeout):
            pass  # it may be gone already, or hung: the kill below settles it
        if pid is not None:
            # what is left of the operation's deadline (a quit that timed out used it up)
            deadline = max(self._until(), time.monotonic() + 0.2)
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _pid_alive(pid):
                log.warning("QEMU pid %d ignored quit for %g s: SIGKILL", pid, self.timeout)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                # SIGKILL is delivered asynchronously: return only once the process is gone.
                deadline = time.monotonic() + 10
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.01)

    def _running_records(self) -> list[Record]:
        out = []
        for i in self.state.running_ids():
            try:
                rec = self._live(i)
            except ProtocolError as exc:
                log.warning("%s", exc)  # a corrupted entry hides only itself
                continue
            if rec is not None:
                out.append(rec)
        return out

    def _find(self, ref: DomainRef) -> Record:
        """A running record, or the defined one; NoSuchDomain otherwise."""
        self._open()
        try:
            uuid, name, dom_id = ref.uuid, ref.name, ref.id
        except AttributeError:
            raise InvalidArgument(f"expected a DomainRef, got {type(ref).__name__}") from None
        if dom_id is not None:
            rec = self._live(dom_id)
            if rec is not None and rec.uuid == uuid:
                return rec
        for rec in self._running_records():
            if rec.uuid == uuid:
                return rec
        try:
            rec = self.state.defined_record(name)
            if rec.uuid == uuid:
                return rec
        except (FileNotFoundError, InvalidArgument):
            pass
        raise NoSuchDomain(f"no domain {name!r} (uuid {uuid})")

    def _active(self, ref: DomainRef, op: str) -> Record:
        rec = self._find(ref)
        if rec.id is None:
            raise InvalidOperation(f"cannot {op} domain {rec.config.name!r}: it is not running")
        return rec

    def _ref(self, rec: Record) -> DomainRef:
        return DomainRef(rec.config.name, rec.uuid, rec.id)

    def _accel(self, cfg: DomainConfig) -> str:
        want = cfg.extra.get("accel", "auto")
        if want == "tcg":
            return "tcg"
        if self._kvm is None:
            self._kvm = kvm_usable(self.qemu, min(self.timeout, 10.0))
        if want == "kvm" and not self._kvm:
            raise InvalidArgument("extra['accel'] is 'kvm' but KVM does not work on this host")
        return "kvm" if self._kvm else "tcg"

    def _argv(self, cfg: DomainConfig, rundir: pathlib.Path) -> list[str]:
        assert cfg.max_memory is not None and cfg.uuid is not None
        mib = -(-cfg.max_memory // 1024)
        argv = [
            self.qemu,
            "-name", cfg.name,
            "-uuid", str(cfg.uuid),
            "-machine", str(cfg.extra.get("machine", "pc")),
            "-accel", self._accel(cfg),
            "-m", f"{mib}M",
            "-smp", f"{cfg.vcpus},maxcpus={cfg.max_vcpus or cfg.vcpus}",
            "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
            "-no-shutdown",
            "-serial", f"file:{rundir / 'console.log'}",
            "-qmp", f"unix:{rundir / 'qmp.sock'},server=on,wait=off",
            "-qmp", f"unix:{rundir / MONITOR},server=on,wait=off",
            "-pidfile", str(rundir / "qemu.pid"),
            "-device", "virtio-balloon-pci,id=balloon0",
            "-daemonize",
        ]  # fmt: skip
        if cfg.on_reboot == "destroy":
            argv.append("-no-reboot")
        if cfg.kernel:
            argv += ["-kernel", cfg.kernel]
            if cfg.initrd:
                argv += ["-initrd", cfg.initrd]
            if cfg.cmdline:
                argv += ["-append", cfg.cmdline]
        for i, dev in enumerate(d for d in cfg.devices if d.get("type") == "disk"):
            fmt = dev.get("format", "raw")
            ro = ",readonly=on" if dev.get("readonly") else ""
            path = str(dev["path"]).replace(",", ",,")  # QEMU's escape: a comma in a value is doubled
            argv += ["-drive", f"file={path},format={fmt},if=virtio,index={i}{ro}"]
        argv += [str(a) for a in cfg.extra.get("qemu_args", ())]
        return argv

    def _start(self, cfg: DomainConfig, persistent: bool) -> DomainRef:
        assert cfg.uuid is not None
        with self.state.locked():
            for rec in self._running_records():
                if rec.config.name == cfg.name or rec.uuid == cfg.uuid:
                    raise InvalidOperation(f"domain {cfg.name!r} is already running (id {rec.id})")
            dom_id = self.state.next_id()
            self._starting_here.add(dom_id)
            rundir = self.state.make_rundir(dom_id, cfg, persistent)
        try:
            argv = self._argv(cfg, rundir)
            # With -daemonize the parent exits once QEMU is initialised (sockets listening).
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            self._kill_starting(rundir)
            raise VirtTimeout(f"QEMU for {cfg.name!r} did not start within {self.timeout:g} s") from None
        except BaseException:
            self._kill_starting(rundir)
            raise
        (rundir / "qemu.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            self._kill_starting(rundir)
            raise DriverError(f"QEMU for {cfg.name!r} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        # The relay: the domain's watcher (events, power-off handling), for as long as QEMU runs.
        why = spawn(sys.executable, rundir, self.timeout)
        if why is not None:
            log.warning("domain %r runs without its relay (no events until one starts): %s", cfg.name, why)
        (rundir / "started").touch()
        rec = Record(cfg, cfg.uuid, persistent, dom_id, rundir)
        if cfg.memory < (cfg.max_memory or cfg.memory):
            self._qmp(rec, "balloon", {"value": cfg.memory * 1024})
        ref = self._ref(rec)
        self._emit(DomainEventType.STARTED, ref, "booted")
        if self._callbacks:
            self._listen(rec)
        return ref

    def _kill_starting(self, rundir: pathlib.Path) -> None:
        pid = _read_pid(rundir)
        if pid is not None and _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.state.remove_rundir(rundir)

    def _listen(self, rec: Record) -> None:
        """Subscribe to the domain's relay (starting it if it is missing); returns once subscribed.

        One at a time (the watcher, a registration, a start may race): never subscribed twice.
        """
        with self._listen_lock:
            self._subscribe(rec)

    def _subscribe(self, rec: Record) -> None:
        assert rec.id is not None and rec.rundir is not None
        if rec.id in self._listening:
            return
        ref = self._ref(rec)

        def on_event(kind: str, detail: str) -> None:  # on the loop thread
            if kind in ("gone", "lost"):
                # QEMU went away (the relay says how), or the relay did (then find out here).
                self._listening.discard(rec.id or -1)
                if kind == "gone" and (rec.id or -1) not in self._finishing:  # else: ours reports it
                    self._report_end(ref, detail or "shutdown")
                threading.Thread(target=self._settle, args=(rec, kind), daemon=True).start()
                return
            try:
                self._emit(DomainEventType(kind), ref, detail)
            except ValueError:
                log.debug("unknown relay event %r", kind)

        rundir = str(rec.rundir)
        why: str | None = None
        try:
            until = self._until()
            ok = self._loop.run(self._loop.listen(rundir, on_event, until), until)
            if not ok:
                why = spawn(sys.executable, rec.rundir, self.timeout)
                until = self._until()
                ok = why is None and self._loop.run(self._loop.listen(rundir, on_event, until), until)
        except (ProtocolError, VirtTimeout) as exc:
            why, ok = str(exc), False
        if ok:
            self._listening.add(rec.id)
        elif self._live(rec.id) is not None:
            log.warning("no events from domain %r: its relay is missing and cannot start: %s", rec.config.name, why)

    def _watch(self, known: set[int]) -> None:
        """Listen to every domain that comes up after the first registration, and report it
        started (a domain this connection starts is listened to and reported by _start)."""
        while not self._closed:
            time.sleep(WATCH_INTERVAL)
            if self._closed or not self._callbacks:
                continue
            try:
                self._watch_once(known)
            except Exception:
                log.debug("watching the state directory failed; trying again", exc_info=True)

    def _watch_once(self, known: set[int]) -> None:
        for dom_id in self.state.running_ids():
            if dom_id in known or dom_id in self._starting_here or dom_id in self._listening:
                continue
            try:
                rec = self._live(dom_id)
            except ProtocolError:
                known.add(dom_id)  # corrupted: the listings warn about it
                continue
            if rec is None:
                continue  # still starting: next round
            known.add(dom_id)
            self._listen(rec)
            self._emit(DomainEventType.STARTED, self._ref(rec), "booted")

    def _settle(self, rec: Record, why: str) -> None:
        """After the relay said QEMU is gone ("gone"), or died itself ("lost")."""
        if self._closed or (rec.id or -1) in self._finishing:
            return  # our own destroy or quit reports it, with its reason
        assert rec.rundir is not None
        try:
            if why == "gone":
                # QEMU closed its monitor: let the process finish exiting before judging how.
                pid = _read_pid(rec.rundir)
                deadline = time.monotonic() + min(self.timeout, 10.0)
                while pid is not None and _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
            if self._live(rec.id or -1) is None:
                return
            if why == "lost" and self._callbacks:
                self._listen(rec)  # QEMU runs on: start a new relay and listen again
            self._status(rec)
        except Exception:
            log.debug("settling %r failed", rec.config.name, exc_info=True)

    # -- connection ------------------------------------------------------------------------------

    def connect_get_type(self, *, flags: int = 0) -> str:
        _check_flags(flags)
        return "QEMU"

    def connect_get_version(self, *, flags: int = 0) -> Version:
        _check_flags(flags)
        self._open()
        if self._version is None:
            try:
                out = subprocess.run(
                    [self.qemu, "--version"], capture_output=True, text=True, timeout=self.timeout, check=False
                ).stdout
            except subprocess.TimeoutExpired:
                raise VirtTimeout(f"{self.qemu} --version did not answer within {self.timeout:g} s") from None
            except OSError as exc:
                raise DriverError(f"cannot run {self.qemu} --version: {exc}") from None
            words = out.split()
            try:
                self._version = Version.parse(words[words.index("version") + 1])
            except (ValueError, IndexError):
                raise ProtocolError(f"cannot read the version from {self.qemu} --version: {out!r}") from None
        return self._version

    def connect_get_hostname(self, *, flags: int = 0) -> str:
        _check_flags(flags)
        return socket.gethostname()

    def node_get_info(self, *, flags: int = 0) -> NodeInfo:
        _check_flags(flags)
        mem = free = 0
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "MemTotal":
                mem = int(value.split()[0])
            elif key == "MemAvailable":
                free = int(value.split()[0])
        mhz = 0
        try:
            for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("cpu MHz"):
                    mhz = int(float(line.split(":")[1]))
                    break
        except (OSError, ValueError):
            pass
        cpus = os.cpu_count() or 1
        return NodeInfo(platform.machine(), mem, cpus, mhz, 1, 1, cpus, 1, free)

    @_bounded
    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        _check_flags(flags)
        self._open()
        ids = []
        for rec in self._running_records():
            try:
                if self._status(rec) != "gone":
                    ids.append(rec.id or 0)
            except ProtocolError as exc:
                log.warning("domain %r: %s", rec.config.name, exc)
        return ids

    @_bounded
    def connect_num_of_domains(self, *, flags: int = 0) -> int:
        return len(self.connect_list_domains(flags=flags))

    @_bounded
    def connect_list_defined_domains(self, *, flags: int = 0) -> list[str]:
        _check_flags(flags)
        self._open()
        running = {rec.config.name for rec in self._running_records()}
        return [n for n in self.state.defined_names() if n not in running]

    @_bounded
    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002 - the catalogue's name
        _check_flags(flags)
        self._open()
        rec = self._live(id) if isinstance(id, int) and id > 0 else None
        if rec is None or self._status(rec) == "gone":
            raise NoSuchDomain(f"no running domain with id {id}")
        return self._ref(rec)

    @_bounded
    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        self._open()
        for rec in self._running_records():
            if rec.config.name == name and self._status(rec) != "gone":
                return self._ref(rec)
        try:
            return self._ref(self.state.defined_record(name))
        except FileNotFoundError:
            raise NoSuchDomain(f"no domain named {name!r}") from None

    @_bounded
    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        self._open()
        for rec in self._running_records():
            if rec.uuid == uuid and self._status(rec) != "gone":
                return self._ref(rec)
        for name in self.state.defined_names():
            try:
                rec = self.state.defined_record(name)
            except FileNotFoundError:
                continue  # undefined meanwhile
            except ProtocolError as exc:
                log.warning("%s", exc)
                continue
            if rec.uuid == uuid:
                return self._ref(rec)
        raise NoSuchDomain(f"no domain with uuid {uuid}")

    # -- domain queries --------------------------------------------------------------------------

    def _info_fast(self, dom: DomainRef) -> DomainInfo | None:
        """info() of a running domain in one round trip, or None (then the full path decides).

        A relay that answers proves QEMU alive (it exits with QEMU's monitor), so none of the
        liveness checks of the full path are needed: one stat of domain.json, one request.
        """
        dom_id = getattr(dom, "id", None)
        if dom_id is None:
            return None
        try:
            rec = self.state.running(dom_id)
        except (FileNotFoundError, ProtocolError):
            return None
        if rec.uuid != getattr(dom, "uuid", None) or rec.rundir is None:
            return None
        rundir = str(rec.rundir)
        try:
            st, balloon, cpus = self._link(rundir).execute_many(_INFO_QUERIES, self._until())
            state = _STATUS.get(status_of(st))
            memory = balloon_kib(balloon)
            vcpus, tids = vcpu_threads(cpus)
        except (RelayMissing, ProtocolError):
            return None
        pid = self._pids.get(rundir) or _read_pid(rec.rundir)
        if state not in _ACTIVE or pid is None:
            return None  # powered off (or odd): the full path acts on it
        self._pids[rundir] = pid
        assert rec.config.max_memory is not None
        return DomainInfo(state, rec.config.max_memory, memory, vcpus, _cpu_ns(pid, tids))

    @_bounded
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        _check_flags(flags)
        self._open()
        fast = self._info_fast(dom)
        if fast is not None:
            return fast
        rec = self._find(dom)
        cfg = rec.config
        assert cfg.max_memory is not None
        if rec.id is not None:
            assert rec.rundir is not None
            try:
                # The three queries in one request on this connection's link to the domain's relay
                # (sent to QEMU at once), or on one fresh QMP connection when it has no relay.
                st, balloon, cpus = self._commands(rec, _INFO_QUERIES)
                status = status_of(st)
                memory = balloon_kib(balloon)
                vcpus, tids = vcpu_threads(cpus)
            except (ProtocolError, DriverError):
                if self._status(rec) != "gone":  # not gone meanwhile: a real failure
                    raise
                status = "gone"
            if status == "shutdown":
                status = self._status(rec)
            if status != "gone":
                pid = _read_pid(rec.rundir) or 0
                return DomainInfo(
                    _STATUS.get(status, DomainState.NOSTATE), cfg.max_memory, memory, vcpus, _cpu_ns(pid, tids)
                )
            rec = self._find(DomainRef(cfg.name, rec.uuid, None))  # it just shut off
        return DomainInfo(DomainState.SHUTOFF, cfg.max_memory, cfg.memory, cfg.vcpus, 0)

    @_bounded
    def domain_get_state(self, dom: DomainRef, *, flags: int = 0) -> DomainStateInfo:
        _check_flags(flags)
        rec = self._find(dom)
        if rec.id is not None:
            status = self._status(rec)
            if status != "gone":
                reason = {"running": "booted", "paused": "user"}.get(status, status)
                return DomainStateInfo(_STATUS.get(status, DomainState.NOSTATE), reason)
            self._find(DomainRef(rec.config.name, rec.uuid, None))
        return DomainStateInfo(DomainState.SHUTOFF, "shutdown")

    @_bounded
    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        _check_flags(flags)
        cfg = self._find(dom).config
        assert cfg.max_memory is not None
        return cfg.max_memory

    @_bounded
    def domain_get_os_type(self, dom: DomainRef, *, flags: int = 0) -> str:
        _check_flags(flags)
        self._find(dom)
        return "hvm"

    @_bounded
    def domain_get_vcpus(self, dom: DomainRef, *, flags: int = 0) -> int:
        _check_flags(flags, _MAXIMUM)
        rec = self._find(dom)
        if flags & _MAXIMUM:
            return rec.config.max_vcpus or rec.config.vcpus
        if rec.id is not None:
            return vcpu_threads(self._qmp(rec, "query-cpus-fast"))[0]
        return rec.config.vcpus

    @_bounded
    def domain_get_config(self, dom: DomainRef, *, flags: int = 0) -> DomainConfig:
        _check_flags(flags)
        return self._find(dom).config

    # -- lifecycle -------------------------------------------------------------------------------

    @_bounded
    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        rec = self._active(dom, "suspend")
        if self._status(rec) != "running":
            raise InvalidOperation(f"cannot suspend domain {rec.config.name!r}: it is not running")
        self._qmp(rec, "stop")

    @_bounded
    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        rec = self._active(dom, "resume")
        if self._status(rec) != "paused":
            raise InvalidOperation(f"cannot resume domain {rec.config.name!r}: it is not paused")
        self._qmp(rec, "cont")

    @_bounded
    def domain_shutdown(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        rec = self._active(dom, "shut down")
        if self._status(rec) != "running":
            raise InvalidOperation(f"cannot shut down domain {rec.config.name!r}: it is not running")
        assert rec.rundir is not None
        cancel_reboot(rec.rundir)  # a shutdown wins over a pending reboot, as in libvirt
        # An ACPI power-button press: the guest decides, and QEMU reports SHUTDOWN when it is off.
        self._qmp(rec, "system_powerdown")
        # A guest still booting (ACPI not up yet) loses the press: press again every 2 s while
        # it runs, for up to the timeout, as long as this connection is open.
        threading.Thread(target=self._press_again, args=(rec,), daemon=True, name="virtkit-qemu-powerdown").start()

    def _press_again(self, rec: Record, reboot: float | None = None) -> None:
        """Press again every PRESS_INTERVAL while the guest runs and the request is pending.

        ``reboot``: the deadline of this connection's reboot request; the request is over once
        the marker is gone (claimed: the guest powered off and was reset) or was replaced.
        """
        assert rec.rundir is not None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline - PRESS_INTERVAL:
            time.sleep(PRESS_INTERVAL)
            if self._closed:
                return
            try:
                if reboot is not None and not self._reboot_is(rec.rundir, reboot):
                    return
                if self._live(rec.id or -1) is None or self._status(rec) != "running":
                    return
                if reboot is not None and not self._reboot_is(rec.rundir, reboot):
                    return
                self._qmp(rec, "system_powerdown")
            except Exception:  # noqa: BLE001 - it went away meanwhile: nothing left to press
                return
        if reboot is not None and self._reboot_is(rec.rundir, reboot):
            time.sleep(max(0.0, deadline - time.monotonic()))
            if self._reboot_is(rec.rundir, reboot):
                log.warning(
                    "domain %r ignored the reboot request for %g s: it is dropped (the guest runs on)",
                    rec.config.name,
                    self.timeout,
                )
                cancel_reboot(rec.rundir)

    @staticmethod
    def _reboot_is(rundir: pathlib.Path, deadline: float) -> bool:
        """Our reboot request (by its deadline) is still the pending one."""
        return reboot_pending(rundir) and reboot_deadline(rundir) == deadline

    @_bounded
    def domain_reboot(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        rec = self._active(dom, "reboot")
        assert rec.rundir is not None
        if self._status(rec) != "running":
            raise InvalidOperation(f"cannot reboot domain {rec.config.name!r}: it is not running")
        # libvirt's ACPI reboot ("fake reboot"): record the request, press the power button; when
        # the guest has powered off, the relay (or, without one, the first connection that
        # looks) resets it and lets it run again: the same QEMU process, the same id. Returns
        # once the press is delivered; the request stays pending for the connection's timeout.
        deadline = request_reboot(rec.rundir, self.timeout)
        try:
            self._qmp(rec, "system_powerdown")
        except BaseException:
            cancel_reboot(rec.rundir)
            raise
        threading.Thread(
            target=self._press_again, args=(rec, deadline), daemon=True, name="virtkit-qemu-reboot"
        ).start()

    @_bounded
    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        rec = self._active(dom, "destroy")
        self._finish(rec, "destroyed")

    @_bounded
    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        _check_flags(flags)
        rec = self._find(dom)
        cfg = rec.config
        assert cfg.max_memory is not None
        if not isinstance(memory, int) or isinstance(memory, bool) or not 1024 <= memory <= cfg.max_memory:
            raise InvalidArgument(f"memory {memory!r} KiB: must be 1024..{cfg.max_memory} (the maximum)")
        if rec.id is None:
            raise InvalidOperation(f"cannot balloon domain {cfg.name!r}: it is not running")
        self._qmp(rec, "balloon", {"value": memory * 1024})

    def domain_create(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        self._open()
        cfg = check_config(config)
        try:
            other = self.state.defined_record(cfg.name)
        except FileNotFoundError:
            other = None
        if other is not None:
            raise InvalidOperation(f"domain {cfg.name!r} is already defined: start it instead")
        self._ensure()
        return self._start(cfg, persistent=False)

    def domain_define(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        self._open()
        cfg = check_config(config)
        self._ensure()
        with self.state.locked():
            for rec in self._running_records():
                if rec.config.name == cfg.name and not rec.persistent:
                    raise InvalidOperation(f"a transient domain named {cfg.name!r} is running")
            try:
                old = self.state.defined_record(cfg.name)
            except FileNotFoundError:
                old = None
            if old is not None:
                if config.uuid is not None and config.uuid != old.uuid:
                    raise InvalidArgument(f"domain {cfg.name!r} is already defined with uuid {old.uuid}")
                cfg = dataclasses.replace(cfg, uuid=old.uuid)  # a redefine keeps the uuid
            self.state.write_defined(cfg)
        assert cfg.uuid is not None
        ref = DomainRef(cfg.name, cfg.uuid, None)
        self._emit(DomainEventType.DEFINED, ref, "updated" if old else "added")
        for rec in self._running_records():
            if rec.uuid == cfg.uuid:
                return self._ref(rec)
        return ref

    def domain_start(self, dom: DomainRef, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        rec = self._find(dom)
        if rec.id is not None:
            raise InvalidOperation(f"domain {rec.config.name!r} is already running (id {rec.id})")
        self._ensure()
        return self._start(rec.config, persistent=True)

    @_bounded
    def domain_undefine(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        rec = self._find(dom)
        with self.state.locked():
            try:
                self.state.defined_record(rec.config.name)
            except FileNotFoundError:
                raise InvalidOperation(f"domain {rec.config.name!r} is transient: nothing to undefine") from None
            self.state.remove_defined(rec.config.name)
            if rec.rundir is not None:
                # Still running: it lives on as a transient domain, as in libvirt.
                self.state._write(rec.rundir / "domain.json", {"config": rec.config.to_dict(), "persistent": False})
        self._emit(DomainEventType.UNDEFINED, DomainRef(rec.config.name, rec.uuid, rec.id), "removed")

    # -- events ----------------------------------------------------------------------------------

    def connect_domain_event_register(self, callback: Callback, *, flags: int = 0) -> Callable[[], None]:
        _check_flags(flags)
        self._open()
        if not callable(callback):
            raise InvalidArgument("callback must be callable")
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._callbacks[token] = callback
            first = self._dispatcher is None
            if first:
                self._dispatcher = threading.Thread(target=self._dispatch, name="virtkit-qemu-events", daemon=True)
                self._dispatcher.start()
        running = self._running_records()
        for rec in running:
            self._listen(rec)
        if first:
            # Domains that other connections (other processes) start from now on: found by
            # looking at the state directory every WATCH_INTERVAL, then listened to.
            known = {rec.id or -1 for rec in running}
            threading.Thread(target=self._watch, args=(known,), name="virtkit-qemu-watch", daemon=True).start()

        def cancel() -> None:
            with self._lock:
                self._callbacks.pop(token, None)

        return cancel
