"""Running xl: its messages become typed errors; timeouts; libxl's JSON as a DomainConfig."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import virtkit
from virtkit import InvalidArgument, InvalidOperation, NoSuchDomain
from virtkit_xen_libxl._libxljson import config_from_libxl
from virtkit_xen_libxl._xl import Xl, XlError, classify

DATA = Path(__file__).parent / "data"

# What xl 4.17 printed in the lab (see data/PROVENANCE.md) for a create of a name in use, of
# too much memory, and for a missing kernel.
NAME_IN_USE = (
    'libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain 11:Domain with name "p1" already exists.\n'
    "libxl: error: libxl_create.c:1296:initiate_domain_create: Domain 11:cannot make domain: -6\n"
    "libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 11:Non-existant domain\n"
)
NO_MEMORY = (
    "xc: error: panic: xg_dom_boot.c:119: xc_dom_boot_mem_init: can't allocate low memory for domain: Out of memory\n"
    "libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 3:Non-existant domain\n"
    "libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain 3:Unable to destroy guest\n"
)


def script(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "xl"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return str(exe)


def test_create_failures_carry_xls_message_without_the_cleanup_noise(tmp_path: Path) -> None:
    xl = Xl(script(tmp_path, f"cat >&2 <<'E'\nParsing config from x\n{NO_MEMORY}E\nexit 3\n"))
    with pytest.raises(XlError) as info:
        xl.create(tmp_path / "x.cfg")
    assert isinstance(info.value, InvalidArgument)
    assert "Out of memory" in info.value.message and "Non-existant" not in info.value.message
    assert "Parsing config" not in info.value.xl_message


def test_name_in_use_is_invalid_operation() -> None:
    err = classify(NAME_IN_USE.strip(), "xl create", creating=True)
    assert isinstance(err, InvalidOperation) and "already exists" in err.message


def test_other_commands_map_missing_domains() -> None:
    assert isinstance(classify("invalid domain identifier: 42", "xl destroy"), NoSuchDomain)
    assert isinstance(classify("libxl: error: Operation not permitted", "xl destroy"), virtkit.PermissionDenied)
    assert isinstance(classify("something else", "xl reboot"), XlError)


def test_timeout_is_typed(tmp_path: Path) -> None:
    xl = Xl(script(tmp_path, "sleep 5\n"), timeout=0.3)
    with pytest.raises(virtkit.TimeoutError, match="did not finish"):
        xl.run("list")


def test_create_timeout_is_typed_and_kills_xl(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    xl = Xl(script(tmp_path, f"echo $$ > {pidfile}\nexec sleep 30\n"), timeout=0.3)
    with pytest.raises(virtkit.TimeoutError, match="did not finish"):
        xl.create(tmp_path / "x.cfg")
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        os.kill(pid, 0)


def test_create_does_not_wait_for_the_babysitter(tmp_path: Path) -> None:
    # xl create forks the domain's babysitter, which outlives it with xl's stdout and stderr:
    # create returns when xl exits (a pipe would keep it waiting until the timeout).
    body = 'echo "Parsing config from $2"\n(sleep 3 &)\necho "libxl: error: boom" >&2\nexit 3\n'
    xl = Xl(script(tmp_path, body), timeout=2)
    with pytest.raises(XlError) as caught:
        xl.create(tmp_path / "x.cfg")
    assert caught.value.xl_message == "libxl: error: boom"


def test_missing_binary_is_typed(tmp_path: Path) -> None:
    with pytest.raises(virtkit.PermissionDenied):
        Xl(str(tmp_path / "nope")).run("list")


def test_list_long_of_a_pv_guest_and_dom0() -> None:
    pv = config_from_libxl(json.loads((DATA / "xl-list-l-pv.json").read_text())[0])
    assert (pv.name, pv.memory, pv.vcpus, pv.max_memory, pv.max_vcpus) == ("p1", 131072, 1, None, None)
    assert (pv.kernel, pv.initrd, pv.on_reboot, pv.on_poweroff) == (
        "/usr/lib/xenlab/vmlinux",
        "/usr/lib/xenlab/initrd.cpio.gz",
        "restart",
        "destroy",
    )
    assert str(pv.uuid) == "3b1629c2-eeb0-4ff4-b2be-cd3d1169e676"
    dom0 = config_from_libxl(json.loads((DATA / "xl-list-l-dom0.json").read_text())[0])
    assert (dom0.name, dom0.memory, dom0.max_memory, dom0.uuid) == ("Domain-0", 786431, 786432, None)


def test_list_long_answers_that_are_not_json(tmp_path: Path) -> None:
    with pytest.raises(NoSuchDomain):
        Xl(script(tmp_path, "echo garbage\n")).list_long(3)
    with pytest.raises(NoSuchDomain):
        Xl(script(tmp_path, "echo '[]'\n")).list_long(3)
    with pytest.raises(virtkit.ProtocolError):
        config_from_libxl({"config": {"c_info": {}}})


def test_libvirts_layout_of_the_kernel_is_read() -> None:
    """libvirt's libxl driver fills b_info["type.pv"] (libxl's older per-type fields)."""
    entry = json.loads((DATA / "xl-list-l-pv.json").read_text())[0]
    b = entry["config"]["b_info"]
    b["type.pv"] = {k: b.pop(k) for k in ("kernel", "ramdisk", "cmdline")}
    cfg = config_from_libxl(entry)
    assert (cfg.kernel, cfg.initrd) == ("/usr/lib/xenlab/vmlinux", "/usr/lib/xenlab/initrd.cpio.gz")
