"""The host phase of ``lab/xenlab test``: tests that run on the host against the booted dom0.

dom0 gets QEMU's user network with one forward, ``127.0.0.1:PORT`` on the host to dom0's
sshd on port 22 (see image/dom0-init). The host makes a key for this run only (its public half
goes to io/authorized_keys); dom0 publishes the host key of its sshd in io/ssh_host_key.pub.
Once dom0 is ready, the host runs pytest on the ``tests/lab_host`` directories, with
``XENLAB_HOST_PHASE=1`` and where to find the port, key and io share in its environment, then
writes io/host-done: dom0-init waits for it before it starts the dom0 job, so the two never
run at once (each wants both cores; the host's tests create guests in the same Xen).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import xenlab_common as C
from xenlab_common import BuildError, log

LAB_HOST_TEST_DIRS = ("tests/lab_host", "plugins/*/tests/lab_host")
#: Seconds for the whole host phase (pytest on the host); dom0 waits this long plus slack.
HOST_TIMEOUT = float(os.environ.get("VIRTKIT_LAB_HOST_TIMEOUT", "600"))
#: What dom0-init waits beyond HOST_TIMEOUT for io/host-done (the host kills and reports first).
DOM0_SLACK = 60


def free_port() -> int:
    """A free loopback port for QEMU's forward (a race with another program is possible: QEMU
    then fails to start, which the boot retry covers with a new port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_key(directory: Path) -> tuple[Path, str]:
    """A fresh ed25519 key for this run: (private key path, public key line)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    C.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xenlab-host", "-f", key], timeout=30)
    return key, key.with_suffix(".pub").read_text()


class HostPhase:
    """pytest on the host, started once dom0 is ready; io/host-done written when it ends."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], key: Path, timeout: float = HOST_TIMEOUT) -> None:
        self.argv = list(argv)
        self.env = env
        self.key = key
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.deadline = 0.0
        self.rc: int | None = None
        self.detail = ""

    @property
    def finished(self) -> bool:
        return self.rc is not None

    def step(self, io: Path, port: int) -> None:
        """Called every poll once dom0 is ready: start, watch the deadline, report the end."""
        if self.rc is not None:
            return
        if self.proc is None:
            log(f"dom0 ready: host-side lab tests against ssh://127.0.0.1:{port} (at most {self.timeout:.0f}s)")
            with contextlib.suppress(OSError):  # the tests fail on it too, each saying so
                log(f"ERROR: dom0's sshd did not come up: {(io / 'sshd-error').read_text().strip()}")
            env = {
                **os.environ,
                **self.env,
                "XENLAB_HOST_PHASE": "1",
                "XENLAB_SSH_PORT": str(port),
                "XENLAB_SSH_KEY": str(self.key),
                "XENLAB_IO": str(io),
            }
            # Its own session: a timeout kills pytest and every ssh it started, nothing else.
            self.proc = subprocess.Popen(self.argv, env=env, cwd=C.LAB_DIR.parent, start_new_session=True)
            self.deadline = time.monotonic() + self.timeout
            return
        rc = self.proc.poll()
        if rc is None and time.monotonic() > self.deadline:
            self.kill()
            rc = 124
            self.detail = f"the host-side tests ran over {self.timeout:.0f}s"
            log(f"TIMEOUT: {self.detail}")
        if rc is not None:
            self.rc = rc
            (io / "host-done.tmp").write_text(f"{rc}\n")
            os.replace(io / "host-done.tmp", io / "host-done")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def abandon(self) -> None:
        """The VM is gone: a host phase still running has nothing left to test."""
        if self.proc is not None and self.rc is None:
            self.kill()
            self.rc = 125
            self.detail = "the VM ended while the host-side tests ran"


def pytest_argv(junit: Path, options: Sequence[str], paths: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        "lab/pytest.ini",
        f"--rootdir={C.LAB_DIR.parent}",
        f"--confcutdir={C.LAB_DIR.parent}",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "-o",
        "junit_suite_name=xenlab-host",
        *options,
        *paths,
    ]


def pytest_env(pydeps: Path) -> dict[str, str]:
    """The host phase uses the packages built for dom0 (same Python 3.11, same sources)."""
    return {
        "PYTHONPATH": os.pathsep.join([str(pydeps), str(C.LAB_DIR)]),
        "PATH": os.pathsep.join([str(pydeps / "bin"), os.environ.get("PATH", "/usr/bin:/bin")]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def merge_junit(dom0: Path | None, host: Path | None, dest: Path) -> None:
    """One JUnit file with dom0's suite and the host phase's, for one count in the closing line."""
    root = ET.Element("testsuites")
    for part in (dom0, host):
        if part is None or not part.is_file():
            continue
        try:
            tree = ET.parse(part).getroot()
        except ET.ParseError as exc:
            raise BuildError(f"unreadable JUnit XML {part}: {exc}") from exc
        root.extend([tree] if tree.tag == "testsuite" else list(tree.iter("testsuite")))
    if len(root):
        dest.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(dest, encoding="utf-8", xml_declaration=True)


def combine(dom0_rc: int, dom0_ran: bool, host_rc: int | None) -> int:
    """The exit code of a test run with both phases: the VM's failure first, then a failure of
    either phase; pytest's 5 (nothing collected) only when no phase collected anything."""
    if dom0_rc in (124, 125) or host_rc is None:
        return dom0_rc
    codes = [dom0_rc, host_rc] if dom0_ran else [host_rc]
    failed = [c for c in codes if c not in (0, 5)]
    if failed:
        return failed[0]
    return 5 if all(c == 5 for c in codes) else 0
