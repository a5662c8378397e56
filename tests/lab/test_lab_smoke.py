"""Smoke test of the lab itself: this really is a Xen dom0 with a working control plane."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from pytest_xenlab import (
    Libvirtd,
    XenGuest,
    is_paused,
    is_running,
    sh,
    xl_list,
    xl_state,
)
from pytest_xenlab_rigs import XenstoredControl

pytestmark = pytest.mark.lab


def test_domain0_is_listed() -> None:
    doms = xl_list()
    assert "Domain-0" in doms, doms
    assert doms["Domain-0"].domid == 0
    assert is_running(doms["Domain-0"].state)


def test_we_are_the_control_domain() -> None:
    assert "control_d" in Path("/proc/xen/capabilities").read_text()


def test_hypervisor_is_xen_4_17() -> None:
    assert sh("xl", "info", "xen_version").stdout.strip().startswith("4.17")


def test_privcmd_opens() -> None:
    fd = os.open("/dev/xen/privcmd", os.O_RDWR)
    os.close(fd)


def test_xenstored_socket_answers() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect("/run/xenstored/socket")
    assert sh("xenstore-read", "/local/domain/0/name").stdout.strip() == "Domain-0"


def test_guest_lifecycle(xen_guest: XenGuest) -> None:
    assert xen_guest.domid > 0
    assert len(xen_guest.uuid) == 36
    xen_guest.wait_state(is_running, "running")
    xen_guest.pause()
    assert is_paused(xen_guest.wait_state(is_paused, "paused"))
    xen_guest.unpause()
    assert is_running(xen_guest.wait_state(is_running, "running again"))
    xen_guest.wait_userspace()
    xen_guest.shutdown()
    assert xen_guest.wait_state(lambda s: s is None, "gone") is None
    assert xl_state(xen_guest.name) is None


@pytest.mark.parametrize("xenstored", ["xenstored"], indirect=True)
def test_c_xenstored(xenstored: XenstoredControl) -> None:
    assert xenstored.flavour == "xenstored"
    assert xenstored.read("/local/domain/0/name") == "Domain-0"
    xenstored.kill()
    assert xenstored.status() is None
    xenstored.start()
    assert xenstored.flavour == "xenstored"
    assert xenstored.read("/local/domain/0/domid") == "0"


@pytest.mark.parametrize("xenstored", ["oxenstored", "xenstored"], indirect=True)
def test_guest_under_each_xenstored(xenstored: XenstoredControl, xen_guest: XenGuest) -> None:
    # xen_guest_factory sets up the xenstored fixture first, so the guest is created under
    # the daemon the test asked for.
    assert xenstored.flavour in ("oxenstored", "xenstored")
    assert xenstored.read(f"/local/domain/{xen_guest.domid}/name") == xen_guest.name
    xen_guest.wait_state(is_running, "running")


def test_libvirt_sees_guest_it_created(libvirtd: Libvirtd) -> None:
    guest = libvirtd.create_guest()
    assert guest.name in libvirtd.list_names()
    assert guest.name in libvirtd.virsh("list")
    assert xl_list()[guest.name].domid == guest.domid
    assert "running" in libvirtd.virsh("domstate", guest.name)
