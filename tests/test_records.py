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
from virtkit._record import NamedTuple, dataclass, field

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
