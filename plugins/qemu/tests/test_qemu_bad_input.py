"""What the state directory and the host hand the driver, at its worst (issue 12): a FIFO, an
endless or deeply nested state file, a `qemu-system` that hangs. Reads neither block nor raise
anything but a typed error; a hung binary is a TimeoutError in time. No guest needed."""

from __future__ import annotations

import json
import os
import pathlib
import time
import uuid

import pytest

import virtkit
from virtkit_qemu._command import build_argv
from virtkit_qemu._driver import Driver
from virtkit_qemu._relay import REBOOT, reboot_deadline, reboot_pending

TIMEOUT = 1.0


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    r = tmp_path / "state"
    (r / "run").mkdir(parents=True)
    (r / "defined").mkdir()
    return r


def _driver(root: pathlib.Path, qemu: str = "/bin/false") -> Driver:
    return Driver(root, "qemu:///session", qemu, TIMEOUT)


def _bad_entry(path: pathlib.Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block forever: no writer
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)  # RecursionError in a plain json.loads
    elif kind == "huge-number":
        path.write_text('{"config": {"memory": ' + "9" * 5000 + "}}")
    elif kind == "duplicate-keys":
        path.write_text('{"config": {}, "config": {}}')


KINDS = ["fifo", "deep", "huge-number", "duplicate-keys"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_running_entry_is_a_protocol_error_for_itself_only(kind: str, root: pathlib.Path) -> None:
    run = root / "run" / "5"
    run.mkdir()
    _bad_entry(run / "domain.json", kind)
    (run / "started").touch()
    drv = _driver(root)
    try:
        t0 = time.monotonic()
        assert drv.connect_list_domains() == []  # skipped with a warning, not blocked on
        with pytest.raises(virtkit.ProtocolError, match="corrupted state entry"):
            drv.domain_lookup_by_id(5)
        assert time.monotonic() - t0 < 5
    finally:
        drv.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_defined_entry_is_a_protocol_error(kind: str, root: pathlib.Path) -> None:
    _bad_entry(root / "defined" / "bad.json", kind)
    drv = _driver(root)
    try:
        with pytest.raises(virtkit.ProtocolError, match="corrupted state entry"):
            drv.domain_lookup_by_name("bad")
        with pytest.raises(virtkit.NoSuchDomain):
            drv.domain_lookup_by_uuid(uuid.uuid4())  # the bad entry is skipped
    finally:
        drv.close()


def test_lookups_by_names_that_are_paths_find_nothing(root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"config": {"name": "x", "memory": 65536}}))
    drv = _driver(root)
    try:
        for name in ("../../outside", "/etc/passwd", "a\0b", ""):
            with pytest.raises(virtkit.NoSuchDomain):
                drv.domain_lookup_by_name(name)
    finally:
        drv.close()


def test_a_fifo_as_reboot_request_does_not_block(tmp_path: pathlib.Path) -> None:
    os.mkfifo(tmp_path / REBOOT)
    t0 = time.monotonic()
    assert reboot_deadline(tmp_path) == 0.0
    assert not reboot_pending(tmp_path)  # unreadable: expired, removed
    assert time.monotonic() - t0 < 5


def test_a_hung_qemu_binary_is_a_timeout(root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    hung = tmp_path / "qemu-system-x86_64"
    hung.write_text("#!/bin/sh\nexec sleep 60\n")
    hung.chmod(0o755)
    drv = _driver(root, str(hung))
    try:
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            drv.connect_get_version()
        assert time.monotonic() - t0 <= TIMEOUT * 1.1 + 0.5
    finally:
        drv.close()


def _config(kernel: pathlib.Path, **kw: object) -> virtkit.DomainConfig:
    fields: dict[str, object] = {"name": "c", "memory": 65536, "kernel": str(kernel), **kw}
    return virtkit.DomainConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"cmdline": "console=ttyS0\0"},
        {"extra": {"qemu_args": "-S"}},
        {"extra": {"qemu_args": ["-S", 7]}},
        {"extra": {"machine": None}},
        {"devices": ("not a mapping",)},
        {"devices": ({"type": "disk", "path": None},)},
        {"devices": ({"type": "disk", "path": "/x", "format": "raw,readonly=off"},)},
        {"memory": "64M"},
        {"vcpus": 0},
    ],
)
def test_values_for_the_qemu_command_line_are_checked(bad: dict[str, object], root: pathlib.Path) -> None:
    kernel = root / "vmlinuz"
    kernel.write_bytes(b"never booted")
    drv = _driver(root)
    try:
        with pytest.raises(virtkit.InvalidArgument):
            drv.domain_define(_config(kernel, **bad))
        assert drv.connect_list_defined_domains() == []
    finally:
        drv.close()


def test_a_disk_path_with_a_comma_stays_one_value(root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    disk = tmp_path / "a,format=qcow2.img"
    disk.write_bytes(b"")
    drv = _driver(root)
    try:
        cfg = drv.domain_get_config(
            drv.domain_define(
                virtkit.DomainConfig(name="d", memory=65536, devices=({"type": "disk", "path": str(disk)},))
            )
        )
        argv = build_argv(cfg, root, qemu="/bin/false", accel="tcg")
        drive = argv[argv.index("-drive") + 1]
        assert drive.startswith(f"file={str(disk).replace(',', ',,')},format=raw,")
    finally:
        drv.close()
