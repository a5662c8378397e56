"""Struct layouts and interface versions against the reference, for every supported release."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import pytest

from virtkit import DomainState
from virtkit_xen_hyper import _abi as A

DATA = Path(__file__).parent / "data" / "xen-interface-versions.csv"


def _rows() -> list[tuple[int, int, int, int, int]]:
    with DATA.open() as f:
        lines = [line for line in f if not line.startswith("#")]
    out = []
    for row in csv.DictReader(lines):
        major, minor, patch = (int(x) for x in row["tag"].removeprefix("RELEASE-").split(".")[:3])
        d = int(row["XEN_DOMCTL_INTERFACE_VERSION"], 16)
        s = int(row["XEN_SYSCTL_INTERFACE_VERSION"], 16)
        out.append((major, minor, patch, d, s))
    return out


ROWS = _rows()
SUPPORTED = [r for r in ROWS if (r[0], r[1]) >= (4, 3)]


def test_the_csv_copy_covers_4_2_to_4_22() -> None:
    minors = {r[1] for r in ROWS}
    assert minors == set(range(2, 23))
    assert len(SUPPORTED) > 100


@pytest.mark.parametrize(("major", "minor", "patch", "domctl", "sysctl"), SUPPORTED, ids=lambda v: str(v))
def test_every_release_gets_its_interface_versions(
    major: int, minor: int, patch: int, domctl: int, sysctl: int
) -> None:
    abi = A.abi_for(major, minor, f".{patch}")
    assert (abi.domctl, abi.sysctl, abi.known) == (domctl, sysctl, True)


@pytest.mark.parametrize(
    ("extra", "domctl"),
    [(".0", 0x0E), ("", 0x0E), ("-rc", 0x0E), (".1", 0x0F), (".2", 0x0F), (".4", 0x0F), (".4-pre", 0x0F)],
)
def test_the_4_10_split(extra: str, domctl: int) -> None:
    assert A.abi_for(4, 10, extra).domctl == domctl
    assert A.abi_for(4, 10, extra).sysctl == 0x10


def test_patch_level_parsing() -> None:
    assert A._patch_level(".7") == 7
    assert A._patch_level(".12-pre") == 12
    assert A._patch_level("-unstable") == 0
    assert A._patch_level("") == 0


def test_unknown_releases_start_from_the_nearest_end_of_the_table() -> None:
    newer = A.abi_for(4, 30, ".0")
    assert (newer.domctl, newer.sysctl, newer.known) == (0x18, 0x16, False)
    assert A.abi_for(5, 0).known is False
    older = A.abi_for(4, 1, ".0")
    assert older.known is False
    assert older.dominfo is not None and older.physinfo is not None  # something we can decode


def test_candidates_start_with_the_choice_then_nearest() -> None:
    c = A.domctl_candidates(0x15)
    assert c[0] == 0x15 and c[1:3] == (0x16, 0x14)
    assert sorted(c) == sorted(set(c))
    assert set(c) == {v for v in A.DOMCTL_VERSIONS if A.dominfo_layout(v) is not None}
    s = A.sysctl_candidates(0x15)
    assert s[0] == 0x15 and 0x16 in s and 0x14 in s
    assert 0x09 not in s  # 4.2's sysctl: its physinfo layout is unknown, never tried


# Sizes from the reference table (hypercalls.md section 4), per release.
SIZES = {
    (4, 2): (88, None),
    (4, 3): (96, 104),
    (4, 9): (96, 104),
    (4, 10): (96, 104),
    (4, 11): (104, 104),
    (4, 15): (104, 104),
    (4, 16): (112, 104),
    (4, 17): (112, 112),
    (4, 18): (112, 112),
    (4, 22): (112, 112),
}


@pytest.mark.parametrize(("release", "sizes"), SIZES.items(), ids=str)
def test_struct_sizes_per_release(release: tuple[int, int], sizes: tuple[int, int | None]) -> None:
    row = next(r for r in RELEASE_ROWS if (r[0], r[1]) == release)
    dom = A.dominfo_layout(row[3])
    assert dom is not None and dom.struct.size == sizes[0]
    phys = A.physinfo_layout(row[4])
    assert (phys.struct.size if phys else None) == sizes[1]


RELEASE_ROWS = A.RELEASES


def test_layouts_match_the_reference_python_formats() -> None:
    ref = {
        "4.2": "<HxxI6QIII16sI",
        "4.3": "<HxxI7QIII16sI",
        "4.11": "<HxxI7QIII16sI8s",
        "4.16": "<HHI7QIII16sIB7xII",
    }
    for key, fmt in ref.items():
        assert A.DOMINFO_LAYOUTS[key].struct.size == struct.calcsize(fmt), key
    phys = {"4.3": "<7I4x4Q8II4x", "4.10": "<8I5Q8I", "4.17": "<10I5Q8I"}
    for key, fmt in phys.items():
        assert A.PHYSINFO_LAYOUTS[key].struct.size == struct.calcsize(fmt), key


def _offsets(layout: A.Layout) -> dict[str, int]:
    return dict(zip(layout.fields, layout.offsets, strict=True))


def test_getdomaininfo_4_17_offsets_as_measured() -> None:
    assert _offsets(A.DOMINFO_LAYOUTS["4.16"]) == {
        "domain": 0,
        "flags": 4,
        "tot_pages": 8,
        "max_pages": 16,
        "outstanding_pages": 24,
        "shr_pages": 32,
        "paged_pages": 40,
        "shared_info_frame": 48,
        "cpu_time": 56,
        "nr_online_vcpus": 64,
        "max_vcpu_id": 68,
        "ssidref": 72,
        "handle": 76,
        "cpupool": 92,
        "gpaddr_bits": 96,
        "emulation_flags": 104,
        "misc_flags": 108,
    }


def test_older_getdomaininfo_offsets() -> None:
    o = _offsets(A.DOMINFO_LAYOUTS["4.11"])
    assert (o["cpu_time"], o["handle"], o["cpupool"], o["emulation_flags"]) == (56, 76, 92, 96)
    o = _offsets(A.DOMINFO_LAYOUTS["4.3"])
    assert (o["outstanding_pages"], o["cpu_time"], o["handle"]) == (24, 56, 76)
    o = _offsets(A.DOMINFO_LAYOUTS["4.2"])
    assert "outstanding_pages" not in o
    assert (o["cpu_time"], o["handle"], o["cpupool"]) == (48, 68, 84)


def test_physinfo_offsets_as_measured() -> None:
    assert _offsets(A.PHYSINFO_LAYOUTS["4.17"]) == {
        "threads_per_core": 0,
        "cores_per_socket": 4,
        "nr_cpus": 8,
        "max_cpu_id": 12,
        "nr_nodes": 16,
        "max_node_id": 20,
        "cpu_khz": 24,
        "capabilities": 28,
        "arch_capabilities": 32,
        "total_pages": 40,
        "free_pages": 48,
        "scrub_pages": 56,
        "outstanding_pages": 64,
        "max_mfn": 72,
        "hw_cap": 80,
    }
    o = _offsets(A.PHYSINFO_LAYOUTS["4.10"])
    assert (o["capabilities"], o["total_pages"], o["max_mfn"], o["hw_cap"]) == (28, 32, 64, 72)
    o = _offsets(A.PHYSINFO_LAYOUTS["4.3"])
    assert (o["total_pages"], o["hw_cap"], o["capabilities"]) == (32, 64, 96)


def test_envelope_structs() -> None:
    assert A.DOMCTL_SIZE == 144 and A.SYSCTL_SIZE == 136
    assert A.HEADER_DOMCTL.size == A.DOMCTL_UNION == 16
    assert A.HEADER_SYSCTL.size == A.SYSCTL_UNION == 8
    # getdomaininfolist: first_domain @0, max_domains @4, buffer @8, num_domains @16; 24 bytes.
    assert A.GETDOMAININFOLIST.size == 24
    raw = A.GETDOMAININFOLIST.pack(0x1234, 7, 0xDEADBEEF00, 9)
    assert struct.unpack_from("<H", raw, 0)[0] == 0x1234
    assert struct.unpack_from("<I", raw, 4)[0] == 7
    assert struct.unpack_from("<Q", raw, 8)[0] == 0xDEADBEEF00
    assert struct.unpack_from("<I", raw, 16)[0] == 9
    # Every layout fits the 128-byte union.
    for layout in (*A.DOMINFO_LAYOUTS.values(), *A.PHYSINFO_LAYOUTS.values()):
        assert layout.struct.size <= 128


def test_picker_takes_fields_by_name() -> None:
    layout = A.DOMINFO_LAYOUTS["4.16"]
    raw = struct.pack("<HHI7QIII16sIB7xII", 7, 0, 0x24, 10, 20, 0, 0, 0, 0, 99, 2, 3, 0, b"U" * 16, 0, 40, 0, 0)
    compact, make = A.picker(layout, A.DomInfo)
    assert make(compact.unpack(raw)) == A.DomInfo(7, 0x24, 10, 20, 99, 2, 3, b"U" * 16)


@pytest.mark.parametrize("layout", [*A.DOMINFO_LAYOUTS.values(), *A.PHYSINFO_LAYOUTS.values()], ids=str)
def test_compact_decoders_read_the_same_values(layout: A.Layout) -> None:
    record = A.DomInfo if layout.name.startswith("getdomaininfo") else A.PhysInfo
    compact, make = A.picker(layout, record)
    assert compact.size == layout.struct.size
    # Distinct values per field: the compact decoder must find each at its offset.
    values = []
    for i, code in enumerate(layout.codes):
        values.append(bytes([i + 1]) * struct.calcsize("<" + code) if code.endswith("s") else i + 1)
    full = dict(zip(layout.fields, values, strict=True))
    got = make(compact.unpack(layout.struct.pack(*values)))
    for name in record._fields:
        assert getattr(got, name) == full["domain" if name == "domid" else name], name


DYING, HVM, SHUT, PAUSED, BLOCKED, RUNNING = 1, 2, 4, 8, 16, 32


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (RUNNING, (DomainState.RUNNING, None)),
        (BLOCKED, (DomainState.BLOCKED, None)),
        (RUNNING | HVM, (DomainState.RUNNING, None)),
        (PAUSED | BLOCKED, (DomainState.PAUSED, None)),
        (PAUSED | RUNNING, (DomainState.PAUSED, None)),
        (SHUT | (0 << 16), (DomainState.SHUTDOWN, "poweroff")),
        (SHUT | (1 << 16), (DomainState.SHUTDOWN, "reboot")),
        (SHUT | (2 << 16), (DomainState.SHUTDOWN, "suspend")),
        (SHUT | (3 << 16), (DomainState.CRASHED, "crash")),
        (SHUT | (4 << 16), (DomainState.SHUTDOWN, "watchdog")),
        (SHUT | (5 << 16), (DomainState.SHUTDOWN, "soft_reset")),
        (SHUT | (9 << 16), (DomainState.SHUTDOWN, "code 9")),
        (SHUT | PAUSED | (3 << 16), (DomainState.CRASHED, "crash")),
        (DYING, (DomainState.DYING, None)),
        (DYING | SHUT | (0 << 16), (DomainState.DYING, "poweroff")),
        (DYING | PAUSED, (DomainState.DYING, None)),
        (0, (DomainState.NOSTATE, None)),
        (3 << 16, (DomainState.NOSTATE, None)),  # a code without the shutdown flag means nothing
    ],
)
def test_flags_to_state(flags: int, expected: tuple[DomainState, str | None]) -> None:
    assert A.state_from_flags(flags) == expected
