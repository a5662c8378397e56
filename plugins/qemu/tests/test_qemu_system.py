"""qemu:///system: root's, in a system state directory; anybody else gets PermissionDenied.

CI runs as root. These tests keep the host's real /var/lib/virtkit/qemu out of it: the plugin's
VIRTKIT_QEMU_SYSTEM_DIR (for tests) points qemu:///system at a temporary directory.
"""

from __future__ import annotations

import os
import pathlib
import select
import shutil
import signal
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

import virtkit
from virtkit_qemu import find_qemu, state_root
from virtkit_qemu._plugin import SYSTEM_ROOT, SYSTEM_ROOT_ENV

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="qemu:///system tests need root (CI runs as root)")
needs_qemu = pytest.mark.skipif(find_qemu() is None, reason="qemu-system-x86_64 is not installed")


def test_the_system_directory_and_its_override(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.delenv(SYSTEM_ROOT_ENV, raising=False)
    assert state_root("/system") == SYSTEM_ROOT == pathlib.Path("/var/lib/virtkit/qemu")
    monkeypatch.setenv(SYSTEM_ROOT_ENV, str(tmp_path))
    assert state_root("/system") == tmp_path


@needs_root
@needs_qemu
def test_system_create_list_destroy(sysdir: pathlib.Path, glab: Any) -> None:
    real_existed = SYSTEM_ROOT.exists()
    with virtkit.open("qemu:///system") as conn:
        assert conn.list_domains() == []
        dom = conn.create(glab.config("sys1"))
        assert conn.list_domains() == [dom.id]
        assert conn.lookup_by_name("sys1").uuid == dom.uuid
        rundir = sysdir / "run" / str(dom.id)
        pid = int((rundir / "qemu.pid").read_text())
        assert glab.pid_alive(pid)
        assert str(rundir).encode() in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        assert pathlib.Path(f"/proc/{pid}/status").read_text().count("Uid:\t0\t") == 1  # root's QEMU
        assert sysdir.stat().st_mode & 0o777 == 0o700
        with glab.open() as session:  # qemu:///session is another world
            assert session.list_domains() == []
            with pytest.raises(virtkit.NoSuchDomain):
                session.lookup_by_name("sys1")
        with virtkit.open("qemu:///system") as again:  # a second connection re-attaches
            assert again.lookup_by_id(dom.id).uuid == dom.uuid
        dom.destroy()
        assert not glab.pid_alive(pid)
        assert conn.list_domains() == []
        assert not rundir.exists()
    assert SYSTEM_ROOT.exists() == real_existed  # the host's real state was not touched


def _as_nobody(uri: str, timeout: float = 60, kernel: pathlib.Path | None = None) -> str:
    """Open ``uri`` in a forked child that dropped to uid/gid 65534 (nobody): what it got.
    With ``kernel``, also define a domain booting it (the first write to the state directory).

    A fork, not a new interpreter: this interpreter lives under /root, which nobody cannot read.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        out = "child failed"
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            assert os.geteuid() == NOBODY and os.getegid() == NOBODY
            try:
                with virtkit.open(uri) as conn:
                    out = "opened"
                    if kernel is not None:
                        conn.define(virtkit.DomainConfig(name="mine", memory=65536, kernel=str(kernel)))
                        out += ", defined"
            except virtkit.PermissionDenied as exc:
                out = f"PermissionDenied: {exc}"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(w, out.encode())
            os._exit(0)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], timeout)
        return os.read(r, 65536).decode() if ready else "no answer"
    finally:
        os.close(r)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.fixture
def nobody_dir() -> Iterator[pathlib.Path]:
    """A directory nobody owns (pytest's own tmp_path is root's, 0700 all the way down)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="vkq-nobody-"))
    os.chown(d, NOBODY, NOBODY)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@needs_root
@needs_qemu
@pytest.mark.parametrize("override", [False, True])
def test_a_non_root_user_gets_permission_denied(
    override: bool, nobody_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = SYSTEM_ROOT
    if override:
        target = nobody_dir / "system"  # even where nobody could write, it is refused
        monkeypatch.setenv(SYSTEM_ROOT_ENV, str(target))
    real_existed = SYSTEM_ROOT.exists()
    got = _as_nobody("qemu:///system")
    assert got.startswith("PermissionDenied:") and "needs root" in got and str(target) in got, got
    assert SYSTEM_ROOT.exists() == real_existed
    assert not (nobody_dir / "system").exists()
    # ... while qemu:///session is theirs to use, in a state directory of their own, made by
    # the first write (opening it writes nothing).
    monkeypatch.setenv("XDG_STATE_HOME", str(nobody_dir / "state"))
    assert _as_nobody("qemu:///session") == "opened"
    assert not (nobody_dir / "state").exists()
    kernel = nobody_dir / "vmlinuz"
    kernel.write_bytes(b"not booted")
    assert _as_nobody("qemu:///session", kernel=kernel) == "opened, defined"
    assert (nobody_dir / "state" / "virtkit" / "qemu").stat().st_uid == NOBODY
