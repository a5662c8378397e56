"""The conformance kit against the emulated xend over real HTTP, run as its users run it: pytest
in a subprocess, mutating checks included; its stats checks must run, not be skipped."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

from virtkit_xen_xend.emulator import XendEmulator


def test_kit_passes_against_the_emulator(tmp_path: pathlib.Path, emu: XendEmulator) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\nfilterwarnings = error\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTKIT_", "PYTEST_"))}
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={junit}",
            f"--virtkit-uri={emu.uri}", "--virtkit-mutating", "--virtkit-timeout=30",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name", "")] = kinds[0] if kinds else "passed"
    stats = ("test_stats_bulk_groups", "test_stats_bulk_named_domains", "test_stats_counters_monotonic")
    for name in (*stats, "test_stats_unknown_group", "test_stats_domain_ops"):
        assert outcomes.get(name) == "passed", (name, outcomes.get(name), out[-3000:])
