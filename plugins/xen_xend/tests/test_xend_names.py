"""Domain names in URLs (issue 12, item 5): a name is one quoted path segment or no request at
all. ``.``/``..`` would be dot-segments, ``/`` another path, control characters a broken request
line; such lookups are NoSuchDomain without a request. Names entering (create, define) follow the
core's one rule, ``virtkit.check_domain_name``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import virtkit
from virtkit import DomainConfig, DomainRef
from virtkit_xen_xend import Driver, Transport
from virtkit_xen_xend.emulator import XendEmulator

UNADDRESSABLE = [".", "..", "a/b", "../node", "/", "a\x00b", "a\nb", "\x1b[31mred", "tab\there", "del\x7f"]


@pytest.fixture
def driver(emu: XendEmulator) -> Iterator[Driver]:
    assert emu.port is not None
    d = Driver(Transport.tcp("127.0.0.1", emu.port, timeout=5), emu.uri)
    yield d
    d.close()


@pytest.mark.parametrize("name", UNADDRESSABLE)
def test_a_name_no_url_can_carry_is_never_sent(emu: XendEmulator, conn: virtkit.Connection, name: str) -> None:
    before = emu.requests
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_name(name)
    assert emu.requests == before


@pytest.mark.parametrize("name", UNADDRESSABLE)
def test_a_ref_with_such_a_name_is_never_acted_on(emu: XendEmulator, driver: Driver, name: str) -> None:
    ref = DomainRef(name, uuid.uuid4(), 7)
    before = emu.requests
    for call in (driver.domain_get_info, driver.domain_destroy, driver.domain_suspend):
        with pytest.raises(virtkit.NoSuchDomain):
            call(ref)
    assert emu.requests == before


@pytest.mark.parametrize("name", ["my vm", "it's", "100%", "%2e%2e", "ünï", "a?b#c", "a+b"])
def test_any_other_name_is_one_quoted_segment(emu: XendEmulator, conn: virtkit.Connection, name: str) -> None:
    with emu.host.lock:  # a domain made by another tool, under a name virtkit would not give
        d = emu.host.new(f"(vm (name {name!r}) (memory 64) (vcpus 1))")
    dom = conn.lookup_by_name(name)
    assert dom.name == name and str(dom.uuid) == d.uuid
    assert dom.info().max_memory == 64 * 1024


@pytest.mark.parametrize("name", ["..", "a/b", "a\nb", "\x1b[2J", "", "x" * 65, "-lead"])
def test_create_and_define_refuse_a_bad_name_before_any_request(emu: XendEmulator, driver: Driver, name: str) -> None:
    config = DomainConfig(name=name, memory=65536, vcpus=1, kernel="/boot/vmlinuz")
    before = emu.requests
    for call in (driver.domain_create, driver.domain_define):
        with pytest.raises(virtkit.InvalidArgument, match="invalid domain name"):
            call(config)
    assert emu.requests == before
    with pytest.raises(virtkit.InvalidArgument):  # and through the core, the same rule
        virtkit.open(emu.uri, timeout=5).define(config)
