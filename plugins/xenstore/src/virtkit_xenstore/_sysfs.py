"""Dom0's backend counters in sysfs: blkback's per-disk and netback's per-interface statistics.

``root`` is the sysfs mount point (``/sys``; tests point it at a directory tree of their own).
A device whose directory is missing has no counters: its backend is not connected (yet, or any
more), and the caller leaves it out or says so.
"""

from __future__ import annotations

import os

from virtkit import DriverError

__all__ = ["BLOCK_FILES", "NET_FILES", "SECTOR", "block_counters", "net_counters"]

#: The blkback statistics/ files (drivers/block/xen-blkback/xenbus.c) the block group reports,
#: in this order; oo_req and ds_req (waits for a request slot, discards) are not read: a file
#: costs three system calls, each a trap through Xen in a PV dom0.
BLOCK_FILES = ("rd_req", "wr_req", "f_req", "rd_sect", "wr_sect")
#: struct rtnl_link_stats64 as /sys/class/net/IF/statistics shows it, seen from dom0.
NET_FILES = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")
#: blkback counts 512-byte sectors whatever the disk's logical block size.
SECTOR = 512


def _read(directory: str, names: tuple[str, ...]) -> tuple[int, ...] | None:
    out = []
    for name in names:
        try:
            fd = os.open(f"{directory}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            raw = os.read(fd, 64)
        finally:
            os.close(fd)
        text = raw.strip()
        if not (text.isdigit() and len(text) <= 20):  # sysfs prints a decimal u64
            raise DriverError(f"{directory}/{name} is not a counter: {raw[:40]!r}")
        out.append(int(text))
    return tuple(out)


def block_counters(root: str, domid: int, devid: int) -> tuple[int, ...] | None:
    """``BLOCK_FILES`` of backend device ``vbd-DOMID-DEVID``, or None when it has none."""
    return _read(f"{root}/bus/xen-backend/devices/vbd-{domid}-{devid}/statistics", BLOCK_FILES)


def net_counters(root: str, ifname: str) -> tuple[int, ...] | None:
    """``NET_FILES`` of dom0's interface ``ifname`` (e.g. ``vif3.0``), or None when it has none."""
    if "/" in ifname or ifname in ("", ".", ".."):
        return None  # a name from xenstore never leads anywhere else in sysfs
    return _read(f"{root}/class/net/{ifname}/statistics", NET_FILES)
