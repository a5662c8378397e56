"""Bulk stats on the lab's real Xen, 9 domains (dom0 + 8 guests with a disk and a vif each).

Run inside dom0: ``lab/xenlab run --timeout 1500 'python3 bench/xen_stats_bench.py'``. Prints a
Markdown table. The 8 guests are libvirt's (``createXML`` of ``virsh domxml-from-native``), so
libvirt's libxl driver sees them as well as virtkit and xentop; each writes 1 MiB onto its disk
(a loop device) and has its vif on a bridge of the benchmark's own.

1. in-process, every group: ``conn.all_domain_stats()`` on ``xen:///`` (xen_hyper + xenstore)
   vs libvirt-python ``getAllDomainStats()`` (all groups) where libvirt's libxl driver has it,
   else the per-domain calls for the same data (see ``Rig.peer``); rounds interleaved, medians.
2. cold CLI: ``virtkit -c xen:/// domstats`` vs ``xentop -b -i 1`` (each a new process; wall
   time, medians of interleaved rounds).
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import virtkit

KERNEL = "/usr/lib/xenlab/vmlinux"
RAMDISK = "/usr/lib/xenlab/initrd.cpio.gz"
BRIDGE, BRIDGE_ADDR = "xbenchbr0", "10.98.0.1"
GUESTS = 8
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
TMP = Path(tempfile.mkdtemp(prefix="statsbench-"))


def sh(*argv: str, timeout: float = 120) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True).stdout


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def xl_cfg(name: str, n: int, loop: str) -> str:
    extra = "console=hvc0 xenlab.role=guest quiet mitigations=off xenlab.io=dd:1"
    return (
        f'name = "{name}"\ntype = "pv"\nkernel = "{KERNEL}"\nramdisk = "{RAMDISK}"\n'
        f'extra = "{extra}"\nmemory = 96\nvcpus = 1\n'
        f"disk = ['phy:{loop},xvda,w']\nvif = ['mac=00:16:3e:5b:00:{n:02x},bridge={BRIDGE}']\n"
    )


class Rig:
    def __init__(self) -> None:
        sh("modprobe", "-a", "loop", "bridge")
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
            link = Path("/dev") / name  # the block hotplug script's lock needs /dev/stdin (see pytest_xenlab)
            if not link.exists() and not link.is_symlink():
                link.symlink_to(target)
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{BRIDGE_ADDR}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for d in ("/run/libvirt", "/var/log/libvirt", "/var/lib/libvirt", "/var/cache/libvirt"):
            Path(d).mkdir(parents=True, exist_ok=True)
        pidfile = Path("/run/libvirtd.pid")
        pidfile.unlink(missing_ok=True)
        subprocess.run(["libvirtd", "--daemon", "--pid-file", str(pidfile)], check=True, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = subprocess.run(["virsh", "-c", "xen:///system", "version"], capture_output=True, timeout=15)
            if r.returncode == 0 and pidfile.exists():
                break
            time.sleep(0.3)
        self.pid = int(pidfile.read_text())
        import libvirt

        self.conn = libvirt.open("xen:///system")
        self.names: list[str] = []
        self.loops: list[str] = []
        self.peer_label = ""

    def guests(self) -> None:
        for n in range(GUESTS):
            name = f"sb-{n}"
            img = TMP / f"{name}.disk"
            with img.open("wb") as f:
                f.truncate(16 << 20)
            loop = sh("losetup", "--find", "--show", str(img)).strip()
            self.loops.append(loop)
            native = TMP / f"{name}.cfg"
            native.write_text(xl_cfg(name, n, loop))
            xml = sh("virsh", "-c", "xen:///system", "domxml-from-native", "xen-xl", str(native))
            # domxml-from-native makes the phy: disk a file for qemu's qdisk: make it blkback's
            xml = re.sub(
                r"<disk type='file' device='disk'>\s*<driver name='qemu' type='raw'/>\s*<source file='([^']+)'/>",
                r"<disk type='block' device='disk'><driver name='phy'/><source dev='\1'/>",
                xml,
            )
            try:
                self.conn.createXML(xml, 0)
            except Exception:
                log = Path("/var/log/libvirt/libxl/libxl-driver.log")
                print(xml, "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else "")
                raise
            self.names.append(name)

    def peer(self) -> Callable[[], Any]:
        """libvirt's bulk call where its driver has one; libvirt 9.0's libxl driver has not
        ("not supported by the connection driver"), so then the per-domain calls a libvirt
        user needs for the same groups: info, vcpus, blockStats and interfaceStats of each
        disk and vif, memoryStats (the devices' names read once, untimed)."""
        import libvirt

        try:
            self.conn.getAllDomainStats()
            self.peer_label = "`getAllDomainStats()` (libxl driver)"
            return self.conn.getAllDomainStats
        except libvirt.libvirtError as exc:
            print(f"libvirt getAllDomainStats: {exc}")
        doms = []
        for dom in self.conn.listAllDomains():
            xml = dom.XMLDesc(0)
            disks = re.findall(r"<target dev='([^']+)' bus='xen'/>", xml)
            vifs = re.findall(r"<target dev='(vif[^']+)'/>", xml)
            doms.append((dom, disks, vifs))
        # a call the driver lacks (dom.vcpus() needs virNodeGetCPUMap, which libxl has not) is
        # left out: that makes the peer cheaper, never us
        calls = {"info": lambda d: d.info(), "vcpus": lambda d: d.vcpus(), "memoryStats": lambda d: d.memoryStats()}
        used = []
        for name, call in calls.items():
            try:
                call(doms[-1][0])
                used.append(name)
            except libvirt.libvirtError as exc:
                print(f"libvirt {name}: {exc}")
        per_dom = [calls[n] for n in used]
        self.peer_label = (
            f"per-domain `{'` + `'.join(used)}` + `blockStats` + `interfaceStats` of its {len(doms)} domains "
            "(its libxl driver has no `getAllDomainStats`)"
        )

        def per_domain() -> None:
            for dom, disks, vifs in doms:
                for call in per_dom:
                    call(dom)
                for d in disks:
                    dom.blockStats(d)
                for v in vifs:
                    dom.interfaceStats(v)

        return per_domain

    def stop(self) -> None:
        for name in self.names:
            subprocess.run(["xl", "destroy", name], capture_output=True, timeout=60, check=False)
        for loop in self.loops:
            subprocess.run(["losetup", "-d", loop], capture_output=True, timeout=30, check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, timeout=30, check=False)
        self.conn.close()
        os.kill(self.pid, signal.SIGTERM)


def main() -> int:
    rig = Rig()
    rows = ["| measurement | virtkit | peer | ratio | target |", "|---|---|---|---|---|"]
    try:
        rig.guests()
        time.sleep(15)  # the guests' init up, disks and vifs connected
        with virtkit.open("xen:///", timeout=60) as conn:
            recs = conn.all_domain_stats()
            assert len(recs) == GUESTS + 1, [r.domain.name for r in recs]
            blocks = sum(len(r.block or ()) for r in recs)
            nets = sum(len(r.net or ()) for r in recs)
            print(f"virtkit: {len(recs)} domains, {blocks} disks, {nets} vifs")
            ours, theirs = [], []
            peer = rig.peer()
            for _ in range(ROUNDS * 4):
                ours.append(timed(conn.all_domain_stats))
                theirs.append(timed(peer))
        o, t = statistics.median(ours), statistics.median(theirs)
        rows.append(
            f"| bulk stats, all groups, {GUESTS + 1} domains, in-process: `conn.all_domain_stats()` vs "
            f"libvirt-python {rig.peer_label} | "
            f"{o * 1000:.2f} ms | {t * 1000:.2f} ms | **{o / t:.2f}x** | <= 1.0x |"
        )
        cli, top = [], []
        for _ in range(ROUNDS):
            cli.append(timed(lambda: sh(sys.executable, "-m", "virtkit", "-c", "xen:///", "domstats")))
            top.append(timed(lambda: sh("xentop", "-b", "-i", "1")))
        c, x = statistics.median(cli), statistics.median(top)
        rows.append(
            f"| cold `virtkit -c xen:/// domstats` vs `xentop -b -i 1` | {c * 1000:.0f} ms | "
            f"{x * 1000:.0f} ms | **{c / x:.2f}x** | <= 1.0x |"
        )
    finally:
        rig.stop()
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
