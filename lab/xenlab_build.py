"""Build the xenlab image (Xen 4.17 + Debian 12 dom0) from Debian packages only.

Everything that goes into the image is produced here from ``apt-get download`` +
``dpkg -x`` (hypervisor, kernel, busybox-static) and ``debootstrap`` (dom0 rootfs).
Nothing is installed into the host's boot configuration.

The result lives in ``CACHE/images/<key>/`` where the key hashes this file, ``lab/image/``
and the Debian versions of the hypervisor, xen-utils and kernel packages. A build is done in
a temporary directory and renamed into place at the very end, so an interrupted build never
leaves a half image behind.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from xenlab_apt import (
    BUSYBOX_PKG,
    HV_PKG,
    SUITE,
    UTILS_PKG,
    XEN_SERIES,
    Versions,
    debian_mirrors,
    ensure_host_tools,
    resolve_versions,
)
from xenlab_common import LAB_DIR, BuildError, cache_dir, locked, log, run

IMAGE_SRC = LAB_DIR / "image"
#: Bump to force a rebuild when the image layout changes in a way the hash would miss.
FORMAT = "1"

#: Packages installed into the dom0 rootfs on top of debootstrap's minbase.
DEBOOTSTRAP_INCLUDE = ["python3", "kmod", "udev", "busybox", "procps", "iproute2"]
CHROOT_PACKAGES = [
    "xenstore-utils",
    "python3-pyxs",
    # libvirt, as the reference implementation (monolithic libvirtd: no virtxend in Debian 12)
    "libvirt-daemon-driver-xen",
    "libvirt-daemon",
    "libvirt-clients",
    # libvirt-python, the in-process peer of xen_hyper's benchmark
    "python3-libvirt",
    # sshd for the host's xen+ssh:// tests (dom0-init starts it with a per-boot host key)
    "openssh-server",
]
#: Kernel module trees never needed by the lab (keeps the image small and mkfs fast).
PRUNE_MODULES = [
    "kernel/drivers/gpu",
    "kernel/sound",
    "kernel/drivers/net/wireless",
    "kernel/net/wireless",
    "kernel/net/mac80211",
    "kernel/net/bluetooth",
    "kernel/drivers/bluetooth",
    "kernel/drivers/infiniband",
    "kernel/drivers/staging",
    "kernel/drivers/media",
    "kernel/drivers/net/ethernet",
    "kernel/drivers/scsi",
    "kernel/drivers/usb",
    "kernel/drivers/iio",
    "kernel/drivers/hid",
    "kernel/drivers/input",
    "kernel/drivers/isdn",
    "kernel/drivers/mtd",
    "kernel/drivers/nfc",
    "kernel/drivers/platform",
]
#: Modules of the stage-1 initramfs, in the order given; dependencies are resolved by modprobe.
STAGE1_MODULES = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
#: The PV guests' disk and network frontends (loaded by the guest role only: modules/guest-order).
GUEST_MODULES = ["xen-blkfront", "xen-netfront"]
PRUNE_ROOTFS = [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "var/cache/debconf/templates.dat-old",
]


# --------------------------------------------------------------------------------------------
# cache key


def source_files() -> list[Path]:
    files = [Path(__file__).resolve()]
    files += sorted(p for p in IMAGE_SRC.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def cache_key(versions: Versions) -> str:
    h = hashlib.sha256()
    h.update(f"format={FORMAT}\n".encode())
    for f in source_files():
        h.update(f"{f.relative_to(LAB_DIR)}\n".encode())
        h.update(hashlib.sha256(f.read_bytes()).hexdigest().encode())
    h.update(json.dumps(asdict(versions), sort_keys=True).encode())
    return h.hexdigest()[:16]


def image_dir(key: str) -> Path:
    return cache_dir() / "images" / key


# --------------------------------------------------------------------------------------------
# build steps


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


def chroot_script(main: str, security: str, versions: Versions) -> str:
    pkgs = " ".join([f"{UTILS_PKG}={versions.utils}", *CHROOT_PACKAGES])
    return f"""set -eu
R="$1"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --bind /dev "$R/dev"
mount --bind "$2" "$R/var/cache/apt/archives"
cat > "$R/etc/apt/sources.list" <<EOF
deb {main} {SUITE} main
deb {main} {SUITE}-updates main
deb {security} {SUITE}-security main
EOF
printf '#!/bin/sh\\nexit 101\\n' > "$R/usr/sbin/policy-rc.d"
chmod 755 "$R/usr/sbin/policy-rc.d"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
APT="apt-get -q -y -o Dpkg::Use-Pty=0 -o APT::Sandbox::User=root"
chroot "$R" $APT update
chroot "$R" $APT upgrade
chroot "$R" $APT install --no-install-recommends {pkgs}
chroot "$R" $APT clean
rm -rf "$R/var/lib/apt/lists/"*
"""


def bootstrap_rootfs(work: Path, cache: Path, versions: Versions, logfile: Path) -> Path:
    """debootstrap + the chroot's apt: the slow, kernel-independent part of the rootfs."""
    main, security = debian_mirrors()
    rootfs = work / "rootfs"
    debcache = cache / "debs" / "debootstrap"
    aptcache = cache / "debs" / "apt"
    debcache.mkdir(parents=True, exist_ok=True)
    (aptcache / "partial").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log(f"debootstrap {SUITE} from {main}")
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(DEBOOTSTRAP_INCLUDE)}",
            f"--cache-dir={debcache}",
            SUITE,
            rootfs,
            main,
        ],
        timeout=900,
        logfile=logfile,
    )
    log(f"debootstrap done in {time.monotonic() - t0:.0f}s; installing Xen tools + libvirt")
    t0 = time.monotonic()
    # A private mount namespace: if the build is killed the mounts vanish with it.
    script = work / "chroot.sh"
    script.write_text(chroot_script(main, security, versions))
    run(
        ["unshare", "--mount", "--propagation", "private", "sh", script, rootfs, aptcache],
        timeout=900,
        logfile=logfile,
    )
    log(f"chroot apt done in {time.monotonic() - t0:.0f}s")
    return rootfs


def finish_rootfs(rootfs: Path, work: Path, kroot: Path, versions: Versions, logfile: Path) -> None:
    """Workarounds, the kernel's modules, xenlab's own files, pruning."""
    # Lab-only libvirt workarounds (see lab/README.md):
    # 1. TCG has no VME; every libvirt CPU model needs it ("Cannot find suitable CPU model").
    cpu486 = rootfs / "usr/share/libvirt/cpu_map/x86_486.xml"
    if not cpu486.is_file():
        raise BuildError(f"libvirt workaround: {cpu486} not found")
    text = cpu486.read_text()
    patched = re.sub(r"^\s*<feature name=['\"]vme['\"]/>\s*\n", "", text, flags=re.M)
    if patched == text:
        raise BuildError(f"libvirt workaround: no vme feature in {cpu486}")
    cpu486.write_text(patched)
    # 2. The QEMU driver fails without libvirt-daemon-system's users; only libxl is needed.
    for qemu_drv in rootfs.glob("usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so"):
        qemu_drv.unlink()

    # The dom0 kernel's modules, pruned.
    release = versions.kernel_release
    moddst = rootfs / "usr/lib/modules" / release
    shutil.copytree(kroot / "lib/modules" / release, moddst, symlinks=True)
    for sub in PRUNE_MODULES:
        shutil.rmtree(moddst / sub, ignore_errors=True)
    run(["depmod", "-b", rootfs, release], timeout=120, logfile=logfile)

    # xenlab's own dom0 files.
    for name, dest in (
        ("dom0-init", "usr/local/sbin/xenlab-init"),
        ("xenlab-xenstored", "usr/local/sbin/xenlab-xenstored"),
    ):
        target = rootfs / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(IMAGE_SRC / name, target)
        target.chmod(0o755)
    # The guests' kernel and ramdisk: the same kernel and the stage-1 initramfs.
    guest_dir = rootfs / "usr/lib/xenlab"
    guest_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(work / "out" / "vmlinux", guest_dir / "vmlinux")
    (guest_dir / "vmlinuz").symlink_to("vmlinux")  # the name used before; still works
    shutil.copy2(work / "out" / "initrd.cpio.gz", guest_dir / "initrd.cpio.gz")
    (rootfs / "etc/hostname").write_text("xenlab-dom0\n")
    for d in ("mnt/io", "mnt/src", "mnt/pydeps"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    for p in PRUNE_ROOTFS:
        target = rootfs / p
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
    with contextlib.suppress(FileNotFoundError):
        (rootfs / "usr/sbin/policy-rc.d").unlink()


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


def dpkg_version_in(rootfs: Path, pkg: str) -> str | None:
    status = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    for block in status.split("\n\n"):
        if re.search(rf"^Package: {re.escape(pkg)}$", block, re.M):
            m = re.search(r"^Version: (\S+)", block, re.M)
            return m.group(1) if m else None
    return None


def make_image(rootfs: Path, out: Path, logfile: Path) -> None:
    used = int(run(["du", "-sx", "--block-size=1M", rootfs], timeout=120, capture=True).split()[0])
    size_mb = int(used * 1.25) + 384  # headroom for logs, guests' files, test output
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "xenlab-dom0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
            "-d",
            rootfs,
            out,
            f"{size_mb}M",
        ],
        timeout=300,
        logfile=logfile,
    )


def build(*, force: bool = False, refresh: bool = False) -> Path:
    """Build the image for the current versions unless it is cached; return its directory."""
    ensure_host_tools()
    versions = resolve_versions(refresh=refresh)
    key = cache_key(versions)
    final = image_dir(key)
    cache = cache_dir()
    if final.is_dir() and not force:
        log(f"image {key} is cached ({final})")
        return final
    if os.geteuid() != 0:
        raise BuildError("building the lab image needs root (debootstrap, chroot)")
    if "," in str(cache):
        raise BuildError(f"the cache path must not contain a comma (QEMU options): {cache}")
    with locked(cache / "build.lock", timeout=1200, what="image build"):
        if final.is_dir() and not force:
            log(f"image {key} was built by another process")
            return final
        # Leftovers of killed builds: safe to remove while holding the lock.
        for stale in (cache / "images").glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        (cache / "images").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache / "images"))
        logfile = work / "build.log"
        t_start = time.monotonic()
        try:
            log(
                f"building image {key}: Xen {versions.hypervisor}, "
                f"{versions.kernel_pkg} {versions.kernel} (log: {logfile})"
            )
            (work / "out").mkdir()
            # The boot files (downloads, unpacking, initramfs) are made while debootstrap runs.
            with ThreadPoolExecutor(max_workers=1) as pool:
                boot_files = pool.submit(prepare_boot_files, work, cache, versions, logfile)
                try:
                    rootfs = bootstrap_rootfs(work, cache, versions, logfile)
                finally:
                    kroot = boot_files.result()
            finish_rootfs(rootfs, work, kroot, versions, logfile)
            got = dpkg_version_in(rootfs, UTILS_PKG)
            if got != versions.hypervisor:
                raise BuildError(f"dom0 got {UTILS_PKG} {got}, hypervisor is {versions.hypervisor}")
            manifest = {
                "key": key,
                "format": FORMAT,
                "versions": asdict(versions),
                "libvirt": dpkg_version_in(rootfs, "libvirt-daemon"),
                "python3": dpkg_version_in(rootfs, "python3"),
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            t0 = time.monotonic()
            make_image(rootfs, work / "out" / "dom0.img", logfile)
            log(f"dom0.img written in {time.monotonic() - t0:.0f}s")
            manifest["build_seconds"] = round(time.monotonic() - t_start, 1)
            (work / "out" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            shutil.copy2(logfile, work / "out" / "build.log")
            # Atomic publish: the out directory appears complete under its key, or not at all.
            if final.exists():  # --force: move the old image aside (removed with work/)
                os.rename(final, work / "replaced")
            os.rename(work / "out", final)
        except BaseException:
            log(f"build failed; log kept at {cache / 'last-failed-build.log'}")
            with contextlib.suppress(OSError):
                shutil.copy2(logfile, cache / "last-failed-build.log")
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"image {key} built in {time.monotonic() - t_start:.0f}s ({final})")
        prune_images(keep=key)
    return final


def prune_images(keep: str, max_images: int = 2) -> None:
    """Drop older images, keeping ``keep`` and the newest few others."""
    images = sorted(
        (p for p in (cache_dir() / "images").iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    kept = 0
    for p in images:
        if p.name == keep:
            continue
        kept += 1
        if kept >= max_images:
            shutil.rmtree(p, ignore_errors=True)
