"""Numbers from xend are bounded (issue 12, items 3 and 5): an absurd, negative, infinite or
overlong number in a record or in /xend/node is a ProtocolError, never an OverflowError or
ValueError, and never reaches the caller as ``Id: -9``."""

from __future__ import annotations

import uuid

import pytest

import virtkit
from virtkit_xen_xend import XendDomain, dumps, parse_one
from virtkit_xen_xend.emulator import XendEmulator

_UUID = uuid.UUID(int=42)
_BASE = {"domid": "3", "name": "a", "uuid": str(_UUID), "memory": "64", "maxmem": "128", "vcpus": "2",
         "state": "-b----", "status": "2"}  # fmt: skip


def _record(field: str) -> str:
    """The base record with ``field`` (an S-expression) in place of the base's value for its key."""
    parsed = parse_one(field)
    assert isinstance(parsed, list) and isinstance(parsed[0], str)
    rest = " ".join(f"({k} {v})" for k, v in _BASE.items() if k != parsed[0])
    return f"(domain {rest} {field})"


ABSURD = [
    "(maxmem 1e999)",
    "(memory 1e999)",
    "(maxmem inf)",
    "(memory nan)",
    "(maxmem -1)",
    f"(memory {'9' * 4000})",
    f"(maxmem {'9' * 5000})",  # past int()'s digit limit: ValueError there
    f"(memory {1 << 60})",
    "(domid -9)",
    "(domid 32752)",  # DOMID_FIRST_RESERVED
    "(domid 1e999)",
    "(vcpus -1)",
    "(vcpus 1e999)",
    "(vcpus 99999999)",
    "(vcpu_avail -1)",
    "(vcpu_avail 1e999)",
    f"(vcpu_avail {'9' * 5000})",
    "(online_vcpus -3)",
    "(status -1)",
    "(status 1e999)",
    "(cpu_time -1.5)",
    "(cpu_time 1e300)",
    "(cpu_time nan)",
    "(start_time inf)",
    "(device (pci (dev (domain 0x10000) (bus 0) (slot 0) (func 0))))",
    "(device (pci (dev (domain 0) (bus 0) (slot 0) (func 1e999))))",
]


@pytest.mark.parametrize("field", ABSURD)
def test_an_absurd_number_in_a_record_is_a_protocol_error(field: str) -> None:
    text = _record(field)
    with pytest.raises(virtkit.ProtocolError):
        XendDomain.from_text(text)
    with pytest.raises(virtkit.ProtocolError):
        XendDomain.from_sxp(parse_one(text))


@pytest.mark.parametrize(
    ("field", "check"),
    [
        ("(vcpus 1.0)", lambda d: d.max_vcpus == 1),  # old xend wrote floats
        ("(vcpu_avail '1')", lambda d: d.vcpus == 1),  # Python longs came out quoted
        ("(maxmem 0x100)", lambda d: d.max_memory == 256 * 1024),
        ("(vcpus 0)", lambda d: d.max_vcpus == 1),  # 0 reads as "not given", as before
        (f"(vcpu_avail {(1 << 128) - 1})", lambda d: d.vcpus == 2),  # more bits than vcpus: the maximum
        ("(domid 32751)", lambda d: d.id == 32751),
    ],
)
def test_sane_numbers_still_read(field: str, check: object) -> None:
    dom = XendDomain.from_text(_record(field))
    assert callable(check) and check(dom)


def _poison(emu: XendEmulator, name: str, key: str, raw: str) -> None:
    with emu.host.lock:
        rec = emu.host.find(name).rec
        rec[:] = [c for c in rec if not (isinstance(c, list) and c and c[0] == key)] + [[key, raw]]


@pytest.mark.parametrize(("key", "raw"), [("maxmem", "1e999"), ("memory", "-5"), ("vcpus", "1e999")])
def test_the_driver_reports_a_poisoned_record_as_a_protocol_error(
    emu: XendEmulator, conn: virtkit.Connection, key: str, raw: str
) -> None:
    dom = conn.lookup_by_name("rhel5")
    _poison(emu, "rhel5", key, raw)
    with pytest.raises(virtkit.ProtocolError, match=key) as info:
        dom.info()
    assert info.value.operation == "domain_get_info" and info.value.driver == "xen_xend"


def test_a_negative_domid_never_shows_as_an_id(emu: XendEmulator, conn: virtkit.Connection) -> None:
    emu.host.find("rhel5").domid = -9
    with pytest.raises(virtkit.ProtocolError, match="domid"):
        conn.list_domains()
    with pytest.raises(virtkit.ProtocolError, match="domid"):
        conn.lookup_by_name("rhel5")


@pytest.mark.parametrize(
    ("key", "raw", "call"),
    [
        ("total_memory", "1e999", "node_info"),
        ("nr_cpus", "-2", "node_info"),
        ("cpu_mhz", "inf", "node_info"),
        ("free_memory", "9" * 5000, "node_info"),
        ("xen_major", "1e999", "version"),
        ("xen_extra", "." + "9" * 5000, "version"),
    ],
)
def test_an_absurd_node_record_is_a_protocol_error(emu: XendEmulator, key: str, raw: str, call: str) -> None:
    with virtkit.open(emu.uri, timeout=5) as conn:
        emu.host.node[:] = [c for c in emu.host.node if not (isinstance(c, list) and c[0] == key)] + [[key, raw]]
        with pytest.raises(virtkit.ProtocolError, match=key):
            getattr(conn, call)()
        assert dumps(emu.host.node)  # the emulator itself still serves it
