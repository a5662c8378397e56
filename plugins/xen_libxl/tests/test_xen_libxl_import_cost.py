"""What a cold ``virtkit -c xen:/// list`` pays for this plugin (issue 14): the modules an open,
a listing and domstats load import none of typing, dataclasses, inspect, logging, subprocess,
tempfile, shutil or random; those load with the first xl command, log record or definition
edit. Each check runs a fresh interpreter: what is imported is a property of the process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from virtkit_xen_libxl._xl import Xl, _which

_OFF = ("typing", "dataclasses", "inspect", "logging", "subprocess", "tempfile", "shutil", "random")
_START_UP = ("_plugin", "_driver", "_engines", "_listing", "_names", "_state", "_xl", "_xlcfg", "_libxljson")


def _loaded_after(code: str) -> list[str]:
    """Which of _OFF ``code`` loads; they are dropped first (an editable install's finder may
    load some at interpreter start-up, and the check is about what the plugin loads)."""
    probe = (
        f"import sys\nfor m in {_OFF!r}:\n    sys.modules.pop(m, None)\n"
        f"{code}\nprint(' '.join(m for m in {_OFF!r} if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_the_start_up_modules_and_finding_xl_load_none_of_them() -> None:
    imports = "; ".join(f"import virtkit_xen_libxl.{m}" for m in _START_UP)
    code = f"{imports}\nfrom virtkit_xen_libxl._xl import find_xl\nfind_xl()"
    assert _loaded_after(code) == []


def test_an_xl_command_still_runs_with_its_lazy_imports() -> None:
    # The interpreter stands in for xl: any argv whose first word is not "create".
    assert Xl(sys.executable, timeout=30).run("-c", "print('ran')") == "ran\n"


def test_which_finds_what_shutil_which_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "bin" / "xl"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (tmp_path / "dir" / "xl").mkdir(parents=True)  # a directory named xl is skipped
    (tmp_path / "noexec").mkdir()
    (tmp_path / "noexec" / "xl").write_text("")  # not executable: skipped
    for path in (
        f"{tmp_path / 'dir'}:{tmp_path / 'noexec'}:{exe.parent}",
        str(tmp_path / "noexec"),
        "",
    ):
        monkeypatch.setenv("PATH", path)
        assert _which("xl") == shutil.which("xl"), path
    monkeypatch.delenv("PATH")
    assert _which("xl") == shutil.which("xl")
