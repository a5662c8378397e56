"""The ``virtkit`` command: virsh's conventions over the virtkit API.

A user's mistake (bad URI, unknown domain, invalid transition, bad size) prints one line
``error: ...`` and exits 1 (2 for bad command-line usage); a traceback is shown only for a bug,
and only with ``VIRTKIT_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ._connection import Connection, Domain
from ._connection import open as open_connection
from ._errors import InvalidArgument, NoDriver, Unsupported, VirtError
from ._input import MAX_TIMEOUT, check_memory, check_timeout, load_json_file
from ._types import DomainEvent, DomainRef, DomainState, VcpuFlags

__all__ = ["main", "parse_size"]

_UNITS = {
    "": 1024,
    "b": 1,
    "bytes": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE = re.compile(r"\s*([0-9]{1,30})\s*([A-Za-z]*)\s*\Z")


def parse_size(text: str) -> int:
    """``512M``, ``1G``, ``2048`` (KiB, virsh's default) -> KiB, rounded up."""
    m = _SIZE.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        shown = repr(text) if len(text) <= 40 else f"{text[:20]!r}...({len(text)} characters)"
        raise InvalidArgument(f"invalid size {shown} (expected a number with an optional unit: K, M, G, T, KiB, ...)")
    nbytes = int(m.group(1)) * _UNITS[m.group(2).lower()]
    kib = -(-nbytes // 1024)
    if kib <= 0:
        raise InvalidArgument(f"invalid size {text!r}: must be positive")
    return check_memory(kib, "size")


def _seconds(text: str) -> float:
    """argparse type of ``--timeout``: a finite number of seconds above 0."""
    try:
        return check_timeout(float(text))
    except (ValueError, InvalidArgument):
        why = f"seconds above 0, at most {MAX_TIMEOUT:.0f}"
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: {why}") from None


def _event_seconds(text: str) -> float:
    """``events --timeout``: seconds above 0, or ``inf`` to listen until interrupted."""
    if text.strip().lower() in ("inf", "infinity"):
        return float("inf")
    return _seconds(text)


# Everything a backend names (domains, models, messages) is shown with control characters
# escaped, so a name cannot move the cursor, recolour the terminal or forge a line.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _safe(text: object) -> str:
    return _UNSAFE.sub(lambda m: repr(m.group())[1:-1], str(text))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


class _Misguessed(Exception):
    pass


class _QuickParser(_Parser):
    """The parser with one subcommand: an error means the guess may be wrong, so the full
    parser parses again and reports it."""

    def error(self, message: str) -> NoReturn:
        raise _Misguessed(message)


def _state_label(state: DomainState) -> str:
    return state.label


def _dom_dict(dom: Domain) -> dict[str, Any]:
    info = dom.info()
    return {
        "id": dom.id,
        "name": dom.name,
        "uuid": str(dom.uuid),
        "state": info.state.label,
        "max_memory_kib": info.max_memory,
        "memory_kib": info.memory,
        "vcpus": info.vcpus,
        "cpu_time_ns": info.cpu_time,
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    rows = [[_safe(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = " " + "   ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line.rstrip(), "-" * (len(line) + 2)]
    out += [(" " + "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip() for r in rows]
    return "\n".join(out)


def _emit(args: argparse.Namespace, data: Any, text: Callable[[], str] | str) -> None:
    sink = getattr(args, "sink", None)
    if sink is not None:  # one host of several: the fan-out renders every host's data together
        sink.append(data)
        return
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        shown = text() if callable(text) else text
        print("\n".join(map(_safe, shown.split("\n"))))


# -- commands ----------------------------------------------------------------------------------


def listing(conn: Connection, all: bool) -> list[tuple[DomainRef, DomainState]]:  # noqa: A002 - virsh's --all
    """What ``list`` shows: running domains by id, then (``all``) the defined ones. One bulk call
    where the connection serves the stats' state group (on a remote host: one round trip, not a
    lookup and an info per domain), else the catalogue's lookups and ``info``."""
    if conn.served_by("connect_get_all_domain_stats"):
        try:
            stats = conn.all_domain_stats(["state"])
        except Unsupported:  # the state group is not among those served here
            pass
        else:
            running = sorted((s for s in stats if s.domain.id is not None), key=lambda s: s.domain.id or 0)
            defined = [s for s in stats if s.domain.id is None] if all else []
            return [(s.domain, s.state.state if s.state else DomainState.NOSTATE) for s in running + defined]
    return [(d.ref, d.info().state) for d in conn.domains(all=all)]


def cmd_list(conn: Connection, args: argparse.Namespace) -> None:
    data = [
        {"id": ref.id, "name": ref.name, "uuid": str(ref.uuid), "state": state.label}
        for ref, state in listing(conn, args.all)
    ]
    rows = [["-" if x["id"] is None else str(x["id"]), str(x["name"]), str(x["state"])] for x in data]
    _emit(args, data, lambda: _table(rows, ["Id", "Name", "State"]))


def cmd_dominfo(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    data = _dom_dict(dom)
    for key, op in (("os_type", dom.os_type), ("max_vcpus", lambda: dom.vcpus(flags=VcpuFlags.MAXIMUM))):
        if conn.served_by(f"domain_get_{'os_type' if key == 'os_type' else 'vcpus'}"):
            data[key] = op()
    lines = [
        ("Id", "-" if data["id"] is None else data["id"]),
        ("Name", data["name"]),
        ("UUID", data["uuid"]),
        ("OS Type", data.get("os_type", "-")),
        ("State", data["state"]),
        ("CPU(s)", data["vcpus"]),
        ("CPU time", f"{data['cpu_time_ns'] / 1e9:.1f}s"),
        ("Max memory", f"{data['max_memory_kib']} KiB"),
        ("Used memory", f"{data['memory_kib']} KiB"),
    ]
    _emit(args, data, lambda: "\n".join(f"{k + ':':<16}{_safe(v)}" for k, v in lines))


def cmd_domstate(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    if conn.served_by("domain_get_state"):
        st = dom.state()
        state, reason = st.state, st.reason
    else:
        state, reason = dom.info().state, None
    data = {"name": dom.name, "state": state.label, "reason": reason}
    text = state.label + (f" ({reason})" if args.reason and reason else "")
    _emit(args, data, text)


def _lifecycle(verb: str, past: str) -> Callable[[Connection, argparse.Namespace], None]:
    def run(conn: Connection, args: argparse.Namespace) -> None:
        dom = conn.lookup(args.domain)
        getattr(dom, verb)()
        _emit(args, {"name": dom.name, "action": verb, "ok": True}, f"Domain '{_safe(dom.name)}' {past}")

    return run


def cmd_setmem(conn: Connection, args: argparse.Namespace) -> None:
    kib = parse_size(args.size)
    dom = conn.lookup(args.domain)
    dom.set_memory(kib)
    _emit(args, {"name": dom.name, "memory_kib": kib}, f"Domain '{dom.name}' memory set to {kib} KiB")


def cmd_setmaxmem(conn: Connection, args: argparse.Namespace) -> None:
    kib = parse_size(args.size)
    dom = conn.lookup(args.domain)
    dom.set_max_memory(kib)
    _emit(args, {"name": dom.name, "max_memory_kib": kib}, f"Domain '{dom.name}' maximum memory set to {kib} KiB")


def cmd_setvcpus(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    dom.set_vcpus(args.count, flags=VcpuFlags.MAXIMUM if args.maximum else 0)
    _emit(args, {"name": dom.name, "vcpus": args.count}, f"Domain '{dom.name}' vcpus set to {args.count}")


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
    _emit(args, data, lambda: "\n".join(f"{k + ':':<20}{_safe(v)}" for k, v in lines))


def cmd_version(conn: Connection, args: argparse.Namespace) -> None:
    from ._version import __version__

    hv_type, hv = conn.type(), conn.version()
    data = {"library": __version__, "hypervisor_type": hv_type, "hypervisor_version": str(hv)}
    _emit(args, data, f"Compiled against library: virtkit {__version__}\nRunning hypervisor: {hv_type} {hv}")


def cmd_hostname(conn: Connection, args: argparse.Namespace) -> None:
    name = conn.hostname()
    _emit(args, {"hostname": name}, name)


def cmd_uri(conn: Connection, args: argparse.Namespace) -> None:
    _emit(args, {"uri": str(conn.uri)}, str(conn.uri))


def cmd_explain(conn: Connection, args: argparse.Namespace) -> None:
    ex = conn.explain()
    _emit(args, ex.to_dict(), ex.render)


def cmd_events(conn: Connection, args: argparse.Namespace) -> None:
    def show(ev: DomainEvent) -> None:
        if args.json:
            print(
                json.dumps({"event": ev.type.value, "domain": ev.domain.name, "id": ev.domain.id, "detail": ev.detail})
            )
        else:
            text = f"event '{ev.type.value}' for domain '{ev.domain.name}'" + (f": {ev.detail}" if ev.detail else "")
            print(_safe(text))
        sys.stdout.flush()

    with conn.events() as stream:
        for ev in stream.iter(args.timeout):
            show(ev)


def _load_config(path: str) -> Any:
    from ._types import DomainConfig

    data = load_json_file(path, "domain config")
    try:
        return DomainConfig.from_dict(data)
    except InvalidArgument as exc:
        raise InvalidArgument(f"bad domain config {path!r}: {exc.message}") from None


def cmd_create(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.create(_load_config(args.file))
    _emit(args, {"name": dom.name, "id": dom.id, "uuid": str(dom.uuid)}, f"Domain '{dom.name}' created")


def cmd_define(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.define(_load_config(args.file))
    _emit(args, {"name": dom.name, "uuid": str(dom.uuid)}, f"Domain '{dom.name}' defined")


def cmd_drivers(args: argparse.Namespace) -> None:
    from ._discovery import describe_installed

    rows = describe_installed()
    table = [
        [
            r["plugin"],
            r["distribution"] or "-",
            r["version"] or "-",
            ",".join(r["schemes"]),
            r["status"] + (f": {r['error']}" if r["error"] else ""),
        ]
        for r in rows
    ]
    _emit(args, rows, lambda: _table(table, ["Plugin", "Distribution", "Version", "Schemes", "Status"]))


def cmd_matrix(args: argparse.Namespace) -> None:
    from ._matrix import build_matrix

    m = build_matrix(args.distribution or None)
    _emit(args, m.to_dict(), m.render_markdown if args.markdown else m.render_text)


_COMMANDS: dict[str, Callable[[Connection, argparse.Namespace], None]] = {
    "list": cmd_list,
    "dominfo": cmd_dominfo,
    "domstate": cmd_domstate,
    "suspend": _lifecycle("suspend", "suspended"),
    "resume": _lifecycle("resume", "resumed"),
    "shutdown": _lifecycle("shutdown", "is being shutdown"),
    "reboot": _lifecycle("reboot", "is being rebooted"),
    "destroy": _lifecycle("destroy", "destroyed"),
    "start": _lifecycle("start", "started"),
    "undefine": _lifecycle("undefine", "has been undefined"),
    "setmem": cmd_setmem,
    "setmaxmem": cmd_setmaxmem,
    "setvcpus": cmd_setvcpus,
    "nodeinfo": cmd_nodeinfo,
    "version": cmd_version,
    "hostname": cmd_hostname,
    "uri": cmd_uri,
    "explain": cmd_explain,
    "events": cmd_events,
    "create": cmd_create,
    "define": cmd_define,
}


_STATS_COMMANDS = ("domstats", "domblkstat", "domifstat", "dommemstat", "vcpuinfo")


def _stats_command(name: str) -> Callable[[Connection, argparse.Namespace], None]:
    def run(conn: Connection, args: argparse.Namespace) -> None:
        from ._cli_stats import COMMANDS  # imported when a stats command runs, not at start-up

        COMMANDS[name](conn, args)

    return run


_COMMANDS.update({name: _stats_command(name) for name in _STATS_COMMANDS})
_COMMAND_NAMES = frozenset([*_COMMANDS, "drivers", "matrix", "serve", "exporter"])
#: Global options that take a value (the command guess must skip the value).
_VALUED = ("-c", "--connect", "--timeout", "--prefer", "--exclude", "--hosts", "--parallel")


def _guess_command(argv: Sequence[str]) -> str | None:
    """The subcommand of ``argv`` when it is plain to see, else None."""
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            return None  # the top-level help lists every command
        if arg in _VALUED:
            next(it, None)
        elif not arg.startswith("-"):
            return arg if arg in _COMMAND_NAMES else None
    return None


def build_parser(only: str | None = None, parser_class: type[_Parser] = _Parser) -> argparse.ArgumentParser:
    """The CLI's parser; with ``only``, just that subcommand's: building all 23 subparsers is a
    third of a cold start's argument handling (argparse asks gettext for every help string)."""
    p = parser_class(prog="virtkit", description="Manage virtual machines on any hypervisor virtkit has a plugin for.")
    p.add_argument(
        "-c",
        "--connect",
        metavar="URI",
        action="append",
        default=[],
        help="connection URI (default: $VIRTKIT_DEFAULT_URI, else probed); repeat for several hosts",
    )
    p.add_argument("--hosts", metavar="FILE", help="also every URI of FILE (one a line, '#' comments)")
    p.add_argument("--parallel", type=int, default=16, metavar="N", help="hosts at a time with several (default 16)")
    p.add_argument("-r", "--readonly", action="store_true", help="open a read-only connection")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log open attempts (-vv: debug)")
    p.add_argument("--timeout", dest="open_timeout", type=_seconds, default=30.0, help="seconds for driver calls")
    p.add_argument(
        "--prefer",
        action="append",
        default=[],
        metavar="[OP=]PLUGIN",
        help="serve OP (default: every op it offers) by PLUGIN; repeatable",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="[OP=]PLUGIN",
        help="never serve OP (default: any op) by PLUGIN; repeatable",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser_class)
    sub.required = True

    def add(name: str, help: str, *extra: tuple[str, dict[str, Any]]) -> None:  # noqa: A002
        if only is not None and name != only:
            return
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
        for arg, kw in extra:
            sp.add_argument(arg, **kw)

    dom = ("domain", {"metavar": "DOM", "help": "domain id, name or UUID"})
    add("list", "list domains", ("--all", {"action": "store_true", "help": "include inactive domains"}))
    add("dominfo", "domain information", dom)
    add("domstate", "domain state", dom, ("--reason", {"action": "store_true"}))
    for verb, text in (
        ("suspend", "pause a domain"),
        ("resume", "unpause a domain"),
        ("shutdown", "ask a domain to shut down"),
        ("reboot", "ask a domain to reboot"),
        ("destroy", "stop a domain at once"),
        ("start", "start a defined domain"),
        ("undefine", "remove a defined domain"),
    ):
        add(verb, text, dom)
    size = ("size", {"metavar": "SIZE", "help": "e.g. 512M, 1G; KiB without a unit"})
    add("setmem", "set current memory", dom, size)
    add("setmaxmem", "set maximum memory", dom, size)
    add("setvcpus", "set vcpu count", dom, ("count", {"type": int}), ("--maximum", {"action": "store_true"}))
    add("nodeinfo", "host information")
    add("version", "hypervisor and library versions")
    add("hostname", "the hypervisor host's name")
    add("uri", "the connection's URI")
    add("drivers", "installed plugins, loaded or failed")
    add(
        "matrix",
        "support matrix: operation x installed plugin, with priorities (opens nothing)",
        ("--markdown", {"action": "store_true", "help": "a Markdown table (as in docs/support-matrix.md)"}),
        ("--distribution", {"action": "append", "metavar": "DIST", "help": "only this distribution's plugins"}),
    )
    add("explain", "which plugin serves each operation", ("uri", {"nargs": "?", "metavar": "URI"}))
    add(
        "events",
        "print domain events",
        ("--timeout", {"type": _event_seconds, "default": 10.0, "help": "seconds ('inf': until interrupted)"}),
    )
    add(
        "serve",
        "serve this host's hypervisor over stdin/stdout (the far end of SCHEME+ssh:// and SCHEME+ext://)",
        ("--stdio", {"action": "store_true", "required": True, "help": "speak the protocol on stdin/stdout"}),
        ("--readonly", {"action": "store_true", "dest": "serve_readonly", "help": "refuse every mutation"}),
        ("uri", {"nargs": "?", "metavar": "URI", "help": "the URI to open here (default: as without -c)"}),
    )
    add("create", "start a domain from a JSON config", ("file", {"metavar": "FILE"}))
    add("define", "define a domain from a JSON config", ("file", {"metavar": "FILE"}))
    if only is None or only in _STATS_COMMANDS:
        from ._cli_stats import add_parsers

        add_parsers(add, dom)
    if only in (None, "exporter"):
        ex = sub.add_parser("exporter", help="serve Prometheus metrics of every domain over HTTP")
        ex.add_argument("--listen", metavar="ADDR:PORT", default="127.0.0.1:9177", help="default 127.0.0.1:9177")
        ex.add_argument(
            "-c", "--connect", dest="exporter_uris", action="append", default=[], metavar="URI", help="repeatable"
        )
        ex.add_argument("--group", action="append", default=[], metavar="GROUP", help="export only GROUP; repeatable")
    return p


def _op_plugin(text: str) -> tuple[str, str]:
    """``domain_get_info=xenstore`` -> (op, plugin); a bare ``xenstore`` means every op ("*")."""
    op, eq, plugin = text.partition("=")
    if not eq:
        op, plugin = "*", op
    if not op or not plugin:
        raise InvalidArgument(f"expected [OP=]PLUGIN, got {text!r}")
    return op, plugin


def _excludes(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for op, plugin in map(_op_plugin, items):
        out.setdefault(op, []).append(plugin)
    return out


def _setup_logging(verbose: int) -> None:
    """Plugin trouble goes to stderr as one-line warnings; -v shows every open attempt."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("virtkit: %(levelname)s: %(message)s"))
    handler.set_name("virtkit-cli")
    root = logging.getLogger("virtkit")
    for old in [h for h in root.handlers if h.get_name() == "virtkit-cli"]:  # main() run again in-process
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    only = _guess_command(argv)
    if only is not None:
        try:
            return build_parser(only, _QuickParser).parse_args(argv)
        except _Misguessed:
            pass
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    debug = os.environ.get("VIRTKIT_DEBUG", "") not in ("", "0")
    _setup_logging(args.verbose)
    try:
        if args.command == "drivers":
            cmd_drivers(args)
            return 0
        if args.command == "matrix":
            cmd_matrix(args)
            return 0
        uris = _uris(args)
        if args.command == "serve":
            from ._serve import serve_stdio

            if len(uris) > 1:
                raise InvalidArgument("serve opens one URI")
            readonly = args.readonly or args.serve_readonly  # e.g. a forced command in authorized_keys
            return serve_stdio(args.uri or (uris[0] if uris else None), readonly=readonly)
        if args.command == "exporter":  # several URIs are one exporter's targets, not a fan-out
            from ._exporter import run_exporter

            targets: list[str | None] = [*(args.exporter_uris or uris)] or [None]
            return run_exporter(targets, args.listen, timeout=args.open_timeout, groups=args.group)
        if len(uris) > 1:
            return _fan_out(uris, args)
        uri = getattr(args, "uri", None) if args.command == "explain" else None
        try:
            conn = open_connection(
                uri or (uris[0] if uris else None),
                readonly=args.readonly,
                timeout=args.open_timeout,
                prefer=dict(_op_plugin(x) for x in args.prefer),
                exclude=_excludes(args.exclude),
            )
        except NoDriver as exc:
            if args.command == "explain" and exc.explanation is not None:
                _emit(args, exc.explanation.to_dict(), exc.explanation.render)
            raise
        with conn:
            _COMMANDS[args.command](conn, args)
        sys.stdout.flush()  # a full disk or closed pipe shows here, not at interpreter exit
        return 0
    except VirtError as exc:
        if args.json:
            print(json.dumps({"error": exc.to_dict()}), file=sys.stderr)
        else:
            print(_safe(f"error: {exc}"), file=sys.stderr)
        if debug:
            raise
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `virtkit list | head -1`: the reader had enough
        _drop_stdout()
        return 0
    except OSError as exc:  # drivers' errors arrive typed: an OSError here is our own output failing
        _drop_stdout()
        print(f"error: cannot write output: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug, not the user's mistake: say so, traceback only on request
        bug = f"internal error: {type(exc).__name__}: {exc} (set VIRTKIT_DEBUG=1 for a traceback)"
        print(_safe(bug), file=sys.stderr)
        if debug:
            raise
        return 70


def _uris(args: argparse.Namespace) -> list[str]:
    uris = list(args.connect)
    if args.hosts:
        from ._input import read_config_file

        for line in read_config_file(args.hosts, "hosts file").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                uris.append(line)
        if not uris:
            raise InvalidArgument(f"hosts file {args.hosts!r} names no URI")
    return uris


#: What several hosts can be asked at once (events and explain are one host's matter).
_FAN_OUT = frozenset(_COMMANDS) - {"events", "explain"}


def _fan_out(uris: list[str], args: argparse.Namespace) -> int:
    """One command on every host, in parallel: a HOST column, and one error line per failed host."""
    if args.command not in _FAN_OUT:
        raise InvalidArgument(f"{args.command} takes one host, not {len(uris)}")
    if not 1 <= args.parallel <= 1024:
        raise InvalidArgument(f"--parallel must be 1..1024, got {args.parallel}")
    from .fleet import run

    def one(conn: Connection) -> Any:
        host_args = argparse.Namespace(**vars(args))
        host_args.sink = []
        _COMMANDS[args.command](conn, host_args)
        return host_args.sink[0] if host_args.sink else None

    results = run(
        uris,
        one,
        parallel=args.parallel,
        timeout=args.open_timeout,
        readonly=args.readonly,
        prefer=dict(_op_plugin(x) for x in args.prefer),
        exclude=_excludes(args.exclude),
    )
    rows: list[dict[str, Any]] = []
    for r in results:
        if r.error is not None:
            continue
        for item in r.value if isinstance(r.value, list) else [r.value]:
            rows.append({"host": r.uri, **(item if isinstance(item, dict) else {"result": item})})
    if args.json:
        errors = [{"host": r.uri, "error": r.error.to_dict()} for r in results if r.error is not None]
        print(json.dumps(rows + errors, indent=2, default=str))
    elif rows:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        if args.command == "list":  # the columns of one host's list, after HOST
            keys = ["host", "id", "name", "state"]
        table = [["-" if row.get(k) is None else str(row.get(k)) for k in keys] for row in rows]
        header = ["HOST", *(k.capitalize() if args.command == "list" else k for k in keys[1:])]
        print("\n".join(map(_safe, _table(table, header).split("\n"))))
    for r in results:
        if r.error is not None and not args.json:
            print(_safe(f"error: {r.uri}: {r.error}"), file=sys.stderr)
    sys.stdout.flush()
    return 1 if any(r.error is not None for r in results) else 0


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of what could not be written
    raises nothing more (the recipe of Python's signal docs for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
