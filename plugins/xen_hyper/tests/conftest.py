"""A simulated hypervisor for the host tests: it answers hypercalls the way a given Xen release
does, reading and writing the caller's hypercall buffer by address as Xen would.

Encodings use the reference layouts written out here independently of the plugin's tables
(shared/reference/hypercalls.md section 5), so a wrong layout in the plugin fails the tests.
"""

from __future__ import annotations

import errno
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from virtkit_xen_hyper._hyper import LIST_PAGES, Hypervisor
from virtkit_xen_hyper._privcmd import HypercallBuffer

# (release, domctl, sysctl, getdomaininfo format, physinfo format) -- the reference's formats.
F_DOM_88 = "<HxxI6QIII16sI"
F_DOM_96 = "<HxxI7QIII16sI"
F_DOM_104 = "<HxxI7QIII16sI8s"
F_DOM_112 = "<HHI7QIII16sIB7xII"
F_PHYS_OLD = "<7I4x4Q8II4x"
F_PHYS_104 = "<8I5Q8I"
F_PHYS_112 = "<10I5Q8I"

RELEASE_ABI: dict[str, tuple[int, int, str, str]] = {
    "4.5.0": (0x0A, 0x0B, F_DOM_96, F_PHYS_OLD),
    "4.9.4": (0x0D, 0x0F, F_DOM_96, F_PHYS_OLD),
    "4.10.0": (0x0E, 0x10, F_DOM_96, F_PHYS_104),
    "4.10.1": (0x0F, 0x10, F_DOM_96, F_PHYS_104),
    "4.10.4": (0x0F, 0x10, F_DOM_96, F_PHYS_104),
    "4.11.0": (0x10, 0x11, F_DOM_104, F_PHYS_104),
    "4.12.4": (0x11, 0x12, F_DOM_104, F_PHYS_104),
    "4.13.5": (0x12, 0x12, F_DOM_104, F_PHYS_104),
    "4.14.6": (0x12, 0x13, F_DOM_104, F_PHYS_104),
    "4.15.7": (0x13, 0x13, F_DOM_104, F_PHYS_104),
    "4.16.7": (0x14, 0x14, F_DOM_112, F_PHYS_104),
    "4.17.7": (0x15, 0x15, F_DOM_112, F_PHYS_112),
    "4.18.6": (0x16, 0x15, F_DOM_112, F_PHYS_112),
    "4.19.6": (0x17, 0x15, F_DOM_112, F_PHYS_112),
    "4.20.4": (0x17, 0x15, F_DOM_112, F_PHYS_112),
    "4.21.2": (0x17, 0x16, F_DOM_112, F_PHYS_112),
    "4.22.0": (0x18, 0x16, F_DOM_112, F_PHYS_112),
}

PAGE = 4096


@dataclass
class FakeDomain:
    domid: int
    handle: bytes
    flags: int = 1 << 4  # blocked
    tot_pages: int = 32768
    max_pages: int = 33024
    cpu_time: int = 1_000_000_000
    online: int = 1
    max_vcpu_id: int = 0
    pause_count: int = 0
    # per vcpu (online, blocked, running, cpu_time ns, physical cpu); empty: derived from the above
    vcpus: list[tuple[int, int, int, int, int]] = field(default_factory=list)

    def vcpu(self, n: int) -> tuple[int, int, int, int, int]:
        if self.vcpus:
            return self.vcpus[n]
        share = self.cpu_time // max(1, self.online)
        return (1, 1, 0, share, n % 2) if n < self.online else (0, 0, 0, 0, 0)


@dataclass
class FakeXen:
    """Xen ``release`` (e.g. '4.17.7'); override ``domctl``/``sysctl`` for a distro backport."""

    release: str
    buf: HypercallBuffer
    domctl: int = -1
    sysctl: int = -1
    domains: dict[int, FakeDomain] = field(default_factory=dict)
    calls: list[tuple[int, int]] = field(default_factory=list)  # (hypercall, cmd)
    deny: int | None = None  # errno for every domctl/sysctl (XSM denial)
    self_id: int = 0
    dom_format: str = ""  # the getdomaininfo layout, when a backport changed it
    free_pages: int = 1048576  # physinfo's free memory (4 GiB)

    def __post_init__(self) -> None:
        major, minor, patch = (int(x) for x in self.release.split("."))
        self.major, self.minor, self.patch = major, minor, patch
        d, s, fdom, fphys = RELEASE_ABI.get(self.release, (0x18, 0x16, F_DOM_112, F_PHYS_112))
        self.domctl = d if self.domctl < 0 else self.domctl
        self.sysctl = s if self.sysctl < 0 else self.sysctl
        self.fdom = struct.Struct(self.dom_format or fdom)
        self.fphys = struct.Struct(fphys)
        self.add(0, uuid.UUID(int=0), flags=1 << 5, online=1)

    def add(self, domid: int, handle: uuid.UUID | None = None, **kw: int) -> FakeDomain:
        h = (handle or uuid.uuid4()).bytes
        dom = FakeDomain(domid, h, **kw)
        self.domains[domid] = dom
        return dom

    # -- memory by address, as Xen sees it ------------------------------------------------------

    def _off(self, addr: int, size: int) -> int:
        off = addr - self.buf.addr
        if not 0 <= off <= self.buf.size - size:
            raise OSError(errno.EFAULT, "address outside the hypercall buffer")
        return off

    def _encode(self, d: FakeDomain) -> bytes:
        flags = d.flags | (1 << 3 if d.pause_count else 0)
        common_head = (d.domid, flags, d.tot_pages, d.max_pages)
        tail = (0, 0, 0, d.cpu_time, d.online, d.max_vcpu_id, 0, d.handle, 0)
        n = self.fdom.size
        if n == 88:
            return self.fdom.pack(*common_head, *tail)
        if n == 96:
            return self.fdom.pack(*common_head, 0, *tail)
        if n == 104:
            return self.fdom.pack(*common_head, 0, *tail, b"\0" * 8)
        return self.fdom.pack(d.domid, 0, flags, d.tot_pages, d.max_pages, 0, *tail, 40, 0, 0)

    # -- the hypercall -------------------------------------------------------------------------

    def __call__(self, op: int, a0: int, a1: int) -> int:
        mem = self.buf.mem
        if op == 17:  # xen_version
            if a0 == 0:
                return (self.major << 16) | self.minor
            if a0 == 1:
                off = self._off(a1, 16)
                mem[off : off + 16] = f".{self.patch}".encode().ljust(16, b"\0")
                return 0
            raise OSError(errno.ENOSYS, "xen_version cmd")
        if op == 36:
            off = self._off(a0, 144)
            cmd, ver, domid = struct.unpack_from("<IIH", mem, off)
            self.calls.append((op, cmd))
            if ver != self.domctl:
                raise OSError(errno.EACCES, "interface version")
            if self.deny is not None:
                raise OSError(self.deny, "denied")
            return self._domctl(cmd, domid, off)
        if op == 35:
            off = self._off(a0, 136)
            cmd, ver = struct.unpack_from("<II", mem, off)
            self.calls.append((op, cmd))
            if ver != self.sysctl:
                raise OSError(errno.EACCES, "interface version")
            if self.deny is not None:
                raise OSError(self.deny, "denied")
            return self._sysctl(cmd, off)
        raise OSError(errno.ENOSYS, f"hypercall {op}")

    def _domctl(self, cmd: int, domid: int, off: int) -> int:
        mem = self.buf.mem
        if domid >= 0x7FF0:
            raise OSError(errno.EINVAL, "reserved domid")
        if cmd == 5:  # getdomaininfo
            if (self.major, self.minor) >= (4, 18):
                dom = self.domains.get(domid)
            else:  # up to 4.17: the first domain with id >= domid
                dom = next((self.domains[i] for i in sorted(self.domains) if i >= domid), None)
            if dom is None:
                raise OSError(errno.ESRCH, "no domain")
            mem[off + 16 : off + 16 + self.fdom.size] = self._encode(dom)
            struct.pack_into("<H", mem, off + 8, dom.domid)
            return 0
        dom = self.domains.get(domid)
        if dom is None:
            raise OSError(errno.ESRCH, "no domain")
        if cmd == 3:  # pause
            if domid == self.self_id:
                raise OSError(errno.EINVAL, "pausing ourselves")
            dom.pause_count += 1
        elif cmd == 4:  # unpause
            if dom.pause_count == 0:
                raise OSError(errno.EINVAL, "not paused")
            dom.pause_count -= 1
        elif cmd == 2:  # destroy
            del self.domains[domid]
        elif cmd == 14:  # getvcpuinfo: the reference's 24-byte layout, "<IBBBxQI4x" written out
            (vcpu,) = struct.unpack_from("<I", mem, off + 16)
            if vcpu > dom.max_vcpu_id or dom.max_vcpu_id == 0xFFFFFFFF:
                raise OSError(errno.EINVAL, "vcpu >= max_vcpus")
            online, blocked, running, cpu_time, cpu = dom.vcpu(vcpu)
            struct.pack_into("<I", mem, off + 16, vcpu)
            mem[off + 20], mem[off + 21], mem[off + 22] = online, blocked, running
            struct.pack_into("<Q", mem, off + 24, cpu_time)
            struct.pack_into("<I", mem, off + 32, cpu)
        elif cmd == 11:  # max_mem
            (kib,) = struct.unpack_from("<Q", mem, off + 16)
            dom.max_pages = kib >> 2
        else:
            raise OSError(errno.ENOSYS, f"domctl {cmd}")
        return 0

    def _sysctl(self, cmd: int, off: int) -> int:
        mem = self.buf.mem
        if cmd == 3:  # physinfo: 2 nodes x 2 sockets x 4 cores x 2 threads, 8 GiB, 2.4 GHz
            if self.fphys.size == 112:
                vals = (2, 4, 32, 31, 2, 1, 2_400_000, 0b11, 0, 0, 2097152, self.free_pages, 0, 0, 2097151, *[0] * 8)
            elif self.fphys.format == F_PHYS_104:
                vals = (2, 4, 32, 31, 2, 1, 2_400_000, 0b11, 2097152, self.free_pages, 0, 0, 2097151, *[0] * 8)
            else:
                vals = (2, 4, 32, 31, 2, 1, 2_400_000, 2097152, self.free_pages, 0, 0, *[0] * 8, 0b11)
            mem[off + 8 : off + 8 + self.fphys.size] = self.fphys.pack(*vals)
            return 0
        if cmd == 6:  # getdomaininfolist
            first, maxd, handle, _ = struct.unpack_from("<HxxIQI4x", mem, off + 8)
            doms = [self.domains[i] for i in sorted(self.domains) if i >= first][:maxd]
            size = self.fdom.size
            out = self._off(handle, size * len(doms)) if doms else 0
            for i, d in enumerate(doms):
                mem[out + i * size : out + (i + 1) * size] = self._encode(d)
            struct.pack_into("<I", mem, off + 24, len(doms))
            return 0
        raise OSError(errno.ENOSYS, f"sysctl {cmd}")


@pytest.fixture
def fake_xen() -> Iterator[Callable[..., tuple[FakeXen, Hypervisor]]]:
    """``fake_xen(release, **overrides)`` -> (the simulated Xen, a Hypervisor talking to it)."""
    made: list[Hypervisor] = []

    def make(release: str = "4.17.7", **kw: object) -> tuple[FakeXen, Hypervisor]:
        buf = HypercallBuffer(1 + LIST_PAGES, device=None)
        xen = FakeXen(release, buf, **kw)  # type: ignore[arg-type]
        hv = Hypervisor(xen, buf)
        made.append(hv)
        return xen, hv

    yield make
    for hv in made:
        hv.close()
