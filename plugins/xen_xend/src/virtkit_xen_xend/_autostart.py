"""Autostart (catalogue 1.2) from xend's ``on_xend_start``, as libvirt's xend driver did it.

xend (3.1.0 and later, ``XendDomain.autostart_domains``) starts each halted managed domain whose
config says ``(on_xend_start start)`` when xend starts; ``ignore`` is the default. xend stores
any string there (``XendConfig`` types it ``str``, nothing checks it) and starts the domain only
on exactly ``start``, so any other value, or none, reads as False. xend 3.0.4
(``xend_config_format`` 3 in ``/xend/node``; 3.1.0 says 4) stored the key but started nothing:
there every domain reads False and setting it is Unsupported.

Setting it is libvirt's round trip: the domain's record with ``on_xend_start`` replaced, posted
back with ``op=new`` (the define call). Only a domain without a domid: xend's replies say
nothing of whether one with a domid is managed, and ``op=new`` would silently make a transient
one managed; and for a running managed one xend stores the new config but keeps answering with
the running domain's old value until it stops. ``domain_is_persistent`` is not served for the same
reason (libvirt read ``/var/lib/xend/domains/UUID`` behind xend's back, which a client of xend's
HTTP API cannot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from virtkit import DomainRef, InvalidArgument, InvalidOperation, ProtocolError, Unsupported, check_flags

from ._numbers import number
from ._sxp import Sxp, dumps, value
from ._vmsxp import RUNTIME_KEYS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._model import XendDomain
    from ._transport import Transport

__all__ = ["AUTOSTART_FORMAT", "KEY", "AutostartMixin", "autostart_of", "autostart_value", "with_autostart"]

KEY = "on_xend_start"
#: What xend computes for a live domain; memory_dynamic_min/max are the balloon's bounds in xend's
#: config, so they go back with it (dropping them would move the floor to ``memory``).
_LIVE_KEYS = RUNTIME_KEYS - {"memory_dynamic_min", "memory_dynamic_max"}
#: The first xend_config_format whose xend starts marked domains (3.1.0, changeset ff7c54e3c3).
AUTOSTART_FORMAT = 4


def autostart_value(rec: Sxp) -> str | None:
    """The raw ``on_xend_start`` of a ``(domain ...)`` record (None when absent, ``""`` for
    ``(on_xend_start )``, xend's writing of an empty string); a shape xend never writes (a list
    as the value, several values, the key twice) is a ProtocolError."""
    found = [c for c in rec[1:] if isinstance(c, list) and c and c[0] == KEY] if isinstance(rec, list) else []
    if not found:
        return None
    if len(found) > 1:
        raise ProtocolError(f"xend sent {KEY} {len(found)} times in one record")
    item = found[0]
    if len(item) > 2 or (len(item) == 2 and not isinstance(item[1], str)):
        raise ProtocolError(f"xend sent a malformed {KEY}: {dumps(item)[:80]!r}")
    return item[1] if len(item) == 2 and isinstance(item[1], str) else ""


def autostart_of(rec: Sxp) -> bool:
    """Whether xend starts this domain when it starts: only ``start`` does."""
    return autostart_value(rec) == "start"


def with_autostart(rec: Sxp, autostart: bool) -> list[Sxp]:
    """The ``(vm ...)`` for op=new: ``rec`` without its runtime keys, ``on_xend_start`` set.

    What xend computes for a live domain is left out (libvirt posted the record whole; xend
    ignores those in a config); the image, devices and every other key stay as xend sent them.
    """
    if not isinstance(rec, list) or not rec or rec[0] != "domain":
        raise ProtocolError(f"xend sent {dumps(rec)[:80]!r} as a domain record")
    autostart_value(rec)  # a malformed value is xend's error, not something to overwrite blindly
    val = "start" if autostart else "ignore"
    vm: list[Sxp] = ["vm"]
    placed = False
    for c in rec[1:]:
        if isinstance(c, list) and c and isinstance(c[0], str):
            if c[0] in _LIVE_KEYS:
                continue
            if c[0] == KEY:
                vm.append([KEY, val])
                placed = True
                continue
        vm.append(c)
    if not placed:  # xend >= 3.0.4 always writes it; append rather than refuse, xend reads it wherever it is
        vm.append([KEY, val])
    return vm


class AutostartMixin:
    """``domain_get_autostart`` / ``domain_set_autostart`` of :class:`virtkit_xen_xend.Driver`."""

    __slots__ = ()

    if TYPE_CHECKING:
        _t: Transport

        def _get(self, dom: DomainRef) -> XendDomain: ...
        def _call(
            self,
            method: str,
            path: str,
            *,
            params: Mapping[str, str] | None = None,
            form: Mapping[str, str] | None = None,
            what: str = "",
        ) -> Sxp | None: ...

    def _config_format(self) -> int:
        node = self._call("GET", "/xend/node/")
        if not isinstance(node, list) or not node or node[0] != "node":
            raise ProtocolError(f"xend at {self._t.where} sent no (node ...) record for /xend/node/")
        # absent before 3.0.4 (libvirt read that as format 1)
        return number(value(node, "xend_config_format"), "node field 'xend_config_format'", high=1 << 16) or 1

    def domain_get_autostart(self, dom: DomainRef, *, flags: int = 0) -> bool:
        check_flags(flags)
        with self._t.operation():
            rec = self._get(dom)
            marked = autostart_of(rec.sxp)  # read first: a malformed record is an error whatever the xend
            return marked and self._config_format() >= AUTOSTART_FORMAT

    def domain_set_autostart(self, dom: DomainRef, autostart: bool, *, flags: int = 0) -> None:
        check_flags(flags)
        if not isinstance(autostart, bool):
            raise InvalidArgument(f"autostart must be a bool, got {autostart!r}")
        with self._t.operation():
            fmt = self._config_format()
            if fmt < AUTOSTART_FORMAT:
                raise Unsupported(
                    f"xend at {self._t.where} (xend_config_format {fmt}) starts no domain when it starts; "
                    "xend 3.1.0 (format 4) was the first to"
                )
            rec = self._get(dom)  # by name, uuid checked: never rewrite another domain's config
            # only a record without a domid is surely a managed definition (xend lists a halted
            # domain only if it manages it); one with a domid may be transient, even shut off
            # (xend drops a stopped domain's domid only once it has torn it down)
            if rec.id is not None:
                raise InvalidOperation(
                    f"cannot change autostart of domain {rec.name!r} while it has a domain id: xend does not tell "
                    "whether it is managed (op=new would make a transient one managed); shut it off first"
                )
            want = "start" if autostart else "ignore"
            if autostart_value(rec.sxp) == want:
                return  # already so: no op=new, so no window for a concurrent undefine to be undone
            vm = with_autostart(rec.sxp, autostart)
            self._call("POST", "/xend/domain", form={"op": "new", "config": dumps(vm)}, what=repr(rec.name))
