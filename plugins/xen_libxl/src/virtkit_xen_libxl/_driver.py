"""The xen:/// driver that creates: define, start, create, undefine, config, vcpus.

Composition picks one plugin per operation, and only this one knows defined domains that are
not running. So for the operations a defined domain can be asked (lookups, reads, lifecycle)
this driver bids :data:`PRIORITY` and routes: a running domain goes to the xen:/// the other
plugins compose (``inner``: hypercalls and xenstore, opened without this plugin), a defined
one is answered from the state directory. Create, destroy, shutdown and reboot go to the engine
chosen at open (``_engines``: the resident libxl engine, or xl); vcpu changes and checks of
definitions go through ``xl``; pause, balloon and max memory stay on the inner plugins.
"""

from __future__ import annotations

import contextlib
import threading
import uuid as _uuid
from collections.abc import Callable

import virtkit
from virtkit import (
    Connection,
    DomainConfig,
    DomainEvent,
    DomainEventType,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    InvalidArgument,
    InvalidOperation,
    NoSuchDomain,
    VcpuFlags,
    VirtError,
    check_flags,
)

from . import _xlcfg
from ._autostart import AutoDir, AutostartMixin
from ._engines import XlEngine
from ._libxljson import config_from_libxl
from ._listing import PRIORITY, Idents, ListingMixin, XenstoreIdents, serves_state
from ._state import Record, State
from ._xl import Xl

# Typing, logging and dataclasses stay off the start-up path (issue 14): a cold list needs none.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any, TypeVar

    from ._engines import Engine

    T = TypeVar("T")

__all__ = ["PRIORITY", "Driver"]


def _log() -> logging.Logger:
    """The plugin's logger; logging is imported on the first record, not by a cold start."""
    import logging

    return logging.getLogger("virtkit.xen_libxl")


_NIL = _uuid.UUID(int=0)


class Driver(ListingMixin, AutostartMixin):
    """A driver connection over ``inner`` (the rest of xen:///), ``xl`` and the state directory;
    ``idents`` reads running domains' names and uuids in bulk (default: from xenstore);
    ``engine`` creates, destroys, shuts down and reboots (default: xl); ``auto`` is xendomains'
    auto directory (default: from xendomains' settings)."""

    def __init__(
        self,
        inner: Connection,
        xl: Xl,
        state: State,
        idents: Idents | None = None,
        engine: Engine | None = None,
        auto: AutoDir | None = None,
    ) -> None:
        self.inner = inner
        self._vt = inner.vtable
        self.xl = xl
        self.engine: Engine = engine or XlEngine(xl)
        self.state = state
        self.auto = auto or AutoDir()
        self._by_stats = serves_state(inner)
        self._idents = idents or XenstoreIdents(xl.timeout)
        self._subs: list[Any] = []
        self._subs_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<virtkit_xen_libxl.Driver {self.state.root} engine={self.engine.name}>"

    def close(self) -> None:
        with self._subs_lock:
            subs, self._subs = self._subs, []
        for s in subs:
            s.cancel()
        close = getattr(self._idents, "close", None)
        if close is not None:
            close()
        self.engine.close()
        self.inner.close()

    # -- resolving ---------------------------------------------------------------------------

    def _inner(self, op: str, *args: Any, flags: int = 0) -> Any:
        return self._vt[op](*args, flags=flags)

    def _record(self, dom: DomainRef) -> Record | None:
        if dom.uuid is not None and dom.uuid != _NIL:
            return self.state.by_uuid(dom.uuid)
        return self.state.by_name(dom.name) if dom.name else None

    def _resolve(self, dom: DomainRef) -> tuple[DomainRef | None, Record | None]:
        """(the running domain, its definition): either may be None, not both."""
        rec = self._record(dom)
        if rec is not None:
            assert rec.config.uuid is not None
            return self._running_by_uuid(rec.config.uuid), rec
        if dom.uuid is not None and dom.uuid != _NIL:
            running = self._running_by_uuid(dom.uuid)
        else:
            running = self._running_by_name(dom.name)
        if running is None:
            raise NoSuchDomain(f"no domain {dom.name or dom.uuid!s}")
        return running, None

    def _route(self, op: str, dom: DomainRef, args: tuple[Any, ...], flags: int, defined: Callable[[Record], T]) -> T:
        """``op`` on the running domain through the inner plugins, else ``defined(record)``."""
        if dom.id is not None:
            try:
                result: T = self._inner(op, dom, *args, flags=flags)
                return result
            except NoSuchDomain:
                if dom.uuid is None or dom.uuid == _NIL or self.state.by_uuid(dom.uuid) is None:
                    raise
                # a persistent domain that stopped (or restarted under another id) since
        running, rec = self._resolve(dom)
        if running is not None:
            result = self._inner(op, running, *args, flags=flags)
            return result
        assert rec is not None
        return defined(rec)

    def _need_running(self, dom: DomainRef, verb: str) -> DomainRef:
        running, _rec = self._resolve(dom) if dom.id is None else (self._check_id(dom), None)
        if running is None:
            raise InvalidOperation(f"cannot {verb} domain {dom.name!r}: it is not running")
        if running.id == 0:
            raise InvalidOperation(f"refusing to {verb} Domain-0: it runs this toolstack")
        return running

    def _check_id(self, dom: DomainRef) -> DomainRef | None:
        """The running domain of a ref with an id; a stale id of a persistent domain resolves anew."""
        assert dom.id is not None
        try:
            ref: DomainRef = self._inner("domain_lookup_by_id", dom.id)
        except NoSuchDomain:
            ref = DomainRef("", _NIL, None)
        if ref.id is not None and (dom.uuid is None or dom.uuid == _NIL or ref.uuid == dom.uuid):
            return ref
        running, _rec = self._resolve(DomainRef(dom.name, dom.uuid, None))
        return running

    # -- lookups and listings ------------------------------------------------------------------

    @virtkit.priority(PRIORITY)
    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        rec = self.state.by_name(name)
        if rec is not None and rec.config.uuid is not None:
            return self._running_by_uuid(rec.config.uuid) or DomainRef(name, rec.config.uuid, None)
        running = self._running_by_name(name)
        if running is None:
            raise NoSuchDomain(f"no domain named {name!r}")
        return running

    @virtkit.priority(PRIORITY)
    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        want = uuid if isinstance(uuid, _uuid.UUID) else _uuid.UUID(str(uuid))
        rec = self.state.by_uuid(want)
        if rec is not None:
            return self._running_by_uuid(want) or DomainRef(rec.config.name, want, None)
        running = self._running_by_uuid(want)
        if running is None:
            raise NoSuchDomain(f"no domain with uuid {want}")
        return running

    def connect_list_defined_domains(self, *, flags: int = 0) -> list[str]:
        check_flags(flags)
        running = self._running_ids()
        out = []
        for rec in self.state.records():
            uid = rec.config.uuid
            assert uid is not None
            if uid not in running:
                out.append(rec.config.name)
        return out

    # -- reads ---------------------------------------------------------------------------------

    @virtkit.priority(PRIORITY)
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        def off(rec: Record) -> DomainInfo:
            c = rec.config
            return DomainInfo(DomainState.SHUTOFF, c.max_memory or c.memory, c.memory, c.vcpus, 0)

        return self._route("domain_get_info", dom, (), flags, off)

    @virtkit.priority(PRIORITY)
    def domain_get_state(self, dom: DomainRef, *, flags: int = 0) -> DomainStateInfo:
        return self._route("domain_get_state", dom, (), flags, lambda rec: DomainStateInfo(DomainState.SHUTOFF, None))

    @virtkit.priority(PRIORITY)
    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        return self._route("domain_get_max_memory", dom, (), flags, lambda r: r.config.max_memory or r.config.memory)

    @virtkit.priority(PRIORITY)
    def domain_get_vcpus(self, dom: DomainRef, *, flags: int = 0) -> int:
        def off(rec: Record) -> int:
            check_flags(flags, VcpuFlags.MAXIMUM)
            c = rec.config
            return (c.max_vcpus or c.vcpus) if flags & VcpuFlags.MAXIMUM else c.vcpus

        return self._route("domain_get_vcpus", dom, (), flags, off)

    @virtkit.priority(PRIORITY)
    def domain_get_os_type(self, dom: DomainRef, *, flags: int = 0) -> str:
        return self._route("domain_get_os_type", dom, (), flags, lambda rec: rec.config.os_type)

    def domain_get_config(self, dom: DomainRef, *, flags: int = 0) -> DomainConfig:
        check_flags(flags)
        running, rec = self._resolve(dom) if dom.id is None else (self._check_id(dom), None)
        if running is None:
            rec = rec or self._record(dom)
            if rec is None:
                raise NoSuchDomain(f"no domain {dom.name or dom.uuid!s}")
            return rec.config
        assert running.id is not None
        return config_from_libxl(self.xl.list_long(running.id))

    # -- changes of running domains ------------------------------------------------------------

    def _not_running(self, verb: str) -> Callable[[Record], Any]:
        def refuse(rec: Record) -> Any:
            raise InvalidOperation(f"cannot {verb} domain {rec.config.name!r}: it is shut off")

        return refuse

    @virtkit.priority(PRIORITY)
    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        self._route("domain_suspend", dom, (), flags, self._not_running("suspend"))
        self._note_running(DomainEventType.SUSPENDED, dom)

    @virtkit.priority(PRIORITY)
    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        self._route("domain_resume", dom, (), flags, self._not_running("resume"))
        self._note_running(DomainEventType.RESUMED, dom)

    def _note_running(self, kind: DomainEventType, dom: DomainRef) -> None:
        if not self._subs:
            return
        ref = dom if dom.id is not None and dom.uuid != _NIL else self._running_by_uuid(dom.uuid)
        if ref is not None:
            self._note(kind, ref)

    @virtkit.priority(PRIORITY)
    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        """libxl tears down devices and xenstore; the babysitter (ours or xl's) sees it go."""
        check_flags(flags)
        if dom.id is not None and dom.name and self.engine.checks_name:
            # the engine checks that the id still has this name: no lookup first
            if dom.id == 0:
                raise InvalidOperation("refusing to destroy Domain-0: it runs this toolstack")
            try:
                self.engine.destroy(dom.id, dom.name)
            except NoSuchDomain:
                pass  # a stale id (e.g. a persistent domain that restarted): resolved below
            else:
                self._note(DomainEventType.STOPPED, dom)
                return
        running = self._need_running(dom, "destroy")
        assert running.id is not None
        self.engine.destroy(running.id, running.name)
        self._note(DomainEventType.STOPPED, running)

    @virtkit.priority(PRIORITY)
    def domain_shutdown(self, dom: DomainRef, *, flags: int = 0) -> None:
        """Asks the guest; its babysitter (ours or xl's) applies on_poweroff when it is down."""
        check_flags(flags)
        running = self._need_running(dom, "shut down")
        assert running.id is not None
        self.engine.shutdown(running.id, running.name)

    @virtkit.priority(PRIORITY)
    def domain_reboot(self, dom: DomainRef, *, flags: int = 0) -> None:
        """Asks the guest; its babysitter applies on_reboot (restart: a new id)."""
        check_flags(flags)
        running = self._need_running(dom, "reboot")
        assert running.id is not None
        self.engine.reboot(running.id, running.name)

    def _redefine(self, rec: Record, **changes: Any) -> None:
        from dataclasses import replace

        with self.state.locked():
            cfg = replace(rec.config, **changes)
            _xlcfg.xl_settings(cfg)
            self.state.write(cfg)
            self.auto.rewrite(cfg)

    @virtkit.priority(PRIORITY)
    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        def off(rec: Record) -> None:
            check_flags(flags)
            virtkit.check_memory(memory)
            top = rec.config.max_memory or rec.config.memory
            if memory > top:
                raise InvalidArgument(f"{memory} KiB exceeds {rec.config.name!r}'s maximum of {top} KiB")
            self._redefine(rec, memory=memory, max_memory=top)

        self._route("domain_set_memory", dom, (memory,), flags, off)

    @virtkit.priority(PRIORITY)
    def domain_set_max_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        def off(rec: Record) -> None:
            check_flags(flags)
            virtkit.check_memory(memory)
            self._redefine(rec, max_memory=memory, memory=min(memory, rec.config.memory))

        self._route("domain_set_max_memory", dom, (memory,), flags, off)

    def domain_set_vcpus(self, dom: DomainRef, count: int, *, flags: int = 0) -> None:
        """Running: ``xl vcpu-set`` (up to the maximum); defined: the stored config."""
        check_flags(flags, VcpuFlags.MAXIMUM)
        virtkit.check_vcpus(count)
        running, rec = self._resolve(dom) if dom.id is None else (self._check_id(dom), None)
        if running is None:
            rec = rec or self._record(dom)
            if rec is None:
                raise NoSuchDomain(f"no domain {dom.name or dom.uuid!s}")
            if flags & VcpuFlags.MAXIMUM:
                self._redefine(rec, max_vcpus=count, vcpus=min(count, rec.config.vcpus))
                return
            top = rec.config.max_vcpus or rec.config.vcpus
            if count > top:
                raise InvalidArgument(f"{count} vcpus exceed {rec.config.name!r}'s maximum of {top}")
            self._redefine(rec, vcpus=count, max_vcpus=top)
            return
        if flags & VcpuFlags.MAXIMUM:
            raise InvalidOperation(f"cannot change the maximum vcpus of running domain {running.name!r}")
        top = self._inner("domain_get_vcpus", running, flags=VcpuFlags.MAXIMUM)
        if count > top:
            raise InvalidArgument(f"{count} vcpus exceed {running.name!r}'s maximum of {top}")
        # --ignore-host: more vcpus than physical cpus is the caller's call, as for libvirt
        self.xl.run("vcpu-set", "--ignore-host", str(running.id), str(count), what=f"xl vcpu-set {running.name}")

    # -- creating and defining -----------------------------------------------------------------

    def _check_free(self, cfg: DomainConfig, *, allow_uuid: _uuid.UUID | None = None) -> None:
        """Refuse a name or uuid another domain (running or defined) already has."""
        assert cfg.uuid is not None
        if self._by_stats:  # one bulk read for both questions
            running = [r.domain for r in self._running_states()]
            other = next((d for d in running if d.name == cfg.name), None)
            clash = next((d for d in running if d.uuid == cfg.uuid), None)
        else:
            other, clash = self._running_by_name(cfg.name), self._running_by_uuid(cfg.uuid)
        if other is not None and other.uuid != allow_uuid:
            raise InvalidOperation(f"a domain named {cfg.name!r} is already running (id {other.id})")
        rec = self.state.by_name(cfg.name)
        if rec is not None and rec.config.uuid != allow_uuid:
            raise InvalidOperation(f"a domain named {cfg.name!r} is already defined (uuid {rec.config.uuid})")
        if clash is not None and cfg.uuid != allow_uuid:
            raise InvalidOperation(f"uuid {cfg.uuid} is already used by running domain {clash.name!r}")
        rec = self.state.by_uuid(cfg.uuid)
        if rec is not None and cfg.uuid != allow_uuid:
            raise InvalidOperation(f"uuid {cfg.uuid} is already used by defined domain {rec.config.name!r}")

    def _xl_file(self, cfg: DomainConfig, tag: str) -> Any:
        text = _xlcfg.dump(_xlcfg.xl_settings(cfg))
        path = self.state.scratch() / f"{cfg.uuid}.{tag}.cfg"
        path.write_text(text, encoding="utf-8")
        return path

    def _start(self, cfg: DomainConfig, settings: dict[str, Any] | None = None) -> DomainRef:
        """The engine's create of ``cfg`` (uuid set; ``settings``: its xl settings if known);
        on failure nothing of it is left running."""
        assert cfg.uuid is not None
        try:
            domid = self.engine.create(cfg, self.state.scratch(), settings)
        except VirtError:
            self._leftover(cfg.uuid)
            raise
        ref = DomainRef(cfg.name, cfg.uuid, domid) if domid is not None else self._running_by_uuid(cfg.uuid)
        if ref is None:
            raise InvalidOperation(f"domain {cfg.name!r} died while it was being created")
        self._note(DomainEventType.STARTED, ref)
        return ref

    def _leftover(self, uuid: _uuid.UUID) -> None:
        ref = self._running_by_uuid(uuid)
        if ref is not None and ref.id:
            _log().warning("create failed but left domain %s (id %s): destroying it", ref.name, ref.id)
            with contextlib.suppress(VirtError):
                self.engine.destroy(ref.id, ref.name)

    def domain_create(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        from dataclasses import replace

        check_flags(flags)
        cfg = virtkit.check_domain_config(config)
        if cfg.uuid is None:
            cfg = replace(cfg, uuid=_uuid.uuid4())
        settings = _xlcfg.xl_settings(cfg)  # a config xl cannot express is refused first
        with self.state.locked():
            self._check_free(cfg)
            return self._start(cfg, settings)

    def domain_define(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        from dataclasses import replace

        check_flags(flags)
        cfg = virtkit.check_domain_config(config)
        with self.state.locked():
            old = self.state.by_uuid(cfg.uuid) if cfg.uuid else self.state.by_name(cfg.name)
            if cfg.uuid is None:
                cfg = replace(cfg, uuid=old.config.uuid if old else _uuid.uuid4())
            assert cfg.uuid is not None
            if old is not None and old.config.name != cfg.name:
                raise InvalidOperation(f"uuid {cfg.uuid} is already defined as {old.config.name!r}")
            running = self._running_by_uuid(cfg.uuid)
            self._check_free(cfg, allow_uuid=cfg.uuid if (old is not None or running is not None) else None)
            if running is not None and running.name != cfg.name:
                raise InvalidOperation(f"uuid {cfg.uuid} is running as {running.name!r}")
            path = self._xl_file(cfg, f"check-{threading.get_ident()}")
            try:
                self.xl.check_config(path)  # xl's own parser and libxl's JSON: its message if not
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()
            self.state.write(cfg)
            if old is not None:  # a new definition leaves a user's config of that name alone
                self.auto.rewrite(cfg)
        ref = DomainRef(cfg.name, cfg.uuid, running.id if running else None)
        if old is None:
            self._note(DomainEventType.DEFINED, ref)
        return ref

    def domain_start(self, dom: DomainRef, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        with self.state.locked():
            running, rec = self._resolve(dom)
            if running is not None:
                raise InvalidOperation(f"domain {running.name!r} is already running (id {running.id})")
            assert rec is not None
            return self._start(rec.config)

    def domain_undefine(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        with self.state.locked():
            running, rec = self._resolve(dom)
            if rec is None:
                name = running.name if running else dom.name
                raise InvalidOperation(f"domain {name!r} is not defined (transient): nothing to undefine")
            self._autostart_drop(rec.config)  # first: a failure leaves the domain defined, still marked
            self.state.remove(rec)
        assert rec.config.uuid is not None
        self._note(DomainEventType.UNDEFINED, DomainRef(rec.config.name, rec.config.uuid, None))

    def _note(self, kind: DomainEventType, ref: DomainRef) -> None:
        with self._subs_lock:
            subs = list(self._subs)
        for sub in subs:
            sub.note(kind, ref)

    # -- events --------------------------------------------------------------------------------

    @virtkit.priority(PRIORITY)
    def connect_domain_event_register(
        self, callback: Callable[[DomainEvent], None], *, flags: int = 0
    ) -> Callable[[], None]:
        check_flags(flags)
        from ._events import Watcher

        sub = Watcher(self, callback)
        with self._subs_lock:
            self._subs.append(sub)
        sub.start()

        def cancel() -> None:
            with self._subs_lock:
                if sub in self._subs:
                    self._subs.remove(sub)
            sub.cancel()

        return cancel
