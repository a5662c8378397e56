"""One boot of the lab VM: QEMU's command line (Xen, dom0's kernel and image, the 9p shares,
the optional ssh forward), the io share's config and job, dom0's output streamed as it comes,
and the :class:`Outcome` once QEMU is gone. Retries, the image and the accelerator are the
caller's (xenlab_run.py).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import xenlab_host as H
from xenlab_common import BuildError

CONSOLE_TAIL = 40
#: A boot whose dom0 is not ready after this many seconds has failed (lab/README.md: timings).
BOOT_TIMEOUT = float(os.environ.get("VIRTKIT_LAB_BOOT_TIMEOUT", "90"))
#: The emulated CPU under TCG. Not "max,-smap" (../shared/lab/NOTES.md): with it, dom0's
#: toolstack processes died of heap corruption in runs that created several guests, and C code
#: got slow where glibc picks ERMS/AVX2 string functions (lab/README.md, Pitfalls, has the
#: figures). Nehalem (SSE4.2, no XSAVE, AVX, ERMS or SMAP) shows neither. Override with
#: VIRTKIT_LAB_CPU.
TCG_CPU = os.environ.get("VIRTKIT_LAB_CPU", "Nehalem")


@dataclass
class Boot:
    image: Path
    run_dir: Path
    accel: str = "tcg"
    src: Path | None = None
    pydeps: Path | None = None
    interactive: bool = False
    dom0_vcpus: int = 1
    xen_args: list[str] = field(default_factory=list)
    #: A host loopback port QEMU forwards to dom0's port 22 (user network); None: no network.
    ssh_port: int | None = None
    #: Seconds until a boot without a ready dom0 counts as failed (the KVM probe's is shorter).
    boot_timeout: float = BOOT_TIMEOUT

    @property
    def io(self) -> Path:
        return self.run_dir / "io"

    @property
    def console(self) -> Path:
        return self.run_dir / "console.log"

    def qemu_argv(self) -> list[str]:
        for p in (self.image, self.run_dir, self.src, self.pydeps):
            if p is not None and "," in str(p):
                raise BuildError(f"path contains a comma, which breaks QEMU's options: {p}")
        img = self.image
        if self.accel == "kvm":
            accel = ["-accel", "kvm", "-cpu", "host"]
        else:
            accel = ["-accel", "tcg,thread=multi", "-cpu", TCG_CPU]
        xen_cmdline = " ".join(
            [
                "console=com1",
                "com1=115200,8n1",
                "dom0_mem=768M,max:768M",
                # 2 dom0 vcpus boot ~1.5x slower under TCG than 1 (measured); guests still
                # get the second CPU. Benchmarks of concurrency ask for 2 (--dom0-vcpus).
                f"dom0_max_vcpus={self.dom0_vcpus}",
                "loglvl=all",
                "guest_loglvl=all",
                "spec-ctrl=no",  # a lab: no speculative-execution mitigations under TCG
                *self.xen_args,
            ]
        )
        dom0_cmdline = "console=hvc0 earlyprintk=xen root=/dev/vda quiet mitigations=off"
        if self.interactive:
            serial = ["-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"]
        else:
            serial = ["-serial", f"file:{self.console}"]
        argv = [
            "qemu-system-x86_64",
            *accel,
            "-machine",
            "pc",
            "-smp",
            "2",
            "-m",
            "2048",
            "-display",
            "none",
            "-vga",
            "none",
            "-monitor",
            "none",
            *serial,
            "-nic",
            self.nic(),
            "-no-reboot",
            "-kernel",
            str(img / "xen"),
            "-append",
            xen_cmdline,
            "-initrd",
            f"{img / 'vmlinux'} {dom0_cmdline},{img / 'initrd.cpio.gz'}",
            "-drive",
            f"file={img / 'dom0.img'},format=raw,if=virtio,snapshot=on",
            "-virtfs",
            f"local,path={self.io},mount_tag=io,security_model=none,id=io",
        ]
        if self.src is not None:
            argv += [
                "-virtfs",
                f"local,path={self.src},mount_tag=src,security_model=none,readonly=on,id=src",
            ]
        if self.pydeps is not None:
            argv += [
                "-virtfs",
                f"local,path={self.pydeps},mount_tag=pydeps,security_model=none,readonly=on,id=pydeps",
            ]
        return argv

    def nic(self) -> str:
        if self.ssh_port is None:
            return "none"
        # restrict=on: dom0 reaches nothing outside; the forward into it still works.
        return f"user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22"


@dataclass
class Outcome:
    kind: str  # "done" | "timeout" | "boot-failed" | "died"
    rc: int | None = None
    detail: str = ""
    ready_at: float | None = None
    seconds: float = 0.0


class _Streamer:
    """Copies what dom0 writes to io/stdout and io/stderr to ours, as it arrives."""

    def __init__(self, io: Path) -> None:
        self.files = [(io / "stdout", sys.stdout.buffer), (io / "stderr", sys.stderr.buffer)]
        self.offsets = [0, 0]

    def pump(self) -> None:
        for i, (path, out) in enumerate(self.files):
            try:
                with path.open("rb") as fh:
                    fh.seek(self.offsets[i])
                    data = fh.read()
            except FileNotFoundError:
                continue
            if data:
                self.offsets[i] += len(data)
                out.write(data)
                out.flush()


_current_qemu: subprocess.Popen[bytes] | None = None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the QEMU we started (its own process group, created by us) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def on_signal(signum: int, _frame: object) -> None:
    """SIGINT/SIGTERM/SIGHUP of xenlab: the QEMU it runs goes with it."""
    if _current_qemu is not None:
        _kill(_current_qemu)
    raise SystemExit(128 + signum)


def boot_once(
    boot: Boot,
    config: dict[str, str],
    job: str | None,
    timeout: float,
    *,
    files: dict[str, str] | None = None,
    host: H.HostPhase | None = None,
) -> Outcome:
    """One boot: returns when QEMU is gone (finished, died, or killed by us). ``files`` are
    written into io/ first; ``host`` runs on the host once dom0 is ready (dom0 waits for it)."""
    global _current_qemu
    if boot.io.exists():
        shutil.rmtree(boot.io)
    boot.io.mkdir(parents=True)
    with contextlib.suppress(FileNotFoundError):
        boot.console.unlink()
    lines = [f"{k}={shlex.quote(v)}" for k, v in config.items()]
    (boot.io / "config").write_text("\n".join(lines) + "\n")
    if job is not None:
        (boot.io / "job").write_text(job)
    for name, text in (files or {}).items():
        (boot.io / name).write_text(text)
    boot_limit = boot.boot_timeout
    hard = boot_limit + timeout + 60
    if host is not None:
        hard += host.timeout + H.DOM0_SLACK
    argv = ["timeout", "--kill-after=5", str(int(hard) + 5), *boot.qemu_argv()]
    (boot.run_dir / "qemu.argv").write_text(shlex.join(argv) + "\n")
    t0 = time.monotonic()
    qlog = (boot.run_dir / "qemu.log").open("wb")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=None if boot.interactive else subprocess.DEVNULL,
            stdout=None if boot.interactive else qlog,
            stderr=qlog,
            start_new_session=not boot.interactive,
        )
    except FileNotFoundError as exc:
        qlog.close()
        raise BuildError("qemu-system-x86_64 not found: run lab/xenlab build first") from exc
    _current_qemu = proc
    streamer = _Streamer(boot.io)
    ready_at: float | None = None
    kind = ""
    try:
        if boot.interactive:
            proc.wait(timeout=hard)
        while proc.poll() is None:
            time.sleep(0.2)
            if job is not None:
                streamer.pump()
            now = time.monotonic() - t0
            if ready_at is None and (boot.io / "ready").exists():
                ready_at = now
            if host is not None and ready_at is not None and boot.ssh_port is not None:
                host.step(boot.io, boot.ssh_port)
            if ready_at is None and now > boot_limit:
                kind = "boot-failed"
                _kill(proc)
                detail = f"dom0 not ready after {boot_limit:.0f}s"
                return Outcome(kind, detail=detail, seconds=now)
            if now > hard:
                _kill(proc)
                return Outcome("timeout", detail=f"VM still running after {hard:.0f}s", seconds=now)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return Outcome("timeout", detail=f"VM still running after {hard:.0f}s")
    finally:
        qlog.close()
        _current_qemu = None
        if host is not None:
            host.abandon()
    streamer.pump()
    seconds = time.monotonic() - t0
    if ready_at is None and (boot.io / "ready").exists():
        ready_at = seconds
    rc_file = boot.io / "rc"
    if rc_file.exists():
        try:
            rc = int(rc_file.read_text().strip())
        except ValueError:
            return Outcome("died", detail=f"unreadable rc file: {rc_file.read_text()!r}")
        if (boot.io / "timedout").exists():
            return Outcome(
                "timeout", rc=rc, detail=f"the command ran over {timeout:.0f}s", ready_at=ready_at, seconds=seconds
            )
        return Outcome("done", rc=rc, ready_at=ready_at, seconds=seconds)
    if proc.returncode == 124:
        return Outcome(
            "timeout", detail=f"QEMU killed by timeout after {hard:.0f}s", ready_at=ready_at, seconds=seconds
        )
    what = f"QEMU exited with {proc.returncode}"
    if ready_at is None:
        return Outcome("boot-failed", detail=f"{what} before dom0 was ready", seconds=seconds)
    return Outcome("died", detail=f"{what} without a result", ready_at=ready_at, seconds=seconds)


def console_tail(boot: Boot, n: int = CONSOLE_TAIL) -> str:
    text = ""
    with contextlib.suppress(OSError):
        text = boot.console.read_text(errors="replace")
    lines = [line for line in text.replace("\r", "").splitlines() if line.strip()][-n:]
    qemu = ""
    with contextlib.suppress(OSError):
        qemu = (boot.run_dir / "qemu.log").read_text(errors="replace").strip()
    out = "\n".join(f"  | {line}" for line in lines) or "  | (empty console)"
    if qemu:
        out += "\n  qemu: " + qemu[-2000:]
    return out
