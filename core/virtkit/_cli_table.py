"""The CLI's commands, in one table: name, help, arguments, handler, and how ``main`` runs it.

The parser (``_cli_parser``), the start-up guess of the command (which builds only that
command's parser) and ``main``'s dispatch all read :data:`COMMANDS`; a command is added here
and nowhere else. Handlers are named ``"module.function"`` in ``virtkit._cli_<module>`` and
imported when their command runs, not at start-up.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

from ._cli_args import event_seconds, seconds

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any, Final, Literal, NamedTuple
else:
    from ._record import NamedTuple

__all__ = [
    "BY_NAME",
    "COMMANDS",
    "CONNECTION",
    "GLOBAL_OPTIONS",
    "JSON_OPTION",
    "LOCAL",
    "OWN",
    "SUPPRESS",
    "VALUED",
    "Arg",
    "Command",
    "arg",
]

#: How ``main`` runs a command's handler. CONNECTION: ``handler(conn, args)`` on the connection
#: ``-c`` names (on each host, with several); LOCAL: ``handler(args)``, opening nothing; OWN:
#: ``handler(args, uris) -> exit code``, opening its own connections.
CONNECTION: Final = "connection"
LOCAL: Final = "local"
OWN: Final = "own"


class Arg(NamedTuple):
    """One ``add_argument(*names, **options)``."""

    names: tuple[str, ...]
    options: Mapping[str, Any]


def arg(*names: str, **options: Any) -> Arg:
    return Arg(names, options)


class Command(NamedTuple):
    name: str
    help: str  # one line, in ``virtkit --help``
    handler: str  # "module.function" in virtkit._cli_<module>
    args: tuple[Arg, ...] = ()
    kind: Literal["connection", "local", "own"] = CONNECTION
    fan_out: bool = True  # a CONNECTION command several hosts can be asked at once
    description: str = ""  # more for ``virtkit COMMAND --help``; default: the help line

    def load(self) -> Callable[..., Any]:
        """The handler, imported now."""
        module, _, function = self.handler.partition(".")
        name = f"virtkit._cli_{module}"
        __import__(name)  # importlib.import_module, without importing importlib (and warnings)
        return getattr(sys.modules[name], function)  # type: ignore[no-any-return]


#: The options before the command. Those taking a value are what the start-up guess skips.
GLOBAL_OPTIONS = (
    arg(
        "-c",
        "--connect",
        metavar="URI",
        action="append",
        default=[],
        help="connection URI (default: $VIRTKIT_DEFAULT_URI, else probed); repeat for several hosts",
    ),
    arg("--hosts", metavar="FILE", help="also every URI of FILE (one a line, '#' comments)"),
    arg("--parallel", type=int, default=16, metavar="N", help="hosts at a time with several (default 16)"),
    arg("-r", "--readonly", action="store_true", help="open a read-only connection"),
    arg("--json", action="store_true", help="print JSON"),
    arg("-v", "--verbose", action="count", default=0, help="log every plugin's open attempt (-vv: debug)"),
    arg(
        "--timeout",
        dest="open_timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="seconds for the open and for each driver call (default 30)",
    ),
    arg(
        "--prefer",
        action="append",
        default=[],
        metavar="[OP=]PLUGIN",
        help="serve OP (default: every op it offers) by PLUGIN; repeatable",
    ),
    arg(
        "--exclude",
        action="append",
        default=[],
        metavar="[OP=]PLUGIN",
        help="never serve OP (default: any op) by PLUGIN; repeatable",
    ),
    arg("--version", action="version", help="print virtkit's version and exit"),  # _cli_parser adds which
)

SUPPRESS: Final = "==SUPPRESS=="  # argparse.SUPPRESS (the table is read without argparse: _cli_quick)

#: Every command's own ``--json``; not set unless given, so ``--json`` before the command holds.
JSON_OPTION = arg("--json", action="store_true", default=SUPPRESS, help="print JSON")

_DOM = arg("domain", metavar="DOM", help="domain id, name or UUID")
_SIZE = arg("size", metavar="SIZE", help="e.g. 512M, 1G; KiB without a unit")
_CONFIG = arg(
    "file", metavar="FILE", help="a domain config: JSON (the format dumpconfig prints) or a format a plugin adds"
)
_FORMAT = arg(
    "--format",
    metavar="NAME",
    help="the config's format: json, or one a plugin adds (xl); default: JSON for a JSON object, "
    "else the only other format installed",
)


def _lifecycle(name: str, help: str) -> Command:  # noqa: A002 - argparse's word
    return Command(name, help, f"domain.{name}", (_DOM,))


def _stats_flags() -> tuple[Arg, ...]:
    """``domstats``' group selectors; virsh's spellings (``--cpu-total``, ``--interface``) too."""
    flags: list[Arg] = []
    for group, virsh in (
        ("state", None),
        ("cpu", "--cpu-total"),
        ("balloon", None),
        ("vcpu", None),
        ("block", None),
        ("net", "--interface"),
    ):
        dest = f"group_{group}"
        flags.append(arg(f"--{group}", action="store_true", dest=dest, help=f"the {group} group"))
        if virsh:
            flags.append(arg(virsh, action="store_true", dest=dest, help=f"same as --{group} (virsh's name)"))
    return tuple(flags)


COMMANDS: tuple[Command, ...] = (
    # -- domains: listing and looking ---------------------------------------------------------
    Command(
        "list",
        "list domains",
        "domain.cmd_list",
        (
            arg("--all", action="store_true", help="active and inactive domains"),
            arg("--inactive", action="store_true", help="inactive domains only (with --all: every domain)"),
            arg("--name", action="store_true", help="print names only, one a line"),
            arg("--uuid", action="store_true", help="print UUIDs only, one a line (with --name: UUID and name)"),
        ),
        description="List domains: running ones by id, then (--all, --inactive) the defined ones. "
        "With --json every field of every domain is printed, whatever --name and --uuid say.",
    ),
    Command("dominfo", "domain information", "domain.cmd_dominfo", (_DOM,)),
    Command(
        "domstate",
        "domain state",
        "domain.cmd_domstate",
        (_DOM, arg("--reason", action="store_true", help="also why it is in that state")),
    ),
    Command("domid", "a domain's id ('-' when it is not running)", "domain.cmd_domid", (_DOM,)),
    Command("domname", "a domain's name", "domain.cmd_domname", (_DOM,)),
    Command("domuuid", "a domain's UUID", "domain.cmd_domuuid", (_DOM,)),
    Command(
        "vcpucount",
        "a domain's vcpu counts",
        "domain.cmd_vcpucount",
        (
            _DOM,
            arg("--maximum", action="store_true", help="print the maximum count only"),
            arg("--active", action="store_true", help="print the current count only"),
        ),
        description="A domain's maximum and current vcpu counts, as virsh prints them: live values "
        "for a running domain, config values for one that is not. Rows the backend cannot tell "
        "are left out.",
    ),
    Command(
        "dumpconfig",
        "a domain's config as JSON (virsh's dumpxml)",
        "domain.cmd_dumpconfig",
        (_DOM,),
        description="Print a domain's config as JSON, in the format create and define read back.",
    ),
    # -- domains: changing ---------------------------------------------------------------------
    _lifecycle("suspend", "pause a domain"),
    _lifecycle("resume", "unpause a domain"),
    _lifecycle("shutdown", "ask a domain to shut down"),
    _lifecycle("reboot", "ask a domain to reboot"),
    _lifecycle("destroy", "stop a domain at once"),
    _lifecycle("start", "start a defined domain"),
    _lifecycle("undefine", "remove a defined domain"),
    Command("setmem", "set current memory", "domain.cmd_setmem", (_DOM, _SIZE)),
    Command("setmaxmem", "set maximum memory", "domain.cmd_setmaxmem", (_DOM, _SIZE)),
    Command(
        "setvcpus",
        "set vcpu count",
        "domain.cmd_setvcpus",
        (
            _DOM,
            arg("count", type=int, metavar="COUNT", help="the number of vcpus"),
            arg("--maximum", action="store_true", help="set the maximum instead (only while shut off)"),
        ),
    ),
    Command(
        "autostart",
        "mark a domain to start with its host",
        "domain.cmd_autostart",
        (_DOM, arg("--disable", action="store_true", help="unmark it instead")),
        description="Mark a persistent domain to be started when its host starts (virsh's autostart); "
        "--disable unmarks it. dominfo shows the mark. Only a backend that starts the marked domains "
        "serves it; a transient domain is refused.",
    ),
    Command("create", "start a domain from a config file", "domain.cmd_create", (_CONFIG, _FORMAT)),
    Command("define", "define a domain from a config file", "domain.cmd_define", (_CONFIG, _FORMAT)),
    Command(
        "events",
        "print domain events",
        "domain.cmd_events",
        (
            arg(
                "--timeout",
                type=event_seconds,
                default=10.0,
                metavar="S",
                help="seconds to listen (default 10; 'inf': until interrupted)",
            ),
        ),
        fan_out=False,
    ),
    # -- statistics (virsh's formats) ----------------------------------------------------------
    Command(
        "domstats",
        "statistics of domains (default: every group, every domain)",
        "stats.cmd_domstats",
        (*_stats_flags(), arg("domains", nargs="*", metavar="DOM", help="domains (default: all)")),
    ),
    Command(
        "domblkstat",
        "a disk's I/O counters",
        "stats.cmd_domblkstat",
        (_DOM, arg("device", nargs="?", metavar="DEV", help="disk target name or path (default: all disks)")),
    ),
    Command(
        "domifstat",
        "an interface's counters",
        "stats.cmd_domifstat",
        (_DOM, arg("interface", metavar="IFACE", help="interface name or MAC")),
    ),
    Command("dommemstat", "memory statistics (KiB)", "stats.cmd_dommemstat", (_DOM,)),
    Command("vcpuinfo", "each vcpu's state and cpu time", "stats.cmd_vcpuinfo", (_DOM,)),
    # -- the host and the plugins --------------------------------------------------------------
    Command("nodeinfo", "host information", "host.cmd_nodeinfo"),
    Command("version", "hypervisor and library versions", "host.cmd_version"),
    Command("hostname", "the hypervisor host's name", "host.cmd_hostname"),
    Command("uri", "the connection's URI", "host.cmd_uri"),
    Command(
        "explain",
        "which plugin serves each operation",
        "host.cmd_explain",
        (arg("uri", nargs="?", metavar="URI", help="the URI to explain (default: as -c, else probed)"),),
        fan_out=False,
    ),
    Command("drivers", "installed plugins, loaded or failed", "host.cmd_drivers", kind=LOCAL),
    Command(
        "matrix",
        "support matrix: operation x installed plugin, with priorities (opens nothing)",
        "host.cmd_matrix",
        (
            arg("--markdown", action="store_true", help="a Markdown table (as in docs/support-matrix.md)"),
            arg("--distribution", action="append", metavar="DIST", help="only this distribution's plugins"),
        ),
        kind=LOCAL,
    ),
    Command(
        "serve",
        "serve this host's hypervisor over stdin/stdout (the far end of SCHEME+ssh:// and SCHEME+ext://)",
        "host.cmd_serve",
        (
            arg("--stdio", action="store_true", required=True, help="speak the protocol on stdin/stdout"),
            arg("--readonly", action="store_true", dest="serve_readonly", help="refuse every mutation"),
            arg("uri", nargs="?", metavar="URI", help="the URI to open here (default: as without -c)"),
        ),
        kind=OWN,
    ),
    Command(
        "exporter",
        "serve Prometheus metrics of every domain over HTTP",
        "host.cmd_exporter",
        (
            arg("--listen", metavar="ADDR:PORT", default="127.0.0.1:9177", help="default 127.0.0.1:9177"),
            arg(
                "-c",
                "--connect",
                dest="exporter_uris",
                action="append",
                default=[],
                metavar="URI",
                help="a connection to export; repeatable (default: the global -c, else probed)",
            ),
            arg("--group", action="append", default=[], metavar="GROUP", help="export only GROUP; repeatable"),
        ),
        kind=OWN,
    ),
)

BY_NAME: Mapping[str, Command] = {c.name: c for c in COMMANDS}

#: The global options' spellings that take a value (argparse actions that store one).
VALUED = frozenset(
    name
    for a in GLOBAL_OPTIONS
    if a.options.get("action", "store") in ("store", "append")
    for name in a.names
    if name.startswith("-")
)
