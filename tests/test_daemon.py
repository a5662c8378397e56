"""``virtkit.daemon.run_daemon``: one daemon per run directory, the parent told when it is ready."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest

# A daemon whose serve() writes its pid, says ready (or not), then waits for a "stop" file.
_DAEMON = """
import logging, os, pathlib, sys, time
from virtkit.daemon import run_daemon
rundir, mode = pathlib.Path(sys.argv[1]), sys.argv[2]

def serve(ready):
    (rundir / "served.tmp").write_text(str(os.getpid()))
    os.replace(rundir / "served.tmp", rundir / "served")  # whole, or not there
    if mode == "fail":
        raise RuntimeError("no hypervisor here")
    if mode == "ok":
        ready("ok")
    deadline = time.monotonic() + 30
    while not (rundir / "stop").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return 0

sys.exit(run_daemon(rundir, "helper", serve, wait=float(sys.argv[3]), what=f"helper in {rundir}",
                    log=logging.getLogger("helper")))
"""


def _start(rundir: pathlib.Path, mode: str, wait: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _DAEMON, str(rundir), mode, str(wait)], capture_output=True, text=True, timeout=60
    )


def _gone(pid: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def test_a_ready_daemon_detaches_and_a_second_start_finds_it(tmp_path: pathlib.Path) -> None:
    first = _start(tmp_path, "ok")
    assert (first.returncode, first.stderr) == (0, "")
    pid = int((tmp_path / "served").read_text())
    assert (tmp_path / "helper.pid").read_text().strip() == str(pid) and (tmp_path / "helper.log").exists()
    assert os.getsid(pid) == pid  # its own session: the starter's terminal and group are not its
    (tmp_path / "served").unlink()
    second = _start(tmp_path, "ok")  # the lock is held: nothing new starts
    assert second.returncode == 0 and not (tmp_path / "served").exists()
    (tmp_path / "stop").write_text("")
    assert _gone(pid)
    assert not (tmp_path / "helper.pid").exists()


def test_a_failing_daemon_tells_its_parent_why(tmp_path: pathlib.Path) -> None:
    r = _start(tmp_path, "fail")
    assert r.returncode == 1
    assert r.stderr == f"helper in {tmp_path}: RuntimeError: no hypervisor here\n"
    assert "helper failed" in (tmp_path / "helper.log").read_text()  # logged with its traceback
    assert _gone(int((tmp_path / "served").read_text()))


@pytest.mark.timeout(60)
def test_a_daemon_that_never_says_ready_fails_its_start_after_wait(tmp_path: pathlib.Path) -> None:
    r = _start(tmp_path, "silent", wait=0.5)
    assert r.returncode == 1 and r.stderr == f"helper in {tmp_path}: no answer in time\n"
    deadline = time.monotonic() + 10  # the child may not have reached serve() within the 0.5 s
    while not (tmp_path / "served").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = int((tmp_path / "served").read_text())
    (tmp_path / "stop").write_text("")
    assert _gone(pid)


def test_a_kept_link_is_stale_once_anything_arrives_or_it_closes() -> None:
    import socket

    from virtkit.daemon import stale

    ours, theirs = socket.socketpair()
    assert not stale(ours)  # idle and open: send on it
    theirs.sendall(b"x")  # an idle link gets nothing but its end, or junk
    assert stale(ours)
    ours.recv(1)
    theirs.close()  # the daemon idled out
    assert stale(ours)
    ours.close()  # closed here: its fileno is -1
    assert stale(ours)
