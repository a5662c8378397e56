"""The domain model: xend's units, state letters, vcpu masks, config in both directions."""

from __future__ import annotations

import uuid

import pytest

import virtkit
from virtkit import DomainConfig, DomainState
from virtkit_xen_xend import XendDomain, config_to_sxp, dumps, lookup, parse_one, state_from_flags, value

U = "596a5d21-71f4-8fb2-e068-e2386a5c413e"


def rec(extra: str = "") -> XendDomain:
    return XendDomain.from_text(
        f"(domain (domid 6) (name pv) (uuid {U}) (memory 420) (maxmem 512) (vcpus 4) {extra}"
        " (image (linux (kernel /k) (ramdisk /i) (args 'ro quiet'))) (device (vbd (dev xvda) (uname file:/a.img)"
        " (mode w))))"
    )


@pytest.mark.parametrize(
    ("flags", "status", "state"),
    [
        ("r-----", 2, DomainState.RUNNING),
        ("-b----", 2, DomainState.BLOCKED),
        ("--p---", 1, DomainState.PAUSED),
        ("---s--", 4, DomainState.SHUTOFF),
        ("----c-", 5, DomainState.CRASHED),
        ("-----d", 2, DomainState.DYING),
        ("rb-s-d", 2, DomainState.SHUTOFF),  # libvirt's precedence: c, s, d, p, b, r
        ("?b????", 2, DomainState.BLOCKED),  # xend 3.0 wrote '?' for unknown flags
        (None, 0, DomainState.SHUTOFF),  # an inactive managed domain
        (None, 1, DomainState.PAUSED),
        (None, None, DomainState.NOSTATE),
        ("------", None, DomainState.NOSTATE),
    ],
)
def test_state_letters(flags: str | None, status: int | None, state: DomainState) -> None:
    assert state_from_flags(flags, status) is state


def test_units_and_fields() -> None:
    d = rec("(vcpu_avail 3) (cpu_time 137.189121425) (start_time 1163083021.65) (state -b----)")
    assert (d.id, d.name, d.uuid) == (6, "pv", uuid.UUID(U))
    assert (d.memory, d.max_memory) == (420 * 1024, 512 * 1024)  # MiB -> KiB
    assert (d.vcpus, d.max_vcpus, d.online_vcpus) == (2, 4, 2)  # vcpu_avail 3 = two bits
    assert d.cpu_time == 137_189_121_425  # seconds -> ns
    assert d.start_time == 1163083021.65
    assert (d.kernel, d.initrd, d.cmdline, d.os_type) == ("/k", "/i", "ro quiet", "linux")
    assert (d.on_poweroff, d.on_reboot, d.on_crash) == ("destroy", "restart", "destroy")  # libvirt defaults
    assert d.info() == virtkit.DomainInfo(DomainState.BLOCKED, 512 * 1024, 420 * 1024, 2, 137_189_121_425)
    assert d.ref == virtkit.DomainRef("pv", uuid.UUID(U), 6)
    assert d.devices.disks[0]["source"] == "/a.img" and d.devices.disks[0]["driver"] == "file"


def test_current_memory_is_clamped_to_max_and_bad_masks_fall_back() -> None:
    d = XendDomain.from_text(f"(domain (name a) (uuid {U}) (memory 900) (maxmem 512) (vcpus 2) (vcpu_avail 255))")
    assert d.memory == d.max_memory == 512 * 1024
    assert d.vcpus == 2  # more bits than vcpus: libvirt takes the maximum
    assert d.id is None and d.ref.id is None


def test_online_vcpus_runtime_field() -> None:
    assert rec("(online_vcpus 3)").online_vcpus == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(vm (name a))", r"expected a \(domain ...\) record"),
        (f"(domain (uuid {U}))", "has no name"),
        ("(domain (name a))", "has no uuid"),
        ("(domain (name a) (uuid nope))", "bad uuid"),
        (f"(domain (name a) (uuid {U}) (memory lots))", "'memory' is not a number"),
        (f"(domain (name a) (uuid {U}) (cpu_time inf))", "not finite"),
    ],
)
def test_unusable_records_are_protocol_errors(text: str, message: str) -> None:
    with pytest.raises(virtkit.ProtocolError, match=message):
        XendDomain.from_text(text)


def test_to_config_carries_the_record() -> None:
    d = rec()
    cfg = d.to_config()
    assert (cfg.name, cfg.memory, cfg.max_memory, cfg.vcpus, cfg.max_vcpus) == ("pv", 420 * 1024, 512 * 1024, 4, 4)
    assert parse_one(cfg.extra["sxp"]) == d.sxp
    assert cfg.devices[0]["type"] == "disk"


def test_config_to_sxp_from_fields() -> None:
    cfg = DomainConfig(
        name="new vm",
        memory=262144,
        vcpus=1,
        max_vcpus=2,
        uuid=uuid.UUID(U),
        kernel="/boot/vmlinuz",
        cmdline="root=/dev/xvda1 ro",
        devices=(
            {"type": "disk", "source": "/img/a.img", "target": "xvda"},
            {"type": "disk", "source": "/iso/b.iso", "target": "xvdc", "device": "cdrom", "readonly": True},
            {"type": "interface", "mac": "00:16:3e:00:00:01", "bridge": "xenbr0"},
            {"type": "hostdev", "address": "0001:0c:1b.2"},
        ),
    )
    vm = config_to_sxp(cfg)
    assert dumps(vm) == (
        "(vm (name 'new vm') (memory 256) (maxmem 256) (vcpus 2) (vcpu_avail 1)"
        f" (uuid {U}) (on_poweroff destroy) (on_reboot restart) (on_crash destroy)"
        " (image (linux (kernel /boot/vmlinuz) (args 'root=/dev/xvda1 ro')))"
        " (device (vbd (dev xvda) (uname file:/img/a.img) (mode w)))"
        " (device (vbd (dev xvdc:cdrom) (uname file:/iso/b.iso) (mode r)))"
        " (device (vif (mac 00:16:3e:00:00:01) (bridge xenbr0)))"
        " (device (pci (dev (domain 0x0001) (bus 0x0c) (slot 0x1b) (func 0x2)))))"
    )


def test_config_to_sxp_rounds_kib_up_to_mib() -> None:
    vm = config_to_sxp(DomainConfig(name="a", memory=1025, kernel="/k"))
    assert value(vm, "memory") == "2"


def test_config_from_a_record_drops_runtime_keys_and_takes_typed_fields() -> None:
    d = rec("(state r-----) (cpu_time 3.5) (status 2) (store_mfn 1)")
    cfg = d.to_config()
    import dataclasses

    copy = dataclasses.replace(cfg, name="copy", uuid=None, memory=128 * 1024)
    vm = config_to_sxp(copy)
    keys = [c[0] for c in vm[1:] if isinstance(c, list)]
    assert not {"domid", "state", "cpu_time", "status", "store_mfn"} & set(keys)
    assert value(vm, "name") == "copy" and value(vm, "memory") == "128"
    assert value(vm, "uuid") is None  # uuid None: xend makes one, as every backend does for a new domain
    assert value(config_to_sxp(cfg), "uuid") == U  # the record's own uuid, from to_config, stays
    assert value(lookup(vm, "image/linux"), "kernel") == "/k"


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (DomainConfig(name="a", memory=1024, max_memory=512, kernel="/k"), "max_memory"),
        (DomainConfig(name="a", memory=1024, vcpus=3, max_vcpus=2, kernel="/k"), "max_vcpus"),
        (DomainConfig(name="a", memory=1024, os_type="exe", kernel="/k"), "os_type"),
        (DomainConfig(name="a", memory=1024, kernel="/k", devices=({"type": "tpm"},)), "device type"),
        (DomainConfig(name="a", memory=1024, kernel="/k", devices=({"type": "hostdev", "address": "x"},)), "PCI"),
    ],
)
def test_config_to_sxp_rejects_what_xend_cannot_run(cfg: DomainConfig, message: str) -> None:
    with pytest.raises(virtkit.InvalidArgument, match=message):
        config_to_sxp(cfg)
