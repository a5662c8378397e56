"""xend's ``(domain ...)`` record as typed data, read the way libvirt's xen_sxpr.c reads it.

Units: xend speaks MiB and seconds; everything here is KiB and nanoseconds like virtkit.
The reading rules (defaults, clamps, which device blocks count) are libvirt 3.0's, and are
checked against every one of libvirt's sexpr2xml fixtures. The way back, a ``DomainConfig`` to
the ``(vm ...)`` of a create, is ``_vmsxp``.
"""

from __future__ import annotations

import dataclasses
import math
import uuid as _uuid
from collections.abc import Mapping
from typing import Any

import virtkit
from virtkit import DomainConfig, DomainInfo, DomainRef, DomainState, DomainStateInfo, ProtocolError

from ._numbers import MAX_CPU_SECONDS, MAX_DIGITS, MAX_DOMID, MAX_MIB, number, real
from ._sxp import Sxp, child, children, dumps, lookup, parse_one, value

__all__ = ["Devices", "XendDomain", "state_from_flags"]

# libvirt's precedence: the first flag found in this order decides.
_FLAG_STATES = (
    ("c", DomainState.CRASHED),
    ("s", DomainState.SHUTOFF),
    ("d", DomainState.DYING),
    ("p", DomainState.PAUSED),
    ("b", DomainState.BLOCKED),
    ("r", DomainState.RUNNING),
)
# Xen-API power states in (status N), used when a record has no (state ...) flags.
_STATUS_STATES = {
    0: DomainState.SHUTOFF,
    1: DomainState.PAUSED,
    2: DomainState.RUNNING,
    3: DomainState.SHUTOFF,  # suspended = saved to disk: not running
    4: DomainState.SHUTDOWN,
    5: DomainState.CRASHED,
}


def state_from_flags(flags: str | None, status: int | None) -> DomainState:
    """``-b----`` style flags (``?`` and ``-`` mean unset) to a state; else the power status."""
    if flags:
        for letter, state in _FLAG_STATES:
            if letter in flags:
                return state
    if status is not None:
        return _STATUS_STATES.get(status, DomainState.NOSTATE)
    return DomainState.NOSTATE


#: A vcpu bitmap of MAX_VCPUS bits in decimal stays below int()'s 4300-digit limit.
_MAX_AVAIL_DIGITS = 4300
_MAX_AVAIL = 2**virtkit.MAX_VCPUS - 1
#: Xen-API power states are 0..6; a larger unknown one reads as NOSTATE, an absurd one is refused.
_MAX_STATUS = 255


def _int(x: Sxp, key: str, high: int, default: int | None = None, digits: int = MAX_DIGITS) -> int | None:
    return number(value(x, key), f"record field {key!r}", high=high, default=default, digits=digits)


def _float(x: Sxp, key: str, low: float = -math.inf, high: float = math.inf) -> float | None:
    return real(value(x, key), f"record field {key!r}", low, high)


@dataclasses.dataclass(frozen=True, slots=True)
class Devices:
    """Device blocks summarised as libvirt turns them into XML elements.

    ``disks``: every (device (vbd|tap|tap2 ...)); ``nics``: every (device (vif ...));
    ``hostdevs``: each (dev ...) of the first (device (pci ...)) block (xend puts all PCI
    devices in one block); ``graphics``: the first (device (vfb ...)), else an old-style
    ``(image (hvm|linux (vnc 1)|(sdl 1)))`` console: libvirt shows at most one.
    """

    disks: tuple[Mapping[str, Any], ...] = ()
    nics: tuple[Mapping[str, Any], ...] = ()
    hostdevs: tuple[Mapping[str, Any], ...] = ()
    graphics: tuple[Mapping[str, Any], ...] = ()

    def counts(self) -> dict[str, int]:
        return {
            "disk": len(self.disks),
            "interface": len(self.nics),
            "hostdev": len(self.hostdevs),
            "graphics": len(self.graphics),
        }

    def all(self) -> tuple[Mapping[str, Any], ...]:
        return self.disks + self.nics + self.hostdevs + self.graphics


def _disk(kind: str, dev: Sxp) -> dict[str, Any]:
    uname = value(dev, "uname")
    target = value(dev, "dev") or ""
    mode = value(dev, "mode") or ""
    d: dict[str, Any] = {"type": "disk", "backend": kind}
    if target.startswith("ioemu:"):
        target = target[6:]
    base, _, suffix = target.rpartition(":") if ":" in target else (target, "", "")
    d["target"] = base
    d["device"] = "cdrom" if suffix == "cdrom" else "disk"
    if uname:
        driver, _, src = uname.partition(":")
        d["driver"] = "tap2" if kind == "tap2" and driver == "tap" else driver
        if driver in ("tap", "tap2") and ":" in src:
            fmt, _, src = src.partition(":")
            d["format"] = "raw" if fmt == "aio" else fmt
        d["source"] = src
        d["uname"] = uname
    else:
        d["source"] = None  # an empty CD-ROM drive
    d["readonly"] = "r" in mode
    d["shareable"] = "!" in mode
    if value(dev, "bootable") == "1":
        d["bootable"] = True
    return d


def _nic(dev: Sxp) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "interface"}
    for key in ("mac", "bridge", "script", "model", "ip", "vifname", "rate"):
        v = value(dev, key)
        if v is not None:
            d[key] = v
    if "model" not in d and value(dev, "type") == "netfront":
        d["model"] = "netfront"
    return d


def _graphics_new(dev: Sxp) -> dict[str, Any]:
    kind = value(dev, "type") or ("vnc" if value(dev, "vnc") else "sdl" if value(dev, "sdl") else "unknown")
    d: dict[str, Any] = {"type": "graphics", "kind": kind}
    for key in ("vnclisten", "keymap", "vncdisplay", "location", "display"):
        v = value(dev, key)
        if v is not None:
            d[key] = v
    return d


_PCI_TOPS = (0xFFFF, 0xFF, 0x1F, 0x7)  # domain, bus, slot, function


def _devices(dom: Sxp, hvm: bool) -> Devices:
    disks: list[Mapping[str, Any]] = []
    nics: list[Mapping[str, Any]] = []
    graphics: list[Mapping[str, Any]] = []
    hostdevs: list[Mapping[str, Any]] = []
    pci_seen = False
    for block in children(dom, "device"):
        for kind in ("vbd", "tap2", "tap"):  # libvirt's order of preference within one block
            dev = child(block, kind)
            if dev is not None:
                disks.append(_disk(kind, dev))
                break
        if (dev := child(block, "vif")) is not None:
            nics.append(_nic(dev))
        if not graphics and (dev := child(block, "vfb")) is not None:
            graphics.append(_graphics_new(dev))
        if not pci_seen and (dev := child(block, "pci")) is not None:
            pci_seen = True
            for slot in children(dev, "dev"):
                parts = [value(slot, k) for k in ("domain", "bus", "slot", "func")]
                if any(p is None for p in parts):
                    raise ProtocolError(f"xend PCI device lacks domain/bus/slot/func: {dumps(slot)}")
                what = f"PCI device address {dumps(slot)[:80]}"
                dom_, bus, sl, fn = (number(p, what, high=top) or 0 for p, top in zip(parts, _PCI_TOPS, strict=True))
                hostdevs.append({"type": "hostdev", "address": f"{dom_:04x}:{bus:02x}:{sl:02x}.{fn:x}"})
    if not graphics:
        image = lookup(dom, ("image", "hvm" if hvm else "linux"))
        for kind in ("vnc", "sdl"):
            if (value(image, kind) or "").startswith("1"):
                d: dict[str, Any] = {"type": "graphics", "kind": kind}
                for key in ("vnclisten", "keymap", "vncdisplay", "display"):
                    v = value(image, key)
                    if v is not None:
                        d[key] = v
                graphics.append(d)
                break
    return Devices(tuple(disks), tuple(nics), tuple(hostdevs), tuple(graphics))


@dataclasses.dataclass(frozen=True, slots=True)
class XendDomain:
    """One domain as xend describes it. Memory in KiB, cpu time in ns."""

    id: int | None
    name: str
    uuid: _uuid.UUID
    memory: int
    max_memory: int
    vcpus: int
    max_vcpus: int
    online_vcpus: int
    state: DomainState
    state_flags: str | None
    status: int | None
    cpu_time: int
    os_type: str
    start_time: float | None
    on_poweroff: str
    on_reboot: str
    on_crash: str
    kernel: str | None
    initrd: str | None
    cmdline: str | None
    bootloader: str | None
    bootloader_args: str | None
    shutdown_reason: str | None
    devices: Devices
    sxp: list[Sxp] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_sxp(cls, x: Sxp) -> XendDomain:
        """Read a ``(domain ...)`` record; a record a client can't use is a ProtocolError."""
        if not isinstance(x, list) or not x or x[0] != "domain":
            head = x[0] if isinstance(x, list) and x and isinstance(x[0], str) else type(x).__name__
            raise ProtocolError(f"expected a (domain ...) record from xend, got ({head} ...)")
        name = value(x, "name")
        if not name:
            raise ProtocolError("xend domain record has no name")
        raw_uuid = value(x, "uuid")
        if not raw_uuid:
            raise ProtocolError(f"xend domain record {name!r} has no uuid")
        try:
            uuid = _uuid.UUID(raw_uuid)
        except ValueError:
            raise ProtocolError(f"xend domain record {name!r}: bad uuid {raw_uuid!r}") from None
        dom_id = _int(x, "domid", MAX_DOMID)
        hvm = lookup(x, "image/hvm") is not None
        image = lookup(x, ("image", "hvm" if hvm else "linux"))

        max_mib = _int(x, "maxmem", MAX_MIB)
        cur_mib = _int(x, "memory", MAX_MIB)
        max_kib = (max_mib if max_mib is not None else cur_mib or 0) << 10
        cur_kib = min((cur_mib if cur_mib is not None else max_mib or 0) << 10, max_kib)

        max_vcpus = _int(x, "vcpus", virtkit.MAX_VCPUS, 1) or 1
        avail = _int(x, "vcpu_avail", _MAX_AVAIL, 0, digits=_MAX_AVAIL_DIGITS) or 0
        vcpus = avail.bit_count() if avail > 0 else 0
        if not vcpus or vcpus > max_vcpus:
            vcpus = max_vcpus
        online = _int(x, "online_vcpus", virtkit.MAX_VCPUS) or vcpus

        flags = value(x, "state") or None
        status = _int(x, "status", _MAX_STATUS)
        cpu = _float(x, "cpu_time", 0.0, MAX_CPU_SECONDS)
        state = state_from_flags(flags, status)
        if dom_id is not None and state is DomainState.NOSTATE and status is None:
            # xend 3.0.x: no status field, and '------' for a domain runnable but on no cpu at that
            # instant; it has a domid, so it is live (libvirt called it "no state")
            state = DomainState.RUNNING

        kernel = value(image, "kernel")
        if hvm:
            # old xend put the loader in 'kernel': libvirt shows no kernel then
            if value(image, "loader") is None or kernel == "" or kernel == value(image, "loader"):
                kernel = None
        elif kernel == "":
            kernel = None
        bootloader = None if hvm else value(x, "bootloader")
        return cls(
            id=dom_id,
            name=name,
            uuid=uuid,
            memory=cur_kib,
            max_memory=max_kib,
            vcpus=vcpus,
            max_vcpus=max_vcpus,
            online_vcpus=online,
            state=state,
            state_flags=flags,
            status=status,
            cpu_time=round(cpu * 1e9) if cpu is not None else 0,
            os_type="hvm" if hvm else "linux",
            start_time=_float(x, "start_time"),
            on_poweroff=value(x, "on_poweroff") or "destroy",
            on_reboot=value(x, "on_reboot") or "restart",
            on_crash=value(x, "on_crash") or "destroy",
            kernel=kernel,
            initrd=(value(image, "ramdisk") or None) if kernel or not hvm else None,
            cmdline=value(image, "args") if kernel or not hvm else None,
            bootloader=bootloader,
            bootloader_args=value(x, "bootloader_args") if bootloader is not None else None,
            shutdown_reason=value(x, "shutdown_reason"),
            devices=_devices(x, hvm),
            sxp=x,
        )

    @classmethod
    def from_text(cls, text: str) -> XendDomain:
        return cls.from_sxp(parse_one(text))

    @property
    def active(self) -> bool:
        """A domain with a domid is live unless its flags or status say it has shut off."""
        return self.id is not None and self.state is not DomainState.SHUTOFF

    @property
    def ref(self) -> DomainRef:
        return DomainRef(self.name, self.uuid, self.id if self.active else None)

    def info(self) -> DomainInfo:
        return DomainInfo(self.state, self.max_memory, self.memory, self.vcpus, self.cpu_time)

    def state_info(self) -> DomainStateInfo:
        reason = self.shutdown_reason if self.state in (DomainState.SHUTOFF, DomainState.SHUTDOWN) else None
        return DomainStateInfo(self.state, reason)

    def to_config(self) -> DomainConfig:
        """The structured config; ``extra["sxp"]`` is xend's record itself, as text."""
        extra: dict[str, Any] = {"sxp": dumps(self.sxp)}
        if self.bootloader is not None:
            extra["bootloader"] = self.bootloader
            if self.bootloader_args:
                extra["bootloader_args"] = self.bootloader_args
        return DomainConfig(
            name=self.name,
            memory=self.memory,
            vcpus=self.vcpus,
            max_memory=self.max_memory,
            max_vcpus=self.max_vcpus,
            uuid=self.uuid,
            os_type=self.os_type,
            kernel=self.kernel,
            initrd=self.initrd,
            cmdline=self.cmdline,
            on_poweroff=self.on_poweroff,
            on_reboot=self.on_reboot,
            on_crash=self.on_crash,
            devices=self.devices.all(),
            extra=extra,
        )
