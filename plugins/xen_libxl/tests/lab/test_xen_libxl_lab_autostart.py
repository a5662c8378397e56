"""Autostart on the lab's real Xen 4.17: what ``set_autostart(True)`` writes to /etc/xen/auto is
started by Debian's own xendomains (``/etc/init.d/xendomains start``, what the host runs at boot;
the lab's dom0 has no systemd, so the script is run directly) as the same persistent domain.

The guest is destroyed in teardown by name (``made``); its auto config is removed whatever
happened, so no later ``xendomains start`` of this boot starts it again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_xenlab
from pytest_xenlab import sh, wait_for

import virtkit
from virtkit import DomainConfig, DomainState
from virtkit_xen_libxl import load_xl_file

pytestmark = pytest.mark.lab
Made = Callable[..., str]
Guest = Callable[..., DomainConfig]
XENDOMAINS = "/etc/init.d/xendomains"
#: Debian's /etc/default/xendomains sets XENDOMAINS_AUTO=/etc/xen/auto; the plugin reads it there.
AUTO = Path("/etc/xen/auto")


def _cli(state: Path, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "virtkit._cli", "-c", "xen:///", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "VIRTKIT_XEN_LIBXL_STATE_DIR": str(state)},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_xendomains_starts_the_marked_definition(
    conn: virtkit.Connection, made: Made, guest: Guest, tmp_path: Path
) -> None:
    assert Path(XENDOMAINS).is_file(), "xen-utils-common's xendomains is missing from the lab's dom0"
    name = made()
    cfg_file = AUTO / f"{name}.cfg"
    state = tmp_path / "state"  # the conn fixture's state directory
    try:
        dom = conn.define(guest(name))
        assert dom.is_persistent() is True and dom.autostart() is False
        dom.set_autostart(True)
        assert dom.autostart() is True
        assert cfg_file.is_file() and load_xl_file(str(cfg_file)) == dom.config()
        assert name not in pytest_xenlab.xl_list()

        boot = sh(XENDOMAINS, "start", timeout=180)
        print(boot.stdout, boot.stderr)
        x = wait_for(lambda: pytest_xenlab.xl_list().get(name), timeout=60, what=f"xendomains to start {name}")
        assert x.uuid == str(dom.uuid), f"xl list shows {name} with uuid {x.uuid}, the definition has {dom.uuid}"

        running = conn.lookup_by_name(name)
        assert (running.id, running.uuid) == (x.domid, dom.uuid)
        assert running.info().state in (DomainState.RUNNING, DomainState.BLOCKED)
        assert running.is_persistent() is True and running.autostart() is True
        assert name not in conn.list_defined_domains()
        info = dict(line.split(":", 1) for line in _cli(state, "dominfo", name).splitlines() if ":" in line)
        assert (info["Persistent"].strip(), info["Autostart"].strip()) == ("yes", "enable"), info

        running.destroy()
        wait_for(lambda: name not in pytest_xenlab.xl_list(), timeout=60, what=f"{name} gone from xl list")
        assert conn.lookup_by_name(name).is_persistent() is True  # destroyed, still defined
        _cli(state, "autostart", "--disable", name)
        assert not cfg_file.exists() and dom.autostart() is False
        dom.undefine()
        assert name not in conn.list_defined_domains()
    finally:
        cfg_file.unlink(missing_ok=True)
