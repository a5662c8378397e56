"""The in-memory hypervisor: one driver connection per open, every catalogue operation.

One lock guards all state. Each domain's state is a ``Dom`` (``_dom``); events are queued under
the lock and delivered after it is released (``_events``); statistics are ``_stats``'s.
"""

from __future__ import annotations

import _thread  # threading is not on a cold start's path: a lock is all this needs
import time
import uuid as _uuid
from collections.abc import Callable

from virtkit import (
    ConnectionClosed,
    DomainConfig,
    DomainEventType,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    InvalidArgument,
    InvalidOperation,
    NodeInfo,
    NoSuchDomain,
    VcpuFlags,
    Version,
    check_flags,
)

from ._dom import Dom
from ._host import HostSpec, check_config, with_changes
from ._stats import StatsMixin, vcpu_times

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._events import Callback, EventHub

__all__ = ["Driver"]

_RUNNING = DomainState.RUNNING
_PAUSED = DomainState.PAUSED
_SHUTOFF = DomainState.SHUTOFF
_ACTIVE = frozenset({_RUNNING, _PAUSED})
_MAXIMUM = int(VcpuFlags.MAXIMUM)


class Driver(StatsMixin):
    """A ``test:///`` driver connection: the methods are the catalogue's operations."""

    __slots__ = (
        "_active",
        "_by_name",
        "_by_uuid",
        "_closed",
        "_events",
        "_hostname",
        "_lock",
        "_next_id",
        "_node",
        "uri",
    )

    def __init__(self, host: HostSpec, uri: str = "test:///default") -> None:
        self.uri = uri
        self._hostname = host.hostname
        self._node = host.node
        self._lock = _thread.allocate_lock()
        self._closed = False
        self._by_uuid: dict[_uuid.UUID, Dom] = {}
        self._by_name: dict[str, Dom] = {}
        self._active: dict[int, Dom] = {}  # id -> running or paused domain
        self._events: EventHub | None = None  # made on first use (see _hub)
        now = time.monotonic_ns()
        for spec in host.domains:
            assert spec.config.uuid is not None
            d = Dom(spec.config, spec.config.uuid, spec.persistent)
            d.autostart = spec.autostart
            self._by_uuid[d.uuid] = self._by_name[d.name] = d
            if spec.state in _ACTIVE:
                assert spec.id is not None
                d.state, d.reason, d.cpu_ns = spec.state, "booted" if spec.state is _RUNNING else "user", spec.cpu_time
                d.since = now if spec.state is _RUNNING else None
                self._set_id(d, spec.id)
        self._next_id = max(self._active, default=0) + 1  # ids are never reused, as in Xen and libvirt

    def __repr__(self) -> str:
        return f"<virtkit_test.Driver {self.uri} domains={len(self._by_uuid)}>"

    # -- internals (call with the lock held) ---------------------------------------------------

    def _set_id(self, d: Dom, dom_id: int | None) -> None:
        if d.id is not None:
            del self._active[d.id]
        d.id = dom_id
        if dom_id is not None:
            self._active[dom_id] = d
        d.ref = DomainRef(d.name, d.uuid, dom_id)

    def _find(self, ref: DomainRef) -> Dom:
        if self._closed:
            raise ConnectionClosed("the test driver connection is closed")
        try:
            d = self._by_uuid.get(ref.uuid)
        except AttributeError:
            raise InvalidArgument(f"expected a DomainRef, got {type(ref).__name__}") from None
        if d is None:
            raise NoSuchDomain(f"no domain {ref.name!r} (uuid {ref.uuid})")
        return d

    def _open(self) -> None:
        if self._closed:
            raise ConnectionClosed("the test driver connection is closed")

    def _boot(self, d: Dom) -> None:
        d.state, d.reason = _RUNNING, "booted"
        d.cpu_ns, d.since = 0, time.monotonic_ns()
        d.vcpu_base, d.vcpu_t0 = [], 0  # a new boot is a new series of counters
        self._set_id(d, self._next_id)
        self._next_id += 1
        self._hub.emit(DomainEventType.STARTED, d.ref, "booted")

    def _stop(self, d: Dom, reason: str) -> None:
        """Shut a domain off: a persistent one stays defined, a transient one is gone."""
        d.state, d.reason = _SHUTOFF, reason
        d.cpu_ns, d.since = 0, None
        d.vcpu_base, d.vcpu_t0 = [], 0
        self._set_id(d, None)
        if not d.persistent:
            del self._by_uuid[d.uuid], self._by_name[d.name]
        self._hub.emit(DomainEventType.STOPPED, d.ref, reason)

    def _require_active(self, d: Dom, op: str) -> None:
        if d.state not in _ACTIVE:
            raise InvalidOperation(f"cannot {op} domain {d.name!r}: it is not running")

    def _new(self, config: object, *, persistent: bool) -> Dom:
        try:
            cfg = check_config(config)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        uuid = cfg.uuid or _uuid.uuid4()
        self._open()
        if cfg.name in self._by_name:
            raise InvalidArgument(f"a domain named {cfg.name!r} already exists (uuid {self._by_name[cfg.name].uuid})")
        if uuid in self._by_uuid:
            raise InvalidArgument(f"a domain with uuid {uuid} already exists ({self._by_uuid[uuid].name!r})")
        d = Dom(with_changes(cfg, uuid=uuid), uuid, persistent)
        self._by_uuid[uuid] = self._by_name[d.name] = d
        return d

    # -- connection --------------------------------------------------------------------------

    @property
    def _hub(self) -> EventHub:
        """The event hub, made on first use under ``self._lock`` (emit and subscribe hold it): a
        connection that neither changes anything nor listens never loads the events module."""
        if self._events is None:
            from ._events import EventHub

            self._events = EventHub(self._lock)
        return self._events

    def _dispatch(self) -> None:
        """Deliver what was emitted, outside the lock; nothing to do before anything was."""
        if self._events is not None:
            self._events.dispatch()

    def close(self, *, flags: int = 0) -> None:
        """Forget callbacks and pending events; later calls raise ConnectionClosed. Idempotent."""
        with self._lock:
            self._closed = True
            if self._events is not None:
                self._events.clear()

    def connect_get_type(self, *, flags: int = 0) -> str:
        check_flags(flags)
        self._open()
        return "Test"

    def connect_get_version(self, *, flags: int = 0) -> Version:
        check_flags(flags)
        self._open()
        from ._version import __version__  # not at import: an open never asks for it

        return Version.parse(__version__)

    def connect_get_hostname(self, *, flags: int = 0) -> str:
        check_flags(flags)
        self._open()
        return self._hostname

    def node_get_info(self, *, flags: int = 0) -> NodeInfo:
        check_flags(flags)
        with self._lock:
            self._open()
            used = sum(d.memory for d in self._active.values())
        return self._node._replace(free_memory=max(0, self._node.memory - used))

    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        if flags:
            check_flags(flags)
        lock = self._lock
        lock.acquire()
        try:
            self._open()
            return sorted(self._active)
        finally:
            lock.release()

    def connect_num_of_domains(self, *, flags: int = 0) -> int:
        check_flags(flags)
        with self._lock:
            self._open()
            return len(self._active)

    def connect_list_defined_domains(self, *, flags: int = 0) -> list[str]:
        check_flags(flags)
        with self._lock:
            self._open()
            return sorted(d.name for d in self._by_uuid.values() if d.id is None)

    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002 - the catalogue's name
        if flags:
            check_flags(flags)
        lock = self._lock
        lock.acquire()
        try:
            d = self._active.get(id)
            if d is None or self._closed:
                self._open()
                raise NoSuchDomain(f"no running domain with id {id!r}")
            return d.ref
        finally:
            lock.release()

    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        if flags:
            check_flags(flags)
        lock = self._lock
        lock.acquire()
        try:
            d = self._by_name.get(name)
            if d is None or self._closed:
                self._open()
                raise NoSuchDomain(f"no domain named {name!r}")
            return d.ref
        finally:
            lock.release()

    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        with self._lock:
            self._open()
            d = self._by_uuid.get(uuid)
            if d is None:
                raise NoSuchDomain(f"no domain with uuid {uuid}")
            return d.ref

    def connect_domain_event_register(self, callback: Callback, *, flags: int = 0) -> Callable[[], None]:
        check_flags(flags)
        if not callable(callback):
            raise InvalidArgument(f"callback must be callable, got {type(callback).__name__}")
        with self._lock:
            self._open()
            return self._hub.subscribe(callback)

    # -- domain queries ------------------------------------------------------------------------

    # The hot queries below take the lock by hand: acquire/release costs about half a ``with``.

    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        if flags:
            check_flags(flags)
        lock = self._lock
        lock.acquire()
        try:
            d = self._find(dom)
            # read the clock under the lock, so cpu time never appears to run backwards
            cpu = d.cpu_ns if d.since is None else d.cpu_ns + (time.monotonic_ns() - d.since)
            return DomainInfo(d.state, d.max_memory, d.memory, d.vcpus, cpu)
        finally:
            lock.release()

    def domain_get_state(self, dom: DomainRef, *, flags: int = 0) -> DomainStateInfo:
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            return DomainStateInfo(d.state, d.reason)

    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        check_flags(flags)
        with self._lock:
            return self._find(dom).max_memory

    def domain_get_os_type(self, dom: DomainRef, *, flags: int = 0) -> str:
        check_flags(flags)
        with self._lock:
            return self._find(dom).config.os_type

    def domain_get_vcpus(self, dom: DomainRef, *, flags: int = 0) -> int:
        check_flags(flags, _MAXIMUM)
        with self._lock:
            d = self._find(dom)
            return d.max_vcpus if flags & _MAXIMUM else d.vcpus

    def domain_get_config(self, dom: DomainRef, *, flags: int = 0) -> DomainConfig:
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            return with_changes(
                d.config, memory=d.memory, max_memory=d.max_memory, vcpus=d.vcpus, max_vcpus=d.max_vcpus
            )

    def domain_is_persistent(self, dom: DomainRef, *, flags: int = 0) -> bool:
        check_flags(flags)
        with self._lock:
            return self._find(dom).persistent

    def domain_get_autostart(self, dom: DomainRef, *, flags: int = 0) -> bool:
        check_flags(flags)
        with self._lock:
            return self._find(dom).autostart

    def domain_set_autostart(self, dom: DomainRef, autostart: bool, *, flags: int = 0) -> None:
        # An in-memory host never boots again: the mark is kept and read back, as libvirt's test driver does.
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            if not d.persistent:
                raise InvalidOperation(f"cannot set autostart of {d.name!r}: it is transient")
            d.autostart = bool(autostart)

    # -- lifecycle -------------------------------------------------------------------------------

    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            if d.state is not _RUNNING:
                raise InvalidOperation(f"cannot suspend domain {d.name!r}: it is {d.state.label}, not running")
            d.cpu_ns, d.since = d.cpu_time(time.monotonic_ns()), None
            d.state, d.reason = _PAUSED, "user"
            self._hub.emit(DomainEventType.SUSPENDED, d.ref, "paused")
        self._dispatch()

    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            if d.state is not _PAUSED:
                raise InvalidOperation(f"cannot resume domain {d.name!r}: it is {d.state.label}, not paused")
            d.since = time.monotonic_ns()
            d.state, d.reason = _RUNNING, "unpaused"
            self._hub.emit(DomainEventType.RESUMED, d.ref, "unpaused")
        self._dispatch()

    def domain_shutdown(self, dom: DomainRef, *, flags: int = 0) -> None:
        # The guest cooperates at once, as in libvirt's test driver: running or paused -> shut off.
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            self._require_active(d, "shut down")
            self._hub.emit(DomainEventType.SHUTDOWN, d.ref, "finished")
            self._stop(d, "shutdown")
        self._dispatch()

    def domain_reboot(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            self._require_active(d, "reboot")
            if d.config.on_reboot == "destroy":  # the config says a reboot ends the domain
                self._hub.emit(DomainEventType.SHUTDOWN, d.ref, "finished")
                self._stop(d, "shutdown")
            else:  # same id, like libvirt's test driver; cpu time keeps counting
                if d.since is None:
                    d.since = time.monotonic_ns()
                d.state, d.reason = _RUNNING, "booted"
                self._hub.emit(DomainEventType.REBOOTED, d.ref, "")
        self._dispatch()

    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            self._require_active(d, "destroy")
            self._stop(d, "destroyed")
        self._dispatch()

    def domain_create(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        with self._lock:
            d = self._new(config, persistent=False)
            self._boot(d)
            ref = d.ref
        self._dispatch()
        return ref

    def domain_define(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        with self._lock:
            d = self._new(config, persistent=True)
            self._hub.emit(DomainEventType.DEFINED, d.ref, "added")
            ref = d.ref
        self._dispatch()
        return ref

    def domain_start(self, dom: DomainRef, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            if d.state is not _SHUTOFF:
                raise InvalidOperation(f"cannot start domain {d.name!r}: it is already {d.state.label}")
            self._boot(d)
            ref = d.ref
        self._dispatch()
        return ref

    def domain_undefine(self, dom: DomainRef, *, flags: int = 0) -> None:
        # libvirt: undefining a running persistent domain makes it transient; it goes when it stops.
        check_flags(flags)
        with self._lock:
            d = self._find(dom)
            if not d.persistent:
                raise InvalidOperation(f"cannot undefine domain {d.name!r}: it is transient (destroy it instead)")
            d.persistent = d.autostart = False
            if d.id is None:
                del self._by_uuid[d.uuid], self._by_name[d.name]
            self._hub.emit(DomainEventType.UNDEFINED, d.ref, "removed")
        self._dispatch()

    # -- resources -------------------------------------------------------------------------------

    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        check_flags(flags)
        _positive(memory, "memory")
        with self._lock:
            d = self._find(dom)
            if memory > d.max_memory:
                raise InvalidArgument(
                    f"cannot set memory of {d.name!r} to {memory} KiB: above its maximum {d.max_memory} KiB"
                )
            d.memory = memory

    def domain_set_max_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        # Like Xen: lowering the maximum below the current allocation balloons the domain down.
        check_flags(flags)
        _positive(memory, "memory")
        with self._lock:
            d = self._find(dom)
            d.max_memory = memory
            d.memory = min(d.memory, memory)

    def domain_set_vcpus(self, dom: DomainRef, count: int, *, flags: int = 0) -> None:
        check_flags(flags, _MAXIMUM)
        _positive(count, "vcpu count")
        with self._lock:
            d = self._find(dom)
            if flags & _MAXIMUM:
                # libvirt: the maximum is part of the config and only changes while shut off
                if d.state is not _SHUTOFF:
                    raise InvalidOperation(f"cannot change the maximum vcpus of {d.name!r} while it is active")
                d.max_vcpus = count
                d.vcpus = min(d.vcpus, count)
            elif count > d.max_vcpus:
                raise InvalidArgument(f"cannot give {d.name!r} {count} vcpus: above its maximum {d.max_vcpus}")
            else:
                if d.id is not None:  # keep each vcpu's time: per-vcpu counters never go back
                    t = d.cpu_time(time.monotonic_ns())
                    times = vcpu_times(d, t)
                    base = d.vcpu_base + [0] * (len(times) - len(d.vcpu_base))
                    base[: len(times)] = times
                    d.vcpu_base, d.vcpu_t0 = base, t
                d.vcpus = count


def _positive(value: object, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgument(f"{what} must be a positive integer, got {value!r}")
