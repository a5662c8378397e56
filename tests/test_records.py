"""The public records made by ``virtkit._record`` behave as the typing / dataclasses ones they
stand in for (docs/contract.md section 5): each dataclass record is compared with a twin that
``dataclasses`` itself makes from the same class body."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import typing
import uuid

import pytest

import virtkit
from virtkit import URI, DomainConfig, DomainEvent, DomainEventType, DomainInfo, DomainRef, DomainState, Version
from virtkit._record import NamedTuple, _NamedTupleMeta, dataclass, field

U = uuid.UUID("12345678-1234-5678-1234-567812345678")
REF = DomainRef("web", U, 3)


def _values() -> list[object]:
    return [
        DomainConfig("web", 1024, extra={"accel": "kvm"}, devices=({"type": "disk", "path": "/d"},), uuid=U),
        DomainEvent(DomainEventType.STARTED, REF, "booted", 1.5),
        virtkit.parse_uri("xen+ssh://root:secret@host:22/system?a=1#f"),
    ]


def _twin(cls: type) -> type:
    """What ``dataclasses.dataclass(frozen=True, slots=True)`` makes of the same fields."""
    ns: dict[str, object] = {"__annotations__": dict(cls.__annotations__), "__module__": cls.__module__}
    for f in dataclasses.fields(cls):
        ns[f.name] = dataclasses.field(default=f.default, default_factory=f.default_factory, repr=f.repr)
    return dataclasses.dataclass(frozen=True, slots=True)(type(cls.__name__, (), ns))


@pytest.mark.parametrize("value", _values(), ids=lambda v: type(v).__name__)
def test_a_dataclass_record_behaves_as_its_dataclasses_twin(value: object) -> None:
    cls = type(value)
    twin_cls = _twin(cls)
    values = {f.name: getattr(value, f.name) for f in dataclasses.fields(cls)}
    twin = twin_cls(**values)
    assert dataclasses.is_dataclass(cls) and dataclasses.is_dataclass(value)
    fields = [(f.name, f.type, f.default, f.default_factory, f.repr) for f in dataclasses.fields(cls)]
    assert fields == [(f.name, f.type, f.default, f.default_factory, f.repr) for f in dataclasses.fields(twin_cls)]
    assert repr(value) == repr(twin)
    if cls is DomainConfig:  # its extra is a dict: unhashable, in the record as in the dataclass
        for v in (value, twin):
            with pytest.raises(TypeError):
                hash(v)
    else:
        assert hash(value) == hash(twin)
    assert value == cls(**values) and value != twin and value != 1
    assert cls.__match_args__ == twin_cls.__match_args__ == tuple(values)
    assert cls.__slots__ == tuple(values) and not hasattr(value, "__dict__")
    assert dataclasses.asdict(value) == dataclasses.asdict(twin)  # type: ignore[call-overload]
    assert cls.__doc__ and cls.__qualname__ == cls.__name__


@pytest.mark.parametrize("value", _values(), ids=lambda v: type(v).__name__)
def test_a_dataclass_record_is_frozen(value: object) -> None:
    name = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, name, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(value, name)
    with pytest.raises(AttributeError):
        value.not_a_field = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", _values(), ids=lambda v: type(v).__name__)
def test_a_dataclass_record_pickles_and_copies(value: object) -> None:
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(value, proto)) == value
    assert copy.copy(value) == value and copy.deepcopy(value) == value


def test_replace_and_the_defaults_are_the_dataclass_ones() -> None:
    cfg = DomainConfig("web", 1024)
    assert cfg.extra == {} and cfg.extra is not DomainConfig("b", 1).extra  # a factory, not a shared dict
    assert (cfg.vcpus, cfg.os_type, cfg.on_reboot, cfg.devices) == (1, "linux", "restart", ())
    copy_ = dataclasses.replace(cfg, name="copy", uuid=U)
    assert (copy_.name, copy_.uuid, copy_.memory) == ("copy", U, 1024) and type(copy_) is DomainConfig
    assert cfg.__replace__(name="copy", uuid=U) == copy_  # copy.replace's hook (Python 3.13)
    with pytest.raises(TypeError):
        DomainConfig("web")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        DomainConfig("web", 1, bogus=1)  # type: ignore[call-arg]
    uri = virtkit.parse_uri("test://u:pw@h/default")
    assert "pw" not in repr(uri) and dataclasses.replace(uri, port=5).port == 5
    assert [f.default for f in dataclasses.fields(URI)][1:3] == [None, None]
    assert DomainConfig.from_dict(cfg.to_dict()) == cfg


def test_namedtuple_records_are_the_typing_ones() -> None:
    info = DomainInfo(DomainState.RUNNING, 2048, 1024, 2, 5)
    assert isinstance(info, tuple) and DomainInfo.__bases__ == (tuple,)
    assert info._replace(vcpus=4).vcpus == 4 and info._asdict()["memory"] == 1024
    assert DomainRef._fields == ("name", "uuid", "id") and DomainRef._field_defaults == {"id": None}
    assert DomainRef("a", U) == ("a", U, None) and hash(DomainRef("a", U)) == hash(("a", U, None))
    assert repr(REF) == f"DomainRef(name='web', uuid={U!r}, id=3)"
    assert list(DomainRef.__annotations__) == ["name", "uuid", "id"]
    assert typing.get_type_hints(DomainInfo)["state"] is DomainState
    assert str(Version(4, 17)) == "4.17.0" and int(Version(1, 2, 3)) == 1_002_003
    assert Version.parse("4.17.2") == (4, 17, 2) and Version.__doc__ and Version.__module__ == "virtkit._types"
    for value in (info, REF, Version(1, 2)):
        assert pickle.loads(pickle.dumps(value)) == value


def test_the_record_makers_refuse_what_the_standard_ones_refuse() -> None:
    with pytest.raises(TypeError):

        class Bad(NamedTuple):
            a: int = 0
            b: int

    with pytest.raises(AttributeError):

        class Worse(NamedTuple):
            a: int

            def _replace(self) -> None: ...

    with pytest.raises(TypeError):

        @dataclass(frozen=True, slots=True)
        class BadToo:
            a: int = field(default=0)
            b: int

    with pytest.raises(ValueError):
        field(default=1, default_factory=int)
    with pytest.raises(TypeError):
        dataclass(frozen=False, slots=True)


def test_a_dataclass_records_methods_are_written_on_first_use() -> None:
    """No compile when the class is made; each method is written when first used, as dataclasses
    writes it (the same parameters, the same results as the twin's)."""
    import inspect

    from virtkit._record import _Written

    @dataclass(frozen=True, slots=True)
    class Fresh:
        """A record."""

        a: int
        b: str = "x"
        c: dict[str, int] = field(default_factory=dict)

    methods = ("__init__", "__repr__", "__eq__", "__hash__")
    assert all(isinstance(Fresh.__dict__[m], _Written) for m in methods)
    twin = _twin(Fresh)
    shape = [(p.name, p.kind, p.default) for p in inspect.signature(Fresh).parameters.values()]
    assert [n for n, _, _ in shape] == ["a", "b", "c"] and shape[1][2] == "x"
    assert [(p.name, p.kind) for p in inspect.signature(twin).parameters.values()] == [(n, k) for n, k, _ in shape]
    value = Fresh(1)
    assert callable(Fresh.__dict__["__init__"]) and isinstance(Fresh.__dict__["__repr__"], _Written)
    assert (
        repr(value) == f"{Fresh.__qualname__}(a=1, b='x', c={{}})" == repr(twin(1)).replace("Fresh", Fresh.__qualname__)
    )
    assert value == Fresh(1, "x", {}) and value != Fresh(2)
    assert Fresh.__init__.__qualname__ == f"{Fresh.__qualname__}.__init__"
    assert not any(isinstance(Fresh.__dict__[m], _Written) for m in methods[:3])


def _namedtuple_records() -> list[type]:
    """Every NamedTuple record the core defines, found in its modules (not listed by hand)."""
    import importlib
    import pkgutil

    from virtkit._record import _nt_asdict

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(virtkit.__path__, "virtkit."):
        if info.name == "virtkit.__main__":
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == info.name and vars(value).get("_asdict") is _nt_asdict:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[k] for k in sorted(found)]


_RECORDS = _namedtuple_records()


def test_every_namedtuple_record_is_found() -> None:
    names = {cls.__name__ for cls in _RECORDS}
    assert {"DomainRef", "DomainInfo", "Version", "Operation", "Route"} <= names and len(_RECORDS) >= 20


@pytest.mark.parametrize("cls", _RECORDS, ids=lambda c: c.__name__)
def test_a_namedtuple_record_behaves_as_collections_namedtuple(cls: type) -> None:
    """Each record against the class collections.namedtuple makes of the same fields: the same
    signature, values, repr, errors and helpers (typing.NamedTuple is built on it)."""
    import collections
    import inspect

    rec: typing.Any = cls
    twin: typing.Any = collections.namedtuple(cls.__name__, rec._fields, defaults=tuple(rec._field_defaults.values()))
    assert cls.__bases__ == (tuple,) and cls.__slots__ == () and "__dict__" not in dir(rec(*rec._fields))
    assert (rec._fields, rec._field_defaults, rec.__match_args__) == (
        twin._fields,
        twin._field_defaults,
        twin.__match_args__,
    )
    assert list(cls.__annotations__) == list(rec._fields)
    assert str(inspect.signature(cls)) == str(inspect.signature(twin))
    values = [object() for _ in rec._fields]
    value, other = rec(*values), twin(*values)
    assert value == other and tuple(value) == tuple(values) and hash(value) == hash(other)
    assert rec(**dict(zip(rec._fields, values, strict=True))) == value
    assert [getattr(value, n) for n in rec._fields] == values
    assert [getattr(cls, n).__doc__ for n in rec._fields] == [getattr(twin, n).__doc__ for n in rec._fields]
    if vars(cls)["__repr__"].__module__ == "virtkit._record":  # a record with a repr of its own keeps it
        assert repr(value) == repr(other)
    assert value._asdict() == other._asdict() and value.__getnewargs__() == other.__getnewargs__()
    first = rec._fields[0]
    changed = value._replace(**{first: 1})
    assert type(changed) is cls and changed == other._replace(**{first: 1})
    assert rec._make(values) == value and type(rec._make(values)) is cls

    def error(call: typing.Callable[[], object]) -> tuple[type[BaseException], str]:
        with pytest.raises((TypeError, ValueError)) as raised:
            call()
        return raised.type, str(raised.value).replace(twin.__name__, "T").replace(cls.__qualname__, "T")

    assert error(lambda: value._replace(bogus=1)) == error(lambda: other._replace(bogus=1))
    assert error(lambda: rec._make([*values, 1])) == error(lambda: twin._make([*values, 1]))
    assert error(lambda: rec(*values, 1)) == error(lambda: twin(*values, 1))
    required = [n for n in rec._fields if n not in rec._field_defaults]
    if required:
        assert error(lambda: rec()) == error(lambda: twin())
    plain = rec(*range(len(rec._fields)))
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(plain, proto)) == plain
    assert copy.copy(value) == value and copy.deepcopy(rec(*range(len(rec._fields)))) == tuple(range(len(rec._fields)))


def test_a_namedtuple_record_is_made_without_a_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to twelve fields, ``__new__`` is a renamed copy of one written per number of fields
    (no eval, no compile); beyond, it is compiled as namedtuple does. Both behave alike."""
    import builtins
    import collections
    import inspect

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled")

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "eval", refused)
        patch.setattr(builtins, "compile", refused)
        patch.setattr(builtins, "exec", refused)

        class Fresh(NamedTuple):
            """A record."""

            a: int
            b: str = "x"

            def both(self) -> str:
                return f"{self.a}{self.b}"

        value = Fresh(1)
    assert value.both() == "1x" and Fresh(b="y", a=2) == (2, "y") and repr(value) == "Fresh(a=1, b='x')"
    assert Fresh.__new__.__qualname__ == f"{Fresh.__qualname__}.__new__" and Fresh.__new__.__defaults__ == ("x",)
    assert str(inspect.signature(Fresh)) == "(a, b='x')" and Fresh.__doc__ == "A record."
    with pytest.raises(TypeError, match=r"Fresh.__new__\(\) missing 1 required positional argument: 'a'"):
        Fresh()  # type: ignore[call-arg]

    class One(NamedTuple):
        a: int

    assert One.__doc__ == "One(a,)" and One(5) == (5,) and str(inspect.signature(One)) == "(a)"
    names = [f"f{i}" for i in range(14)]
    wide = _NamedTupleMeta(
        "Wide", (NamedTuple,), {"__module__": __name__, "__annotations__": dict.fromkeys(names, int)}
    )
    twin = collections.namedtuple("Wide", names)
    assert str(inspect.signature(wide)) == str(inspect.signature(twin))
    assert wide(*range(14)) == twin(*range(14)) and wide(*range(14)).f13 == 13
    with pytest.raises(ValueError):

        class Underscore(NamedTuple):
            _a: int

    with pytest.raises(ValueError):
        _NamedTupleMeta("Keyword", (NamedTuple,), {"__module__": __name__, "__annotations__": {"class": int}})
