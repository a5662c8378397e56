"""The real ``virtkit`` executable against the emulated xend, in process and as a separate server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtkit_xen_xend.emulator import XendEmulator

VIRTKIT = Path(sys.executable).with_name("virtkit")

pytestmark = pytest.mark.skipif(not VIRTKIT.exists(), reason=f"no virtkit executable at {VIRTKIT}")


def run(uri: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}
    p = subprocess.run([str(VIRTKIT), "-c", uri, *args], capture_output=True, text=True, timeout=60, env=env)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def test_list_and_dominfo(emu: XendEmulator) -> None:
    out = run(emu.uri, "list", "--all").stdout
    rows = [line.split() for line in out.splitlines()[2:]]
    assert rows == [
        ["0", "Domain-0", "running"],
        ["1", "s10u4", "idle"],
        ["5", "rhel5", "idle"],
        ["21", "domu-224", "running"],
        ["22", "test2vm", "idle"],
        ["-", "test", "shut", "off"],
    ]
    info = run(emu.uri, "dominfo", "rhel5").stdout
    assert "UUID:           4f77abd2-3019-58e8-3bab-6fbf2118f880" in info
    assert "Max memory:     394240 KiB" in info and "Used memory:    179200 KiB" in info
    assert "OS Type:        linux" in info
    data = json.loads(run(emu.uri, "--json", "dominfo", "21").stdout)
    assert (data["name"], data["os_type"], data["state"]) == ("domu-224", "hvm", "running")


def test_lifecycle_commands_change_the_emulated_host(emu: XendEmulator) -> None:
    assert "suspended" in run(emu.uri, "suspend", "rhel5").stdout
    assert run(emu.uri, "domstate", "rhel5").stdout.strip() == "paused"
    assert emu.host.find("rhel5").paused
    run(emu.uri, "resume", "5")
    run(emu.uri, "setmem", "rhel5", "200M")
    assert json.loads(run(emu.uri, "--json", "dominfo", "rhel5").stdout)["memory_kib"] == 200 * 1024
    run(emu.uri, "start", "test")
    assert emu.host.find("test").active
    run(emu.uri, "destroy", "test")
    assert not emu.host.find("test").active


def test_node_version_and_explain(emu: XendEmulator) -> None:
    assert "CPU frequency:      696 MHz" in run(emu.uri, "nodeinfo").stdout
    assert "Running hypervisor: Xen 3.0.0" in run(emu.uri, "version").stdout
    assert run(emu.uri, "hostname").stdout.strip() == "talon"
    ex = json.loads(run(emu.uri, "--json", "explain").stdout)
    routed = {o["operation"]: o for o in ex["operations"] if o["plugin"]}
    assert {o["plugin"] for o in routed.values()} == {"xen_xend"}
    assert all(not o["lost"] for o in routed.values())


def test_errors_are_one_line_and_exit_1(emu: XendEmulator) -> None:
    p = run(emu.uri, "dominfo", "nosuch", ok=False)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("error: no domain 'nosuch' on xend at http://127.0.0.1:") and p.stderr.count("\n") == 1
    p = run(emu.uri, "destroy", "Domain-0", ok=False)
    assert p.returncode == 1 and "cannot destroy domain 'Domain-0'" in p.stderr
    emu.stop()
    p = run(emu.uri, "list", ok=False)
    assert p.returncode == 1 and "cannot reach xend" in p.stderr and "Traceback" not in p.stderr


@pytest.fixture
def standalone(sockdir: Path) -> Iterator[tuple[str, str]]:
    """The emulator as its own process, as other engineers start it."""
    sock = str(sockdir / "xend-socket")
    cmd = [sys.executable, "-m", "virtkit_xen_xend.emulator", "--port", "0", "--socket", sock]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            yield proc.stdout.readline().strip(), proc.stdout.readline().strip()
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_cli_against_the_standalone_emulator_over_tcp_and_unix(standalone: tuple[str, str]) -> None:
    tcp, unix = standalone
    run(tcp, "suspend", "test2vm")
    assert run(unix, "domstate", "test2vm").stdout.strip() == "paused"  # one host behind both listeners
    assert [line.split()[1] for line in run(unix, "list").stdout.splitlines()[2:]][:2] == ["Domain-0", "s10u4"]
