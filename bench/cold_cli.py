"""Cold start of whole commands, taken in turn: median wall and CPU time of each, and each one's
ratio to the first command, pair by pair (issue 14).

    python3 bench/cold_cli.py -n 7 'virsh -c test:///default list --all' \
        'virtkit -c test:///default list --all' 'python3 -c pass' 'python3 -S -c pass'

The lab's figure runs it in dom0 with the packages where ``pip install`` puts them, as virsh is
on dom0's own disk: copied to /usr/local/lib/python3.11/dist-packages, no PYTHONPATH (a lab job
has the 9p shares /mnt/pydeps and /mnt/src/lab on it, ahead of the standard library, and every
import, the standard library's too, then looks there first)::

    lab/xenlab run --timeout 900 'unset PYTHONPATH; cp -a /mnt/pydeps/virtkit* \
        /usr/local/lib/python3.11/dist-packages/ && cd /mnt/src && python3 bench/cold_cli.py \
        -n 21 "virsh -c test:///default list --all" "virtkit -c test:///default list --all"'

Each command runs once unmeasured, then the commands run one after another, ``-n`` rounds. CPU
time is the child's user + system time as the kernel accounts it (``os.wait4``); output goes
to /dev/null.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import time


def run(argv: list[str]) -> tuple[float, float]:
    """(wall s, cpu s) of one run of argv."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=7, help="rounds (default 7)")
    ap.add_argument("commands", nargs="+", help="each command as one shell-quoted string; the first is the base")
    args = ap.parse_args()
    argvs = [shlex.split(c) for c in args.commands]
    for argv in argvs:
        run(argv)
    walls: list[list[float]] = [[] for _ in argvs]
    cpus: list[list[float]] = [[] for _ in argvs]
    for _ in range(args.n):
        for i, argv in enumerate(argvs):
            wall, cpu = run(argv)
            walls[i].append(wall)
            cpus[i].append(cpu)
    with open("/proc/loadavg", encoding="ascii") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{args.n} rounds, load average {load}")
    print("| command | wall ms (median) | cpu ms (median) | wall / first (median of pairs) | middle half of pairs |")
    print("|---|---|---|---|---|")
    for i, command in enumerate(args.commands):
        pairs = [w / b for w, b in zip(walls[i], walls[0], strict=True)]
        # the quartiles say how far one run's ratio can be trusted (the lab's drifts by ~0.1x)
        low, _mid, high = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else (pairs[0],) * 3
        print(
            f"| `{command}` | {statistics.median(walls[i]) * 1e3:,.0f} | {statistics.median(cpus[i]) * 1e3:,.0f} "
            f"| {statistics.median(pairs):.2f}x | {low:.2f}-{high:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
