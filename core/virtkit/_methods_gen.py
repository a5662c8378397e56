"""Writes ``_methods.py``, the public methods of Connection and Domain, from the catalogue.

``python -m virtkit._methods_gen`` rewrites the file; a test fails when it is stale. The methods
are plain source, not built at import: mypy and IDEs read their signatures and docstrings, a
traceback shows their lines, ``import virtkit`` compiles nothing, and each is one vtable lookup
and one call, as a hand-written one was (bench/dispatch.py).

What the catalogue does not say about the public side is in the small tables below: which
argument the core checks or converts before a driver sees it, and the public type or default
where it differs from the slot's.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ._catalogue import CATALOGUE, Operation, Param

__all__ = ["TARGET", "render"]

TARGET = Path(__file__).with_name("_methods.py")

# argument name -> the core's check or conversion, applied before the driver is called (a typed
# error, never a driver's surprise; Domains passed where the slot takes DomainRefs)
_CHECKS = {
    "memory": "check_memory",
    "count": "check_vcpus",
    "config": "check_domain_config",
    "uuid": "as_uuid",
    "domains": "as_domain_refs",
    "autostart": "check_bool",
}
# catalogue type -> the public parameter's annotation, where the public side accepts more
_PUBLIC_TYPES = {"UUID": "_uuid.UUID | str"}
# (operation, argument) -> the public annotation and default, where that argument's differ from
# the slot's: the core fills in and checks the groups, and takes Domains as well as refs
_PUBLIC_PARAMS = {
    ("connect_get_all_domain_stats", "groups"): ("Iterable[str] | str | None", "None"),
    ("connect_get_all_domain_stats", "domains"): ("Iterable[Domain | DomainRef] | None", "None"),
    ("domain_block_stats", "device"): ("str", '""'),
}


def public_param(op: Operation, param: Param) -> tuple[str, str | None]:
    """The public method's annotation and default (None: required) for one of ``op``'s params."""
    annotation, default = _PUBLIC_PARAMS.get((op.name, param.name), (None, None))
    return annotation or _PUBLIC_TYPES.get(param.type, param.type), default


_WIDTH = 120  # ruff's line length (pyproject.toml)
_TYPES = ("DomainConfig", "DomainEvent", "DomainInfo", "DomainRef", "DomainStateInfo", "NodeInfo", "Version")
# the statistics records, named in annotations only: _stats stays off the path of a connection
# that never asks for statistics
_STATS_TYPES = ("BlockStats", "DomainStats", "InterfaceStats", "MemoryStats", "VcpuInfo")

_HEAD = '''"""The public methods of Connection and Domain: GENERATED from the catalogue, do not edit.

Regenerate with ``python -m virtkit._methods_gen`` (a test fails when this file is stale). Each
method is one vtable lookup and one call; an error is completed on the way out (the operation,
the plugin that served it, the redacted URI) and a backend's own exception becomes a DriverError.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import {abc}

from ._input import {checks}
from ._types import {types}

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any

    from ._connection import Connection, Domain
    from ._stats import {stats_types}

__all__ = ["ConnectionMethods", "DomainMethods"]
'''

_CONNECTION_HEAD = '''

class ConnectionMethods:
    """The catalogue's connection operations as methods of :class:`virtkit.Connection`."""

    __slots__ = ()

    if TYPE_CHECKING:
        _vt: dict[str, Callable[..., Any]]
        _Domain: Callable[[Any, DomainRef], Domain]  # the Domain class

        def _fail(self, op: str, exc: Exception) -> Exception: ...
'''

_DOMAIN_HEAD = '''

class DomainMethods:
    """The catalogue's domain operations as methods of :class:`virtkit.Domain`."""

    __slots__ = ()

    if TYPE_CHECKING:
        _vt: dict[str, Callable[..., Any]]
        _ref: DomainRef
        _conn: Connection

        def _refresh(self, ref: object = None) -> None: ...
        def _stopped(self) -> None: ...
'''


def _method(op: Operation) -> str:
    on_domain = op.owner == "domain"
    params = op.params[1:] if on_domain else op.params
    parts = ["self"]
    for p in params:
        annotation, default = public_param(op, p)
        parts.append(f"{p.name}: {annotation}{'' if default is None else ' = ' + default}")
    parts += ["*", "flags: int = 0"]
    noqa = "  # noqa: A002 - libvirt's name" if any(p.name in ("id", "type") for p in params) else ""
    args = ", ".join(
        ["self._ref"] * on_domain + [f"{_CHECKS[p.name]}({p.name})" if p.name in _CHECKS else p.name for p in params]
    )
    call = f'self._vt["{op.name}"]({args}{", " if args else ""}flags=flags)'
    fail = "self._conn._fail" if on_domain else "self._fail"
    returns = op.returns
    after = ""
    if op.returns == "DomainRef" and not on_domain:  # a lookup or a new domain: a Domain
        returns, body = "Domain", f"return self._Domain(self, {call})"
    elif op.returns == "DomainRef":  # the domain's own new ref (it has an id now)
        returns, body = "None", f"ref = {call}"
        after = "        self._refresh(ref)\n"
    elif op.returns == "None":
        body = call
    else:
        body = f"return {call}  # type: ignore[no-any-return]"
    if op.name == "domain_destroy":  # stopped at once: no id afterwards (the contract), no need to ask
        after = "        self._stopped()\n"
    elif "STOPPED" in op.events:  # a guest's own shutdown may take a while: ask again by UUID
        after = "        self._refresh()\n"
    doc = op.doc.replace("\\", "\\\\")
    head = f"    def {op.method}({', '.join(parts)}) -> {returns}:"
    if len(head) > _WIDTH:  # as ruff format splits it: the arguments on a line, else one a line
        inner = ", ".join(parts)
        if len(inner) + 8 > _WIDTH:
            inner = ",\n        ".join(parts) + ","
        head = f"    def {op.method}(\n        {inner}\n    ) -> {returns}:"
    return (
        f"\n{head}{noqa}\n"
        f'        """{doc}"""\n'
        f"        try:\n"
        f"            {body}\n"
        f"        except Exception as exc:\n"
        f'            raise {fail}("{op.name}", exc)\n'
        f"{after}"
    )


def render() -> str:
    """The text of ``_methods.py`` for the current catalogue."""
    ops = CATALOGUE.values()
    conn = "".join(_method(op) for op in ops if op.owner == "connection")
    dom = "".join(_method(op) for op in ops if op.owner == "domain")
    body = _CONNECTION_HEAD + conn + _DOMAIN_HEAD + dom

    def used(names: tuple[str, ...]) -> str:
        return ", ".join(t for t in names if re.search(rf"\b{t}\b", body))

    checks = ", ".join(sorted({c for c in _CHECKS.values() if f"{c}(" in body}))
    abc = used(("Callable", "Iterable"))
    return _HEAD.format(abc=abc, checks=checks, types=used(_TYPES), stats_types=used(_STATS_TYPES)) + body


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        stale = TARGET.read_text(encoding="utf-8") != text
        if stale:
            print(f"{TARGET} is stale: run python -m virtkit._methods_gen", file=sys.stderr)
        return int(stale)
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
