"""The ``virtkit`` command: virsh's conventions over the virtkit API.

A user's mistake (bad URI, unknown domain, invalid transition, bad size) prints one line
``error: ...`` and exits 1 (2 for bad command-line usage); a traceback is shown only for a bug,
and only with ``VIRTKIT_DEBUG=1``.

The CLI's modules: ``_cli_table`` (every command: name, help, arguments, handler),
``_cli_quick`` (a plain command line read from the table without argparse), ``_cli_parser``
(argparse from the table: any other line, every error and help message), ``_cli_args`` (sizes,
timeouts, ``[OP=]PLUGIN``),
``_cli_output`` (safe text, tables, JSON), ``_cli_domain`` / ``_cli_stats`` / ``_cli_host``
(the commands), ``_cli_fanout`` (several hosts), ``_cli_log`` (stderr logging); this module
runs a command and turns what goes wrong into an exit code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ._cli_args import event_seconds as _event_seconds  # noqa: F401 - tests fuzz _cli._event_seconds
from ._cli_args import excludes, op_plugin, parse_size
from ._cli_domain import listing
from ._cli_log import OpenLog, setup_logging
from ._cli_output import emit, safe
from ._cli_quick import read_plain
from ._cli_table import BY_NAME, LOCAL, OWN, Command
from ._connection import Connection
from ._connection import open as open_connection
from ._errors import InvalidArgument, NoDriver, VirtError

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    import argparse

__all__ = ["build_parser", "listing", "main", "parse_args", "parse_size"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line read: a plain one without argparse (``_cli_quick``), any other by
    argparse, which also gives every error and help message."""
    argv = sys.argv[1:] if argv is None else list(argv)
    plain = read_plain(argv)
    if plain is not None:
        return plain  # type: ignore[return-value] # the commands read attributes only
    from ._cli_parser import parse_args as parse

    return parse(argv)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """argparse's parser of the whole CLI (with ``only``, of that command alone)."""
    from ._cli_parser import build_parser as build

    return build(only)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    debug = os.environ.get("VIRTKIT_DEBUG", "") not in ("", "0")
    openlog = setup_logging(args.verbose)
    cmd = BY_NAME[args.command]
    try:
        code = _run(cmd, args, openlog)
        sys.stdout.flush()  # a full disk or closed pipe shows here, not at interpreter exit
        return code
    except VirtError as exc:
        if args.json:
            import json  # only for --json: json is not on the start-up path

            print(json.dumps({"error": exc.to_dict()}), file=sys.stderr)
        else:
            print(safe(f"error: {exc}"), file=sys.stderr)
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
        print(safe(bug), file=sys.stderr)
        if debug:
            raise
        return 70


def _run(cmd: Command, args: argparse.Namespace, openlog: OpenLog) -> int:
    """The command's exit code; its errors are raised for main to report."""
    if cmd.kind == LOCAL:
        cmd.load()(args)
        return 0
    uris = _uris(args)
    if cmd.kind == OWN:
        return int(cmd.load()(args, uris))
    if len(uris) > 1:
        from ._cli_fanout import fan_out

        return fan_out(cmd, uris, args, openlog)
    with _open(cmd, args, uris, openlog) as conn:
        cmd.load()(conn, args)
    return 0


def _open(cmd: Command, args: argparse.Namespace, uris: list[str], openlog: OpenLog) -> Connection:
    """The one connection of a command (``explain URI`` names its own); a failed open is its
    ``error:`` line alone, what plugins logged meanwhile is held back (see ``_cli_log``)."""
    uri = getattr(args, "uri", None) or (uris[0] if uris else None)
    openlog.hold()
    try:
        conn = open_connection(
            uri,
            readonly=args.readonly,
            timeout=args.open_timeout,
            prefer=dict(op_plugin(x) for x in args.prefer),
            exclude=excludes(args.exclude),
        )
    except NoDriver as exc:
        openlog.open_ended(False)
        if cmd.name == "explain" and exc.explanation is not None:
            emit(args, exc.explanation.to_dict(), exc.explanation.render)
        raise
    except BaseException:
        openlog.open_ended(False)
        raise
    openlog.open_ended(True)
    return conn


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
