"""The driver connection, as libvirt's qemu_driver.c: the catalogue's operations, delegating.

A domain is a daemonized QEMU process driven through QMP. Who does what:

* ``_host``: the QEMU binary, its version, KVM (probed once per connection);
* ``_command``: a config checked, and turned into QEMU's command line;
* ``_process``: QEMU and its relay started, ended, reaped (it reports through callbacks);
* ``_monitor``: QMP commands, through the domain's relay or straight to QEMU;
* ``_events``: callbacks, and the subscriptions to the relays that feed them;
* here: the operations, and what a guest's power-off means (a pending reboot, or the end).

QEMU runs with ``-no-shutdown``: when the guest powers off, QEMU stays (status "shutdown") until
the domain's relay -- or, without one, the first read-write connection that looks -- resets it
(a pending cooperative reboot) or quits it. A read-only connection only reports it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import socket
import threading
import time
import uuid as _uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from virtkit import (
    ConnectionClosed,
    DomainConfig,
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
)

from ._command import build_argv, check_domain
from ._events import Callback, EventHub, Relays
from ._host import Host, node_info
from ._monitor import Monitor, RelayMissing
from ._process import Supervisor, cpu_ns
from ._qmp import Commands
from ._relay import cancel_reboot, claim_reboot, reboot_deadline, reboot_pending, release_claim, request_reboot
from ._replies import balloon_kib, status_of, vcpu_threads
from ._state import Defined, Record, Running, StateDir

__all__ = ["PRESS_INTERVAL", "Driver"]

log = logging.getLogger("virtkit.qemu")

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
_MAXIMUM = int(VcpuFlags.MAXIMUM)
_INFO_QUERIES: Commands = (("query-status", None), ("query-balloon", None), ("query-cpus-fast", None))
#: Seconds between two power-button presses while a shutdown or reboot request is pending.
PRESS_INTERVAL = 2.0


def _check_flags(flags: int, allowed: int = 0) -> None:
    if flags & ~allowed:
        raise InvalidArgument(f"unsupported flags {flags:#x}")


class Driver:
    """A ``qemu:///session`` or ``qemu:///system`` driver connection."""

    def __init__(
        self, root: pathlib.Path, uri: str, qemu: str, timeout: float = 30.0, *, readonly: bool = False
    ) -> None:
        self.uri = uri
        self.qemu = qemu
        self.timeout = timeout
        self.readonly = readonly  # reads only report: they never end (or reset) a guest's QEMU
        self.state = StateDir(root)  # created by the first mutation that needs it: reads create nothing
        self.host = Host(qemu, timeout)
        self._local = threading.local()  # .until: the deadline of this thread's operation
        self._closed = False
        self._monitor = Monitor(timeout)
        self._hub = EventHub()
        self._procs = Supervisor(self.state, timeout, on_started=self._started, on_ended=self._ended)
        self._relays = Relays(self._hub, self._monitor, self._procs, until=self._until, settle=self._settle)

    def __repr__(self) -> str:
        return f"<virtkit_qemu.Driver {self.uri} {self.state.root}>"

    def close(self) -> None:
        # Closing a connection never stops domains: they outlive it, as libvirt's do.
        if self._closed:
            return
        self._closed = True
        self._monitor.close()
        self._hub.close()

    # -- what the parts report -------------------------------------------------------------------

    def _started(self, run: Running) -> None:
        """From the supervisor: QEMU and its relay are up."""
        if run.config.memory < run.max_memory:
            self._qmp(run, "balloon", {"value": run.config.memory * 1024})
        self._hub.emit(DomainEventType.STARTED, run.ref, "booted")
        if self._hub.active:
            self._relays.listen(run)

    def _ended(self, run: Running, reason: str) -> None:
        """From the supervisor: the domain's run directory is reaped; ``reason`` says how it ended."""
        self._relays.listening.discard(run.id)
        self._monitor.forget(run)
        self._hub.report_end(run.ref, reason)

    def _settle(self, run: Running, why: str) -> None:
        """From the subscriptions: the relay said QEMU is gone ("gone"), or died itself ("lost")."""
        if self._closed or run.id in self._procs.finishing:
            return  # our own destroy or quit reports it, with its reason
        try:
            if why == "gone":
                # QEMU closed its monitor: let the process finish exiting before judging how.
                self._procs.wait_exit(run, min(self.timeout, 10.0))
            if self._procs.alive(run.id) is None:
                return
            if why == "lost" and self._hub.active:
                self._relays.listen(run)  # QEMU runs on: start a new relay and listen again
            self._status(run)
        except Exception:
            log.debug("settling %r failed", run.config.name, exc_info=True)

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

    def _until(self) -> float:
        until: float | None = getattr(self._local, "until", None)
        return time.monotonic() + self.timeout if until is None else until

    def _qmp(self, run: Running, cmd: str, args: Mapping[str, object] | None = None) -> Any:
        self._open()
        return self._monitor.command(run, cmd, args, self._until())

    def _status(self, run: Running) -> str:
        """query-status; a guest that powered off is finished here (quit: shut off), unless this
        connection is read-only: a query there only reports ("shutdown")."""
        try:
            status = status_of(self._qmp(run, "query-status"))
        except ProtocolError:
            if self._procs.alive(run.id) is None:
                return "gone"
            raise
        if status == "shutdown" and not self.readonly:
            return self._powered_off(run)
        return status

    def _powered_off(self, run: Running) -> str:
        """The guest powered off and its relay has not acted (yet, or it has none): do it here.

        A pending cooperative reboot -> system_reset + cont ("running"); otherwise quit ("gone").
        """
        claim = claim_reboot(run.rundir) if run.config.on_reboot != "destroy" else False
        if claim is True:
            return "running"  # the relay (or another connection) is resetting it right now
        if claim:
            try:
                self._qmp(run, "system_reset")
                self._qmp(run, "cont")
            finally:
                release_claim(claim)
            return "running"
        # No claim: either a shutdown, or a reset that completed between our two looks.
        try:
            status = status_of(self._qmp(run, "query-status"))
        except ProtocolError:
            status = "shutdown"
        if status != "shutdown":
            return status
        cancel_reboot(run.rundir)
        self._finish(run, "shutdown")
        return "gone"

    def _finish(self, run: Running, reason: str) -> None:
        """quit, wait, SIGKILL after the deadline, then forget the run directory."""
        self._procs.finish(run, reason, lambda: self._qmp(run, "quit"), self._until())

    def _find(self, ref: DomainRef) -> Record:
        """A running record, or the defined one; NoSuchDomain otherwise."""
        self._open()
        try:
            uuid, name, dom_id = ref.uuid, ref.name, ref.id
        except AttributeError:
            raise InvalidArgument(f"expected a DomainRef, got {type(ref).__name__}") from None
        if dom_id is not None:
            run = self._procs.alive(dom_id)
            if run is not None and run.uuid == uuid:
                return run
        for run in self._procs.running():
            if run.uuid == uuid:
                return run
        try:
            dom = self.state.defined_record(name)
            if dom.uuid == uuid:
                return dom
        except (FileNotFoundError, InvalidArgument):
            pass
        raise NoSuchDomain(f"no domain {name!r} (uuid {uuid})")

    def _active(self, ref: DomainRef, op: str) -> Running:
        rec = self._find(ref)
        if not isinstance(rec, Running):
            raise InvalidOperation(f"cannot {op} domain {rec.config.name!r}: it is not running")
        return rec

    def _start(self, dom: Defined, persistent: bool) -> DomainRef:
        def argv(run: Running) -> list[str]:
            return build_argv(
                run.config, run.rundir, qemu=self.qemu, accel=self.host.accel(run.config.extra.get("accel", "auto"))
            )

        return self._procs.start(dom, persistent, argv).ref

    # -- connection ------------------------------------------------------------------------------

    def connect_get_type(self, *, flags: int = 0) -> str:
        _check_flags(flags)
        return "QEMU"

    def connect_get_version(self, *, flags: int = 0) -> Version:
        _check_flags(flags)
        self._open()
        return self.host.version()

    def connect_get_hostname(self, *, flags: int = 0) -> str:
        _check_flags(flags)
        return socket.gethostname()

    def node_get_info(self, *, flags: int = 0) -> NodeInfo:
        _check_flags(flags)
        return node_info()

    @_bounded
    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        _check_flags(flags)
        self._open()
        ids = []
        for run in self._procs.running():
            try:
                if self._status(run) != "gone":
                    ids.append(run.id)
            except ProtocolError as exc:
                log.warning("domain %r: %s", run.config.name, exc)
        return ids

    @_bounded
    def connect_num_of_domains(self, *, flags: int = 0) -> int:
        return len(self.connect_list_domains(flags=flags))

    @_bounded
    def connect_list_defined_domains(self, *, flags: int = 0) -> list[str]:
        _check_flags(flags)
        self._open()
        running = {run.config.name for run in self._procs.running()}
        return [n for n in self.state.defined_names() if n not in running]

    @_bounded
    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002 - the catalogue's name
        _check_flags(flags)
        self._open()
        run = self._procs.alive(id) if isinstance(id, int) and id > 0 else None
        if run is None or self._status(run) == "gone":
            raise NoSuchDomain(f"no running domain with id {id}")
        return run.ref

    @_bounded
    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        self._open()
        for run in self._procs.running():
            if run.config.name == name and self._status(run) != "gone":
                return run.ref
        try:
            return self.state.defined_record(name).ref
        except FileNotFoundError:
            raise NoSuchDomain(f"no domain named {name!r}") from None

    @_bounded
    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        self._open()
        for run in self._procs.running():
            if run.uuid == uuid and self._status(run) != "gone":
                return run.ref
        for name in self.state.defined_names():
            try:
                dom = self.state.defined_record(name)
            except FileNotFoundError:
                continue  # undefined meanwhile
            except ProtocolError as exc:
                log.warning("%s", exc)
                continue
            if dom.uuid == uuid:
                return dom.ref
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
            run = self.state.running(dom_id)
        except (FileNotFoundError, ProtocolError):
            return None
        if run.uuid != getattr(dom, "uuid", None):
            return None
        try:
            st, balloon, cpus = self._monitor.through_relay(run, _INFO_QUERIES, self._until())
            state = _STATUS.get(status_of(st))
            memory = balloon_kib(balloon)
            vcpus, tids = vcpu_threads(cpus)
        except (RelayMissing, ProtocolError):
            return None
        pid = self._procs.pid(run)
        if state not in _ACTIVE or pid is None:
            return None  # powered off (or odd): the full path acts on it
        return DomainInfo(state, run.max_memory, memory, vcpus, cpu_ns(pid, tids))

    @_bounded
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        _check_flags(flags)
        self._open()
        fast = self._info_fast(dom)
        if fast is not None:
            return fast
        rec = self._find(dom)
        cfg = rec.config
        if isinstance(rec, Running):
            try:
                # The three queries in one request on this connection's link to the domain's relay
                # (sent to QEMU at once), or on one fresh QMP connection when it has no relay.
                self._open()
                st, balloon, cpus = self._monitor.execute(rec, _INFO_QUERIES, self._until())
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
                return DomainInfo(
                    _STATUS.get(status, DomainState.NOSTATE),
                    rec.max_memory,
                    memory,
                    vcpus,
                    cpu_ns(rec.pid() or 0, tids),
                )
            self._find(DomainRef(cfg.name, rec.uuid, None))  # it just shut off: still there?
        return DomainInfo(DomainState.SHUTOFF, rec.max_memory, cfg.memory, cfg.vcpus, 0)

    @_bounded
    def domain_get_state(self, dom: DomainRef, *, flags: int = 0) -> DomainStateInfo:
        _check_flags(flags)
        rec = self._find(dom)
        if isinstance(rec, Running):
            status = self._status(rec)
            if status != "gone":
                reason = {"running": "booted", "paused": "user"}.get(status, status)
                return DomainStateInfo(_STATUS.get(status, DomainState.NOSTATE), reason)
            self._find(DomainRef(rec.config.name, rec.uuid, None))
        return DomainStateInfo(DomainState.SHUTOFF, "shutdown")

    @_bounded
    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        _check_flags(flags)
        return self._find(dom).max_memory

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
        if isinstance(rec, Running):
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
        run = self._active(dom, "suspend")
        if self._status(run) != "running":
            raise InvalidOperation(f"cannot suspend domain {run.config.name!r}: it is not running")
        self._qmp(run, "stop")

    @_bounded
    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        run = self._active(dom, "resume")
        if self._status(run) != "paused":
            raise InvalidOperation(f"cannot resume domain {run.config.name!r}: it is not paused")
        self._qmp(run, "cont")

    @_bounded
    def domain_shutdown(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        run = self._active(dom, "shut down")
        if self._status(run) != "running":
            raise InvalidOperation(f"cannot shut down domain {run.config.name!r}: it is not running")
        cancel_reboot(run.rundir)  # a shutdown wins over a pending reboot, as in libvirt
        # An ACPI power-button press: the guest decides, and QEMU reports SHUTDOWN when it is off.
        self._qmp(run, "system_powerdown")
        # A guest still booting (ACPI not up yet) loses the press: press again every 2 s while
        # it runs, for up to the timeout, as long as this connection is open.
        threading.Thread(target=self._press_again, args=(run,), daemon=True, name="virtkit-qemu-powerdown").start()

    def _press_again(self, run: Running, reboot: float | None = None) -> None:
        """Press again every PRESS_INTERVAL while the guest runs and the request is pending.

        ``reboot``: the deadline of this connection's reboot request; the request is over once
        the marker is gone (claimed: the guest powered off and was reset) or was replaced.
        """
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline - PRESS_INTERVAL:
            time.sleep(PRESS_INTERVAL)
            if self._closed:
                return
            try:
                if reboot is not None and not self._reboot_is(run, reboot):
                    return
                if self._procs.alive(run.id) is None or self._status(run) != "running":
                    return
                if reboot is not None and not self._reboot_is(run, reboot):
                    return
                self._qmp(run, "system_powerdown")
            except Exception:  # noqa: BLE001 - it went away meanwhile: nothing left to press
                return
        if reboot is not None and self._reboot_is(run, reboot):
            time.sleep(max(0.0, deadline - time.monotonic()))
            if self._reboot_is(run, reboot):
                log.warning(
                    "domain %r ignored the reboot request for %g s: it is dropped (the guest runs on)",
                    run.config.name,
                    self.timeout,
                )
                cancel_reboot(run.rundir)

    @staticmethod
    def _reboot_is(run: Running, deadline: float) -> bool:
        """Our reboot request (by its deadline) is still the pending one."""
        return reboot_pending(run.rundir) and reboot_deadline(run.rundir) == deadline

    @_bounded
    def domain_reboot(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        run = self._active(dom, "reboot")
        if self._status(run) != "running":
            raise InvalidOperation(f"cannot reboot domain {run.config.name!r}: it is not running")
        # libvirt's ACPI reboot ("fake reboot"): record the request, press the power button; when
        # the guest has powered off, the relay (or, without one, the first connection that
        # looks) resets it and lets it run again: the same QEMU process, the same id. Returns
        # once the press is delivered; the request stays pending for the connection's timeout.
        deadline = request_reboot(run.rundir, self.timeout)
        try:
            self._qmp(run, "system_powerdown")
        except BaseException:
            cancel_reboot(run.rundir)
            raise
        threading.Thread(
            target=self._press_again, args=(run, deadline), daemon=True, name="virtkit-qemu-reboot"
        ).start()

    @_bounded
    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        _check_flags(flags)
        self._finish(self._active(dom, "destroy"), "destroyed")

    @_bounded
    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        _check_flags(flags)
        rec = self._find(dom)
        top = rec.max_memory
        if not isinstance(memory, int) or isinstance(memory, bool) or not 1024 <= memory <= top:
            raise InvalidArgument(f"memory {memory!r} KiB: must be 1024..{top} (the maximum)")
        if not isinstance(rec, Running):
            raise InvalidOperation(f"cannot balloon domain {rec.config.name!r}: it is not running")
        self._qmp(rec, "balloon", {"value": memory * 1024})

    def domain_create(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        self._open()
        dom = check_domain(config)
        try:
            self.state.defined_record(dom.config.name)
        except FileNotFoundError:
            pass
        else:
            raise InvalidOperation(f"domain {dom.config.name!r} is already defined: start it instead")
        self._ensure()
        return self._start(dom, persistent=False)

    def domain_define(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        self._open()
        dom = check_domain(config)
        name = dom.config.name
        self._ensure()
        with self.state.locked():
            for run in self._procs.running():
                if run.config.name == name and not run.persistent:
                    raise InvalidOperation(f"a transient domain named {name!r} is running")
            try:
                old: Defined | None = self.state.defined_record(name)
            except FileNotFoundError:
                old = None
            if old is not None:
                if config.uuid is not None and config.uuid != old.uuid:
                    raise InvalidArgument(f"domain {name!r} is already defined with uuid {old.uuid}")
                dom = Defined(dataclasses.replace(dom.config, uuid=old.uuid), old.uuid)  # a redefine keeps the uuid
            self.state.write_defined(dom.config)
        self._hub.emit(DomainEventType.DEFINED, dom.ref, "updated" if old else "added")
        for run in self._procs.running():
            if run.uuid == dom.uuid:
                return run.ref
        return dom.ref

    def domain_start(self, dom: DomainRef, *, flags: int = 0) -> DomainRef:
        _check_flags(flags)
        rec = self._find(dom)
        if isinstance(rec, Running):
            raise InvalidOperation(f"domain {rec.config.name!r} is already running (id {rec.id})")
        self._ensure()
        return self._start(rec, persistent=True)

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
            if isinstance(rec, Running):
                # Still running: it lives on as a transient domain, as in libvirt.
                self.state.write_running(rec, persistent=False)
        self._hub.emit(DomainEventType.UNDEFINED, rec.ref, "removed")

    # -- events ----------------------------------------------------------------------------------

    def connect_domain_event_register(self, callback: Callback, *, flags: int = 0) -> Callable[[], None]:
        _check_flags(flags)
        self._open()
        if not callable(callback):
            raise InvalidArgument("callback must be callable")
        cancel, first = self._hub.register(callback)
        running = self._procs.running()
        for run in running:
            self._relays.listen(run)
        if first:
            # Domains that other connections (other processes) start from now on: found by
            # looking at the state directory every WATCH_INTERVAL, then listened to.
            self._relays.watch({run.id for run in running})
        return cancel
