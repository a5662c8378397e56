"""pytest plugin for virtkit's lab tests: fixtures that drive the real Xen inside dom0.

Loaded by ``lab/xenlab test`` with ``-p pytest_xenlab`` (lab/ is on PYTHONPATH in dom0), so
tests under ``tests/lab/`` and ``plugins/*/tests/lab/`` all get:

``xen_guest``            a running PV guest (128 MB, 1 vcpu, unique name) made by ``xl create``;
                         always destroyed afterwards.
``xen_guest_factory``    ``xen_guest_factory(**overrides)`` for several guests per test.
``libvirtd``             libvirtd (the reference implementation) started for the test and
                         stopped afterwards; ``libvirtd.create_guest()`` creates a guest through
                         ``virsh create`` from ``virsh domxml-from-native xen-xl``.
``xen_io_rig``           a dom0 bridge and loop-device disks: ``xen_io_rig.overrides(name)``
                         are the xl keys of a guest that writes to its disk and pings the bridge
                         (pass them to ``xen_guest_factory`` or ``libvirtd.create_guest``).
``xenstored``            control of xenstored: ``kill()``, ``stop()``, ``start(flavour)``,
                         ``restart(flavour)``; parametrize with
                         ``@pytest.mark.parametrize("xenstored", ["oxenstored", "xenstored"],
                         indirect=True)`` to run a test under each daemon. Teardown leaves the
                         default (oxenstored) running again.

Every wait has a timeout and fails the test with a message saying what it waited for.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

GUEST_KERNEL = "/usr/lib/xenlab/vmlinux"  # plain ELF: xl create is 2x faster than bzImage
GUEST_RAMDISK = "/usr/lib/xenlab/initrd.cpio.gz"
GUEST_CONSOLE_DIR = Path("/var/log/xen/console")
XENSTORED_CTL = "/usr/local/sbin/xenlab-xenstored"
DEFAULT_XENSTORED = "oxenstored"
XENSTORED_FLAVOURS = ("oxenstored", "xenstored")
LIBVIRT_URI = "xen:///system"
IN_LAB = os.environ.get("VIRTKIT_IN_LAB") == "1"
#: Multiplies every timeout below (set VIRTKIT_LAB_TIMEOUT_SCALE on the host for slow machines).
TIMEOUT_SCALE = max(1.0, float(os.environ.get("VIRTKIT_LAB_TIMEOUT_SCALE", "1") or 1))

_names = itertools.count(1)

#: The I/O rig and xenstored control live in their own plugin module.
pytest_plugins = ["pytest_xenlab_rigs"]


# --------------------------------------------------------------------------------------------
# helpers


def sh(
    *argv: str, timeout: float = 60, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout; on failure fail the test with its output."""
    timeout *= TIMEOUT_SCALE
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out after {timeout}s: {' '.join(argv)}", pytrace=False)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited {proc.returncode}\nstdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}",
            pytrace=False,
        )
    return proc


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)
        time.sleep(interval)


@dataclass(frozen=True)
class XlDomain:
    name: str
    domid: int
    memory: int
    vcpus: int
    state: str
    uuid: str


def xl_list() -> dict[str, XlDomain]:
    """``xl list -v`` parsed: name -> XlDomain."""
    out = sh("xl", "list", "-v", timeout=30).stdout
    result: dict[str, XlDomain] = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 7:
            continue
        name, domid, mem, vcpus, state, _time, uuid = parts[:7]
        result[name] = XlDomain(name, int(domid), int(mem), int(vcpus), state, uuid)
    return result


def xl_state(name: str) -> str | None:
    """The xl state letters (e.g. ``-b----``, ``--p---``) or None when the domain is gone."""
    dom = xl_list().get(name)
    return dom.state if dom else None


def is_running(state: str | None) -> bool:
    # xl's flags: r(unning) b(locked) p(aused) s(hutdown) c(rashed) d(ying); none at all is a
    # runnable domain waiting for a cpu (seen under load right after an unpause): running too
    return state is not None and not any(flag in state for flag in "pscd")


def is_paused(state: str | None) -> bool:
    return state is not None and "p" in state


def _require_dom0() -> None:
    if not IN_LAB:
        pytest.skip("needs the xenlab dom0 (run through lab/xenlab test)")


# --------------------------------------------------------------------------------------------
# guests


@dataclass
class XenGuest:
    """A PV guest created with ``xl create``."""

    name: str
    domid: int
    uuid: str
    config: Path

    @property
    def console_log(self) -> Path:
        return GUEST_CONSOLE_DIR / f"guest-{self.name}.log"

    def state(self) -> str | None:
        return xl_state(self.name)

    def wait_state(self, predicate: Callable[[str | None], bool], what: str, timeout: float = 30) -> str | None:
        result: list[str | None] = []

        def check() -> bool:
            st = self.state()
            result[:] = [st]
            return predicate(st)

        wait_for(check, timeout=timeout, what=f"guest {self.name} {what}")
        return result[0]

    def wait_userspace(self, timeout: float = 60) -> None:
        """Wait until the guest's init announced itself on its console."""

        def up() -> bool:
            try:
                return "xenlab-guest: up" in self.console_log.read_text(errors="replace")
            except FileNotFoundError:
                return False

        wait_for(up, timeout=timeout, what=f"guest {self.name} userspace", interval=0.25)

    def pause(self) -> None:
        sh("xl", "pause", self.name)

    def unpause(self) -> None:
        sh("xl", "unpause", self.name)

    def shutdown(self, timeout: float = 60) -> None:
        sh("xl", "shutdown", "-w", self.name, timeout=timeout)

    def destroy(self) -> None:
        if self.state() is not None:
            sh("xl", "destroy", self.name, timeout=60, check=False)
        self.wait_state(lambda s: s is None, "to be gone", timeout=30)


def guest_config(name: str, **overrides: Any) -> str:
    """An xl config for the lab's tiny PV guest; keyword overrides replace or add keys."""
    cfg: dict[str, Any] = {
        "name": name,
        "type": "pv",
        "kernel": GUEST_KERNEL,
        "ramdisk": GUEST_RAMDISK,
        "extra": "console=hvc0 xenlab.role=guest quiet mitigations=off",
        "memory": 128,
        "vcpus": 1,
        "on_poweroff": "destroy",
        "on_reboot": "destroy",
        "on_crash": "destroy",
    }
    cfg.update(overrides)
    lines = []
    for key, value in cfg.items():
        rendered = f'"{value}"' if isinstance(value, str) else str(value)
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


def unique_name(prefix: str = "xlab") -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


class GuestFactory:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.guests: list[XenGuest] = []

    def __call__(self, *, name: str | None = None, timeout: float = 90, **overrides: Any) -> XenGuest:
        name = name or unique_name()
        cfg = self.tmp / f"{name}.cfg"
        cfg.write_text(guest_config(name, **overrides))
        placeholder = XenGuest(name=name, domid=-1, uuid="", config=cfg)
        self.guests.append(placeholder)  # destroyed in teardown even if creation half-failed
        sh("xl", "create", str(cfg), timeout=timeout)
        dom = wait_for(lambda: xl_list().get(name), timeout=30, what=f"guest {name} in xl list")
        placeholder.domid = dom.domid
        placeholder.uuid = dom.uuid
        return placeholder

    def cleanup(self) -> list[str]:
        errors = []
        for guest in reversed(self.guests):
            try:
                guest.destroy()
            except BaseException as exc:  # noqa: BLE001 - keep destroying the others
                errors.append(f"{guest.name}: {exc}")
        return errors


@pytest.fixture
def xen_guest_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GuestFactory]:
    _require_dom0()
    if "xenstored" in request.fixturenames:
        request.getfixturevalue("xenstored")  # switch daemons before any guest exists
    factory = GuestFactory(tmp_path)
    yield factory
    errors = factory.cleanup()
    if errors:
        pytest.fail("could not destroy guests: " + "; ".join(errors), pytrace=False)


@pytest.fixture
def xen_guest(xen_guest_factory: GuestFactory) -> XenGuest:
    """A running PV guest, destroyed after the test."""
    return xen_guest_factory()


# --------------------------------------------------------------------------------------------
# libvirt (the reference implementation)


@dataclass
class LibvirtGuest:
    name: str
    domid: int
    uuid: str
    xml: str


@dataclass
class Libvirtd:
    """A libvirtd started for one test; guests it must see are created through it."""

    pid: int
    tmp: Path
    uri: str = LIBVIRT_URI
    guests: list[str] = field(default_factory=list)

    def virsh(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        return sh("virsh", "-c", self.uri, *args, timeout=timeout, check=check).stdout

    def domxml_from_native(self, xl_config: str) -> str:
        cfg = self.tmp / f"native-{next(_names)}.cfg"
        cfg.write_text(xl_config)
        return self.virsh("domxml-from-native", "xen-xl", str(cfg))

    def create_guest(
        self, *, name: str | None = None, edit: Callable[[str], str] | None = None, **overrides: Any
    ) -> LibvirtGuest:
        """``virsh create`` of the lab guest with xl ``overrides``; ``edit`` may change the XML."""
        name = name or unique_name("vlab")
        xml = self.domxml_from_native(guest_config(name, **overrides))
        if edit is not None:
            xml = edit(xml)
        path = self.tmp / f"{name}.xml"
        path.write_text(xml)
        self.guests.append(name)
        self.virsh("create", str(path), timeout=120)
        domid = int(self.virsh("domid", name).strip())
        uuid = self.virsh("domuuid", name).strip()
        return LibvirtGuest(name=name, domid=domid, uuid=uuid, xml=xml)

    def list_names(self) -> list[str]:
        return [n for n in self.virsh("list", "--name").split() if n]

    def stop(self, timeout: float = 20) -> None:
        for name in self.guests:
            sh("virsh", "-c", self.uri, "destroy", name, timeout=60, check=False)
            if xl_state(name) is not None:
                sh("xl", "destroy", name, timeout=60, check=False)
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not _wait_pid_gone(self.pid, timeout):
            os.kill(self.pid, signal.SIGKILL)
            _wait_pid_gone(self.pid, 10)


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def libvirtd(tmp_path: Path) -> Iterator[Libvirtd]:
    """libvirtd (monolithic, libxl driver) running for this test."""
    _require_dom0()
    for d in ("/run/libvirt", "/var/log/libvirt", "/var/lib/libvirt", "/var/cache/libvirt"):
        Path(d).mkdir(parents=True, exist_ok=True)
    pidfile = Path("/run/libvirtd.pid")
    pidfile.unlink(missing_ok=True)
    log = Path("/var/log/libvirt/libvirtd-xenlab.log")
    env = {**os.environ, "LIBVIRT_LOG_OUTPUTS": f"3:file:{log}"}
    proc = subprocess.run(
        ["libvirtd", "--daemon", "--pid-file", str(pidfile)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"libvirtd failed to start: {proc.stderr.strip()}", pytrace=False)
    pid = int(
        wait_for(lambda: pidfile.is_file() and pidfile.read_text().strip(), timeout=30, what="libvirtd's pid file")
    )
    daemon = Libvirtd(pid=pid, tmp=tmp_path)

    def answers() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            pytest.fail(f"libvirtd exited during start-up; log tail:\n{tail}", pytrace=False)
        r = subprocess.run(["virsh", "-c", LIBVIRT_URI, "version"], capture_output=True, timeout=15, check=False)
        return r.returncode == 0

    try:
        wait_for(answers, timeout=60, what=f"libvirtd to answer on {LIBVIRT_URI}", interval=0.2)
        yield daemon
    finally:
        daemon.stop()


# --------------------------------------------------------------------------------------------
# hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs the real Xen of lab/xenlab (runs in dom0)")


_LAB_PATH = re.compile(r"(^|/)tests/lab/")


#: Fixtures that restart xenstored (this plugin's ``xenstored``, the xenstore lab's ``daemon``).
_RESTARTS_XENSTORED = frozenset({"xenstored", "daemon"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything collected from a lab directory is a lab test, marked or not.
    for item in items:
        if _LAB_PATH.search(item.nodeid) and item.get_closest_marker("lab") is None:
            item.add_marker(pytest.mark.lab)
    # Tests that restart xenstored run last (stable: their own order kept). A new xenstored has
    # none of the watches dom0's kernel backends (blkback, netback) set at boot, so until the next
    # boot a guest with a disk or a vif cannot be created: libxl waits for a backend that never
    # answers ("failed to create new domain"). Guests without devices are not affected.
    items[:] = sorted(items, key=lambda item: not _RESTARTS_XENSTORED.isdisjoint(getattr(item, "fixturenames", ())))


def pytest_report_header() -> list[str]:
    if not IN_LAB:
        return ["xenlab: not in dom0 (VIRTKIT_IN_LAB unset)"]
    try:
        xen = subprocess.run(
            ["xl", "info", "xen_version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout.strip()
    except subprocess.TimeoutExpired:
        xen = "?"
    return [f"xenlab: Xen {xen}, dom0 kernel {os.uname().release}"]
