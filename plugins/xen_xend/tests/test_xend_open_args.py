"""What open() is given (issue 12, item 3): a ``?cacert=`` the plugin cannot use, and timeouts
requests cannot take, are InvalidArgument at open, never an OSError or an error from requests."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

import virtkit
from virtkit import OpenOptions, parse_uri
from virtkit_xen_xend import plugin
from virtkit_xen_xend.emulator import XendEmulator


@pytest.mark.parametrize("scheme", ["xen+https", "xen"])
def test_a_missing_cacert_is_an_invalid_argument_naming_it(tmp_path: Path, scheme: str) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(virtkit.InvalidArgument, match=f"cacert={missing}") as info:
        virtkit.open(f"{scheme}://127.0.0.1:1/?cacert={missing}", timeout=2)
    assert "No such file" in str(info.value)


def test_a_cacert_that_is_no_certificate_is_an_invalid_argument(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(virtkit.InvalidArgument, match=f"cacert={junk}"):
        virtkit.open(f"xen+https://127.0.0.1:1/?cacert={junk}", timeout=2)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_cacert_is_an_invalid_argument(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    ca.chmod(0)
    with pytest.raises(virtkit.InvalidArgument, match="Permission denied"):
        virtkit.open(f"xen+https://127.0.0.1:1/?cacert={ca}", timeout=2)


@pytest.mark.parametrize("bad", [0, 0.0, -1, math.nan, math.inf, -math.inf, 10**400])
def test_the_plugin_refuses_timeouts_itself(emu: XendEmulator, bad: float) -> None:
    # the core validates first; the plugin does not rely on it
    with pytest.raises(virtkit.InvalidArgument, match="timeout"):
        plugin.open(parse_uri(emu.uri), OpenOptions(timeout=bad))


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
def test_open_refuses_them_typed(emu: XendEmulator, bad: float) -> None:
    with pytest.raises(virtkit.InvalidArgument):
        virtkit.open(emu.uri, timeout=bad)


def test_a_tiny_timeout_is_a_timeout_not_a_crash(emu: XendEmulator) -> None:
    with pytest.raises((virtkit.TimeoutError, virtkit.DriverError)):
        virtkit.open(emu.uri, timeout=1e-9)
