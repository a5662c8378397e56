"""Negotiation and composition: ask the plugins, open the willing, build the vtable once.

pluggy carries the negotiation hooks only. Each plugin's hooks are called one at a time (through
the hook implementations pluggy validated at registration, ``_plugin.call_hook``) so one plugin's
decline or error is recorded as its own and never stops the others. ``open`` is called only after
the same plugin's ``can_handle`` said yes for the same URI (the contract promises it: plugins
need not check again). The per-call path never touches pluggy: the vtable maps each operation to
one bound callable.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Collection, Mapping

from ._catalogue import CATALOGUE, Operation
from ._discovery import (
    LoadFailure,
    PluginSource,
    check_catalogue,
    declared_schemes,
    instantiate,
    load_plugins,
    plugin_name,
    wanted_schemes,
)
from ._errors import DriverError, InvalidArgument, NoDriver, PluginLoadError, ReadOnlyError, Unsupported, VirtError
from ._explain import Attempt, Candidate, Explanation, Outcome, Route
from ._plugin import Declined, OpenOptions, call_hook, priority_of, register, release
from ._uri import URI

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    Slot = Callable[..., Any]
else:
    from ._record import NamedTuple

__all__ = ["ComposeOptions", "Composition", "compose", "probe_default_uri"]

_INFO, _WARNING = 20, 30  # logging's levels


def _log(level: int, msg: str, *args: object) -> None:
    """Log to ``virtkit.open``. While nothing has imported ``logging`` nothing can have configured
    it, and a record below WARNING would be dropped: it is skipped, which keeps logging off
    ``import virtkit``. A warning still goes out (Python's last-resort handler prints it)."""
    if level < _WARNING and "logging" not in sys.modules:
        return
    import logging

    logging.getLogger("virtkit.open").log(level, msg, *args)


STATS_OP = "connect_get_all_domain_stats"
_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


class ComposeOptions(NamedTuple):
    """The integrator's say over composition (all optional)."""

    readonly: bool = False
    timeout: float = 30.0
    strict: bool = False
    plugins: tuple[object, ...] = ()  # registered in code, beside (or instead of) entry points
    entry_points: bool = True
    prefer: Mapping[str, str] = _EMPTY  # op or "*" -> plugin
    exclude: Mapping[str, Collection[str]] = _EMPTY  # op or "*" -> plugins
    fallback: Collection[str] = ()  # ops that may fall through to the next candidate
    params: Mapping[str, Any] = _EMPTY


class Composition(NamedTuple):
    vtable: dict[str, Slot]
    served_by: dict[str, str]
    drivers: list[tuple[str, object]]
    explanation: Explanation


def _refuse(op: str, error: type[VirtError], message: str) -> Slot:
    def refuse(*_args: object, **_kwargs: object) -> Any:
        raise error(message, operation=op)

    refuse.__name__ = f"refuse_{op}"
    return refuse


def in_code(
    plugins: Collection[object], scheme: str, transport: str | None
) -> tuple[list[PluginSource], list[LoadFailure]]:
    """In-code plugins, filtered by their ``virtkit_schemes`` as entry points are by their name."""
    wanted = wanted_schemes(scheme, transport)
    sources: list[PluginSource] = []
    failures: list[LoadFailure] = []
    for obj in plugins:
        obj = instantiate(obj)
        name = plugin_name(obj)
        try:
            schemes = declared_schemes(obj)
        except TypeError as exc:
            failures.append(LoadFailure(name, "registered in code", (), str(exc)))
            continue
        if schemes is not None and wanted.isdisjoint(schemes):
            continue  # not registered for this scheme: never asked, as an entry point is not imported
        why = check_catalogue(obj)
        if why is None:
            sources.append(PluginSource(name, obj, "registered in code"))
        else:
            failures.append(LoadFailure(name, "registered in code", schemes or (), why))
    return sources, failures


def _gather(uri: URI, opts: ComposeOptions) -> tuple[list[PluginSource], list[LoadFailure]]:
    sources, failures = in_code(opts.plugins, uri.scheme, uri.transport)
    if opts.entry_points:
        loaded, failed = load_plugins(wanted_schemes(uri.scheme, uri.transport) - {"*"})
        sources += loaded
        failures += failed
    return sources, failures


def _method_priority(driver: object, op: str, default: int) -> tuple[Slot, int] | None:
    method = getattr(driver, op, None)
    if method is None or not callable(method):
        return None
    own = priority_of(getattr(method, "__func__", method))
    return method, default if own is None else own


def _fallback_chain(op: str, chain: list[tuple[str, Slot]]) -> Slot:
    """An integrator's explicit opt-in: try each candidate in order, keep every error seen."""

    def call(*args: Any, **kwargs: Any) -> Any:
        errors: list[tuple[str, BaseException]] = []
        for name, fn in chain:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - recorded, and re-raised below if all fail
                errors.append((name, exc))
                _log(_INFO, "fallback %s: %s failed (%s), trying next", op, name, exc)
        last_name, last = errors[-1]
        summary = "; ".join(f"{n}: {e}" for n, e in errors)
        err = (
            last
            if isinstance(last, VirtError)
            else DriverError(f"all fallbacks failed: {summary}", operation=op, driver=last_name)
        )
        err.add_note(f"fallback chain for {op}: {summary}")
        raise err from (None if err is last else last)

    return call


def compose(uri: URI, opts: ComposeOptions) -> Composition:
    """Open every willing plugin for ``uri`` and build the connection's effective vtable."""
    shown = str(uri)
    sources, failures = _gather(uri, opts)
    if opts.strict and failures:
        f = failures[0]
        raise PluginLoadError(f"plugin {f.name} ({f.target}) failed to load: {f.error}", driver=f.name, uri=shown)
    for f in failures:
        _log(_WARNING, "open %s: ERROR %s failed to load: %s", shown, f.name, f.error)

    options = OpenOptions(readonly=opts.readonly, timeout=opts.timeout, params=dict(opts.params))
    attempts: list[Attempt] = []
    opened: list[tuple[str, object, int]] = []

    def record(src: PluginSource, outcome: Outcome, reason: str = "", prio: int | None = None) -> None:
        attempts.append(Attempt(src.name, outcome, reason, prio, src.origin))
        msg = f"open {shown}: {outcome.value} {src.name}" + (f": {reason}" if reason else "")
        _log(_WARNING if outcome is Outcome.ERROR else _INFO, msg)
        if outcome is Outcome.ERROR and opts.strict:
            raise PluginLoadError(f"plugin {src.name}: {reason}", driver=src.name, uri=shown)

    try:
        return _negotiate(uri, opts, options, sources, failures, record, attempts, opened)
    finally:
        for src in sources:
            if src.target is None:
                release(src.plugin)


def _negotiate(
    uri: URI,
    opts: ComposeOptions,
    options: OpenOptions,
    sources: list[PluginSource],
    failures: list[LoadFailure],
    record: Callable[..., None],
    attempts: list[Attempt],
    opened: list[tuple[str, object, int]],
) -> Composition:
    typed: list[VirtError] = []  # typed errors plugins raised: the caller may branch on them
    try:
        for src in sources:
            bad = register(src.plugin, keep=src.target is not None)
            if bad:
                record(src, Outcome.ERROR, bad)
                continue
            try:
                has, ok = call_hook(src.plugin, "can_handle", uri=uri)
                if has and not ok:
                    reason = ok.reason if isinstance(ok, Declined) else "can_handle() said no"
                    record(src, Outcome.DECLINED, reason)
                    continue
                has, prio = call_hook(src.plugin, "priority", uri=uri)
                prio = prio if has else 0
                if not isinstance(prio, int) or isinstance(prio, bool):
                    record(src, Outcome.ERROR, f"priority() returned {prio!r}, not an int")
                    continue
                try:
                    _, driver = call_hook(src.plugin, "open", uri=uri, options=options)
                except Declined as d:
                    driver = d
            except PluginLoadError:
                raise
            except VirtError as exc:
                record(src, Outcome.ERROR, f"{type(exc).__name__}: {exc.message}")
                if exc.driver is None:
                    exc.driver = src.name
                typed.append(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a broken plugin is recorded, not fatal
                record(src, Outcome.ERROR, f"raised {type(exc).__name__}: {exc}")
                continue
            if isinstance(driver, Declined) or driver is None:
                record(src, Outcome.DECLINED, driver.reason if isinstance(driver, Declined) else "open() returned None")
                continue
            record(src, Outcome.SUCCESS, "", prio)
            opened.append((src.name, driver, prio))

        return _build(uri, opts, opened, attempts, failures, typed)
    except BaseException:
        for _name, driver, _prio in opened:
            _close_quietly(driver)
        raise


def _build(
    uri: URI,
    opts: ComposeOptions,
    opened: list[tuple[str, object, int]],
    attempts: list[Attempt],
    failures: list[LoadFailure],
    typed: list[VirtError],
) -> Composition:
    shown = str(uri)
    failed = tuple((f.name, f.target, f.error) for f in failures)
    if not opened and typed:
        # A plugin claimed the URI and said precisely what is wrong with it (a bad host file, a
        # daemon refusing us): that typed error is the answer, not a generic NoDriver.
        err = typed[0]
        err.uri = shown
        for a in attempts:
            if a.outcome is not Outcome.SUCCESS and a.plugin != err.driver:
                err.add_note(f"{a.plugin} {a.outcome.value.lower()}: {a.reason}")
        raise err
    if not opened:
        why = "; ".join(f"{a.plugin} {a.outcome.value.lower()}: {a.reason}" for a in attempts)
        why += "".join(f"; {f.name} failed to load: {f.error}" for f in failures)
        err = NoDriver(
            f"no plugin can open {shown}" + (f" ({why})" if why else " (none installed for this scheme)"), uri=shown
        )
        # explain's view of a failed open: who declined, who failed, and nothing routed
        err.explanation = Explanation(shown, (), tuple(attempts), failed)
        raise err
    names = {name for name, _, _ in opened}
    for key in opts.prefer:
        if key != "*" and key not in CATALOGUE:
            raise InvalidArgument(f"prefer: unknown operation {key!r}", uri=shown)
    for key in opts.exclude:
        if key != "*" and key not in CATALOGUE:
            raise InvalidArgument(f"exclude: unknown operation {key!r}", uri=shown)
    for op in opts.fallback:
        if op not in CATALOGUE:
            raise InvalidArgument(f"fallback: unknown operation {op!r}", uri=shown)

    vtable: dict[str, Slot] = {}
    served_by: dict[str, str] = {}
    routes: list[Route] = []
    groups: tuple[Route, ...] = ()
    for operation in CATALOGUE.values():
        route, slot = _route(operation, opened, opts, shown)
        if operation.name == STATS_OP and route.plugin:
            groups, slot = _route_stats(route, slot, opened, opts)
        routes.append(route)
        vtable[operation.name] = slot
        if route.plugin:
            served_by[operation.name] = route.plugin

    missing = [op.name for op in CATALOGUE.values() if op.mandatory and op.name not in served_by]
    if missing:
        raise NoDriver(
            f"{shown}: no opened plugin provides mandatory operation(s) {', '.join(missing)} "
            f"(opened: {', '.join(sorted(names))})",
            uri=shown,
        )
    used = set(served_by.values())
    drivers = []
    for name, driver, _prio in opened:
        if name in used:
            drivers.append((name, driver))
        else:  # opened but outranked everywhere: release its resources now
            _close_quietly(driver)
            _log(_INFO, "open %s: %s serves no operation, closed", shown, name)
    # A remote plugin's driver carries the far side's composition: explain shows both.
    far = [getattr(driver, "virtkit_remote_explanation", None) for _name, driver in drivers]
    explanation = Explanation(
        uri=shown,
        routes=tuple(routes),
        attempts=tuple(attempts),
        load_failures=failed,
        remote=next((e for e in far if isinstance(e, Explanation)), None),
        groups=groups,
    )
    return Composition(vtable, served_by, drivers, explanation)


def _route(
    op: Operation, opened: list[tuple[str, object, int]], opts: ComposeOptions, shown: str
) -> tuple[Route, Slot]:
    excluded = set(opts.exclude.get("*", ())) | set(opts.exclude.get(op.name, ()))
    cands: list[tuple[int, int, str, Slot]] = []
    notes: list[str] = []
    for order, (name, driver, prio) in enumerate(opened):
        found = _method_priority(driver, op.name, prio)
        if found is None:
            continue
        if name in excluded:
            notes.append(f"{name} excluded")
            continue
        cands.append((-found[1], order, name, found[0]))
    cands.sort(key=lambda c: (c[0], c[1]))
    preferred = opts.prefer.get(op.name) or opts.prefer.get("*")
    if preferred:
        hit = [c for c in cands if c[2] == preferred]
        if hit:
            cands.remove(hit[0])
            cands.insert(0, hit[0])
            notes.append(f"{preferred} preferred by integrator")
        elif op.name in opts.prefer:
            raise InvalidArgument(f"prefer: plugin {preferred!r} does not provide {op.name} on {shown}", uri=shown)
    if not cands:
        return Route(op.name, None, None, note="; ".join(notes) or "no plugin provides it"), _refuse(
            op.name, Unsupported, f"operation {op.name} is not supported on {shown}"
        )
    if len(cands) > 1 and cands[0][0] == cands[1][0] and not preferred:
        notes.append(f"tie at priority {-cands[0][0]}, first opened wins")
    chosen = cands[0]
    lost = tuple(Candidate(c[2], -c[0]) for c in cands[1:])
    use_fallback = op.name in opts.fallback and len(cands) > 1
    slot: Slot = _fallback_chain(op.name, [(c[2], c[3]) for c in cands]) if use_fallback else chosen[3]
    if op.mutates and opts.readonly:
        slot = _refuse(op.name, ReadOnlyError, f"{op.name} mutates and the connection to {shown} is read-only")
        notes.append("refused: read-only connection")
    return Route(op.name, chosen[2], -chosen[0], lost, "; ".join(notes), use_fallback), slot


def _route_stats(
    route: Route, slot: Slot, opened: list[tuple[str, object, int]], opts: ComposeOptions
) -> tuple[tuple[Route, ...], Slot]:
    """The bulk stats operation is routed per group as well (see virtkit._stats)."""
    from ._stats_route import route_groups

    excluded = set(opts.exclude.get("*", ())) | set(opts.exclude.get(STATS_OP, ()))
    cands = []
    namer: tuple[str, int] | None = None  # the stats provider ranking highest for lookups by UUID
    for name, driver, prio in opened:
        found = _method_priority(driver, STATS_OP, prio)
        if found is not None and name not in excluded:
            cands.append((name, found[0], found[1], driver))
            lookup = _method_priority(driver, "domain_lookup_by_uuid", prio)
            if lookup is not None and (namer is None or lookup[1] > namer[1]):
                namer = (name, lookup[1])
    preferred = opts.prefer.get(STATS_OP) or opts.prefer.get("*")
    return route_groups(cands, preferred, route, slot, namer[0] if namer else None)


def _close_quietly(driver: object) -> None:
    close = getattr(driver, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - closing must release the rest
            _log(_WARNING, "closing driver %r failed: %s", driver, exc)


def probe_default_uri(opts: ComposeOptions) -> str | None:
    """``open(None)`` without VIRTKIT_DEFAULT_URI: the highest-priority URI a plugin proposes."""
    from ._discovery import installed_entry_points, scheme_of
    from ._uri import parse_uri

    schemes = {scheme_of(name) for name, _value in installed_entry_points()} if opts.entry_points else set()
    objs = [instantiate(p) for p in opts.plugins]  # once each: a class must not become two plugins
    sources = [PluginSource(plugin_name(o), o, "registered in code") for o in objs]
    if schemes:
        sources += load_plugins(schemes)[0]
    best: tuple[int, str] | None = None
    try:
        for src in sources:
            proposal = getattr(src.plugin, "virtkit_default_uri", None)
            if not isinstance(proposal, str) or register(src.plugin, keep=src.target is not None):
                continue
            try:
                uri = parse_uri(proposal)
                if src.target is None and not in_code([src.plugin], uri.scheme, uri.transport)[0]:
                    continue
                has, ok = call_hook(src.plugin, "can_handle", uri=uri)
                if has and not ok:
                    continue
                has, prio = call_hook(src.plugin, "priority", uri=uri)
                prio = prio if has else 0
            except Exception as exc:  # noqa: BLE001 - a broken plugin doesn't stop the probe
                _log(_WARNING, "default URI probe: %s raised %s", src.name, exc)
                continue
            if isinstance(prio, int) and (best is None or prio > best[0]):
                best = (prio, proposal)
    finally:
        for src in sources:
            if src.target is None:
                release(src.plugin)
    return best[1] if best else None
