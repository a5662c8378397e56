"""The contract reference, docs/contract.md, generated from the catalogue and the type modules.

Everything a plugin author needs to write each driver method lives in code: the operations and
their errors and events in :mod:`virtkit._catalogue`, the fields and units of each result and
argument in ``FIELD_DOCS`` of :mod:`virtkit._types` and :mod:`virtkit._stats`, the URI grammar
in :mod:`virtkit._uri`, the input bounds in :mod:`virtkit._input`. This module only renders
them; tests/test_reference.py fails when docs/contract.md differs from what it renders.

    python -m virtkit._reference > docs/contract.md

Imported only when run: ``import virtkit`` never loads it.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping

from . import _errors, _input, _stats, _types, _uri
from ._catalogue import CATALOGUE, CATALOGUE_VERSION, EVENTS_ATTRIBUTE, Operation
from ._plugin import OpenOptions
from ._stats_route import STATS_GROUPS

__all__ = ["RECORD_TYPES", "URI_FIELD_DOCS", "render", "undocumented_fields"]

#: The argument and result types, in the order the reference shows them, with their module.
RECORD_TYPES: tuple[tuple[type, Mapping[str, Mapping[str, str]]], ...] = (
    (_types.DomainRef, _types.FIELD_DOCS),
    (_types.DomainInfo, _types.FIELD_DOCS),
    (_types.DomainStateInfo, _types.FIELD_DOCS),
    (_types.NodeInfo, _types.FIELD_DOCS),
    (_types.Version, _types.FIELD_DOCS),
    (_types.DomainConfig, _types.FIELD_DOCS),
    (_types.DomainEvent, _types.FIELD_DOCS),
    (_types.DomainState, _types.FIELD_DOCS),
    (_types.DomainEventType, _types.FIELD_DOCS),
    (_types.VcpuFlags, _types.FIELD_DOCS),
    (_stats.DomainStats, _stats.FIELD_DOCS),
    (_stats.CpuStats, _stats.FIELD_DOCS),
    (_stats.BalloonStats, _stats.FIELD_DOCS),
    (_stats.VcpuStats, _stats.FIELD_DOCS),
    (_stats.VcpuInfo, _stats.FIELD_DOCS),
    (_stats.VcpuState, _stats.FIELD_DOCS),
    (_stats.BlockStats, _stats.FIELD_DOCS),
    (_stats.InterfaceStats, _stats.FIELD_DOCS),
    (_stats.MemoryStats, _stats.FIELD_DOCS),
)

#: virtkit.URI's fields, as a driver reads them (the URI class lives in _uri, its grammar too).
URI_FIELD_DOCS: Mapping[str, str] = {
    "scheme": "lower case: letters, digits, '-', starting with a letter; never a dot (entry-point names "
    "use it as a separator)",
    "transport": "the part after '+' (`xen+ssh://` -> 'ssh'), same characters as a scheme, or None",
    "user": "percent-decoded user name, or None; a user needs a host",
    "password": "percent-decoded; never in str(uri) or repr: use uri.unredacted() only to authenticate",
    "host": "host name or IP address (an IPv6 literal without its brackets), or None for a local URI",
    "port": "int 1-65535, or None",
    "path": "the path as written, '' or starting with '/' (`test:///default` -> '/default')",
    "query": "(key, value) pairs in order, percent-decoded; uri.params is a dict, the last value winning",
    "fragment": "the part after '#', or None",
}


def _annotation(hint: object) -> str:
    """The annotation as written (NamedTuples keep ForwardRefs), with the public module names."""
    text = str(getattr(hint, "__forward_arg__", hint))
    return text.replace("_uuid.UUID", "uuid.UUID")


def _default(value: object) -> str:
    return "{}" if isinstance(value, Mapping) and not value else repr(value)


def _fields(cls: type) -> list[tuple[str, str, str | None]]:
    """(name, annotation, default shown or None) of a NamedTuple or dataclass."""
    if dataclasses.is_dataclass(cls):
        out = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default: str | None = _default(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = _default(f.default_factory())
            else:
                default = None
            out.append((f.name, _annotation(f.type), default))
        return out
    defaults: dict[str, object] = getattr(cls, "_field_defaults", {})
    hints = {k: _annotation(v) for k, v in cls.__annotations__.items()}
    return [(n, hints[n], _default(defaults[n]) if n in defaults else None) for n in getattr(cls, "_fields", ())]


def _members(cls: type[enum.Enum]) -> list[enum.Enum]:
    """Every member, aliases aside; unlike iteration, an IntFlag's 0 member too."""
    return list(dict.fromkeys(cls.__members__.values()))


def undocumented_fields() -> list[str]:
    """``Type.field`` for every field or enum member without an entry in its FIELD_DOCS (a test keeps it empty)."""
    missing = []
    for cls, docs in RECORD_TYPES:
        names = [m.name for m in _members(cls)] if issubclass(cls, enum.Enum) else [f[0] for f in _fields(cls)]
        missing += [f"{cls.__name__}.{n}" for n in names if not docs.get(cls.__name__, {}).get(n)]
    missing += [f"URI.{f.name}" for f in dataclasses.fields(_uri.URI) if f.name not in URI_FIELD_DOCS]
    return missing


#: For the error classes whose docstring says nothing of their own.
_ERROR_MEANINGS: Mapping[str, str] = {
    "InvalidURI": "The URI is malformed, or malformed for the plugin that owns its scheme.",
    "NoSuchDomain": "The domain does not exist (any more): never return None instead.",
    "PermissionDenied": "The backend (or the integrator's `transports`) refuses the caller.",
    "TimeoutError": "The operation did not finish within `options.timeout` seconds.",
    "ConnectionClosed": "The connection (or the driver's channel to its backend) is closed.",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _doc(obj: object) -> str:
    return " ".join((inspect.getdoc(obj) or "").split())


def _public(op: Operation) -> str:
    owner = "dom" if op.owner == "domain" else "conn"
    return f"`{owner}.{op.method}()`"


# -- sections -------------------------------------------------------------------------------------


def _calling() -> list[str]:
    mandatory = ", ".join(f"`{op.name}`" for op in CATALOGUE.values() if op.mandatory)
    return [
        "## 1. How the core calls a driver",
        "",
        "A plugin's `open` hook returns a *driver connection*: any object with a method per",
        "operation it serves, named as the operation. The core calls",
        "`driver.OPERATION(*params, flags=N)`: the parameters below positionally, in order, then",
        "`flags` by keyword. Declare every method as in the signatures below:",
        "`def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None`.",
        "",
        "- **flags**: an int, 0 unless the operation documents a flag (`VcpuFlags.MAXIMUM` for the",
        "  vcpu operations). Refuse a bit you do not know with `InvalidArgument`, never ignore it:",
        "  `virtkit.check_flags(flags, allowed=0)` does (a non-int too).",
        "- **Domains** arrive as `DomainRef(name, uuid, id)`: resolve them by whatever your",
        "  backend knows (uuid is the surest; `id` is None for a domain that is not running).",
        "- **Results** are exactly the types named (the NamedTuples and dataclasses of section 5,",
        "  `int`, `str`, `list[...]`), with the units of section 5: memory in KiB, time in ns.",
        f"- **Mandatory**: {mandatory} must be served by some plugin opening the URI, else the",
        "  open fails naming them. Every other method is optional: leave it out and the slot is",
        '  empty (`Unsupported` to callers; the conformance kit reports it as "not provided").',
        "- **Read-only connections**: the core refuses every *mutating* operation with",
        "  `ReadOnlyError` before your driver is called; `options.readonly` tells `open` to use",
        "  read-only channels too.",
        "- **`close()`**, if present, is called when the connection closes, or at open when your",
        "  driver ended up serving nothing.",
        f"- **Catalogue version**: this is catalogue {CATALOGUE_VERSION}. A plugin states",
        '  `virtkit_catalogue = "MAJOR.MINOR"`; a core with the same major and an equal or newer',
        "  minor loads it. Each operation says since which version it exists.",
        "",
    ]


def _errors_section() -> list[str]:
    rows = []
    for name in _errors.__all__:
        cls = getattr(_errors, name)
        if isinstance(cls, type) and issubclass(cls, _errors.VirtError):
            own = " ".join((cls.__dict__.get("__doc__") or "").split())
            rows.append([f"`{name}`", f"`{cls.code.value}`", own or _ERROR_MEANINGS.get(name, "")])
    return [
        "## 2. Errors",
        "",
        "Raise the `virtkit.VirtError` subclasses; each operation in section 4 lists the ones it",
        "raises for which situation. Besides those, any operation may raise `PermissionDenied`,",
        "`TimeoutError` (`options.timeout` bounds a whole call: connect, send, every read),",
        "`ProtocolError` (your peer broke its protocol, or sent absurd numbers) and",
        "`ConnectionClosed`. Any other exception reaches the caller as `DriverError` with yours as",
        "its `__cause__`. Leave `operation`, `driver` and `uri` empty: the core fills them in (the",
        "URI without its password).",
        "",
        "A transition the domain's state forbids is `InvalidOperation` (the conformance kit also",
        "accepts `InvalidArgument` there); a bad value is `InvalidArgument`. A lookup never returns",
        "None: a domain that does not exist is `NoSuchDomain`, for every operation on a domain.",
        "",
        *_table(["class", "code", "meaning"], rows),
    ]


def _events_section() -> list[str]:
    rows = [[f"`{op.name}`", ", then ".join(f"`{e}`" for e in op.events)] for op in CATALOGUE.values() if op.events]
    types_ = [[f"`{m.name}`", _types.FIELD_DOCS["DomainEventType"][m.name]] for m in _types.DomainEventType]
    return [
        "## 3. Events",
        "",
        "`connect_domain_event_register(callback)` returns a function that cancels. Call",
        "`callback(DomainEvent(type, domain, detail, timestamp))` once per lifecycle change of any",
        "domain, whoever caused it (your own operations, another tool, the guest), outside your",
        "locks, so the callback may call the driver back. A successful mutating call fires these",
        "events for its domain (the conformance kit checks each, with `--virtkit-mutating`):",
        "",
        *_table(["operation", "fires"], rows),
        "Other changes fire their event too: a guest that powers off (`SHUTDOWN` where the backend",
        "sees it, then `STOPPED`), crashes (`CRASHED`, then `STOPPED` if it is gone), reboots",
        "(`REBOOTED`).",
        "",
        *_table(["DomainEventType", "meaning"], types_),
        "### Delivering only some events",
        "",
        "A driver whose backend reports only some changes declares the types it delivers in a",
        f"`{EVENTS_ATTRIBUTE}` attribute (class or instance) of the driver serving",
        "`connect_domain_event_register`: a collection of `DomainEventType` members.",
        "",
        "```python",
        "class MyDriver:",
        f"    {EVENTS_ATTRIBUTE} = frozenset({{DomainEventType.STARTED, DomainEventType.STOPPED}})",
        "```",
        "",
        "Undeclared means every type its operations must fire. The conformance kit checks that",
        "each declared type comes, skips the checks of undeclared ones with the reason, and fails",
        "a declaration that is not a collection of `DomainEventType`.",
        "",
    ]


def _operation(op: Operation) -> list[str]:
    kind = ", ".join(
        x
        for x in ("mandatory" if op.mandatory else "", "mutating" if op.mutates else "query", f"since {op.since}")
        if x
    )
    lines = [f"### `{op.name}`", "", f"{op.doc} Public: {_public(op)}; {kind}.", "", "```python"]
    args = "".join(f"{p.name}: {p.type}, " for p in op.params)
    lines += [f"def {op.name}(self, {args}*, flags: int = 0) -> {op.returns}: ...", "```", ""]
    if op.params:
        lines += _table(
            ["parameter", "type", "meaning, unit"], [[f"`{p.name}`", f"`{p.type}`", p.doc] for p in op.params]
        )
    lines += [f"Returns `{op.returns}`.", ""]
    if op.note:
        lines += [op.note, ""]
    said = [f"- raises `{cls}` when {why}" for cls, why in op.errors]
    if op.events:
        said.append("- fires " + ", then ".join(f"`{e}`" for e in op.events) + " for the domain")
    if said:
        lines += [*said, ""]
    return lines


def _operations() -> list[str]:
    rows = [
        [
            f"`{op.name}`",
            _public(op),
            f"`{op.returns}`",
            "yes" if op.mutates else "",
            ", ".join(op.events),
            op.since,
        ]
        for op in CATALOGUE.values()
    ]
    lines = [
        "## 4. Operations",
        "",
        *_table(["operation", "public method", "returns", "mutates", "fires", "since"], rows),
    ]
    for op in CATALOGUE.values():
        lines += _operation(op)
    return lines


def _type(cls: type, docs: Mapping[str, Mapping[str, str]]) -> list[str]:
    own = docs.get(cls.__name__, {})
    lines = [f"### `{cls.__name__}`", ""]
    doc = _doc(cls)
    if doc and not doc.startswith(f"{cls.__name__}("):  # not the signature Python made up
        lines += [doc, ""]
    if issubclass(cls, enum.Enum):
        rows = [[f"`{m.name}`", f"`{m.value!r}`", own.get(m.name, "")] for m in _members(cls)]
        return lines + _table(["member", "value", "meaning"], rows)
    kind = "dataclass (frozen)" if dataclasses.is_dataclass(cls) else "NamedTuple"
    lines += [f"A {kind}; fields in order:", ""]
    rows = [[f"`{n}`", f"`{t}`", "" if d is None else f"`{d}`", own.get(n, "")] for n, t, d in _fields(cls)]
    return lines + _table(["field", "type", "default", "meaning, unit"], rows)


def _types_section() -> list[str]:
    lines = [
        "## 5. Types: fields and units",
        "",
        "All importable from `virtkit`. Units: memory in KiB, time in ns (cpu time) or seconds",
        "(timestamps, timeouts), frequencies in MHz; a stats field's name carries its unit (`_ns`,",
        "`_kib`, `_bytes`, counts for `_requests`, `_packets`, `_faults`). `None` means the backend",
        "cannot see the value, never a made-up 0 or libvirt's -1.",
        "",
        "Record types: a NamedTuple is what `typing.NamedTuple` makes (a `tuple` subclass with",
        "`_replace`, `_asdict`, `_fields`; equal to the plain tuple of its values); a dataclass is",
        "frozen, with slots, and `dataclasses.fields`, `replace`, `asdict` and `is_dataclass` work on",
        "it. Type checkers see exactly those (every field's type). At run time `virtkit` builds them",
        "without importing `typing` or `dataclasses` (a command's start-up path, issue 14): the",
        "methods are the same, `__annotations__` hold the annotations as written (strings, as",
        "`typing.get_type_hints` reads them), and `dataclasses` is imported on first use of",
        "`dataclasses.fields` and its kin.",
        "",
        "`StatsGroups` (the `groups` parameter) is a tuple of names from `virtkit.STATS_GROUPS`:",
        ", ".join(f"`{g}`" for g in STATS_GROUPS) + ", checked and in that order before you see it.",
        "",
    ]
    for cls, docs in RECORD_TYPES:
        lines += _type(cls, docs)
    return lines


def _pattern(regex: str) -> str:
    return regex.removesuffix(r"\Z")


def _uris() -> list[str]:
    rows = [[f"`{f.name}`", f"`{f.type}`", URI_FIELD_DOCS.get(f.name, "")] for f in dataclasses.fields(_uri.URI)]
    return [
        "## 6. URIs",
        "",
        "`scheme[+transport]://[user[:password]@][host][:port][/path][?query][#fragment]`, as libvirt",
        "writes them; hooks receive a parsed `virtkit.URI`. `virtkit.open` refuses, with",
        "`InvalidURI` before any plugin is asked, a URI that breaks these rules:",
        "",
        f"- the scheme matches `{_pattern(_uri._WORD)}`: lower case, no dot;",
        f"- at most one `+transport`, matching `{_pattern(_uri._WORD)}`",
        "  (`xen+ssh+tls://` is refused);",
        "- `://` is required; no whitespace or control characters; a user needs a host; port 0 and",
        "  an empty port are refused; an `@` after the host must be percent-encoded (`%40`), as must",
        "  `/`, `?`, `#` in a password.",
        "",
        "Entry points: a plugin serving `myhv://` registers under the name `myhv`; one serving",
        "`SCHEME+t://` for every scheme registers `+t`. `uri.is_local` is true when no host is",
        "named (`xen:///`); `uri.full_scheme` is `scheme+transport`; `str(uri)` never holds the",
        "password. Raise `InvalidURI` from `open` for a URI you own that is malformed for you (an",
        "unknown path, a bad query parameter); `Declined` when it is simply not yours.",
        "",
        "### `URI`",
        "",
        "A dataclass (frozen); fields in order:",
        "",
        *_table(["field", "type", "meaning"], rows),
    ]


def _opening() -> list[str]:
    rows = [[f"`{n}`", f"`{t}`", "" if d is None else f"`{d}`"] for n, t, d in _fields(OpenOptions)]
    return [
        "## 7. Opening, and strict mode",
        "",
        "Hooks: `can_handle(uri)` (optional; cheap, local probes only; return False or",
        '`Declined(reason)` for "not mine"), `priority(uri)` (optional; an int, a pure function of',
        "the URI), `open(uri, options)` (returns the driver, or returns/raises `Declined`). `open`",
        "runs only after `can_handle` said yes for the same URI (or when there is none): do not",
        "check again in `open`.",
        "`options` is a `virtkit.OpenOptions`:",
        "",
        *_table(["field", "type", "default"], rows),
        "`timeout` is seconds, finite and above 0, bounding every operation of the connection;",
        "`params` are integrator-supplied extras.",
        "",
        "Outcomes of `open`: DECLINED (not yours; others go on), SUCCESS (your methods join the",
        "composition), ERROR: a hook raised. A typed `VirtError` from `open` (`InvalidURI`,",
        "`PermissionDenied`, ...) is recorded and, when no plugin opened the URI, raised to the",
        "caller as is; any other exception, a failed import or an incompatible catalogue is",
        "recorded and logged, the plugin skipped.",
        "",
        "**Strict mode**: `virtkit.open(..., strict=True)`, or `VIRTKIT_STRICT` set to anything but",
        '`""` and `"0"`, turns *every* ERROR into `PluginLoadError` at once, naming the plugin: a',
        "failed import, a hook raising, and also a typed error from `open`. A plugin that raises",
        "`InvalidURI` for a URI it does not own therefore breaks strict callers: return `Declined`",
        "for URIs that are not yours, and raise only for URIs that are yours and wrong.",
        "",
    ]


def _inputs() -> list[str]:
    checks: list[Callable[..., object]] = [
        _input.check_domain_name,
        _input.check_memory,
        _input.check_vcpus,
        _input.check_domain_config,
        _input.check_timeout,
        _input.read_config_file,
        _input.load_json_file,
    ]
    rows = [[f"`virtkit.{fn.__name__}{str(inspect.signature(fn)).replace(chr(39), '')}`", _doc(fn)] for fn in checks]
    consts = [
        ["`MAX_MEMORY_KIB`", f"{_input.MAX_MEMORY_KIB}"],
        ["`MAX_VCPUS`", f"{_input.MAX_VCPUS}"],
        ["`MAX_TIMEOUT`", f"{_input.MAX_TIMEOUT:.0f} s"],
        ["`MAX_CONFIG_BYTES`", f"{_input.MAX_CONFIG_BYTES} bytes"],
        ["`MAX_CONFIG_DEPTH`", f"{_input.MAX_CONFIG_DEPTH} (JSON nesting)"],
    ]
    return [
        "## 8. Input rules",
        "",
        "Checked by the core with `InvalidArgument` before your driver is called: the config of",
        "`domain_create` / `domain_define` (`check_domain_config`), the `memory` of",
        "`domain_set_memory` / `domain_set_max_memory` (`check_memory`), the `count` of",
        "`domain_set_vcpus` (`check_vcpus`), the connection's timeout (`check_timeout`). Still",
        "yours: names arriving from elsewhere (lookups accept any string: quote them where they",
        "become paths or protocol fields), your peer's numbers (absurd ones are `ProtocolError`),",
        "and files users name (read them with `read_config_file` / `load_json_file`).",
        "",
        *_table(["function", "rule"], rows),
        *_table(["bound", "value"], consts),
    ]


def render() -> str:
    """docs/contract.md's text."""
    lines = [
        "# The driver contract reference",
        "",
        "<!-- Generated from the operation catalogue and the type modules: do not edit.",
        "     Regenerate: .venv/bin/python -m virtkit._reference > docs/contract.md",
        "     (tests/test_reference.py fails when this copy is stale). -->",
        "",
        f"Catalogue {CATALOGUE_VERSION}. Everything a driver method takes, returns, raises and fires.",
        "[plugins.md](plugins.md) explains registration, negotiation and composition;",
        "[plugin-guide.md](plugin-guide.md) walks through writing a plugin.",
        "",
        *_calling(),
        *_errors_section(),
        *_events_section(),
        *_operations(),
        *_types_section(),
        *_uris(),
        *_opening(),
        *_inputs(),
    ]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
