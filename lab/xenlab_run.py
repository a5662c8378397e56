"""A lab run: the image for the current sources (built when missing), the accelerator (KVM only
where a probe boot proved it works), a fresh run directory, the boot retried when dom0 never
came up, the files to collect, and the exit code to use (the job's, or 124/125).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import xenlab_apt
import xenlab_build as B
import xenlab_common as C
import xenlab_host as H
from xenlab_common import BuildError, log
from xenlab_pydeps import build_pydeps
from xenlab_qemu import Boot, Outcome, boot_once, console_tail

CHECKOUT = C.LAB_DIR.parent
EXIT_TIMEOUT = 124
EXIT_VM_DIED = 125
BOOT_RETRIES = int(os.environ.get("VIRTKIT_LAB_BOOT_RETRIES", "1"))
#: Host environment variables handed to the job in dom0.
PASS_ENV = ("VIRTKIT_LAB_TIMEOUT_SCALE",)


def image_for_run(*, allow_build: bool = True) -> Path:
    versions = xenlab_apt.resolve_versions(allow_update=False)
    img = B.image_dir(B.cache_key(versions))
    if img.is_dir():
        return img
    if not allow_build:
        raise BuildError(f"no lab image for the current sources/versions; run {sys.argv[0]} build")
    log("no cached image for the current lab sources and package versions: building it")
    return B.build()


# --------------------------------------------------------------------------------------------
# the accelerator: KVM only where a probe boot proved it works


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def choose_accel(image: Path) -> str:
    wanted = os.environ.get("VIRTKIT_LAB_ACCEL", "auto")
    if wanted not in ("auto", "tcg", "kvm"):
        raise BuildError(f"VIRTKIT_LAB_ACCEL must be auto, tcg or kvm, not {wanted!r}")
    if wanted != "auto":
        return wanted
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    qemu_version = C.run(["qemu-system-x86_64", "--version"], timeout=30, capture=True)
    ident = {
        "boot_id": _boot_id(),
        "qemu": qemu_version.splitlines()[0] if qemu_version else "",
    }
    cache = C.cache_dir() / "kvm-probe.json"
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(cache.read_text())
        if known.get("ident") == ident:
            return "kvm" if known.get("ok") else "tcg"
    ok, detail = probe_kvm(image)
    log(f"KVM probe: {'usable' if ok else 'not usable'} ({detail}); cached for this host boot")
    cache.write_text(json.dumps({"ident": ident, "ok": ok, "detail": detail}) + "\n")
    return "kvm" if ok else "tcg"


def probe_kvm(image: Path) -> tuple[bool, str]:
    """Boot the lab once under KVM with a short timeout; only a clean 'true' counts."""
    runs = C.cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="kvm-probe-", dir=runs))
    limit = float(os.environ.get("VIRTKIT_LAB_KVM_PROBE_TIMEOUT", "30"))
    try:
        boot = Boot(image=image, run_dir=run_dir, accel="kvm", boot_timeout=limit)
        out = boot_once(boot, {"XENLAB_MODE": "run", "XENLAB_TIMEOUT": "20"}, "true\n", 20)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if out.kind == "done" and out.rc == 0:
        return True, f"dom0 ready in {out.ready_at or 0:.1f}s"
    return False, f"{out.kind}: {out.detail or out.rc}"


# --------------------------------------------------------------------------------------------
# one run: a boot (retried when dom0 never came up), its files, its exit code


def new_run_dir() -> Path:
    runs = C.cache_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in runs.iterdir():  # failed runs are kept for a day for post-mortems
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))


def run_in_lab(
    job: str,
    *,
    timeout: float,
    xenstored: str = "oxenstored",
    with_pydeps: bool = True,
    collect: Sequence[tuple[str, Path]] = (),
    dom0_vcpus: int = 1,
    host: H.HostPhase | None = None,
    pydeps: Path | None = None,
) -> int:
    """Boot the pristine image, run the bash ``job`` in dom0; return the exit code to use.

    With ``host``: dom0 gets a network and sshd, and ``host`` runs once dom0 is ready, before
    the job (which dom0 starts when the host phase has ended).
    """
    t_start = time.monotonic()
    passed = {k: v for k, v in os.environ.items() if k in PASS_ENV}
    job = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in passed.items()) + job
    image = image_for_run()
    if pydeps is None and with_pydeps:
        pydeps = build_pydeps()
    accel = choose_accel(image)
    run_dir = new_run_dir()
    boot = Boot(image=image, run_dir=run_dir, accel=accel, src=CHECKOUT, pydeps=pydeps, dom0_vcpus=dom0_vcpus)
    config = {
        "XENLAB_MODE": "run",
        "XENLAB_TIMEOUT": str(int(timeout)),
        "XENLAB_XENSTORED": xenstored,
        "XENLAB_HAVE_SRC": "1",
        "XENLAB_HAVE_PYDEPS": "1" if pydeps else "0",
    }
    files: dict[str, str] = {}
    if host is not None:
        wait = str(int(host.timeout + H.DOM0_SLACK))
        config |= {"XENLAB_SSH": "1", "XENLAB_WAIT_HOST": "1", "XENLAB_HOST_TIMEOUT": wait}
        files["authorized_keys"] = host.key.with_suffix(".pub").read_text()
    attempts = 1 + max(0, BOOT_RETRIES)
    out = Outcome("boot-failed")
    for attempt in range(1, attempts + 1):
        if host is not None:
            boot.ssh_port = H.free_port()  # a new one each attempt: a taken port fails QEMU
        out = boot_once(boot, config, job, timeout, files=files, host=host)
        if out.kind != "boot-failed":
            break
        log(f"boot attempt {attempt}/{attempts} failed: {out.detail}; last console lines:")
        print(console_tail(boot, 15), file=sys.stderr)
        if attempt < attempts:
            log(f"RETRYING the boot (attempt {attempt + 1}/{attempts})")
    for name, dest in collect:
        src = boot.io / name
        if src.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    total = time.monotonic() - t_start
    ready = f"dom0 ready at {out.ready_at:.1f}s, " if out.ready_at is not None else ""
    if out.kind == "done":
        assert out.rc is not None
        log(f"done: exit {out.rc} ({ready}VM {out.seconds:.1f}s, total {total:.1f}s, {accel})")
        shutil.rmtree(run_dir, ignore_errors=True)
        return out.rc
    if out.kind == "timeout":
        log(f"TIMEOUT: {out.detail} ({ready}total {total:.1f}s); last console lines:")
        print(console_tail(boot), file=sys.stderr)
        log(f"run directory kept: {run_dir}")
        return EXIT_TIMEOUT
    log(f"VM DIED without a result: {out.detail} (total {total:.1f}s); last console lines:")
    print(console_tail(boot), file=sys.stderr)
    log(f"run directory kept: {run_dir}")
    return EXIT_VM_DIED
