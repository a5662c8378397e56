"""The plugin contract: pluggy negotiation hooks, the per-method priority decorator, Declined.

A plugin is a module, class or object carrying ``@hookimpl`` functions for the hooks below and a
``virtkit_catalogue`` string naming the catalogue version it targets. Its ``open`` hook returns a
*driver connection*: any object whose methods are named after catalogue operations.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import pluggy

from ._uri import URI

__all__ = [
    "PROJECT",
    "Declined",
    "OpenOptions",
    "hookimpl",
    "hookspec",
    "priority",
    "priority_of",
]

PROJECT = "virtkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

_F = TypeVar("_F", bound=Callable[..., Any])
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


class HookSpecs:
    """The negotiation hooks. Called once per plugin per open, never per operation."""

    @hookspec
    def can_handle(self, uri: URI) -> bool | Declined:  # type: ignore[empty-body]
        """Cheap local probe: could this plugin serve ``uri``? Return False or a Declined(reason)."""

    @hookspec
    def priority(self, uri: URI) -> int:  # type: ignore[empty-body]
        """Default priority of this plugin's operations for ``uri`` (higher wins). Optional: 0."""

    @hookspec
    def open(self, uri: URI, options: OpenOptions) -> object:
        """Open and return a driver connection, or return/raise Declined(reason)."""
