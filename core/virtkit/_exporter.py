"""``virtkit exporter``: Prometheus metrics of every domain over HTTP.

A custom collector makes one bulk stats call (``all_domain_stats``) per connection per scrape and
turns the records into metric families; nothing is cached between scrapes. A connection that
fails to open or to answer shows as ``virtkit_up{uri=...} 0`` (the URI without its password) and
the other connections' metrics are still served; a closed connection is opened again at the next
scrape. ``prometheus_client`` is imported only here: ``pip install 'virtkit[exporter]'``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._connection import Connection
from ._connection import open as open_connection
from ._errors import ConnectionClosed, InvalidArgument, Unsupported, VirtError
from ._stats import DomainStats
from ._stats_route import check_groups
from ._uri import parse_uri

__all__ = ["Exporter", "parse_listen", "run_exporter"]

log = logging.getLogger("virtkit.exporter")

DEFAULT_LISTEN = "127.0.0.1:9177"  # 9177: the port libvirt exporters use
_NS = 1e-9  # ns -> seconds


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[V6ADDR]:PORT`` or ``:PORT`` (every address) -> (address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"--listen {text!r}: expected ADDR:PORT, e.g. 127.0.0.1:9177")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)  # ":PORT" asks for every address


class _Target:
    """One URI: its connection, opened lazily and again after it closed."""

    def __init__(self, uri: str | None, timeout: float, groups: Sequence[str] | None = None) -> None:
        self.uri = uri
        self.groups = groups
        self.shown = "(default)" if uri is None else str(parse_uri(uri))  # password-free
        self.timeout = timeout
        self.conn: Connection | None = None
        self.lock = threading.Lock()

    def stats(self) -> list[DomainStats]:
        with self.lock:
            if self.conn is None or self.conn.closed:
                self.conn = open_connection(self.uri, readonly=True, timeout=self.timeout)
                self.shown = str(self.conn.uri)
            conn = self.conn
        try:
            return conn.all_domain_stats(self.groups)
        except ConnectionClosed:
            with self.lock:
                self.conn = None
            raise

    def close(self) -> None:
        with self.lock:
            conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except VirtError as exc:
                log.warning("exporter: closing %s failed: %s", self.shown, exc)


# (metric name, help, record group, field, factor to the base unit): counters get "_total" from
# prometheus_client.
_DOMAIN_COUNTERS = (
    ("virtkit_domain_cpu_seconds", "CPU time used by the domain, all vcpus together", "cpu", "time_ns", _NS),
    ("virtkit_domain_cpu_user_seconds", "CPU time used in guest user mode", "cpu", "user_ns", _NS),
    ("virtkit_domain_cpu_system_seconds", "CPU time used in guest kernel mode", "cpu", "system_ns", _NS),
)
_DOMAIN_GAUGES = (
    ("virtkit_domain_memory_current_bytes", "Memory the balloon gives the domain now", "balloon", "current_kib", 1024),
    ("virtkit_domain_memory_maximum_bytes", "Maximum memory of the domain", "balloon", "maximum_kib", 1024),
    ("virtkit_domain_vcpus", "Online vcpus", "vcpu", "current", 1),
    ("virtkit_domain_vcpus_maximum", "Maximum vcpus", "vcpu", "maximum", 1),
)
_BLOCK = (
    ("read_requests", "Read requests", "read_requests", 1),
    ("read_bytes", "Bytes read", "read_bytes", 1),
    ("write_requests", "Write requests", "write_requests", 1),
    ("write_bytes", "Bytes written", "write_bytes", 1),
    ("flush_requests", "Flush requests", "flush_requests", 1),
    ("read_seconds", "Time spent on reads", "read_time_ns", _NS),
    ("write_seconds", "Time spent on writes", "write_time_ns", _NS),
    ("flush_seconds", "Time spent on flushes", "flush_time_ns", _NS),
    ("errors", "Failed requests", "errors", 1),
)
_NET = (
    ("receive_bytes", "Bytes received by the guest", "rx_bytes"),
    ("receive_packets", "Packets received by the guest", "rx_packets"),
    ("receive_errors", "Receive errors", "rx_errors"),
    ("receive_drops", "Received packets dropped", "rx_drops"),
    ("transmit_bytes", "Bytes sent by the guest", "tx_bytes"),
    ("transmit_packets", "Packets sent by the guest", "tx_packets"),
    ("transmit_errors", "Transmit errors", "tx_errors"),
    ("transmit_drops", "Sent packets dropped", "tx_drops"),
)


class StatsCollector:
    """prometheus_client's custom collector: one bulk call per target per scrape."""

    def __init__(self, targets: Sequence[_Target]) -> None:
        self.targets = targets

    def describe(self) -> list[Any]:
        return []  # registering must not scrape every hypervisor

    def _read_all(self) -> list[tuple[list[DomainStats] | None, float]]:
        """Every target's records (None: it failed) and seconds; several targets are read at once,
        so a slow hypervisor delays the scrape by its own timeout, not by the sum of them."""
        if len(self.targets) == 1:
            return [_read(self.targets[0])]
        with ThreadPoolExecutor(max_workers=min(len(self.targets), 16), thread_name_prefix="virtkit-exporter") as pool:
            return list(pool.map(_read, self.targets))

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily("virtkit_up", "1 if the last stats call on the connection succeeded", labels=["uri"])
        took = GaugeMetricFamily(
            "virtkit_scrape_duration_seconds", "Time the connection's bulk stats call took", labels=["uri"]
        )
        dom = ["uri", "domain"]
        info = GaugeMetricFamily("virtkit_domain_info", "The domain's uuid; always 1", labels=[*dom, "uuid"])
        state = GaugeMetricFamily("virtkit_domain_state", "libvirt's virDomainState number", labels=dom)
        counters: list[tuple[Any, str, str, float]] = [
            (CounterMetricFamily(n, h, labels=dom), g, f, s) for n, h, g, f, s in _DOMAIN_COUNTERS
        ]
        gauges: list[tuple[Any, str, str, float]] = [
            (GaugeMetricFamily(n, h, labels=dom), g, f, s) for n, h, g, f, s in _DOMAIN_GAUGES
        ]
        vcpu = CounterMetricFamily("virtkit_domain_vcpu_seconds", "CPU time of one vcpu", labels=[*dom, "vcpu"])
        dev = [*dom, "device"]
        block = [(CounterMetricFamily(f"virtkit_domain_block_{n}", h, labels=dev), f, s) for n, h, f, s in _BLOCK]
        net = [(CounterMetricFamily(f"virtkit_domain_network_{n}", h, labels=dev), f) for n, h, f in _NET]
        for target, (records, seconds) in zip(self.targets, self._read_all(), strict=True):
            if records is None:
                up.add_metric([target.shown], 0)
                continue
            up.add_metric([target.shown], 1)
            took.add_metric([target.shown], seconds)
            uri = target.shown
            for r in records:
                labels = [uri, r.domain.name]
                info.add_metric([*labels, str(r.domain.uuid)], 1)
                if r.state is not None:
                    state.add_metric(labels, int(r.state.state))
                for family, group, field, scale in (*counters, *gauges):
                    rec = getattr(r, group)
                    value = None if rec is None else getattr(rec, field)
                    if value is not None:
                        family.add_metric(labels, value * scale if scale != 1 else value)
                if r.vcpu is not None:
                    for v in r.vcpu.vcpus:
                        vcpu.add_metric([*labels, str(v.number)], v.time_ns * _NS)
                for b in r.block or ():
                    for family, field, scale in block:
                        value = getattr(b, field)
                        if value is not None:
                            family.add_metric([*labels, b.device], value * scale if scale != 1 else value)
                for n in r.net or ():
                    for family, field in net:
                        value = getattr(n, field)
                        if value is not None:
                            family.add_metric([*labels, n.device], value)
        yield up
        yield took
        yield info
        yield state
        for family, *_ in (*counters, *gauges):
            yield family
        yield vcpu
        for family, *_ in block:
            yield family
        for family, *_ in net:
            yield family


def _read(target: _Target) -> tuple[list[DomainStats] | None, float]:
    start = time.perf_counter()
    try:
        return target.stats(), time.perf_counter() - start
    except VirtError as exc:
        log.warning("exporter: %s: %s", target.shown, exc)
        return None, time.perf_counter() - start


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise Unsupported("virtkit exporter needs prometheus_client: pip install 'virtkit[exporter]'") from None
    return prometheus_client


class Exporter:
    """The collector on its own registry, served over HTTP once :meth:`start` is called."""

    def __init__(
        self,
        uris: Iterable[str | None],
        listen: str = DEFAULT_LISTEN,
        *,
        timeout: float = 30.0,
        groups: Sequence[str] | None = None,
    ) -> None:
        """``groups``: the stats groups to export (None: every group each connection serves)."""
        self.prom = _prometheus()
        self.address, self.port = parse_listen(listen)
        if groups:
            check_groups(groups)
        # one target per URI: the same URI twice would export every series twice
        self.targets = [_Target(u, timeout, tuple(groups) if groups else None) for u in dict.fromkeys(uris)]
        self.registry = self.prom.CollectorRegistry()
        self.registry.register(StatsCollector(self.targets))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def scrape(self) -> bytes:
        """One scrape, as the HTTP endpoint would answer it (Prometheus' text format)."""
        data: bytes = self.prom.generate_latest(self.registry)
        return data

    def start(self) -> None:
        try:
            self._server, self._thread = self.prom.start_http_server(self.port, self.address, self.registry)
        except OSError as exc:
            raise InvalidArgument(f"cannot listen on {self.address}:{self.port}: {exc.strerror or exc}") from None
        self.port = self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
        for t in self.targets:
            t.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_exporter(
    uris: Sequence[str | None], listen: str, *, timeout: float = 30.0, groups: Sequence[str] | None = None
) -> int:
    """The command: serve until interrupted or terminated, then close every connection."""
    stop = threading.Event()
    with Exporter(uris, listen, timeout=timeout, groups=groups) as exporter:
        exporter.start()
        shown = f"[{exporter.address}]" if ":" in exporter.address else exporter.address
        print(f"virtkit exporter: http://{shown}:{exporter.port}/metrics", file=sys.stderr, flush=True)
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    return 0
