"""SCHEME+ssh:// through a real OpenSSH: an sshd of our own on a loopback port.

The sshd runs in the foreground from a config in a temp directory (host and user keys generated
there, ``UsePAM no``, ``StrictModes no``); the system's sshd and the user's ~/.ssh are never
touched: ``$VIRTKIT_SSH`` points the plugin at a wrapper that runs ssh with a config of ours.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest

import virtkit
from virtkit.testing import run_kit

SSHD = "/usr/sbin/sshd"
HERE = pathlib.Path(__file__).resolve().parent
VIRTKIT = str(pathlib.Path(sys.executable).with_name("virtkit"))
TIMEOUT = 5.0
SLACK = TIMEOUT * 0.1 + 1.0

if not os.path.exists(SSHD) or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
    if os.environ.get("CI"):
        raise RuntimeError("sshd/ssh missing: scripts/setup --dev installs openssh-server")
    pytest.skip("needs OpenSSH (scripts/setup --dev installs openssh-server)", allow_module_level=True)


class Sshd(NamedTuple):
    port: int
    dir: pathlib.Path
    ssh: str  # wrapper trusting the host key
    ssh_unknown: str  # wrapper with an empty known_hosts
    key: str
    wrong_key: str
    env: dict[str, str]  # for a subprocess: VIRTKIT_SSH and a private XDG_RUNTIME_DIR

    def uri(self, path: str = "/default", command: str = VIRTKIT, key: str | None = None, **params: str) -> str:
        query = urllib.parse.urlencode({"command": command, "keyfile": key or self.key, **params}, safe="/")
        return f"test+ssh://root@127.0.0.1:{self.port}{path}?{query}"


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except OSError:  # gone (FileNotFoundError), or exiting while read (ProcessLookupError)
        return False


def _wait(predicate: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    d = pathlib.Path(tempfile.mkdtemp(prefix="vk-sshd-"))  # short: ssh's control sockets live under it
    for name in ("host", "user", "wrong", "forced"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    forced = f'command="{VIRTKIT} serve --stdio --readonly test:///default",no-pty,no-port-forwarding '
    (d / "authorized_keys").write_text((d / "user.pub").read_text() + forced + (d / "forced.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's compiled-in privilege separation dir
    log = open(d / "sshd.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log, start_new_session=True)
    hostkey = (d / "host.pub").read_text().split()[:2]
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(hostkey)}\n")
    (d / "empty_known_hosts").write_text("")
    wrappers = []
    for name, known in (("ssh", "known_hosts"), ("ssh-unknown", "empty_known_hosts")):
        (d / f"{name}.config").write_text(
            f"UserKnownHostsFile {d}/{known}\nGlobalKnownHostsFile /dev/null\nIdentitiesOnly yes\nIdentityAgent none\n"
        )
        (d / name).write_text(f'#!/bin/sh\nexec ssh -F {d}/{name}.config "$@"\n')
        (d / name).chmod(0o755)
        wrappers.append(str(d / name))
    (d / "run").mkdir(mode=0o700)
    env = {"VIRTKIT_SSH": wrappers[0], "XDG_RUNTIME_DIR": str(d / "run")}

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return proc.poll() is not None

    assert _wait(up, 10) and proc.poll() is None, (d / "sshd.log").read_text()
    try:
        yield Sshd(port, d, wrappers[0], wrappers[1], str(d / "user"), str(d / "wrong"), env)
    finally:
        # ssh's master connections (ControlPersist) name their socket, under d, in their title
        for pid in [*_descendants(proc.pid), *_pids_with(str(d))]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ssh_env(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> Sshd:
    for k, v in sshd.env.items():
        monkeypatch.setenv(k, v)
    return sshd


def _pid(conn: virtkit.Connection) -> int:
    (driver,) = [d for _name, d in conn._drivers]
    pid: int = driver.link.pid
    return pid


def test_list_and_explain_through_ssh(ssh_env: Sshd) -> None:
    with virtkit.open(ssh_env.uri(), timeout=TIMEOUT) as conn, virtkit.open("test:///default") as local:
        assert [d.name for d in conn.domains(all=True)] == [d.name for d in local.domains(all=True)]
        assert conn.explain().remote is not None
        assert conn.explain().remote.route("domain_get_info").plugin == "test"  # type: ignore[union-attr]


def test_cli_list_through_ssh(ssh_env: Sshd) -> None:
    out = subprocess.run(
        [VIRTKIT, "-c", ssh_env.uri(), "list"], capture_output=True, text=True, timeout=60, env=os.environ.copy()
    )
    assert out.returncode == 0, out.stderr
    assert "paused-vm" in out.stdout


def test_the_conformance_kit_passes_through_ssh(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    run = run_kit(sshd.uri(), tmp_path, mutating=True, check_timeout=10, env=sshd.env)
    assert run.returncode == 0, run.output[-4000:]
    assert run.count("passed") >= 100 and run.count("failed") == 0 and run.count("error") == 0
    assert run.count("skipped") == 0, run.skips  # the far test driver provides every operation


def test_a_wrong_key_is_permission_denied_with_ssh_words(ssh_env: Sshd) -> None:
    t0 = time.monotonic()
    with pytest.raises(virtkit.PermissionDenied) as e:
        virtkit.open(ssh_env.uri(key=ssh_env.wrong_key, control="0"), timeout=TIMEOUT)
    assert "Permission denied (publickey)" in str(e.value)
    assert time.monotonic() - t0 <= TIMEOUT + SLACK


def test_an_unknown_host_key_is_refused_unless_told_not_to_verify(
    ssh_env: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIRTKIT_SSH", ssh_env.ssh_unknown)
    (ssh_env.dir / "empty_known_hosts").write_text("")
    with pytest.raises(virtkit.PermissionDenied) as e:
        virtkit.open(ssh_env.uri(control="0"), timeout=TIMEOUT)
    assert "Host key verification failed" in str(e.value)
    with virtkit.open(ssh_env.uri(control="0", no_verify="1"), timeout=TIMEOUT) as conn:
        assert conn.list_domains() == [1, 2, 3]


def test_a_far_side_without_virtkit_names_the_command(ssh_env: Sshd) -> None:
    with pytest.raises(virtkit.NoDriver) as e:
        virtkit.open(ssh_env.uri(command="/opt/nowhere/virtkit"), timeout=TIMEOUT)
    assert "/opt/nowhere/virtkit" in str(e.value) and "?command=" in str(e.value)


def test_killing_ssh_mid_call(ssh_env: Sshd, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "peer"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE / "peer.py"} "$@"\n')
    script.chmod(0o755)
    uri = ssh_env.uri(command=str(script), control="0") + "&mode=slow"
    conn = virtkit.open(uri, timeout=30)
    pid = _pid(conn)
    threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    with pytest.raises(virtkit.ConnectionClosed):
        conn.list_domains()
    assert time.monotonic() - t0 < 5
    conn.close()
    assert not _alive(pid)
    # the far peer sees its channel close and ends (its sleep ends first: it was mid-call)
    assert _wait(lambda: not _pids_with(str(script)), 40)


def _far_serve(marker: str) -> int:
    """The far `virtkit serve`: the interpreter running the marker script (not ssh, not a shell)."""

    def find() -> list[int]:
        found = []
        for pid in _pids_with(marker):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[1] == marker.encode():
                found.append(pid)
        return found

    assert _wait(lambda: bool(find()), 5)
    (pid,) = find()
    return pid


def test_the_far_serve_killed_then_frozen(ssh_env: Sshd, tmp_path: pathlib.Path) -> None:
    marker = str(tmp_path / f"virtkit-far-{uuid.uuid4().hex[:8]}")
    os.symlink(VIRTKIT, marker)  # the far serve's command line carries the marker
    conn = virtkit.open(ssh_env.uri(command=marker), timeout=TIMEOUT)
    assert conn.list_domains() == [1, 2, 3]
    os.kill(_far_serve(marker), signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(virtkit.ConnectionClosed):
        conn.list_domains()
    assert time.monotonic() - t0 <= TIMEOUT + SLACK
    local = _pid(conn)
    conn.close()
    assert not _alive(local)

    conn = virtkit.open(ssh_env.uri(command=marker), timeout=TIMEOUT)
    far = _far_serve(marker)
    os.kill(far, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            conn.list_domains()
        assert time.monotonic() - t0 <= TIMEOUT + SLACK
        local = _pid(conn)
        conn.close()
        assert not _alive(local)
        os.kill(far, signal.SIGCONT)  # thawed, it finds its channel gone and ends
        assert _wait(lambda: not _alive(far), 10)
    finally:
        if _alive(far):
            os.kill(far, signal.SIGKILL)


def test_a_second_connection_reuses_the_first_ones_ssh(ssh_env: Sshd) -> None:
    with virtkit.open(ssh_env.uri(), timeout=TIMEOUT) as conn:
        conn.type()
    sockets = list((ssh_env.dir / "run" / f"virtkit-ssh-{os.getuid()}").iterdir())
    assert len(sockets) == 1
    check = subprocess.run(
        [ssh_env.ssh, "-O", "check", "-o", f"ControlPath={sockets[0]}", "127.0.0.1"], capture_output=True, timeout=10
    )
    assert check.returncode == 0, check.stderr  # the master outlives the connection: the next one skips the handshake
    with virtkit.open(ssh_env.uri(), timeout=TIMEOUT) as conn:
        assert conn.list_domains() == [1, 2, 3]


def test_events_and_explain_through_ssh(ssh_env: Sshd) -> None:
    with virtkit.open(ssh_env.uri(), timeout=TIMEOUT) as conn, conn.events() as stream:
        conn.lookup_by_name("web").suspend()
        ev = stream.get(TIMEOUT)
        assert ev is not None and ev.type is virtkit.DomainEventType.SUSPENDED and ev.domain.name == "web"
    out = subprocess.run([VIRTKIT, "-c", ssh_env.uri(), "explain"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    local, _, far = out.stdout.partition("far side:")
    assert "SUCCESS  remote priority 100" in local and "URI: test:///default" in far and "SUCCESS  test" in far


def test_fan_out_over_ssh_racing_for_one_master(ssh_env: Sshd) -> None:
    from virtkit import fleet

    for entry in (ssh_env.dir / "run").rglob("*"):  # no master yet: eight first connections race
        if entry.is_socket():
            subprocess.run([ssh_env.ssh, "-O", "exit", "-o", f"ControlPath={entry}", "x"], capture_output=True)
    results = fleet.run([ssh_env.uri()] * 8, lambda c: c.list_domains(), parallel=8, timeout=30)
    assert [r.value for r in results] == [[1, 2, 3]] * 8, [r.error for r in results]
    out = subprocess.run(
        [VIRTKIT, "-c", ssh_env.uri(), "-c", ssh_env.uri(path="/nosuch.json"), "--json", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows if "name" in r] == ["test", "web", "paused-vm"]
    (err,) = [r for r in rows if "error" in r]
    # the far test plugin's own error, raised at open: the URI is the one that was opened here
    assert err["error"]["driver"] == "test" and "/nosuch.json" in err["error"]["message"]
    assert err["error"]["uri"].startswith("test+ssh://root@127.0.0.1")


def test_a_far_path_with_quotes_and_spaces_crosses_the_far_shell(ssh_env: Sshd, tmp_path: pathlib.Path) -> None:
    """ssh hands the remote command to the far user's shell: each word arrives quoted, intact."""
    d = tmp_path / "it's a $(dir)"
    d.mkdir()
    host = d / "host; touch pwned.json"
    host.write_text(json.dumps({"hostname": "quoted-host", "domains": [{"name": "q1", "memory": 1024}]}))
    with virtkit.open(ssh_env.uri(path=urllib.parse.quote(str(host))), timeout=TIMEOUT) as conn:
        assert conn.hostname() == "quoted-host"
        assert [dom.name for dom in conn.domains(all=True)] == ["q1"]
    assert not (d / "pwned.json").exists() and not pathlib.Path("pwned.json").exists()


def test_a_key_pinned_to_a_read_only_serve(ssh_env: Sshd) -> None:
    """authorized_keys' command= decides what the far side serves, whatever the URI asks."""
    uri = ssh_env.uri(path="/elsewhere.json", key=str(ssh_env.dir / "forced"), control="0")
    with virtkit.open(uri, timeout=TIMEOUT) as conn:
        assert conn.explain().remote.uri == "test:///default"  # type: ignore[union-attr]
        with pytest.raises(virtkit.ReadOnlyError) as e:  # refused by the far side: this side is read-write
            conn.lookup_by_name("web").suspend()
        assert e.value.uri == "test:///default"
        assert conn.lookup_by_name("web").info().state is virtkit.DomainState.RUNNING
