"""What the core promises plugins, so they need not repeat it: ``open`` only after ``can_handle``
said yes for the same URI, in-code plugins filtered by their declared schemes, ``check_flags``."""

from __future__ import annotations

import pytest

import virtkit
from virtkit import URI, Declined, OpenOptions, Outcome, hookimpl
from virtkit_fakes._memory import MemoryDriver


class Recorder:
    """An in-code plugin recording which hooks ran for which URI."""

    virtkit_catalogue = "1.0"

    def __init__(self, name: str = "recorder", handles: bool = True, schemes: object = None) -> None:
        self.virtkit_name = name
        self.handles = handles
        if schemes is not None:
            self.virtkit_schemes = schemes
        self.calls: list[tuple[str, str]] = []

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        self.calls.append(("can_handle", str(uri)))
        return True if self.handles else Declined("not mine")

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        self.calls.append(("open", str(uri)))
        return MemoryDriver(self.virtkit_name)


class OpenOnly:
    """No can_handle: open alone decides (it is optional)."""

    virtkit_catalogue = "1.0"
    virtkit_name = "openonly"

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        return MemoryDriver("openonly")


def test_open_never_runs_after_a_decline() -> None:
    p = Recorder(handles=False)
    with pytest.raises(virtkit.NoDriver, match="recorder declined: not mine"):
        virtkit.open("mem:///", plugins=[p], entry_points=False)
    assert p.calls == [("can_handle", "mem:///")]


def test_open_runs_after_yes_for_the_same_uri() -> None:
    p = Recorder()
    with virtkit.open("mem:///x", plugins=[p], entry_points=False) as conn:
        assert conn.type() == "Fake-recorder"
    assert p.calls == [("can_handle", "mem:///x"), ("open", "mem:///x")]


def test_without_can_handle_open_decides() -> None:
    with virtkit.open("mem:///", plugins=[OpenOnly()], entry_points=False) as conn:
        assert conn.type() == "Fake-openonly"


@pytest.mark.parametrize("schemes", ["mem", ("mem",), ["other", "mem"], frozenset({"*"}), ("mem.label",)])
def test_in_code_plugin_asked_for_its_declared_schemes(schemes: object) -> None:
    p = Recorder(schemes=schemes)
    with virtkit.open("mem:///", plugins=[p], entry_points=False) as conn:
        assert conn.type() == "Fake-recorder"
    assert p.calls[0] == ("can_handle", "mem:///")


@pytest.mark.parametrize("schemes", ["other", ("other", "+ssh"), ()])
def test_in_code_plugin_not_asked_for_other_schemes(schemes: object) -> None:
    p, fallback = Recorder(schemes=schemes), Recorder("fallback")
    with virtkit.open("mem:///", plugins=[p, fallback], entry_points=False) as conn:
        assert [a.plugin for a in conn.explain().attempts] == ["fallback"]  # as if not installed
    assert p.calls == []


def test_in_code_transport_plugin_serves_any_scheme_with_its_transport() -> None:
    p = Recorder(schemes="+memt")
    with virtkit.open("mem+memt://host/", plugins=[p], entry_points=False, transports=["memt"]) as conn:
        assert conn.type() == "Fake-recorder"
    with pytest.raises(virtkit.NoDriver):
        virtkit.open("mem:///", plugins=[p], entry_points=False)
    assert [uri for _hook, uri in p.calls] == ["mem+memt://host/", "mem+memt://host/"]


def test_without_a_declaration_every_uri_is_asked() -> None:
    p = Recorder()
    with virtkit.open("anything:///", plugins=[p], entry_points=False):
        pass
    assert p.calls[0] == ("can_handle", "anything:///")


@pytest.mark.parametrize("schemes", [3, ("mem", 3), ("",)])
def test_a_malformed_declaration_is_the_plugins_load_failure(schemes: object) -> None:
    p, fallback = Recorder(schemes=schemes), Recorder("fallback")
    with virtkit.open("mem:///", plugins=[p, fallback], entry_points=False) as conn:
        failed = {name: err for name, _target, err in conn.explain().load_failures}
        assert "virtkit_schemes" in failed["recorder"]
        assert all(a.plugin != "recorder" for a in conn.explain().attempts)
    assert p.calls == []
    with pytest.raises(virtkit.PluginLoadError, match="virtkit_schemes"):
        virtkit.open("mem:///", plugins=[p, fallback], entry_points=False, strict=True)


def test_declined_attempt_is_recorded() -> None:
    with virtkit.open("mem:///", plugins=[Recorder("no", handles=False), Recorder()], entry_points=False) as conn:
        outcomes = {a.plugin: a.outcome for a in conn.explain().attempts}
    assert outcomes == {"no": Outcome.DECLINED, "recorder": Outcome.SUCCESS}


@pytest.mark.parametrize(("flags", "allowed"), [(0, 0), (0, 3), (1, 1), (2, 3), (3, 3)])
def test_check_flags_accepts_allowed_bits(flags: int, allowed: int) -> None:
    virtkit.check_flags(flags, allowed)


@pytest.mark.parametrize(("flags", "allowed"), [(1, 0), (4, 3), (-1, 0xFF), (1 << 40, 0)])
def test_check_flags_refuses_other_bits(flags: int, allowed: int) -> None:
    with pytest.raises(virtkit.InvalidArgument, match="unsupported flags"):
        virtkit.check_flags(flags, allowed)


@pytest.mark.parametrize("flags", ["1", 1.0, None])
def test_check_flags_refuses_a_non_int(flags: object) -> None:
    with pytest.raises(virtkit.InvalidArgument, match="unsupported flags"):
        virtkit.check_flags(flags, 0xFF)  # type: ignore[arg-type]
