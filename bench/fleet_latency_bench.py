"""Fan-out over N ssh "hosts" 100 ms away: virtkit.fleet over ``test+ssh://`` vs parallel-ssh (the
Python library) running ``virtkit -c test:///default list`` on the same hosts.

The hosts are N loopback ports of bench/delay_proxy.py, each relayed to one sshd of the
benchmark's own with 50 ms added each way (this kernel has no netem). parallel-ssh runs from a
venv of its own (``--pssh-python``, default build/pssh-venv/bin/python, made by
``bench/setup-peers``).

Targets (issue 16): ``list`` on all with the connections open <= 250 ms wall; cold (connecting
included) <= 1.0x parallel-ssh; once connected >= 4x faster than parallel-ssh. Run:

    .venv/bin/python bench/fleet_latency_bench.py [--hosts 64]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import virtkit
from virtkit import fleet
from virtkit._cli import listing

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from remote_bench import start_sshd

VIRTKIT = str(pathlib.Path(sys.executable).with_name("virtkit"))

PSSH = """
import sys, time
from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig
ports, key, command = [int(p) for p in sys.argv[1].split(",")], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
client = ParallelSSHClient(["127.0.0.1"] * len(ports), pool_size=len(ports),
    host_config=[HostConfig(port=p, user="root", private_key=key) for p in ports])
out = client.run_command(command)
client.join(out)
lines = sum(len(list(o.stdout)) for o in out)
bad = [o.exit_code for o in out if o.exit_code != 0]
print(time.perf_counter() - t0, lines, len(bad))
"""


def _list(conn: virtkit.Connection) -> list[tuple[int | None, str, str]]:
    """``virtkit list --all`` as the CLI does it (one bulk call where the state group is served)."""
    return [(ref.id, ref.name, state.label) for ref, state in listing(conn, True)]


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.05, help="seconds added each way")
    ap.add_argument("--pssh-python", default=str(pathlib.Path(__file__).parents[1] / "build/pssh-venv/bin/python"))
    args = ap.parse_args()
    n = args.hosts
    d = pathlib.Path(tempfile.mkdtemp(prefix="vk-fleet-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sshd, port, ssh, key = start_sshd(d)
        procs.append(sshd)
        proxy = subprocess.Popen(
            [
                sys.executable,
                str(pathlib.Path(__file__).with_name("delay_proxy.py")),
                str(port),
                str(n),
                str(args.delay),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        procs.append(proxy)
        assert proxy.stdout is not None
        ports = [int(p) for p in proxy.stdout.readline().split()]
        # the proxy's ports are "hosts" ssh has not seen: accept their (one) key on first use
        (d / "run").mkdir(mode=0o700)
        os.environ.update(VIRTKIT_SSH=ssh, XDG_RUNTIME_DIR=str(d / "run"))
        uris = [f"test+ssh://root@127.0.0.1:{p}/default?command={VIRTKIT}&no_verify=1" for p in ports]
        with virtkit.open("test:///default") as warm:  # imports paid before measuring
            _list(warm)

        pssh = subprocess.run(
            [args.pssh_python, "-c", PSSH, ",".join(map(str, ports)), key, f"{VIRTKIT} -c test:///default list"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if pssh.returncode != 0:
            raise SystemExit(f"parallel-ssh failed: {pssh.stderr[-2000:]}")
        pssh_wall, pssh_lines, pssh_bad = pssh.stdout.split()
        assert int(pssh_bad) == 0 and int(pssh_lines) == n * 5, pssh.stdout

        rss0, cpu0, t0 = _rss_kib(), _cpu(), time.perf_counter()
        opened = fleet.open_many(uris, parallel=n, timeout=120)
        conns = [r.value for r in opened if r.value is not None]
        assert len(conns) == n, [r.error for r in opened if r.error][:3]
        first = fleet.run(conns, _list, parallel=n, timeout=120)
        cold = time.perf_counter() - t0
        cpu_cold, rss = _cpu() - cpu0, _rss_kib() - rss0
        assert all(r.ok for r in first)
        warm_times, cpu1 = [], _cpu()
        for _ in range(5):
            t = time.perf_counter()
            assert all(r.ok for r in fleet.run(conns, _list, parallel=n, timeout=120))
            warm_times.append(time.perf_counter() - t)
        cpu_warm = (_cpu() - cpu1) / 5
        fleet.close_all(opened)

        best = min(warm_times)
        pw = float(pssh_wall)
        print(f"# {n} hosts, {args.delay * 2e3:.0f} ms round trip added; one sshd; parallelism {n}")
        print(f"parallel-ssh running `virtkit -c test:///default list` (cold): {pw * 1e3:8.1f} ms")
        print(f"virtkit.fleet cold (connect + list):                        {cold * 1e3:8.1f} ms  {cold / pw:.2f}x")
        print(
            f"virtkit.fleet list, connections open (best of 5):           {best * 1e3:8.1f} ms  {pw / best:.1f}x faster"
        )
        print(f"client CPU per host: cold {cpu_cold / n * 1e3:.2f} ms, open {cpu_warm / n * 1e3:.2f} ms")
        print(f"client memory per open link: {rss / n:.0f} KiB")
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
        for pid in _masters(d):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


def _masters(d: pathlib.Path) -> list[int]:
    """ssh's ControlPersist masters (their title names their socket, under d)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if str(d).encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


if __name__ == "__main__":
    main()
