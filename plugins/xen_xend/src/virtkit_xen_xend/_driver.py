"""The xend driver connection: catalogue operations as xend HTTP requests.

Domains are addressed by name in URLs (what every xend understood, and what libvirt sends);
every reply's uuid is checked against the DomainRef so a renamed or recreated domain is never
mistaken for the one the caller meant. Status codes map as xend documents them: 404 ->
NoSuchDomain, 500 with ``(xend.err MSG)`` -> DriverError(MSG), 501 -> Unsupported.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
import urllib.parse
import uuid as _uuid
from collections.abc import Callable, Mapping
from typing import Concatenate, ParamSpec, TypeVar

import virtkit
from virtkit import (
    ConnectionClosed,
    DomainConfig,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    InvalidArgument,
    InvalidOperation,
    NodeInfo,
    NoSuchDomain,
    ProtocolError,
    Unsupported,
    VcpuFlags,
    Version,
    check_flags,
)

from ._autostart import AutostartMixin
from ._model import XendDomain
from ._numbers import MAX_MIB, number
from ._replies import XendError, decode
from ._stats import StatsMixin
from ._sxp import Sxp, dumps, value
from ._transport import Transport
from ._vmsxp import config_to_sxp

__all__ = ["Driver", "XendError"]

log = logging.getLogger("virtkit.xen_xend")

_MAXIMUM = int(VcpuFlags.MAXIMUM)
_DOMAIN = "/xend/domain/"
_MAX_COUNT = 2**31 - 1  # node counts, clock rates and version numbers: C ints in xend's C layer

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _bounded(fn: Callable[Concatenate[Driver, _P], _R]) -> Callable[Concatenate[Driver, _P], _R]:
    """One deadline for the whole operation, however many requests it makes."""

    @functools.wraps(fn)
    def run(self: Driver, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._t.operation():
            return fn(self, *args, **kwargs)

    return run


def _node_int(node: Sxp, key: str, default: int = 0, high: int = _MAX_COUNT) -> int:
    n = number(value(node, key), f"node field {key!r}", high=high, default=default)
    return default if n is None else n


def _segment(name: str) -> str | None:
    """``name`` as one URL path segment, or None when no request may carry it: ``.`` and ``..``
    are dot-segments (a client or proxy resolves them to another URL), ``/`` would split the path
    wherever it gets decoded, and control characters have no place in a request line."""
    if not name or name in (".", "..") or "/" in name:
        return None
    if any(unicodedata.category(c) == "Cc" for c in name):
        return None
    return urllib.parse.quote(name, safe="")


class Driver(StatsMixin, AutostartMixin):
    """One connection to one xend; the methods are the catalogue's operations."""

    __slots__ = ("_closed", "_t", "uri")

    def __init__(self, transport: Transport, uri: str) -> None:
        self._t = transport
        self.uri = uri
        self._closed = False

    def __repr__(self) -> str:
        return f"<virtkit_xen_xend.Driver {self._t.where}{' closed' if self._closed else ''}>"

    @property
    def where(self) -> str:
        return self._t.where

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._t.close()

    # -- the wire ---------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        what: str = "",
    ) -> Sxp | None:
        """One request; the parsed SXP body (None when empty) or the typed error for its status."""
        if self._closed:
            raise ConnectionClosed(f"the connection to xend at {self._t.where} is closed")
        reply = self._t.request(method, path, params=params, form=form)
        return decode(reply, self._t.where, method, path, what)

    def _path(self, key: str, what: str) -> str:
        segment = _segment(key)
        if segment is None:  # no domain xend serves can be named so: never send it
            raise NoSuchDomain(f"no domain {what} on xend at {self._t.where} (no URL can name it)")
        return _DOMAIN + segment

    def _record(self, key: str, what: str) -> XendDomain:
        body = self._call("GET", self._path(key, what), what=what)
        if body is None:
            raise ProtocolError(f"xend at {self._t.where} sent an empty record for domain {what}")
        return XendDomain.from_sxp(body)

    def _get(self, dom: DomainRef) -> XendDomain:
        if not isinstance(dom, DomainRef):
            raise InvalidArgument(f"expected a DomainRef, got {type(dom).__name__}")
        rec = self._record(dom.name, repr(dom.name))
        if rec.uuid != dom.uuid:  # same name, another domain: the one meant is gone
            raise NoSuchDomain(f"no domain {dom.name!r} with uuid {dom.uuid} on xend at {self._t.where}")
        return rec

    def _op(
        self, dom: DomainRef, op: str, check: Callable[[XendDomain], None] | None = None, **fields: str
    ) -> Sxp | None:
        rec = self._get(dom)  # resolve by name and check the uuid before acting on it
        if check is not None:  # the contract's typed errors, from the record just fetched
            check(rec)
        form = {"op": op, **fields}
        return self._call("POST", self._path(dom.name, repr(dom.name)), form=form, what=repr(dom.name))

    def _records(self) -> list[XendDomain]:
        """Every domain xend knows, live or not.

        xend 3.0.4-4.1 ignore ``state=`` once ``detail=1`` is sent and then list only the running
        domains, so ``?detail=1`` gives those; the names of all the others come from
        ``?state=all`` without detail, and each is fetched on its own, as libvirt did.
        """
        body = self._call("GET", "/xend/domain", params={"detail": "1"})
        if body is not None and not isinstance(body, list):
            raise ProtocolError(f"xend at {self._t.where} sent {dumps(body)[:80]!r} for the domain list")
        recs = [XendDomain.from_sxp(x) for x in body or []]
        seen = {r.name for r in recs} | {str(r.uuid) for r in recs}
        body = self._call("GET", "/xend/domain", params={"state": "all"})
        names = [n for n in body if isinstance(n, str)] if isinstance(body, list) else []
        if body is not None and (not isinstance(body, list) or len(names) != len(body)):
            raise ProtocolError(f"xend at {self._t.where} sent {dumps(body)[:80]!r} for the domain names")
        for name in names:
            if name in seen:
                continue
            try:
                rec = self._record(name, repr(name))
            except NoSuchDomain:  # gone since the list was made, or a name no URL can carry
                continue
            if str(rec.uuid) not in seen:
                seen.update((rec.name, str(rec.uuid)))
                recs.append(rec)
        return recs

    def _node(self) -> Sxp:
        body = self._call("GET", "/xend/node/")
        if not isinstance(body, list) or not body or body[0] != "node":
            raise ProtocolError(f"xend at {self._t.where} sent no (node ...) record for /xend/node/")
        return body

    # -- connection -------------------------------------------------------------------------------

    @_bounded
    def connect_get_type(self, *, flags: int = 0) -> str:
        check_flags(flags)
        return "Xen"

    @_bounded
    def connect_get_version(self, *, flags: int = 0) -> Version:
        check_flags(flags)
        node = self._node()
        extra = (value(node, "xen_extra") or "").lstrip(".")
        digits = ""
        for c in extra:
            if not c.isdigit():
                break
            digits += c
        micro = number(digits, "node field 'xen_extra'", high=_MAX_COUNT, default=0) or 0
        return Version(_node_int(node, "xen_major"), _node_int(node, "xen_minor"), micro)

    @_bounded
    def connect_get_hostname(self, *, flags: int = 0) -> str:
        check_flags(flags)
        host = value(self._node(), "host")
        if not host:
            raise ProtocolError(f"xend at {self._t.where} did not say its host name")
        return host

    @_bounded
    def node_get_info(self, *, flags: int = 0) -> NodeInfo:
        check_flags(flags)
        node = self._node()
        cpus = _node_int(node, "nr_cpus")
        nodes = _node_int(node, "nr_nodes", 1) or 1
        cores = _node_int(node, "cores_per_socket", 1) or 1
        threads = _node_int(node, "threads_per_core", 1) or 1
        sockets = _node_int(node, "sockets_per_node", 0)
        if not sockets:  # xend >= 3.2 dropped it: libvirt derives it the same way
            sockets = max(1, cpus // (nodes * cores * threads))
        free = value(node, "free_memory")
        return NodeInfo(
            model=value(node, "machine") or "",
            memory=_node_int(node, "total_memory", high=MAX_MIB) << 10,
            cpus=cpus,
            mhz=_node_int(node, "cpu_mhz"),
            nodes=nodes,
            sockets=sockets,
            cores=cores,
            threads=threads,
            free_memory=(_node_int(node, "free_memory", high=MAX_MIB) << 10) if free is not None else None,
        )

    @_bounded
    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        check_flags(flags)
        return sorted(d.id for d in self._records() if d.active and d.id is not None)

    @_bounded
    def connect_num_of_domains(self, *, flags: int = 0) -> int:
        return len(self.connect_list_domains(flags=flags))

    @_bounded
    def connect_list_defined_domains(self, *, flags: int = 0) -> list[str]:
        check_flags(flags)
        return sorted(d.name for d in self._records() if not d.active)

    # -- lookups ----------------------------------------------------------------------------------

    @_bounded
    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002 - catalogue name
        check_flags(flags)
        if not isinstance(id, int) or isinstance(id, bool) or id < 0:
            raise InvalidArgument(f"domain id must be a non-negative int, got {id!r}")
        rec = self._record(str(id), f"with id {id}")
        if rec.id != id or not rec.active:
            # xend matches names before ids: a domain *named* "5" answered; look through the list
            for d in self._records():
                if d.id == id and d.active:
                    return d.ref
            raise NoSuchDomain(f"no running domain with id {id} on xend at {self._t.where}")
        return rec.ref

    @_bounded
    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"domain name must be a non-empty str, got {name!r}")
        rec = self._record(name, repr(name))
        if rec.name != name:  # xend fell back to an id or uuid match
            raise NoSuchDomain(f"no domain named {name!r} on xend at {self._t.where}")
        return rec.ref

    @_bounded
    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        if not isinstance(uuid, _uuid.UUID):
            raise InvalidArgument(f"expected a uuid.UUID, got {type(uuid).__name__}")
        rec = self._record(str(uuid), f"with uuid {uuid}")
        if rec.uuid != uuid:
            raise NoSuchDomain(f"no domain with uuid {uuid} on xend at {self._t.where}")
        return rec.ref

    # -- domain state -----------------------------------------------------------------------------

    @_bounded
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        check_flags(flags)
        return self._get(dom).info()

    @_bounded
    def domain_get_state(self, dom: DomainRef, *, flags: int = 0) -> DomainStateInfo:
        check_flags(flags)
        return self._get(dom).state_info()

    @_bounded
    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        check_flags(flags)
        return self._get(dom).max_memory

    @_bounded
    def domain_get_os_type(self, dom: DomainRef, *, flags: int = 0) -> str:
        check_flags(flags)
        return self._get(dom).os_type

    @_bounded
    def domain_get_vcpus(self, dom: DomainRef, *, flags: int = 0) -> int:
        check_flags(flags, _MAXIMUM)
        rec = self._get(dom)
        return rec.max_vcpus if flags & _MAXIMUM else rec.vcpus

    @_bounded
    def domain_get_config(self, dom: DomainRef, *, flags: int = 0) -> DomainConfig:
        check_flags(flags)
        return self._get(dom).to_config()

    # -- lifecycle --------------------------------------------------------------------------------

    @_bounded
    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)

        def check(rec: XendDomain) -> None:
            _running(rec, "suspend")
            _not_dom0(rec, "suspend")
            if rec.state is DomainState.PAUSED:
                raise InvalidOperation(f"cannot suspend domain {rec.name!r}: it is already paused")

        self._op(dom, "pause", check)

    @_bounded
    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)

        def check(rec: XendDomain) -> None:
            _running(rec, "resume")
            _not_dom0(rec, "resume")
            if rec.state is not DomainState.PAUSED:
                raise InvalidOperation(f"cannot resume domain {rec.name!r}: it is not paused")

        self._op(dom, "unpause", check)

    @_bounded
    def domain_shutdown(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        self._op(dom, "shutdown", lambda rec: _live_guest(rec, "shut down"), reason="poweroff")

    @_bounded
    def domain_reboot(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        self._op(dom, "shutdown", lambda rec: _live_guest(rec, "reboot"), reason="reboot")

    @_bounded
    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)
        self._op(dom, "destroy", lambda rec: _live_guest(rec, "destroy"))

    @_bounded
    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        check_flags(flags)
        mib = _to_mib(memory)

        def check(rec: XendDomain) -> None:
            if memory > rec.max_memory:
                raise InvalidArgument(
                    f"memory {memory} KiB is above the maximum of domain {rec.name!r} ({rec.max_memory} KiB)"
                )

        self._op(dom, "mem_target_set", check, target=str(mib))

    @_bounded
    def domain_set_max_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        check_flags(flags)
        self._op(dom, "maxmem_set", memory=str(_to_mib(memory)))

    @_bounded
    def domain_set_vcpus(self, dom: DomainRef, count: int, *, flags: int = 0) -> None:
        check_flags(flags, _MAXIMUM)
        if flags & _MAXIMUM:
            raise Unsupported("xend cannot change a domain's maximum vcpus (only the online count)")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidArgument(f"vcpu count must be a positive int, got {count!r}")

        def check(rec: XendDomain) -> None:
            if count > rec.max_vcpus:
                raise InvalidArgument(f"{count} vcpus is above the maximum of domain {rec.name!r} ({rec.max_vcpus})")

        self._op(dom, "set_vcpus", check, vcpus=str(count))

    @_bounded
    def domain_create(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        return self._new("create", config)

    @_bounded
    def domain_define(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        check_flags(flags)
        return self._new("new", config)

    def _new(self, op: str, config: DomainConfig) -> DomainRef:
        if not isinstance(config, DomainConfig):
            raise InvalidArgument(f"expected a DomainConfig, got {type(config).__name__}")
        virtkit.check_domain_name(config.name)  # the one rule for names entering, before any request
        vm = config_to_sxp(config)
        try:
            self._record(config.name, repr(config.name))
        except NoSuchDomain:
            pass
        else:
            raise InvalidOperation(f"a domain named {config.name!r} already exists on xend at {self._t.where}")
        body = self._call("POST", "/xend/domain", form={"op": op, "config": dumps(vm)})
        if isinstance(body, list) and body and body[0] == "domain":
            return XendDomain.from_sxp(body).ref
        rec = self._record(config.name, repr(config.name))  # older xend answers op=new with no body
        return rec.ref

    @_bounded
    def domain_start(self, dom: DomainRef, *, flags: int = 0) -> DomainRef:
        check_flags(flags)

        def check(rec: XendDomain) -> None:
            if rec.active:
                raise InvalidOperation(f"cannot start domain {rec.name!r}: it is already running")

        self._op(dom, "start", check)
        return self._get(dom).ref

    @_bounded
    def domain_undefine(self, dom: DomainRef, *, flags: int = 0) -> None:
        check_flags(flags)

        def check(rec: XendDomain) -> None:
            if rec.active:  # xend deletes halted domains only
                raise InvalidOperation(f"cannot undefine domain {rec.name!r} while it runs: destroy it first")

        self._op(dom, "delete", check)


def _running(rec: XendDomain, verb: str) -> None:
    if not rec.active:
        raise InvalidOperation(f"cannot {verb} domain {rec.name!r}: it is not running")


def _not_dom0(rec: XendDomain, verb: str) -> None:
    """xend refuses to pause, unpause, shut down, reset or destroy the privileged domain."""
    if rec.id == 0:
        raise InvalidOperation(f"cannot {verb} domain {rec.name!r}: it is Domain-0, which xend never acts on")


def _live_guest(rec: XendDomain, verb: str) -> None:
    _running(rec, verb)
    _not_dom0(rec, verb)


def _to_mib(kib: int) -> int:
    """xend takes MiB: KiB are rounded down to whole MiB, as libvirt does (``kib >> 10``)."""
    if not isinstance(kib, int) or isinstance(kib, bool) or kib < 1024:
        raise InvalidArgument(f"memory must be an int of at least 1024 KiB (xend counts MiB), got {kib!r}")
    return kib >> 10
