"""A ``DomainConfig`` as the ``(vm ...)`` xend's op=create / op=new take, written the way
libvirt's xml2sexpr.c writes it. Reading xend's records is ``_model``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from virtkit import DomainConfig, InvalidArgument

from ._sxp import Sxp, parse_one

__all__ = ["RUNTIME_KEYS", "config_to_sxp"]

#: Keys xend adds to a running domain's record; dropped when a record is reused as a config.
RUNTIME_KEYS = frozenset(
    {
        "domid",
        "state",
        "status",
        "cpu_time",
        "start_time",
        "up_time",
        "online_vcpus",
        "store_mfn",
        "console_mfn",
        "shutdown_reason",
        "memory_dynamic_min",
        "memory_dynamic_max",
    }
)


def _mib(kib: int) -> int:
    return -(-kib // 1024)  # round up, as libvirt's VIR_DIV_UP: never give a guest less than asked


def _device_sxp(dev: Mapping[str, Any]) -> list[Sxp]:
    kind = dev.get("type")
    if kind == "disk":
        uname = dev.get("uname")
        if uname is None and dev.get("source") is not None:
            driver = dev.get("driver") or "file"
            fmt = dev.get("format")
            uname = (
                f"{driver}:{fmt}:{dev['source']}" if driver in ("tap", "tap2") and fmt else f"{driver}:{dev['source']}"
            )
        target = str(dev.get("target") or "")
        if not target:
            raise InvalidArgument(f"disk device needs a 'target' (e.g. xvda): {dict(dev)}")
        if dev.get("device") == "cdrom":
            target += ":cdrom"
        mode = ("r" if dev.get("readonly") else "w") + ("!" if dev.get("shareable") else "")
        body: list[Sxp] = [str(dev.get("backend") or "vbd"), ["dev", target]]
        if uname is not None:
            body.append(["uname", str(uname)])
        body.append(["mode", mode])
        return ["device", body]
    if kind == "interface":
        body = ["vif"]
        for key in ("mac", "bridge", "script", "model", "ip", "vifname", "rate"):
            if dev.get(key) is not None:
                body.append([key, str(dev[key])])
        return ["device", body]
    if kind == "graphics":
        body = ["vfb", ["type", str(dev.get("kind") or "vnc")]]
        for key in ("vnclisten", "keymap", "vncdisplay", "display"):
            if dev.get(key) is not None:
                body.append([key, str(dev[key])])
        return ["device", body]
    raise InvalidArgument(f"xend plugin cannot create device type {kind!r}: {dict(dev)}")


def _pci_sxp(devs: list[Mapping[str, Any]]) -> list[Sxp]:
    body: list[Sxp] = ["pci"]
    for dev in devs:
        addr = str(dev.get("address") or "")
        try:
            dom, bus, rest = addr.split(":")
            slot, func = rest.split(".")
            parts = [int(p, 16) for p in (dom, bus, slot, func)]
        except ValueError:
            raise InvalidArgument(f"PCI address must be DDDD:BB:SS.F, got {addr!r}") from None
        body.append(
            [
                "dev",
                ["domain", f"0x{parts[0]:04x}"],
                ["bus", f"0x{parts[1]:02x}"],
                ["slot", f"0x{parts[2]:02x}"],
                ["func", f"0x{parts[3]:x}"],
            ]
        )
    return ["device", body]


def _set(vm: list[Sxp], key: str, val: Sxp | int) -> None:
    item: list[Sxp] = [key, str(val) if isinstance(val, int) else val]
    for i, c in enumerate(vm):
        if isinstance(c, list) and c and c[0] == key:
            vm[i] = item
            return
    vm.append(item)


#: Dropped with the runtime keys: autostart is set by domain_set_autostart only (libvirt's define
#: never carried it), so neither a clone made with create nor a new definition is marked.
_NOT_CONFIG = RUNTIME_KEYS | {"on_xend_start"}


def _runtime(key: Sxp) -> bool:
    return isinstance(key, str) and key in _NOT_CONFIG  # a list as a key, as in (()), is no runtime key


def config_to_sxp(config: DomainConfig) -> list[Sxp]:
    """The ``(vm ...)`` xend's op=create / op=new take, as libvirt's xml2sexpr writes it.

    With ``extra["sxp"]`` (e.g. from :meth:`XendDomain.to_config`) that record is the base:
    runtime keys and ``on_xend_start`` are dropped and the typed fields (name, uuid, memory,
    vcpus, on_*) override its values (uuid None drops the record's); its image and devices are
    kept as they are.
    """
    if not isinstance(config, DomainConfig):
        raise InvalidArgument(f"expected a DomainConfig, got {type(config).__name__}")
    max_kib = config.max_memory or config.memory
    if config.memory <= 0 or max_kib < config.memory:
        raise InvalidArgument(f"memory {config.memory} KiB must be positive and <= max_memory {max_kib} KiB")
    max_vcpus = config.max_vcpus or config.vcpus
    if config.vcpus <= 0 or max_vcpus < config.vcpus:
        raise InvalidArgument(f"vcpus {config.vcpus} must be positive and <= max_vcpus {max_vcpus}")
    base = config.extra.get("sxp") if config.extra else None
    if base is not None:
        parsed = parse_one(base) if isinstance(base, str) else base
        if not isinstance(parsed, list) or not parsed or parsed[0] not in ("vm", "domain"):
            raise InvalidArgument("extra['sxp'] must be a (vm ...) or (domain ...) S-expression")
        vm: list[Sxp] = ["vm", *(c for c in parsed[1:] if not (isinstance(c, list) and c and _runtime(c[0])))]
    else:
        vm = ["vm"]
    _set(vm, "name", config.name)
    _set(vm, "memory", _mib(config.memory))
    _set(vm, "maxmem", _mib(max_kib))
    _set(vm, "vcpus", max_vcpus)
    if config.vcpus < max_vcpus:
        _set(vm, "vcpu_avail", (1 << config.vcpus) - 1)
    if config.uuid is not None:
        _set(vm, "uuid", str(config.uuid))
    else:  # no uuid asked for: xend makes one, so a record's copy is not refused as its twin
        vm = [c for c in vm if not (isinstance(c, list) and c and c[0] == "uuid")]
    _set(vm, "on_poweroff", config.on_poweroff)
    _set(vm, "on_reboot", config.on_reboot)
    _set(vm, "on_crash", config.on_crash)
    if base is not None:
        return vm
    bootloader = config.extra.get("bootloader") if config.extra else None
    if bootloader is not None:
        vm.append(["bootloader", str(bootloader)])
        if config.extra.get("bootloader_args"):
            vm.append(["bootloader_args", str(config.extra["bootloader_args"])])
    if config.os_type not in ("linux", "hvm"):
        raise InvalidArgument(f"xend runs os_type 'linux' (PV) or 'hvm', not {config.os_type!r}")
    kind = config.os_type
    image: list[Sxp] = [kind]
    if kind == "hvm":
        image.append(["kernel", str(config.extra.get("loader", "/usr/lib/xen/boot/hvmloader"))])
        image.append(["vcpus", str(max_vcpus)])
        image.append(["boot", str(config.extra.get("boot", "c"))])
    # a PV config without kernel or bootloader is xend's to refuse (it answers xend.err)
    if kind == "linux" and config.kernel is not None:
        image.append(["kernel", config.kernel])
    if config.initrd is not None:
        image.append(["ramdisk", config.initrd])
    if config.cmdline is not None:
        image.append(["args", config.cmdline])
    if len(image) > 1:
        vm.append(["image", image])
    pci = [d for d in config.devices if d.get("type") == "hostdev"]
    for dev in config.devices:
        if dev.get("type") != "hostdev":
            vm.append(_device_sxp(dev))
    if pci:
        vm.append(_pci_sxp(pci))
    return vm
