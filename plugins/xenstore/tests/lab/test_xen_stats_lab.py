"""Stats on real Xen: xen:/// composes xen_hyper (cpu, balloon, vcpu; state, through xen_libxl
where it is installed) and xenstore (block, net); three guests made by libvirt write to their
disks and ping a dom0 bridge, and virtkit's numbers are checked against ``xentop -b -i 1`` and
libvirt's libxl driver. libvirt 9.0's libxl driver has no ``virConnectGetAllDomainStats``
(``virsh domstats``: "this function is not supported by the connection driver"), so its per-
domain commands are the reference: ``dominfo``, ``vcpuinfo``, ``domblkstat``, ``domifstat``,
``dommemstat``.

Each reference is read between two readings of ours, so every counter must lie between them
(after the reference's rounding to seconds, KiB or sectors): "agree within what elapses between
the reads", made exact. xentop's NETTX/NETRX are dom0's view of the vif (what dom0 sent, i.e.
what the guest received, is NETTX); ours and libvirt's are the guest's.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from pytest_xenlab import Libvirtd, LibvirtGuest, sh
from pytest_xenlab_rigs import IoRig, wait_console

import virtkit
from virtkit import DomainStats

pytestmark = pytest.mark.lab

DD_MIB = 8
MIB = 1 << 20
#: virsh domblkstat / domifstat keys and our fields
BLK_KEYS = (("rd_req", "read_requests"), ("rd_bytes", "read_bytes"), ("wr_req", "write_requests"))
BLK_KEYS += (("wr_bytes", "write_bytes"),)
NET_KEYS = (("rx_bytes", "rx_bytes"), ("rx_packets", "rx_packets"), ("tx_bytes", "tx_bytes"))
NET_KEYS += (("tx_packets", "tx_packets"),)


def ours(conn: virtkit.Connection) -> dict[str, DomainStats]:
    return {r.domain.name: r for r in conn.all_domain_stats()}


def xentop() -> dict[str, dict[str, Any]]:
    """``xentop -b -i 1``: per domain, the columns (parsed from both ends: MAXMEM may be 'no limit')."""
    out = sh("xentop", "-b", "-i", "1", timeout=60).stdout
    rows: dict[str, dict[str, Any]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 19 or parts[0] == "NAME":
            continue
        # ... VCPUS NETS NETTX(k) NETRX(k) VBDS VBD_OO VBD_RD VBD_WR VBD_RSECT VBD_WSECT SSID
        vcpus, nets, tx_k, rx_k, vbds, _oo, rd, wr, rsect, wsect = (int(v) for v in parts[-11:-1])
        row = {"vcpus": vcpus, "nets": nets, "nettx_k": tx_k, "netrx_k": rx_k, "vbds": vbds}
        row |= {"vbd_rd": rd, "vbd_wr": wr, "rsect": rsect, "wsect": wsect}
        row |= {"cpu_s": int(parts[2]), "mem_k": int(parts[4])}
        rows[parts[0]] = row
    return rows


def virsh_pairs(libvirtd: Libvirtd, *args: str) -> dict[str, str]:
    """``virsh domblkstat``/``domifstat``/``dommemstat`` output: the last two words of a line."""
    out: dict[str, str] = {}
    for line in libvirtd.virsh(*args, timeout=60).splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[-2]] = parts[-1]
    return out


def virsh_fields(libvirtd: Libvirtd, *args: str) -> dict[str, str]:
    """``virsh dominfo``/``vcpuinfo`` output: ``Key: value`` lines."""
    out: dict[str, str] = {}
    for line in libvirtd.virsh(*args, timeout=60).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def between(low: int, got: int, high: int, what: str) -> None:
    assert low <= got <= high, f"{what}: {got} is not between our reads {low} and {high}"


@pytest.fixture
def io_guests(xen_io_rig: IoRig, libvirtd: Libvirtd) -> list[LibvirtGuest]:
    names = [f"xs{i}-{int(time.time()) % 10000}" for i in range(3)]  # xentop shows 10 characters
    guests = [
        libvirtd.create_guest(name=n, edit=IoRig.libvirt_xml, **xen_io_rig.overrides(n, dd_mib=DD_MIB)) for n in names
    ]
    for g in guests:
        wait_console(g.name, f"xenlab-guest: dd {DD_MIB} MiB done", timeout=180)
        wait_console(g.name, "pinging", timeout=60)
    return guests


def test_stats_agree_with_xentop_and_libvirt(io_guests: list[LibvirtGuest], libvirtd: Libvirtd) -> None:
    with virtkit.open("xen:///") as conn:
        groups = {r.operation: r.plugin for r in conn.explain().groups}
        # state: xen_libxl where it is installed (the lab has it: it adds its definitions to
        # xen_hyper's one bulk read), else xen_hyper
        state = "xen_libxl" if conn.served_by("connect_list_defined_domains") == "xen_libxl" else "xen_hyper"
        assert groups == dict.fromkeys(("cpu", "balloon", "vcpu"), "xen_hyper") | {
            "state": state,
            "block": "xenstore",
            "net": "xenstore",
        }
        text = sh(sys.executable, "-m", "virtkit", "explain", "xen:///", timeout=120).stdout
        assert "connect_get_all_domain_stats by group:" in text and "xenstore" in text, text[-2000:]

        # what the guests wrote: exactly DD_MIB MiB each, in whole-disk counters of blkback
        now = ours(conn)
        for g in io_guests:
            rec = now[g.name]
            assert rec.domain.id == g.domid and str(rec.domain.uuid) == g.uuid
            (disk,) = rec.block
            assert disk.device == "xvda" and disk.write_bytes == DD_MIB * MIB, disk
            (nic,) = rec.net
            assert nic.device == f"vif{g.domid}.0" and nic.mac is not None and nic.tx_packets > 0, nic

        before, top, after = ours(conn), xentop(), ours(conn)
        for g in io_guests:
            b, x, a = before[g.name], top[g.name], after[g.name]
            between(b.cpu.time_ns // 10**9, x["cpu_s"], a.cpu.time_ns // 10**9, f"{g.name} CPU(sec)")
            assert x["mem_k"] == a.balloon.current_kib, g.name
            assert x["vcpus"] == a.vcpu.current and x["nets"] == len(a.net) and x["vbds"] == len(a.block)
            # xentop's NETTX/NETRX (KiB) are dom0's view: its NETTX is what the guest received
            between(b.net[0].rx_bytes // 1024, x["nettx_k"], a.net[0].rx_bytes // 1024, f"{g.name} NETTX(k)")
            between(b.net[0].tx_bytes // 1024, x["netrx_k"], a.net[0].tx_bytes // 1024, f"{g.name} NETRX(k)")
            between(b.block[0].write_requests, x["vbd_wr"], a.block[0].write_requests, f"{g.name} VBD_WR")
            between(b.block[0].read_requests, x["vbd_rd"], a.block[0].read_requests, f"{g.name} VBD_RD")
            between(b.block[0].write_bytes // 512, x["wsect"], a.block[0].write_bytes // 512, f"{g.name} VBD_WSECT")
            between(b.block[0].read_bytes // 512, x["rsect"], a.block[0].read_bytes // 512, f"{g.name} VBD_RSECT")

        for g in io_guests:
            b, info, a = before[g.name], virsh_fields(libvirtd, "dominfo", g.name), ours(conn)[g.name]
            low, high = b.cpu.time_ns / 1e9 - 0.05, a.cpu.time_ns / 1e9 + 0.05  # virsh: 0.1 s
            assert low <= float(info["CPU time"].rstrip("s")) <= high, (info, b.cpu, a.cpu)
            assert info["Used memory"] == f"{a.balloon.current_kib} KiB", info
            assert int(info["CPU(s)"]) == a.vcpu.current

            b, vcpu, a = ours(conn)[g.name], virsh_fields(libvirtd, "vcpuinfo", g.name), ours(conn)[g.name]
            low, high = b.vcpu.vcpus[0].time_ns / 1e9 - 0.05, a.vcpu.vcpus[0].time_ns / 1e9 + 0.05
            assert vcpu["VCPU"] == "0" and low <= float(vcpu["CPU time"].rstrip("s")) <= high, vcpu

            b, blk, a = ours(conn)[g.name], virsh_pairs(libvirtd, "domblkstat", g.name, "xvda"), ours(conn)[g.name]
            for key, field in BLK_KEYS:
                between(getattr(b.block[0], field), int(blk[key]), getattr(a.block[0], field), f"{g.name} {key}")

            vif = a.net[0].device
            b, net, a = ours(conn)[g.name], virsh_pairs(libvirtd, "domifstat", g.name, vif), ours(conn)[g.name]
            for key, field in NET_KEYS:
                between(getattr(b.net[0], field), int(net[key]), getattr(a.net[0], field), f"{g.name} {vif} {key}")

            mem = conn.lookup(g.name).memory_stats()
            assert int(virsh_pairs(libvirtd, "dommemstat", g.name)["actual"]) == mem.actual_kib, mem


def test_cpu_time_and_counters_grow_and_the_cli(io_guests: list[LibvirtGuest]) -> None:
    with virtkit.open("xen:///") as conn:
        reads = []
        for _ in range(4):
            reads.append(ours(conn))
            time.sleep(0.5)
        for g in io_guests:
            cpu = [r[g.name].cpu.time_ns for r in reads]
            vcpu = [r[g.name].vcpu.vcpus[0].time_ns for r in reads]
            tx = [r[g.name].net[0].tx_packets for r in reads]
            assert cpu == sorted(cpu) and cpu[-1] > cpu[0], cpu
            assert vcpu == sorted(vcpu), vcpu
            assert tx == sorted(tx) and tx[-1] > tx[0], tx  # the ping keeps going
        dom = conn.lookup(io_guests[0].name)
        assert dom.block_stats("xvda").write_bytes == DD_MIB * MIB
        assert dom.block_stats().write_bytes == DD_MIB * MIB
        assert dom.interface_stats(f"vif{io_guests[0].domid}.0").tx_packets >= reads[-1][dom.name].net[0].tx_packets
        assert [v.number for v in dom.vcpu_info()] == [0]
        assert dom.memory_stats().actual_kib == reads[-1][dom.name].balloon.current_kib

    # the CLI, virsh's format
    g = io_guests[0]
    argv = (sys.executable, "-m", "virtkit", "-c", "xen:///", "domstats", "--block", "--net", g.name)
    out = sh(*argv, timeout=120).stdout
    assert f"Domain: '{g.name}'" in out and "block.0.name=xvda" in out and f"net.0.name=vif{g.domid}.0" in out, out
    assert f"block.0.wr.bytes={DD_MIB * MIB}" in out, out
