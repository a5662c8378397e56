"""Host probing, as libvirt's capabilities: the QEMU binary, its version, the accelerators.

Everything here asks the host and nothing else: no state directory, no domain.
"""

from __future__ import annotations

import os
import pathlib
import platform
import shutil
import subprocess

from virtkit import DriverError, InvalidArgument, NodeInfo, ProtocolError, Version
from virtkit import TimeoutError as VirtTimeout

__all__ = ["Host", "any_qemu", "find_qemu", "kvm_usable", "node_info", "qemu_version"]


def find_qemu(arch: str | None = None) -> str | None:
    """The qemu-system binary for ``arch`` (default: the host's), else None."""
    arch = arch or {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())
    return shutil.which(f"qemu-system-{arch}")


def any_qemu() -> list[str]:
    """Every qemu-system-* on PATH (the plugin declines when there is none)."""
    found: list[str] = []
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        try:
            found += [str(p) for p in pathlib.Path(d).glob("qemu-system-*") if os.access(p, os.X_OK)]
        except OSError:
            continue
    return found


def kvm_usable(qemu: str, timeout: float = 10.0) -> bool:
    """Probe KVM for real (an openable /dev/kvm is not enough), bounded by ``timeout``."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    cmds = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'
    argv = [qemu, "-accel", "kvm", "-machine", "none", "-nodefaults", "-display", "none", "-qmp", "stdio"]
    try:
        proc = subprocess.run(argv, input=cmds, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def qemu_version(qemu: str, timeout: float) -> Version:
    """``qemu-system-* --version``, read."""
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=timeout, check=False).stdout
    except subprocess.TimeoutExpired:
        raise VirtTimeout(f"{qemu} --version did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise DriverError(f"cannot run {qemu} --version: {exc}") from None
    words = out.split()
    try:
        return Version.parse(words[words.index("version") + 1])
    except (ValueError, IndexError):
        raise ProtocolError(f"cannot read the version from {qemu} --version: {out!r}") from None


def node_info() -> NodeInfo:
    """The host's memory (KiB), CPUs and clock, from /proc."""
    mem = free = 0
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "MemTotal":
            mem = int(value.split()[0])
        elif key == "MemAvailable":
            free = int(value.split()[0])
    mhz = 0
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz = int(float(line.split(":")[1]))
                break
    except (OSError, ValueError):
        pass
    cpus = os.cpu_count() or 1
    return NodeInfo(platform.machine(), mem, cpus, mhz, 1, 1, cpus, 1, free)


class Host:
    """One connection's view of the host: the binary it runs, what it found out (probed once)."""

    __slots__ = ("_kvm", "_version", "qemu", "timeout")

    def __init__(self, qemu: str, timeout: float) -> None:
        self.qemu = qemu
        self.timeout = timeout
        self._kvm: bool | None = None
        self._version: Version | None = None

    def version(self) -> Version:
        if self._version is None:
            self._version = qemu_version(self.qemu, self.timeout)
        return self._version

    def accel(self, want: object) -> str:
        """The accelerator for a config's ``extra['accel']`` ('auto', 'tcg' or 'kvm')."""
        if want == "tcg":
            return "tcg"
        if self._kvm is None:
            self._kvm = kvm_usable(self.qemu, min(self.timeout, 10.0))
        if want == "kvm" and not self._kvm:
            raise InvalidArgument("extra['accel'] is 'kvm' but KVM does not work on this host")
        return "kvm" if self._kvm else "tcg"
