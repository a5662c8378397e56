"""lab/xenlab_host.py's pure parts: the exit code of a test run with a host phase, and the one
JUnit file both phases are counted from (scripts/junit-summary reads it)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

LAB = pathlib.Path(__file__).resolve().parent.parent / "lab"
sys.path.insert(0, str(LAB))
import xenlab_host as H  # noqa: E402 - lab/ is not a package

SUITE = (
    '<?xml version="1.0"?><testsuites><testsuite name="{}" tests="{}" failures="{}" errors="0" skipped="{}">'
    "{}</testsuite></testsuites>"
)


@pytest.mark.parametrize(
    ("dom0", "ran", "host", "expected"),
    [
        (0, True, 0, 0),
        (1, True, 0, 1),
        (0, True, 1, 1),
        (0, True, 5, 0),  # -k left nothing on the host side: dom0's tests ran
        (5, True, 0, 0),
        (5, True, 5, 5),  # nothing collected anywhere
        (0, False, 5, 5),  # only host paths named, none collected
        (0, False, 0, 0),
        (124, True, 0, 124),  # the VM's failure comes first
        (125, True, None, 125),  # the VM died before the host phase started
        (0, True, 124, 124),  # the host phase ran over its time
        (2, True, 0, 2),
    ],
)
def test_combined_exit_code(dom0: int, ran: bool, host: int | None, expected: int) -> None:
    assert H.combine(dom0, ran, host) == expected


def test_both_reports_merge_into_one_counted_file(tmp_path: pathlib.Path) -> None:
    dom0, host, out = tmp_path / "dom0.xml", tmp_path / "host.xml", tmp_path / "out" / "lab.xml"
    dom0.write_text(SUITE.format("xenlab", 3, 1, 1, '<testcase name="a"/>'))
    host.write_text(SUITE.format("xenlab-host", 4, 0, 0, '<testcase name="b"/>'))
    H.merge_junit(dom0, host, out)
    summary = subprocess.run(
        [sys.executable, str(LAB.parent / "scripts" / "junit-summary"), str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert summary.splitlines()[-1] == "5 passed, 1 failed, 1 skipped"
    H.merge_junit(tmp_path / "missing.xml", host, out)  # the VM died: the host suite alone
    assert "xenlab-host" in out.read_text() and 'name="xenlab"' not in out.read_text()


def test_an_unreadable_report_is_a_build_error(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<testsuites><testsuite")
    with pytest.raises(H.BuildError, match="unreadable JUnit XML"):
        H.merge_junit(bad, None, tmp_path / "out.xml")
