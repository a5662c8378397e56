"""Discovery through real installed entry points (the tests-only virtkit-fakes distribution)."""

from __future__ import annotations

import json
import marshal
import os
import pathlib
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import virtkit
from virtkit import Outcome, PluginLoadError


def test_broken_plugins_are_recorded_not_fatal() -> None:
    with virtkit.open("fake:///") as conn:
        ex = conn.explain()
        failed = {name: err for name, _target, err in ex.load_failures}
        assert "ModuleNotFoundError" in failed["fake.broken"]
        assert "incompatible" in failed["fake_oldcat"]
        outcomes = {a.plugin: a for a in ex.attempts}
        assert outcomes["fake_good"].outcome is Outcome.SUCCESS
        assert outcomes["fake_decliner"].outcome is Outcome.DECLINED
        assert outcomes["fake_decliner"].reason == "no fake daemon socket at /nonexistent"
        assert outcomes["fake_raises"].outcome is Outcome.ERROR
        assert "probe exploded" in outcomes["fake_raises"].reason
        assert outcomes["fake_badhook"].outcome is Outcome.ERROR
        assert "url" in outcomes["fake_badhook"].reason
        assert conn.type() == "Fake-good"


def test_strict_mode_raises_for_plugin_authors() -> None:
    with pytest.raises(PluginLoadError, match=r"fake\.broken|fake_oldcat"):
        virtkit.open("fake:///", strict=True)


def test_strict_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTKIT_STRICT", "1")
    with pytest.raises(PluginLoadError):
        virtkit.open("fake:///")


def test_other_schemes_unaffected_by_broken_fake_plugins() -> None:
    with virtkit.open("other:///") as conn:
        assert conn.type() == "Fake-other"
        assert conn.explain().load_failures == ()


def test_open_imports_only_plugins_for_the_scheme() -> None:
    """The scheme is read from metadata: opening fake:/// never imports the other:// plugin."""
    code = (
        "import os, sys, json, virtkit\n"
        "c = virtkit.open('fake:///')\n"
        "print(json.dumps({'other': 'virtkit_fakes.other' in sys.modules,"
        " 'env': os.environ.get('VIRTKIT_FAKES_OTHER_IMPORTED'),"
        " 'good': 'virtkit_fakes.good' in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VIRTKIT_FAKES_OTHER_IMPORTED"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=True)
    seen = json.loads(out.stdout)
    assert seen == {"other": False, "env": None, "good": True}


def test_unknown_scheme_no_driver() -> None:
    with pytest.raises(virtkit.NoDriver, match="none installed for this scheme"):
        virtkit.open("nosuchscheme:///")


def test_describe_installed_lists_every_plugin() -> None:
    from virtkit._discovery import describe_installed

    rows = {r["plugin"]: r for r in describe_installed()}
    assert rows["fake_good"]["status"] == "loaded"
    assert rows["fake_good"]["distribution"] == "virtkit-fakes"
    assert rows["fake_good"]["schemes"] == ["fake"]
    assert rows["fake.broken"]["status"] == "failed"
    assert "virtkit_fakes_missing_dependency" in rows["fake.broken"]["error"]
    assert rows["fake_oldcat"]["status"] == "failed"


_LATE_PLUGIN = """
import uuid
from virtkit import DomainInfo, DomainRef, DomainState, hookimpl
virtkit_catalogue = "1.0"
virtkit_name = "late"
R = DomainRef("late", uuid.UUID(int=9), 1)
class D:
    def connect_get_type(self, *, flags=0): return "Late"
    def connect_list_domains(self, *, flags=0): return [1]
    def domain_lookup_by_id(self, id, *, flags=0): return R
    def domain_lookup_by_name(self, name, *, flags=0): return R
    def domain_lookup_by_uuid(self, uuid, *, flags=0): return R
    def domain_get_info(self, dom, *, flags=0): return DomainInfo(DomainState.RUNNING, 1, 1, 1, 0)
@hookimpl
def open(uri, options): return D()
"""


def test_entry_point_index_sees_a_distribution_installed_later(tmp_path: pathlib.Path) -> None:
    """The on-disk index is keyed on sys.path directories' mtimes: installing a distribution
    (a new *.dist-info directory) is seen by the next process without any manual refresh."""
    site = tmp_path / "site"
    site.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    probe = (
        "import virtkit\n"
        "try:\n    print(virtkit.open('late:///').type())\n"
        "except virtkit.NoDriver:\n    print('none')\n"
    )

    def run() -> str:
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    os.utime(site, (time.time() - 10, time.time() - 10))  # settled: old enough to be cached
    assert run() == "none"
    assert list((tmp_path / "cache" / "virtkit").glob("entry-points-*.marshal"))  # the index was written
    (site / "late_plugin.py").write_text(_LATE_PLUGIN)
    info = site / "late_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: late-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[virtkit.drivers]\nlate = late_plugin\n")
    assert run() == "Late"


@pytest.mark.parametrize("how", ["-m", "-c"])
def test_the_working_directory_keys_the_index_by_its_metadata_only(tmp_path: pathlib.Path, how: str) -> None:
    """``python -m virtkit`` has the working directory first on sys.path (``-c``: as ''). A busy
    one (/tmp) must not keep the index from settling, yet a dist-info appearing there is found."""
    cwd = tmp_path / "busy"
    cwd.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    probe = (
        "import os, sys, virtkit\n"
        "assert sys.path[0] in ('', os.getcwd()), sys.path[0]\n"
        "try:\n    found = virtkit.open('late:///').type()\n"
        "except virtkit.NoDriver:\n    found = 'none'\n"
        "print(found, 'importlib.metadata' in sys.modules)\n"
    )
    (cwd / "probe.py").write_text(probe)

    def run() -> list[str]:
        argv = [sys.executable, "-m", "probe"] if how == "-m" else [sys.executable, "-c", probe]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert run() == ["none", "True"]  # cold: the index is built
    if not list((tmp_path / "cache" / "virtkit").glob("entry-points-*.marshal")):
        pytest.skip("a sys.path directory changed in the last seconds: the index is not kept yet")
    (cwd / "scratch.txt").write_text("the directory just changed")
    assert run() == ["none", "False"]  # its change is not an install: the index stands
    (cwd / "late_plugin.py").write_text(_LATE_PLUGIN)
    info = cwd / "late_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: late-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[virtkit.drivers]\nlate = late_plugin\n")
    assert run() == ["Late", "True"]


def test_refresh_forgets_in_process_caches() -> None:
    from virtkit import _discovery

    first = _discovery.installed_entry_points()
    assert first is _discovery.installed_entry_points()  # cached
    _discovery.refresh()
    again = _discovery.installed_entry_points()
    assert again is not first and set(again) == set(first)


def test_open_with_a_warm_index_imports_neither_metadata_nor_stevedore(tmp_path: pathlib.Path) -> None:
    """The cold-start budget: importlib.metadata (email, zipfile, csv...) and stevedore load only
    to rebuild the index or list every plugin, not for an ordinary open()."""
    code = (
        "import sys, json, virtkit\n"
        "with virtkit.open('test:///default') as c:\n"
        "    c.list_domains()\n"
        "print(json.dumps(sorted(m for m in ('importlib.metadata', 'stevedore') if m in sys.modules)))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run() -> list[str]:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        loaded: list[str] = json.loads(r.stdout)
        return loaded

    assert run() == ["importlib.metadata"]  # cold: the index is built from metadata
    if not list((tmp_path / "cache" / "virtkit").glob("entry-points-*.marshal")):
        pytest.skip("a sys.path directory changed in the last seconds: the index is not kept yet")
    assert run() == []


def test_an_index_for_another_key_or_corrupted_is_rebuilt(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtkit import _discovery

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    name, key, _settled = _discovery._index_path()
    path = pathlib.Path(name)
    path.parent.mkdir(parents=True)
    bogus = [["test", "virtkit_fakes.no_such_module:plugin"]]
    good = marshal.dumps({"key": key, "entry_points": bogus})
    for content in (
        marshal.dumps({"key": key + "x", "entry_points": bogus}),  # a checksum collision: key differs
        marshal.dumps(bogus),  # not the index's shape
        good[: len(good) // 2],  # cut short (a full disk)
        b"\xff not marshal",
    ):
        path.write_bytes(content)
        _discovery.refresh()
        assert ("test", "virtkit_fakes.no_such_module:plugin") not in _discovery.installed_entry_points()
        assert any(name == "test" for name, _value in _discovery.installed_entry_points())
    _discovery.refresh()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("json", "json"),
        ("json:loads", "loads"),
        ("json.decoder:JSONDecoder.decode", "decode"),
        ("json : dumps [extra]", "dumps"),
    ],
)
def test_load_target_follows_the_entry_point_grammar(value: str, expected: str) -> None:
    from virtkit._discovery import load_target

    assert getattr(load_target(value), "__name__", None) == expected


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"[a-z_ .:\[\]0-9é-]{0,16}", fullmatch=True))
def test_a_target_is_split_as_the_entry_point_grammar_splits_it(value: str) -> None:
    """The plain form is read with str methods: the parts must be those of the grammar's pattern."""
    import re

    from virtkit._discovery import _TARGET, _split_target

    m = re.match(_TARGET, value)
    if m is None:
        with pytest.raises(ValueError, match="malformed entry point value"):
            _split_target(value)
    else:
        assert _split_target(value) == (m["module"], m["attr"])


@pytest.mark.parametrize("value", ["", "json:", "json:loads:x", "a b"])
def test_load_target_rejects_a_malformed_value(value: str) -> None:
    from virtkit._discovery import load_target

    with pytest.raises(ValueError, match="malformed entry point value"):
        load_target(value)


def _aged(path: pathlib.Path, seconds: float) -> pathlib.Path:
    path.write_bytes(b"x")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_stale_index_files_are_pruned_when_one_is_written(tmp_path: pathlib.Path) -> None:
    """Every install or new working directory leaves an index nothing reads again: old ones, dead
    writers' temporary files and all but the newest INDEX_MAX_FILES go; nothing else is touched."""
    from virtkit._discovery import INDEX_MAX_AGE_S, INDEX_MAX_FILES, prune_index

    old = _aged(tmp_path / "entry-points-00000000000000aa.marshal", INDEX_MAX_AGE_S + 60)
    legacy = _aged(tmp_path / "entry-points-00000000000000bb.json", INDEX_MAX_AGE_S + 60)  # an older release's
    dead = _aged(tmp_path / "entry-points-00000000000000cc.marshal.4242.tmp", 7200)
    writing = _aged(tmp_path / "entry-points-00000000000000dd.marshal.4243.tmp", 5)
    recent = [_aged(tmp_path / f"entry-points-{i:016x}.marshal", 60 * i) for i in range(1, INDEX_MAX_FILES + 20)]
    keep = _aged(tmp_path / "entry-points-ffffffffffffffff.marshal", INDEX_MAX_AGE_S + 60)  # the one just written
    foreign = _aged(tmp_path / "notes.txt", INDEX_MAX_AGE_S + 60)
    prune_index(str(tmp_path), keep=str(keep))
    left = set(tmp_path.iterdir())
    assert not {old, legacy, dead} & left
    assert {writing, keep, foreign} <= left
    assert [p for p in recent if p in left] == recent[: INDEX_MAX_FILES - 1]  # the newest, with keep: the cap


def test_a_rebuilt_index_prunes_its_directory(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from virtkit import _discovery

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    name, _key, settled = _discovery._index_path()
    if not settled:
        pytest.skip("a sys.path directory changed in the last seconds: the index is not kept yet")
    pathlib.Path(name).parent.mkdir(parents=True)
    stale = _aged(pathlib.Path(name).parent / "entry-points-00000000000000aa.marshal", _discovery.INDEX_MAX_AGE_S + 1)
    _discovery.refresh()
    try:
        assert _discovery.installed_entry_points()
    finally:
        _discovery.refresh()
    assert pathlib.Path(name).is_file() and not stale.exists()
