"""Build the xenlab image (Xen 4.17 + Debian 12 dom0) from Debian packages only.

Everything that goes into the image is produced here from ``apt-get download`` +
``dpkg -x`` (hypervisor, kernel, busybox-static) and ``debootstrap`` (dom0 rootfs).
Nothing is installed into the host's boot configuration.

The result lives in ``CACHE/images/<key>/`` where the key hashes this file, xenlab_boot.py
(the boot files: hypervisor, kernel, initramfs), ``lab/image/`` and the Debian versions of the
hypervisor, xen-utils and kernel packages. A build is done in a temporary directory and renamed
into place at the very end, so an interrupted build never leaves a half image behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from xenlab_apt import SUITE, UTILS_PKG, Versions, debian_mirrors, ensure_host_tools, resolve_versions
from xenlab_boot import IMAGE_SRC, prepare_boot_files
from xenlab_common import LAB_DIR, BuildError, cache_dir, locked, log, run

#: Bump to force a rebuild when the image layout changes in a way the hash would miss.
FORMAT = "1"
#: The build's own modules: what their code does shapes the image, so they are in its key.
BUILD_MODULES = ("xenlab_build.py", "xenlab_boot.py")

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
    files = [LAB_DIR / m for m in BUILD_MODULES]
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
# the host keys openssh-server made at install: never used (dom0-init makes one per boot), never shipped
rm -f "$R"/etc/ssh/ssh_host_*
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
