"""The CLI's host and plugin commands: ``nodeinfo``, ``version``, ``hostname``, ``uri``,
``explain``; ``drivers`` and ``matrix`` (which open nothing); ``serve`` and ``exporter``
(which open their own connections)."""

from __future__ import annotations

from ._cli_output import columns, emit, fields, table
from ._connection import Connection
from ._errors import InvalidArgument

TYPE_CHECKING = False  # argparse is not imported at run time: see _cli_quick
if TYPE_CHECKING:
    import argparse

__all__: list[str] = []


def cmd_nodeinfo(conn: Connection, args: argparse.Namespace) -> None:
    ni = conn.node_info()
    data = {
        "model": ni.model,
        "cpus": ni.cpus,
        "mhz": ni.mhz,
        "nodes": ni.nodes,
        "sockets": ni.sockets,
        "cores": ni.cores,
        "threads": ni.threads,
        "memory_kib": ni.memory,
        "free_memory_kib": ni.free_memory,
    }
    lines = [
        ("CPU model", ni.model),
        ("CPU(s)", ni.cpus),
        ("CPU frequency", f"{ni.mhz} MHz"),
        ("CPU socket(s)", ni.sockets),
        ("Core(s) per socket", ni.cores),
        ("Thread(s) per core", ni.threads),
        ("NUMA cell(s)", ni.nodes),
        ("Memory size", f"{ni.memory} KiB"),
    ]
    emit(args, data, lambda: fields(lines, 20))


def cmd_version(conn: Connection, args: argparse.Namespace) -> None:
    from ._version import __version__

    hv_type, hv = conn.type(), conn.version()
    data = {"library": __version__, "hypervisor_type": hv_type, "hypervisor_version": str(hv)}
    emit(args, data, f"Compiled against library: virtkit {__version__}\nRunning hypervisor: {hv_type} {hv}")


def cmd_hostname(conn: Connection, args: argparse.Namespace) -> None:
    name = conn.hostname()
    emit(args, {"hostname": name}, name)


def cmd_uri(conn: Connection, args: argparse.Namespace) -> None:
    emit(args, {"uri": str(conn.uri)}, str(conn.uri))


def cmd_explain(conn: Connection, args: argparse.Namespace) -> None:
    ex = conn.explain()
    emit(args, ex.to_dict(), ex.render)


def cmd_drivers(args: argparse.Namespace) -> None:
    from ._discovery import describe_installed

    rows = describe_installed()
    cells = [
        [
            r["plugin"],
            r["distribution"] or "-",
            r["version"] or "-",
            ",".join(r["schemes"]),
            r["status"] + (f": {r['error']}" if r["error"] else ""),
        ]
        for r in rows
    ]
    header = ["Plugin", "Distribution", "Version", "Schemes", "Status"]
    emit(args, rows, lambda: table(cells, header, width=columns()))  # an error message wraps


def cmd_matrix(args: argparse.Namespace) -> None:
    from ._matrix import build_matrix

    m = build_matrix(args.distribution or None)
    emit(args, m.to_dict(), m.render_markdown if args.markdown else m.render_text)


def cmd_serve(args: argparse.Namespace, uris: list[str]) -> int:
    from ._serve import serve_stdio

    if len(uris) > 1:
        raise InvalidArgument("serve opens one URI")
    readonly = args.readonly or args.serve_readonly  # e.g. a forced command in authorized_keys
    return serve_stdio(args.uri or (uris[0] if uris else None), readonly=readonly)


def cmd_exporter(args: argparse.Namespace, uris: list[str]) -> int:
    """Several URIs are one exporter's targets, not a fan-out."""
    from ._exporter import run_exporter

    targets: list[str | None] = [*(args.exporter_uris or uris)] or [None]
    return run_exporter(targets, args.listen, timeout=args.open_timeout, groups=args.group)
