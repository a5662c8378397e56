"""The core imports no plugin; a plugin imports only the core's public API."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_core_imports_no_plugin() -> None:
    files = list((ROOT / "core" / "virtkit").rglob("*.py"))
    assert files
    for f in files:
        for name in _imports(f):
            assert not name.startswith("virtkit_"), f"{f.relative_to(ROOT)} imports plugin {name}"


def test_plugins_import_only_public_core_api() -> None:
    files = list((ROOT / "plugins").rglob("*.py")) + list((ROOT / "tests" / "support").rglob("*.py"))
    for f in files:
        for name in _imports(f):
            assert not name.startswith("virtkit._"), f"{f.relative_to(ROOT)} imports private {name}"


def test_plugins_import_no_other_plugin() -> None:
    """Each plugin is a separate distribution: it may be installed without any other one, so it
    reaches the others only through the core (a composed connection), never by import."""
    for src in (ROOT / "plugins").glob("*/src/virtkit_*"):
        for f in src.rglob("*.py"):
            for name in _imports(f):
                top = name.split(".")[0]
                assert not top.startswith("virtkit_") or top == src.name, f"{f.relative_to(ROOT)} imports {name}"


def test_public_api_is_explicit() -> None:
    import virtkit

    assert len(set(virtkit.__all__)) == len(virtkit.__all__)
    for name in virtkit.__all__:
        assert hasattr(virtkit, name), name
    assert (ROOT / "core" / "virtkit" / "py.typed").exists()


def test_package_docstring_example_runs() -> None:
    import doctest

    import virtkit

    result = doctest.testmod(virtkit, verbose=False)
    assert result.attempted > 0 and result.failed == 0
