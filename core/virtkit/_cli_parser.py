"""The CLI's argument parser, built from the command table (``_cli_table``).

A cold start builds only the parser of the command it can see in ``argv`` (building every
subparser is a third of a cold start's argument handling: argparse asks gettext for every
help string); when that guess cannot parse ``argv``, the full parser parses it again, so the
result and every error and help message are the full parser's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._cli_table import BY_NAME, COMMANDS, GLOBAL_OPTIONS, JSON_OPTION, SUPPRESS, VALUED, Arg

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["build_parser", "guess_command", "parse_args"]


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it: $COLUMNS, stdout's, 80."""
    try:
        cols = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        cols = 0
    if cols <= 0:
        try:
            cols = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            cols = 0
    return cols or 80


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized without importing shutil: argparse makes one for every
    add_argument, and shutil (with bz2, lzma, fnmatch) is not otherwise on the start-up path."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


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


def guess_command(argv: Sequence[str]) -> str | None:
    """The subcommand of ``argv`` when it is plain to see, else None."""
    it = iter(argv)
    for word in it:
        if word in ("-h", "--help"):
            return None  # the top-level help lists every command
        if word in VALUED:
            next(it, None)
        elif not word.startswith("-"):
            return word if word in BY_NAME else None
    return None


def _add(parser: argparse.ArgumentParser, a: Arg) -> None:
    options = dict(a.options)
    if options.get("default") == SUPPRESS:
        options["default"] = argparse.SUPPRESS  # argparse tells it by identity, not by value
    if options.get("action") == "version":
        from ._version import __version__  # not at start-up: only argparse's parser prints it

        options.setdefault("version", __version__)
    parser.add_argument(*a.names, **options)


def build_parser(only: str | None = None, parser_class: type[_Parser] = _Parser) -> argparse.ArgumentParser:
    """The CLI's parser; with ``only``, just that subcommand's."""
    p = parser_class(
        prog="virtkit",
        formatter_class=_Formatter,
        description="Manage virtual machines on any hypervisor virtkit has a plugin for, "
        "with virsh's commands and conventions.",
    )
    for a in GLOBAL_OPTIONS:
        _add(p, a)
    sub = p.add_subparsers(
        dest="command",
        metavar="COMMAND",
        parser_class=parser_class,
        help="one of these; 'virtkit COMMAND --help' describes it and its arguments",
    )
    sub.required = True
    for cmd in COMMANDS:
        if only is not None and cmd.name != only:
            continue
        description = cmd.description or cmd.help[0].upper() + cmd.help[1:] + "."
        sp = sub.add_parser(cmd.name, help=cmd.help, description=description, formatter_class=_Formatter)
        for a in (JSON_OPTION, *cmd.args):
            _add(sp, a)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    only = guess_command(argv)
    if only is not None:
        try:
            return build_parser(only, _QuickParser).parse_args(argv)
        except _Misguessed:
            pass
    return build_parser().parse_args(argv)
