"""`virtkit exporter`: Prometheus metrics checked by promtool and scraped by a real Prometheus."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

import virtkit
from virtkit._exporter import Exporter, parse_listen

prometheus_client = pytest.importorskip("prometheus_client", reason="pip install 'virtkit[exporter]'")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

VIRTKIT = shutil.which("virtkit", path=str(pathlib.Path(sys.executable).parent)) or "virtkit"
URI = "test:///default"
PAUSED = {"uri": URI, "domain": "paused-vm"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    with Exporter([URI], "127.0.0.1:0") as e:
        e.start()
        yield e


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode("utf-8"))


def test_names_labels_and_exact_values() -> None:
    with Exporter([URI]) as e:
        found = samples(e.scrape().decode())
    assert value(found, "virtkit_up", uri=URI) == 1
    assert value(found, "virtkit_domain_cpu_seconds_total", **PAUSED) == 1.5
    assert value(found, "virtkit_domain_state", **PAUSED) == 3
    assert value(found, "virtkit_domain_memory_current_bytes", **PAUSED) == 262144 * 1024
    assert value(found, "virtkit_domain_vcpu_seconds_total", **PAUSED, vcpu="0") == 1.5
    assert value(found, "virtkit_domain_block_read_bytes_total", **PAUSED, device="xvda") == 614400
    assert value(found, "virtkit_domain_block_write_requests_total", **PAUSED, device="xvda") == 60
    assert value(found, "virtkit_domain_block_flush_seconds_total", **PAUSED, device="xvda") == 0.003
    assert value(found, "virtkit_domain_network_receive_packets_total", **PAUSED, device="vif3.0") == 450
    assert value(found, "virtkit_domain_network_transmit_bytes_total", **PAUSED, device="vif3.0") == 180000
    uuid = "6695eb01-f6a4-8304-79aa-97f2502e1941"
    assert value(found, "virtkit_domain_info", **PAUSED, uuid=uuid) == 1
    assert value(found, "virtkit_domain_cpu_seconds_total", uri=URI, domain="web") >= 37.5


def test_promtool_accepts_a_real_scrape(exporter: Exporter) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing: scripts/setup --dev installs Debian's prometheus package")
    text = get(f"http://127.0.0.1:{exporter.port}/metrics")
    assert "virtkit_domain_block_read_bytes_total" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stdout == "" and check.stderr == "", check.stdout + check.stderr


def test_a_failing_connection_is_down_and_the_others_are_served(tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "host.json"
    broken.write_text("{not json", encoding="utf-8")
    uris = [f"test://{broken}", "test://admin:s3cret@elsewhere/", URI]
    with Exporter(uris) as e:
        text = e.scrape().decode()
    found = samples(text)
    assert value(found, "virtkit_up", uri=f"test://{broken}") == 0
    assert value(found, "virtkit_up", uri="test://admin@elsewhere/") == 0
    assert value(found, "virtkit_up", uri=URI) == 1
    assert value(found, "virtkit_domain_cpu_seconds_total", **PAUSED) == 1.5
    assert "s3cret" not in text


def test_a_closed_connection_is_opened_again() -> None:
    with Exporter([URI]) as e:
        e.scrape()
        conn = e.targets[0].conn
        assert conn is not None
        conn.close()
        found = samples(e.scrape().decode())
        assert value(found, "virtkit_up", uri=URI) == 1
        assert e.targets[0].conn is not conn


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9177") == ("127.0.0.1", 9177)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_listen(":9177") == ("0.0.0.0", 9177)
    for bad in ("9177", "host:", "h:99999", "h:x"):
        with pytest.raises(virtkit.InvalidArgument):
            parse_listen(bad)


def test_prometheus_client_is_not_imported_at_start_up() -> None:
    code = "import sys, virtkit, virtkit._cli; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_the_command_serves_until_terminated() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}
    proc = subprocess.Popen(
        [VIRTKIT, "exporter", "--listen", "127.0.0.1:0", "-c", URI, "-c", "test://nowhere/", "-c", URI],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("virtkit exporter: http://127.0.0.1:"), line
        text = get(line.split(": ", 1)[1].strip())
        found = samples(text)
        assert value(found, "virtkit_up", uri=URI) == 1 and value(found, "virtkit_up", uri="test://nowhere/") == 0
        assert text.count('virtkit_up{uri="test:///default"}') == 1  # a URI given twice is scraped once
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    r = subprocess.run([VIRTKIT, "exporter", "--listen", "nowhere"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("error: --listen 'nowhere'"), r.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_real_prometheus_server_scrapes_the_exporter(exporter: Exporter, tmp_path: pathlib.Path) -> None:
    server = shutil.which("prometheus")
    if server is None:
        pytest.skip("prometheus missing: scripts/setup --dev installs Debian's prometheus package")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: virtkit\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter.port}']\n",
        encoding="utf-8",
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            server,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        query = 'virtkit_domain_block_read_bytes_total{domain="paused-vm",device="xvda"}'
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        deadline = time.monotonic() + 90
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                data = json.loads(get(url))
                result = data["data"]["result"]
            except OSError:
                result = []
            if result:
                break
            time.sleep(0.5)
        assert result, f"no result from Prometheus; its log:\n{(tmp_path / 'prometheus.log').read_text()[-3000:]}"
        (series,) = result
        assert series["metric"] == {  # Prometheus adds the job and instance of the scrape
            "__name__": "virtkit_domain_block_read_bytes_total",
            "device": "xvda",
            "domain": "paused-vm",
            "uri": URI,
            "job": "virtkit",
            "instance": f"127.0.0.1:{exporter.port}",
        }
        assert series["value"][1] == "614400"  # type: ignore[index]
        up = json.loads(get(f"http://127.0.0.1:{port}/api/v1/query?query=virtkit_up"))["data"]["result"]
        assert [(s["metric"]["uri"], s["value"][1]) for s in up] == [(URI, "1")]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_groups_limit_what_is_exported() -> None:
    with Exporter([URI], groups=["cpu"]) as e:
        text = e.scrape().decode()
    assert value(samples(text), "virtkit_domain_cpu_seconds_total", **PAUSED) == 1.5
    assert "virtkit_domain_block_read_bytes_total{" not in text and "virtkit_domain_state{" not in text
    with pytest.raises(virtkit.InvalidArgument, match="unknown stats group"):
        Exporter([URI], groups=["disk"])
