"""A query never ends a process on a read-only connection (issue 14).

QEMU runs with ``-no-shutdown``: a guest that powered off leaves QEMU waiting (status
"shutdown") for its relay -- or, without one, the first connection that looks -- to quit it. A
read (info, state, list, lookup) on a read-write connection does that, waiting up to its
deadline for QEMU to exit and SIGKILLing it then. On a read-only connection it only reports:
no quit, no reset, no kill, no wait. Here the "QEMU" is a sleeping process and the relay a
scripted one that says the guest powered off; nothing boots.
"""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _peer import Peer  # beside this file (conftest puts the directory on sys.path)

import virtkit
from virtkit_qemu import find_qemu
from virtkit_qemu._driver import Driver
from virtkit_qemu._relay import RELAY

TIMEOUT = 1.0
URI = "qemu:///session"


class PoweredOffRelay:
    """A relay that answers every command; query-status says "shutdown". Records the commands."""

    def __init__(self, path: pathlib.Path) -> None:
        self.seen: list[str] = []
        self.peer = Peer(str(path), self._run)

    def _run(self, peer: Peer, conn: socket.socket) -> None:
        with conn:
            conn.sendall(b'{"relay": 1, "pid": 1}\n')
            buf = b""
            while not peer.stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg: dict[str, Any] = json.loads(line)
                    results = []
                    for cmd, _args in msg.get("batch", ()):
                        self.seen.append(cmd)
                        ret: Any = {"status": "shutdown", "running": False} if cmd == "query-status" else {}
                        if cmd == "query-balloon":
                            ret = {"actual": 64 << 20}
                        elif cmd == "query-cpus-fast":
                            ret = []
                        results.append({"return": ret})
                    conn.sendall(json.dumps({"id": msg["id"], "results": results}).encode() + b"\n")

    def close(self) -> None:
        self.peer.close()


@pytest.fixture
def powered_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[pathlib.Path, virtkit.DomainRef, Any, Any]]:
    """A persistent domain (id 1) whose guest powered off: its "QEMU" (a sleeping process) waits."""
    home = pathlib.Path(tempfile.mkdtemp(prefix="vkqr"))  # short: socket paths
    root = home / "virtkit" / "qemu"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    kernel = home / "vmlinuz"
    kernel.write_bytes(b"never booted")
    uid = uuid.uuid4()
    cfg = virtkit.DomainConfig(name="off", uuid=uid, memory=65536, max_memory=65536, kernel=str(kernel))
    rundir = root / "run" / "1"
    rundir.mkdir(parents=True)
    (root / "defined").mkdir()
    (root / "defined" / "off.json").write_text(json.dumps({"config": cfg.to_dict()}))
    (rundir / "domain.json").write_text(json.dumps({"config": cfg.to_dict(), "persistent": True}))
    sleeper = subprocess.Popen(["sleep", "120"])
    (rundir / "qemu.pid").write_text(f"{sleeper.pid}\n")
    (rundir / "started").touch()
    relay = PoweredOffRelay(rundir / RELAY)
    try:
        yield root, virtkit.DomainRef("off", uid, 1), sleeper, relay
    finally:
        relay.close()
        sleeper.kill()
        sleeper.wait()
        for p in sorted(home.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() else p.rmdir()
        home.rmdir()


def test_a_read_only_driver_only_reports_a_powered_off_guest(powered_off: Any) -> None:
    root, ref, sleeper, relay = powered_off
    drv = Driver(root, URI, "/bin/false", TIMEOUT, readonly=True)
    try:
        t0 = time.monotonic()
        assert drv.domain_get_info(ref).state is virtkit.DomainState.SHUTDOWN
        assert drv.domain_get_state(ref).state is virtkit.DomainState.SHUTDOWN
        assert drv.connect_list_domains() == [1]
        assert drv.domain_lookup_by_id(1) == ref
        assert drv.domain_lookup_by_name("off") == ref
        assert drv.domain_lookup_by_uuid(ref.uuid) == ref
        assert time.monotonic() - t0 < TIMEOUT  # nothing waited for a QEMU to exit
        assert set(relay.seen) <= {"query-status", "query-balloon", "query-cpus-fast"}, relay.seen
        assert sleeper.poll() is None
        assert (root / "run" / "1").is_dir()
    finally:
        drv.close()


def test_a_read_write_driver_ends_it_as_before(powered_off: Any) -> None:
    """The same read on a read-write connection quits the powered-off guest's QEMU (SIGKILL at
    its deadline: this one ignores quit) and reports the domain shut off."""
    root, ref, sleeper, relay = powered_off
    drv = Driver(root, URI, "/bin/false", TIMEOUT)
    try:
        assert drv.domain_get_state(ref).state is virtkit.DomainState.SHUTOFF
        assert "quit" in relay.seen
        assert sleeper.wait(5) is not None
        assert not (root / "run" / "1").exists()
    finally:
        drv.close()


@pytest.mark.skipif(find_qemu() is None, reason="qemu-system-x86_64 is not installed")
def test_a_read_only_connection_only_reports_it(powered_off: Any) -> None:
    """Through the API, as ``virtkit -r``: the plugin opens a read-only driver."""
    root, ref, sleeper, relay = powered_off
    with virtkit.open(URI, readonly=True, timeout=TIMEOUT) as conn:
        assert conn.list_domains() == [1]
        dom = conn.lookup_by_id(1)
        assert dom.uuid == ref.uuid
        assert dom.info().state is virtkit.DomainState.SHUTDOWN
        assert dom.state().state is virtkit.DomainState.SHUTDOWN
        assert [d.name for d in conn.domains(all=True)] == ["off"]
    assert "quit" not in relay.seen and "system_reset" not in relay.seen
    assert sleeper.poll() is None
    assert (root / "run" / "1").is_dir()
