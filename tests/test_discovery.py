"""Discovery through real installed entry points (the tests-only virtkit-fakes distribution)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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
