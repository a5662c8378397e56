"""``xen+ssh://`` from the host into the lab's dom0: real Xen 4.17, real OpenSSH on both ends.

``lab/xenlab test`` boots dom0 with sshd on port 22 forwarded to ``127.0.0.1:$XENLAB_SSH_PORT``,
root's key for this run in ``$XENLAB_SSH_KEY`` and dom0's host key (made at boot) published in
``$XENLAB_IO/ssh_host_key.pub``. These tests trust that key through a known_hosts file of their
own (``$VIRTKIT_SSH``: ssh with a config of ours, as a user's ~/.ssh/config would), so the host
key is really verified. What virtkit says through the link is checked against ``xl`` run in
dom0 over a separate ssh session; every guest is made with ``xl create`` of the lab's tiny PV
guest and destroyed by name afterwards, whatever happened.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple, TypeVar

import pytest
from pytest_xenlab import TIMEOUT_SCALE, guest_config, is_paused, is_running

import virtkit
from virtkit import DomainState, PermissionDenied

pytestmark = pytest.mark.lab
T = TypeVar("T")
#: Seconds for one command through the link (python and virtkit start in dom0 under TCG).
STEP = 90 * TIMEOUT_SCALE
_names = itertools.count(1)


class XlRow(NamedTuple):
    name: str
    domid: int
    memory: int  # MiB
    state: str
    uuid: str


class Dom0(NamedTuple):
    port: int
    key: str
    dir: pathlib.Path
    env: dict[str, str]  # VIRTKIT_SSH (trusting dom0's host key) and a private XDG_RUNTIME_DIR
    ssh: str  # the wrapper: our config, dom0's host key, the run's key
    ssh_nokey: str  # the same without an identity: ?keyfile= must bring it
    ssh_unknown: str  # an empty known_hosts

    @property
    def uri(self) -> str:
        return f"xen+ssh://root@127.0.0.1:{self.port}/"

    def run(self, command: str, *, stdin: str | None = None, check: bool = True) -> str:
        """``command`` in dom0 as root, over its own ssh session."""
        argv = [self.ssh, "-p", str(self.port), "root@127.0.0.1", "--", command]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=STEP, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ssh into dom0 timed out after {STEP}s: {command}", pytrace=False)
        if check and proc.returncode != 0:
            pytest.fail(f"in dom0: {command} exited {proc.returncode}: {proc.stderr.strip()}", pytrace=False)
        return proc.stdout

    def virtkit(self, *args: str, uri: str | None = None) -> str:
        """The ``virtkit`` CLI on the host through the link; its stdout (fails on an error)."""
        exe = shutil.which("virtkit")
        if exe is None:
            pytest.fail("no virtkit on PATH (lab/xenlab puts the project's packages there)", pytrace=False)
        argv = [exe, "--timeout", str(STEP), "-c", uri or self.uri, *args]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=STEP + 30, env={**os.environ, **self.env}, check=False
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"virtkit did not end within {STEP + 30}s: {argv}", pytrace=False)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(argv[1:])} exited {proc.returncode}: {proc.stderr.strip()}", pytrace=False)
        assert "Traceback" not in proc.stderr
        return proc.stdout

    def xl_list(self) -> dict[str, XlRow]:
        rows: dict[str, XlRow] = {}
        for line in self.run("xl list -v").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 7:
                name, domid, mem, _vcpus, state, _time, uuid = parts[:7]
                rows[name] = XlRow(name, int(domid), int(mem), state, uuid)
        return rows


def _wait(fn: Callable[[], T | None], what: str | Callable[[], str], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout * TIMEOUT_SCALE:.0f}s waiting for {said}", pytrace=False)
        time.sleep(0.5)


def _wrapper(d: pathlib.Path, name: str, known_hosts: pathlib.Path, key: str | None) -> str:
    lines = [
        f"UserKnownHostsFile {known_hosts}",
        "GlobalKnownHostsFile /dev/null",
        "StrictHostKeyChecking yes",
        "IdentitiesOnly yes",
        "IdentityAgent none",
        f"ConnectTimeout {int(30 * TIMEOUT_SCALE)}",
        *([f"IdentityFile {key}"] if key else []),
    ]
    (d / f"{name}.config").write_text("\n".join(lines) + "\n")
    (d / name).write_text(f'#!/bin/sh\nexec ssh -F {d}/{name}.config "$@"\n')
    (d / name).chmod(0o755)
    return str(d / name)


@pytest.fixture(scope="session")
def dom0() -> Iterator[Dom0]:
    try:
        port, key, io = int(os.environ["XENLAB_SSH_PORT"]), os.environ["XENLAB_SSH_KEY"], os.environ["XENLAB_IO"]
    except (KeyError, ValueError):
        pytest.fail("XENLAB_SSH_PORT, XENLAB_SSH_KEY and XENLAB_IO come from lab/xenlab test", pytrace=False)
    error = pathlib.Path(io, "sshd-error")
    if error.is_file():
        pytest.fail(f"dom0's sshd did not come up: {error.read_text().strip()}", pytrace=False)
    hostkey = pathlib.Path(io, "ssh_host_key.pub")
    if not hostkey.is_file():
        pytest.fail(f"dom0 published no sshd host key ({hostkey} missing) and no sshd-error", pytrace=False)
    if shutil.which("ssh") is None:
        pytest.fail("no ssh client on this host (Debian: openssh-client)", pytrace=False)
    d = pathlib.Path(tempfile.mkdtemp(prefix="vkl-"))  # short: ssh's control sockets live under it
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {' '.join(hostkey.read_text().split()[:2])}\n")
    (d / "empty_known_hosts").write_text("")
    (d / "run").mkdir(mode=0o700)
    ssh = _wrapper(d, "ssh", known, key)
    found = Dom0(
        port=port,
        key=key,
        dir=d,
        env={"VIRTKIT_SSH": ssh, "XDG_RUNTIME_DIR": str(d / "run")},
        ssh=ssh,
        ssh_nokey=_wrapper(d, "ssh-nokey", known, None),
        ssh_unknown=_wrapper(d, "ssh-unknown", d / "empty_known_hosts", key),
    )

    said: list[str] = []

    def answers() -> bool:
        argv = [ssh, "-p", str(port), "root@127.0.0.1", "--", "true"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=STEP, check=False)
        except subprocess.TimeoutExpired:
            said[:] = ["(ssh timed out)"]
            return False
        said[:] = [proc.stderr.strip()]
        return proc.returncode == 0

    try:
        _wait(answers, lambda: f"ssh root@127.0.0.1:{port} into dom0 (ssh said: {said[0] if said else ''})", 90)
        yield found
    finally:
        # The masters virtkit's ssh left for connection reuse: ended now, not at their timeout.
        for sock in d.glob("run*/virtkit-ssh-*/*"):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "dom0"], capture_output=True, timeout=30, check=False
            )
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def guest(dom0: Dom0) -> Iterator[str]:
    """A running PV guest in dom0 (``xl create`` over ssh), destroyed afterwards by name."""
    name = f"vkssh-{os.getpid()}-{next(_names)}"
    try:
        dom0.run(f"cat > /tmp/{name}.cfg && xl create /tmp/{name}.cfg", stdin=guest_config(name))
        _wait(lambda: dom0.xl_list().get(name), f"{name} in xl list")
        yield name
    finally:
        dom0.run(f"xl destroy {name}; rm -f /tmp/{name}.cfg", check=False)
        _wait(lambda: name not in dom0.xl_list(), f"{name} to be gone from xl list")


def _table(text: str) -> dict[str, tuple[int, str]]:
    """``virtkit list``'s table: name -> (id, state label)."""
    rows: dict[str, tuple[int, str]] = {}
    lines = text.splitlines()
    for line in lines[lines.index(next(ln for ln in lines if ln.startswith("---"))) + 1 :]:
        if line.strip():
            domid, name, state = line.split(None, 2)
            rows[name] = (int(domid), state.strip())
    return rows


def _same_run_state(label: str, xl_state: str) -> bool:
    # A PV guest goes between running and idle (xl's r and b) on its own between two reads.
    if label == "paused":
        return is_paused(xl_state)
    return label in ("running", "idle") and is_running(xl_state)


def test_list_shows_what_xl_list_shows(dom0: Dom0, guest: str) -> None:
    listed = _table(dom0.virtkit("list"))
    xl = dom0.xl_list()
    assert {n: r.domid for n, r in xl.items()} == {n: i for n, (i, _) in listed.items()}
    assert guest in listed and "Domain-0" in listed
    for name, (_, label) in listed.items():
        assert _same_run_state(label, xl[name].state), (name, label, xl[name].state)

    as_json = {d["name"]: d for d in json.loads(dom0.virtkit("--json", "list"))}
    assert {n: (d["id"], d["uuid"]) for n, d in as_json.items()} == {n: (r.domid, r.uuid) for n, r in xl.items()}
    info = json.loads(dom0.virtkit("--json", "dominfo", guest))
    assert info["memory_kib"] // 1024 == dom0.xl_list()[guest].memory == 128


def test_suspend_through_the_link_is_seen_by_xl(dom0: Dom0, guest: str) -> None:
    dom0.virtkit("suspend", guest)
    assert is_paused(dom0.xl_list()[guest].state)
    assert dom0.virtkit("domstate", guest).strip() == "paused"
    dom0.virtkit("resume", guest)
    assert is_running(dom0.xl_list()[guest].state)
    dom0.virtkit("destroy", guest)
    assert guest not in dom0.xl_list()


def test_python_api_over_ssh(dom0: Dom0, guest: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The key comes from the URI (libvirt's ?keyfile=), not from the ssh config; a runtime
    # dir of its own, so no master connection the CLI tests left is reused.
    monkeypatch.setenv("VIRTKIT_SSH", dom0.ssh_nokey)
    (dom0.dir / "run-api").mkdir(mode=0o700, exist_ok=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(dom0.dir / "run-api"))
    with virtkit.open(f"{dom0.uri}?keyfile={dom0.key}", timeout=STEP) as conn:
        xl = dom0.xl_list()
        assert {d.name: d.id for d in conn.domains()} == {n: r.domid for n, r in xl.items()}
        dom = conn.lookup_by_name(guest)
        assert (dom.id, str(dom.uuid)) == (xl[guest].domid, xl[guest].uuid)
        assert dom.info().memory // 1024 == xl[guest].memory
        dom.suspend()
        assert is_paused(dom0.xl_list()[guest].state)
        assert dom.info().state is DomainState.PAUSED
        dom.resume()
        assert is_running(dom0.xl_list()[guest].state)
        far = conn.explain().render().split("far side:", 1)[1]
        assert "URI: xen:///" in far and "xen_" in far  # dom0's own composition of its plugins


def test_an_unknown_host_key_is_refused(dom0: Dom0, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTKIT_SSH", dom0.ssh_unknown)
    monkeypatch.setenv("XDG_RUNTIME_DIR", dom0.env["XDG_RUNTIME_DIR"])
    with pytest.raises(PermissionDenied, match="host key"):
        virtkit.open(f"{dom0.uri}?control=0", timeout=STEP)
