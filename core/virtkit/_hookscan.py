"""A plugin's plain hook implementations, read as pluggy reads them, without importing pluggy.

pluggy brings ``inspect`` and ``typing``: most of the import time of a cold ``virtkit list``
that is not the interpreter's own. Most plugins' hooks are plain: functions (or methods of the
plugin's class) marked ``@virtkit.hookimpl`` with no option but ``specname``, taking only
arguments the hook specification names. Those are read here the way pluggy's registration does
(the marker's options, the hook name, the positional arguments without defaults and, for a
method, without ``self``) and checked by its rule (every argument named by the specification).

Anything else -- wrapper or ordering options, staticmethods and classmethods, decorated
functions, hooks the specification does not know, arguments it does not name, two
implementations of one hook, objects that customise attribute listing -- is not read here:
``plain_hooks`` returns None and pluggy registers the plugin, so its verdict and its message
stand. tests/test_hookscan.py holds this reading equal to pluggy's for the plugins in the tree.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any, TypeVar, overload

    _F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["SPECS", "HookimplMarker", "plain_hooks"]

#: The hook specifications' argument names (``_plugin.HookSpecs``; a test keeps them equal).
SPECS: Mapping[str, tuple[str, ...]] = {"can_handle": ("uri",), "priority": ("uri",), "open": ("uri", "options")}
_MARK = "virtkit_impl"  # pluggy's HookimplMarker("virtkit") stores its options here
_ORDERING = ("wrapper", "hookwrapper", "optionalhook", "tryfirst", "trylast")
_DESCRIPTORS = (staticmethod, classmethod, types.MethodType)
_HOOKABLE = (types.FunctionType, *_DESCRIPTORS)


class HookimplMarker:
    """``@virtkit.hookimpl``: marks a hook implementation exactly as pluggy's
    ``HookimplMarker("virtkit")`` does (the same options in the same attribute), so pluggy
    registers what it marks, and marking a plugin's hooks imports no pluggy."""

    __slots__ = ()
    project_name = "virtkit"

    if TYPE_CHECKING:  # the overloads, for type checkers only

        @overload
        def __call__(self, function: _F) -> _F: ...

        @overload
        def __call__(
            self,
            function: None = ...,
            *,
            hookwrapper: bool = ...,
            optionalhook: bool = ...,
            tryfirst: bool = ...,
            trylast: bool = ...,
            specname: str | None = ...,
            wrapper: bool = ...,
        ) -> Callable[[_F], _F]: ...

    def __call__(
        self,
        function: _F | None = None,
        hookwrapper: bool = False,
        optionalhook: bool = False,
        tryfirst: bool = False,
        trylast: bool = False,
        specname: str | None = None,
        wrapper: bool = False,
    ) -> _F | Callable[[_F], _F]:
        def mark(func: _F) -> _F:
            opts = {
                "wrapper": wrapper,
                "hookwrapper": hookwrapper,
                "optionalhook": optionalhook,
                "tryfirst": tryfirst,
                "trylast": trylast,
                "specname": specname,
            }
            setattr(func, _MARK, opts)
            return func

        return mark if function is None else mark(function)


def plain_hooks(plugin: object) -> dict[str, tuple[Callable[..., Any], tuple[str, ...]]] | None:
    """hook -> (the callable pluggy would call, the argument names it passes); None: ask pluggy."""
    if isinstance(plugin, types.ModuleType):
        if "__dir__" in vars(plugin):
            return None
        return _scan(vars(plugin).items(), None)
    cls = type(plugin)
    if isinstance(plugin, type) or cls.__dir__ is not object.__dir__:
        return None
    own = getattr(plugin, "__dict__", {})
    if any(_marked(v) for v in own.values()):
        return None
    seen: dict[str, object] = {}
    for k in cls.__mro__:
        for name, value in vars(k).items():
            if isinstance(value, types.MemberDescriptorType) and _marked(_slot(value, plugin)):
                return None  # a function held in a slot: pluggy reads slots as it reads __dict__
            if name not in seen and name not in own:
                seen[name] = value
    return _scan(seen.items(), plugin)


def _slot(descriptor: types.MemberDescriptorType, plugin: object) -> object:
    try:
        return descriptor.__get__(plugin, type(plugin))  # reading a slot runs no user code
    except AttributeError:
        return None


def _marked(value: object) -> bool:
    if not isinstance(value, _HOOKABLE):
        return False
    inner = getattr(value, "__func__", None)
    return getattr(value, _MARK, None) is not None or getattr(inner, _MARK, None) is not None


def _scan(items: object, instance: object | None) -> dict[str, tuple[Callable[..., Any], tuple[str, ...]]] | None:
    table: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {}
    for name, value in items:  # type: ignore[attr-defined]
        if isinstance(value, _DESCRIPTORS):
            if _marked(value):
                return None
            continue
        if not isinstance(value, types.FunctionType):
            continue
        opts = getattr(value, _MARK, None)
        if opts is None:
            continue
        if not isinstance(opts, dict) or any(opts.get(o) for o in _ORDERING) or hasattr(value, "__wrapped__"):
            return None
        hook = opts.get("specname") or name
        args = _argnames(value, bound=instance is not None)
        if hook not in SPECS or hook in table or args is None or not set(args) <= set(SPECS[hook]):
            return None
        fn: Callable[..., Any] = value if instance is None else value.__get__(instance, type(instance))
        table[hook] = (fn, args)
    return table


def _argnames(fn: types.FunctionType, *, bound: bool) -> tuple[str, ...] | None:
    code = fn.__code__
    args = code.co_varnames[: code.co_argcount]
    if fn.__defaults__:
        args = args[: -len(fn.__defaults__)]  # pluggy passes only the arguments without defaults
    if bound:
        return args[1:] if args else None
    if "." in fn.__qualname__.rsplit("<locals>.", 1)[-1]:
        return None  # a class's function reached from a module: pluggy's own rule about self
    return args
