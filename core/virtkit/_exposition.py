"""The exporter's metrics, built two ways from the same reading of every connection.

``families``: prometheus_client metric families, for the exporter's registry (what embedding code
collects, and what prometheus_client's own HTTP app serves in OpenMetrics or for ``name[]``).
``text``: the Prometheus text format 0.0.4 of those families, written straight from the records:
the bytes ``generate_latest`` would make of ``families`` (a test compares them), without the
per-sample objects, label dicts, sorting and validation that make that path the bulk of a scrape.
Label names are written in sorted order, as ``generate_latest`` does. Only the exporter imports
this module (it needs prometheus_client).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._stats import DomainStats

__all__ = ["Reading", "families", "text"]

#: One connection's reading: (its URI as shown, its records or None when it failed, seconds taken).
Reading = tuple[str, "list[DomainStats] | None", float]

_NS = 1e-9  # ns -> seconds

_UP = ("virtkit_up", "1 if the last stats call on the connection succeeded")
_TOOK = ("virtkit_scrape_duration_seconds", "Time the connection's bulk stats call took")
_INFO = ("virtkit_domain_info", "The domain's uuid; always 1")
_STATE = ("virtkit_domain_state", "libvirt's virDomainState number")
_VCPU = ("virtkit_domain_vcpu_seconds", "CPU time of one vcpu")
# (metric name, help, record group, field, factor to the base unit); counters get "_total".
_COUNTERS = (
    ("virtkit_domain_cpu_seconds", "CPU time used by the domain, all vcpus together", "cpu", "time_ns", _NS),
    ("virtkit_domain_cpu_user_seconds", "CPU time used in guest user mode", "cpu", "user_ns", _NS),
    ("virtkit_domain_cpu_system_seconds", "CPU time used in guest kernel mode", "cpu", "system_ns", _NS),
)
_GAUGES = (
    ("virtkit_domain_memory_current_bytes", "Memory the balloon gives the domain now", "balloon", "current_kib", 1024),
    ("virtkit_domain_memory_maximum_bytes", "Maximum memory of the domain", "balloon", "maximum_kib", 1024),
    ("virtkit_domain_vcpus", "Online vcpus", "vcpu", "current", 1),
    ("virtkit_domain_vcpus_maximum", "Maximum vcpus", "vcpu", "maximum", 1),
)
_BLOCK = (
    ("virtkit_domain_block_read_requests", "Read requests", "read_requests", 1),
    ("virtkit_domain_block_read_bytes", "Bytes read", "read_bytes", 1),
    ("virtkit_domain_block_write_requests", "Write requests", "write_requests", 1),
    ("virtkit_domain_block_write_bytes", "Bytes written", "write_bytes", 1),
    ("virtkit_domain_block_flush_requests", "Flush requests", "flush_requests", 1),
    ("virtkit_domain_block_read_seconds", "Time spent on reads", "read_time_ns", _NS),
    ("virtkit_domain_block_write_seconds", "Time spent on writes", "write_time_ns", _NS),
    ("virtkit_domain_block_flush_seconds", "Time spent on flushes", "flush_time_ns", _NS),
    ("virtkit_domain_block_errors", "Failed requests", "errors", 1),
)
_NET = (
    ("virtkit_domain_network_receive_bytes", "Bytes received by the guest", "rx_bytes", 1),
    ("virtkit_domain_network_receive_packets", "Packets received by the guest", "rx_packets", 1),
    ("virtkit_domain_network_receive_errors", "Receive errors", "rx_errors", 1),
    ("virtkit_domain_network_receive_drops", "Received packets dropped", "rx_drops", 1),
    ("virtkit_domain_network_transmit_bytes", "Bytes sent by the guest", "tx_bytes", 1),
    ("virtkit_domain_network_transmit_packets", "Packets sent by the guest", "tx_packets", 1),
    ("virtkit_domain_network_transmit_errors", "Transmit errors", "tx_errors", 1),
    ("virtkit_domain_network_transmit_drops", "Sent packets dropped", "tx_drops", 1),
)


def _scaled(value: Any, scale: float) -> Any:
    return value * scale if scale != 1 else value


def families(readings: Sequence[Reading]) -> list[Any]:
    """The metric families of ``readings``, in the order they are exposed."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    dom = ["uri", "domain"]
    dev = [*dom, "device"]
    up = GaugeMetricFamily(*_UP, labels=["uri"])
    took = GaugeMetricFamily(*_TOOK, labels=["uri"])
    info = GaugeMetricFamily(*_INFO, labels=[*dom, "uuid"])
    state = GaugeMetricFamily(*_STATE, labels=dom)
    per_dom: list[tuple[Any, str, str, float]]
    per_dom = [(CounterMetricFamily(n, h, labels=dom), g, f, s) for n, h, g, f, s in _COUNTERS]
    per_dom += [(GaugeMetricFamily(n, h, labels=dom), g, f, s) for n, h, g, f, s in _GAUGES]
    vcpu = CounterMetricFamily(*_VCPU, labels=[*dom, "vcpu"])
    block = [(CounterMetricFamily(n, h, labels=dev), f, s) for n, h, f, s in _BLOCK]
    net = [(CounterMetricFamily(n, h, labels=dev), f, s) for n, h, f, s in _NET]
    for uri, records, seconds in readings:
        up.add_metric([uri], 0 if records is None else 1)
        if records is None:
            continue
        took.add_metric([uri], seconds)
        for r in records:
            labels = [uri, r.domain.name]
            info.add_metric([*labels, str(r.domain.uuid)], 1)
            if r.state is not None:
                state.add_metric(labels, int(r.state.state))
            for family, group, field, scale in per_dom:
                rec = getattr(r, group)
                value = None if rec is None else getattr(rec, field)
                if value is not None:
                    family.add_metric(labels, _scaled(value, scale))
            if r.vcpu is not None:
                for v in r.vcpu.vcpus:
                    vcpu.add_metric([*labels, str(v.number)], v.time_ns * _NS)
            for devices, table in ((r.block, block), (r.net, net)):
                for d in devices or ():
                    for family, field, scale in table:
                        value = getattr(d, field)
                        if value is not None:
                            family.add_metric([*labels, d.device], _scaled(value, scale))
    return [up, took, info, state, *(f for f, *_ in per_dom), vcpu, *(f for f, *_ in block), *(f for f, *_ in net)]


def _escape(value: str) -> str:
    """A label value as the text format quotes it (prometheus_client's escaping)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(go: Callable[[Any], str]) -> Callable[[Any], str]:
    """prometheus_client's float formatting; an int below 10**6 short-cut (repr(float(n)) is
    ``f"{n}.0"`` there, and Go's exponent form starts only above it)."""

    def number(value: Any) -> str:
        if type(value) is int and -1_000_000 < value < 1_000_000:
            return f"{value}.0"
        return go(value)

    return number


def _header(name: str, help_text: str, kind: str) -> str:
    sample = f"{name}_total" if kind == "counter" else name
    return f"# HELP {sample} {help_text}\n# TYPE {sample} {kind}\n"


def text(readings: Sequence[Reading]) -> bytes:
    """``generate_latest`` of ``families(readings)``, written directly."""
    from prometheus_client.utils import floatToGoString

    num = _number(floatToGoString)
    up: list[str] = []
    took: list[str] = []
    info: list[str] = []
    state: list[str] = []
    per_dom: list[list[str]] = [[] for _ in (*_COUNTERS, *_GAUGES)]
    per_dom_spec = [
        (lines, f"{n}_total" if i < len(_COUNTERS) else n, g, f, s)
        for i, (lines, (n, _, g, f, s)) in enumerate(zip(per_dom, (*_COUNTERS, *_GAUGES), strict=True))
    ]
    vcpu: list[str] = []
    block: list[list[str]] = [[] for _ in _BLOCK]
    block_spec = [(lines, f"{n}_total", f, s) for lines, (n, _, f, s) in zip(block, _BLOCK, strict=True)]
    net: list[list[str]] = [[] for _ in _NET]
    net_spec = [(lines, f"{n}_total", f, s) for lines, (n, _, f, s) in zip(net, _NET, strict=True)]
    for uri, records, seconds in readings:
        u = _escape(uri)
        up.append(f'{_UP[0]}{{uri="{u}"}} {"0.0" if records is None else "1.0"}\n')
        if records is None:
            continue
        took.append(f'{_TOOK[0]}{{uri="{u}"}} {num(seconds)}\n')
        for r in records:
            # sorted label names: device < domain < uri < uuid < vcpu
            labels = f'domain="{_escape(r.domain.name)}",uri="{u}"'
            info.append(f'{_INFO[0]}{{{labels},uuid="{r.domain.uuid}"}} 1.0\n')
            if r.state is not None:
                state.append(f"{_STATE[0]}{{{labels}}} {int(r.state.state)}.0\n")
            for lines, name, group, field, scale in per_dom_spec:
                rec = getattr(r, group)
                value = None if rec is None else getattr(rec, field)
                if value is not None:
                    lines.append(f"{name}{{{labels}}} {num(_scaled(value, scale))}\n")
            if r.vcpu is not None:
                for v in r.vcpu.vcpus:
                    vcpu.append(f'{_VCPU[0]}_total{{{labels},vcpu="{v.number}"}} {num(v.time_ns * _NS)}\n')
            for devices, spec in ((r.block, block_spec), (r.net, net_spec)):
                for d in devices or ():
                    dev_labels = f'device="{_escape(d.device)}",{labels}'
                    for lines, name, field, scale in spec:
                        value = getattr(d, field)
                        if value is not None:
                            lines.append(f"{name}{{{dev_labels}}} {num(_scaled(value, scale))}\n")
    out = [_header(*_UP, "gauge"), *up, _header(*_TOOK, "gauge"), *took]
    out += [_header(*_INFO, "gauge"), *info, _header(*_STATE, "gauge"), *state]
    for (n, h, *_), lines in zip(_COUNTERS, per_dom, strict=False):
        out += [_header(n, h, "counter"), *lines]
    for (n, h, *_), lines in zip(_GAUGES, per_dom[len(_COUNTERS) :], strict=True):
        out += [_header(n, h, "gauge"), *lines]
    out += [_header(*_VCPU, "counter"), *vcpu]
    for tables, groups in ((_BLOCK, block), (_NET, net)):
        for (n, h, *_), lines in zip(tables, groups, strict=True):
            out += [_header(n, h, "counter"), *lines]
    return "".join(out).encode("utf-8")
