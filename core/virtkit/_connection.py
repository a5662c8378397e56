"""The public API: Connection and Domain, whose methods are the catalogue's operations.

Those methods are generated from the catalogue (``_methods``, by ``_methods_gen``): each is one
vtable lookup and one call, its errors completed by ``_fail`` (the operation, the plugin that
served it, the redacted URI), a backend's own exception becoming a DriverError with it as the
cause. What is here: opening, closing, introspection, and the conveniences built on the operations.
"""

from __future__ import annotations

import _thread  # threading is not on the start-up path: a lock is all this needs
import os
import types
import uuid as _uuid
from collections.abc import Callable, Collection, Mapping

from ._compose import ComposeOptions, compose, probe_default_uri
from ._errors import ConnectionClosed, DriverError, NoDriver, NoSuchDomain, PermissionDenied, Unsupported, VirtError
from ._explain import Explanation
from ._input import check_timeout
from ._methods import ConnectionMethods, DomainMethods
from ._types import DomainRef, DomainState
from ._uri import URI, parse_uri

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any

    from ._events import EventStream
    from ._stats import DomainStats

__all__ = ["Connection", "Domain", "open"]

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


class Domain(DomainMethods):
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

    def _refresh(self, ref: object = None) -> None:
        """After a lifecycle change the id may have changed: the ref the driver returned, else
        ask again by UUID."""
        if isinstance(ref, DomainRef):
            self._ref = ref
            return
        try:
            self._ref = self._vt["domain_lookup_by_uuid"](self._ref.uuid)
        except NoSuchDomain:
            self._ref = DomainRef(self._ref.name, self._ref.uuid, None)
        except Exception:
            pass

    def _stopped(self) -> None:
        """After a destroy: shut off and defined, or gone; either way no id (no lookup needed)."""
        ref = self._ref
        if ref.id is not None:
            self._ref = DomainRef(ref.name, ref.uuid, None)

    def is_active(self) -> bool:
        return self.info().state not in (DomainState.SHUTOFF, DomainState.NOSTATE)


class Connection(ConnectionMethods):
    """An open connection: the effective vtable, built once, and the drivers behind it."""

    __slots__ = ("_closed", "_drivers", "_explanation", "_lock", "_served", "_vt", "readonly", "uri")
    _Domain = Domain  # what the generated lookups return

    def __init__(self, uri: URI, opts: ComposeOptions) -> None:
        comp = compose(uri, opts)
        self.uri = uri
        self.readonly = opts.readonly
        self._vt = comp.vtable
        self._served = comp.served_by
        self._drivers = comp.drivers
        self._explanation = comp.explanation
        self._closed = False
        self._lock = _thread.allocate_lock()

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
        """Running domains (by id); with ``all``, defined inactive ones after them: one bulk call
        where the stats' ``state`` group is served, else a lookup per domain."""
        listed = self._listed_states(active=True, inactive=all)
        if listed is not None:
            return [Domain(self, ref) for ref, _ in listed]
        return self._looked_up(active=True, inactive=all)

    def _looked_up(self, *, active: bool, inactive: bool) -> list[Domain]:
        """Running domains by id (``active``), then defined ones (``inactive``), by the
        catalogue's listings and a lookup each; a domain gone in between is left out."""
        doms: list[Domain] = []
        for i in self.list_domains() if active else ():
            try:
                doms.append(self.lookup_by_id(i))
            except NoSuchDomain:  # went away between list and lookup
                continue
        for name in self.list_defined_domains() if inactive else ():
            try:
                doms.append(self.lookup_by_name(name))
            except NoSuchDomain:  # undefined between the list and the lookup
                continue
        return doms

    def _listed_states(
        self, *, active: bool = True, inactive: bool = False
    ) -> list[tuple[DomainRef, DomainState]] | None:
        """Running domains by id (``active``), then defined inactive ones (``inactive``), with
        their states, from one bulk call of the stats' ``state`` group (on a remote host one round
        trip; libvirt's listAllDomains). None where that group is not served here: then the
        catalogue's lookups are the way (:meth:`domains`)."""
        if self.served_by("connect_get_all_domain_stats") is None:
            return None
        try:
            stats = self.all_domain_stats(["state"])
        except Unsupported:  # the state group is not among those served here
            return None
        running = (
            sorted((s for s in stats if s.domain.id is not None), key=lambda s: s.domain.id or 0) if active else []
        )
        defined = [s for s in stats if s.domain.id is None] if inactive else []
        out = [(s.domain, s.state.state if s.state else DomainState.NOSTATE) for s in running + defined]
        if inactive:
            out += self._defined_elsewhere(stats)
        return out

    def _defined_elsewhere(self, stats: list[DomainStats]) -> list[tuple[DomainRef, DomainState]]:
        """Defined domains the bulk call (``stats``) cannot see: where the state group is served
        by a plugin that sees running domains only (the hypervisor's) while another keeps the
        definitions. Nothing to add (and no call) when one plugin serves both."""
        keeper = self.served_by("connect_list_defined_domains")
        state = next((r.plugin for r in self.explain().groups if r.operation == "state"), None)
        if keeper is None or keeper == state:
            return []
        seen = {s.domain.uuid for s in stats}
        return [
            (d.ref, DomainState.SHUTOFF) for d in self._looked_up(active=False, inactive=True) if d.uuid not in seen
        ]

    def events(self, *, maxsize: int = 1000) -> EventStream:
        """A stream of domain events; use as a context manager and iterate with a timeout."""
        from ._events import EventStream

        return EventStream(self, maxsize)


_MAX_ID = 2**31 - 1


def _closed_slot(op: str) -> Callable[..., Any]:
    def closed(*_a: object, **_k: object) -> Any:
        raise ConnectionClosed("the connection is closed", operation=op)

    return closed
