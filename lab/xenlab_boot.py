"""The boot files of the xenlab image: the hypervisor and the kernel unpacked from their Debian
packages, and the stage-1 initramfs (dom0's first stage and the PV guests' init).

Part of the build (xenlab_build.py): this file is hashed into the image's cache key too.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
import time
from pathlib import Path

from xenlab_apt import BUSYBOX_PKG, HV_PKG, XEN_SERIES, Versions
from xenlab_common import LAB_DIR, BuildError, log, run

IMAGE_SRC = LAB_DIR / "image"
#: Modules of the stage-1 initramfs, in the order given; dependencies are resolved by modprobe.
STAGE1_MODULES = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
#: The PV guests' disk and network frontends (loaded by the guest role only: modules/guest-order).
GUEST_MODULES = ["xen-blkfront", "xen-netfront"]


def download(pkgs: dict[str, str], dest: Path, logfile: Path) -> dict[str, Path]:
    """apt-get download ``name=version`` into dest (reusing earlier downloads)."""
    dest.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    wanted: list[str] = []
    for name, ver in pkgs.items():
        fname = f"{name}_{ver.replace(':', '%3a')}_amd64.deb"
        result[name] = dest / fname
        if not (dest / fname).is_file():
            wanted.append(f"{name}={ver}")
    if wanted:
        run(
            ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *wanted],
            timeout=600,
            logfile=logfile,
            cwd=dest,
        )
    for name, path in result.items():
        if not path.is_file():
            raise BuildError(f"apt-get download did not produce {path.name} for {name}")
    return result


def stage1_modules(kroot: Path, release: str, modules: list[str] | None = None) -> list[Path]:
    """Module files for the stage-1 initramfs, in a load order modprobe approves."""
    order: list[Path] = []
    for mod in STAGE1_MODULES if modules is None else modules:
        out = run(
            ["modprobe", "-d", kroot, "-S", release, "--show-depends", mod],
            timeout=60,
            capture=True,
        )
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                p = Path(parts[1])
                if p not in order:
                    order.append(p)
    if not order:
        raise BuildError("modprobe --show-depends found no stage-1 modules")
    return order


def write_cpio(root: Path, out: Path, logfile: Path) -> None:
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = "\n".join([".", *names]) + "\n"
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        proc = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"],
            input=listing.encode(),
            capture_output=True,
            cwd=root,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise BuildError(f"cpio failed: {proc.stderr.decode(errors='replace')}")
        gz.write(proc.stdout)
    with logfile.open("a") as fh:
        fh.write(f"initramfs {out}: {out.stat().st_size} bytes, {len(names)} entries\n")


def build_initramfs(work: Path, kroot: Path, bbroot: Path, release: str, logfile: Path) -> Path:
    root = work / "initramfs"
    for d in ("bin", "sbin", "dev", "proc", "sys", "newroot", "modules"):
        (root / d).mkdir(parents=True, exist_ok=True)
    busybox = root / "bin" / "busybox"
    shutil.copy2(bbroot / "bin" / "busybox", busybox)
    applets = run([busybox, "--list"], timeout=30, capture=True).split()
    for applet in applets:
        if applet in ("busybox", "poweroff", "reboot", "halt"):
            continue
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    # The kernel's xenbus shutdown handler runs /sbin/poweroff (orderly_poweroff); busybox's
    # plain poweroff would just signal PID 1, which is a shell here: force it.
    for name, act in (("poweroff", "poweroff"), ("reboot", "reboot"), ("halt", "halt")):
        script = root / "sbin" / name
        script.write_text(f"#!/bin/busybox sh\nexec /bin/busybox {act} -f\n")
        script.chmod(0o755)
    lines = []
    for mod in stage1_modules(kroot, release):
        shutil.copy2(mod, root / "modules" / mod.name)
        lines.append(mod.name)
    (root / "modules" / "order").write_text("\n".join(lines) + "\n")
    guest = [m for m in stage1_modules(kroot, release, GUEST_MODULES) if m.name not in lines]
    for mod in guest:
        shutil.copy2(mod, root / "modules" / mod.name)
    (root / "modules" / "guest-order").write_text("".join(f"{m.name}\n" for m in guest))
    init = root / "init"
    shutil.copy2(IMAGE_SRC / "stage1-init", init)
    init.chmod(0o755)
    out = work / "out" / "initrd.cpio.gz"
    write_cpio(root, out, logfile)
    return out


def decompress_kernel(bzimage: Path, out: Path) -> None:
    """bzImage -> the plain vmlinux ELF, which Xen's and libxc's PV loaders take as is.

    Inflating Debian's xz (or even gzip) payload under TCG is slow: an ``xl create`` of the
    plain ELF takes 2.5 s against 5.8 s for a gzip'ed one (measured in the lab's dom0), and
    Xen builds dom0 faster from it too.
    """
    data = bzimage.read_bytes()
    pos = data.find(b"\xfd7zXZ\x00")
    if pos < 0:
        raise BuildError(f"{bzimage}: no xz payload found (kernel compression changed?)")
    vmlinux = lzma.LZMADecompressor().decompress(data[pos:])
    if not vmlinux.startswith(b"\x7fELF"):
        raise BuildError(f"{bzimage}: xz payload is not an ELF image")
    out.write_bytes(vmlinux)


def prepare_boot_files(work: Path, cache: Path, versions: Versions, logfile: Path) -> Path:
    """Hypervisor, kernel, initramfs into work/out; returns the unpacked kernel package."""
    t0 = time.monotonic()
    debs = download(
        {
            HV_PKG: versions.hypervisor,
            versions.kernel_pkg: versions.kernel,
            BUSYBOX_PKG: versions.busybox,
        },
        cache / "debs" / "host",
        logfile,
    )
    xroot, kroot, bbroot = work / "x-xen", work / "x-kernel", work / "x-busybox"
    for deb, dest in (
        (debs[HV_PKG], xroot),
        (debs[versions.kernel_pkg], kroot),
        (debs[BUSYBOX_PKG], bbroot),
    ):
        run(["dpkg", "-x", deb, dest], timeout=300, logfile=logfile)
    release = versions.kernel_release
    run(["depmod", "-b", kroot, release], timeout=120, logfile=logfile)
    xen_gz = xroot / "boot" / f"xen-{XEN_SERIES}-amd64.gz"
    with gzip.open(xen_gz, "rb") as src, (work / "out" / "xen").open("wb") as dst:
        shutil.copyfileobj(src, dst)
    decompress_kernel(kroot / "boot" / f"vmlinuz-{release}", work / "out" / "vmlinux")
    build_initramfs(work, kroot, bbroot, release, logfile)
    log(f"kernel, hypervisor, initramfs ready ({time.monotonic() - t0:.0f}s)")
    return kroot
