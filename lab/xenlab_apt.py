"""The host side of an image build: host tools, apt metadata and the Debian versions the image
is built from, and the Debian mirrors read from the host's apt sources.

Not hashed into the image key: what it resolves (the versions) is.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from xenlab_common import BuildError, log, run

SUITE = "bookworm"
XEN_SERIES = "4.17"
HV_PKG = f"xen-hypervisor-{XEN_SERIES}-amd64"
UTILS_PKG = f"xen-utils-{XEN_SERIES}"
KERNEL_META = "linux-image-amd64"
BUSYBOX_PKG = "busybox-static"

HOST_TOOLS: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "cpio": "cpio",
    "depmod": "kmod",
    "modprobe": "kmod",
    "unshare": "util-linux",
    "timeout": "coreutils",
}


def apt_lists_age() -> float:
    """Seconds since the host's apt lists were last refreshed (inf when there are none)."""
    lists = Path("/var/lib/apt/lists")
    newest = 0.0
    with contextlib.suppress(OSError):
        for entry in lists.iterdir():
            if entry.name.endswith(("_Release", "_InRelease")):
                newest = max(newest, entry.stat().st_mtime)
    return time.time() - newest if newest else float("inf")


def apt_update(reason: str) -> None:
    log(f"apt-get update ({reason})")
    run(["apt-get", "update", "-qq"], timeout=300)


def ensure_host_tools() -> None:
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise BuildError(f"missing host packages {' '.join(missing)}; install them as root")
    log(f"installing host prerequisites: {' '.join(missing)}")
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(cmd, timeout=600, env=env)
    except BuildError:
        apt_update("a host prerequisite was not found")
        run(cmd, timeout=600, env=env)


def candidate_versions(*pkgs: str) -> dict[str, str]:
    """apt-cache policy candidates (one call for all: apt-cache is slow to start)."""
    out = run(["apt-cache", "policy", *pkgs], timeout=60, capture=True)
    result: dict[str, str] = {}
    current = None
    for line in out.splitlines():
        m = re.match(r"^(\S+):$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^\s+Candidate:\s*(\S+)", line)
        if m and current in pkgs and m.group(1) != "(none)":
            result[current] = m.group(1)
    return result


def kernel_package() -> str | None:
    out = run(["apt-cache", "depends", KERNEL_META], timeout=60, capture=True)
    for m in re.finditer(r"^\s*Depends:\s*(linux-image-\S+)", out, re.M):
        name = m.group(1)
        if not name.endswith("-unsigned") and not name.startswith("<"):
            return name
    return None


@dataclass(frozen=True)
class Versions:
    hypervisor: str
    utils: str
    kernel_pkg: str
    kernel: str
    busybox: str

    @property
    def kernel_release(self) -> str:
        return self.kernel_pkg.removeprefix("linux-image-")


def resolve_versions(*, refresh: bool = False, allow_update: bool = True) -> Versions:
    """Debian versions the image is built from (apt-cache policy candidates on this host)."""
    max_age = float(os.environ.get("VIRTKIT_LAB_APT_MAX_AGE", str(12 * 3600)))
    if allow_update and os.geteuid() == 0:
        age = apt_lists_age()
        if refresh:
            apt_update("--refresh")
        elif age > max_age:
            apt_update(f"apt lists are {age / 3600:.1f} h old, > {max_age / 3600:.1f} h")

    def resolve() -> Versions | None:
        kpkg = kernel_package()
        cand = candidate_versions(HV_PKG, UTILS_PKG, BUSYBOX_PKG, *([kpkg] if kpkg else []))
        hv, ut, bb = cand.get(HV_PKG), cand.get(UTILS_PKG), cand.get(BUSYBOX_PKG)
        kv = cand.get(kpkg) if kpkg else None
        if hv and ut and kpkg and kv and bb:
            return Versions(hv, ut, kpkg, kv, bb)
        return None

    versions = resolve()
    if versions is None and allow_update and os.geteuid() == 0:
        apt_update("a lab package has no candidate version")
        versions = resolve()
    if versions is None:
        raise BuildError(
            f"apt has no candidate for {HV_PKG}, {UTILS_PKG}, {KERNEL_META} or {BUSYBOX_PKG}: "
            f"this host needs Debian 12 ({SUITE}) apt sources incl. {SUITE}-security"
        )
    if versions.hypervisor != versions.utils:
        raise BuildError(
            f"{HV_PKG} {versions.hypervisor} and {UTILS_PKG} {versions.utils} differ: "
            "the lab needs matching hypervisor and tools; check the host's apt sources"
        )
    return versions


# mirrors from the host's apt sources


@dataclass(frozen=True)
class Mirror:
    uri: str
    suites: tuple[str, ...]


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key is not None:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields:
            yield fields


def host_mirrors() -> list[Mirror]:
    """Debian mirrors configured on the host (deb822 and one-line formats)."""
    mirrors: list[Mirror] = []
    sources = Path("/etc/apt/sources.list.d")
    files = sorted(sources.glob("*.sources")) if sources.is_dir() else []
    for f in files:
        for st in _deb822_stanzas(f.read_text(errors="replace")):
            if st.get("enabled", "yes").lower() == "no" or "deb" not in st.get("types", "").split():
                continue
            for uri in st.get("uris", "").split():
                mirrors.append(Mirror(uri.rstrip("/"), tuple(st.get("suites", "").split())))
    one_line = [Path("/etc/apt/sources.list")]
    if sources.is_dir():
        one_line += sorted(sources.glob("*.list"))
    for f in one_line:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m:
                mirrors.append(Mirror(m.group(1).rstrip("/"), (m.group(2),)))
    return mirrors


def debian_mirrors() -> tuple[str, str]:
    """(main archive URI, security archive URI) for SUITE, read from the host's apt sources."""
    main = security = None
    for m in host_mirrors():
        if main is None and SUITE in m.suites:
            main = m.uri
        if security is None and f"{SUITE}-security" in m.suites:
            security = m.uri
    if main is None or security is None:
        raise BuildError(
            f"the host's apt sources need both '{SUITE}' and '{SUITE}-security' "
            "(/etc/apt/sources.list or /etc/apt/sources.list.d/*.sources)"
        )
    return main, security
