"""Fan-out: ``list`` over N far sides at once through ``virtkit.fleet``, each far side a real
``virtkit serve`` reached through ``test+ext://`` (a local child per host: what the link costs
with the network taken out). Reports wall time cold (connecting included) and with the links
open, the client's CPU per host, and its memory per open link.

bench/fleet_latency_bench.py adds 100 ms of latency through a real sshd and compares with
parallel-ssh. Run:

    .venv/bin/python bench/fleet_bench.py [--hosts 64]
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import time

import virtkit
from virtkit import fleet
from virtkit._cli import listing

VIRTKIT = str(pathlib.Path(sys.executable).with_name("virtkit"))


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _list(conn: virtkit.Connection) -> list[tuple[int | None, str, str]]:
    """``virtkit list --all`` as the CLI does it (one bulk call where the state group is served)."""
    return [(ref.id, ref.name, state.label) for ref, state in listing(conn, True)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n = args.hosts
    uris = [f"test+ext://far{i}/default?command={VIRTKIT}" for i in range(n)]
    with virtkit.open("test:///default") as warmup:  # imports and discovery paid before measuring
        _list(warmup)

    rss0, cpu0, t0 = _rss_kib(), _cpu(), time.perf_counter()
    opened = fleet.open_many(uris, parallel=n, timeout=60)
    cold_open = time.perf_counter() - t0
    conns = [r.value for r in opened if r.value is not None]
    assert len(conns) == n, [r.error for r in opened if r.error]
    first = fleet.run(conns, _list, parallel=n, timeout=60)
    cold = time.perf_counter() - t0
    cpu_cold = _cpu() - cpu0
    rss_links = _rss_kib() - rss0
    assert all(r.ok for r in first)

    warm = []
    cpu1 = _cpu()
    for _ in range(args.rounds):
        t = time.perf_counter()
        results = fleet.run(conns, _list, parallel=n, timeout=60)
        warm.append(time.perf_counter() - t)
        assert all(r.ok for r in results)
    cpu_warm = (_cpu() - cpu1) / args.rounds
    fleet.close_all(opened)

    print(f"# {n} far sides (test+ext://, each its own virtkit serve), parallelism {n}")
    print(f"cold: open all {cold_open * 1e3:7.1f} ms, + list all {cold * 1e3:7.1f} ms wall")
    median = sorted(warm)[len(warm) // 2]
    print(f"open links: list all, best of {args.rounds}: {min(warm) * 1e3:7.1f} ms wall (median {median * 1e3:.1f})")
    print(f"client CPU per host: cold {cpu_cold / n * 1e3:.2f} ms, list with links open {cpu_warm / n * 1e3:.2f} ms")
    print(f"client memory per open link: {rss_links / n:.0f} KiB (RSS growth / {n})")


if __name__ == "__main__":
    main()
