"""One plugin inventory: open(), `virtkit drivers`, `virtkit matrix` and the default-URI probe see
a plugin through the same loader and the same hook caller (the tests-only virtkit-fakes
distribution's ``renamed`` plugin names its hook implementations otherwise than the hooks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import virtkit
from virtkit import Outcome
from virtkit._compose import ComposeOptions, probe_default_uri
from virtkit._discovery import describe_installed, inventory
from virtkit._matrix import build_matrix
from virtkit_fakes import renamed


def test_open_calls_the_specname_hooks() -> None:
    with virtkit.open("renamed:///") as conn:
        assert conn.type() == "Fake-renamed"
        attempt = next(a for a in conn.explain().attempts if a.plugin == "renamed")
        assert (attempt.outcome, attempt.priority) == (Outcome.SUCCESS, renamed.PRIORITY)


def test_open_sees_the_specname_can_handle_decline() -> None:
    before = list(renamed.opened)
    with pytest.raises(virtkit.NoDriver, match="renamed declines /no"):
        virtkit.open("renamed:///no")
    assert "renamed:///no" in renamed.asked
    assert renamed.opened == before  # declined: its open implementation never ran


def test_drivers_lists_it_loaded() -> None:
    rows = {r["plugin"]: r for r in describe_installed()}
    assert rows["renamed"]["status"] == "loaded", rows["renamed"]
    assert rows["renamed"]["schemes"] == ["renamed"]


def test_drivers_fails_what_open_fails() -> None:
    """A plugin whose hooks pluggy refuses: an ERROR at open, 'failed' in drivers, a note in the matrix."""
    with virtkit.open("fake:///") as conn:
        attempt = next(a for a in conn.explain().attempts if a.plugin == "fake_badhook")
    row = next(r for r in describe_installed() if r["plugin"] == "fake_badhook")
    assert attempt.outcome is Outcome.ERROR
    assert (row["status"], row["error"]) == ("failed", attempt.reason)
    column = next(c for c in build_matrix(["virtkit-fakes"]).columns if c.plugin == "fake_badhook")
    assert (column.note, column.driver_classes) == (attempt.reason, ())


def test_matrix_reads_the_specname_priority_and_open_annotation() -> None:
    column = next(c for c in build_matrix(["virtkit-fakes"]).columns if c.plugin == "renamed")
    assert column.priority == renamed.PRIORITY
    assert column.driver_classes == ("virtkit_fakes.renamed.RenamedDriver",)
    assert column.cells["connect_get_type"] == renamed.PRIORITY
    assert column.note == ""


def test_default_uri_probe_calls_the_specname_hooks() -> None:
    from virtkit_fakes import good

    opts = ComposeOptions(plugins=(good, renamed), entry_points=False)
    assert probe_default_uri(opts) == "renamed:///"  # 37 beats fake_good's 10


def test_inventory_is_one_load_per_target() -> None:
    """drivers, matrix and open share the loaded objects: one import, one instance per target."""
    first = {i.target: i.source.plugin for i in inventory() if i.source is not None}
    again = {i.target: i.source.plugin for i in inventory() if i.source is not None}
    assert first and all(first[t] is again[t] for t in first)
    with virtkit.open("renamed:///") as conn:
        assert conn.served_by("connect_get_type") == "renamed"
    assert first["virtkit_fakes.renamed:plugin"] is renamed


def test_refresh_plugins_is_public_and_reloads() -> None:
    before = {i.target: i.source.plugin for i in inventory() if i.source is not None}
    badhook = next(t for t in before if t.endswith(":BadHookPlugin"))
    virtkit.refresh_plugins()
    after = {i.target: i.source.plugin for i in inventory() if i.source is not None}
    assert after[badhook] is not before[badhook]  # a class plugin: instantiated anew
    with virtkit.open("renamed:///") as conn:
        assert conn.type() == "Fake-renamed"


def test_drivers_imports_no_stevedore() -> None:
    code = "import sys, virtkit._discovery as d; d.describe_installed(); print('stevedore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
