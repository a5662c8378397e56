"""The support matrix: derived from the catalogue and the plugins' classes, without opening anything.

docs/support-matrix.md is the matrix of the repository's own plugins (plugins/*); a test fails
when it is stale. Regenerate it with:

    VIRTKIT_UPDATE_DOCS=1 .venv/bin/python -m pytest tests/test_matrix.py
"""

from __future__ import annotations

import json
import os
import pathlib
import tomllib

import pytest

import virtkit
from virtkit._cli import main
from virtkit._matrix import build_matrix

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "support-matrix.md"
REGENERATE = "VIRTKIT_UPDATE_DOCS=1 .venv/bin/python -m pytest tests/test_matrix.py"

HEADER = f"""# Support matrix

<!-- Generated from the operation catalogue and the plugins in plugins/: do not edit.
     Regenerate: {REGENERATE}
     (a test fails when this copy is stale). -->

Which plugin provides each operation of the catalogue, and the priority it bids for it. When
several plugins open one URI (`xen:///`: xen_hyper, xenstore, xen_xend), each operation goes to
the highest bidder among those that opened; `virtkit explain URI` shows the outcome on a given
host, `virtkit matrix` this table for whatever is installed (`--json`, `--markdown`).

The table is computed from the plugins' driver *classes*, never by opening a connection, so it is
the same on every machine: a column lists the methods of the plugin's `virtkit_driver_class`
(or of the classes its `open` hook's return annotation names) and the priority is the method's
own `@virtkit.priority`, else what the plugin's `priority` hook returns for its reference URI
(its `virtkit_default_uri`, else `SCHEME:///`; see the legend). A plugin whose priority differs
between URIs of its scheme bids differently elsewhere; `virtkit explain` is the authority.

"""


def repo_distributions() -> list[str]:
    names = []
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        names.append(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"])
    return names


def rendered_doc() -> str:
    return HEADER + build_matrix(repo_distributions()).render_markdown()


def test_docs_support_matrix_is_current() -> None:
    expected = rendered_doc()
    if os.environ.get("VIRTKIT_UPDATE_DOCS") == "1":
        DOC.write_text(expected, encoding="utf-8")
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert current == expected, f"docs/support-matrix.md is stale: regenerate with `{REGENERATE}`"


def test_every_repo_plugin_is_a_column() -> None:
    m = build_matrix(repo_distributions())
    assert sorted({c.distribution for c in m.columns}) == sorted(repo_distributions()), (
        "a plugin of plugins/ is not installed: run scripts/setup --dev"
    )
    broken = {c.plugin: c.note for c in m.columns if c.note.startswith(("failed", "targets", "driver class:"))}
    assert not broken


def test_matrix_agrees_with_composition() -> None:
    """For single-plugin URIs, every cell is what open() actually routes, at that priority."""
    m = build_matrix()
    uris = {"test": "test:///default", "toy": "toy:///"}
    for column in m.columns:
        if column.plugin not in uris:
            continue
        with virtkit.open(uris[column.plugin]) as conn:
            for op in virtkit.CATALOGUE:
                route = conn.explain().route(op)
                assert (route.priority if route.plugin else None) == column.cells[op], (column.plugin, op)


def test_test_plugin_column_comes_from_its_open_annotation() -> None:
    (column,) = build_matrix(["virtkit-test"]).columns
    assert column.driver_classes == ("virtkit_test._driver.Driver",)
    assert column.uri == "test:///default" and column.priority == 10
    assert all(column.cells[op] == 10 for op in virtkit.CATALOGUE)


def test_example_plugin_declared_class_and_method_priority() -> None:
    pytest.importorskip("virtkit_toy", reason="examples/toy is installed by scripts/setup --dev")
    (column,) = build_matrix(["virtkit-toy"]).columns
    assert column.driver_classes == ("virtkit_toy._driver.ToyDriver",)
    assert column.cells["domain_get_info"] == 30  # @virtkit.priority(30) on the method
    assert column.cells["domain_suspend"] == 20  # the plugin's priority("toy:///")
    assert column.cells["domain_create"] is None  # not provided


def test_failures_are_columns_not_crashes() -> None:
    m = build_matrix(["virtkit-fakes"])
    notes = {c.plugin: c.note for c in m.columns}
    assert notes["fake.broken"].startswith("failed to load")
    assert "incompatible" in notes["fake_oldcat"]
    assert "not declared" in notes["partial"]  # no class to inspect: an empty column, said so
    assert build_matrix(["virtkit-fakes"]) == m  # deterministic


def test_cli_matrix_json_text_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "--json", "--distribution", "virtkit-test"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["catalogue"] == virtkit.CATALOGUE_VERSION
    assert [p["plugin"] for p in data["plugins"]] == ["test"]
    assert [o["operation"] for o in data["operations"]] == list(virtkit.CATALOGUE)
    assert all(o["priorities"] == {"test": 10} for o in data["operations"])
    assert main(["matrix", "--distribution", "virtkit-test"]) == 0
    text = capsys.readouterr().out
    assert "domain_suspend" in text and "mutates" in text and "test:///default" in text
    assert main(["matrix", "--markdown", "--distribution", "virtkit-test"]) == 0
    assert capsys.readouterr().out.startswith("| operation | kind | `test` |")
    assert main(["matrix", "--distribution", "no-such-dist"]) == 0  # nothing installed: an empty table
