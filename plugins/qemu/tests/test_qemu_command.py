"""DomainConfig -> QEMU's command line, without QEMU: ``build_argv`` is a pure function of the
checked config, the run directory, the binary and the accelerator. Nothing is started here."""

from __future__ import annotations

import pathlib
import uuid

import pytest

import virtkit
from virtkit_qemu import check_config
from virtkit_qemu._command import build_argv

QEMU = "/nonexistent/qemu-system-x86_64"  # never run
RUNDIR = pathlib.Path("/state/run/7")
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _opt(argv: list[str], flag: str) -> list[str]:
    """Every value that follows ``flag``."""
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.fixture
def kernel(tmp_path: pathlib.Path) -> pathlib.Path:
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"never booted")
    (tmp_path / "initrd").write_bytes(b"never unpacked")
    return k


def test_a_direct_kernel_boot(kernel: pathlib.Path) -> None:
    cfg = check_config(
        virtkit.DomainConfig(
            name="tiny",
            uuid=UID,
            memory=128 * 1024,
            max_memory=160 * 1024,
            vcpus=2,
            max_vcpus=4,
            kernel=str(kernel),
            initrd=str(kernel.with_name("initrd")),
            cmdline="console=ttyS0 quiet",
        )
    )
    argv = build_argv(cfg, RUNDIR, qemu=QEMU, accel="tcg")
    assert argv[0] == QEMU
    assert _opt(argv, "-name") == ["tiny"]
    assert _opt(argv, "-uuid") == [str(UID)]
    assert _opt(argv, "-machine") == ["pc"]
    assert _opt(argv, "-accel") == ["tcg"]
    assert _opt(argv, "-m") == ["160M"]  # max_memory: memory is ballooned down after the start
    assert _opt(argv, "-smp") == ["2,maxcpus=4"]
    assert _opt(argv, "-kernel") == [str(kernel)]
    assert _opt(argv, "-initrd") == [str(kernel.with_name("initrd"))]
    assert _opt(argv, "-append") == ["console=ttyS0 quiet"]
    assert _opt(argv, "-serial") == ["file:/state/run/7/console.log"]
    assert _opt(argv, "-qmp") == [
        "unix:/state/run/7/qmp.sock,server=on,wait=off",
        "unix:/state/run/7/monitor.sock,server=on,wait=off",
    ]
    assert _opt(argv, "-pidfile") == ["/state/run/7/qemu.pid"]
    assert _opt(argv, "-device") == ["virtio-balloon-pci,id=balloon0,guest-stats-polling-interval=5"]
    for flag in ("-no-shutdown", "-daemonize", "-nodefaults", "-no-user-config"):
        assert flag in argv
    assert "-no-reboot" not in argv and "-drive" not in argv
    assert build_argv(cfg, RUNDIR, qemu=QEMU, accel="tcg") == argv  # pure: the same config, the same line


def test_defaults_filled_by_check_config(kernel: pathlib.Path) -> None:
    cfg = check_config(virtkit.DomainConfig(name="d", memory=100_000, kernel=str(kernel)))
    assert cfg.uuid is not None and cfg.max_memory == 100_000 and cfg.max_vcpus == 1 and cfg.os_type == "hvm"
    argv = build_argv(cfg, RUNDIR, qemu=QEMU, accel="kvm")
    assert _opt(argv, "-m") == ["98M"]  # KiB rounded up to whole MiB
    assert _opt(argv, "-smp") == ["1,maxcpus=1"]
    assert _opt(argv, "-accel") == ["kvm"]
    assert _opt(argv, "-uuid") == [str(cfg.uuid)]
    assert "-initrd" not in argv and "-append" not in argv


def test_disks_readonly_and_a_comma_in_a_path(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "a,b.qcow2"
    data = tmp_path / "data.raw"
    root.write_bytes(b"")
    data.write_bytes(b"")
    cfg = check_config(
        virtkit.DomainConfig(
            name="disks",
            memory=65536,
            devices=(
                {"type": "disk", "path": str(root), "format": "qcow2"},
                {"type": "disk", "path": str(data), "readonly": True},
                {"type": "nic"},  # not a disk: not on the line
            ),
        )
    )
    argv = build_argv(cfg, RUNDIR, qemu=QEMU, accel="tcg")
    assert _opt(argv, "-drive") == [
        f"file={str(root).replace(',', ',,')},format=qcow2,if=virtio,index=0",
        f"file={data},format=raw,if=virtio,index=1,readonly=on",
    ]
    assert "-kernel" not in argv


def test_on_reboot_destroy_machine_and_extra_args(kernel: pathlib.Path) -> None:
    cfg = check_config(
        virtkit.DomainConfig(
            name="x",
            memory=65536,
            kernel=str(kernel),
            on_reboot="destroy",
            extra={"machine": "q35", "qemu_args": ["-rtc", "base=utc"]},
        )
    )
    argv = build_argv(cfg, RUNDIR, qemu=QEMU, accel="tcg")
    assert "-no-reboot" in argv
    assert _opt(argv, "-machine") == ["q35"]
    assert argv[-2:] == ["-rtc", "base=utc"]  # appended last: they may override what comes before
