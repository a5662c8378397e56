"""The public API: Connection and Domain, whose methods are the catalogue's operations.

Each public method is one vtable lookup and one call; errors are completed on the way out (the
operation, the plugin that served it, the redacted URI) and a backend's own exception becomes a
DriverError with it as the cause. A test checks these methods against the catalogue.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import types
import uuid as _uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from ._compose import ComposeOptions, compose, probe_default_uri
from ._errors import ConnectionClosed, DriverError, InvalidArgument, NoDriver, NoSuchDomain, PermissionDenied, VirtError
from ._explain import Explanation
from ._input import check_domain_config, check_memory, check_timeout, check_vcpus
from ._stats_api import ConnectionStats, DomainStatsMethods
from ._types import (
    DomainConfig,
    DomainEvent,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    NodeInfo,
    Version,
)
from ._uri import URI, parse_uri

__all__ = ["Connection", "Domain", "EventStream", "open"]

DEFAULT_URI_ENV = "VIRTKIT_DEFAULT_URI"


def open(  # noqa: A001 - libvirt.open
    uri: str | URI | None = None,
    *,
    readonly: bool = False,
    timeout: float = 30.0,
    strict: bool | None = None,
    plugins: Collection[object] = (),
    entry_points: bool = True,
    prefer: Mapping[str, str] | None = None,
    exclude: Mapping[str, Collection[str]] | None = None,
    fallback: Collection[str] = (),
    params: Mapping[str, Any] | None = None,
    transports: Collection[str] | None = None,
) -> Connection:
    """Open a connection, composing every plugin that can serve ``uri``.

    ``uri`` None: ``$VIRTKIT_DEFAULT_URI``, else the highest-priority URI an installed plugin
    proposes. ``strict`` (default ``$VIRTKIT_STRICT``) turns a broken plugin into an error instead
    of a recorded skip. ``prefer``/``exclude`` map an operation (or ``"*"``) to plugin names;
    ``fallback`` names operations allowed to fall through to the next candidate on error.

    ``transports`` (default: any) lists the ``+transport`` parts a URI may name: a URI naming a
    local program runs it (``+ext?command=``; ``+ssh`` runs ssh), so code that opens URIs from
    its own users should allow only what it trusts (``transports=()``: local URIs only; ``("ssh",)``).
    Any other transport is a PermissionDenied before any plugin is imported.
    """
    if strict is None:
        strict = os.environ.get("VIRTKIT_STRICT", "") not in ("", "0")
    timeout = check_timeout(timeout)
    opts = ComposeOptions(
        readonly=readonly,
        timeout=timeout,
        strict=strict,
        plugins=tuple(plugins),
        entry_points=entry_points,
        prefer=dict(prefer or {}),
        exclude={k: tuple(v) for k, v in (exclude or {}).items()},
        fallback=tuple(fallback),
        params=dict(params or {}),
    )
    if uri is None:
        uri = os.environ.get(DEFAULT_URI_ENV) or probe_default_uri(opts)
        if uri is None:
            raise NoDriver(f"no URI given, ${DEFAULT_URI_ENV} unset, and no installed plugin proposes a default")
    parsed = uri if isinstance(uri, URI) else parse_uri(uri)
    if transports is not None and parsed.transport is not None:
        allowed = [transports] if isinstance(transports, str) else list(transports)
        if parsed.transport not in allowed:
            shown = ", ".join(f"+{t}" for t in allowed) or "none"
            why = f"transport +{parsed.transport} is not allowed here (allowed: {shown})"
            raise PermissionDenied(why, uri=str(parsed))
    return Connection(parsed, opts)


class Connection(ConnectionStats):
    """An open connection: the effective vtable, built once, and the drivers behind it."""

    __slots__ = ("_closed", "_drivers", "_explanation", "_lock", "_served", "_vt", "readonly", "uri")

    def __init__(self, uri: URI, opts: ComposeOptions) -> None:
        comp = compose(uri, opts)
        self.uri = uri
        self.readonly = opts.readonly
        self._vt = comp.vtable
        self._served = comp.served_by
        self._drivers = comp.drivers
        self._explanation = comp.explanation
        self._closed = False
        self._lock = threading.Lock()

    # -- lifecycle and introspection ---------------------------------------------------------

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.readonly else "open")
        return f"<virtkit.Connection {self.uri} {state}>"

    @property
    def vtable(self) -> Mapping[str, Callable[..., Any]]:
        """The effective vtable: operation -> the one bound callable that serves it (read-only)."""
        return types.MappingProxyType(self._vt)

    @property
    def closed(self) -> bool:
        return self._closed

    def served_by(self, operation: str) -> str | None:
        """The plugin serving ``operation``, or None when no plugin provides it."""
        return self._served.get(operation)

    def explain(self) -> Explanation:
        """Per operation: chosen plugin and priority, candidates that lost; who declined, who failed."""
        return self._explanation

    def close(self) -> None:
        """Close every driver; afterwards every operation raises ConnectionClosed. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for op in self._vt:  # same dict the Domains hold: they see the change at once
                self._vt[op] = _closed_slot(op)
            drivers, self._drivers = self._drivers, []
        errors = []
        for name, driver in drivers:
            close = getattr(driver, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    errors.append(DriverError(f"closing failed: {exc}", driver=name, uri=str(self.uri)))
        if errors:
            raise errors[0]

    def _fail(self, op: str, exc: Exception) -> VirtError:
        """Complete a VirtError's fields, or wrap a backend's own exception as DriverError."""
        if isinstance(exc, VirtError):
            if exc.operation is None:
                exc.operation = op
            if exc.driver is None:
                exc.driver = self._served.get(op)
            if exc.uri is None:
                exc.uri = str(self.uri)
            return exc
        err = DriverError(f"{type(exc).__name__}: {exc}", operation=op, driver=self._served.get(op), uri=str(self.uri))
        err.__cause__ = exc
        return err

    # -- connection operations ---------------------------------------------------------------

    def type(self, *, flags: int = 0) -> str:
        try:
            return self._vt["connect_get_type"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_get_type", exc)

    def version(self, *, flags: int = 0) -> Version:
        try:
            return self._vt["connect_get_version"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_get_version", exc)

    def hostname(self, *, flags: int = 0) -> str:
        try:
            return self._vt["connect_get_hostname"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_get_hostname", exc)

    def node_info(self, *, flags: int = 0) -> NodeInfo:
        try:
            return self._vt["node_get_info"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("node_get_info", exc)

    def list_domains(self, *, flags: int = 0) -> list[int]:
        """Ids of running domains (libvirt's listDomainsID)."""
        try:
            return self._vt["connect_list_domains"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_list_domains", exc)

    def num_of_domains(self, *, flags: int = 0) -> int:
        try:
            return self._vt["connect_num_of_domains"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_num_of_domains", exc)

    def list_defined_domains(self, *, flags: int = 0) -> list[str]:
        """Names of defined domains that are not running."""
        try:
            return self._vt["connect_list_defined_domains"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_list_defined_domains", exc)

    def lookup_by_id(self, id: int, *, flags: int = 0) -> Domain:  # noqa: A002 - libvirt's name
        try:
            return Domain(self, self._vt["domain_lookup_by_id"](id, flags=flags))
        except Exception as exc:
            raise self._fail("domain_lookup_by_id", exc)

    def lookup_by_name(self, name: str, *, flags: int = 0) -> Domain:
        try:
            return Domain(self, self._vt["domain_lookup_by_name"](name, flags=flags))
        except Exception as exc:
            raise self._fail("domain_lookup_by_name", exc)

    def lookup_by_uuid(self, uuid: _uuid.UUID | str, *, flags: int = 0) -> Domain:
        try:
            u = uuid if isinstance(uuid, _uuid.UUID) else _uuid.UUID(str(uuid))
        except ValueError:
            raise InvalidArgument(f"not a UUID: {uuid!r}", operation="domain_lookup_by_uuid") from None
        try:
            return Domain(self, self._vt["domain_lookup_by_uuid"](u, flags=flags))
        except Exception as exc:
            raise self._fail("domain_lookup_by_uuid", exc)

    def create(self, config: DomainConfig, *, flags: int = 0) -> Domain:
        """Start a new transient domain from ``config``."""
        try:
            return Domain(self, self._vt["domain_create"](check_domain_config(config), flags=flags))
        except Exception as exc:
            raise self._fail("domain_create", exc)

    def define(self, config: DomainConfig, *, flags: int = 0) -> Domain:
        """Define a persistent domain without starting it."""
        try:
            return Domain(self, self._vt["domain_define"](check_domain_config(config), flags=flags))
        except Exception as exc:
            raise self._fail("domain_define", exc)

    def domain_event_register(self, callback: Callable[[DomainEvent], None], *, flags: int = 0) -> Callable[[], None]:
        """Call ``callback`` on every domain lifecycle event; returns a function that cancels."""
        try:
            return self._vt["connect_domain_event_register"](callback, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_domain_event_register", exc)

    # -- conveniences built on the operations --------------------------------------------------

    def lookup(self, text: str) -> Domain:
        """Find a domain as virsh's DOM argument does: an id, else a UUID, else a name."""
        text = text.strip()
        # isdigit() alone is true for '²' and other digits int() refuses; Xen and libvirt ids
        # fit in a C int, so longer digit strings can only be names.
        if text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= _MAX_ID:
            try:
                return self.lookup_by_id(int(text))
            except NoSuchDomain:
                pass
        try:
            u = _uuid.UUID(text)
        except ValueError:
            u = None
        if u is not None:
            return self.lookup_by_uuid(u)
        return self.lookup_by_name(text)

    def domains(self, *, all: bool = False) -> list[Domain]:  # noqa: A002 - virsh's --all
        """Running domains (by id); with ``all``, defined inactive ones after them."""
        doms: list[Domain] = []
        for i in self.list_domains():
            try:
                doms.append(self.lookup_by_id(i))
            except NoSuchDomain:  # went away between list and lookup
                continue
        if all:
            for name in self.list_defined_domains():
                try:
                    doms.append(self.lookup_by_name(name))
                except NoSuchDomain:
                    continue
        return doms

    def events(self, *, maxsize: int = 1000) -> EventStream:
        """A stream of domain events; use as a context manager and iterate with a timeout."""
        return EventStream(self, maxsize)


_MAX_ID = 2**31 - 1


def _closed_slot(op: str) -> Callable[..., Any]:
    def closed(*_a: object, **_k: object) -> Any:
        raise ConnectionClosed("the connection is closed", operation=op)

    return closed


class Domain(DomainStatsMethods):
    """A domain as seen through one connection; compares equal by connection and UUID."""

    __slots__ = ("_conn", "_ref", "_vt")

    def __init__(self, conn: Connection, ref: DomainRef) -> None:
        if not isinstance(ref, DomainRef):
            raise DriverError(f"driver returned {type(ref).__name__}, not a DomainRef", uri=str(conn.uri))
        self._conn = conn
        self._ref = ref
        self._vt = conn._vt

    def __repr__(self) -> str:
        return f"<virtkit.Domain {self._ref.name} id={self._ref.id} uuid={self._ref.uuid}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Domain) and other._conn is self._conn and other._ref.uuid == self._ref.uuid

    def __hash__(self) -> int:
        return hash(self._ref.uuid)

    @property
    def connection(self) -> Connection:
        return self._conn

    @property
    def ref(self) -> DomainRef:
        return self._ref

    @property
    def id(self) -> int | None:
        """The running domain's id; None when it is defined but not running."""
        return self._ref.id

    @property
    def name(self) -> str:
        return self._ref.name

    @property
    def uuid(self) -> _uuid.UUID:
        return self._ref.uuid

    def _refresh(self) -> None:
        """After a lifecycle change the id may have changed: ask again by UUID."""
        try:
            self._ref = self._vt["domain_lookup_by_uuid"](self._ref.uuid)
        except NoSuchDomain:
            self._ref = DomainRef(self._ref.name, self._ref.uuid, None)
        except Exception:
            pass

    def info(self, *, flags: int = 0) -> DomainInfo:
        try:
            return self._vt["domain_get_info"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_info", exc)

    def state(self, *, flags: int = 0) -> DomainStateInfo:
        try:
            return self._vt["domain_get_state"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_state", exc)

    def is_active(self) -> bool:
        return self.info().state not in (DomainState.SHUTOFF, DomainState.NOSTATE)

    def suspend(self, *, flags: int = 0) -> None:
        try:
            self._vt["domain_suspend"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_suspend", exc)

    def resume(self, *, flags: int = 0) -> None:
        try:
            self._vt["domain_resume"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_resume", exc)

    def shutdown(self, *, flags: int = 0) -> None:
        try:
            self._vt["domain_shutdown"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_shutdown", exc)
        self._refresh()

    def reboot(self, *, flags: int = 0) -> None:
        try:
            self._vt["domain_reboot"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_reboot", exc)

    def destroy(self, *, flags: int = 0) -> None:
        try:
            self._vt["domain_destroy"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_destroy", exc)
        self._refresh()

    def set_memory(self, memory: int, *, flags: int = 0) -> None:
        """Set current memory, in KiB."""
        try:
            self._vt["domain_set_memory"](self._ref, check_memory(memory), flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_set_memory", exc)

    def set_max_memory(self, memory: int, *, flags: int = 0) -> None:
        """Set maximum memory, in KiB."""
        try:
            self._vt["domain_set_max_memory"](self._ref, check_memory(memory), flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_set_max_memory", exc)

    def max_memory(self, *, flags: int = 0) -> int:
        try:
            return self._vt["domain_get_max_memory"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_max_memory", exc)

    def os_type(self, *, flags: int = 0) -> str:
        try:
            return self._vt["domain_get_os_type"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_os_type", exc)

    def vcpus(self, *, flags: int = 0) -> int:
        """Online vcpus; ``flags=VcpuFlags.MAXIMUM`` for the maximum."""
        try:
            return self._vt["domain_get_vcpus"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_vcpus", exc)

    def set_vcpus(self, count: int, *, flags: int = 0) -> None:
        try:
            self._vt["domain_set_vcpus"](self._ref, check_vcpus(count), flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_set_vcpus", exc)

    def start(self, *, flags: int = 0) -> None:
        """Start a defined domain (libvirt's ``dom.create()``)."""
        try:
            ref = self._vt["domain_start"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_start", exc)
        if isinstance(ref, DomainRef):
            self._ref = ref
        else:
            self._refresh()

    def undefine(self, *, flags: int = 0) -> None:
        try:
            self._vt["domain_undefine"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_undefine", exc)

    def config(self, *, flags: int = 0) -> DomainConfig:
        try:
            return self._vt["domain_get_config"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_config", exc)


def _wait_seconds(timeout: object) -> float | None:
    """None for no limit, else seconds >= 0; NaN, negatives and non-numbers refused."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgument(f"timeout must be a number of seconds or None, got {type(timeout).__name__}")
    if not timeout >= 0:  # also NaN
        raise InvalidArgument(f"timeout must be 0 or more seconds, got {timeout!r}")
    # queue.get's wait ends in a C timespec: one past threading's ceiling is a wait without end
    return None if timeout >= threading.TIMEOUT_MAX else float(timeout)


class _Callback:
    """What an EventStream registers: called with each event. A driver whose event source dies
    (a remote link) calls ``virtkit_error(exc)`` where the callback has it; the stream raises it."""

    __slots__ = ("_stream",)

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream

    def __call__(self, event: DomainEvent) -> None:
        self._stream._push(event)

    def virtkit_error(self, error: VirtError) -> None:
        self._stream._end(error)


_ENDED: Any = object()  # queued after the last event of a stream whose source died


class EventStream:
    """Domain events delivered into a bounded queue; iterate with :meth:`get` or ``for``.

    The driver's callback runs on the driver's thread and only enqueues; a full queue drops the
    oldest event and counts it in ``dropped`` rather than blocking the driver. When the driver's
    event source dies (a remote link), :meth:`get` and :meth:`iter` raise its typed error after
    the events received before it, instead of waiting for events that cannot come.
    """

    def __init__(self, conn: Connection, maxsize: int = 1000) -> None:
        self._q: queue.Queue[DomainEvent] = queue.Queue(maxsize)
        self.dropped = 0
        self.error: VirtError | None = None
        self._cancel = conn.domain_event_register(_Callback(self))

    def _end(self, error: VirtError) -> None:
        if self.error is None:
            self.error = error
            self._push(_ENDED)

    def _push(self, event: DomainEvent) -> None:
        while True:
            try:
                self._q.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float | None) -> DomainEvent | None:
        """The next event, or None after ``timeout`` seconds: 0 polls, None or ``inf`` waits
        forever; a negative or NaN timeout is an InvalidArgument."""
        wait = _wait_seconds(timeout)
        try:
            event = self._q.get_nowait() if wait == 0 else self._q.get(timeout=wait)
        except queue.Empty:
            return None
        if event is _ENDED:
            self._push(_ENDED)  # every later get() raises too
            assert self.error is not None
            raise self.error
        return event

    def iter(self, timeout: float | None) -> Iterator[DomainEvent]:
        """Events until ``timeout`` seconds have passed in total (None or ``inf``: forever)."""
        wait = _wait_seconds(timeout)
        if wait is None:
            while True:
                ev = self.get(None)
                if ev is not None:
                    yield ev
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ev = self.get(left)
            if ev is not None:
                yield ev

    def close(self) -> None:
        self._cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
