"""libvirt 3.0.0's xend fixtures: every sexpr2xml record against libvirt's expected XML.

The copies are byte-exact (checked against PROVENANCE.md). Four sexpr2xml files are not
balanced and only pass in libvirt because its reader is lenient; our reader is strict by default
(a truncated reply from xend is an unclosed list), so they fail strictly at a precise position
and are read with ``lenient=True``, which must then give what libvirt gives.
"""

from __future__ import annotations

import hashlib
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from virtkit_xen_xend import SxpError, XendDomain, dumps, parse, parse_one, value

DATA = Path(__file__).parent / "data"
SEXPR2XML = DATA / "libvirt-3.0.0" / "sexpr2xmldata"
XML2SEXPR = DATA / "libvirt-3.0.0" / "xml2sexprdata"
CASES = sorted(p.stem for p in SEXPR2XML.glob("*.sexpr"))
VM_CONFIGS = sorted(p.name for p in XML2SEXPR.glob("*.sexpr"))

#: The unbalanced four, with where the strict reader stops (line, column in the original file).
UNBALANCED = {
    "sexpr2xml-pv-vfb-new": (9, 52, "unexpected ')'"),
    "sexpr2xml-pv-vfb-new-vncdisplay": (10, 19, "unexpected ')'"),
    "sexpr2xml-net-routed": (11, 1, "1 list(s) not closed"),
    "sexpr2xml-bridge-ipaddr": (11, 1, "1 list(s) not closed"),
}


def _provenance() -> dict[str, str]:
    rows = {}
    for line in (DATA / "PROVENANCE.md").read_text().splitlines():
        m = re.match(r"\| (libvirt-3\.0\.0/\S+) \|.*\| ([0-9a-f]{16}) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_every_data_file_is_a_byte_exact_copy_listed_in_provenance() -> None:
    rows = _provenance()
    files = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() and p.name != "PROVENANCE.md")
    assert sorted(rows) == files
    for rel, digest in rows.items():
        assert hashlib.sha256((DATA / rel).read_bytes()).hexdigest()[:16] == digest, rel


def test_the_fixture_set_is_complete() -> None:
    assert len(CASES) == 50
    assert len(VM_CONFIGS) == 51


def _read(stem: str) -> XendDomain:
    text = (SEXPR2XML / f"{stem}.sexpr").read_text()
    values = parse(text, continuation=True, lenient=stem in UNBALANCED)
    assert len(values) == 1
    return XendDomain.from_sxp(values[0])


def _expected(stem: str) -> dict[str, object]:
    root = ET.parse(SEXPR2XML / f"{stem}.xml").getroot()
    vcpu = root.find("vcpu")
    assert vcpu is not None and vcpu.text
    return {
        "id": int(root.get("id", "-1")),
        "name": root.findtext("name"),
        "uuid": uuid.UUID(root.findtext("uuid") or ""),
        "memory": int(root.findtext("memory") or 0),
        "current_memory": int(root.findtext("currentMemory") or 0),
        "vcpus": int(vcpu.text),
        "current_vcpus": int(vcpu.get("current", vcpu.text)),
        "os_type": root.findtext("os/type"),
        "on_poweroff": root.findtext("on_poweroff"),
        "on_reboot": root.findtext("on_reboot"),
        "on_crash": root.findtext("on_crash"),
        "kernel": root.findtext("os/kernel"),
        "devices": {k: len(root.findall(f"devices/{k}")) for k in ("disk", "interface", "hostdev", "graphics")},
    }


@pytest.mark.parametrize("stem", CASES)
def test_model_matches_libvirts_expected_xml(stem: str) -> None:
    d = _read(stem)
    got = {
        "id": -1 if d.id is None else d.id,
        "name": d.name,
        "uuid": d.uuid,
        "memory": d.max_memory,
        "current_memory": d.memory,
        "vcpus": d.max_vcpus,
        "current_vcpus": d.vcpus,
        "os_type": d.os_type,
        "on_poweroff": d.on_poweroff,
        "on_reboot": d.on_reboot,
        "on_crash": d.on_crash,
        "kernel": d.kernel,
        "devices": d.devices.counts(),
    }
    assert got == _expected(stem)


@pytest.mark.parametrize("stem", sorted(set(CASES) - set(UNBALANCED)))
def test_balanced_fixtures_parse_strictly(stem: str) -> None:
    text = (SEXPR2XML / f"{stem}.sexpr").read_text()
    assert parse(text, continuation=True) == parse(text, continuation=True, lenient=True)


@pytest.mark.parametrize("stem", sorted(UNBALANCED))
def test_unbalanced_fixtures_fail_strictly_at_a_precise_position(stem: str) -> None:
    line, column, message = UNBALANCED[stem]
    with pytest.raises(SxpError) as info:
        parse((SEXPR2XML / f"{stem}.sexpr").read_text(), continuation=True)
    assert (info.value.line, info.value.column) == (line, column)
    assert message in str(info.value)


@pytest.mark.parametrize("stem", CASES)
def test_records_round_trip_through_the_writer(stem: str) -> None:
    rec = _read(stem).sxp
    assert parse_one(dumps(rec)) == rec


@pytest.mark.parametrize("name", VM_CONFIGS)
def test_libvirt_written_vm_configs_parse_strictly_and_round_trip(name: str) -> None:
    vm = parse_one((XML2SEXPR / name).read_text(), continuation=True)
    assert isinstance(vm, list) and vm[0] == "vm"
    assert value(vm, "name")
    assert parse_one(dumps(vm)) == vm


def test_libvirt_escaped_quote_and_backslash_are_decoded() -> None:
    vm = parse_one((XML2SEXPR / "xml2sexpr-escape.sexpr").read_text(), continuation=True)
    disk = next(c for c in vm if isinstance(c, list) and c and c[0] == "device")
    assert value(disk[1], "uname") == "file:/root/'\\some.img"
    args = value(parse_one(dumps(vm)), "image")
    assert args is None  # (image (hvm ...)) has no atom value
