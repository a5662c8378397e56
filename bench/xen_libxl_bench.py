"""xen_libxl against xl, libxl itself and libvirt-python, on the lab's real Xen (one run).

Run inside dom0: ``lab/xenlab run 'python3 bench/xen_libxl_bench.py'``. Prints a Markdown table.

1. create -> running of the same tiny PV guest (rounds interleaved, each guest destroyed
   untimed): ``conn.create(cfg)`` through virtkit vs ``xl create`` of the same xl config vs
   libxl in the bench process through ctypes (``libxl_domain_config_from_json`` of ``xl -N
   create``'s JSON + ``libxl_domain_create_new`` + unpause: libxl's own time, no babysitter).
   virtkit's engine is ``$BENCH_ENGINE`` (default ``libxl``, the resident engine; ``xl``).
2. create + destroy cycle in-process: virtkit vs libvirt-python (``createXML`` + ``destroy``),
   the XML from ``virsh domxml-from-native xen-xl`` of the same config.
3. ``list --all`` in-process with 8 running + 8 defined domains: ``conn.domains(all=True)`` (the
   core's listing: its refs from the same bulk call) and ``conn.all_domain_stats(["state"])``
   (the one bulk call ``virtkit list --all`` makes: names, uuids, ids and states) vs libvirt-python
   ``listAllDomains()`` (the 8 running guests are libvirt's, so both see them; each side lists 8
   definitions of its own).
"""

from __future__ import annotations

import ctypes
import os
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
from virtkit import DomainConfig

KERNEL = "/usr/lib/xenlab/vmlinux"
RAMDISK = "/usr/lib/xenlab/initrd.cpio.gz"
CMDLINE = "console=hvc0 xenlab.role=guest quiet mitigations=off"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
TMP = Path(tempfile.mkdtemp(prefix="xlbench-"))
ENGINE = os.environ.get("BENCH_ENGINE", "libxl")


def xl_cfg(name: str, memory: int = 128) -> str:
    return (
        f'name = "{name}"\ntype = "pv"\nkernel = "{KERNEL}"\nramdisk = "{RAMDISK}"\n'
        f'extra = "{CMDLINE}"\nmemory = {memory}\nvcpus = 1\n'
    )


def cfg(name: str, memory: int = 128) -> DomainConfig:
    return DomainConfig(name=name, memory=memory * 1024, kernel=KERNEL, initrd=RAMDISK, cmdline=CMDLINE)


def sh(*argv: str, timeout: float = 120) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True).stdout


def destroy(name: str) -> None:
    subprocess.run(["xl", "destroy", name], capture_output=True, timeout=60, check=False)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class Libxl:
    """libxl in this process through ctypes (no babysitter: measurement only)."""

    def __init__(self) -> None:
        xtl = ctypes.CDLL("libxentoollog.so.1")
        self.lib = ctypes.CDLL("libxenlight.so.4.17")
        libc = ctypes.CDLL(None)
        xtl.xtl_createlogger_stdiostream.restype = ctypes.c_void_p
        logger = xtl.xtl_createlogger_stdiostream(ctypes.c_void_p.in_dll(libc, "stderr"), 8, 0)
        self.ctx = ctypes.c_void_p()
        if self.lib.libxl_ctx_alloc(ctypes.byref(self.ctx), 0, 0, ctypes.c_void_p(logger)):
            raise RuntimeError("libxl_ctx_alloc failed")

    def create(self, json_text: str) -> int:
        buf = ctypes.create_string_buffer(65536)  # larger than libxl_domain_config in any release
        self.lib.libxl_domain_config_init(buf)
        try:
            if self.lib.libxl_domain_config_from_json(self.ctx, buf, json_text.encode()):
                raise RuntimeError("libxl_domain_config_from_json failed")
            domid = ctypes.c_uint32(0)
            if self.lib.libxl_domain_create_new(self.ctx, buf, ctypes.byref(domid), None, None):
                raise RuntimeError("libxl_domain_create_new failed")
            self.lib.libxl_domain_unpause(self.ctx, domid, None)
            return domid.value
        finally:
            self.lib.libxl_domain_config_dispose(buf)


def bench_create(conn: virtkit.Connection) -> list[str]:
    lx = Libxl()
    name = "xlb-create"
    path = TMP / f"{name}.cfg"
    path.write_text(xl_cfg(name))
    libxl_json = sh("xl", "-N", "create", "-q", str(path))
    ours, xls, libxls = [], [], []
    for _ in range(ROUNDS):
        ours.append(timed(lambda: conn.create(cfg(name))))
        destroy(name)
        xls.append(timed(lambda: sh("xl", "create", "-q", str(path))))
        destroy(name)
        libxls.append(timed(lambda: lx.create(libxl_json)))
        destroy(name)
    o, x, a = statistics.median(ours), statistics.median(xls), statistics.median(libxls)
    return [
        f"| create -> running, virtkit `conn.create` ({ENGINE} engine) | {o * 1000:.0f} ms | "
        f"{o / x:.2f}x `xl create` ({x * 1000:.0f} ms) | target <= 1.05x |",
        f"| create -> running, libxl in the bench process (ctypes) | {a * 1000:.0f} ms | "
        f"{a / x:.2f}x `xl create` | libxl's own time |",
    ]


class Libvirtd:
    def __init__(self) -> None:
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

    def xml(self, name: str, memory: int = 128) -> str:
        path = TMP / f"{name}.native.cfg"
        path.write_text(xl_cfg(name, memory))
        return sh("virsh", "-c", "xen:///system", "domxml-from-native", "xen-xl", str(path))

    def stop(self) -> None:
        self.conn.close()
        os.kill(self.pid, signal.SIGTERM)


def bench_cycle(conn: virtkit.Connection, lv: Libvirtd) -> list[str]:
    name = "xlb-cycle"
    xml = lv.xml(name)
    ours, theirs = [], []

    def virtkit_cycle() -> None:
        conn.create(cfg(name)).destroy()

    def libvirt_cycle() -> None:
        lv.conn.createXML(xml, 0).destroy()

    for _ in range(ROUNDS):
        ours.append(timed(virtkit_cycle))
        theirs.append(timed(libvirt_cycle))
    o, t = statistics.median(ours), statistics.median(theirs)
    return [
        f"| create + destroy, virtkit ({ENGINE} engine) | {o * 1000:.0f} ms | "
        f"{o / t:.2f}x libvirt-python ({t * 1000:.0f} ms) | target <= 1.0x |"
    ]


def bench_list(conn: virtkit.Connection, lv: Libvirtd) -> list[str]:
    running = [f"xlb-run{i}" for i in range(8)]
    for name in running:
        lv.conn.createXML(lv.xml(name, 96), 0)
    lv_defined = [lv.conn.defineXML(lv.xml(f"xlb-lvdef{i}", 96)) for i in range(8)]
    vk_defined = [conn.define(cfg(f"xlb-vkdef{i}", 96)) for i in range(8)]
    try:
        n_ours = len(conn.domains(all=True))
        n_bulk = len(conn.all_domain_stats(["state"]))
        n_theirs = len(lv.conn.listAllDomains())
        assert n_ours == n_bulk == n_theirs == 17, (n_ours, n_bulk, n_theirs)
        ours, bulk, theirs = [], [], []
        for _ in range(ROUNDS * 4):
            ours.append(timed(lambda: conn.domains(all=True)))
            bulk.append(timed(lambda: conn.all_domain_stats(["state"])))
            theirs.append(timed(lambda: lv.conn.listAllDomains()))
        o, b, t = statistics.median(ours), statistics.median(bulk), statistics.median(theirs)
        return [
            f"| list --all (8 running + 8 defined), `conn.domains(all=True)` | {o * 1000:.1f} ms | "
            f"{o / t:.2f}x libvirt-python `listAllDomains()` ({t * 1000:.1f} ms) | target <= 1.0x |",
            f"| same, `conn.all_domain_stats(['state'])` (what `virtkit list --all` calls) | {b * 1000:.1f} ms | "
            f"{b / t:.2f}x libvirt-python `listAllDomains()` | target <= 1.0x |",
        ]
    finally:
        for name in running:
            destroy(name)
        for d in lv_defined:
            d.undefine()
        for d in vk_defined:
            d.undefine()


def main() -> int:
    os.environ["VIRTKIT_XEN_LIBXL_STATE_DIR"] = str(TMP / "state")
    rows = ["| measurement | virtkit | ratio | |", "|---|---|---|---|"]
    with virtkit.open("xen:///", timeout=120, params={"xen_libxl_engine": ENGINE}) as conn:
        # the first create starts the resident engine (libvirtd too is started before its rounds)
        first = timed(lambda: conn.create(cfg("xlb-first")))
        destroy("xlb-first")
        rows.append(f"| first create, the engine started by it ({ENGINE}) | {first * 1000:.0f} ms | | once |")
        rows += bench_create(conn)
        lv = Libvirtd()
        try:
            rows += bench_cycle(conn, lv)
            rows += bench_list(conn, lv)
        finally:
            lv.stop()
    xen = sh("xl", "info", "xen_version").strip()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"xen_libxl bench, {ROUNDS} rounds, medians, {time.strftime('%Y-%m-%d')}, Xen {xen}, dom0 load {load}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
