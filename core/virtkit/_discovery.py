"""Finding plugins: entry points in group ``virtkit.drivers``, loaded through stevedore.

An entry point's *name* is the URI scheme it serves, optionally followed by ``.label`` so one
distribution can register several plugins for one scheme (``xen``, ``xen.hyper``); ``*`` serves
any scheme. The scheme is thus declared in metadata, and opening ``xen:///`` imports only plugins
registered for ``xen``: the cost of ``open()`` does not grow with unrelated installed plugins. A
plugin serving several schemes lists the same object under each name.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pathlib
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import stevedore

from ._catalogue import CATALOGUE_VERSION, catalogue_compatible

__all__ = [
    "ANY_SCHEME",
    "ENTRY_POINT_GROUP",
    "LoadFailure",
    "PluginSource",
    "installed_entry_points",
    "load_plugins",
    "plugin_name",
    "refresh",
    "scheme_of",
]

ENTRY_POINT_GROUP = "virtkit.drivers"
ANY_SCHEME = "*"


class PluginSource(NamedTuple):
    """A loaded plugin object and where it came from."""

    name: str
    plugin: object
    origin: str  # "entry point xen = pkg.mod:obj" or "registered in code"
    target: str | None = None  # the entry point's value, None for in-code plugins


class LoadFailure(NamedTuple):
    """A plugin that could not take part: import failed, or its catalogue is incompatible."""

    name: str
    target: str
    schemes: tuple[str, ...]
    error: str
    exception: BaseException | None = None


# Loaded plugin objects, by entry-point target: a class is instantiated once per process.
_instances: dict[str, object] = {}
# load_plugins() results per set of schemes: a steady-state open() costs no discovery at all.
_loaded: dict[frozenset[str], tuple[list[PluginSource], list[LoadFailure]]] = {}
_group: list[tuple[str, str]] | None = None
_lock = threading.RLock()
_SETTLE_NS = 2_000_000_000  # don't cache an index of directories changed this recently


def scheme_of(entry_point_name: str) -> str:
    """``xen.hyper`` -> ``xen``: URI schemes contain no dot, so the label never clashes."""
    return entry_point_name.split(".", 1)[0]


def refresh() -> None:
    """Forget cached entry points and plugin objects (after installing a plugin at run time)."""
    global _group
    with _lock:
        _instances.clear()
        _loaded.clear()
        _group = None
        stevedore.ExtensionManager.ENTRY_POINT_CACHE.pop(ENTRY_POINT_GROUP, None)


def _index_path() -> tuple[pathlib.Path, bool]:
    """The index file for this interpreter and this sys.path, keyed on the path entries' mtimes.

    Installing, upgrading or removing a distribution adds or removes a ``*.dist-info`` directory,
    which changes its site directory's mtime: O(len(sys.path)) stats detect it, where a per-file
    check (stevedore's own cache key) costs a stat per installed distribution.

    The flag says whether a directory changed in the last seconds: an install may be under way
    (dist-info created, entry_points.txt not yet written), so an index built now is not kept.
    """
    h = hashlib.sha256(f"{sys.executable}\0{sys.prefix}".encode())
    newest = 0
    for entry in sys.path:
        try:
            mtime = os.stat(entry or ".").st_mtime_ns
        except OSError:
            mtime = -1
        newest = max(newest, mtime)
        h.update(f"\0{entry}\0{mtime}".encode())
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    settled = time.time_ns() - newest > _SETTLE_NS
    return pathlib.Path(base, "virtkit", f"entry-points-{h.hexdigest()[:32]}.json"), settled


def _read_group() -> list[tuple[str, str]]:
    path, settled = _index_path()
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [(str(name), str(value)) for name, value in rows]
    except (OSError, ValueError, TypeError):
        pass
    eps: list[tuple[str, str]] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (ep.name, ep.value) not in eps:  # a dist on sys.path twice lists its entry points twice
            eps.append((ep.name, ep.value))
    if not settled:
        return eps
    try:  # atomically, so concurrent processes never read half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(eps), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: discovery still works, uncached
    return eps


def installed_entry_points() -> list[tuple[str, str]]:
    """Every entry point of the group as (name, value), without importing anything."""
    global _group
    with _lock:
        if _group is None:
            _group = _read_group()
        return _group


def plugin_name(plugin: object, target: str | None = None) -> str:
    """``virtkit_name`` if the plugin states one, else the top-level module of its target."""
    name = getattr(plugin, "virtkit_name", None)
    if isinstance(name, str) and name:
        return name
    if target:
        return target.split(":")[0].split(".")[0]
    return type(plugin).__name__ if not isinstance(plugin, type) else plugin.__name__


def instantiate(obj: object) -> object:
    """A plugin may be a module, an instance, or a class taking no arguments."""
    return obj() if isinstance(obj, type) else obj


def check_catalogue(plugin: object) -> str | None:
    """None when compatible, else why not."""
    target = getattr(plugin, "virtkit_catalogue", None)
    if target is None:
        return "does not state the catalogue version it targets (virtkit_catalogue)"
    if not isinstance(target, str) or not catalogue_compatible(target):
        return f"targets catalogue {target!r}, incompatible with this core's {CATALOGUE_VERSION}"
    return None


def load_plugins(schemes: Iterable[str]) -> tuple[list[PluginSource], list[LoadFailure]]:
    """Import the plugins registered for ``schemes`` (plus ``*``); record the ones that fail.

    Memoized per process (``refresh()`` forgets): the result, failures included, is the same
    until something is installed.
    """
    key = frozenset(schemes)
    with _lock:
        hit = _loaded.get(key)
        if hit is None:
            hit = _loaded[key] = _load_plugins(key)
        return list(hit[0]), list(hit[1])


def _load_plugins(schemes: frozenset[str]) -> tuple[list[PluginSource], list[LoadFailure]]:
    wanted_schemes = set(schemes) | {ANY_SCHEME}
    loaded: list[PluginSource] = []
    failures: list[LoadFailure] = []
    seen: set[str] = set()
    by_target: dict[str, list[str]] = {}
    wanted: set[str] = set()
    matching: list[importlib.metadata.EntryPoint] = []
    for name, value in installed_entry_points():
        if scheme_of(name) in wanted_schemes:
            wanted.add(name)
            by_target.setdefault(value, []).append(scheme_of(name))
            matching.append(importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP))

    def on_failure(_mgr: object, ep: importlib.metadata.EntryPoint, err: BaseException) -> None:
        if ep.value in seen:
            return
        seen.add(ep.value)
        failures.append(
            LoadFailure(
                name=ep.name,  # its own name is unknown: the object never loaded
                target=ep.value,
                schemes=tuple(by_target.get(ep.value, [scheme_of(ep.name)])),
                error=f"{type(err).__name__}: {err}",
                exception=err,
            )
        )

    if not by_target:
        return loaded, failures
    # stevedore's manager walks its per-process entry-point list: hand it only the matching
    # ones, so loading costs nothing per unrelated installed plugin (we hold _lock).
    stevedore.ExtensionManager.ENTRY_POINT_CACHE[ENTRY_POINT_GROUP] = matching
    mgr: stevedore.NamedExtensionManager[object] = stevedore.NamedExtensionManager(
        ENTRY_POINT_GROUP,
        names=sorted(wanted),
        invoke_on_load=False,
        on_load_failure_callback=on_failure,
    )
    for ext in mgr.extensions:
        target = ext.entry_point.value
        if target in seen:
            continue
        seen.add(target)
        obj = _instances.get(target)
        if obj is None:
            try:
                obj = _instances[target] = instantiate(ext.plugin)
            except Exception as exc:  # noqa: BLE001 - a plugin class whose constructor raises
                seen.discard(target)
                on_failure(None, ext.entry_point, exc)
                continue
        name = plugin_name(obj, target)
        why = check_catalogue(obj)
        if why is not None:
            failures.append(LoadFailure(name, target, tuple(by_target.get(target, [])), why))
            continue
        loaded.append(PluginSource(name, obj, f"entry point {ext.name} = {target}", target))
    return loaded, failures


def describe_installed() -> list[dict[str, Any]]:
    """Every installed plugin: name, distribution, version, schemes, loaded or failed and why.

    Imports every plugin, so it is for ``virtkit drivers``, not for ``open()``.
    """
    by_target: dict[str, dict[str, Any]] = {}
    eps: dict[str, importlib.metadata.EntryPoint] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            row = by_target.setdefault(
                ep.value,
                {
                    "plugin": ep.name,
                    "target": ep.value,
                    "distribution": dist.metadata["Name"],
                    "version": dist.version,
                    "schemes": [],
                    "status": "loaded",
                    "error": "",
                },
            )
            if scheme_of(ep.name) not in row["schemes"]:
                row["schemes"].append(scheme_of(ep.name))
            eps.setdefault(ep.value, ep)
    for target, row in by_target.items():
        ep = eps[target]
        try:
            obj = instantiate(ep.load())
        except Exception as exc:  # noqa: BLE001 - reported, never fatal
            row["status"], row["error"] = "failed", f"{type(exc).__name__}: {exc}"
            continue
        row["plugin"] = plugin_name(obj, ep.value)
        why = check_catalogue(obj)
        if why is not None:
            row["status"], row["error"] = "failed", why
    return sorted(by_target.values(), key=lambda r: str(r["plugin"]))
