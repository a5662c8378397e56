"""The CLI's stats commands, in virsh's formats: ``domstats``, ``domblkstat``, ``domifstat``,
``dommemstat``, ``vcpuinfo``. Imported only when one of them runs (see ``_cli_table``)."""

from __future__ import annotations

from ._cli_output import emit, safe
from ._connection import Connection
from ._stats import STATS_GROUPS, BlockStats, DomainStats, InterfaceStats, VcpuState, groups_data, vcpu_data

TYPE_CHECKING = False  # neither typing nor argparse is imported at run time (a cold domstats)
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["domstats_lines", "stats_dict"]

_VCPU_STATES: dict[int, str] = {
    VcpuState.OFFLINE: "offline",
    VcpuState.RUNNING: "running",
    VcpuState.BLOCKED: "blocked",
}

#: virsh's key names for our fields.
_BLOCK_KEYS = (
    ("rd.reqs", "read_requests"),
    ("rd.bytes", "read_bytes"),
    ("rd.times", "read_time_ns"),
    ("wr.reqs", "write_requests"),
    ("wr.bytes", "write_bytes"),
    ("wr.times", "write_time_ns"),
    ("fl.reqs", "flush_requests"),
    ("fl.times", "flush_time_ns"),
    ("errs", "errors"),
)
_NET_KEYS = (
    ("rx.bytes", "rx_bytes"),
    ("rx.pkts", "rx_packets"),
    ("rx.errs", "rx_errors"),
    ("rx.drop", "rx_drops"),
    ("tx.bytes", "tx_bytes"),
    ("tx.pkts", "tx_packets"),
    ("tx.errs", "tx_errors"),
    ("tx.drop", "tx_drops"),
)


def domstats_lines(rec: DomainStats) -> list[str]:
    """One record as virsh prints it: ``Domain: 'name'`` then ``  key=value`` lines."""
    out = [f"Domain: '{rec.domain.name}'"]

    def put(key: str, value: object) -> None:
        if value is not None:
            out.append(f"  {key}={value}")

    if rec.state is not None:
        put("state.state", int(rec.state.state))
        put("state.reason", rec.state.reason)
    if rec.cpu is not None:
        put("cpu.time", rec.cpu.time_ns)
        put("cpu.user", rec.cpu.user_ns)
        put("cpu.system", rec.cpu.system_ns)
    if rec.balloon is not None:
        put("balloon.current", rec.balloon.current_kib)
        put("balloon.maximum", rec.balloon.maximum_kib)
    if rec.vcpu is not None:
        put("vcpu.current", rec.vcpu.current)
        put("vcpu.maximum", rec.vcpu.maximum)
        for v in rec.vcpu.vcpus:
            put(f"vcpu.{v.number}.state", int(v.state))
            put(f"vcpu.{v.number}.time", v.time_ns)
    if rec.net is not None:
        put("net.count", len(rec.net))
        for i, n in enumerate(rec.net):
            put(f"net.{i}.name", n.device)
            for key, field in _NET_KEYS:
                put(f"net.{i}.{key}", getattr(n, field))
    if rec.block is not None:
        put("block.count", len(rec.block))
        for i, b in enumerate(rec.block):
            put(f"block.{i}.name", b.device)
            put(f"block.{i}.path", b.path)
            for key, field in _BLOCK_KEYS:
                put(f"block.{i}.{key}", getattr(b, field))
    return out


def _vcpu_label(state: int) -> str:
    return _VCPU_STATES.get(state, str(state))


def stats_dict(rec: DomainStats) -> dict[str, Any]:
    """One record as JSON data: field names carry their units."""
    d: dict[str, Any] = {"domain": rec.domain.name, "id": rec.domain.id, "uuid": str(rec.domain.uuid)}
    d.update(groups_data(rec, lambda state: state.label, _vcpu_label))
    return d


def cmd_domstats(conn: Connection, args: argparse.Namespace) -> None:
    groups = [g for g in STATS_GROUPS if getattr(args, f"group_{g}", False)] or None
    doms = [conn.lookup(d) for d in args.domains] if args.domains else None
    records = conn.all_domain_stats(groups, doms)
    emit(
        args,
        [stats_dict(r) for r in records],
        lambda: "\n".join("\n".join(domstats_lines(r)) + "\n" for r in records).rstrip("\n") + "\n",
    )


def _lines(prefix: str, pairs: list[tuple[str, object]]) -> str:
    return "\n".join(f"{prefix} {k} {v}" for k, v in pairs if v is not None)


def _block_pairs(s: BlockStats) -> list[tuple[str, object]]:
    return [
        ("rd_req", s.read_requests),
        ("rd_bytes", s.read_bytes),
        ("wr_req", s.write_requests),
        ("wr_bytes", s.write_bytes),
        ("flush_operations", s.flush_requests),
        ("rd_total_times", s.read_time_ns),
        ("wr_total_times", s.write_time_ns),
        ("flush_total_times", s.flush_time_ns),
        ("errs", s.errors),
    ]


def cmd_domblkstat(conn: Connection, args: argparse.Namespace) -> None:
    s = conn.lookup(args.domain).block_stats(args.device or "")
    emit(args, s._asdict(), lambda: _lines(safe(s.device), _block_pairs(s)))


def _net_pairs(s: InterfaceStats) -> list[tuple[str, object]]:
    return [
        ("rx_bytes", s.rx_bytes),
        ("rx_packets", s.rx_packets),
        ("rx_errs", s.rx_errors),
        ("rx_drop", s.rx_drops),
        ("tx_bytes", s.tx_bytes),
        ("tx_packets", s.tx_packets),
        ("tx_errs", s.tx_errors),
        ("tx_drop", s.tx_drops),
    ]


def cmd_domifstat(conn: Connection, args: argparse.Namespace) -> None:
    s = conn.lookup(args.domain).interface_stats(args.interface)
    emit(args, s._asdict(), lambda: _lines(safe(s.device), _net_pairs(s)))


def cmd_dommemstat(conn: Connection, args: argparse.Namespace) -> None:
    m = conn.lookup(args.domain).memory_stats()
    pairs: list[tuple[str, object]] = [
        ("actual", m.actual_kib),
        ("swap_in", m.swap_in_kib),
        ("swap_out", m.swap_out_kib),
        ("major_fault", m.major_faults),
        ("minor_fault", m.minor_faults),
        ("unused", m.unused_kib),
        ("available", m.available_kib),
        ("usable", m.usable_kib),
        ("disk_caches", m.disk_caches_kib),
        ("rss", m.rss_kib),
    ]
    emit(args, m._asdict(), lambda: "\n".join(f"{k} {v}" for k, v in pairs if v is not None))


def cmd_vcpuinfo(conn: Connection, args: argparse.Namespace) -> None:
    vcpus = conn.lookup(args.domain).vcpu_info()

    def text() -> str:
        blocks = []
        for v in vcpus:
            rows = [
                ("VCPU:", v.number),
                ("CPU:", "-" if v.cpu is None else v.cpu),
                ("State:", _vcpu_label(v.state)),
                ("CPU time:", f"{v.time_ns / 1e9:.1f}s"),
            ]
            blocks.append("\n".join(f"{k:<16}{val}" for k, val in rows))
        return "\n\n".join(blocks)

    emit(args, [vcpu_data(v, _vcpu_label) for v in vcpus], text)
