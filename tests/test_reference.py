"""The contract reference: docs/contract.md is generated from the catalogue and the type modules.

A test fails when it is stale. Regenerate it with:

    .venv/bin/python -m virtkit._reference > docs/contract.md

(or ``VIRTKIT_UPDATE_DOCS=1 .venv/bin/python -m pytest tests/test_reference.py``). The rules the
reference states in prose are checked here against the code that enforces them.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import virtkit
from virtkit import URI, OpenOptions, hookimpl
from virtkit._reference import render, undocumented_fields

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "contract.md"
REGENERATE = ".venv/bin/python -m virtkit._reference > docs/contract.md"


def test_docs_contract_is_current() -> None:
    expected = render()
    if os.environ.get("VIRTKIT_UPDATE_DOCS") == "1":
        DOC.write_text(expected, encoding="utf-8")
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert current == expected, f"docs/contract.md is stale: regenerate with `{REGENERATE}`"


def test_run_as_a_module_prints_the_reference_and_import_virtkit_does_not_load_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "virtkit._reference"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out == render()
    probe = "import sys, virtkit; print('virtkit._reference' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "False"


def test_every_field_and_member_has_its_meaning() -> None:
    assert undocumented_fields() == []


def test_every_operation_and_type_is_in_the_reference() -> None:
    text = render()
    for op in virtkit.CATALOGUE.values():
        assert f"### `{op.name}`" in text
        assert f"def {op.name}(self, " in text
    for name in ("NodeInfo", "Version", "DomainStateInfo", "DomainInfo", "DomainConfig", "MemoryStats", "URI"):
        assert f"`{name}`" in text
    assert "`virtkit_event_types`" in text and "VIRTKIT_STRICT" in text


class _TypedErrorPlugin:
    """Owns its URIs and finds this one malformed: a typed InvalidURI from open."""

    virtkit_catalogue = "1.0"
    virtkit_name = "picky"

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        raise virtkit.InvalidURI(f"{uri}: picky URIs have no path", uri=str(uri))


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_strict_mode_turns_a_typed_open_error_into_plugin_load_error(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What section 7 of the reference says: without strict the caller gets the typed error;
    with strict=True or VIRTKIT_STRICT=1, PluginLoadError naming the plugin."""
    monkeypatch.delenv("VIRTKIT_STRICT", raising=False)
    kw = {"plugins": [_TypedErrorPlugin()], "entry_points": False}
    with pytest.raises(virtkit.InvalidURI):
        virtkit.open("picky:///x", **kw)  # type: ignore[arg-type]
    if how == "environment":
        monkeypatch.setenv("VIRTKIT_STRICT", "1")
        strict: dict[str, bool] = {}
    else:
        strict = {"strict": True}
    with pytest.raises(virtkit.PluginLoadError) as err:
        virtkit.open("picky:///x", **kw, **strict)  # type: ignore[arg-type]
    assert err.value.driver == "picky" and "InvalidURI" in err.value.message
