"""Statistics of the devices xenstore names (catalogue 1.1): groups block and net.

Xenstore names each domain's disks and interfaces under dom0's backend tree
(``/local/domain/0/backend/{vbd,vif}/DOMID/DEVID``: ``dev`` and ``params`` of a disk, ``mac``
and an optional ``vifname`` of an interface); the counters are dom0's, in sysfs: blkback's
``vbd-DOMID-DEVID/statistics`` and netback's ``vifDOMID.DEVID`` interface, whose rx and tx are
swapped to be the guest's (what dom0 sends, the guest receives), as libvirt and xentop do. Only
devices whose backend is this domain (dom0) are seen: a driver domain's counters are in its own
sysfs. State, cpu time and memory are the hypervisor's (xen_hyper).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from uuid import UUID

import virtkit
from virtkit import DomainRef, InvalidArgument, InvalidOperation, NoSuchDomain, check_flags, stats_groups

from . import _sysfs
from ._wire import decimal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from virtkit import BlockStats, DomainStats, InterfaceStats

    from ._client import Client

__all__ = ["StatsMixin"]

_ROOT = "/local/domain"
_BACKEND = "/local/domain/0/backend"
_DOMID_DIGITS = 5
_DEVID_DIGITS = 10
_NIL = UUID(int=0)
_VBD, _VIF = "vbd", "vif"
_VBD_KEYS = ("dev", "params")
_VIF_KEYS = ("vifname", "mac")
#: (stats group, backend kind, the two keys read of each device)
_KINDS = (("block", _VBD, _VBD_KEYS), ("net", _VIF, _VIF_KEYS))
_UNCONNECTED = "its backend is not connected"

#: One device: (devid, the two keys' values as text, None where absent).
Device = tuple[int, str | None, str | None]


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "surrogateescape").strip("\0")


def _block(domid: int, dev: Device, counters: Sequence[int]) -> BlockStats:
    rd_req, wr_req, f_req, rd_sect, wr_sect = counters
    devid, name, params = dev
    # oo_req counts waits for a free request slot, not errors: errors stay None
    return virtkit.BlockStats(
        name or str(devid),
        rd_req,
        rd_sect * _sysfs.SECTOR,
        wr_req,
        wr_sect * _sysfs.SECTOR,
        f_req,
        path=params or None,
    )


def _ifname(domid: int, dev: Device) -> str:
    return dev[1] or f"vif{domid}.{dev[0]}"  # netback's name unless the config set vifname


def _net(name: str, dev: Device, c: Sequence[int]) -> InterfaceStats:
    rx_b, rx_p, rx_e, rx_d, tx_b, tx_p, tx_e, tx_d = c
    mac = (dev[2] or "").lower() or None
    return virtkit.InterfaceStats(name, tx_b, tx_p, rx_b, rx_p, tx_e, tx_d, rx_e, rx_d, mac)


class StatsMixin:
    """The stats operations of :class:`virtkit_xenstore.Driver` (mixed in)."""

    if TYPE_CHECKING:
        xs: Client
        sysfs_root: str

        def _domids(self) -> list[int]: ...
        def _uuid_of(self, vm: bytes | None) -> UUID: ...
        def _domid(self, dom: DomainRef, *, check: bool = False) -> int: ...

    # -- xenstore: which devices ------------------------------------------------------------------

    def _devices(
        self, kinds: Sequence[tuple[str, tuple[str, str]]], domids: Collection[int] | None
    ) -> list[dict[int, list[Device]]]:
        """Per kind (``vbd``, ``vif``) and domain id, its backends in dom0's tree: three round
        trips whatever the number of domains and kinds (the kinds' directories, then every
        domain's, then every device's two keys; each step's requests pipelined)."""
        tops = self.xs.directory_many([f"{_BACKEND}/{kind}" for kind, _keys in kinds])
        wanted: list[tuple[int, int]] = []  # (kind index, domid) of every listing asked for
        for i, children in enumerate(tops):
            for child in children or ():
                if decimal(child, _DOMID_DIGITS) and (domids is None or int(child) in domids):
                    wanted.append((i, int(child)))
        listings = self.xs.directory_many([f"{_BACKEND}/{kinds[i][0]}/{d}" for i, d in wanted]) if wanted else []
        per: list[dict[int, list[int]]] = [{} for _ in kinds]
        for (i, d), devs in zip(wanted, listings, strict=True):
            if devs is not None:  # None: its devices went away meanwhile
                per[i][d] = sorted(int(dev) for dev in devs if decimal(dev, _DEVID_DIGITS))
        paths = [
            f"{_BACKEND}/{kind}/{d}/{dev}/{k}"
            for (kind, keys), found in zip(kinds, per, strict=True)
            for d, devs in found.items()
            for dev in devs
            for k in keys
        ]
        values = iter(self.xs.read_many(paths)) if paths else iter(())
        return [
            {d: [(dev, _text(next(values)), _text(next(values))) for dev in devs] for d, devs in found.items()}
            for found in per
        ]

    def _blocks(self, domid: int, devs: Iterable[Device]) -> list[BlockStats]:
        out = []
        for dev in devs:
            c = _sysfs.block_counters(self.sysfs_root, domid, dev[0])
            if c is not None:  # no counters: the backend is not connected
                out.append(_block(domid, dev, c))
        return out

    def _nets(self, domid: int, devs: Iterable[Device]) -> list[InterfaceStats]:
        out = []
        for dev in devs:
            name = _ifname(domid, dev)
            c = _sysfs.net_counters(self.sysfs_root, name)
            if c is not None:
                out.append(_net(name, dev, c))
        return out

    def _refs(self, domains: list[DomainRef] | None) -> list[DomainRef]:
        """Every domain (None) or the named ones that still exist, with the names xenstore has."""
        domids = self._domids()
        raw = self.xs.read_many(p for d in domids for p in (f"{_ROOT}/{d}/name", f"{_ROOT}/{d}/vm"))
        mine: list[DomainRef] = []
        for i, domid in enumerate(domids):
            name = raw[2 * i]
            if name is None and domid != 0:
                continue  # gone, or not named yet
            mine.append(DomainRef(_text(name) or "Domain-0", self._uuid_of(raw[2 * i + 1]), domid))
        if domains is None:
            return mine
        by_id = {r.id: r for r in mine}
        by_uuid = {r.uuid: r for r in mine if r.uuid != _NIL}
        out = []
        for want in domains:
            got = by_id.get(want.id) if want.id is not None else by_uuid.get(want.uuid)
            if got is not None and (want.uuid == _NIL or got.uuid == _NIL or got.uuid == want.uuid):
                out.append(got)
        return out

    # -- operations ------------------------------------------------------------------------------

    @stats_groups("block", "net")
    def connect_get_all_domain_stats(
        self, groups: Iterable[str], domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        check_flags(flags)
        want = frozenset(groups)
        with self.xs.deadline():
            refs = self._refs(domains)
            ids = None if domains is None else {r.id for r in refs if r.id is not None}
            kinds = [(kind, keys) for group, kind, keys in _KINDS if group in want]
            found = dict(zip((kind for kind, _keys in kinds), self._devices(kinds, ids), strict=True))
            vbds, vifs = found.get("vbd", {}), found.get("vif", {})
        record = virtkit.DomainStats
        out = []
        for ref in refs:
            domid = ref.id or 0
            block = tuple(self._blocks(domid, vbds.get(domid, ()))) if "block" in want else None
            net = tuple(self._nets(domid, vifs.get(domid, ()))) if "net" in want else None
            out.append(record(ref, block=block, net=net))
        return out

    def _live(self, dom: DomainRef) -> int:
        domid = self._domid(dom, check=True)
        if not self.xs.exists(f"{_ROOT}/{domid}"):
            raise NoSuchDomain(f"no domain with id {domid}")
        return domid

    def domain_block_stats(self, dom: DomainRef, device: str, *, flags: int = 0) -> BlockStats:
        check_flags(flags)
        with self.xs.deadline():
            domid = self._live(dom)  # a missing domain is NoSuchDomain whatever the device
            if not isinstance(device, str):
                raise InvalidArgument(f"device must be a disk's name, got {type(device).__name__}")
            devs = self._devices(((_VBD, _VBD_KEYS),), (domid,))[0].get(domid, [])
        if device:
            devs = [d for d in devs if device in (d[1], d[2], str(d[0]))]
            if not devs:
                raise InvalidArgument(f"domain {domid} has no disk {device!r}"[:200])
        stats = self._blocks(domid, devs)
        if device:
            if not stats:
                raise InvalidOperation(
                    f"disk {device!r} of domain {domid} has no counters: its backend is not connected"
                )
            return stats[0]
        return _sum(stats)

    def domain_interface_stats(self, dom: DomainRef, device: str, *, flags: int = 0) -> InterfaceStats:
        check_flags(flags)
        with self.xs.deadline():
            domid = self._live(dom)  # a missing domain is NoSuchDomain whatever the device
            if not isinstance(device, str) or not device:
                raise InvalidArgument(f"device must be an interface's name or MAC address, got {device!r:.60}")
            devs = self._devices(((_VIF, _VIF_KEYS),), (domid,))[0].get(domid, [])
        low = device.lower()
        devs = [d for d in devs if device == _ifname(domid, d) or low == (d[2] or "").lower()]
        if not devs:
            raise InvalidArgument(f"domain {domid} has no interface {device!r}"[:200])
        stats = self._nets(domid, devs[:1])
        if not stats:
            raise InvalidOperation(
                f"interface {device!r} of domain {domid} has no counters: its backend is not connected"
            )
        return stats[0]


def _sum(stats: Sequence[BlockStats]) -> BlockStats:
    def total(name: str) -> Any:
        return sum(getattr(s, name) or 0 for s in stats)

    return virtkit.BlockStats(
        "",
        total("read_requests"),
        total("read_bytes"),
        total("write_requests"),
        total("write_bytes"),
        total("flush_requests"),
    )
