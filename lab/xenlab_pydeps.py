"""The project's packages for dom0: every distribution in the checkout, pip-installed with
``--target`` into a cached directory that QEMU shares read-only with dom0 (and the host phase
puts on its PYTHONPATH). Cached on the sources' hash; see lab/README.md, "Project packages".
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import xenlab_common as C
from xenlab_common import BuildError, log

CHECKOUT = C.LAB_DIR.parent
PYTEST_SPEC = "pytest>=7"
#: What the project's packages do not depend on: never hashed, never copied to build them.
HASH_SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
}
COPY_IGNORE = shutil.ignore_patterns(*sorted(HASH_SKIP_DIRS), "*.pyc", "*.egg-info")


def project_dirs() -> list[Path]:
    """Every distribution in the checkout, as it exists now."""
    dirs: list[Path] = []
    if (CHECKOUT / "pyproject.toml").is_file():
        dirs.append(CHECKOUT)
    for pattern in ("plugins/*/pyproject.toml", "tests/support/*/pyproject.toml"):
        dirs += sorted(p.parent for p in CHECKOUT.glob(pattern))
    return dirs


def _hash_tree(h: hashlib._Hash, top: Path, skip: set[Path]) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if d not in HASH_SKIP_DIRS and not d.endswith(".egg-info") and here / d not in skip
        )
        for name in sorted(filenames):
            f = here / name
            if name.endswith(".pyc") or not f.is_file():
                continue
            h.update(str(f.relative_to(CHECKOUT)).encode() + b"\0")
            h.update(f.read_bytes() + b"\0")


def pydeps_key(projects: Sequence[Path]) -> str:
    h = hashlib.sha256()
    h.update(f"{sys.version_info[:2]} {PYTEST_SPEC}\n".encode())
    for proj in projects:
        skip = {proj / "tests"}
        if proj == CHECKOUT:
            skip |= {CHECKOUT / d for d in ("lab", "plugins", "tests", "bench", "docs", ".ci")}
        _hash_tree(h, proj, skip)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Project:
    path: Path
    name: str
    extras: tuple[str, ...]
    dependencies: tuple[str, ...] | None  # None: dynamic, only pip knows
    build_requires: tuple[str, ...]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(spec: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    return _norm(m.group(1)) if m else ""


def read_project(path: Path) -> Project:
    pyproject = path / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot parse {pyproject}: {exc}") from exc
    proj = data.get("project", {})
    opt = proj.get("optional-dependencies", {})
    extras = tuple(e for e in ("test", "tests", "lab") if e in opt)
    deps: tuple[str, ...] | None = None
    if "dependencies" not in proj.get("dynamic", []):
        deps = tuple(proj.get("dependencies", [])) + tuple(d for e in extras for d in opt[e])
    build = data.get("build-system", {}).get("requires", ["setuptools>=40.8.0"])
    return Project(path, str(proj.get("name", path.name)), extras, deps, tuple(build))


def _pip(target: Path, args: Sequence[str], *, env: dict[str, str] | None = None) -> None:
    C.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-input",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--target",
            str(target),
            *args,
        ],
        timeout=600,
        env=env,
    )


def _layer(root: Path, prefix: str, specs: Sequence[str]) -> Path:
    """A cached pip --target directory holding ``specs`` (third-party requirements only)."""
    key = hashlib.sha256("\n".join([sys.version, *sorted(specs)]).encode()).hexdigest()[:16]
    final = root / f"{prefix}-{key}"
    if final.is_dir():
        os.utime(final)  # recently used: pruning goes by mtime
        return final
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        _pip(work / "out", list(specs))
        os.rename(work / "out", final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def build_pydeps() -> Path:
    """pip install --target the project's distributions + pytest; cached on their sources.

    Three layers, so a change to the project's code costs seconds: a build environment (the
    projects' build-system requirements, used with --no-build-isolation), the third-party
    dependencies (cached on the requirement specs), and the project's own distributions
    (non-editable, --no-deps) installed over a copy of the dependencies.
    """
    if sys.version_info[:2] != (3, 11):
        log(f"warning: host Python is {sys.version.split()[0]}, dom0 has 3.11: only pure-Python dependencies will work")
    projects = [read_project(p) for p in project_dirs()]
    key = pydeps_key([p.path for p in projects])
    root = C.cache_dir() / "pydeps"
    final = root / key
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with C.locked(root / "lock", timeout=600, what="pydeps install"):
        if final.is_dir():
            return final
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        t0 = time.monotonic()
        local = {_norm(p.name) for p in projects}
        have_core = any(p.path == CHECKOUT for p in projects)
        if not have_core:
            local.add("virtkit")  # never let pip fetch an unrelated "virtkit" from PyPI
            log("note: no root pyproject.toml yet; the core is not installed")
        dynamic = any(p.dependencies is None for p in projects)
        third_party = {PYTEST_SPEC}
        for p in projects:
            third_party |= {d for d in p.dependencies or () if _req_name(d) not in local}
        build_reqs = sorted({r for p in projects for r in p.build_requires} | {"wheel"})
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            buildenv = _layer(root, "buildenv", build_reqs)
            deps = _layer(root, "deps", sorted(third_party))
            out = work / "out"
            shutil.copytree(deps, out, symlinks=True)
            # Build from a snapshot copy: the checkout is shared with other people at work,
            # and in-tree builds would leave build/ and *.egg-info behind.
            stage = work / "src"
            shutil.copytree(CHECKOUT, stage, ignore=COPY_IGNORE, symlinks=True)
            specs = [str(stage / p.path.relative_to(CHECKOUT)) for p in projects]
            if specs:
                args = ["--no-build-isolation", "--upgrade", *specs]
                if not dynamic or not have_core:
                    args.insert(0, "--no-deps")
                _pip(out, args, env={"PYTHONPATH": str(buildenv)})
            shutil.rmtree(stage)
            os.rename(out, final)
        except BuildError as exc:
            raise BuildError(f"installing the project's packages for dom0 failed: {exc}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        names = [str(p.path.relative_to(CHECKOUT)) for p in projects]
        log(
            f"project packages for dom0 ({', '.join(names) or 'none yet'} + pytest) "
            f"installed in {time.monotonic() - t0:.1f}s"
        )
        entries = sorted(
            (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in entries[8:]:
            shutil.rmtree(old, ignore_errors=True)
    return final
