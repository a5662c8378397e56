"""Transport faults come out typed: server gone, slow reply, truncated body, HTML, dropped reply."""

from __future__ import annotations

import time

import pytest

import virtkit
from virtkit_xen_xend.emulator import XendEmulator


@pytest.fixture
def short(emu: XendEmulator) -> virtkit.Connection:
    return virtkit.open(emu.uri, timeout=1.0)


def test_server_gone(emu: XendEmulator, short: virtkit.Connection) -> None:
    with short:
        dom = short.lookup_by_name("rhel5")
        emu.stop()
        with pytest.raises(virtkit.DriverError, match=r"cannot reach xend at http://127\.0\.0\.1") as info:
            dom.info()
        assert info.value.operation == "domain_get_info"


def test_slow_reply_past_the_timeout(emu: XendEmulator, short: virtkit.Connection) -> None:
    with short:
        emu.fault("delay", path="/xend/domain/rhel5", delay=30, times=1)
        start = time.monotonic()
        with pytest.raises(virtkit.TimeoutError, match=r"did not answer .* within 1s"):
            short.lookup_by_name("rhel5")
        assert time.monotonic() - start < 10
        assert short.lookup_by_name("rhel5").name == "rhel5"  # the next call gets a fresh connection


def test_truncated_body(emu: XendEmulator, short: virtkit.Connection) -> None:
    with short:
        emu.fault("truncate", path="/xend/domain", times=1)
        with pytest.raises(virtkit.ProtocolError, match="truncated reply"):
            short.list_domains()
        assert short.list_domains()


def test_html_instead_of_sxp(emu: XendEmulator, short: virtkit.Connection) -> None:
    with short:
        emu.fault("html", times=1)
        with pytest.raises(virtkit.ProtocolError, match="HTML, not SXP"):
            short.hostname()


def test_connection_dropped_without_a_reply(emu: XendEmulator, short: virtkit.Connection) -> None:
    with short:
        emu.fault("drop", times=1)
        with pytest.raises(virtkit.DriverError, match=r"cannot reach xend|broke"):
            short.hostname()


def test_open_against_nothing_fails_with_the_reason(emu: XendEmulator) -> None:
    uri = emu.uri
    emu.stop()
    # the plugin's own typed error reaches the caller when no other plugin opened the URI
    with pytest.raises(virtkit.DriverError, match=r"cannot reach xend at http://127\.0\.0\.1"):
        virtkit.open(uri, timeout=1.0)


def test_closed_connection(emu: XendEmulator) -> None:
    c = virtkit.open(emu.uri, timeout=1.0)
    dom = c.lookup_by_name("rhel5")
    c.close()
    with pytest.raises(virtkit.ConnectionClosed):
        dom.info()
