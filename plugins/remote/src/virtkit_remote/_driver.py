"""The driver connection: one method per catalogue operation the far side serves, made from the
catalogue (there is no hand-written list of remote methods)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from virtkit import CATALOGUE, DomainEvent, Explanation, Operation
from virtkit.rpc import decode_value, encode_value

from ._conn import Link

__all__ = ["RemoteDriver", "driver_class"]

_REGISTER = "connect_domain_event_register"


class _Base:
    """What every remote driver class shares; the operations are added by :func:`driver_class`."""

    __slots__ = ("link", "virtkit_remote_explanation")

    def __init__(self, link: Link, explanation: Explanation | None = None) -> None:
        self.link = link
        #: The far side's composition: the core shows it under ``explain``.
        self.virtkit_remote_explanation = explanation

    def close(self) -> None:
        self.link.close()


def _signature(op: Operation) -> inspect.Signature:
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
    params += [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in op.params]
    params.append(inspect.Parameter("flags", inspect.Parameter.KEYWORD_ONLY, default=0))
    return inspect.Signature(params)


def _method(op: Operation) -> Callable[..., Any]:
    name, returns = op.name, op.returns
    types = tuple(p.type for p in op.params)
    count = len(types)

    if name == _REGISTER:

        def register(self: _Base, callback: Callable[[DomainEvent], None], *, flags: int = 0) -> Callable[[], None]:
            return self.link.subscribe(callback, int(flags))

        method: Callable[..., Any] = register
    else:

        def call(self: _Base, *args: Any, flags: int = 0) -> Any:
            if len(args) != count:
                raise TypeError(f"{name}() takes {count} argument(s), got {len(args)}")
            wire = [encode_value(t, a) for t, a in zip(types, args, strict=True)]
            return decode_value(returns, self.link.call(name, wire, int(flags)))

        method = call
        method.__signature__ = _signature(op)  # type: ignore[attr-defined]
    method.__name__ = method.__qualname__ = name
    method.__doc__ = op.doc
    return method


_METHODS = {name: _method(op) for name, op in CATALOGUE.items()}
_classes: dict[frozenset[str], type[_Base]] = {}


def driver_class(operations: Iterable[str]) -> type[_Base]:
    """A class with exactly ``operations`` (those the far side serves): what it lacks stays an
    empty slot here too, so ``served_by`` and the kit's "not provided" tell the truth."""
    key = frozenset(op for op in operations if op in _METHODS)
    cls = _classes.get(key)
    if cls is None:
        body: dict[str, Any] = {"__slots__": ()} | {op: _METHODS[op] for op in CATALOGUE if op in key}
        cls = _classes[key] = type("RemoteDriver", (_Base,), body)
        cls.__module__ = __name__
    return cls


#: Every operation: what ``virtkit matrix`` inspects.
RemoteDriver = driver_class(CATALOGUE)
