"""The plugin on a host without Xen, and its probes against stand-in files."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import virtkit
from virtkit import Declined, NoDriver, parse_uri
from virtkit_xen_hyper import PRIORITY, Plugin, plugin


def test_entry_point_and_metadata() -> None:
    eps = [ep for ep in entry_points(group="virtkit.drivers") if ep.name == "xen.hyper"]
    assert len(eps) == 1 and eps[0].value == "virtkit_xen_hyper:plugin"
    assert eps[0].load() is plugin
    assert plugin.virtkit_catalogue == "1.1" and plugin.virtkit_name == "xen_hyper"
    assert plugin.priority(parse_uri("xen:///")) == PRIORITY == 50


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("test:///default", "not 'xen'"),
        ("xen://host/", "local hypervisor only"),
        ("xen+ssh://host/", "local hypervisor only"),
        ("xen+unix:///", "local hypervisor only"),
        ("xen:///session", "path"),
    ],
)
def test_declines_uris_it_cannot_reach(uri: str, reason: str) -> None:
    why = plugin.can_handle(parse_uri(uri))
    assert isinstance(why, Declined) and reason in why.reason


def test_declines_on_a_host_without_xen(tmp_path: Path) -> None:
    p = Plugin(capabilities=str(tmp_path / "missing"))
    why = p.can_handle(parse_uri("xen:///"))
    assert isinstance(why, Declined) and "not running on Xen" in why.reason
    # open itself no longer re-checks: the core calls it only after can_handle said yes
    with pytest.raises(NoDriver, match="not running on Xen"):
        virtkit.open("xen:///", entry_points=False, plugins=[p])


def test_declines_in_a_domu(tmp_path: Path) -> None:
    caps = tmp_path / "capabilities"
    caps.write_text("\n")  # what an unprivileged guest reads
    why = Plugin(capabilities=str(caps), privcmd_paths=("/dev/null",)).can_handle(parse_uri("xen:///"))
    assert isinstance(why, Declined) and "lacks control_d" in why.reason


def test_declines_when_privcmd_does_not_open(tmp_path: Path) -> None:
    caps = tmp_path / "capabilities"
    caps.write_text("control_d\n")
    p = Plugin(capabilities=str(caps), privcmd_paths=(str(tmp_path / "privcmd"), str(tmp_path / "proc-privcmd")))
    why = p.can_handle(parse_uri("xen:///"))
    assert isinstance(why, Declined)
    assert "privcmd does not open" in why.reason and "proc-privcmd" in why.reason


def test_accepts_a_control_domain(tmp_path: Path) -> None:
    caps = tmp_path / "capabilities"
    caps.write_text("control_d\n")  # dom0's file, newline included
    p = Plugin(capabilities=str(caps), privcmd_paths=(str(tmp_path / "nope"), "/dev/null"))
    for uri in ("xen:///", "xen:///system"):
        assert p.can_handle(parse_uri(uri)) is True, uri


@pytest.mark.skipif(Path("/proc/xen/capabilities").exists(), reason="this host runs on Xen")
def test_open_on_this_host_declines_with_the_reason() -> None:
    with pytest.raises(NoDriver, match=r"xen_hyper declined: not running on Xen"):
        virtkit.open("xen:///", params={})
    explanation = None
    try:
        virtkit.open("xen:///")
    except NoDriver as exc:
        explanation = exc.explanation
    assert explanation is not None and "xen_hyper" in str(explanation)


def test_importing_the_plugin_is_cheap() -> None:
    """The entry point's import must not pull in ctypes or the hypercall modules (cold CLI)."""
    code = (
        "import sys, virtkit; before = set(sys.modules); import virtkit_xen_hyper; "
        "print(sorted(m for m in set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    loaded = eval(out.stdout)  # a list literal printed by the child
    assert "ctypes" not in loaded and "fcntl" not in loaded
    assert not [m for m in loaded if m.startswith("virtkit_xen_hyper._") and m not in _LIGHT], loaded


_LIGHT = {"virtkit_xen_hyper._plugin", "virtkit_xen_hyper._version"}


def test_lazy_attributes() -> None:
    import virtkit_xen_hyper as m

    assert m.Driver.__name__ == "Driver"
    assert m.Hypervisor.__name__ == "Hypervisor"
    with pytest.raises(AttributeError):
        _ = m.nope


def test_privcmd_errors_at_open_are_typed(tmp_path: Path) -> None:
    from virtkit_xen_hyper import connect

    with pytest.raises(virtkit.DriverError, match="privcmd") as exc:
        connect(privcmd_paths=(str(tmp_path / "none"),))
    assert isinstance(exc.value.__cause__, FileNotFoundError)
    with pytest.raises(virtkit.DriverError, match="privcmd"):
        connect(privcmd_paths=("/dev/null",))  # opens, but knows no hypercall ioctl


def test_the_probe_loads_no_codec_module(tmp_path: Path) -> None:
    """can_handle runs on every cold xen:/// open: reading the capabilities file as text would
    import encodings.ascii for it."""
    caps = tmp_path / "capabilities"
    caps.write_text("control_d\n")
    code = (
        "import sys; from virtkit import parse_uri; from virtkit_xen_hyper import Plugin; "
        f"ok = Plugin(capabilities={str(caps)!r}, privcmd_paths=('/dev/null',)).can_handle(parse_uri('xen:///')); "
        "print(ok is True, 'encodings.ascii' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["True", "False"]
