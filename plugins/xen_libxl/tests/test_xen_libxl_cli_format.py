"""`virtkit create/define --format xl FILE`: xl config files through the CLI, on any backend."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys

DATA = pathlib.Path(__file__).parent / "data"
VIRTKIT = shutil.which("virtkit", path=str(pathlib.Path(sys.executable).parent)) or "virtkit"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}
    return subprocess.run([VIRTKIT, *args], capture_output=True, text=True, timeout=60, env=env)


def test_xl_is_an_installed_config_format() -> None:
    eps = importlib.metadata.entry_points(group="virtkit.config_formats", name="xl")
    assert [ep.value for ep in eps] == ["virtkit_xen_libxl:load_xl_file"]


def test_define_an_xl_file_and_dump_what_was_understood() -> None:
    # test:/// stands in for the host: the point is the file reaching DomainConfig through the CLI
    r = _run("-c", "test:///default", "--json", "define", "--format", "xl", str(DATA / "test-paravirt-cmdline.cfg"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["name"] == "XenGuest2" and out["uuid"] == "c7a5fdb2-cdaf-9455-926a-d65c16db1809"


def test_a_bad_xl_file_names_itself() -> None:
    bad = DATA / "PROVENANCE.md"
    r = _run("-c", "test:///default", "create", "--format", "xl", str(bad))
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "PROVENANCE.md" in r.stderr
