"""The core imports no plugin; a plugin imports only the core's public API."""

from __future__ import annotations

import ast
import pathlib
import re

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


def _declared_dependencies(plugin_dir: pathlib.Path) -> set[str]:
    import tomllib

    deps = tomllib.loads((plugin_dir / "pyproject.toml").read_text())["project"].get("dependencies", [])
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].strip().lower() for d in deps}
    return {n.replace("-", "_") for n in names}


def test_plugins_import_other_plugins_only_as_declared_libraries() -> None:
    """Each plugin is a separate distribution. It reaches another plugin through the core (a
    composed connection), or, as a library, through that distribution's public package when it
    declares the distribution a dependency: never through its private modules."""
    for src in (ROOT / "plugins").glob("*/src/virtkit_*"):
        declared = _declared_dependencies(src.parents[1])
        for f in src.rglob("*.py"):
            for name in _imports(f):
                top, _, rest = name.partition(".")
                if not top.startswith("virtkit_") or top == src.name:
                    continue
                where = f"{f.relative_to(ROOT)} imports {name}"
                assert top in declared, f"{where}: not a declared dependency"
                assert not rest.startswith("_"), f"{where}: a private module of another plugin"


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
