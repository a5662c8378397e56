"""Fixtures for the qemu plugin's tests: a private state directory, the test guest, cleanup.

Every QEMU these tests start lives under a state directory made for them; teardown kills every
QEMU whose pidfile is there (and only those), so a failing test never leaves one behind.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import virtkit
from virtkit_qemu import find_qemu

# _guest.py, the test guest's builder, lives beside this file (tests, the bench and the kit's
# config use it; the plugin does not): the test modules import it as ``_guest``.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _guest import CMDLINE, READY_MARK, guest_image

URI = "qemu:///session"


def kill_qemus(root: pathlib.Path, state: str = "virtkit/qemu") -> None:
    """SIGKILL each QEMU (and relay) whose pidfile is under ``root`` and whose command line names
    ``root``; ``state``: the state directory, relative to ``root``."""
    for pidfile in [*root.glob(f"{state}/run/*/qemu.pid"), *root.glob(f"{state}/run/*/relay.pid")]:
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if str(root).encode() in cmdline:  # ours: never a pid that was reused by something else
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTKIT_DEFAULT_URI", raising=False)
    monkeypatch.delenv("VIRTKIT_STRICT", raising=False)


class QemuLab:
    """Helpers bound to one state directory (XDG_STATE_HOME)."""

    def __init__(self, home: pathlib.Path, guest: tuple[pathlib.Path, pathlib.Path] | None) -> None:
        self.home = home
        self.guest = guest
        self.root = home / "virtkit" / "qemu"

    def open(self) -> virtkit.Connection:
        return virtkit.open(URI)

    def config(self, name: str, **kw: Any) -> virtkit.DomainConfig:
        assert self.guest is not None, "this test needs the guest fixture"
        kernel, initrd = self.guest
        kw.setdefault("memory", 128 * 1024)
        kw.setdefault("max_memory", 160 * 1024)
        return virtkit.DomainConfig(
            name=name, kernel=str(kernel), initrd=str(initrd), cmdline=CMDLINE, extra={"accel": "tcg"}, **kw
        )

    def rundir(self, dom_id: int | None) -> pathlib.Path:
        return self.root / "run" / str(dom_id)

    def wait_for_console(self, dom_id: int | None, count: int = 1, timeout: float = 120) -> None:
        """Until the guest's init printed READY_MARK ``count`` times (a boot under TCG takes seconds)."""
        log = self.rundir(dom_id) / "console.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.is_file() and log.read_text(errors="replace").count(READY_MARK) >= count:
                return
            time.sleep(0.2)
        text = log.read_text(errors="replace")[-2000:] if log.is_file() else "(no console log)"
        raise AssertionError(f"guest {dom_id} not up after {timeout} s; console:\n{text}")

    @staticmethod
    def wait_until(pred: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def qmp(self, dom_id: int | None, cmd: str) -> Any:
        """QMP's own view, straight from qemu.qmp, bypassing virtkit."""
        from qemu.qmp import QMPClient

        async def go() -> Any:
            client = QMPClient("test")
            await asyncio.wait_for(client.connect(str(self.rundir(dom_id) / "qmp.sock")), 10)
            try:
                return await asyncio.wait_for(client.execute(cmd), 10)
            finally:
                await client.disconnect()

        return asyncio.run(go())

    def qemu_pid(self, dom_id: int | None) -> int:
        return int((self.rundir(dom_id) / "qemu.pid").read_text().strip())

    @staticmethod
    def pid_alive(pid: int) -> bool:
        try:
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@pytest.fixture
def lab(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[QemuLab]:
    """A fresh XDG_STATE_HOME (qemu:///session keeps its state under it); no guest."""
    home = tmp_path / "st"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    yield QemuLab(home, None)
    kill_qemus(home)


@pytest.fixture(scope="session")
def guest() -> tuple[pathlib.Path, pathlib.Path]:
    """(kernel, initrd) of the tiny test guest; skipped only when QEMU itself is absent."""
    if find_qemu() is None:
        pytest.skip("qemu-system-x86_64 is not installed (Debian: qemu-system-x86)")
    return guest_image()  # a build failure is an error, not a skip


@pytest.fixture
def glab(lab: QemuLab, guest: tuple[pathlib.Path, pathlib.Path]) -> QemuLab:
    """``lab`` with the guest."""
    lab.guest = guest
    return lab


@pytest.fixture(scope="module")
def mlab(tmp_path_factory: pytest.TempPathFactory, guest: tuple[pathlib.Path, pathlib.Path]) -> Iterator[QemuLab]:
    """A state directory shared by one test module (for a guest booted once per module)."""
    home = tmp_path_factory.mktemp("st")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(home))
        try:
            yield QemuLab(home, guest)
        finally:
            kill_qemus(home)


@pytest.fixture
def sysdir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    """qemu:///system's state directory for this test (VIRTKIT_QEMU_SYSTEM_DIR), not the host's."""
    root = tmp_path / "system"
    monkeypatch.setenv("VIRTKIT_QEMU_SYSTEM_DIR", str(root))
    yield root
    kill_qemus(root, ".")
