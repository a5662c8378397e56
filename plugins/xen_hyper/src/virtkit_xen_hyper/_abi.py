"""Xen's domctl/sysctl ABI across releases: interface versions, struct layouts, flag decoding.

Provenance: interface versions from ``XEN_DOMCTL_INTERFACE_VERSION`` /
``XEN_SYSCTL_INTERFACE_VERSION`` at every RELEASE tag of xen-project/xen
(shared/reference/xen-interface-versions.csv); struct layouts measured from the 4.17.7 public
headers with gcc 12 on x86_64, older ones from the reference notes (shared/reference/hypercalls.md
sections 4 and 5). Both hypervisor entry points compare ``interface_version`` for *exact*
equality and answer EACCES otherwise, so the version must be chosen, never assumed.
"""

from __future__ import annotations

import operator
import struct
from collections import namedtuple

from virtkit import DomainState

# Typing stays off the start-up path (issue 14): the records are namedtuples with typed stubs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NamedTuple

    class _Layout(NamedTuple):
        name: str
        struct: struct.Struct
        fields: tuple[str, ...]
        offsets: tuple[int, ...]
        codes: tuple[str, ...]

    class _Abi(NamedTuple):
        domctl: int
        sysctl: int
        known: bool

    class _DomInfo(NamedTuple):
        domid: int
        flags: int
        tot_pages: int
        max_pages: int
        cpu_time: int
        nr_online_vcpus: int
        max_vcpu_id: int
        handle: bytes

    class _PhysInfo(NamedTuple):
        threads_per_core: int
        cores_per_socket: int
        nr_cpus: int
        nr_nodes: int
        cpu_khz: int
        capabilities: int
        total_pages: int
        free_pages: int
else:
    _Layout = namedtuple("_Layout", "name struct fields offsets codes", module=__name__)
    _Abi = namedtuple("_Abi", "domctl sysctl known", module=__name__)
    _DomInfo = namedtuple(
        "_DomInfo",
        "domid flags tot_pages max_pages cpu_time nr_online_vcpus max_vcpu_id handle",
        module=__name__,
    )
    _PhysInfo = namedtuple(
        "_PhysInfo",
        "threads_per_core cores_per_socket nr_cpus nr_nodes cpu_khz capabilities total_pages free_pages",
        module=__name__,
    )

__all__ = [
    "DOMCTL_VERSIONS",
    "DOMINFO_LAYOUTS",
    "GETVCPUINFO",
    "HYPERVISOR_DOMCTL",
    "HYPERVISOR_SCHED_OP",
    "HYPERVISOR_SYSCTL",
    "HYPERVISOR_XEN_VERSION",
    "PHYSINFO_LAYOUTS",
    "RELEASES",
    "SHUTDOWN_REASONS",
    "SYSCTL_VERSIONS",
    "Abi",
    "DomInfo",
    "Layout",
    "PhysInfo",
    "abi_for",
    "domctl_candidates",
    "dominfo_layout",
    "physinfo_layout",
    "picker",
    "state_from_flags",
    "sysctl_candidates",
]

# Hypercall numbers (xen.h, stable across 4.x).
HYPERVISOR_XEN_VERSION = 17
HYPERVISOR_SCHED_OP = 29
HYPERVISOR_SYSCTL = 35
HYPERVISOR_DOMCTL = 36

XENVER_VERSION = 0
XENVER_EXTRAVERSION = 1

# domctl / sysctl commands (stable across 4.x).
DOMCTL_DESTROYDOMAIN = 2
DOMCTL_PAUSEDOMAIN = 3
DOMCTL_UNPAUSEDOMAIN = 4
DOMCTL_GETDOMAININFO = 5
DOMCTL_MAX_MEM = 11
DOMCTL_GETVCPUINFO = 14
SYSCTL_PHYSINFO = 3
SYSCTL_GETDOMAININFOLIST = 6

DOMCTL_SIZE = 144  # struct xen_domctl: same size in every release
SYSCTL_SIZE = 136  # struct xen_sysctl
HEADER_DOMCTL = struct.Struct("<IIH6x")  # cmd, interface_version, domain; union at 16
HEADER_SYSCTL = struct.Struct("<II")  # cmd, interface_version; union at 8
DOMCTL_UNION = 16
SYSCTL_UNION = 8
# xen_sysctl_getdomaininfolist: first_domain, max_domains, buffer handle, num_domains (OUT).
GETDOMAININFOLIST = struct.Struct("<HxxIQI4x")
MAX_MEM = struct.Struct("<Q")
# xen_domctl_getvcpuinfo, the same 24 bytes in every 4.x release: vcpu (IN), then online,
# blocked, running (u8 each), cpu_time (ns, 8-aligned), cpu (the physical cpu it is mapped to).
GETVCPUINFO = struct.Struct("<IBBBxQI4x")
GETVCPUINFO_IN = struct.Struct("<I")

DOMID_FIRST_RESERVED = 0x7FF0

# XEN_DOMINF_* flags.
DOMINF_DYING = 1 << 0
DOMINF_HVM = 1 << 1
DOMINF_SHUTDOWN = 1 << 2
DOMINF_PAUSED = 1 << 3
DOMINF_BLOCKED = 1 << 4
DOMINF_RUNNING = 1 << 5
SHUTDOWN_SHIFT = 16
SHUTDOWN_CRASH = 3
#: SHUTDOWN_* codes (sched.h), as the reason of a shut-down domain's state.
SHUTDOWN_REASONS = ("poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset")


class Layout(_Layout):
    """One release family's layout of a struct: name, packed size, field names and offsets,
    and each field's struct code (codes, for compact decoders)."""

    __slots__ = ()


def _layout(name: str, spec: Sequence[tuple[str, str]]) -> Layout:
    """Build a Layout from (field, struct code) pairs; fields starting with '_' are padding."""
    fmt = "<" + "".join(code for _, code in spec)
    offsets: list[int] = []
    fields: list[str] = []
    codes: list[str] = []
    pos = 0
    for field, code in spec:
        if not field.startswith("_"):
            fields.append(field)
            offsets.append(pos)
            codes.append(code)
        pos += struct.calcsize("<" + code)
    return Layout(name, struct.Struct(fmt), tuple(fields), tuple(offsets), tuple(codes))


_DOMINFO_HEAD = (("domain", "H"), ("_pad1", "2x"), ("flags", "I"), ("tot_pages", "Q"), ("max_pages", "Q"))
_DOMINFO_MID = (
    ("shr_pages", "Q"),
    ("paged_pages", "Q"),
    ("shared_info_frame", "Q"),
    ("cpu_time", "Q"),
    ("nr_online_vcpus", "I"),
    ("max_vcpu_id", "I"),
    ("ssidref", "I"),
    ("handle", "16s"),
    ("cpupool", "I"),
)

#: struct xen_domctl_getdomaininfo per release family, keyed by packed size.
DOMINFO_LAYOUTS: dict[str, Layout] = {
    # 4.2: no outstanding_pages.
    "4.2": _layout("getdomaininfo-4.2", (*_DOMINFO_HEAD, *_DOMINFO_MID)),
    # 4.3-4.10: outstanding_pages after max_pages.
    "4.3": _layout("getdomaininfo-4.3", (*_DOMINFO_HEAD, ("outstanding_pages", "Q"), *_DOMINFO_MID)),
    # 4.11-4.15: arch_config (x86: emulation_flags; 8 bytes with padding).
    "4.11": _layout(
        "getdomaininfo-4.11",
        (*_DOMINFO_HEAD, ("outstanding_pages", "Q"), *_DOMINFO_MID, ("emulation_flags", "I"), ("_pad2", "4x")),
    ),
    # 4.16+: gpaddr_bits, then arch_config at 104.
    "4.16": _layout(
        "getdomaininfo-4.16",
        (
            *_DOMINFO_HEAD,
            ("outstanding_pages", "Q"),
            *_DOMINFO_MID,
            ("gpaddr_bits", "B"),
            ("_pad2", "7x"),
            ("emulation_flags", "I"),
            ("misc_flags", "I"),
        ),
    ),
}

_PHYS_TOPO = (
    ("threads_per_core", "I"),
    ("cores_per_socket", "I"),
    ("nr_cpus", "I"),
    ("max_cpu_id", "I"),
    ("nr_nodes", "I"),
    ("max_node_id", "I"),
    ("cpu_khz", "I"),
)
_PHYS_MEM = (("total_pages", "Q"), ("free_pages", "Q"), ("scrub_pages", "Q"), ("outstanding_pages", "Q"))

#: struct xen_sysctl_physinfo per release family.
PHYSINFO_LAYOUTS: dict[str, Layout] = {
    # 4.3-4.9: capabilities at the end, no max_mfn.
    "4.3": _layout(
        "physinfo-4.3",
        (*_PHYS_TOPO, ("_pad", "4x"), *_PHYS_MEM, ("hw_cap", "32s"), ("capabilities", "I"), ("_pad2", "4x")),
    ),
    # 4.10-4.16: capabilities after cpu_khz, max_mfn added.
    "4.10": _layout(
        "physinfo-4.10",
        (*_PHYS_TOPO, ("capabilities", "I"), *_PHYS_MEM, ("max_mfn", "Q"), ("hw_cap", "32s")),
    ),
    # 4.17+: arch_capabilities and padding after capabilities.
    "4.17": _layout(
        "physinfo-4.17",
        (
            *_PHYS_TOPO,
            ("capabilities", "I"),
            ("arch_capabilities", "I"),
            ("_pad", "4x"),
            *_PHYS_MEM,
            ("max_mfn", "Q"),
            ("hw_cap", "32s"),
        ),
    ),
}


# (major, minor, first patch release) -> (domctl, sysctl) interface versions, from the CSV.
# A row applies from its patch release up to the next row of the same minor.
RELEASES: tuple[tuple[int, int, int, int, int], ...] = (
    (4, 2, 0, 0x08, 0x09),
    (4, 3, 0, 0x09, 0x0A),
    (4, 4, 0, 0x09, 0x0A),
    (4, 5, 0, 0x0A, 0x0B),
    (4, 6, 0, 0x0B, 0x0C),
    (4, 7, 0, 0x0B, 0x0D),
    (4, 8, 0, 0x0C, 0x0E),
    (4, 9, 0, 0x0D, 0x0F),
    (4, 10, 0, 0x0E, 0x10),
    (4, 10, 1, 0x0F, 0x10),  # the domctl version changed inside the 4.10 stable series
    (4, 11, 0, 0x10, 0x11),
    (4, 12, 0, 0x11, 0x12),
    (4, 13, 0, 0x12, 0x12),
    (4, 14, 0, 0x12, 0x13),
    (4, 15, 0, 0x13, 0x13),
    (4, 16, 0, 0x14, 0x14),
    (4, 17, 0, 0x15, 0x15),
    (4, 18, 0, 0x16, 0x15),
    (4, 19, 0, 0x17, 0x15),
    (4, 20, 0, 0x17, 0x15),
    (4, 21, 0, 0x17, 0x16),
    (4, 22, 0, 0x18, 0x16),
)

#: Every known domctl / sysctl interface version, ascending.
DOMCTL_VERSIONS: tuple[int, ...] = tuple(sorted({r[3] for r in RELEASES}))
SYSCTL_VERSIONS: tuple[int, ...] = tuple(sorted({r[4] for r in RELEASES}))


def dominfo_layout(domctl_version: int) -> Layout | None:
    """The getdomaininfo layout that goes with a domctl interface version (None: unknown)."""
    if 0x14 <= domctl_version <= 0x18:
        return DOMINFO_LAYOUTS["4.16"]
    if 0x10 <= domctl_version <= 0x13:
        return DOMINFO_LAYOUTS["4.11"]
    if 0x09 <= domctl_version <= 0x0F:
        return DOMINFO_LAYOUTS["4.3"]
    if domctl_version == 0x08:
        return DOMINFO_LAYOUTS["4.2"]
    return None


def physinfo_layout(sysctl_version: int) -> Layout | None:
    """The physinfo layout that goes with a sysctl interface version (None: unknown)."""
    if 0x15 <= sysctl_version <= 0x16:
        return PHYSINFO_LAYOUTS["4.17"]
    if 0x10 <= sysctl_version <= 0x14:
        return PHYSINFO_LAYOUTS["4.10"]
    if 0x0A <= sysctl_version <= 0x0F:
        return PHYSINFO_LAYOUTS["4.3"]
    return None  # 4.2's physinfo layout is not in the reference: unsupported


class Abi(_Abi):
    """The interface versions to send to one hypervisor, and what they were chosen from
    (known False: the release is not in the table, the versions are a best guess)."""

    __slots__ = ()

    @property
    def dominfo(self) -> Layout:
        layout = dominfo_layout(self.domctl)
        assert layout is not None  # every version in DOMCTL_VERSIONS has one
        return layout

    @property
    def physinfo(self) -> Layout:
        layout = physinfo_layout(self.sysctl)
        assert layout is not None
        return layout


def _patch_level(extra: str) -> int:
    """'.7' -> 7, '.1-pre' -> 1, '' or '-rc' -> 0: the digits after the leading dot."""
    s = extra[1:] if extra.startswith(".") else ""
    digits = ""
    for ch in s:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


def abi_for(major: int, minor: int, extra: str = "") -> Abi:
    """Pick the interface versions for Xen ``major.minor`` with extraversion ``extra`` ('.1')."""
    patch = _patch_level(extra)
    best: tuple[int, int, int, int, int] | None = None
    for row in RELEASES:
        if row[0] == major and row[1] == minor and row[2] <= patch:
            best = row
    if best is not None and physinfo_layout(best[4]) is not None:
        return Abi(best[3], best[4], True)
    # Unknown release: newer than the table -> start from the newest, older -> the oldest; the
    # probe on EACCES (see *_candidates) then finds the real one if it is any version we know.
    newest = RELEASES[-1]
    if (major, minor) > newest[:2]:
        return Abi(newest[3], newest[4], False)
    oldest = RELEASES[1]  # 4.3: the oldest with both layouts known
    return Abi(oldest[3], oldest[4], False)


def _by_distance(first: int, known: tuple[int, ...]) -> tuple[int, ...]:
    # Nearest first; on a tie the newer one first (distro backports move forward).
    return (first, *sorted((v for v in known if v != first), key=lambda v: (abs(v - first), -v)))


def domctl_candidates(first: int) -> tuple[int, ...]:
    """Domctl versions to try, ``first`` then the other known ones nearest first."""
    return _by_distance(first, tuple(v for v in DOMCTL_VERSIONS if dominfo_layout(v) is not None))


def sysctl_candidates(first: int) -> tuple[int, ...]:
    return _by_distance(first, tuple(v for v in SYSCTL_VERSIONS if physinfo_layout(v) is not None))


class DomInfo(_DomInfo):
    """The fields of one xen_domctl_getdomaininfo this plugin uses, release-independent."""

    __slots__ = ()


class PhysInfo(_PhysInfo):
    """The fields of xen_sysctl_physinfo this plugin uses."""

    __slots__ = ()


_ALIASES = {"domid": "domain"}


def picker(layout: Layout, record: type[DomInfo] | type[PhysInfo]) -> tuple[struct.Struct, Callable[..., Any]]:
    """A compact decoder for ``record`` in ``layout``: (a Struct of the same size that unpacks
    only the record's fields, skipping the rest as padding; a function from its tuple to the
    record). Hot path: decoding 8 fields instead of 20 and no reordering where orders agree."""
    wanted = {_ALIASES.get(f, f) for f in record._fields}
    fmt = "<"
    for field, code in zip(layout.fields, layout.codes, strict=True):
        fmt += code if field in wanted else f"{struct.calcsize('<' + code)}x"
    compact = struct.Struct(fmt)
    # Padding between fields: rebuild from offsets so the compact struct keeps the same size.
    if compact.size != layout.struct.size:
        fmt, pos = "<", 0
        for field, code, off in zip(layout.fields, layout.codes, layout.offsets, strict=True):
            if off > pos:
                fmt += f"{off - pos}x"
            size = struct.calcsize("<" + code)
            fmt += code if field in wanted else f"{size}x"
            pos = off + size
        if layout.struct.size > pos:
            fmt += f"{layout.struct.size - pos}x"
        compact = struct.Struct(fmt)
    order = [f for f in layout.fields if f in wanted]
    names = [_ALIASES.get(f, f) for f in record._fields]
    if order == names:
        return compact, record._make
    get = operator.itemgetter(*(order.index(n) for n in names))
    make = record._make

    def pick(values: tuple[Any, ...]) -> Any:
        return make(get(values))

    return compact, pick


def state_from_flags(flags: int) -> tuple[DomainState, str | None]:
    """XEN_DOMINF_* flags to (state, reason), with xl's letters in mind (r b p s c d).

    Precedence: dying, then crashed (shutdown with code crash, as libxc reports it), shut down
    (reason = the SHUTDOWN_* code), paused, running, blocked. The hypervisor sets running or
    blocked only when the domain has online vcpus: neither means no state.
    """
    code = (flags >> SHUTDOWN_SHIFT) & 0xFF
    shutdown = flags & DOMINF_SHUTDOWN
    reason = (SHUTDOWN_REASONS[code] if code < len(SHUTDOWN_REASONS) else f"code {code}") if shutdown else None
    if flags & DOMINF_DYING:
        return DomainState.DYING, reason
    if shutdown:
        return (DomainState.CRASHED if code == SHUTDOWN_CRASH else DomainState.SHUTDOWN), reason
    if flags & DOMINF_PAUSED:
        return DomainState.PAUSED, None
    if flags & DOMINF_RUNNING:
        return DomainState.RUNNING, None
    if flags & DOMINF_BLOCKED:
        return DomainState.BLOCKED, None
    return DomainState.NOSTATE, None
