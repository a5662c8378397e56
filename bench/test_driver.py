"""Per-call cost on test:///default: virtkit vs libvirt-python on libvirt's own test:///default,
in the same interpreter and the same run; and the cold CLI, virtkit vs virsh.

Peers: Debian's python3-libvirt (imported from /usr/lib/python3/dist-packages: same CPython 3.11
ABI) and libvirt-clients' virsh. `bench/setup-peers` installs them. Targets (issue 2):
dom.info(), list ids, lookup by name each <= 1.0x libvirt-python; cold `virtkit -c
test:///default list --all` <= 3x `virsh -c test:///default list --all`.
"""

from __future__ import annotations

import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import time
import timeit

import virtkit

DEBIAN_SITE = "/usr/lib/python3/dist-packages"


def best(fn: object, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number  # type: ignore[arg-type]


def per_call() -> None:
    if DEBIAN_SITE not in sys.path:
        sys.path.append(DEBIAN_SITE)
    import libvirt  # type: ignore[import-not-found]

    lv = libvirt.open("test:///default")
    lv_dom = lv.lookupByName("test")
    vk = virtkit.open("test:///default")
    vk_dom = vk.lookup_by_name("test")
    cases = [
        ("dom.info()", lambda: lv_dom.info(), lambda: vk_dom.info()),
        ("list ids", lambda: lv.listDomainsID(), lambda: vk.list_domains()),
        ("lookup by name", lambda: lv.lookupByName("test"), lambda: vk.lookup_by_name("test")),
    ]
    for name, lv_fn, vk_fn in cases:
        lv_t, vk_t = best(lv_fn, 20_000), best(vk_fn, 20_000)
        print(
            f"{name:<16} libvirt-python {lv_t * 1e6:7.2f} us   virtkit {vk_t * 1e6:7.2f} us   "
            f"ratio {vk_t / lv_t:.2f}x  (target <= 1.0x)"
        )


def release_venv() -> pathlib.Path:
    """A venv with the core and the test plugin installed as a user gets them (not editable:
    editable installs add import-hook finders to every interpreter start)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = root / "build" / "bench-cli"
    py = env / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--force-reinstall", "--no-deps"]
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "pluggy"], check=True)
    subprocess.run([*pip, str(root), str(root / "plugins" / "test")], check=True)
    return env / "bin" / "virtkit"


def cold_cli(runs: int = 15) -> None:
    virsh = shutil.which("virsh")
    vk = str(release_venv())
    if not virsh:
        print("cold CLI: virsh not installed (bench/setup-peers)")
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}

    def timed(cmd: list[str]) -> float:
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=60)
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    timed([vk, "-c", "test:///default", "list", "--all"])  # warm the page cache and the index
    v = timed([virsh, "-c", "test:///default", "list", "--all"])
    k = timed([vk, "-c", "test:///default", "list", "--all"])
    py = timed([sys.executable, "-c", "pass"])
    print(
        f"cold CLI list --all: virsh {v * 1e3:6.1f} ms   virtkit {k * 1e3:6.1f} ms   ratio {k / v:.2f}x"
        f"  (target <= 3x; bare python startup {py * 1e3:.1f} ms)"
    )


if __name__ == "__main__":
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}")
    per_call()
    cold_cli()
