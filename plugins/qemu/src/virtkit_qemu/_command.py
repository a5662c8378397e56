"""DomainConfig -> QEMU's command line, as libvirt's qemu_command.c: checks and one pure function.

Nothing here starts, probes or reads anything but the config (``check_config`` also checks that
the kernel, initrd and disk files exist): the accelerator is decided by the caller (``_host``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import uuid as _uuid
from collections.abc import Mapping

from virtkit import DomainConfig, InvalidArgument, check_domain_config

from ._relay import MONITOR
from ._state import PIDFILE, QMP, Defined

__all__ = ["BALLOON_POLL", "build_argv", "check_config", "check_domain"]

#: Seconds between two balloon statistics reports of the guest (libvirt's memballoon period).
BALLOON_POLL = 5

_FORMAT = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # qcow2, raw, vmdk, ...: never options


def _arg(value: object, what: str) -> str:
    """A value that goes onto QEMU's command line: a str without NUL (exec would refuse it)."""
    if not isinstance(value, str) or "\0" in value:
        raise InvalidArgument(f"{what} must be a string without NUL, got {str(value)[:60]!r}")
    return value


def _check_qemu_values(config: DomainConfig) -> None:
    for what in ("kernel", "initrd", "cmdline"):
        value = getattr(config, what)
        if value is not None:
            _arg(value, what)
    for dev in config.devices:
        if not isinstance(dev, Mapping):
            raise InvalidArgument(f"a device must be a mapping, got {str(dev)[:60]!r}")
        if dev.get("type") == "disk":
            _arg(dev.get("path"), "a disk's 'path'")
            if not _FORMAT.fullmatch(str(_arg(dev.get("format", "raw"), "a disk's 'format'"))):
                raise InvalidArgument(f"a disk's 'format' must be a QEMU format name, got {dev.get('format')!r}")
    if not isinstance(config.extra, Mapping):
        raise InvalidArgument("extra must be a mapping")
    _arg(config.extra.get("machine", "pc"), "extra['machine']")
    args = config.extra.get("qemu_args", ())
    if not isinstance(args, list | tuple):
        raise InvalidArgument(f"extra['qemu_args'] must be a list of strings, got {type(args).__name__}")
    for a in args:
        _arg(a, "each of extra['qemu_args']")


def check_config(config: object) -> DomainConfig:
    """The core's rules, then QEMU's; returns the config completed (uuid, maxima, os_type)."""
    return check_domain(config).config


def check_domain(config: object) -> Defined:
    """``check_config``, as the record of a domain to define or start."""
    config = check_domain_config(config)  # the core's rules: name, memory, vcpus
    _check_qemu_values(config)
    if config.memory < 1024:
        raise InvalidArgument(f"memory {config.memory} KiB: QEMU needs at least 1 MiB")
    max_mem = config.max_memory or config.memory
    if max_mem < config.memory:
        raise InvalidArgument(f"memory {config.memory} KiB is above max_memory {max_mem} KiB")
    max_vcpus = config.max_vcpus or config.vcpus
    if max_vcpus < config.vcpus:
        raise InvalidArgument(f"vcpus {config.vcpus} is above max_vcpus {max_vcpus}")
    disks = [d for d in config.devices if d.get("type") == "disk"]
    if not config.kernel and not disks:
        raise InvalidArgument("a QEMU domain needs a kernel or a disk device ({'type': 'disk', 'path': ...})")
    for path in [config.kernel, config.initrd, *(d.get("path") for d in disks)]:
        if path is not None and not os.path.isfile(str(path)):
            raise InvalidArgument(f"no such file: {path}")
    accel = config.extra.get("accel", "auto")
    if accel not in ("auto", "tcg", "kvm"):
        raise InvalidArgument(f"extra['accel'] must be 'auto', 'tcg' or 'kvm', got {accel!r}")
    uuid = config.uuid or _uuid.uuid4()
    cfg = dataclasses.replace(config, uuid=uuid, max_memory=max_mem, max_vcpus=max_vcpus, os_type="hvm")
    return Defined(cfg, uuid)


def build_argv(cfg: DomainConfig, rundir: pathlib.Path, *, qemu: str, accel: str) -> list[str]:
    """The command line of a daemonized QEMU for ``cfg`` (checked) running in ``rundir``."""
    mib = -(-(cfg.max_memory or cfg.memory) // 1024)
    argv = [
        qemu,
        "-name", cfg.name,
        "-uuid", str(cfg.uuid),
        "-machine", str(cfg.extra.get("machine", "pc")),
        "-accel", accel,
        "-m", f"{mib}M",
        "-smp", f"{cfg.vcpus},maxcpus={cfg.max_vcpus or cfg.vcpus}",
        "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
        "-no-shutdown",
        "-serial", f"file:{rundir / 'console.log'}",
        "-qmp", f"unix:{rundir / QMP},server=on,wait=off",
        "-qmp", f"unix:{rundir / MONITOR},server=on,wait=off",
        "-pidfile", str(rundir / PIDFILE),
        "-device", f"virtio-balloon-pci,id=balloon0,guest-stats-polling-interval={BALLOON_POLL}",
        "-daemonize",
    ]  # fmt: skip
    if cfg.on_reboot == "destroy":
        argv.append("-no-reboot")
    if cfg.kernel:
        argv += ["-kernel", cfg.kernel]
        if cfg.initrd:
            argv += ["-initrd", cfg.initrd]
        if cfg.cmdline:
            argv += ["-append", cfg.cmdline]
    for i, dev in enumerate(d for d in cfg.devices if d.get("type") == "disk"):
        fmt = dev.get("format", "raw")
        ro = ",readonly=on" if dev.get("readonly") else ""
        path = str(dev["path"]).replace(",", ",,")  # QEMU's escape: a comma in a value is doubled
        argv += ["-drive", f"file={path},format={fmt},if=virtio,index={i}{ro}"]
    argv += [str(a) for a in cfg.extra.get("qemu_args", ())]
    return argv
