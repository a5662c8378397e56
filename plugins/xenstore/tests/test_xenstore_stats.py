"""Block and net stats: devices named in xenstore (the in-memory xenstored), counters from a
fake sysfs tree laid out as blkback's and netback's (the driver's ``sysfs_root``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import virtkit
import virtkit_xenstore
from virtkit import BlockStats, DomainRef, DriverError, InterfaceStats, InvalidArgument, InvalidOperation, NoSuchDomain

from .test_xenstore_driver import U1, U2, add_domain

VBD = ("rd_req", "wr_req", "f_req", "rd_sect", "wr_sect", "oo_req", "ds_req")
NET = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")


def vbd(sysfs: Path, domid: int, devid: int, **counters: int) -> None:
    d = sysfs / "bus/xen-backend/devices" / f"vbd-{domid}-{devid}" / "statistics"
    d.mkdir(parents=True, exist_ok=True)
    for name in VBD:
        (d / name).write_text(f"{counters.get(name, 0)}\n")


def vif(sysfs: Path, ifname: str, **counters: int) -> None:
    d = sysfs / "class/net" / ifname / "statistics"
    d.mkdir(parents=True, exist_ok=True)
    for name in NET:
        (d / name).write_text(f"{counters.get(name, 0)}\n")


def add_disk(xs: Any, domid: int, devid: int, dev: str, params: str) -> None:
    base = f"/local/domain/0/backend/vbd/{domid}/{devid}"
    xs.put(f"{base}/dev", dev)
    xs.put(f"{base}/params", params)
    xs.put(f"/local/domain/{domid}/device/vbd/{devid}/backend", base)


def add_nic(xs: Any, domid: int, devid: int, mac: str, vifname: str | None = None) -> None:
    base = f"/local/domain/0/backend/vif/{domid}/{devid}"
    xs.put(f"{base}/mac", mac)
    if vifname:
        xs.put(f"{base}/vifname", vifname)


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    root.mkdir()
    return root


@pytest.fixture
def host(fake_xs: Any, sysfs: Path) -> Any:
    xs = fake_xs
    xs.put("/local/domain/0/name", "Domain-0")
    xs.put("/local/domain/0/domid", "0")
    add_domain(xs, 3, "guest-a", U1)
    add_domain(xs, 5, "guest-b", U2)
    add_disk(xs, 3, 51712, "xvda", "/dev/loop0")
    add_disk(xs, 3, 51728, "xvdb", "/srv/b.img")
    add_disk(xs, 5, 51712, "xvda", "/dev/loop1")
    add_disk(xs, 5, 51744, "xvdc", "/dev/loop2")  # no sysfs: its backend is not connected
    add_nic(xs, 3, 0, "00:16:3E:AA:BB:01")
    add_nic(xs, 5, 0, "00:16:3e:aa:bb:02", vifname="web0")
    vbd(sysfs, 3, 51712, rd_req=10, wr_req=20, f_req=3, rd_sect=80, wr_sect=2048, oo_req=7)
    vbd(sysfs, 3, 51728, rd_req=1, rd_sect=8)
    vbd(sysfs, 5, 51712, wr_req=5, wr_sect=40)
    # dom0's view: what it receives the guest sent
    vif(sysfs, "vif3.0", rx_bytes=1000, rx_packets=10, tx_bytes=5000, tx_packets=50, rx_dropped=2, tx_errors=1)
    vif(sysfs, "web0", rx_bytes=1, rx_packets=1)
    return xs


@pytest.fixture
def conn(host: Any, sysfs: Path) -> Iterator[virtkit.Connection]:
    c = virtkit.open(
        "xen:///",
        plugins=[virtkit_xenstore.Plugin()],
        entry_points=False,
        params={"xenstore_path": host.path, "sysfs_root": str(sysfs)},
        timeout=10,
    )
    yield c
    c.close()


def by_name(records: list[Any]) -> dict[str, Any]:
    return {r.domain.name: r for r in records}


def test_explain_shows_block_and_net_from_xenstore(conn: virtkit.Connection) -> None:
    routes = {r.operation: r.plugin for r in conn.explain().groups}
    assert routes == {"state": None, "cpu": None, "balloon": None, "vcpu": None, "block": "xenstore", "net": "xenstore"}


def test_bulk_block_and_net(conn: virtkit.Connection) -> None:
    recs = by_name(conn.all_domain_stats())
    assert list(recs) == ["Domain-0", "guest-a", "guest-b"]
    a, b = recs["guest-a"], recs["guest-b"]
    assert a.domain == DomainRef("guest-a", U1, 3)
    assert a.block == (
        BlockStats("xvda", 10, 80 * 512, 20, 2048 * 512, 3, path="/dev/loop0"),
        BlockStats("xvdb", 1, 8 * 512, 0, 0, 0, path="/srv/b.img"),
    )
    # rx/tx swapped: seen from the guest
    assert a.net == (InterfaceStats("vif3.0", 5000, 50, 1000, 10, 1, 0, 0, 2, "00:16:3e:aa:bb:01"),)
    assert b.block == (BlockStats("xvda", 0, 0, 5, 40 * 512, 0, path="/dev/loop1"),)
    assert b.net == (InterfaceStats("web0", 0, 0, 1, 1, 0, 0, 0, 0, "00:16:3e:aa:bb:02"),)
    assert recs["Domain-0"].block == () and recs["Domain-0"].net == ()
    assert a.state is None and a.cpu is None


def test_only_the_groups_asked_for_and_named_domains(conn: virtkit.Connection) -> None:
    gone = DomainRef("gone", uuid.uuid4(), 9)
    (rec,) = conn.all_domain_stats(["net"], [DomainRef("old-name", U1, 3), gone])
    assert rec.domain == DomainRef("guest-a", U1, 3) and rec.block is None and rec.net is not None
    assert conn.all_domain_stats(["block"], [DomainRef("x", uuid.uuid4(), 3)]) == []  # id 3 is another domain


def test_unserved_groups_are_unsupported_here(conn: virtkit.Connection) -> None:
    with pytest.raises(virtkit.Unsupported, match="cpu"):
        conn.all_domain_stats(["cpu"])


def test_per_domain_block_stats(conn: virtkit.Connection) -> None:
    a = conn.lookup("guest-a")
    assert a.block_stats("xvdb") == BlockStats("xvdb", 1, 4096, 0, 0, 0, path="/srv/b.img")
    assert a.block_stats("/dev/loop0").device == "xvda"
    assert a.block_stats() == BlockStats("", 11, 88 * 512, 20, 2048 * 512, 3)
    with pytest.raises(InvalidArgument, match="no disk"):
        a.block_stats("xvdz")
    with pytest.raises(InvalidOperation, match="not connected"):
        conn.lookup("guest-b").block_stats("xvdc")


def test_per_domain_interface_stats(conn: virtkit.Connection) -> None:
    a = conn.lookup("guest-a")
    assert a.interface_stats("vif3.0").rx_bytes == 5000
    assert a.interface_stats("00:16:3e:AA:bb:01").device == "vif3.0"
    assert conn.lookup("guest-b").interface_stats("web0").tx_bytes == 1
    with pytest.raises(InvalidArgument, match="no interface"):
        a.interface_stats("vif5.0")


def test_a_gone_domain_and_a_bad_counter(conn: virtkit.Connection, host: Any, sysfs: Path) -> None:
    a = conn.lookup("guest-a")
    (sysfs / "class/net/vif3.0/statistics/rx_bytes").write_text("-1\n")
    with pytest.raises(DriverError, match="not a counter"):
        a.interface_stats("vif3.0")
    host.remove("/local/domain/3")  # the whole subtree: the domain is gone
    with pytest.raises(NoSuchDomain):
        a.block_stats("xvda")
    with pytest.raises(NoSuchDomain):  # before the device's own check, as the kit expects
        a.interface_stats("")
    assert "guest-a" not in by_name(conn.all_domain_stats(["block"]))


def test_counters_follow_sysfs(conn: virtkit.Connection, sysfs: Path) -> None:
    first = by_name(conn.all_domain_stats(["block"]))["guest-b"].block[0]
    vbd(sysfs, 5, 51712, wr_req=9, wr_sect=4096)
    second = by_name(conn.all_domain_stats(["block"]))["guest-b"].block[0]
    assert (first.write_bytes, second.write_bytes) == (40 * 512, 4096 * 512)
