"""xl's global create lock: the engine takes xl.conf's ``lockfile`` as ``xl create`` does (a
POSIX record lock), waits for it within the request's time, and holds it while libxl creates a
domain, for a request and for a restart. Other processes stand in for xl here; the lab has the
real one (tests/lab/test_xen_libxl_lab_engine.py)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_xen_libxl_engine import FakeLibxl, cfg_json, guest

import virtkit
from virtkit_xen_libxl import _engine, _xllock
from virtkit_xen_libxl._engine import Engine, _Server
from virtkit_xen_libxl._engines import LibxlEngine
from virtkit_xen_libxl._xl import Xl

# A stand-in for xl: takes the lock as xl does (fcntl F_SETLKW, whole file), says so, holds it
# until its stdin closes, then writes the time it let go.
_HOLD = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o200)\n"
    "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
    "with open(sys.argv[2], 'w') as f:\n"
    "    f.write(repr(time.monotonic()))\n"
    "os.close(fd)\n"
)
# Exit 3 when another process holds a record lock on the file.
_PROBE = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
    "try:\n"
    "    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "except OSError:\n"
    "    sys.exit(3)\n"
)


class Holder:
    def __init__(self, lock: pathlib.Path, tmp: pathlib.Path, how: str = _HOLD) -> None:
        self.released = tmp / "released"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", how, str(lock), str(self.released)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "held"

    def release(self) -> float:
        """Let go; the monotonic time just before the holder did."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        self.kill()
        return float(self.released.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def lock(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    path = tmp_path / "xl.lock"
    (tmp_path / "xl.conf").write_text(f'# xl.conf\nautoballoon="on"\nlockfile="{path}"\n')
    monkeypatch.setattr(_xllock, "XL_CONF", str(tmp_path / "xl.conf"))
    monkeypatch.setattr(_engine, "RESTART_PAUSE", 0.0)
    return path


@pytest.fixture
def holder(lock: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[Holder]:
    h = Holder(lock, tmp_path)
    yield h
    h.kill()


def locked_by_another(path: pathlib.Path) -> bool:
    return subprocess.run([sys.executable, "-c", _PROBE, str(path)], timeout=30).returncode == 3


# -- where the lock is ------------------------------------------------------------------------


def test_lockfile_is_xl_confs_else_xls_default(tmp_path: pathlib.Path) -> None:
    conf = tmp_path / "xl.conf"
    assert _xllock.lockfile(str(conf)) == "/var/lock/xl"  # no xl.conf
    conf.write_text('autoballoon="auto"\n#lockfile="/elsewhere"\n')
    assert _xllock.lockfile(str(conf)) == "/var/lock/xl"  # Debian's: commented out
    conf.write_text('lockfile="/run/xl.lock"\nvif.default.bridge="xenbr0"\n')
    assert _xllock.lockfile(str(conf)) == "/run/xl.lock"
    conf.write_text('lockfile="/run/xl.lock\n')  # xl cannot read it: it goes on with its defaults
    assert _xllock.lockfile(str(conf)) == "/var/lock/xl"
    conf.write_text("lockfile=1\n")
    assert _xllock.lockfile(str(conf)) == "/var/lock/xl"


DEBIAN_LAB = "console=com1 com1=115200,8n1 dom0_mem=768M,max:768M dom0_max_vcpus=1 loglvl=all"


@pytest.mark.parametrize(
    ("setting", "commandline", "on"),
    [
        ("auto", DEBIAN_LAB, False),  # the lab's: xl takes no lock there
        ("auto", "console=com1 dom0_max_vcpus=1", True),
        ("auto", None, True),  # unknown: xl's default
        ("auto", "dom0_mem=1G+25%", False),
        ("auto", "dom0_mem=-10%", False),  # xl's own tests note its pattern takes this too
        ("auto", "dom0_mem = 1G", True),  # no match: on
        ("auto", "xdom0_mem=1G", True),
        ("auto", "dom0_mem=min:512M,max:2G iommu=1", False),
        ("on", DEBIAN_LAB, True),
        ("1", DEBIAN_LAB, True),
        ("off", None, False),
        ("0", "", False),
    ],
)
def test_autoballoon_follows_xl(setting: str, commandline: str | None, on: bool) -> None:
    assert _xllock.autoballoon(setting, commandline) is on


def test_the_lock_is_wanted_only_when_xl_autoballoons(tmp_path: pathlib.Path) -> None:
    conf = tmp_path / "xl.conf"
    assert _xllock.wanted(DEBIAN_LAB, str(conf)) is None  # no xl.conf: "auto"
    assert _xllock.wanted(None, str(conf)) == "/var/lock/xl"
    conf.write_text(f'autoballoon="on"\nlockfile="{tmp_path / "l"}"\n')
    assert _xllock.wanted(DEBIAN_LAB, str(conf)) == str(tmp_path / "l")
    conf.write_text('autoballoon="off"\n')
    assert _xllock.wanted(None, str(conf)) is None


# -- the lock itself --------------------------------------------------------------------------


def test_held_is_a_record_lock_other_processes_see(lock: pathlib.Path) -> None:
    with _xllock.held(str(lock), time.monotonic() + 5):
        assert locked_by_another(lock)
    assert not locked_by_another(lock)
    assert oct(lock.stat().st_mode & 0o777) == "0o200"  # created as xl creates it (S_IWUSR)


def test_held_waits_for_the_holder(lock: pathlib.Path, holder: Holder) -> None:
    let_go: list[float] = []
    t = threading.Timer(0.3, lambda: let_go.append(holder.release()))
    t.start()
    with _xllock.held(str(lock), time.monotonic() + 60):
        inside = time.monotonic()
    t.join()
    assert let_go and let_go[0] <= inside  # it got the lock only once the holder let go


def test_held_gives_up_at_the_deadline_naming_the_holder(lock: pathlib.Path, holder: Holder) -> None:
    gate = _xllock.held(str(lock), time.monotonic() + 0.2)
    with pytest.raises(virtkit.TimeoutError, match=rf"{lock} is held by process {holder.proc.pid}"), gate:
        pytest.fail("entered without the lock")
    assert locked_by_another(lock)  # the holder's lock is untouched


def test_an_flock_is_not_xls_lock(lock: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """xl takes a record lock; an flock on the same file does not keep it out (Linux keeps the
    two apart), which is why the engine takes the record lock."""
    flocker = Holder(lock, tmp_path, _HOLD.replace("fcntl.lockf(fd, fcntl.LOCK_EX)", "fcntl.flock(fd, fcntl.LOCK_EX)"))
    try:
        with _xllock.held(str(lock), time.monotonic() + 5):
            pass
    finally:
        flocker.release()


# -- the engine -------------------------------------------------------------------------------


class ProbingLibxl(FakeLibxl):
    """Notes, at each create, whether another process would find xl's lock taken."""

    def __init__(self, log_fd: int, lock: pathlib.Path) -> None:
        super().__init__(log_fd)
        self.lock = lock
        self.locked_at_create: list[bool] = []
        self.cmdline: str | None = None

    def commandline(self) -> str | None:
        if self.cmdline == "garbled":
            raise ValueError("libxl's JSON of the version info did not parse")
        return self.cmdline

    def create(self, config: str) -> int:
        self.locked_at_create.append(locked_by_another(self.lock))
        return super().create(config)


@pytest.fixture
def engine(tmp_path: pathlib.Path, lock: pathlib.Path) -> Iterator[tuple[Engine, ProbingLibxl]]:
    fd = os.open(tmp_path / "libxl.log", os.O_RDWR | os.O_CREAT | os.O_APPEND)
    lx = ProbingLibxl(fd, lock)
    yield Engine(tmp_path, lx, fd), lx  # type: ignore[arg-type]
    os.close(fd)


def test_no_lock_where_xl_takes_none(
    engine: tuple[Engine, ProbingLibxl], lock: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    eng, lx = engine
    (tmp_path / "xl.conf").write_text(f'lockfile="{lock}"\n')  # autoballoon "auto"
    lx.cmdline = DEBIAN_LAB  # dom0_mem set: xl does not balloon, and takes no lock
    h = Holder(lock, tmp_path)
    try:
        assert eng.handle({"op": "create", "config": cfg_json("n"), "wait": 0.2})["ok"] is True
    finally:
        h.kill()


def test_an_unreadable_command_line_counts_as_autoballooning(
    engine: tuple[Engine, ProbingLibxl], lock: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    eng, lx = engine
    (tmp_path / "xl.conf").write_text(f'lockfile="{lock}"\n')  # "auto": decided by the command line
    lx.cmdline = "garbled"
    assert eng.handle({"op": "create", "config": cfg_json("u"), "wait": 5})["ok"] is True
    assert lx.locked_at_create == [True]  # as xl, which takes an unknown command line as "on"


def test_a_create_holds_the_lock_and_a_restart_too(engine: tuple[Engine, ProbingLibxl], lock: pathlib.Path) -> None:
    eng, lx = engine
    domid = eng.handle({"op": "create", "config": cfg_json("r", on_reboot="restart"), "wait": 5})["domid"]
    eng.shutdown_of(eng.kids[domid], "reboot")
    assert lx.locked_at_create == [True, True] and len(eng.kids) == 1
    assert not locked_by_another(lock)  # let go after each


def test_a_create_while_xl_creates_waits_then_gives_up_untouched(
    engine: tuple[Engine, ProbingLibxl], holder: Holder
) -> None:
    eng, lx = engine
    reply = eng.handle({"op": "create", "config": cfg_json("w"), "wait": 0.2})
    assert reply["ok"] is False and reply["kind"] == "busy" and str(holder.proc.pid) in reply["error"]
    assert lx.calls == [] and not eng.kids  # libxl was never asked
    holder.release()
    assert eng.handle({"op": "create", "config": cfg_json("w"), "wait": 0.2})["ok"] is True


def test_a_restart_that_cannot_get_the_lock_leaves_the_domain_down(
    engine: tuple[Engine, ProbingLibxl], lock: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng, lx = engine
    domid = eng.handle({"op": "create", "config": cfg_json("x", on_reboot="restart")})["domid"]
    monkeypatch.setattr(_engine, "LOCK_WAIT", 0.2)
    holder = Holder(lock, tmp_path)
    try:
        eng.shutdown_of(eng.kids[domid], "reboot")  # logged, as any failed restart
        assert [c[0] for c in lx.calls] == ["create", "unpause", "destroy"] and not eng.kids
        assert locked_by_another(lock)  # the holder's, untouched
    finally:
        holder.kill()


@pytest.mark.parametrize("wait", [-1, "5", True, None, float("nan"), 10**6])
def test_a_bad_wait_is_refused(engine: tuple[Engine, ProbingLibxl], wait: Any) -> None:
    eng, lx = engine
    reply = eng.handle(json.loads(json.dumps({"op": "create", "config": cfg_json("b")})) | {"wait": wait})
    assert reply["kind"] == "request" and "bad wait" in reply["error"] and lx.calls == []


def test_the_client_sends_its_time_left_and_raises_a_timeout(
    engine: tuple[Engine, ProbingLibxl], holder: Holder, tmp_path: pathlib.Path
) -> None:
    eng, lx = engine
    seen: list[Any] = []
    handle = eng.handle
    eng.handle = lambda req, answer=None: (seen.append(req.get("wait")), handle(req, answer))[1]  # type: ignore[method-assign]
    server = _Server(str(tmp_path / _engine.SOCKET), eng)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = LibxlEngine(str(tmp_path), Xl("/bin/false", timeout=1), timeout=1.0)
    try:
        with pytest.raises(virtkit.TimeoutError, match="create lock"):
            client.create(guest("c"), tmp_path)
        assert isinstance(seen[0], float) and 0 < seen[0] < 1.0  # it answers before the client's deadline
        assert lx.calls == []
    finally:
        client.close()
        server.shutdown()
        server.server_close()
