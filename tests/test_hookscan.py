"""Plain hooks are read without pluggy (virtkit._hookscan) exactly as pluggy registers them."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import subprocess
import sys
import types
from typing import Any

import pluggy
import pytest

import virtkit
from virtkit import OpenOptions, hookimpl
from virtkit._discovery import ENTRY_POINT_GROUP, instantiate, load_target
from virtkit._hookscan import SPECS, plain_hooks
from virtkit._plugin import PROJECT, _hookspecs


def _pluggy_view(plugin: object) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """What a fresh pluggy manager registers for ``plugin``: hook -> (function, argnames)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(_hookspecs())
    pm.register(plugin)
    view = {}
    for hook in SPECS:
        for impl in getattr(pm.hook, hook).get_hookimpls():
            view[hook] = (impl.function, tuple(impl.argnames))
    return view


def _installed_plugins() -> list[tuple[str, object]]:
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append((ep.name, instantiate(load_target(ep.value))))
        except Exception:  # noqa: BLE001 - the fakes include a plugin that cannot be imported
            continue
    return found


INSTALLED = _installed_plugins()


def test_the_specs_are_the_hook_specifications() -> None:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(_hookspecs())
    for hook, args in SPECS.items():
        spec = getattr(pm.hook, hook).spec
        assert spec is not None and tuple(spec.argnames) == args and not spec.kwargnames


@pytest.mark.parametrize(("name", "plugin"), INSTALLED, ids=[n for n, _ in INSTALLED])
def test_every_installed_plugin_reads_as_pluggy_registers_it(name: str, plugin: object) -> None:
    plain = plain_hooks(plugin)
    if plain is None:  # left to pluggy: nothing to compare
        return
    assert plain == _pluggy_view(plugin), name


def test_the_plugins_of_this_tree_take_the_plain_path() -> None:
    names = {name for name, plugin in INSTALLED if plain_hooks(plugin) is not None}
    assert {"test", "qemu", "xen.hyper", "renamed", "fake.good"} <= names  # specname included
    renamed = dict(INSTALLED)["renamed"]
    assert set(plain_hooks(renamed) or {}) == {"can_handle", "priority", "open"}


class _Base:
    virtkit_catalogue = "1.0"


class Wrapper(_Base):
    @hookimpl(wrapper=True)
    def open(self, uri: object, options: OpenOptions) -> Any:
        return (yield)


class Static(_Base):
    @staticmethod
    @hookimpl
    def open(uri: object, options: OpenOptions) -> object:
        return None


class Decorated(_Base):
    @hookimpl
    @functools.wraps(lambda uri, options: None)
    def open(self, *args: object) -> object:
        return None


class Unknown(_Base):
    @hookimpl
    def close_everything(self) -> None: ...


class ExtraArgument(_Base):
    @hookimpl
    def open(self, uri: object, options: OpenOptions, colour: str) -> object:
        return None


class Twice(_Base):
    @hookimpl
    def open(self, uri: object) -> object:
        return None

    @hookimpl(specname="open")
    def open_again(self, uri: object) -> object:
        return None


class Slotted(_Base):
    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = hookimpl(specname="open")(lambda uri: None)


_DEFAULT_OPTIONS = OpenOptions()


class WithDefaults(_Base):
    @hookimpl
    def open(self, uri: object, options: OpenOptions = _DEFAULT_OPTIONS) -> object:
        return None


@pytest.mark.parametrize("cls", [Wrapper, Static, Decorated, Unknown, ExtraArgument, Twice, Slotted])
def test_anything_but_plain_hooks_goes_to_pluggy(cls: type) -> None:
    assert plain_hooks(cls()) is None


def test_a_marked_function_on_the_instance_goes_to_pluggy() -> None:
    plugin = WithDefaults()
    plugin.__dict__["can_handle"] = hookimpl(lambda uri: True)
    assert plain_hooks(plugin) is None


def test_defaults_and_modules_read_as_pluggy_does() -> None:
    plugin = WithDefaults()
    assert plain_hooks(plugin) == _pluggy_view(plugin) == {"open": (plugin.open, ("uri",))}
    mod = types.ModuleType("fake_module_plugin")

    @hookimpl
    def can_handle(uri: object, extra: int = 1) -> bool:
        return True

    mod.can_handle = can_handle  # type: ignore[attr-defined]
    assert plain_hooks(mod) == _pluggy_view(mod) == {"can_handle": (can_handle, ("uri",))}


@pytest.mark.parametrize(
    "options",
    [{}, {"specname": "open"}, {"tryfirst": True}, {"wrapper": True, "optionalhook": True}, {"hookwrapper": True}],
)
def test_the_marker_marks_as_pluggys_does(options: dict[str, Any]) -> None:
    def ours() -> None: ...

    def theirs() -> None: ...

    hookimpl(**options)(ours)
    pluggy.HookimplMarker(PROJECT)(**options)(theirs)
    assert ours.virtkit_impl == theirs.virtkit_impl  # type: ignore[attr-defined]
    assert hookimpl(ours) is ours


def test_an_open_of_plain_plugins_imports_no_pluggy() -> None:
    code = (
        "import sys, json, virtkit\n"
        "with virtkit.open('test:///default') as c:\n"
        "    c.list_domains()\n"
        "print(json.dumps(['pluggy' in sys.modules, 'inspect' in sys.modules]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0] is False


def test_a_plugin_pluggy_refuses_still_gets_its_message() -> None:
    class Bad(_Base):
        virtkit_name = "bad_arg"

        @hookimpl
        def open(self, uri: object, options: OpenOptions, colour: str) -> object:
            return None

    with pytest.raises(virtkit.NoDriver) as e:
        virtkit.open("bad:///", plugins=[Bad()], entry_points=False)
    assert "colour" in str(e.value) and "can not be found in the hookspec" in str(e.value)
