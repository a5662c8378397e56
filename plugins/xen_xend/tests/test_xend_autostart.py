"""Autostart (catalogue 1.2) from xend's ``on_xend_start``, and what the plugin does not serve.

Reads come from real captured records (libvirt 3.0.0's sexpr2xmldata, see data/PROVENANCE.md:
four carry ``(on_xend_start ignore)``, curmem, from a 3.0.3-era xend, has none). Writes are
libvirt's round trip, the record posted back with op=new, against the emulated xend over real
HTTP; a domain with a domid (running, or shut off but not torn down) is refused, since xend does
not tell a transient one from a managed one and op=new would make it managed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import virtkit
from virtkit_xen_xend import Driver, Reply, XendDomain, config_to_sxp, dumps, parse_one, value
from virtkit_xen_xend._autostart import autostart_of, autostart_value, with_autostart
from virtkit_xen_xend.emulator import Host, XendEmulator
from virtkit_xen_xend.emulator._seed import default_node, seed_domains

from .conftest import SEXPR2XML

CAPTURED = {  # file -> its on_xend_start, as captured
    "sexpr2xml-fv-autoport.sexpr": "ignore",
    "sexpr2xml-fv-legacy-vfb.sexpr": "ignore",
    "sexpr2xml-no-source-cdrom.sexpr": "ignore",
    "sexpr2xml-pv-vfb-type-crash.sexpr": "ignore",
    "sexpr2xml-curmem.sexpr": None,
}


def _captured(name: str) -> list[Any]:
    rec = parse_one((SEXPR2XML / name).read_text(encoding="utf-8"), continuation=True)
    assert isinstance(rec, list)
    return rec


def _marked(rec: list[Any], val: object) -> list[Any]:
    """``rec`` with its ``on_xend_start`` item replaced by ``(on_xend_start VAL)`` (VAL a list: as is)."""
    item = ["on_xend_start", val] if val is not None else ["on_xend_start"]
    return [c if not (isinstance(c, list) and c and c[0] == "on_xend_start") else item for c in rec]


def _raw(emu: XendEmulator, name: str) -> list[Any]:
    with emu.host.lock:
        return emu.host.sxpr(emu.host.find(name))


def _items(rec: list[Any]) -> list[str]:
    """A record's items, whatever their order (xend writes a redefined config in its own order)."""
    return sorted(dumps(c) for c in rec[1:])


# -- reading on_xend_start -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_captured_records_read_as_not_autostarted(name: str) -> None:
    rec = _captured(name)
    assert autostart_value(rec) == CAPTURED[name]
    assert autostart_of(rec) is False


@pytest.mark.parametrize(
    ("val", "expected"),
    [("start", True), ("ignore", False), ("Start", False), ("start ", False), ("bogus", False), (None, False)],
)
def test_only_start_is_autostart(val: str | None, expected: bool) -> None:
    # xend stores any string and starts the domain only on exactly 'start' (autostart_domains);
    # None writes '(on_xend_start )', xend's form of an empty string
    rec = _marked(_captured("sexpr2xml-fv-autoport.sexpr"), val)
    assert autostart_of(parse_one(dumps(rec))) is expected


@pytest.mark.parametrize(
    "item", ["(on_xend_start (start))", "(on_xend_start start ignore)", "(on_xend_start start) (on_xend_start ignore)"]
)
def test_a_malformed_value_is_a_protocol_error(item: str) -> None:
    rec = parse_one(f"(domain (name x) (uuid {uuid.uuid4()}) {item})")
    with pytest.raises(virtkit.ProtocolError, match="on_xend_start"):
        autostart_of(rec)
    with pytest.raises(virtkit.ProtocolError):
        with_autostart(rec, True)


def test_the_posted_config_is_the_record_with_the_value_replaced() -> None:
    rec = _captured("sexpr2xml-fv-autoport.sexpr")
    vm = with_autostart(rec, True)
    assert vm[0] == "vm" and value(vm, "on_xend_start") == "start"
    live = ("domid", "status", "state", "cpu_time", "start_time", "online_vcpus", "store_mfn")
    kept = [c for c in rec[1:] if c[0] not in live]
    assert vm[1:] == _marked(kept, "start")  # image, devices and every other key as xend sent them
    assert value(with_autostart(_captured("sexpr2xml-curmem.sexpr"), False), "on_xend_start") == "ignore"


# -- through virtkit over real HTTP ----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_round_trip_on_a_defined_domain(emu: XendEmulator, transport: str) -> None:
    """The captured halted 'test' (on_xend_start ignore): marked, read back, unmarked; only the
    key changes, the domain stays defined and shut off, and xend then starts it as it comes up."""
    before = _raw(emu, "test")
    with virtkit.open(emu.uri if transport == "tcp" else emu.unix_uri, timeout=5) as conn:
        dom = conn.lookup_by_name("test")
        assert dom.autostart() is False
        dom.set_autostart(True)
        assert dom.autostart() is True
        after = _raw(emu, "test")
        assert value(after, "on_xend_start") == "start"
        assert _items(_marked(after, "ignore")) == _items(before)  # nothing else changed, balloon bounds included
        assert value(after, "memory_dynamic_min") == "358"
        assert dom.info().state is virtkit.DomainState.SHUTOFF and conn.list_defined_domains() == ["test"]
        assert emu.host.find("test").managed
        assert [d.name for d in emu.host.autostart_domains()] == ["test"]  # what the mark means to xend
        assert conn.lookup_by_name("test").id is not None
        emu.host.destroy(emu.host.find("test"))
        dom.set_autostart(False)
        assert dom.autostart() is False and value(_raw(emu, "test"), "on_xend_start") == "ignore"
        assert emu.host.autostart_domains() == []


def test_setting_the_value_it_has_posts_nothing(emu: XendEmulator, conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    n = emu.requests
    dom.set_autostart(False)  # captured as ignore
    assert emu.requests - n == 2  # /xend/node/ and the record, no op=new
    dom.set_autostart(True)
    assert emu.requests - n == 5


def test_an_unexpected_value_reads_false_and_is_replaced(sockdir: Path) -> None:
    recs = seed_domains()
    recs[5] = _marked(recs[5], "Start")  # sexpr2xml-no-source-cdrom.sexpr, the halted 'test'
    with XendEmulator(host=Host(recs)) as emu, virtkit.open(emu.uri, timeout=5) as conn:
        dom = conn.lookup_by_name("test")
        assert dom.autostart() is False
        dom.set_autostart(False)
        assert value(_raw(emu, "test"), "on_xend_start") == "ignore"


def test_a_marked_domain_is_started_when_xend_starts(sockdir: Path) -> None:
    recs = seed_domains()
    recs[5] = _marked(recs[5], "start")
    with XendEmulator(host=Host(recs)) as emu, virtkit.open(emu.uri, timeout=5) as conn:
        dom = conn.lookup_by_name("test")
        assert dom.id is not None and dom.autostart() is True
        with pytest.raises(virtkit.InvalidOperation, match="domain id"):  # running now
            dom.set_autostart(False)


def test_a_malformed_value_from_xend_is_a_protocol_error(sockdir: Path) -> None:
    recs = seed_domains()
    recs[5] = _marked(recs[5], ["start"])
    with XendEmulator(host=Host(recs)) as emu, virtkit.open(emu.uri, timeout=5) as conn:
        dom = conn.lookup_by_name("test")
        with pytest.raises(virtkit.ProtocolError, match="on_xend_start"):
            dom.autostart()
        n = emu.requests
        with pytest.raises(virtkit.ProtocolError, match="on_xend_start"):
            dom.set_autostart(True)
        assert emu.requests - n == 2 and value(_raw(emu, "test"), "on_xend_start") is None  # nothing posted


def test_a_transient_domain_is_refused_and_stays_transient(emu: XendEmulator, conn: virtkit.Connection) -> None:
    cfg = virtkit.DomainConfig(name="vk-transient", memory=64 * 1024, kernel="/boot/vmlinuz")
    dom = conn.create(cfg)
    assert dom.autostart() is False  # xend's default, ignore
    before = copy.deepcopy(emu.host.find("vk-transient").rec)
    n = emu.requests
    with pytest.raises(virtkit.InvalidOperation, match="transient"):
        dom.set_autostart(True)
    assert emu.requests - n == 2  # looked, posted nothing
    assert emu.host.find("vk-transient").rec == before and not emu.host.find("vk-transient").managed
    dom.destroy()
    with pytest.raises(virtkit.NoSuchDomain):  # a transient domain is gone once it stops
        conn.lookup_by_name("vk-transient")
    # the captured running domains are transient too (the emulator seeds them unmanaged)
    with pytest.raises(virtkit.InvalidOperation):
        conn.lookup_by_name("s10u4").set_autostart(True)
    assert not emu.host.find("s10u4").managed


def test_xend_would_make_a_live_transient_domain_managed(emu: XendEmulator) -> None:
    """Why the plugin refuses: op=new with a live transient domain's record is accepted; the domain
    becomes managed, the running record keeps its old value, the new one shows once it stops."""
    d = emu.host.find("s10u4")
    with emu.host.lock:
        emu.host.new(dumps(with_autostart(emu.host.sxpr(d), True)))
    assert d.managed and value(_raw(emu, "s10u4"), "on_xend_start") == "ignore"
    emu.host.destroy(d)
    assert value(_raw(emu, "s10u4"), "on_xend_start") == "start" and not d.active


def test_a_running_managed_domain_is_refused(emu: XendEmulator, conn: virtkit.Connection) -> None:
    conn.lookup_by_name("test").start()
    dom = conn.lookup_by_name("test")
    assert dom.id is not None
    with pytest.raises(virtkit.InvalidOperation, match="shut it off"):
        dom.set_autostart(True)
    assert dom.autostart() is False and value(_raw(emu, "test"), "on_xend_start") == "ignore"


def test_missing_and_replaced_domains(emu: XendEmulator, conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    with emu.host.lock:
        emu.host.delete(emu.host.find("test"))
    for call in (dom.autostart, lambda: dom.set_autostart(True)):
        with pytest.raises(virtkit.NoSuchDomain):
            call()
    assert "test" not in [d.name for d in emu.host.domains]  # set_autostart did not define it again
    # another domain under the same name: the ref's uuid no longer matches, nothing is posted
    conn.define(virtkit.DomainConfig(name="test", memory=64 * 1024, kernel="/boot/vmlinuz"))
    n = emu.requests
    with pytest.raises(virtkit.NoSuchDomain):
        dom.set_autostart(True)
    assert emu.requests - n == 2 and value(_raw(emu, "test"), "on_xend_start") == "ignore"


def test_read_only_connection_reads_but_does_not_set(emu: XendEmulator) -> None:
    with virtkit.open(emu.uri, readonly=True, timeout=5) as ro:
        dom = ro.lookup_by_name("test")
        assert dom.autostart() is False
        with pytest.raises(virtkit.ReadOnlyError):
            dom.set_autostart(True)
    assert value(_raw(emu, "test"), "on_xend_start") == "ignore"


def test_flags_and_argument_types(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test")
    with pytest.raises(virtkit.InvalidArgument):
        dom.autostart(flags=1)
    with pytest.raises(virtkit.InvalidArgument):
        dom.set_autostart(True, flags=1)


def test_a_new_definition_or_clone_is_not_marked(emu: XendEmulator, conn: virtkit.Connection) -> None:
    """Autostart is no part of a config: a clone of a marked domain, made with create or define,
    is not marked (config_to_sxp drops on_xend_start as it drops the runtime keys)."""
    src = conn.lookup_by_name("test")
    src.set_autostart(True)
    assert value(config_to_sxp(src.config()), "on_xend_start") is None
    clone = conn.create(dataclasses.replace(src.config(), name="vk-clone", uuid=uuid.uuid4()))
    copy = conn.define(dataclasses.replace(src.config(), name="vk-copy", uuid=uuid.uuid4()))
    assert clone.autostart() is False and copy.autostart() is False and src.autostart() is True


@pytest.mark.parametrize("fmt", ["3", None])
def test_an_xend_that_starts_nothing(sockdir: Path, fmt: str | None) -> None:
    """xend 3.0.4 (xend_config_format 3) kept on_xend_start but started nothing; older xend had no
    format at all: every domain reads False and setting is Unsupported, with nothing posted."""
    node = [c for c in default_node() if c[0] != "xend_config_format"]
    if fmt is not None:
        node.append(["xend_config_format", fmt])
    recs = seed_domains()
    recs[5] = _marked(recs[5], "start")
    with XendEmulator(host=Host(recs, node)) as emu, virtkit.open(emu.uri, timeout=5) as conn:
        assert emu.host.autostart_domains() == []  # as that xend: nothing started
        dom = conn.lookup_by_name("test")
        assert dom.id is None and dom.autostart() is False
        n = emu.requests
        with pytest.raises(virtkit.Unsupported, match="starts no domain"):
            dom.set_autostart(False)
        assert emu.requests - n == 1 and value(_raw(emu, "test"), "on_xend_start") == "start"


def test_persistence_is_not_served(conn: virtkit.Connection) -> None:
    assert conn.served_by("domain_get_autostart") == "xen_xend"
    assert conn.served_by("domain_set_autostart") == "xen_xend"
    assert not conn.served_by("domain_is_persistent")
    with pytest.raises(virtkit.Unsupported):
        conn.lookup_by_name("test").is_persistent()


# -- a shut-off record that still has a domid (a real capture) ------------------------------------


class _Recorder:
    """A transport answering /xend/node/ with the emulator's node and every other request with one
    record, recording what was asked."""

    where = "stub"
    timeout = 1.0

    def __init__(self, body: str) -> None:
        self.body = body
        self.seen: list[tuple[str, str]] = []

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, form: Any = None) -> Reply:
        self.seen.append((method, path))
        body = dumps(default_node()) if path == "/xend/node/" else self.body
        return Reply(200, "OK", "application/sxp", body, {})

    @contextlib.contextmanager
    def operation(self) -> Iterator[float]:
        yield 0.0

    def close(self) -> None:
        pass


def test_a_shut_off_domain_with_a_domid_is_refused() -> None:
    """no-source-cdrom was captured halted ``(status 0)`` but with ``(domid 6)``: xend keeps the
    domid until it has torn the domain down, and a transient one looks the same, so no op=new."""
    rec = XendDomain.from_sxp(_captured("sexpr2xml-no-source-cdrom.sexpr"))
    assert rec.id == 6 and not rec.active
    stub = _Recorder(dumps(_captured("sexpr2xml-no-source-cdrom.sexpr")))
    driver = Driver(stub, "xen://stub/")  # type: ignore[arg-type]
    ref = virtkit.DomainRef(rec.name, rec.uuid, None)
    assert driver.domain_get_autostart(ref) is False
    with pytest.raises(virtkit.InvalidOperation, match="domain id"):
        driver.domain_set_autostart(ref, True)
    assert all(method == "GET" for method, _ in stub.seen)
