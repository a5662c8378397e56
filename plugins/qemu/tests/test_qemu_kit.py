"""The conformance kit on qemu:///session, run as its users run it: pytest in a subprocess.

Its domains boot the same tiny guest the other tests use, in a state directory of their own.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from _guest import CMDLINE


def test_kit_passes_on_qemu_session(tmp_path: pathlib.Path, glab: Any) -> None:
    kernel, initrd = glab.guest
    disk = tmp_path / "disk.img"  # read-only: the kit runs several domains of this config at once
    with disk.open("wb") as fh:
        fh.truncate(1 << 20)
    cfg = tmp_path / "guest.json"
    cfg.write_text(
        json.dumps(
            {
                "name": "kit",
                "memory": 128 * 1024,
                "max_memory": 160 * 1024,
                "kernel": str(kernel),
                "initrd": str(initrd),
                "cmdline": CMDLINE,
                "extra": {"accel": "tcg"},
                "devices": [{"type": "disk", "path": str(disk), "readonly": True}],
            }
        )
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\nfilterwarnings = error\n")
    home = glab.home  # glab's teardown kills any QEMU the kit left behind
    # A guest running through the whole run, for the checks that read running domains (stats).
    with glab.open() as conn:
        bystander = conn.create(
            glab.config("bystander", devices=[{"type": "disk", "path": str(disk), "readonly": True}])
        )
        glab.wait_for_console(bystander.id)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTKIT_", "PYTEST_"))}
    env["XDG_STATE_HOME"] = str(home)
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={junit}",
            "--virtkit-uri=qemu:///session", "--virtkit-mutating", f"--virtkit-config={cfg}",
            "--virtkit-timeout=60",
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
    # The lifecycle and stats checks must really have run, not been skipped.
    lifecycle = ("test_suspend_resume", "test_shutdown", "test_reboot", "test_destroy", "test_define_start_undefine")
    stats = ("test_stats_bulk_groups", "test_stats_counters_monotonic", "test_stats_domain_ops")
    for name in (*lifecycle, *stats, "test_stats_unknown_device"):
        assert outcomes.get(name) == "passed", (name, outcomes.get(name), out[-3000:])
    assert sum(1 for o in outcomes.values() if o == "passed") >= 80
    with glab.open() as conn:
        conn.lookup_by_uuid(bystander.uuid).destroy()
    if list(home.glob("virtkit/qemu/run/[0-9]*")):
        pytest.fail(f"the kit left running domains behind: {sorted(home.glob('virtkit/qemu/run/*'))}")
