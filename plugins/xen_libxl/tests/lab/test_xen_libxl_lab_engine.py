"""xen_libxl's resident libxl engine on the lab's real Xen 4.17: it is the engine chosen here, it
babysits what virtkit creates (no xl process does), the config it builds is what ``xl -N
create`` makes of the same xl file, an engine killed and started again re-adopts its domains
(a guest rebooted afterwards comes back under a new id), and it takes xl's own create lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_xenlab
from pytest_xenlab import sh, wait_for

import virtkit
from virtkit import DomainConfig
from virtkit_xen_libxl import _xlcfg, _xllock
from virtkit_xen_libxl._engine import DEFAULT_RUNDIR, SOCKET
from virtkit_xen_libxl._libxlcfg import libxl_config

pytestmark = pytest.mark.lab
Made = Callable[..., str]
#: The ``guest`` fixture (conftest): the lab's tiny PV guest's config, keywords replace fields.
Guest = Callable[..., DomainConfig]
RUNDIR = Path(os.environ.get("VIRTKIT_XEN_LIBXL_ENGINE_DIR", DEFAULT_RUNDIR))


def ping() -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(RUNDIR / SOCKET))
        s.sendall(b'{"op": "ping"}\n')
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            assert chunk, "the engine closed the connection"
            buf += chunk
    reply: dict[str, Any] = json.loads(buf)
    return reply


def xl_processes() -> list[str]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                argv = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"xl"):
                out.append(b" ".join(argv).decode(errors="replace"))
    return out


def test_the_engine_babysits_what_virtkit_creates(conn: virtkit.Connection, made: Made, guest: Guest) -> None:
    dom = conn.create(guest(made()))
    state = ping()
    assert state["ok"] and dom.id in state["domains"], state
    # no xl babysitter: with the xl engine, `xl create` of a file named after the uuid stays
    assert not [p for p in xl_processes() if str(dom.uuid) in p], xl_processes()
    dom.destroy()
    assert dom.name not in pytest_xenlab.xl_list()
    wait_for(lambda: dom.id not in ping()["domains"], timeout=30, what="the engine to let the domain go")


@pytest.mark.parametrize(
    "kw",
    [{}, {"max_memory": 262144, "vcpus": 1, "max_vcpus": 2, "on_reboot": "rename-restart", "on_crash": "preserve"}],
    ids=["plain", "maxima-and-actions"],
)
def test_built_config_is_what_xl_makes_of_the_xl_file(tmp_path: Path, guest: Guest, kw: dict[str, Any]) -> None:
    cfg = guest("vkx-json", uuid=uuid.uuid4(), **kw)
    built = libxl_config(cfg)
    assert built is not None
    path = tmp_path / "g.cfg"
    path.write_text(_xlcfg.dump(_xlcfg.xl_settings(cfg)))
    xl = json.loads(sh("xl", "-N", "create", "-q", str(path)).stdout)

    def drop_empty(d: Any) -> Any:  # libxl's JSON leaves out initial values, xl prints {} for some
        if isinstance(d, dict):
            return {k: drop_empty(v) for k, v in d.items() if v != {}}
        return d

    # libxl's JSON leaves out an action equal to its initial value (destroy); built states them all
    defaults = {k: "destroy" for k in ("on_poweroff", "on_reboot", "on_crash", "on_watchdog")}
    assert drop_empty({**defaults, **xl}) == drop_empty(built)


def test_a_new_engine_readopts_the_domains_of_the_last(conn: virtkit.Connection, made: Made, guest: Guest) -> None:
    dom = conn.create(guest(made(), on_reboot="restart"))
    pid = ping()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="the engine gone")
    dom.reboot()  # the request starts a new engine, which watches the domain again first
    assert ping()["pid"] != pid
    back = wait_for(
        lambda: (x := pytest_xenlab.xl_list().get(dom.name)) is not None and x.domid != dom.id and x,
        timeout=120,
        what=f"{dom.name} back under a new id after the reboot",
    )
    assert back.uuid == str(dom.uuid)


# A stand-in for another toolstack's create: holds xl's lock as xl does until stdin closes.
_HOLD = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o200)\n"
    "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)
XL_CONF = Path("/etc/xen/xl.conf")


def _waiting_for_record_lock(pid: int, path: str) -> bool:
    """/proc/locks lists ``pid`` blocked (``->``) on a POSIX lock of ``path``'s inode."""
    ino = str(os.stat(path).st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "->" in parts and "POSIX" in parts and str(pid) in parts and parts[-3].rsplit(":", 1)[-1] == ino:
            return True
    return False


@pytest.fixture
def autoballooning() -> Iterator[str]:
    """xl.conf with autoballoon="on" (the lab's Xen has dom0_mem, so "auto" is off and xl takes
    no lock: every other test here creates that way), and /run/lock, which systemd makes on a
    real Debian dom0 and the lab's init does not; xl's lock file, for the test."""
    before = XL_CONF.read_text()
    os.makedirs("/run/lock", exist_ok=True)
    XL_CONF.write_text(before + '\nautoballoon="on"\n')
    try:
        yield _xllock.lockfile()
    finally:
        XL_CONF.write_text(before)


def test_virtkit_and_xl_take_one_create_lock(
    tmp_path: Path, made: Made, guest: Guest, conn: virtkit.Connection, autoballooning: str
) -> None:
    """xl's create lock held by another process: the real ``xl create`` blocks on it (so this is
    xl's lock), a virtkit create gives up at its deadline naming the holder and leaves no
    domain; once it is released, both create."""
    lock = autoballooning
    pipe = subprocess.PIPE
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, lock], stdin=pipe, stdout=pipe, text=True)
    xl_name, vk_name = made(), made()
    cfg = tmp_path / "xl.cfg"
    cfg.write_text(pytest_xenlab.guest_config(xl_name))
    xl: subprocess.Popen[str] | None = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        xl = subprocess.Popen(["xl", "create", "-q", str(cfg)], stdout=pipe, stderr=pipe, text=True)
        pid = xl.pid
        wait_for(lambda: _waiting_for_record_lock(pid, lock), timeout=60, what="xl create to wait for its lock")
        with (
            virtkit.open("xen:///", timeout=20, params={"xen_libxl_state_dir": str(tmp_path / "state")}) as short,
            pytest.raises(virtkit.TimeoutError, match=f"create lock {lock} is held by process {holder.pid}"),
        ):
            short.create(guest(vk_name))
        assert xl.poll() is None and _waiting_for_record_lock(pid, lock)  # still waiting
        listing = pytest_xenlab.xl_list()
        assert vk_name not in listing and xl_name not in listing
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    assert xl is not None
    _out, err = xl.communicate(timeout=120 * pytest_xenlab.TIMEOUT_SCALE)
    assert xl.returncode == 0, err
    assert xl_name in pytest_xenlab.xl_list()
    dom = conn.create(guest(vk_name))
    assert pytest_xenlab.xl_list()[vk_name].domid == dom.id
