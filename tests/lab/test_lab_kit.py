"""The conformance kit on real Xen: `pytest --virtkit-uri=xen:/// --virtkit-mutating` in dom0.

xen:/// composes xen_hyper and xenstore; neither can create a domain, so the kit borrows the
running guest this test creates (restoring it after) and skips the checks that need a domain of
its own. Whatever the kit runs must pass.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from pytest_xenlab import XenGuest

pytestmark = pytest.mark.lab


def test_conformance_kit_passes_on_xen(xen_guest: XenGuest, tmp_path: pathlib.Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\nfilterwarnings = error\n")
    junit = tmp_path / "kit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            f"--junitxml={junit}",
            "--virtkit-uri=xen:///",
            "--virtkit-mutating",
            "--virtkit-timeout=60",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(proc.stdout[-6000:], proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    passed = [c for c in cases if not any(x.tag in ("failure", "error", "skipped") for x in c)]
    assert len(passed) >= 60, f"only {len(passed)} kit checks ran on xen:/// (68 when written)"
    assert xen_guest.name in subprocess.run(["xl", "list"], capture_output=True, text=True, timeout=30).stdout
