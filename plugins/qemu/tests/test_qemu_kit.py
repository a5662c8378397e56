"""The conformance kit on qemu:///session, run as its users run it: pytest in a subprocess.

Its domains boot the same tiny guest the other tests use, in a state directory of their own.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from _guest import CMDLINE

from virtkit.testing import run_kit


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
    home = glab.home  # glab's teardown kills any QEMU the kit left behind
    # A guest running through the whole run, for the checks that read running domains (stats).
    with glab.open() as conn:
        bystander = conn.create(
            glab.config("bystander", devices=[{"type": "disk", "path": str(disk), "readonly": True}])
        )
        glab.wait_for_console(bystander.id)
    run = run_kit(
        "qemu:///session",
        tmp_path,
        mutating=True,
        config=cfg,
        check_timeout=60,
        env={"XDG_STATE_HOME": str(home)},
        timeout=280,
    )
    assert run.returncode == 0, run.output[-6000:]
    # The lifecycle and stats checks must really have run, not been skipped.
    lifecycle = (
        "test_suspend_resume",
        "test_shutdown",
        "test_reboot",
        "test_destroy",
        "test_define_start_undefine",
        "test_persistence",
    )
    stats = ("test_stats_bulk_groups", "test_stats_counters_monotonic", "test_stats_domain_ops")
    for name in (*lifecycle, *stats, "test_stats_unknown_device"):
        assert run.outcomes.get(name) == "passed", (name, run.outcomes.get(name), run.output[-3000:])
    assert run.count("passed") >= 80
    with glab.open() as conn:
        conn.lookup_by_uuid(bystander.uuid).destroy()
    if list(home.glob("virtkit/qemu/run/[0-9]*")):
        pytest.fail(f"the kit left running domains behind: {sorted(home.glob('virtkit/qemu/run/*'))}")
