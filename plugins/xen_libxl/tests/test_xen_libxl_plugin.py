"""Negotiation: where the plugin serves xen:/// and where it declines, and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Host

from virtkit import Declined, OpenOptions, parse_uri
from virtkit_xen_libxl import Plugin, plugin
from virtkit_xen_libxl._plugin import INNER_PARAM


def test_entry_point_is_xen_libxl() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="virtkit.drivers")}
    assert eps["xen.libxl"] == "virtkit_xen_libxl:plugin"
    assert plugin.virtkit_name == "xen_libxl"


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("test:///default", "scheme"),
        ("xen://host/", "local host only"),
        ("xen+ssh:///", "local host only"),
        ("xen:///other", "no such local Xen URI path"),
    ],
)
def test_declines_other_uris(uri: str, needle: str) -> None:
    why = Plugin().can_handle(parse_uri(uri))
    assert isinstance(why, Declined) and needle in why.reason


def test_declines_outside_dom0_and_without_xl(tmp_path: Path) -> None:
    why = Plugin(str(tmp_path / "missing")).can_handle(parse_uri("xen:///"))
    assert isinstance(why, Declined) and "not running on Xen" in why.reason
    guest = tmp_path / "caps"
    guest.write_text("\n")
    why = Plugin(str(guest)).can_handle(parse_uri("xen:///"))
    assert isinstance(why, Declined) and "control domain" in why.reason
    guest.write_text("control_d\n")
    why = Plugin(str(guest), xl_path=None).can_handle(parse_uri("xen:///"))
    assert why is True or (isinstance(why, Declined) and "no xl binary" in why.reason)


def test_inner_connection_declines(host: Host) -> None:
    opts = OpenOptions(readonly=False, timeout=5, params={INNER_PARAM: True})
    assert isinstance(host.plugin.open(parse_uri("xen:///"), opts), Declined)


def test_explain_shows_why_it_declines_here(tmp_path: Path) -> None:
    """``virtkit explain xen:///`` on this host (no Xen): the plugin is listed as declined."""
    cli = Path(sys.executable).parent / "virtkit"
    out = subprocess.run([str(cli), "explain", "xen:///"], capture_output=True, text=True, timeout=60)
    line = next(ln for ln in (out.stdout + out.stderr).splitlines() if "xen_libxl" in ln)
    assert "DECLINED" in line and ("not running on Xen" in line or "control domain" in line)


def test_state_dir_from_params_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from virtkit_xen_libxl._plugin import state_dir

    monkeypatch.setenv("VIRTKIT_XEN_LIBXL_STATE_DIR", str(tmp_path / "env"))
    assert state_dir(OpenOptions(readonly=False, timeout=5, params={})) == str(tmp_path / "env")
    opts = OpenOptions(readonly=False, timeout=5, params={"xen_libxl_state_dir": "/x"})
    assert state_dir(opts) == "/x"
    monkeypatch.delenv("VIRTKIT_XEN_LIBXL_STATE_DIR")
    assert state_dir(None) == "/var/lib/virtkit/xen-libxl"


def test_importing_the_entry_point_is_cheap() -> None:
    code = "import sys, virtkit_xen_libxl; print(sorted(m for m in sys.modules if m.startswith('virtkit_xen_libxl.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "_driver" not in out and "_xlcfg" not in out and "_events" not in out
