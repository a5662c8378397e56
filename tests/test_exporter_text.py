"""The exporter's own text exposition: the bytes prometheus_client would write, and when it is served."""

from __future__ import annotations

import gzip
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import virtkit
from virtkit import DomainRef, DomainState, DomainStateInfo
from virtkit._exporter import Exporter, takes_text
from virtkit._exposition import Reading, families, text

prometheus_client = pytest.importorskip("prometheus_client", reason="pip install 'virtkit[exporter]'")

# Prometheus' own Accept header for a scrape (prometheus 2.x, scrape/scrape.go acceptHeader)
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


class _Fixed:
    def __init__(self, readings: Sequence[Reading]) -> None:
        self.readings = readings

    def collect(self) -> Iterator[Any]:
        yield from families(self.readings)


def reference(readings: Sequence[Reading]) -> bytes:
    registry = prometheus_client.CollectorRegistry()
    registry.register(_Fixed(readings))
    data: bytes = prometheus_client.generate_latest(registry)
    return data


def odd_record() -> virtkit.DomainStats:
    """Every escape the text format has, values on both sides of Go's exponent switch, None fields."""
    ref = DomainRef('we"b\\1\nü', uuid.UUID("6695eb01-f6a4-8304-79aa-97f2502e1941"), 7)
    vcpus = (virtkit.VcpuInfo(0, virtkit.VcpuState.RUNNING, 999_999), virtkit.VcpuInfo(1, virtkit.VcpuState.BLOCKED, 0))
    return virtkit.DomainStats(
        ref,
        DomainStateInfo(DomainState.PAUSED, "user"),
        virtkit.CpuStats(123_456_789_012_345, None, 10**22),
        virtkit.BalloonStats(999_999, 1_000_000),
        virtkit.VcpuStats(2, 4, vcpus),
        (
            virtkit.BlockStats('x"vda', 999_999, 1_000_000, 0, 2**63 - 1, None, 1, 10**9, None, 0, "/p"),
            virtkit.BlockStats("", 5, 6, 7, 8),
        ),
        (virtkit.InterfaceStats("vif7.0\\", 1, 2, 3, 12_345_678_901, None, 0, None, 5),),
    )


def test_the_text_is_what_generate_latest_writes_of_the_families() -> None:
    bare = virtkit.DomainStats(DomainRef("bare", uuid.UUID(int=1), None))
    readings: list[Reading] = [
        ('test://a"b\\c/', [odd_record(), bare], 0.000123),
        ("test://down/", None, 1.5),
        ("test:///empty", [], 12345678.9),
    ]
    assert text(readings) == reference(readings)
    with virtkit.open("test:///default") as conn:
        real: list[Reading] = [("test:///default", conn.all_domain_stats(), 0.25)]
    assert text(real) == reference(real)
    assert 'domain="we\\"b\\\\1\\nü"'.encode() in text(readings)


def test_prometheus_gets_the_text_format_and_openmetrics_clients_get_prometheus_client() -> None:
    assert takes_text("") and takes_text(PROMETHEUS_ACCEPT) and takes_text("text/plain")
    assert takes_text("text/plain; version=0.0.4; charset=utf-8") and takes_text("*/*")
    assert not takes_text("application/openmetrics-text; version=1.0.0")
    assert not takes_text("text/plain;version=1.0.0") and not takes_text("text/plain;q=0")
    assert not takes_text("text/plain;q=x")
    with Exporter(["test:///default"], "127.0.0.1:0") as e:
        e.start()
        url = f"http://127.0.0.1:{e.port}/metrics"

        def get(path: str = "", **headers: str) -> tuple[str, str | None, bytes]:
            with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers), timeout=10) as r:
                return r.headers["Content-Type"], r.headers["Content-Encoding"], r.read()

        kind, coding, body = get(Accept=PROMETHEUS_ACCEPT, **{"Accept-Encoding": "gzip"})
        assert (kind, coding) == ("text/plain; version=0.0.4; charset=utf-8", "gzip")
        assert b'virtkit_domain_state{domain="paused-vm",uri="test:///default"} 3.0\n' in gzip.decompress(body)
        kind, coding, body = get(Accept="application/openmetrics-text; version=1.0.0")
        assert kind.startswith("application/openmetrics-text") and coding is None
        assert body.endswith(b"# EOF\n")
        _, _, body = get("?name[]=virtkit_up")
        assert body.splitlines() == [
            b"# HELP virtkit_up 1 if the last stats call on the connection succeeded",
            b"# TYPE virtkit_up gauge",
            b'virtkit_up{uri="test:///default"} 1.0',
        ]
