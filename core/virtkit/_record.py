"""Record classes made without importing ``typing`` or ``dataclasses`` (issue 14: cold start).

A CLI command that lists domains needs a dozen record types but not those two modules:
``typing`` brings ``contextlib`` and its own weight, and ``dataclasses`` imports ``inspect``
(with ``ast``, ``dis``, ``tokenize``). Type checkers see the standard names, so every field
type stays visible to users' mypy; at run time the names come from here::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from typing import NamedTuple
    else:
        from ._record import NamedTuple

:class:`NamedTuple` builds the class ``typing.NamedTuple`` builds (``collections.namedtuple``
with the class body's methods and docstring; ``__annotations__`` keep the strings written, as a
dataclass's do), without namedtuple's compile of each class's ``__new__`` (see ``_BY_ARITY``):
tests/test_records.py holds every record equal to the namedtuple made of its fields.

:func:`dataclass` accepts only ``frozen=True, slots=True`` and makes the methods ``dataclasses``
would (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, frozen ``__setattr__``,
``__match_args__``, pickling, 3.13's ``__replace__``; the four compiled ones when first used,
see :class:`_Written`); the real ``dataclasses`` computes ``__dataclass_fields__`` on first
access, so ``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work on these
classes as on any dataclass.
tests/test_records.py compares each record with the class ``dataclasses`` makes of it.
"""

from __future__ import annotations

import sys
from keyword import iskeyword as _iskeyword
from types import FunctionType as _function

try:
    from _collections import _tuplegetter  # type: ignore[import-not-found]  # the C accessor namedtuple uses
except ImportError:  # another Python than CPython: what collections itself falls back to
    from operator import itemgetter as _itemgetter

    def _tuplegetter(index: int, doc: str) -> Any:
        return property(_itemgetter(index), doc=doc)


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["NamedTuple", "dataclass", "field"]

# What typing.NamedTuple refuses in a class body, and what it does not copy onto the class.
_PROHIBITED = frozenset(
    {"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults"}
    | {"_make", "_replace", "_asdict", "_source"}
)
_NOT_COPIED = frozenset({"__module__", "__name__", "__qualname__", "__annotations__"})
_HAS_REPLACE = sys.version_info >= (3, 13)  # collections.namedtuple gives copy.replace's hook there


class _NamedTupleMeta(type):
    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> type:
        if not bases:  # the NamedTuple base itself
            return super().__new__(mcls, name, bases, ns)
        if bases != (NamedTuple,):
            raise TypeError("a record can only inherit from NamedTuple")
        fields: dict[str, Any] = ns.get("__annotations__", {})
        names = tuple(fields)
        for n in names:
            if n.startswith("_") or not n.isidentifier() or _iskeyword(n):
                raise ValueError(f"{name}: bad field name {n!r}")
        with_default = [n for n in names if n in ns]
        if with_default != list(names[len(names) - len(with_default) :]):
            raise TypeError(f"{name}: a field without a default follows one with a default")
        body: dict[str, Any] = {
            "__doc__": f"{name}({', '.join(names)}{',' if len(names) == 1 else ''})",
            "__slots__": (),
            "_fields": names,
            "_field_defaults": {n: ns[n] for n in with_default},
            "__new__": _new_for(name, ns.get("__qualname__", name), names, tuple(ns[n] for n in with_default)),
            "_make": classmethod(_nt_make),
            "_replace": _nt_replace,
            "__repr__": _nt_repr,
            "_asdict": _nt_asdict,
            "__getnewargs__": _nt_getnewargs,
            "__match_args__": names,
            "__module__": ns["__module__"],
            "__qualname__": ns.get("__qualname__", name),
        }
        if _HAS_REPLACE:
            body["__replace__"] = _nt_replace
        for index, n in enumerate(names):
            body[n] = _tuplegetter(index, f"Alias for field number {index}")
        for key, value in ns.items():
            if key in _PROHIBITED:
                raise AttributeError(f"cannot overwrite NamedTuple attribute {key}")
            if key not in _NOT_COPIED and key not in fields:
                body[key] = value
        cls = type(name, (tuple,), body)
        cls.__annotations__ = dict(fields)
        return cls


class NamedTuple(metaclass=_NamedTupleMeta):
    """Base of ``class Name(NamedTuple): field: type = default``; the class made is a plain
    subclass of ``tuple``, as with ``typing.NamedTuple``."""


# What collections.namedtuple gives each class, written once here (its own are closures made per
# class): each reads the class's _fields.


def _nt_make(cls: type, iterable: Any) -> Any:
    """Make a new record from a sequence or iterable."""
    made: tuple[Any, ...] = tuple.__new__(cls, iterable)
    if len(made) != len(cls._fields):  # type: ignore[attr-defined]
        raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(made)}")  # type: ignore[attr-defined]
    return made


def _nt_replace(self: Any, /, **changes: Any) -> Any:
    """Return a new record replacing specified fields with new values."""
    made = self._make(map(changes.pop, self._fields, self))
    if changes:
        raise ValueError(f"Got unexpected field names: {list(changes)!r}")
    return made


def _nt_repr(self: Any) -> str:
    """Return a nicely formatted representation string"""
    shown = ", ".join([f"{n}={v!r}" for n, v in zip(self._fields, self, strict=True)])
    return f"{self.__class__.__name__}({shown})"


def _nt_asdict(self: Any) -> dict[str, Any]:
    """Return a new dict which maps field names to their values."""
    return dict(zip(self._fields, self, strict=True))


def _nt_getnewargs(self: Any) -> tuple[Any, ...]:
    """Return self as a plain tuple.  Used by copy and pickle."""
    return tuple(self)


_tuple_new = tuple.__new__

# collections.namedtuple compiles each class's __new__ from source with eval, a compile per
# record class at import (most of what a record cost). The function is the same for every class
# of a given number of fields but for its parameters' names, so it is written here once per
# number of fields and each class gets a copy of it with its own names: the same signature,
# keywords and error messages as namedtuple's, without a compile.
_BY_ARITY = (
    lambda _cls, a: _tuple_new(_cls, (a,)),
    lambda _cls, a, b: _tuple_new(_cls, (a, b)),
    lambda _cls, a, b, c: _tuple_new(_cls, (a, b, c)),
    lambda _cls, a, b, c, d: _tuple_new(_cls, (a, b, c, d)),
    lambda _cls, a, b, c, d, e: _tuple_new(_cls, (a, b, c, d, e)),
    lambda _cls, a, b, c, d, e, f: _tuple_new(_cls, (a, b, c, d, e, f)),
    lambda _cls, a, b, c, d, e, f, g: _tuple_new(_cls, (a, b, c, d, e, f, g)),
    lambda _cls, a, b, c, d, e, f, g, h: _tuple_new(_cls, (a, b, c, d, e, f, g, h)),
    lambda _cls, a, b, c, d, e, f, g, h, i: _tuple_new(_cls, (a, b, c, d, e, f, g, h, i)),
    lambda _cls, a, b, c, d, e, f, g, h, i, j: _tuple_new(_cls, (a, b, c, d, e, f, g, h, i, j)),
    lambda _cls, a, b, c, d, e, f, g, h, i, j, k: _tuple_new(_cls, (a, b, c, d, e, f, g, h, i, j, k)),
    lambda _cls, a, b, c, d, e, f, g, h, i, j, k, m: _tuple_new(_cls, (a, b, c, d, e, f, g, h, i, j, k, m)),
)


def _new_for(name: str, qualname: str, names: tuple[str, ...], defaults: tuple[Any, ...]) -> Any:
    """The ``__new__`` namedtuple would compile for these fields."""
    args = ", ".join(names) + ("," if len(names) == 1 else "")
    if 0 < len(names) <= len(_BY_ARITY):
        code = _BY_ARITY[len(names) - 1].__code__
        code = code.replace(co_varnames=("_cls", *names), co_name="__new__", co_qualname=f"{qualname}.__new__")
        new = _function(code, globals(), "__new__", defaults or None)
    else:  # the source is built from the class's own field names, checked as identifiers
        new = eval(f"lambda _cls, {args}: _tuple_new(_cls, ({args}))", {"_tuple_new": _tuple_new})
        new.__name__, new.__qualname__, new.__defaults__ = "__new__", f"{qualname}.__new__", defaults or None
    new.__doc__ = f"Create new instance of {name}({args})"
    return new


_MISSING: Any = object()


class _Field:
    __slots__ = ("default", "default_factory", "repr")

    def __init__(self, default: Any, default_factory: Any, shown: bool) -> None:
        self.default, self.default_factory, self.repr = default, default_factory, shown


def field(*, default: Any = _MISSING, default_factory: Any = _MISSING, repr: bool = True) -> Any:  # noqa: A002
    """``dataclasses.field`` for the arguments records use."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, repr)


def _frozen_setattr(self: object, name: str, value: object) -> None:
    from dataclasses import FrozenInstanceError  # an error path: dataclasses only now

    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: object) -> list[Any]:
    return [getattr(self, n) for n in type(self).__match_args__]  # type: ignore[attr-defined]


def _replace(self: object, **changes: Any) -> object:
    """``copy.replace`` (Python 3.13), as dataclasses 3.13 write it: ``dataclasses.replace``."""
    values = {n: getattr(self, n) for n in type(self).__match_args__}  # type: ignore[attr-defined]
    return type(self)(**{**values, **changes})


def _setstate(self: object, state: list[Any]) -> None:
    for name, value in zip(type(self).__match_args__, state, strict=True):  # type: ignore[attr-defined]
        object.__setattr__(self, name, value)


class _DataclassInfo:
    """``__dataclass_fields__`` / ``__dataclass_params__``, made by ``dataclasses`` itself on
    first access from a twin class with the same fields, then stored on the record class."""

    def __init__(self, spec: list[tuple[str, Any, _Field]]) -> None:
        self.spec = spec

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type) -> Any:
        import dataclasses

        ns: dict[str, Any] = {"__annotations__": {n: t for n, t, _ in self.spec}, "__module__": owner.__module__}
        for n, _, f in self.spec:
            kw: dict[str, Any] = {"repr": f.repr}
            if f.default is not _MISSING:
                kw["default"] = f.default
            if f.default_factory is not _MISSING:
                kw["default_factory"] = f.default_factory
            ns[n] = dataclasses.field(**kw)
        twin: Any = dataclasses.dataclass(frozen=True)(type(owner.__name__, (), ns))
        owner.__dataclass_fields__ = twin.__dataclass_fields__  # type: ignore[attr-defined]
        owner.__dataclass_params__ = twin.__dataclass_params__  # type: ignore[attr-defined]
        return getattr(owner, self.name)


def dataclass(*, frozen: bool, slots: bool) -> Callable[[type], type]:
    """``dataclasses.dataclass(frozen=True, slots=True)``, the only form records use."""
    if not (frozen and slots):
        raise TypeError("virtkit records are frozen, with slots")
    return _make_dataclass


def _make_dataclass(cls: type) -> type:
    annotations: dict[str, Any] = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - inspect is what we avoid
    spec: list[tuple[str, Any, _Field]] = []
    for name, hint in annotations.items():
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, _Field) else _Field(value, _MISSING, True)
        if spec and f.default is _MISSING and f.default_factory is _MISSING and not _required(spec[-1][2]):
            raise TypeError(f"non-default argument {name!r} follows default argument")
        spec.append((name, hint, f))
    names = [n for n, _, _ in spec]
    ns = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
    ns.update(
        __init__=_Written(spec),
        __repr__=_Written(spec),
        __eq__=_Written(spec),
        __hash__=_Written(spec),
        __slots__=tuple(names),
        __match_args__=tuple(names),
        __setattr__=_frozen_setattr,
        __delattr__=_frozen_delattr,
        __getstate__=_getstate,
        __setstate__=_setstate,
        __replace__=_replace,
        __dataclass_fields__=_DataclassInfo(spec),
        __dataclass_params__=_DataclassInfo(spec),
    )
    made = type(cls)(cls.__name__, cls.__bases__, ns)
    made.__qualname__ = cls.__qualname__
    return made


class _Written:
    """``__init__``, ``__repr__``, ``__eq__`` or ``__hash__`` as ``dataclasses`` writes it, compiled
    from the fields on first use and then stored on the class in place of this descriptor: a
    record class costs no compile at import, and a method never used (most records' ``__repr__``
    in a CLI command) is never compiled."""

    __slots__ = ("name", "owner", "spec")

    def __init__(self, spec: list[tuple[str, Any, _Field]]) -> None:
        self.spec = spec

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner, self.name = owner, name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        method = _write(self.name, self.spec)
        method.__qualname__ = f"{self.owner.__qualname__}.{self.name}"
        setattr(self.owner, self.name, method)
        return method if obj is None else method.__get__(obj, owner)


def _write(method: str, spec: list[tuple[str, Any, _Field]]) -> Any:
    names = [n for n, _, _ in spec]
    env: dict[str, Any] = {"_MISSING": _MISSING, "_set": object.__setattr__}
    values = "".join(f"self.{n}, " for n in names)
    if method == "__init__":
        params, body = [], []
        for n, _, f in spec:
            if f.default_factory is not _MISSING:
                env[f"_factory_{n}"] = f.default_factory
                params.append(f"{n}=_MISSING")
                body.append(f"_set(self, {n!r}, _factory_{n}() if {n} is _MISSING else {n})")
            else:
                if f.default is not _MISSING:
                    env[f"_default_{n}"] = f.default
                params.append(n if f.default is _MISSING else f"{n}=_default_{n}")
                body.append(f"_set(self, {n!r}, {n})")
        source = f"def __init__(self, {', '.join(params)}):\n    {'; '.join(body) or 'pass'}\n"
    elif method == "__repr__":
        shown = " + ', ' + ".join(f"'{n}=' + repr(self.{n})" for n, _, f in spec if f.repr) or "''"
        source = f"def __repr__(self):\n    return type(self).__qualname__ + '(' + {shown} + ')'\n"
    elif method == "__eq__":
        other = "".join(f"other.{n}, " for n in names)
        source = (
            "def __eq__(self, other):\n"
            f"    if other.__class__ is self.__class__:\n        return ({values}) == ({other})\n"
            "    return NotImplemented\n"
        )
    else:
        source = f"def __hash__(self):\n    return hash(({values}))\n"
    exec(source, env)  # the source is built above from the class's own field names
    return env[method]


def _required(f: _Field) -> bool:
    return f.default is _MISSING and f.default_factory is _MISSING
