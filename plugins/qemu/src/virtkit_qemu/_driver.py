"""The driver connection, as libvirt's qemu_driver.c: the catalogue's operations, delegating.

A domain is a daemonized QEMU process driven through QMP. Who does what:

* ``_host``: the QEMU binary, its version, KVM (probed once per connection);
* ``_command``: a config checked, and turned into QEMU's command line (a pure function);
* ``_process``: QEMU and its relay started, ended, reaped (it reports through callbacks);
* ``_domains``: the running and defined domains, found by reference, defined, undefined;
* ``_monitor``: QMP commands, through the domain's relay or straight to QEMU;
* ``_power``: what a guest's power-off means, and the cooperative shutdown and reboot;
* ``_events``: the callbacks, and the subscriptions to the relays that feed them;
* ``_stats``: the stats operations (mixed in), from QMP and /proc;
* ``_deadline``: one deadline per operation, shared by all its exchanges.

The driver makes the parts and wires what they report to each other; a read-only connection
makes its ``_power`` one that only reports a powered-off guest, never ends its QEMU.
"""

from __future__ import annotations

import logging
import pathlib
import socket
import uuid as _uuid
from collections.abc import Callable, Mapping
from typing import Any

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
    PermissionDenied,
    ProtocolError,
    VcpuFlags,
    Version,
    check_flags,
)

from ._command import build_argv, check_domain
from ._deadline import Deadline, bounded
from ._domains import Domains
from ._events import Callback, EventHub, Relays
from ._host import Host, node_info
from ._monitor import Monitor, RelayMissing
from ._power import Power
from ._process import Supervisor, cpu_ns
from ._qmp import Commands
from ._replies import ACTIVE, balloon_kib, domain_state, status_of, vcpu_threads
from ._state import Defined, Record, Running, StateDir
from ._stats import StatsMixin

__all__ = ["Driver"]

log = logging.getLogger("virtkit.qemu")

_MAXIMUM = int(VcpuFlags.MAXIMUM)
_INFO_QUERIES: Commands = (("query-status", None), ("query-balloon", None), ("query-cpus-fast", None))


class Driver(StatsMixin):
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
        self._deadline = Deadline(timeout)
        self._closed = False
        self._monitor = Monitor(timeout)
        self._hub = EventHub()
        self._procs = Supervisor(self.state, timeout, on_started=self._started, on_ended=self._ended)
        self._relays = Relays(
            self._hub,
            self._monitor,
            self._procs,
            until=self._deadline.until,
            closed=self._is_closed,
            settle=self._settle,
        )
        self._power = Power(
            self._procs,
            self._qmp,
            until=self._deadline.until,
            closed=self._is_closed,
            timeout=timeout,
            readonly=readonly,
        )
        self._domains = Domains(self.state, self._procs, status=self._power.status)

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
            self._power.status(run)
        except Exception:
            log.debug("settling %r failed", run.config.name, exc_info=True)

    # -- internals -------------------------------------------------------------------------------

    def _is_closed(self) -> bool:
        return self._closed

    def _open(self) -> None:
        if self._closed:
            raise ConnectionClosed("the qemu driver connection is closed")

    def _ensure(self) -> None:
        """Create the state directory (a mutation that needs it is about to write there)."""
        try:
            self.state.ensure()
        except PermissionError as exc:
            raise PermissionDenied(f"{self.uri}: cannot use the state directory {self.state.root}: {exc}") from exc

    def _qmp(self, run: Running, cmd: str, args: Mapping[str, object] | None = None) -> Any:
        self._open()
        return self._monitor.command(run, cmd, args, self._deadline.until())

    def _find(self, ref: DomainRef) -> Record:
        self._open()
        return self._domains.find(ref)

    def _active(self, ref: DomainRef, op: str) -> Running:
        self._open()
        return self._domains.active(ref, op)

    def _start(self, dom: Defined, persistent: bool) -> DomainRef:
        def argv(run: Running) -> list[str]:
            return build_argv(
                run.config, run.rundir, qemu=self.qemu, accel=self.host.accel(run.config.extra.get("accel", "auto"))
            )

        return self._procs.start(dom, persistent, argv).ref

    # -- connection ------------------------------------------------------------------------------

    def connect_get_type(self, *, flags: int = 0) -> str:
        check_flags(flags)
        return "QEMU"

    def connect_get_version(self, *, flags: int = 0) -> Version:
        check_flags(flags)
        self._open()
        return self.host.version()

    def connect_get_hostname(self, *, flags: int = 0) -> str:
        check_flags(flags)
        return socket.gethostname()

    def node_get_info(self, *, flags: int = 0) -> NodeInfo:
        check_flags(flags)
        return node_info()

    @bounded
    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        check_flags(flags)
        self._open()
        return self._domains.ids()

    @bounded
    def connect_num_of_domains(self, *, flags: int = 0) -> int:
        return len(self.connect_list_domains(flags=flags))

    @bounded
    def connect_list_defined_domains(self, *, flags: int = 0) -> list[str]:
        check_flags(flags)
        self._open()
        return self._domains.defined_names()

    @bounded
    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002 - the catalogue's name
        check_flags(flags)
        self._open()
        return self._domains.by_id(id)

    @bounded
    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        self._open()
        return self._domains.by_name(name)

    @bounded
    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        self._open()
        return self._domains.by_uuid(uuid)

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
            st, balloon, cpus = self._monitor.through_relay(run, _INFO_QUERIES, self._deadline.until())
            state = domain_state(status_of(st))
            memory = balloon_kib(balloon)
            vcpus, tids = vcpu_threads(cpus)
        except (RelayMissing, ProtocolError):
            return None
        pid = self._procs.pid(run)
        if state not in ACTIVE or pid is None:
            return None  # powered off (or odd): the full path acts on it
        return DomainInfo(state, run.max_memory, memory, vcpus, cpu_ns(pid, tids))

    @bounded
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        check_flags(flags)
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
                st, balloon, cpus = self._monitor.execute(rec, _INFO_QUERIES, self._deadline.until())
                status = status_of(st)
                memory = balloon_kib(balloon)
                vcpus, tids = vcpu_threads(cpus)
            except (ProtocolError, DriverError):
                if self._power.status(rec) != "gone":  # not gone meanwhile: a real failure
                    raise
                status = "gone"
            if status == "shutdown":
                status = self._power.status(rec)
            if status != "gone":
                pid = rec.pid()
                cpu = cpu_ns(pid, tids) if pid is not None else 0
                return DomainInfo(domain_state(status), rec.max_memory, memory, vcpus, cpu)
            self._find(DomainRef(cfg.name, rec.uuid, None))  # it just shut off: still there?
        return DomainInfo(DomainState.SHUTOFF, rec.max_memory, cfg.memory, cfg.vcpus, 0)

    @bounded
    def domain_get_state(self, dom: DomainRef, *, flags: int = 0) -> DomainStateInfo:
        check_flags(flags)
        rec = self._find(dom)
        if isinstance(rec, Running):
            status = self._power.status(rec)
            if status != "gone":
                reason = {"running": "booted", "paused": "user"}.get(status, status)
                return DomainStateInfo(domain_state(status), reason)
            self._find(DomainRef(rec.config.name, rec.uuid, None))
        return DomainStateInfo(DomainState.SHUTOFF, "shutdown")

    @bounded
    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        check_flags(flags)
        return self._find(dom).max_memory

    @bounded
    def domain_get_os_type(self, dom: DomainRef, *, flags: int = 0) -> str:
        check_flags(flags)
        self._find(dom)
        return "hvm"

    @bounded
    def domain_get_vcpus(self, dom: DomainRef, *, flags: int = 0) -> int:
        check_flags(flags, _MAXIMUM)
        rec = self._find(dom)
        if flags & _MAXIMUM:
            return rec.config.max_vcpus or rec.config.vcpus
        if isinstance(rec, Running):
            return vcpu_threads(self._qmp(rec, "query-cpus-fast"))[0]
        return rec.config.vcpus

    @bounded
    def domain_get_config(self, dom: DomainRef, *, flags: int = 0) -> DomainConfig:
        check_flags(flags)
        return self._find(dom).config

    @bounded
    def domain_is_persistent(self, dom: DomainRef, *, flags: int = 0) -> bool:
        # A defined config, or a running domain started from one and not undefined since.
        # Autostart is not served: no daemon of this plugin runs at boot to start marked domains.
        check_flags(flags)
        return self._find(dom).persistent

    # -- lifecycle -------------------------------------------------------------------------------

    @bounded
    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        run = self._active(dom, "suspend")
        if self._power.status(run) != "running":
            raise InvalidOperation(f"cannot suspend domain {run.config.name!r}: it is not running")
        self._qmp(run, "stop")

    @bounded
    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        run = self._active(dom, "resume")
        if self._power.status(run) != "paused":
            raise InvalidOperation(f"cannot resume domain {run.config.name!r}: it is not paused")
        self._qmp(run, "cont")

    @bounded
    def domain_shutdown(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        run = self._active(dom, "shut down")
        if self._power.status(run) != "running":
            raise InvalidOperation(f"cannot shut down domain {run.config.name!r}: it is not running")
        self._power.shutdown(run)

    @bounded
    def domain_reboot(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        run = self._active(dom, "reboot")
        if self._power.status(run) != "running":
            raise InvalidOperation(f"cannot reboot domain {run.config.name!r}: it is not running")
        self._power.reboot(run)

    @bounded
    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        self._power.finish(self._active(dom, "destroy"), "destroyed")

    @bounded
    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        check_flags(flags)
        rec = self._find(dom)
        top = rec.max_memory
        if not isinstance(memory, int) or isinstance(memory, bool) or not 1024 <= memory <= top:
            raise InvalidArgument(f"memory {memory!r} KiB: must be 1024..{top} (the maximum)")
        if not isinstance(rec, Running):
            raise InvalidOperation(f"cannot balloon domain {rec.config.name!r}: it is not running")
        self._qmp(rec, "balloon", {"value": memory * 1024})

    def domain_create(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        self._open()
        dom = check_domain(config)
        self._domains.not_defined(dom)
        self._ensure()
        return self._start(dom, persistent=False)

    def domain_define(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        self._open()
        dom = check_domain(config)
        self._ensure()
        dom, updated = self._domains.define(dom, uuid_given=config.uuid is not None)
        self._hub.emit(DomainEventType.DEFINED, dom.ref, "updated" if updated else "added")
        return self._domains.current(dom)

    def domain_start(self, dom: DomainRef, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        rec = self._find(dom)
        if isinstance(rec, Running):
            raise InvalidOperation(f"domain {rec.config.name!r} is already running (id {rec.id})")
        self._ensure()
        return self._start(rec, persistent=True)

    @bounded
    def domain_undefine(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        rec = self._find(dom)
        self._domains.undefine(rec)
        self._hub.emit(DomainEventType.UNDEFINED, rec.ref, "removed")

    # -- events ----------------------------------------------------------------------------------

    def connect_domain_event_register(self, callback: Callback, *, flags: int = 0) -> Callable[[], None]:
        check_flags(flags)
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
