"""xenlab: real Xen 4.17 with a Debian 12 dom0, booted in QEMU, for virtkit's lab tests.

    lab/xenlab build [--force] [--refresh]       build (or find cached) image
    lab/xenlab run [--timeout S] 'CMD'           boot, run CMD in dom0, exit with its code
    lab/xenlab shell                             interactive dom0 shell on the serial console
    lab/xenlab test [--junitxml P] [pytest args] boot once, run the lab tests: the host's
                                                 against dom0's sshd, then dom0's
    lab/xenlab key | probe-kvm | clean

Exit codes of run/test: the command's own; 124 timeout; 125 the VM died without a result;
2 usage or build errors.
"""

# The commands. (The docstring above is `xenlab --help`.) The project's packages for dom0 are
# xenlab_pydeps.py, one boot of the VM xenlab_qemu.py, a lab run (image, accelerator, retries)
# xenlab_run.py, test's host phase xenlab_host.py, the image xenlab_build.py (its boot files
# xenlab_boot.py).

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import xenlab_apt
import xenlab_build as B
import xenlab_common as C
import xenlab_host as H
from xenlab_common import BuildError, log
from xenlab_pydeps import build_pydeps
from xenlab_qemu import Boot, boot_once, on_signal
from xenlab_run import EXIT_TIMEOUT, EXIT_VM_DIED, choose_accel, image_for_run, new_run_dir, run_in_lab

CHECKOUT = C.LAB_DIR.parent
EXIT_SETUP = 2
LAB_TEST_DIRS = ("tests/lab", "plugins/*/tests/lab")


def cmd_build(args: argparse.Namespace) -> int:
    img = B.build(force=args.force, refresh=args.refresh)
    print(img)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    command = " ".join(args.command)
    if not command.strip():
        log("run: no command given")
        return EXIT_SETUP
    return run_in_lab(
        command + "\n",
        timeout=args.timeout,
        xenstored=args.xenstored,
        with_pydeps=not args.no_pydeps,
        dom0_vcpus=args.dom0_vcpus,
    )


def cmd_shell(args: argparse.Namespace) -> int:
    image = image_for_run()
    pydeps = None if args.no_pydeps else build_pydeps()
    accel = choose_accel(image)
    run_dir = new_run_dir()
    boot = Boot(
        image=image,
        run_dir=run_dir,
        accel=accel,
        src=CHECKOUT,
        pydeps=pydeps,
        interactive=True,
        dom0_vcpus=args.dom0_vcpus,
    )
    config = {
        "XENLAB_MODE": "shell",
        "XENLAB_TIMEOUT": str(int(args.timeout)),
        "XENLAB_XENSTORED": args.xenstored,
        "XENLAB_HAVE_SRC": "1",
        "XENLAB_HAVE_PYDEPS": "1" if pydeps else "0",
    }
    log(f"booting dom0 ({accel}); 'exit' in the shell powers off; Ctrl-a x3 switches to Xen")
    out = boot_once(boot, config, None, args.timeout)
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if out.kind == "done" else (EXIT_TIMEOUT if out.kind == "timeout" else 0)


def lab_test_paths(patterns: Sequence[str] = LAB_TEST_DIRS) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        found += sorted(str(p.relative_to(CHECKOUT)) for p in CHECKOUT.glob(pattern) if p.is_dir())
    return found


def _names_a_path(arg: str) -> bool:
    if arg.startswith("-"):
        return False
    return (CHECKOUT / arg.split("::", 1)[0]).exists()


def _host_side(path: str) -> bool:
    return "lab_host" in Path(path.split("::", 1)[0]).parts


def cmd_test(args: argparse.Namespace, pytest_args: list[str]) -> int:
    """No path named: every lab test, host side and dom0 side. Paths named: those only, each
    on its side (a path under a ``lab_host`` dir runs on the host against dom0's sshd)."""
    junit = Path(args.junitxml)
    if not junit.is_absolute():
        junit = Path.cwd() / junit
    named = [a for a in pytest_args if _names_a_path(a)]
    options = [a for a in pytest_args if not _names_a_path(a)]
    if named:
        paths = [a for a in named if not _host_side(a)]
        host_paths = [a for a in named if _host_side(a)]
    else:
        paths = lab_test_paths()
        host_paths = [] if args.no_host_phase else lab_test_paths(H.LAB_HOST_TEST_DIRS)
    if not paths and not host_paths:
        log("no lab tests found (tests/lab, plugins/*/tests/lab, plugins/*/tests/lab_host)")
        return 5
    argv = [
        "python3",
        "-m",
        "pytest",
        "-c",
        "lab/pytest.ini",
        "--rootdir=/mnt/src",
        "--confcutdir=/mnt/src",
        "-p",
        "pytest_xenlab",
        "-p",
        "no:cacheprovider",
        "--junitxml=/mnt/io/junit.xml",
        *options,
        *paths,
    ]
    job = "\n".join(
        [
            "set -u",
            "python3 -c 'import sys; print(\"dom0 python\", sys.version.split()[0])'",
            shlex.join(argv) if paths else "echo 'no dom0-side lab tests named'",
            "",
        ]
    )
    if not host_paths:
        rc = run_in_lab(job, timeout=args.lab_timeout, collect=[("junit.xml", junit)])
    else:
        with tempfile.TemporaryDirectory(prefix="xenlab-host-") as tmp:
            pydeps = build_pydeps()
            key, _pub = H.make_key(Path(tmp) / "ssh")
            host_junit = Path(tmp) / "host-junit.xml"
            host = H.HostPhase(H.pytest_argv(host_junit, options, host_paths), H.pytest_env(pydeps), key)
            dom0_junit = Path(tmp) / "dom0-junit.xml"
            rc = run_in_lab(
                job, timeout=args.lab_timeout, collect=[("junit.xml", dom0_junit)], host=host, pydeps=pydeps
            )
            if host.detail:
                log(f"host phase: {host.detail}")
            elif host.rc is not None:
                log(f"host-side lab tests exited {host.rc}")
            rc = H.combine(rc, bool(paths), host.rc)
            H.merge_junit(dom0_junit, host_junit, junit)
    if rc not in (EXIT_TIMEOUT, EXIT_VM_DIED):
        if junit.is_file():
            log(f"JUnit XML: {junit}")
        else:
            log(f"warning: pytest wrote no JUnit XML ({junit} missing)")
    if rc == 5:
        log("pytest collected no tests (exit 5): that is a failure for the lab")
    return rc


def cmd_key(_args: argparse.Namespace) -> int:
    versions = xenlab_apt.resolve_versions(allow_update=False)
    key = B.cache_key(versions)
    img = B.image_dir(key)
    print(json.dumps({"key": key, "image": str(img), "cached": img.is_dir(), "versions": versions.__dict__}, indent=2))
    return 0


def cmd_probe_kvm(_args: argparse.Namespace) -> int:
    image = image_for_run()
    with contextlib.suppress(FileNotFoundError):
        (C.cache_dir() / "kvm-probe.json").unlink()
    os.environ["VIRTKIT_LAB_ACCEL"] = "auto"
    accel = choose_accel(image)
    print(accel)
    return 0


def cmd_clean(_args: argparse.Namespace) -> int:
    cache = C.cache_dir()
    with C.locked(cache / "build.lock", timeout=60, what="image build"):
        for sub in ("images", "pydeps", "runs"):
            shutil.rmtree(cache / sub, ignore_errors=True)
    log(f"removed images, pydeps and runs under {cache} (downloaded .debs kept in debs/)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="xenlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build", help="build the image (cached)")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("--refresh", action="store_true", help="apt-get update first")
    p = sub.add_parser("run", help="boot, run a shell command in dom0, power off")
    p.add_argument("--timeout", type=float, default=600, help="seconds for CMD (default 600)")
    p.add_argument("--xenstored", default="oxenstored", choices=["oxenstored", "xenstored"])
    p.add_argument("--no-pydeps", action="store_true", help="skip the project packages")
    p.add_argument("--dom0-vcpus", type=int, choices=[1, 2], default=1, help="dom0's vcpus (default 1: boots faster)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("shell", help="interactive dom0 shell on the serial console")
    p.add_argument("--timeout", type=float, default=4 * 3600)
    p.add_argument("--xenstored", default="oxenstored", choices=["oxenstored", "xenstored"])
    p.add_argument("--no-pydeps", action="store_true")
    p.add_argument("--dom0-vcpus", type=int, choices=[1, 2], default=1)
    p = sub.add_parser("test", help="boot once, run the lab tests in dom0 (other args: pytest)")
    p.add_argument("--junitxml", default=str(CHECKOUT / "build" / "lab-junit.xml"))
    p.add_argument(
        "--lab-timeout", type=float, default=1200, help="seconds for the whole pytest run in dom0 (default 1200)"
    )
    p.add_argument(
        "--no-host-phase",
        action="store_true",
        help="skip the host-side tests (tests/lab_host: over ssh into dom0) when no path is named",
    )
    sub.add_parser("key", help="print the image cache key and package versions")
    sub.add_parser("probe-kvm", help="re-run the KVM probe, print the accelerator")
    sub.add_parser("clean", help="remove cached images, pydeps and run directories")

    args, rest = parser.parse_known_args(argv)
    if rest and args.cmd != "test":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        if args.cmd == "build":
            return cmd_build(args)
        if args.cmd == "run":
            return cmd_run(args)
        if args.cmd == "shell":
            return cmd_shell(args)
        if args.cmd == "test":
            return cmd_test(args, rest)
        if args.cmd == "key":
            return cmd_key(args)
        if args.cmd == "probe-kvm":
            return cmd_probe_kvm(args)
        return cmd_clean(args)
    except BuildError as exc:
        log(f"ERROR: {exc}")
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
