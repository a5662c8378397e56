"""The lab's rigs beside the guests: guests doing I/O (the stats tests) and control of xenstored.

A pytest plugin of its own, registered by ``pytest_xenlab`` (``pytest_plugins``); its fixtures
are documented there.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_xenlab import (
    DEFAULT_XENSTORED,
    GUEST_CONSOLE_DIR,
    XENSTORED_CTL,
    XENSTORED_FLAVOURS,
    _require_dom0,
    sh,
    wait_for,
)

# --------------------------------------------------------------------------------------------
# guests doing I/O (the stats tests)

#: dom0's side of the I/O guests' network: a bridge the stats fixture makes (vif-bridge adds
#: each guest's vif to it), with an address the guests ping.
IO_BRIDGE = "xlabbr0"
IO_BRIDGE_ADDR = "10.99.0.1"


def wait_console(name: str, text: str, timeout: float = 90) -> None:
    """Wait until guest ``name``'s console log (xenconsoled's, any toolstack) shows ``text``."""
    log = GUEST_CONSOLE_DIR / f"guest-{name}.log"

    def shown() -> bool:
        try:
            return text in log.read_text(errors="replace")
        except FileNotFoundError:
            return False

    wait_for(shown, timeout=timeout, what=f"{text!r} on {name}'s console", interval=0.25)


def dev_fd_links() -> None:
    """/dev/stdin & co., which udev makes elsewhere and dom0's bare devtmpfs lacks: the block
    hotplug script's lock (locking.sh) stats /dev/stdin and spins until it exists, so libxl
    kills it after 10 s and the guest is not created."""
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        link = Path("/dev") / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(target)


class IoRig:
    """Disks and vifs for guests that do I/O: ``overrides(name)`` gives the xl config keys of a
    guest with a 64 MiB disk (a loop device over a sparse file) as xvda and a vif on
    ``IO_BRIDGE``, whose stage-1 init writes ``dd_mib`` MiB onto the disk (O_DIRECT, once; its
    console then says ``xenlab-guest: dd N MiB done``) and pings the bridge back to back. For
    ``libvirtd.create_guest`` pass ``edit=IoRig.libvirt_xml`` as well."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loops: list[str] = []
        self.count = 0

    def overrides(self, name: str, *, dd_mib: int = 8, ping: bool = True) -> dict[str, Any]:
        self.count += 1
        n = self.count
        image = self.tmp / f"{name}.disk"
        with image.open("wb") as f:
            f.truncate(64 << 20)
        loop = sh("losetup", "--find", "--show", str(image), timeout=30).stdout.strip()
        self.loops.append(loop)
        extra = f"console=hvc0 xenlab.role=guest quiet mitigations=off xenlab.io=dd:{dd_mib}"
        if ping:
            extra += f" xenlab.io=ping:10.99.0.{10 + n}/24:{IO_BRIDGE_ADDR}"
        return {
            "disk": [f"phy:{loop},xvda,w"],
            "vif": [f"mac=00:16:3e:5a:00:{n:02x},bridge={IO_BRIDGE}"],
            "extra": extra,
        }

    @staticmethod
    def libvirt_xml(xml: str) -> str:
        """``domxml-from-native`` makes a ``phy:`` disk a file for qemu's qdisk (no device model
        here): make it the block device it is, for blkback, as xl does."""
        return re.sub(
            r"<disk type='file' device='disk'>\s*<driver name='qemu' type='raw'/>\s*<source file='([^']+)'/>",
            r"<disk type='block' device='disk'><driver name='phy'/><source dev='\1'/>",
            xml,
        )

    def cleanup(self) -> None:
        # a loop device still held by a backend is only marked to go away when released
        for loop in self.loops:
            sh("losetup", "-d", loop, timeout=30, check=False)


@pytest.fixture
def xen_io_rig(tmp_path: Path) -> Iterator[IoRig]:
    """The bridge in dom0 and loop-device disks for guests doing I/O (see IoRig); request it
    before the fixture that makes the guests, so the guests go first at teardown."""
    _require_dom0()
    sh("modprobe", "-a", "loop", "bridge", timeout=60)  # dom0-init loads neither
    dev_fd_links()
    ip = ("ip",) if shutil.which("ip") else ("busybox", "ip")
    sh(*ip, "link", "add", IO_BRIDGE, "type", "bridge", timeout=30)
    rig = IoRig(tmp_path)
    try:
        sh(*ip, "addr", "add", f"{IO_BRIDGE_ADDR}/24", "dev", IO_BRIDGE, timeout=30)
        sh(*ip, "link", "set", IO_BRIDGE, "up", timeout=30)
        yield rig
    finally:
        rig.cleanup()
        sh(*ip, "link", "del", IO_BRIDGE, timeout=30, check=False)


# --------------------------------------------------------------------------------------------
# xenstored control


class XenstoredControl:
    """Start/stop/kill the lab's xenstored (oxenstored or the C xenstored)."""

    def __init__(self) -> None:
        self.original = self.flavour or DEFAULT_XENSTORED

    def _ctl(self, *args: str, timeout: float = 60) -> str:
        return sh(XENSTORED_CTL, *args, timeout=timeout).stdout

    def status(self) -> tuple[str, int] | None:
        out = self._ctl("status").split()
        if not out or out[0] == "stopped":
            return None
        return out[0], int(out[1])

    @property
    def flavour(self) -> str | None:
        st = self.status()
        return st[0] if st else None

    @property
    def pid(self) -> int | None:
        st = self.status()
        return st[1] if st else None

    def start(self, flavour: str | None = None) -> None:
        """Start (default: the last flavour), wait until it answers, reintroduce dom0."""
        if flavour is not None and flavour not in XENSTORED_FLAVOURS:
            raise ValueError(f"unknown xenstored {flavour!r}; one of {XENSTORED_FLAVOURS}")
        self._ctl("start", *([flavour] if flavour else []))

    def stop(self) -> None:
        self._ctl("stop")

    def kill(self) -> None:
        """SIGKILL the daemon now, as a crash would; it stays down until start()."""
        self._ctl("kill")

    def restart(self, flavour: str | None = None) -> None:
        self._ctl("restart", *([flavour] if flavour else []))

    def read(self, path: str, timeout: float = 10) -> str:
        return sh("xenstore-read", path, timeout=timeout).stdout.strip()


@pytest.fixture
def xenstored(request: pytest.FixtureRequest) -> Iterator[XenstoredControl]:
    """xenstored control; ``indirect`` parametrization picks the daemon for the test."""
    _require_dom0()
    ctl = XenstoredControl()
    wanted = getattr(request, "param", None)
    if wanted is not None and wanted != ctl.flavour:
        ctl.restart(wanted)
    try:
        yield ctl
    finally:
        if ctl.flavour != DEFAULT_XENSTORED:
            if ctl.status() is not None:
                ctl.stop()
            ctl.start(DEFAULT_XENSTORED)
