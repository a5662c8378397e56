"""A tiny real Linux guest for tests, the kit and the benchmark: Debian's kernel + busybox.

``guest_image()`` returns (kernel, initrd), building them once into a cache directory from
Debian packages (``apt-get download`` + ``dpkg -x``, as the Xen lab does), reusing .debs already
in the lab's cache. The init loads the ACPI button, evdev and virtio-balloon modules, prints
``virtkit-guest: up`` on the serial console, and powers off when the power button is pressed
(QMP ``system_powerdown``): that is what makes a cooperative shutdown really shut down. With
``virtkit.write=N`` on its kernel command line it then writes N KiB onto its first virtio disk
and prints ``virtkit-guest: wrote N KiB`` (the stats tests' disk I/O).
"""

from __future__ import annotations

import gzip
import lzma
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

__all__ = ["READY_MARK", "GuestBuildError", "cache_dir", "guest_image"]

READY_MARK = "virtkit-guest: up"
CMDLINE = "console=ttyS0 quiet panic=-1"
_FORMAT = "4"  # bump when the initramfs layout changes
_MODULES = ("button", "evdev", "virtio_pci", "virtio_balloon", "virtio_blk")

_INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "virtkit-guest: insmod $m failed"; done
# Every "Power Button" input device: any event on it means the button was pressed.
for e in /sys/class/input/event*; do
  if grep -q "Power Button" "$e/device/name" 2>/dev/null; then
    echo "virtkit-guest: power button is ${e##*/}"
    ( n=/dev/input/${e##*/}
      while [ ! -c "$n" ]; do sleep 0.1; done
      while ! dd if="$n" of=/dev/null bs=24 count=1 2>/dev/null; do sleep 1; done
      echo "virtkit-guest: power button"; poweroff -f ) &
  fi
done
echo "READY_MARK"
# virtkit.write=N on the kernel command line: N KiB of zeros onto the first disk, flushed.
w=""
for a in $(cat /proc/cmdline); do case "$a" in virtkit.write=*) w="${a#virtkit.write=}";; esac; done
if [ -n "$w" ]; then
  for i in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
  if dd if=/dev/zero of=/dev/vda bs=1024 count="$w" conv=fsync; then
    echo "virtkit-guest: wrote $w KiB"
  else
    echo "virtkit-guest: write failed"
  fi
fi
while :; do sleep 3600; done
""".replace("READY_MARK", READY_MARK)


class GuestBuildError(RuntimeError):
    pass


def cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(os.environ.get("VIRTKIT_QEMU_GUEST_CACHE") or pathlib.Path(base) / "virtkit-qemu")


def _run(argv: list[str], cwd: pathlib.Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise GuestBuildError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _find_debs(cache: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The kernel and busybox-static .debs: from the lab's cache, ours, or apt-get download."""
    dirs = [cache / "debs", cache.parent / "virtkit-lab" / "debs" / "host"]

    def look() -> tuple[pathlib.Path | None, pathlib.Path | None]:
        kernel = busybox = None
        for d in dirs:
            kernel = kernel or max(d.glob("linux-image-[0-9]*-amd64_*.deb"), default=None)
            busybox = busybox or max(d.glob("busybox-static_*.deb"), default=None)
        return kernel, busybox

    kernel, busybox = look()
    if kernel is None or busybox is None:
        dest = cache / "debs"
        dest.mkdir(parents=True, exist_ok=True)
        wanted = []
        if kernel is None:
            # linux-image-amd64 is a metapackage: download the image it depends on.
            deps = _run(["apt-cache", "depends", "--important", "linux-image-amd64"], timeout=60)
            names = re.findall(r"Depends:\s*(linux-image-\S+)", deps)
            if not names:
                raise GuestBuildError(f"apt-cache found no kernel behind linux-image-amd64: {deps!r}")
            wanted.append(names[0])
        if busybox is None:
            wanted.append("busybox-static")
        _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *wanted], cwd=dest)
        kernel, busybox = look()
    if kernel is None or busybox is None:
        raise GuestBuildError("apt-get download produced no linux-image / busybox-static .deb")
    return kernel, busybox


def _module_deps(ko: pathlib.Path) -> list[str]:
    data = _read_ko(ko)
    m = re.search(rb"depends=([^\0]*)\0", data)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def _read_ko(ko: pathlib.Path) -> bytes:
    return lzma.decompress(ko.read_bytes()) if ko.suffix == ".xz" else ko.read_bytes()


def _modules(kroot: pathlib.Path) -> list[pathlib.Path]:
    """The modules to load, dependencies first (read from each module's own modinfo)."""
    index: dict[str, pathlib.Path] = {}
    for ko in kroot.glob("lib/modules/*/kernel/**/*.ko*"):
        index[ko.name.split(".ko")[0].replace("-", "_")] = ko
    order: list[pathlib.Path] = []

    def add(name: str) -> None:
        ko = index.get(name.replace("-", "_"))
        if ko is None:
            return  # built into the kernel
        for dep in _module_deps(ko):
            add(dep)
        if ko not in order:
            order.append(ko)

    for name in _MODULES:
        add(name)
    return order


def guest_image() -> tuple[pathlib.Path, pathlib.Path]:
    """(kernel, initrd) of the test guest, built on first use. Raises GuestBuildError."""
    cache = cache_dir()
    kernel_deb, busybox_deb = _find_debs(cache)
    out = cache / f"guest-{_FORMAT}-{kernel_deb.stem}-{busybox_deb.stem}"
    kernel, initrd = out / "vmlinuz", out / "initrd.cpio.gz"
    if kernel.is_file() and initrd.is_file():
        return kernel, initrd
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = pathlib.Path(tmp)
        kroot, bbroot, root = work / "k", work / "bb", work / "root"
        _run(["dpkg", "-x", str(kernel_deb), str(kroot)])
        _run(["dpkg", "-x", str(busybox_deb), str(bbroot)])
        for d in ("bin", "sbin", "dev", "proc", "sys", "modules"):
            (root / d).mkdir(parents=True)
        shutil.copy2(bbroot / "bin" / "busybox", root / "bin" / "busybox")
        for applet in _run([str(root / "bin" / "busybox"), "--list"], timeout=30).split():
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        lines = []
        for ko in _modules(kroot):
            name = ko.name.split(".ko")[0] + ".ko"
            (root / "modules" / name).write_bytes(_read_ko(ko))
            lines.append(name)
        (root / "modules" / "order").write_text("\n".join(lines) + "\n")
        (root / "init").write_text(_INIT)
        (root / "init").chmod(0o755)
        names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        cpio = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"],
            input="\n".join([".", *names]).encode() + b"\n",
            capture_output=True,
            cwd=root,
            timeout=120,
            check=False,
        )
        if cpio.returncode != 0:
            raise GuestBuildError(f"cpio failed: {cpio.stderr.decode(errors='replace')}")
        stage = work / "out"
        stage.mkdir()
        (stage / "initrd.cpio.gz").write_bytes(gzip.compress(cpio.stdout, compresslevel=6, mtime=0))
        vmlinuz = max(kroot.glob("boot/vmlinuz-*"))
        shutil.copy2(vmlinuz, stage / "vmlinuz")
        shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(stage, out)  # atomic: a concurrent builder never sees half a guest
        except OSError:
            if not (kernel.is_file() and initrd.is_file()):
                raise  # not a concurrent builder that finished first
    return kernel, initrd
