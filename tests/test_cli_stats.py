"""The stats commands of the real `virtkit` executable on test:///default, in virsh's formats."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

VIRTKIT = shutil.which("virtkit", path=str(pathlib.Path(sys.executable).parent)) or "virtkit"
URI = "test:///default"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}
    return subprocess.run([VIRTKIT, "-c", URI, *args], capture_output=True, text=True, timeout=60, env=env)


def ok(*args: str) -> str:
    r = run(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout


PAUSED_VM = """\
Domain: 'paused-vm'
  state.state=3
  state.reason=user
  cpu.time=1500000000
  cpu.user=1125000000
  cpu.system=375000000
  balloon.current=262144
  balloon.maximum=524288
  vcpu.current=1
  vcpu.maximum=2
  vcpu.0.state=2
  vcpu.0.time=1500000000
  net.count=1
  net.0.name=vif3.0
  net.0.rx.bytes=450000
  net.0.rx.pkts=450
  net.0.rx.errs=0
  net.0.rx.drop=0
  net.0.tx.bytes=180000
  net.0.tx.pkts=300
  net.0.tx.errs=0
  net.0.tx.drop=0
  block.count=1
  block.0.name=xvda
  block.0.path=/var/lib/virtkit-test/paused.img
  block.0.rd.reqs=150
  block.0.rd.bytes=614400
  block.0.rd.times=15000000
  block.0.wr.reqs=60
  block.0.wr.bytes=491520
  block.0.wr.times=15000000
  block.0.fl.reqs=3
  block.0.fl.times=3000000
  block.0.errs=0
"""


def test_domstats_virsh_format_exact() -> None:
    assert ok("domstats", "paused-vm") == PAUSED_VM + "\n"  # virsh ends each domain with a blank line


def test_domstats_groups_and_domains() -> None:
    out = ok("domstats", "--cpu-total", "--balloon", "3", "defined-vm")
    assert out.split("\n\n") == [
        "Domain: 'paused-vm'\n  cpu.time=1500000000\n  cpu.user=1125000000\n  cpu.system=375000000\n"
        "  balloon.current=262144\n  balloon.maximum=524288",
        "Domain: 'defined-vm'\n  cpu.time=0\n  cpu.user=0\n  cpu.system=0\n"
        "  balloon.current=524288\n  balloon.maximum=524288",
        "",
    ]
    every = ok("domstats", "--state")
    assert [line for line in every.splitlines() if line.startswith("Domain:")] == [
        "Domain: 'test'",
        "Domain: 'web'",
        "Domain: 'paused-vm'",
        "Domain: 'defined-vm'",
    ]


def test_domstats_json() -> None:
    (rec,) = json.loads(ok("--json", "domstats", "--vcpu", "--net", "paused-vm"))
    assert rec["domain"] == "paused-vm" and rec["id"] == 3 and set(rec) == {"domain", "id", "uuid", "vcpu", "net"}
    assert rec["vcpu"] == {
        "current": 1,
        "maximum": 2,
        "vcpus": [{"number": 0, "state": "blocked", "time_ns": 1500000000, "cpu": 0}],
    }
    assert rec["net"][0]["rx_packets"] == 450 and rec["net"][0]["mac"] == "00:16:3e:00:00:03"


def test_per_domain_commands() -> None:
    assert ok("domblkstat", "paused-vm", "xvda").splitlines() == [
        "xvda rd_req 150",
        "xvda rd_bytes 614400",
        "xvda wr_req 60",
        "xvda wr_bytes 491520",
        "xvda flush_operations 3",
        "xvda rd_total_times 15000000",
        "xvda wr_total_times 15000000",
        "xvda flush_total_times 3000000",
        "xvda errs 0",
    ]
    assert ok("domblkstat", "paused-vm").splitlines()[0] == " rd_req 150"  # no DEV: every disk summed
    assert ok("domifstat", "paused-vm", "vif3.0").splitlines()[:2] == [
        "vif3.0 rx_bytes 450000",
        "vif3.0 rx_packets 450",
    ]
    assert ok("dommemstat", "paused-vm").splitlines() == [
        "actual 262144",
        "swap_in 0",
        "swap_out 0",
        "major_fault 1",
        "minor_fault 1500",
        "unused 65536",
        "available 262144",
        "usable 131072",
        "disk_caches 32768",
        "rss 262144",
    ]
    assert (
        ok("vcpuinfo", "paused-vm")
        == "VCPU:           0\nCPU:            0\nState:          blocked\nCPU time:       1.5s\n"
    )
    assert json.loads(ok("--json", "domblkstat", "web", "xvdb"))["read_requests"] >= 7500


def test_mistakes_are_one_line_errors() -> None:
    for args, message in (
        (("domblkstat", "web", "sdz"), "no disk 'sdz'"),
        (("domifstat", "web", "nope"), "no interface 'nope'"),
        (("dommemstat", "defined-vm"), "not running"),
        (("domstats", "no-such-domain"), "no domain named 'no-such-domain'"),
    ):
        r = run(*args)
        assert r.returncode == 1 and r.stdout == "", args
        assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = run("domifstat", "web")
    assert r.returncode == 2 and "IFACE" in r.stderr
