"""Every distribution's packaging (issue 14, item 8): the MIT LICENSE shipped in each wheel,
classifiers, and a plugin's dependency on the core as the range of core versions carrying the
catalogue it targets (the rule of docs/plugins.md §5)."""

from __future__ import annotations

import pathlib
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import virtkit

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: The first core release carrying each catalogue version (docs/plugins.md §5): a plugin
#: targeting it depends on virtkit>=that,<the catalogue's major (the core's next major).
FIRST_CORE_OF_CATALOGUE = {"1.0": "0.1", "1.1": "0.1", "1.2": "0.2"}

#: Another engineer's plugin, updated by them (issue 14): strict, so the marker goes when it passes.
_PENDING: dict[str, str] = {}


def _dists() -> list[pathlib.Path]:
    dirs = [ROOT, *sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))]
    return dirs + sorted(p.parent for p in ROOT.glob("examples/*/pyproject.toml"))


def _params(dirs: list[pathlib.Path]) -> list[object]:
    out: list[object] = []
    for d in dirs:
        rel = d.relative_to(ROOT).as_posix() or "."
        marks = [pytest.mark.xfail(reason=_PENDING[rel], strict=True)] if rel in _PENDING else []
        out.append(pytest.param(d, id=rel, marks=marks))
    return out


def _project(d: pathlib.Path) -> dict[str, object]:
    return tomllib.loads((d / "pyproject.toml").read_text())  # type: ignore[no-any-return]


def test_the_license_is_mit_with_its_copyright_line() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the virtkit authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


@pytest.mark.parametrize("dist", _params(_dists()))
def test_every_distribution_ships_the_license_and_classifiers(dist: pathlib.Path) -> None:
    data = _project(dist)
    project = data["project"]
    assert isinstance(project, dict)
    # PEP 639: an SPDX expression and the files to ship in .dist-info/licenses/ (setuptools >= 77)
    assert project.get("license") == "MIT" and project.get("license-files") == ["LICENSE"]
    assert (dist / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()  # a copy: no ../ in license-files
    (setuptools,) = [r for r in map(Requirement, data["build-system"]["requires"]) if r.name == "setuptools"]  # type: ignore[index]
    assert Version("77") in setuptools.specifier and Version("76.9") not in setuptools.specifier
    classifiers = project.get("classifiers")
    assert isinstance(classifiers, list) and classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers and "Typing :: Typed" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # superseded by `license` (PEP 639)
    core_urls = _project(ROOT)["project"].get("urls", {})  # type: ignore[attr-defined]
    assert set(project.get("urls", {})) == set(core_urls)  # the same links on every distribution


@pytest.mark.parametrize("dist", _params(_dists()[1:]))
def test_plugins_depend_on_the_cores_carrying_their_catalogue(dist: pathlib.Path) -> None:
    project = _project(dist)["project"]
    assert isinstance(project, dict)
    (req,) = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "virtkit"]
    found = {
        m.group(1)
        for f in dist.glob("src/**/*.py")
        for m in re.finditer(r"""^\s*virtkit_catalogue\s*=\s*["']([0-9.]+)["']""", f.read_text(), re.M)
    }
    (target,) = found
    major = target.split(".")[0]
    assert str(req.specifier) == f"<{major},>={FIRST_CORE_OF_CATALOGUE[target]}", req
    assert Version(virtkit.__version__) in req.specifier  # the core in this tree satisfies it


def test_the_core_version_is_on_the_catalogue_major_line() -> None:
    """Core 0.x carries catalogue 1.x: the core's major moves with the catalogue's."""
    assert Version(virtkit.__version__).major == int(virtkit.CATALOGUE_VERSION.split(".")[0]) - 1
    assert virtkit.CATALOGUE_VERSION in FIRST_CORE_OF_CATALOGUE
    assert Version(virtkit.__version__) >= Version(FIRST_CORE_OF_CATALOGUE[virtkit.CATALOGUE_VERSION])
