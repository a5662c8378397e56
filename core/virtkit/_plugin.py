"""The plugin contract: pluggy negotiation hooks, the per-method priority decorator, Declined.

A plugin is a module, class or object carrying ``@hookimpl`` functions for the hooks below and a
``virtkit_catalogue`` string naming the catalogue version it targets. Its ``open`` hook returns a
*driver connection*: any object whose methods are named after catalogue operations.

Every caller of a hook (negotiation, the default-URI probe, ``virtkit drivers``, ``virtkit
matrix``) goes through :func:`register` and :func:`call_hook` here, so what pluggy registered
(``specname``, optional hooks, validated signatures) is what every one of them sees.

pluggy (with ``inspect``) is not imported by ``import virtkit``: ``hookimpl`` marks as pluggy's
marker does, ``hookspec`` is made on first use, and a plugin whose hooks are plain functions is
registered without pluggy (``_hookscan`` reads them as pluggy does); any other plugin goes to it.
"""

from __future__ import annotations

import _thread  # threading is not on the start-up path: a lock is all this needs
import types
from collections.abc import Callable, Mapping

from ._errors import InvalidArgument
from ._hookscan import HookimplMarker, plain_hooks
from ._uri import URI

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any, NamedTuple, TypeVar

    import pluggy

    _F = TypeVar("_F", bound=Callable[..., Any])
else:
    from ._record import NamedTuple

__all__ = [
    "PROJECT",
    "Declined",
    "OpenOptions",
    "call_hook",
    "check_flags",
    "forget",
    "hook_function",
    "hookimpl",
    "hookspec",
    "priority",
    "priority_of",
    "register",
    "release",
]

PROJECT = "virtkit"

hookimpl = HookimplMarker()

if TYPE_CHECKING:
    hookspec: pluggy.HookspecMarker


def __getattr__(name: str) -> object:
    """``hookspec``: pluggy's marker for project ``virtkit``, made on first use."""
    if name != "hookspec":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pluggy

    marker = pluggy.HookspecMarker(PROJECT)
    globals()[name] = marker
    return marker


_PRIORITY_ATTR = "__virtkit_priority__"


class Declined(Exception):
    """ "Not mine": return it from ``can_handle`` or ``open``, or raise it from ``open``.

    Falsy, so ``can_handle`` may return it where it would return False, with a reason that
    ``explain`` shows.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __bool__(self) -> bool:
        return False


class OpenOptions(NamedTuple):
    """What the core tells a plugin's ``open`` hook about the connection being built."""

    readonly: bool = False
    timeout: float = 30.0
    params: Mapping[str, Any] = types.MappingProxyType({})


def priority(value: int) -> Callable[[_F], _F]:
    """Give one driver method its own priority, overriding the plugin's for that operation."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("priority must be an int")

    def mark(fn: _F) -> _F:
        setattr(fn, _PRIORITY_ATTR, value)
        return fn

    return mark


def priority_of(method: object) -> int | None:
    return getattr(method, _PRIORITY_ATTR, None)


def check_flags(flags: int, allowed: int = 0) -> None:
    """Raise ``InvalidArgument`` unless ``flags`` is an int with no bit outside ``allowed``.

    For driver methods: every operation takes ``flags``, and a bit the driver does not know must
    be refused, not ignored (a caller asking for behaviour it will not get).
    """
    if not isinstance(flags, int):
        raise InvalidArgument(f"unsupported flags {flags!r}: not an int")
    if flags & ~allowed:
        raise InvalidArgument(f"unsupported flags {flags:#x}")


def _hookspecs() -> type:
    """The negotiation hooks. Called once per plugin per open, never per operation."""
    import pluggy

    spec = pluggy.HookspecMarker(PROJECT)

    class HookSpecs:
        @spec
        def can_handle(self, uri: URI) -> bool | Declined:  # type: ignore[empty-body]
            """Cheap local probe: could this plugin serve ``uri``? Return False or a Declined(reason)."""

        @spec
        def priority(self, uri: URI) -> int:  # type: ignore[empty-body]
            """Default priority of this plugin's operations for ``uri`` (higher wins). Optional: 0."""

        @spec
        def open(self, uri: URI, options: OpenOptions) -> object:
            """Open and return a driver connection, or return/raise Declined(reason)."""

    return HookSpecs


# One process-wide registry: registration (and the signature check) happens once per plugin
# object, not once per call. Plain hooks (see _hookscan) are kept in _plain and pluggy is not
# imported for them; any other plugin is registered with pluggy's manager. In-code plugins are
# released after use (release()) so throwaway objects don't accumulate; entry-point plugins stay
# registered for the process.
_pm: pluggy.PluginManager | None = None
_pm_lock = _thread.allocate_lock()
_plain: dict[int, tuple[object, dict[str, tuple[Callable[..., Any], tuple[str, ...]]]]] = {}
_rejected: dict[int, tuple[object, str]] = {}  # id -> (plugin kept alive, why it cannot serve)
_NO_OPEN = "implements no 'open' hook"


def _manager() -> pluggy.PluginManager:
    global _pm
    if _pm is None:
        import pluggy

        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(_hookspecs())
        _pm = pm
    return _pm


def _known(table: Mapping[int, tuple[object, Any]], plugin: object) -> Any:
    entry = table.get(id(plugin))
    return entry[1] if entry is not None and entry[0] is plugin else None


def register(plugin: object, *, keep: bool) -> str | None:
    """Register ``plugin`` (its hooks checked against the specification); None, or why it cannot serve.

    ``keep``: the plugin lives for the process (an entry point's), so a rejection is remembered.
    """
    with _pm_lock:
        if _known(_plain, plugin) is not None or (_pm is not None and _pm.is_registered(plugin)):
            return None
        known = _known(_rejected, plugin)
        if known is not None:
            return str(known)
        table = plain_hooks(plugin)
        if table is not None:
            why = None if "open" in table else _NO_OPEN
            if why is None:
                _plain[id(plugin)] = (plugin, table)
        else:
            why = _register_with_pluggy(plugin)
        if why is not None and keep:
            _rejected[id(plugin)] = (plugin, why)
        return why


def _register_with_pluggy(plugin: object) -> str | None:
    import pluggy

    pm = _manager()
    try:
        pm.register(plugin)
    except pluggy.PluginValidationError as exc:
        return "invalid hook implementation: " + " ".join(str(exc).split())
    if not any(impl.plugin is plugin for impl in pm.hook.open.get_hookimpls()):
        pm.unregister(plugin)
        return _NO_OPEN
    return None


def forget() -> None:
    """Drop every registration (``refresh_plugins()``: the entry-point objects are reloaded)."""
    global _pm
    with _pm_lock:
        _pm = None
        _plain.clear()
        _rejected.clear()


def release(plugin: object) -> None:
    """Unregister an in-code plugin after use."""
    with _pm_lock:
        if _known(_plain, plugin) is not None:
            del _plain[id(plugin)]
        elif _pm is not None and _pm.is_registered(plugin):
            _pm.unregister(plugin)


def hook_function(plugin: object, hook: str) -> Callable[..., Any] | None:
    """The function registered for ``plugin``'s ``hook`` (whatever its own name), or None."""
    found = _find(plugin, hook)
    return None if found is None else found[0]


def call_hook(plugin: object, hook: str, **kwargs: Any) -> tuple[bool, Any]:
    """Call one registered plugin's implementation of ``hook``; (False, None) when it has none.

    One plugin at a time, not pluggy's fan-out: one plugin's decline or error stays its own.
    """
    found = _find(plugin, hook)
    if found is None:
        return False, None
    fn, argnames = found
    return True, fn(*[kwargs[a] for a in argnames])


def _find(plugin: object, hook: str) -> tuple[Callable[..., Any], tuple[str, ...]] | None:
    table = _known(_plain, plugin)
    if table is not None:
        found: tuple[Callable[..., Any], tuple[str, ...]] | None = table.get(hook)
        return found
    if _pm is None:
        return None
    # get_hookimpls() returns a copy: the hook itself runs unlocked, so opens proceed in parallel
    with _pm_lock:
        impls = getattr(_manager().hook, hook).get_hookimpls()
    impl = next((impl for impl in impls if impl.plugin is plugin), None)
    return None if impl is None else (impl.function, tuple(impl.argnames))
