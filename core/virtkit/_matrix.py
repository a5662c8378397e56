"""The support matrix: operation x installed plugin, with the priority each would bid.

Built from the catalogue and the plugins' *classes*, never by opening a connection, so it is
the same on every machine whatever hypervisors are present. For each plugin:

* the driver class(es): the plugin's ``virtkit_driver_class`` (a class, a ``"pkg.module:Class"``
  string so the plugin's own import stays cheap, or a tuple of those), else the classes named by
  the return annotation of its ``open`` hook implementation (``-> Driver | Declined``, whatever
  the function is called) when they resolve;
* a reference URI: the plugin's ``virtkit_default_uri`` when it serves that scheme, else
  ``SCHEME:///`` for its first scheme; its ``priority`` hook is asked for that URI (it must be a
  pure function of the URI, as negotiation already requires of hooks: no probing);
* per operation: the method's own ``@virtkit.priority`` if it has one, else the plugin's.
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Collection
from typing import Any, NamedTuple

from ._catalogue import CATALOGUE, CATALOGUE_VERSION
from ._discovery import ANY_SCHEME, inventory
from ._plugin import Declined, call_hook, hook_function, priority_of, register
from ._uri import parse_uri

__all__ = ["Column", "Matrix", "build_matrix"]


class Column(NamedTuple):
    plugin: str
    distribution: str
    schemes: tuple[str, ...]
    uri: str | None  # the reference URI its priority was asked for
    priority: int | None  # the plugin's priority there
    driver_classes: tuple[str, ...]  # qualified names; empty when undeclared
    cells: dict[str, int | None]  # operation -> priority, None when not provided
    note: str = ""  # why the column is empty or partial


class Matrix(NamedTuple):
    catalogue: str
    columns: tuple[Column, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "catalogue": self.catalogue,
            "plugins": [
                {
                    "plugin": c.plugin,
                    "distribution": c.distribution,
                    "schemes": list(c.schemes),
                    "uri": c.uri,
                    "priority": c.priority,
                    "driver_classes": list(c.driver_classes),
                    "note": c.note,
                }
                for c in self.columns
            ],
            "operations": [
                {
                    "operation": op.name,
                    "mandatory": op.mandatory,
                    "mutates": op.mutates,
                    "since": op.since,
                    "priorities": {c.plugin: c.cells.get(op.name) for c in self.columns},
                }
                for op in CATALOGUE.values()
            ],
        }

    def _rows(self, none: str) -> list[list[str]]:
        rows = []
        for op in CATALOGUE.values():
            kind = ("mandatory" if op.mandatory else "") + (" mutates" if op.mutates else "")
            cells = [_cell(c, op.name, none) for c in self.columns]
            rows.append([op.name, kind.strip(), *cells])
        return rows

    def render_text(self) -> str:
        header = ["operation", "kind", *(c.plugin for c in self.columns)]
        rows = self._rows("-")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def fmt(r: list[str]) -> str:
            return "  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()

        lines = [fmt(header), "-" * (sum(widths) + 2 * (len(widths) - 1)), *(fmt(r) for r in rows), ""]
        lines += [f"catalogue {self.catalogue}: the priority each plugin bids (higher wins); '-' not provided"]
        lines += ["'?': the plugin declares no driver class to inspect"]
        lines += [f"  {c.plugin}: {_legend(c)}" for c in self.columns]
        return "\n".join(lines)

    def render_markdown(self) -> str:
        header = ["operation", "kind", *(f"`{c.plugin}`" for c in self.columns)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in self._rows("—"):
            lines.append("| " + " | ".join([f"`{r[0]}`", r[1], *r[2:]]) + " |")
        lines += ["", f"Catalogue {self.catalogue}. A number is the priority the plugin bids for the operation"]
        lines += ["(higher wins when several plugins open one URI); — means not provided, ? that the plugin"]
        lines += ["declares no driver class to inspect.", ""]
        lines += [f"- `{c.plugin}` ({c.distribution}): {_legend(c)}" for c in self.columns]
        return "\n".join(lines) + "\n"


def _cell(c: Column, op: str, none: str) -> str:
    if not c.driver_classes:
        return "?"  # nothing to inspect: unknown, not "not provided"
    value = c.cells.get(op)
    return none if value is None else str(value)


def _legend(c: Column) -> str:
    schemes = ", ".join(
        "any scheme" if s == ANY_SCHEME else f"SCHEME{s}://" if s.startswith("+") else f"{s}://" for s in c.schemes
    )
    parts = [f"schemes {schemes}"]
    if c.uri is not None:
        parts.append(f"priority {c.priority} at {c.uri}")
    if c.driver_classes:
        parts.append("driver " + ", ".join(c.driver_classes))
    if c.note:
        parts.append(c.note)
    return "; ".join(parts)


def _resolve(spec: object) -> type | None:
    """A class, or ``"pkg.module:Class"`` (imported only here, so the plugin's import stays cheap)."""
    if isinstance(spec, type):
        return spec
    if isinstance(spec, str) and ":" in spec:
        module, _, qualname = spec.partition(":")
        obj: object = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj if isinstance(obj, type) else None
    return None


def _driver_classes(plugin: object) -> tuple[type, ...]:
    declared = getattr(plugin, "virtkit_driver_class", None)
    if declared is not None:
        specs = declared if isinstance(declared, tuple) else (declared,)
        classes = tuple(c for c in (_resolve(s) for s in specs) if c is not None)
        if len(classes) != len(specs):
            raise TypeError(f"virtkit_driver_class {declared!r}: expected classes or 'module:Class' strings")
        return classes
    open_hook = hook_function(plugin, "open")
    if open_hook is None:
        return ()
    try:
        ret = typing.get_type_hints(open_hook).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation: the plugin must declare it
        return ()
    found: list[type] = []
    for t in typing.get_args(ret) if isinstance(ret, types.UnionType) or typing.get_origin(ret) else (ret,):
        if isinstance(t, type) and t not in (object, type(None)) and not issubclass(t, Declined):
            found.append(t)
    return tuple(found)


def _column(plugin: object, name: str, dist: str, schemes: tuple[str, ...]) -> Column:
    try:
        classes = _driver_classes(plugin)
    except Exception as exc:  # noqa: BLE001 - shown in the matrix, never fatal
        return Column(name, dist, schemes, None, None, (), {}, f"driver class: {type(exc).__name__}: {exc}")
    names = tuple(f"{c.__module__}.{c.__qualname__}" for c in classes)
    proposal = getattr(plugin, "virtkit_default_uri", None)
    concrete = [s for s in schemes if s != ANY_SCHEME]
    uri: str | None = None
    if isinstance(proposal, str) and proposal.split(":", 1)[0].split("+", 1)[0] in schemes:
        uri = proposal
    elif concrete and concrete[0].startswith("+"):  # a transport's plugin: any scheme, a far host
        uri = f"any{concrete[0]}://host/"
    elif concrete:
        uri = f"{concrete[0]}:///"
    prio: int | None = None
    note = ""
    if uri is not None:
        try:
            has, prio = call_hook(plugin, "priority", uri=parse_uri(uri))
            prio = prio if has else 0
        except Exception as exc:  # noqa: BLE001 - shown in the matrix, never fatal
            note = f"priority({uri}) raised {type(exc).__name__}: {exc}"
        if not isinstance(prio, int) or isinstance(prio, bool):
            note = note or f"priority({uri}) returned {prio!r}"
            prio = None
    if not classes:
        note = note or "driver class not declared (virtkit_driver_class, or annotate open's return)"
    cells: dict[str, int | None] = {}
    for op in CATALOGUE.values():
        method = next((getattr(c, op.name) for c in classes if callable(getattr(c, op.name, None))), None)
        if method is None:
            cells[op.name] = None
        else:
            own = priority_of(method)
            cells[op.name] = own if own is not None else (prio if prio is not None else 0)
    return Column(name, dist, schemes, uri, prio, names, cells, note)


def build_matrix(distributions: Collection[str] | None = None) -> Matrix:
    """The matrix of the installed plugins (only those of ``distributions`` when given).

    Imports every plugin it lists (like ``virtkit drivers``), opens nothing.
    """
    columns = []
    for item in inventory(distributions):
        schemes = item.schemes
        if item.source is None:
            failure = item.failure
            why = "unknown" if failure is None else failure.error
            if failure is not None and failure.exception is not None:  # an import: the type is enough
                why = f"failed to load: {type(failure.exception).__name__}"
            columns.append(Column(item.name, item.distribution, schemes, None, None, (), {}, why))
            continue
        bad = register(item.source.plugin, keep=True)
        if bad is not None:
            columns.append(Column(item.name, item.distribution, schemes, None, None, (), {}, bad))
            continue
        columns.append(_column(item.source.plugin, item.name, item.distribution, schemes))
    columns.sort(key=lambda c: (c.plugin, c.distribution))
    return Matrix(CATALOGUE_VERSION, tuple(columns))
