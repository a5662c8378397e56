"""Cold start of the CLI on the lab's real Xen, 9 domains, and the floor under it.

Run inside dom0: ``lab/xenlab run --timeout 900 'python3 bench/xen_cold_bench.py'``. The same
8 guests as bench/xen_stats_bench.py (its ``Rig``: libvirt's, a disk and a vif each), then
interleaved rounds of new processes, wall time, medians: xentop and xl (Xen's C tools), virsh
through libvirtd, the bare interpreter in its three start-up modes (what any CPython CLI pays
before its first import), and ``virtkit -c xen:/// domstats`` and ``list``.

virtkit runs two ways: as the lab has it (the packages on the 9p share, the job's PYTHONPATH,
the checkout as the working directory: every import looks in those directories first, each a
9p round trip under TCG) and as a dom0 has it after ``pip install`` (the same files copied to
dom0's own disk, one PYTHONPATH entry, run from /tmp). With ``BENCH_BEFORE=build/cold-before``
(a directory of the checkout holding an older tree's plugin packages: ``git archive REV
plugins/xenstore/src/virtkit_xenstore ...`` unpacked there, ``python3 -m compileall``ed) those
run in the same rounds. Prints a Markdown table, the per-module medians of ``-X importtime``
over the rounds, the in-process breakdowns, where open() and the bulk call spend their time
and, with BENCH_PROFILE=1, a cProfile of one local ``domstats``.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from xen_stats_bench import Rig

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
LOCAL = "/opt/virtkit-bench"  # the packages on dom0's disk
CLEAN = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
LOCAL_ENV = {**CLEAN, "PYTHONPATH": LOCAL}
LAB_ENV = dict(os.environ)
# BENCH_BEFORE=DIR (in the checkout): packages of an older tree, bytecode compiled, laid over a
# second local copy, so that before and after are measured in one run (machine speed under TCG
# varies by 15 % from run to run)
BEFORE_SRC = os.environ.get("BENCH_BEFORE")
BEFORE = "/opt/virtkit-before"
BEFORE_ENV = {**CLEAN, "PYTHONPATH": BEFORE}
VK = ["python3", "-m", "virtkit", "-c", "xen:///"]
BREAKDOWN = r"""
import time; t0 = time.perf_counter()
import virtkit; t1 = time.perf_counter()
import virtkit._cli; t2 = time.perf_counter()
c = virtkit.open("xen:///"); t3 = time.perf_counter()
r = c.all_domain_stats(); t4 = time.perf_counter()
c.close(); t5 = time.perf_counter()
import sys; ts = (t0, t1, t2, t3, t4, t5)
print(len(sys.modules), len(r), *(f"{(b - a) * 1000:.1f}" for a, b in zip(ts, ts[1:])))
"""
# Where open() and the bulk call spend their time: each plugin hook the core calls (an inner
# connection's nested, indented) and each driver's part of the fanned-out bulk call. The
# drivers are imported first, so the open here has no plugin import in it.
DETAIL = r"""
import functools, time, virtkit, virtkit._compose as C
import virtkit_xen_hyper._driver, virtkit_xenstore._driver, virtkit_xen_libxl._driver
rows, depth = [], [0]
def timed(label, fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        depth[0] += 1; t = time.perf_counter()
        try: return fn(*a, **k)
        finally:
            depth[0] -= 1; rows.append((depth[0], label(a), (time.perf_counter() - t) * 1000))
    return wrapper
C.call_hook = timed(lambda a: f"{type(a[0]).__module__.split('.')[0]} {a[1]}", C.call_hook)
for m in (virtkit_xen_hyper._driver, virtkit_xenstore._driver, virtkit_xen_libxl._driver):
    m.Driver.connect_get_all_domain_stats = timed(
        lambda a, m=m: f"{m.__name__} all_domain_stats", m.Driver.connect_get_all_domain_stats)
X = virtkit_xenstore._driver.Driver
for name in ("_refs", "_devices", "_blocks", "_nets"):
    setattr(X, name, timed(lambda a, name=name: f"xenstore {name}", getattr(X, name)))
t = time.perf_counter(); c = virtkit.open("xen:///"); rows.append((0, "= open", (time.perf_counter() - t) * 1000))
t = time.perf_counter(); c.all_domain_stats(); rows.append((0, "= all_domain_stats", (time.perf_counter() - t) * 1000))
c.close()
for d, label, ms in rows: print(f"{'  ' * d}{label}: {ms:.1f} ms")
"""
# (label, argv, env, cwd)
COMMANDS: list[tuple[str, list[str], dict[str, str], str]] = [
    ("xentop -b -i 1", ["xentop", "-b", "-i", "1"], CLEAN, "/tmp"),
    ("xl list", ["xl", "list"], CLEAN, "/tmp"),
    ("virsh -c xen:///system list --all", ["virsh", "-c", "xen:///system", "list", "--all"], CLEAN, "/tmp"),
    ("python3 -c pass", ["python3", "-c", "pass"], CLEAN, "/tmp"),
    ("python3 -S -c pass", ["python3", "-S", "-c", "pass"], CLEAN, "/tmp"),
    ("python3 -I -S -c pass", ["python3", "-I", "-S", "-c", "pass"], CLEAN, "/tmp"),
    ("lab: virtkit -c xen:/// domstats (wrapper)", ["virtkit", "-c", "xen:///", "domstats"], LAB_ENV, "/mnt/src"),
    ("lab: python3 -m virtkit -c xen:/// domstats", [*VK, "domstats"], LAB_ENV, "/mnt/src"),
    ("local: python3 -c 'import virtkit'", ["python3", "-c", "import virtkit"], LOCAL_ENV, "/tmp"),
    ("local: python3 -m virtkit -c xen:/// domstats", [*VK, "domstats"], LOCAL_ENV, "/tmp"),
    ("local: python3 -m virtkit -c xen:/// list", [*VK, "list"], LOCAL_ENV, "/tmp"),
    ("local: -X importtime ... domstats", ["python3", "-X", "importtime", *VK[1:], "domstats"], LOCAL_ENV, "/tmp"),
    ("local: in-process breakdown", ["python3", "-c", BREAKDOWN], LOCAL_ENV, "/tmp"),
]
if BEFORE_SRC:
    COMMANDS += [
        ("before: python3 -m virtkit -c xen:/// domstats", [*VK, "domstats"], BEFORE_ENV, "/tmp"),
        ("before: python3 -m virtkit -c xen:/// list", [*VK, "list"], BEFORE_ENV, "/tmp"),
        ("before: in-process breakdown", ["python3", "-c", BREAKDOWN], BEFORE_ENV, "/tmp"),
    ]
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def run(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, str, str]:
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env, cwd=cwd)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{argv}: exit {r.returncode}: {r.stderr[-2000:]}")
    return wall, r.stdout, r.stderr


def main() -> int:
    if Path(LOCAL).exists():
        shutil.rmtree(LOCAL)
    shutil.copytree("/mnt/pydeps", LOCAL, symlinks=True)  # copy2: mtimes kept, the .pyc stay valid
    if BEFORE_SRC:
        shutil.rmtree(BEFORE, ignore_errors=True)
        shutil.copytree(LOCAL, BEFORE, symlinks=True)
        for pkg in os.listdir(BEFORE_SRC):
            shutil.rmtree(f"{BEFORE}/{pkg}")
            shutil.copytree(f"{BEFORE_SRC}/{pkg}", f"{BEFORE}/{pkg}")
    rig = Rig()
    times: dict[str, list[float]] = {c[0]: [] for c in COMMANDS}
    imports: dict[str, list[tuple[int, int]]] = {}
    depth: dict[str, int] = {}
    order_seen: list[str] = []
    breakdown: dict[str, list[list[float]]] = {}
    try:
        rig.guests()
        time.sleep(15)  # the guests' init up, disks and vifs connected
        print("loadavg before:", Path("/proc/loadavg").read_text().strip())
        for _ in range(2):  # warm: the entry-point indexes, the page cache
            for _label, argv, env, cwd in COMMANDS:
                run(argv, env, cwd)
        for i in range(ROUNDS):
            for label, argv, env, cwd in COMMANDS[i % len(COMMANDS) :] + COMMANDS[: i % len(COMMANDS)]:
                wall, out, err = run(argv, env, cwd)
                times[label].append(wall)
                if "importtime" in label:
                    for m in IMPORT_LINE.finditer(err):
                        name = m.group(4)
                        if name not in imports:
                            order_seen.append(name)
                            depth[name] = len(m.group(3))
                        imports.setdefault(name, []).append((int(m.group(1)), int(m.group(2))))
                elif "breakdown" in label:
                    breakdown.setdefault(label, []).append([float(x) for x in out.split()])
        print("loadavg after:", Path("/proc/loadavg").read_text().strip())
        for _ in range(2):
            print("\nopen() and the bulk call, per hook and per driver (inner hooks indented):")
            print(run(["python3", "-c", DETAIL], LOCAL_ENV, "/tmp")[1])
        if os.environ.get("BENCH_PROFILE") == "1":
            prof = "/tmp/domstats.prof"
            run(["python3", "-m", "cProfile", "-o", prof, *VK[1:], "domstats"], LOCAL_ENV, "/tmp")
            code = (
                f"import pstats; s = pstats.Stats({prof!r}); "
                "s.sort_stats('cumulative').print_stats(70); s.sort_stats('tottime').print_stats(30)"
            )
            print(run(["python3", "-c", code], CLEAN, "/tmp")[1])
    finally:
        rig.stop()
    base = statistics.median(times["xentop -b -i 1"])
    print(f"\n| command ({ROUNDS} interleaved rounds, median wall) | ms | / xentop |\n|---|---|---|")
    for label, v in times.items():
        m = statistics.median(v)
        print(f"| `{label}` | {m * 1000:.0f} | {m / base:.2f}x |")
    names = ("modules", "domains", "import virtkit", "import _cli", "open", "all_domain_stats", "close")
    for label, rows in breakdown.items():
        cols = list(zip(*rows, strict=True))
        medians = (f"{n} {statistics.median(c):g}" for n, c in zip(names, cols, strict=True))
        print(f"\n{label}, medians (ms):", ", ".join(medians))
    print("\n-X importtime, local domstats, medians over the rounds (self us | cumulative us | module):")
    for name in order_seen:
        v = imports[name]
        own, cum = statistics.median(s for s, _ in v), statistics.median(c for _, c in v)
        print(f"{own:9.0f} | {cum:9.0f} | {' ' * depth[name]}{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
