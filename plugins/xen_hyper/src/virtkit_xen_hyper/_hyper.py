"""Hypercalls with the right ABI: xen_version, domctl and sysctl over one reused buffer.

``Hypervisor`` owns one hypercall-safe buffer: page 0 holds the xen_domctl / xen_sysctl being
issued, the following pages the getdomaininfolist output array. The interface versions come
from the hypervisor's own version; the first EACCES probes the other known versions, because an
exact match is required and a distro may have backported an ABI change.
"""

from __future__ import annotations

import errno
import functools
import struct
import threading
from collections.abc import Callable

from virtkit import DriverError, InvalidOperation, NoSuchDomain, PermissionDenied, Unsupported, Version

from . import _abi as A
from ._privcmd import PAGE_SIZE, HypercallBuffer

__all__ = ["LIST_PAGES", "Hypervisor", "HypervisorCall"]

#: Pages for the getdomaininfolist array: 146 domains per sysctl with 4.16+'s 112-byte entries.
LIST_PAGES = 4

#: ``call(op, arg0, arg1) -> int``: one hypercall; a Xen error raises OSError(errno).
HypervisorCall = Callable[[int, int, int], int]
#: ``prepare(op, arg0, arg1) -> issue``: the same hypercall, packed once (Privcmd.prepared).
PrepareCall = Callable[[int, int, int], Callable[[], int]]

_ZERO = bytes(PAGE_SIZE)
_DOMID = struct.Struct("<H")
_PHYSINFO_KEY = (False, A.SYSCTL_PHYSINFO)


class Hypervisor:
    """The hypercalls the driver needs; thread-safe (one lock around the shared buffer)."""

    __slots__ = (
        "_call",
        "_close",
        "_dctl_ok",
        "_dctl_ver",
        "_dom_struct",
        "_extra",
        "_lock",
        "_phys_direct",
        "_phys_fast",
        "_phys_struct",
        "_pick_dom",
        "_pick_phys",
        "_prepare",
        "_sctl_ok",
        "_sctl_ver",
        "_templates",
        "abi",
        "buf",
        "version",
    )

    def __init__(
        self,
        call: HypervisorCall,
        buf: HypercallBuffer,
        *,
        close: Callable[[], None] | None = None,
        prepare: PrepareCall | None = None,
    ) -> None:
        if buf.size < (1 + LIST_PAGES) * PAGE_SIZE:
            raise ValueError("the hypercall buffer needs 1 + LIST_PAGES pages")
        self._call = call
        self._prepare = prepare or (lambda op, a0, a1: functools.partial(call, op, a0, a1))
        self._phys_fast: Callable[[], tuple[int, ...]] | None = None
        self._close = close
        self.buf = buf
        self._lock = threading.Lock()
        self.version = self._read_version()
        self.abi = A.abi_for(self.version.major, self.version.minor, self._extra)
        self._dctl_ok = False  # becomes True at the first domctl Xen accepts
        self._sctl_ok = False
        # (domctl?, cmd) -> the zeroed request with its header, once the version is confirmed:
        # one slice assignment per call instead of zeroing and packing.
        self._templates: dict[tuple[bool, int], bytes] = {}
        self._set_domctl(self.abi.domctl)
        self._set_sysctl(self.abi.sysctl)

    # -- version -------------------------------------------------------------------------------

    def _read_version(self) -> Version:
        v = self._call(A.HYPERVISOR_XEN_VERSION, A.XENVER_VERSION, 0)
        mem = self.buf.mem
        mem[0:16] = _ZERO[:16]
        self._call(A.HYPERVISOR_XEN_VERSION, A.XENVER_EXTRAVERSION, self.buf.addr)
        self._extra = bytes(mem[0:16]).split(b"\0", 1)[0].decode("ascii", "replace")
        return Version(v >> 16, v & 0xFFFF, A._patch_level(self._extra))

    @property
    def extraversion(self) -> str:
        return self._extra

    # -- ABI selection ------------------------------------------------------------------------

    def _set_domctl(self, ver: int) -> None:
        layout = A.dominfo_layout(ver)
        assert layout is not None
        self._dctl_ver = ver
        self._dom_struct, self._pick_dom = A.picker(layout, A.DomInfo)

    def _set_sysctl(self, ver: int) -> None:
        layout = A.physinfo_layout(ver)
        assert layout is not None
        self._sctl_ver = ver
        self._phys_struct, self._pick_phys = A.picker(layout, A.PhysInfo)
        self._phys_direct = self._pick_phys == A.PhysInfo._make  # same field order: no reordering

    @property
    def interface_versions(self) -> tuple[int, int]:
        """(domctl, sysctl) versions in use: confirmed by Xen once a call of each kind succeeded."""
        return self._dctl_ver, self._sctl_ver

    def _unsupported(self, kind: str, tried: tuple[int, ...]) -> Unsupported:
        v = self.version
        return Unsupported(
            f"unsupported Xen ABI {v.major}.{v.minor}: the hypervisor refused every known {kind} "
            f"interface version ({', '.join(f'{t:#x}' for t in tried)}) with EACCES"
            + ("" if self.abi.known else " (this Xen release is newer or older than the plugin's table)")
            + "; an XSM policy denying this domain would look the same"
        )

    def _issue(self, domctl: bool, cmd: int, domid: int, fill: bytes | None) -> None:
        """Issue one domctl/sysctl from page 0, probing interface versions on the first EACCES."""
        mem = self.buf.mem
        template = self._templates.get((domctl, cmd))
        if template is not None:  # the version is confirmed: the common case
            mem[0 : len(template)] = template
            if domctl:
                _DOMID.pack_into(mem, 8, domid)
                if fill:
                    mem[A.DOMCTL_UNION : A.DOMCTL_UNION + len(fill)] = fill
                self._call(A.HYPERVISOR_DOMCTL, self.buf.addr, 0)
            else:
                if fill:
                    mem[A.SYSCTL_UNION : A.SYSCTL_UNION + len(fill)] = fill
                self._call(A.HYPERVISOR_SYSCTL, self.buf.addr, 0)
            return
        if domctl:
            hcall, size, union, ver, ok = (
                A.HYPERVISOR_DOMCTL,
                A.DOMCTL_SIZE,
                A.DOMCTL_UNION,
                self._dctl_ver,
                self._dctl_ok,
            )
        else:
            hcall, size, union, ver, ok = (
                A.HYPERVISOR_SYSCTL,
                A.SYSCTL_SIZE,
                A.SYSCTL_UNION,
                self._sctl_ver,
                self._sctl_ok,
            )
        candidates = (ver,) if ok else (A.domctl_candidates(ver) if domctl else A.sysctl_candidates(ver))
        for v in candidates:
            mem[0:size] = _ZERO[:size]  # Xen reads union padding for some ops: always zero it
            if domctl:
                A.HEADER_DOMCTL.pack_into(mem, 0, cmd, v, domid)
            else:
                A.HEADER_SYSCTL.pack_into(mem, 0, cmd, v)
            if fill:
                mem[union : union + len(fill)] = fill
            try:
                self._call(hcall, self.buf.addr, 0)
            except OSError as exc:
                if exc.errno == errno.EACCES and not ok:
                    continue  # not this version (or not allowed at all): try the next
                if not ok:
                    self._accept(domctl, v)  # any other answer means Xen accepted the version
                raise
            if not ok:
                self._accept(domctl, v)
            req = bytearray(size)
            if domctl:
                A.HEADER_DOMCTL.pack_into(req, 0, cmd, v, 0)
            else:
                A.HEADER_SYSCTL.pack_into(req, 0, cmd, v)
            self._templates[domctl, cmd] = bytes(req)
            return
        raise self._unsupported("domctl" if domctl else "sysctl", candidates)

    def _accept(self, domctl: bool, ver: int) -> None:
        self._templates = {k: t for k, t in self._templates.items() if k[0] != domctl}
        if domctl:
            if ver != self._dctl_ver:
                self._set_domctl(ver)
            self._dctl_ok = True
        else:
            if ver != self._sctl_ver:
                self._set_sysctl(ver)
            self._sctl_ok = True

    def _domctl(self, cmd: int, domid: int, fill: bytes | None = None) -> None:
        self._issue(True, cmd, domid, fill)

    def _sysctl(self, cmd: int, fill: bytes | None = None) -> None:
        self._issue(False, cmd, 0, fill)

    # -- operations ----------------------------------------------------------------------------

    def physinfo(self) -> A.PhysInfo:
        return A.PhysInfo._make(self.physinfo_values())

    def physinfo_values(self) -> tuple[int, ...]:
        """PhysInfo's fields as a plain tuple: the driver's hot path skips the record."""
        fast = self._phys_fast
        if fast is not None:
            return fast()
        with self._lock:
            try:
                self._sysctl(A.SYSCTL_PHYSINFO)
            except OSError as exc:
                raise _error(exc, "physinfo") from exc
            values = self._phys_struct.unpack_from(self.buf.mem, A.SYSCTL_UNION)
            template = self._templates.get(_PHYSINFO_KEY)  # set once Xen accepted the version
        if not self._phys_direct:
            return tuple(self._pick_phys(values))
        if template is not None:
            self._phys_fast = self._make_phys_fast(template)
        return values

    def _make_phys_fast(self, template: bytes) -> Callable[[], tuple[int, ...]]:
        # Node info is the cheapest query there is, so under emulation every Python step shows
        # against the C binding: everything is bound once, the hypercall's arguments packed once.
        lock, mem, n = self._lock, self.buf.mem, len(template)
        issue = self._prepare(A.HYPERVISOR_SYSCTL, self.buf.addr, 0)
        unpack, off = self._phys_struct.unpack_from, A.SYSCTL_UNION

        def physinfo() -> tuple[int, ...]:
            with lock:
                mem[0:n] = template
                try:
                    issue()
                except OSError as exc:
                    raise _error(exc, "physinfo") from exc
                values: tuple[int, ...] = unpack(mem, off)
                return values

        return physinfo

    def dominfo(self, domid: int) -> A.DomInfo:
        """One domain's info; NoSuchDomain when ``domid`` does not exist."""
        if not 0 <= domid < A.DOMID_FIRST_RESERVED:
            raise NoSuchDomain(f"no domain with id {domid}")
        with self._lock:
            try:
                self._domctl(A.DOMCTL_GETDOMAININFO, domid)
            except OSError as exc:
                raise _error(exc, "getdomaininfo", domid) from exc
            info: A.DomInfo = self._pick_dom(self._dom_struct.unpack_from(self.buf.mem, A.DOMCTL_UNION))
        if info.domid != domid:  # up to 4.17 Xen answers with the next domain id >= domid
            raise NoSuchDomain(f"no domain with id {domid}")
        return info

    def domains(self) -> list[A.DomInfo]:
        """Every domain, one getdomaininfolist sysctl per batch of up to ~146."""
        out: list[A.DomInfo] = []
        first = 0
        mem = self.buf.mem
        with self._lock:
            if not self._dctl_ok:
                # The array holds domctl structs: make Xen confirm the domctl version (and so
                # the layout) before trusting it, in case only the sysctl side matches.
                try:
                    self._domctl(A.DOMCTL_GETDOMAININFO, 0)
                except OSError:
                    pass  # accepted, just refused (XSM): the version is confirmed all the same
            while True:
                size = self._dom_struct.size
                batch = LIST_PAGES * PAGE_SIZE // size
                fill = A.GETDOMAININFOLIST.pack(first, batch, self.buf.addr + PAGE_SIZE, 0)
                try:
                    self._sysctl(A.SYSCTL_GETDOMAININFOLIST, fill)
                except OSError as exc:
                    raise _error(exc, "getdomaininfolist") from exc
                n = A.GETDOMAININFOLIST.unpack_from(mem, A.SYSCTL_UNION)[3]
                if n > batch:
                    raise DriverError(f"getdomaininfolist returned {n} domains for a buffer of {batch}")
                pick = self._pick_dom
                with memoryview(mem) as view:
                    chunk = view[PAGE_SIZE : PAGE_SIZE + n * size]
                    try:
                        out.extend(map(pick, self._dom_struct.iter_unpack(chunk)))
                    finally:
                        chunk.release()
                if n < batch:
                    return out
                first = out[-1].domid + 1

    def vcpus(self, domid: int, count: int) -> list[tuple[int, int, int, int, int, int]]:
        """``getvcpuinfo`` of vcpus 0..count-1: (vcpu, online, blocked, running, cpu_time ns,
        physical cpu) each, one domctl per vcpu under one hold of the lock; NoSuchDomain when
        the domain is gone (Xen says ESRCH for a missing domain and a missing vcpu alike, and
        ``count`` comes from the domain's own max_vcpu_id)."""
        out = []
        mem, unpack, at, pack = self.buf.mem, A.GETVCPUINFO.unpack_from, A.DOMCTL_UNION, A.GETVCPUINFO_IN.pack
        with self._lock:
            for vcpu in range(count):
                try:
                    self._domctl(A.DOMCTL_GETVCPUINFO, domid, pack(vcpu))
                except OSError as exc:
                    raise _error(exc, "getvcpuinfo", domid) from exc
                _n, online, blocked, running, cpu_time, cpu = unpack(mem, at)
                out.append((vcpu, online, blocked, running, cpu_time, cpu))
        return out

    def _simple(self, cmd: int, what: str, domid: int, fill: bytes | None = None) -> None:
        with self._lock:
            try:
                self._domctl(cmd, domid, fill)
            except OSError as exc:
                raise _error(exc, what, domid) from exc

    def pause(self, domid: int) -> None:
        self._simple(A.DOMCTL_PAUSEDOMAIN, "pause", domid)

    def unpause(self, domid: int) -> None:
        self._simple(A.DOMCTL_UNPAUSEDOMAIN, "unpause", domid)

    def destroy(self, domid: int) -> None:
        self._simple(A.DOMCTL_DESTROYDOMAIN, "destroy", domid)

    def set_max_mem(self, domid: int, kib: int) -> None:
        self._simple(A.DOMCTL_MAX_MEM, "max_mem", domid, A.MAX_MEM.pack(kib))

    def close(self) -> None:
        with self._lock:
            self.buf.close()
            if self._close is not None:
                self._close()
                self._close = None


def _error(exc: OSError, what: str, domid: int | None = None) -> Exception:
    """A Xen error from an accepted call, typed."""
    on = f" on domain {domid}" if domid is not None else ""
    e = exc.errno
    if e == errno.ESRCH:
        return NoSuchDomain(f"no domain with id {domid}" if domid is not None else f"{what}: no such domain")
    if e in (errno.EPERM, errno.EACCES):
        return PermissionDenied(f"Xen refused {what}{on}: {exc.strerror}")
    if e == errno.EINVAL:
        return InvalidOperation(f"Xen refused {what}{on} as invalid in the domain's state (EINVAL)")
    return DriverError(f"{what}{on} failed: {exc.strerror or exc}")
