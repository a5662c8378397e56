"""Finding plugins: entry points in group ``virtkit.drivers``.

An entry point's *name* is the URI scheme it serves, optionally followed by ``.label`` so one
distribution can register several plugins for one scheme (``xen``, ``xen.hyper``); ``*`` serves
any scheme. The scheme is thus declared in metadata, and opening ``xen:///`` imports only plugins
registered for ``xen``: the cost of ``open()`` does not grow with unrelated installed plugins. A
plugin serving several schemes lists the same object under each name.

One inventory serves ``open()``, ``virtkit drivers`` and ``virtkit matrix``: one loader
(:func:`load_entry_point`, entry-point target -> plugin object or a recorded failure, each target
loaded once per process) and, in ``_plugin``, one hook caller. ``open()`` reads the group from
an on-disk index and imports the matching targets only; ``importlib.metadata`` is loaded to
rebuild the index and for :func:`inventory` (distribution names and versions, for ``drivers`` and
``matrix``). Importing it alone (email, zipfile, csv, ...) cost about a third of a cold
``virtkit list`` (bench/RESULTS.md).

In-code plugins (``open(plugins=[...])``) have no entry-point name: one may declare
``virtkit_schemes`` (the names it would be registered under: ``"xen"``, ``"+ssh"``, ``"*"``) and
is then asked only about URIs of those schemes, as an entry point is; without it, about every URI.
"""

from __future__ import annotations

import _thread  # threading is not on the start-up path: a lock is all this needs
import marshal
import os
import re
import sys
import time
from collections.abc import Iterable

from ._catalogue import CATALOGUE_VERSION, catalogue_compatible

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any, NamedTuple
else:
    from ._record import NamedTuple

__all__ = [
    "ANY_SCHEME",
    "ENTRY_POINT_GROUP",
    "Installed",
    "LoadFailure",
    "PluginSource",
    "declared_schemes",
    "describe_installed",
    "installed_entry_points",
    "inventory",
    "load_entry_point",
    "load_plugins",
    "plugin_name",
    "prune_index",
    "refresh",
    "scheme_of",
    "wanted_schemes",
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
_lock = _thread.RLock()
_SETTLE_NS = 2_000_000_000  # don't cache an index of directories changed this recently
_NAME_PRIME = (1 << 61) - 1  # a Mersenne prime: the index file's name is the key modulo it


def scheme_of(entry_point_name: str) -> str:
    """``xen.hyper`` -> ``xen``: URI schemes contain no dot, so the label never clashes."""
    return entry_point_name.split(".", 1)[0]


def refresh() -> None:
    """Forget cached entry points and plugin objects (after installing a plugin at run time).

    Public as ``virtkit.refresh_plugins()``.
    """
    global _group
    from ._plugin import forget

    with _lock:
        _instances.clear()
        _loaded.clear()
        _group = None
        forget()


def wanted_schemes(scheme: str, transport: str | None) -> frozenset[str]:
    """The registration names that serve ``SCHEME[+TRANSPORT]://``: a transport is routed like a
    scheme (plugins registered under ``+ssh`` serve every SCHEME+ssh:// URI), and ``*`` serves all."""
    return frozenset((scheme, ANY_SCHEME, f"+{transport}") if transport else (scheme, ANY_SCHEME))


def declared_schemes(plugin: object) -> tuple[str, ...] | None:
    """An in-code plugin's ``virtkit_schemes`` (a string or a collection of them), None if absent.

    A malformed declaration raises TypeError (the caller records it as the plugin's failure).
    """
    declared = getattr(plugin, "virtkit_schemes", None)
    if declared is None:
        return None
    names = (declared,) if isinstance(declared, str) else declared
    if not isinstance(names, tuple | list | frozenset | set) or not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"virtkit_schemes must be a scheme name or a collection of them, not {declared!r}")
    return tuple(sorted(scheme_of(n) for n in names))


def _index_path() -> tuple[str, str, bool]:
    """The index file for this interpreter and this sys.path, keyed on the path entries' mtimes.

    Installing, upgrading or removing a distribution adds or removes a ``*.dist-info`` directory,
    which changes its site directory's mtime: O(len(sys.path)) stats detect it, where a per-file
    check (stevedore's own cache key) costs a stat per installed distribution. The first entry
    (the working directory of ``python -m`` and ``-c``, or a script's directory) and relative
    ones are keyed on the metadata they hold instead (see ``_metadata_key``): a busy directory
    such as /tmp would otherwise change the key at every start and never let the index settle.

    The flag says whether a directory changed in the last seconds: an install may be under way
    (dist-info created, entry_points.txt not yet written), so an index built now is not kept.

    The file is named by a cheap checksum of the key (the key as one integer, modulo a prime: no
    zlib to load, and hashlib costs an OpenSSL load) and holds the whole key, compared on read: a
    name collision is a miss, never a wrong index.
    It is written with marshal, built into the interpreter (json is not on the start-up path);
    the interpreter's version is part of the key, and unreadable data is a miss.
    """
    parts = [sys.executable, sys.version, sys.prefix]
    newest = 0
    for i, entry in enumerate(sys.path):
        found = _metadata_key(entry) if i == 0 or not os.path.isabs(entry) else None
        if found is None:
            try:
                mtime = os.stat(entry or ".").st_mtime_ns
            except OSError:
                mtime = -1
            found = [str(mtime)], mtime
        parts += (entry, *found[0])
        newest = max(newest, found[1])
    key = "\0".join(parts)
    raw = key.encode("utf-8", "surrogateescape")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    settled = time.time_ns() - newest > _SETTLE_NS
    name = f"entry-points-{int.from_bytes(raw, 'big') % _NAME_PRIME:016x}.marshal"
    return os.path.join(base, "virtkit", name), key, settled  # os.path: pathlib is 10 ms to import


def _metadata_key(entry: str) -> tuple[list[str], int] | None:
    """A working directory's part of the key: the distribution metadata in it (what
    importlib.metadata reads there: ``*.dist-info`` and ``*.egg-info``) with each one's mtime,
    and the newest of those; None when it is no directory (a zip: keyed on its mtime).

    Without metadata the part is empty, so every working directory shares one index; with some,
    the absolute path joins it, and a dist-info written or filled in later changes the key."""
    path = entry or "."
    found: list[tuple[str, int]] = []
    try:
        with os.scandir(path) as it:
            for item in it:
                if item.name.lower().endswith((".dist-info", ".egg-info")):
                    try:
                        found.append((item.name, item.stat().st_mtime_ns))
                    except OSError:
                        found.append((item.name, -1))
    except OSError:
        return None
    if not found:
        return [], 0
    found.sort()
    return [os.path.abspath(path), *(f"{name}\0{mtime}" for name, mtime in found)], max(m for _, m in found)


def _read_group() -> list[tuple[str, str]]:
    path, key, settled = _index_path()
    try:
        with open(path, "rb") as f:
            data = marshal.load(f)
        if data["key"] == key:
            return [(str(name), str(value)) for name, value in data["entry_points"]]
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        pass
    import importlib.metadata

    eps: list[tuple[str, str]] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (ep.name, ep.value) not in eps:  # a dist on sys.path twice lists its entry points twice
            eps.append((ep.name, ep.value))
    if not settled:
        return eps
    try:  # atomically, so concurrent processes never read half a file
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            marshal.dump({"key": key, "entry_points": eps}, f)
        os.replace(tmp, path)
    except OSError:
        return eps  # a read-only home: discovery still works, uncached
    prune_index(os.path.dirname(path), keep=path)
    return eps


#: Index files not rewritten for this long are removed when another is written; of the rest, at
#: most this many are kept (the newest). A removed index is only rebuilt when next needed.
INDEX_MAX_AGE_S = 30 * 86400
INDEX_MAX_FILES = 64


def prune_index(directory: str, keep: str) -> None:
    """Remove stale index files of ``directory`` (every install, upgrade or new working
    directory leaves one, which nothing reads again), and temporary files of writers that died;
    run only when an index is written, so a cold start that reads one pays nothing for it."""
    now = time.time()
    found: list[tuple[float, str]] = []
    try:
        with os.scandir(directory) as it:
            for item in it:
                if not item.name.startswith("entry-points-") or item.path == keep:
                    continue
                try:
                    mtime = item.stat().st_mtime
                except OSError:
                    continue
                stale = item.name.endswith(".tmp") and now - mtime > 3600
                if stale or now - mtime > INDEX_MAX_AGE_S:
                    _remove(item.path)
                elif not item.name.endswith(".tmp"):
                    found.append((mtime, item.path))
    except OSError:
        return
    found.sort(reverse=True)
    for _mtime, old in found[INDEX_MAX_FILES - 1 :]:
        _remove(old)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass  # another process removed it first, or the directory is read-only


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


# The value grammar of an entry point (as importlib.metadata.EntryPoint reads it); compiled
# only for a value that is not plain ``module.path:attr.path`` (see _split_target).
_TARGET = r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$"


def _split_target(value: str) -> tuple[str, str | None]:
    """(module, attr or None) as ``_TARGET`` splits ``value``; ValueError where it does not match."""
    module, colon, attr = value.partition(":")
    if _dotted(module) and (not colon or _dotted(attr)):
        return module, attr if colon else None  # identifiers are words: the pattern's reading
    m = re.match(_TARGET, value)
    if m is None:
        raise ValueError(f"malformed entry point value {value!r}")
    return m["module"], m["attr"]


def _dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def load_target(value: str) -> object:
    """Import ``module[:attr.attr]`` the way ``EntryPoint.load()`` does, without importing
    importlib.metadata. Any import error propagates (the caller records it)."""
    module, attrs = _split_target(value)
    __import__(module)  # importlib.import_module, without importing importlib (and warnings)
    obj: object = sys.modules[module]
    for attr in attrs.split(".") if attrs else ():
        obj = getattr(obj, attr)
    return obj


def load_entry_point(
    target: str, name: str, schemes: tuple[str, ...] = ()
) -> tuple[PluginSource | None, LoadFailure | None]:
    """The one loader: an entry point's target -> its plugin object, or the failure recorded.

    ``name`` is the entry point's (shown when the plugin never loaded). Each target is imported
    and instantiated once per process (``refresh()`` forgets).
    """
    with _lock:
        obj = _instances.get(target)
        if obj is None:
            try:
                obj = _instances[target] = instantiate(load_target(target))
            except Exception as exc:  # noqa: BLE001 - a broken plugin is recorded, never fatal
                # its own name is unknown: the object never loaded
                return None, LoadFailure(name, target, schemes, f"{type(exc).__name__}: {exc}", exc)
    own = plugin_name(obj, target)
    why = check_catalogue(obj)
    if why is not None:
        return None, LoadFailure(own, target, schemes, why)
    return PluginSource(own, obj, f"entry point {name} = {target}", target), None


def _load_plugins(schemes: frozenset[str]) -> tuple[list[PluginSource], list[LoadFailure]]:
    wanted = set(schemes) | {ANY_SCHEME}
    loaded: list[PluginSource] = []
    failures: list[LoadFailure] = []
    by_target: dict[str, list[str]] = {}
    first_name: dict[str, str] = {}
    for name, value in installed_entry_points():
        scheme = scheme_of(name)
        if scheme in wanted:
            by_target.setdefault(value, []).append(scheme)
            first_name.setdefault(value, name)
    # Sorted by entry-point name: the load order (and so the explain order) is stable.
    for target in sorted(by_target, key=lambda t: first_name[t]):
        src, failure = load_entry_point(target, first_name[target], tuple(by_target[target]))
        if src is not None:
            loaded.append(src)
        if failure is not None:
            failures.append(failure)
    return loaded, failures


class Installed(NamedTuple):
    """One installed plugin (one entry-point target) and what loading it gave."""

    name: str  # the plugin's name when it loaded, else its first entry point's
    target: str
    distribution: str
    version: str
    schemes: tuple[str, ...]
    source: PluginSource | None
    failure: LoadFailure | None


def inventory(distributions: Iterable[str] | None = None) -> list[Installed]:
    """Every installed plugin of the group (only those of ``distributions`` when given), loaded.

    Imports every plugin it lists (through the one loader), so it is for ``virtkit drivers`` and
    ``virtkit matrix``, not for ``open()``. Ordered by name, then distribution.
    """
    import importlib.metadata

    wanted = {_norm(d) for d in distributions} if distributions is not None else None
    rows: dict[str, tuple[list[str], str, str]] = {}  # target -> (entry point names, dist, version)
    for dist in importlib.metadata.distributions():
        dist_name = str(dist.metadata["Name"])
        if wanted is not None and _norm(dist_name) not in wanted:
            continue
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                # a dist on sys.path twice lists its entry points twice: the first copy is kept
                row = rows.setdefault(ep.value, ([], dist_name, dist.version))
                if row[1] == dist_name and ep.name not in row[0]:
                    row[0].append(ep.name)
    found = []
    for target, (names, dist_name, version) in rows.items():
        names.sort()
        schemes = tuple(dict.fromkeys(scheme_of(n) for n in names))
        src, failure = load_entry_point(target, names[0], schemes)
        name = src.name if src is not None else failure.name if failure is not None else names[0]
        found.append(Installed(name, target, dist_name, version, schemes, src, failure))
    found.sort(key=lambda i: (i.name, i.distribution))
    return found


def _norm(distribution: str) -> str:
    return distribution.lower().replace("_", "-")


def describe_installed() -> list[dict[str, Any]]:
    """Every installed plugin: name, distribution, version, schemes, loaded or failed and why.

    Imports every plugin, so it is for ``virtkit drivers``, not for ``open()``. A plugin whose
    hooks pluggy refuses is "failed" here as it is an ERROR at ``open()``.
    """
    from ._plugin import register

    rows = []
    for item in inventory():
        error = item.failure.error if item.failure is not None else ""
        if item.source is not None:
            error = register(item.source.plugin, keep=True) or ""
        row = {
            "plugin": item.name,
            "target": item.target,
            "distribution": item.distribution,
            "version": item.version,
            "schemes": list(item.schemes),
            "status": "failed" if error else "loaded",
            "error": error,
        }
        rows.append(row)
    return sorted(rows, key=lambda r: str(r["plugin"]))
