"""xen_xend benchmark: dominfo over one keep-alive session vs a new connection per call, and SXP
parse throughput on libvirt's xend fixtures vs a naive recursive-descent parser. Ratios are
measured in one run, against peers on the same machine.

The emulated xend runs as its own process (``python -m virtkit_xen_xend.emulator``) so server
and client do not share a GIL. libvirt's C parser (virsexpr.c) is not built here: the peer is a
straightforward character-at-a-time recursive-descent reader of the same grammar, written below.

    .venv/bin/python bench/xend_bench.py [--seconds 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import virtkit
from virtkit_xen_xend import Driver, Sxp, SxpError, Transport, join_continuations, parse

FIXTURES = Path(__file__).resolve().parent.parent / "plugins" / "xen_xend" / "tests" / "data" / "libvirt-3.0.0"


# -- the naive peer -------------------------------------------------------------------------------


def naive_parse(text: str) -> list[Sxp]:
    """Textbook recursive descent, one character at a time (quotes and escapes simplified)."""
    pos = 0
    n = len(text)

    def skip() -> None:
        nonlocal pos
        while pos < n and (text[pos] in " \t\n\r\v\f" or text[pos] == "#"):
            if text[pos] == "#":
                while pos < n and text[pos] != "\n":
                    pos += 1
            else:
                pos += 1

    def expr() -> Sxp:
        nonlocal pos
        c = text[pos]
        if c == "(":
            pos += 1
            items: list[Sxp] = []
            while True:
                skip()
                if pos >= n:
                    raise ValueError("unclosed list")
                if text[pos] == ")":
                    pos += 1
                    return items
                items.append(expr())
        if c in "'\"":
            pos += 1
            out = []
            while pos < n and text[pos] != c:
                if text[pos] == "\\":
                    pos += 1
                out.append(text[pos])
                pos += 1
            pos += 1
            return "".join(out)
        start = pos
        while pos < n and text[pos] not in " \t\n\r\v\f()#":
            pos += 1
        return text[start:pos]

    values: list[Sxp] = []
    while True:
        skip()
        if pos >= n:
            return values
        values.append(expr())


def _balanced(text: str) -> bool:
    try:
        parse(text)
    except SxpError:
        return False
    return True


# -- measuring ------------------------------------------------------------------------------------


def rate(fn: Callable[[], object], seconds: float, repeat: int) -> float:
    """Best calls per second over ``repeat`` runs of about ``seconds`` each."""
    best = 0.0
    for _ in range(repeat):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds
        while (now := time.perf_counter()) < deadline:
            for _ in range(20):
                fn()
            calls += 20
        best = max(best, calls / (now - start))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    print(f"# xen_xend bench, {datetime.date.today()}, {platform.python_implementation()} {platform.python_version()}")
    print(f"# {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, {platform.platform()}")

    # -- SXP parse throughput ---------------------------------------------------------------------
    texts = [join_continuations(p.read_text())[0] for p in sorted(FIXTURES.glob("*/*.sexpr"))]
    texts = [t for t in texts if _balanced(t)]  # the naive peer can't read the four unbalanced ones
    total = sum(len(t.encode()) for t in texts)
    for t in texts:  # the two readers agree on every fixture before they race
        assert naive_parse(t) == parse(t), t[:60]

    def ours() -> None:
        for t in texts:
            parse(t)

    def naive() -> None:
        for t in texts:
            naive_parse(t)

    ours_mb = rate(ours, args.seconds, args.repeat) * total / 1e6
    naive_mb = rate(naive, args.seconds, args.repeat) * total / 1e6
    print(f"\nSXP parse, {len(texts)} libvirt fixtures ({total} bytes) per round:")
    print(f"  virtkit_xen_xend.parse (regex tokenizer) {ours_mb:8.2f} MB/s")
    print(f"  naive recursive descent (peer)           {naive_mb:8.2f} MB/s")
    print(f"  ratio ours / naive                       {ours_mb / naive_mb:8.2f}x")

    # -- dominfo over HTTP ------------------------------------------------------------------------
    cmd = [sys.executable, "-m", "virtkit_xen_xend.emulator", "--port", "0"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as emu:
        try:
            assert emu.stdout is not None
            uri = emu.stdout.readline().strip()
            port = int(uri.rsplit(":", 1)[1].rstrip("/"))
            with virtkit.open(uri, timeout=10) as conn:
                dom = conn.lookup_by_name("rhel5")
                via_api = rate(dom.info, args.seconds, args.repeat)
            ref = dom.ref
            keep = Driver(Transport.tcp("127.0.0.1", port, timeout=10), uri)
            fresh = Driver(Transport.tcp("127.0.0.1", port, timeout=10, keepalive=False), uri)
            try:
                ka = rate(lambda: keep.domain_get_info(ref), args.seconds, args.repeat)
                nc = rate(lambda: fresh.domain_get_info(ref), args.seconds, args.repeat)
            finally:
                keep.close()
                fresh.close()
        finally:
            emu.terminate()
            emu.wait(timeout=10)
    print("\ndominfo (GET /xend/domain/rhel5 + parse + model) against the emulator in its own process:")
    print(f"  Domain.info() via virtkit.open          {via_api:8.0f} calls/s")
    print(f"  driver, one keep-alive session           {ka:8.0f} calls/s")
    print(f"  driver, new connection per call (libvirt) {nc:8.0f} calls/s")
    print(f"  ratio keep-alive / new connection        {ka / nc:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
