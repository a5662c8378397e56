"""The plain command lines read without argparse (``_cli_quick``) read as argparse reads them.

argparse is the reference: for every line the quick reader accepts, the namespace equals the
full parser's; every line it leaves alone still parses (or fails) through argparse.
"""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from virtkit._cli import build_parser, parse_args
from virtkit._cli_quick import Namespace, read_plain
from virtkit._cli_table import COMMANDS, GLOBAL_OPTIONS, JSON_OPTION, SUPPRESS, Arg


def _full(argv: list[str]) -> argparse.Namespace | None:
    """argparse's result, None where it refuses the line (or prints help or the version)."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        return None


def _agrees(argv: list[str]) -> Namespace | None:
    quick = read_plain(argv)
    if quick is not None:
        full = _full(argv)
        assert full is not None, f"argparse refuses {argv}, the quick reader accepted it"
        assert vars(quick) == vars(full), argv
    return quick


def test_suppress_is_argparses() -> None:
    assert SUPPRESS == argparse.SUPPRESS


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "test:///default", "list", "--all"],
        ["list"],
        ["--connect=test:///default", "--json", "dominfo", "web"],
        ["-r", "-v", "-v", "--timeout", "5", "--prefer", "domain_get_info=test", "--exclude", "x", "nodeinfo"],
        ["-c", "list", "uri"],  # a URI that looks like a command
        ["-c", "a", "-c", "b", "--parallel", "3", "--hosts", "f", "list", "--name", "--uuid", "--inactive"],
        ["explain", "test:///default"],
        ["explain"],
        ["setvcpus", "web", "2", "--maximum"],
        ["setvcpus", "--maximum", "web", "3"],
        ["drivers", "--json"],
        ["matrix", "--markdown", "--distribution", "virtkit-test", "--distribution", "x"],
        ["dumpconfig", "web", "--json"],
        ["domstats", "--cpu-total", "--interface", "web", "test"],
        ["domstats"],
        ["domstats", "--block", "--json"],
        ["domblkstat", "web"],
        ["domblkstat", "web", "hda"],
        ["events", "--timeout", "inf"],
        ["exporter", "-c", "test:///default", "--group", "cpu", "--listen", "127.0.0.1:0"],
        ["serve", "--stdio", "--readonly", "test:///default"],
        ["--timeout=2.5", "version"],
        ["--connect=", "uri"],  # an empty value given with '=' is argparse's value too
    ],
)
def test_plain_lines_are_read_as_argparse_reads_them(argv: list[str]) -> None:
    quick = _agrees(argv)
    assert quick is not None, f"{argv} is plain: the quick reader should read it"
    assert parse_args(argv) == _full(argv)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.name)
def test_every_command_has_a_plain_line(cmd: object) -> None:
    """A command the quick reader cannot read would pay for argparse at every start."""
    argv = [cmd.name, *_minimal(cmd.args)]  # type: ignore[attr-defined]
    assert _agrees(argv) is not None, argv


@pytest.mark.parametrize(
    "argv",
    [
        ["--conn", "test:///default", "list"],  # an abbreviation
        ["-vv", "list"],
        ["-ctest:///default", "list"],
        ["--", "version"],
        ["-h"],
        ["list", "-h"],
        ["--version"],
        ["-c", "test:///default", "--help", "list"],
        ["list", "--bogus"],
        ["list", "--all=yes"],
        ["setvcpus", "web", "two"],
        ["setvcpus", "web", "-1"],
        ["dominfo"],
        ["dominfo", "a", "b"],
        ["domblkstat", "web", "--json", "hda"],  # argparse gives the positionals out at the first run
        ["-c", "-x", "list"],
        ["--timeout", "x", "list"],
        ["events", "--timeout", "0"],
        ["serve"],  # --stdio is required
        ["nosuchcommand"],
        [],
        ["list", "-c", "test:///default"],  # a global option after the command
    ],
)
def test_other_lines_are_left_to_argparse(argv: list[str]) -> None:
    assert read_plain(argv) is None
    full = _full(argv)
    if full is not None:
        assert parse_args(argv) == full


def test_namespaces_compare_with_argparses_both_ways() -> None:
    quick = read_plain(["list"])
    assert quick is not None
    full = build_parser().parse_args(["list"])
    assert quick == full and full == quick
    assert "all" in quick and "nosuch" not in quick
    assert quick != argparse.Namespace(**{**vars(full), "all": True})
    assert quick != {"all": False}


# -- generated lines ------------------------------------------------------------------------------

_VALUES = ["web", "2", "512M", "test:///default", "5", "inf", "x", "", "-", "--", "-1", "a=b", "cpu", "list"]


def _minimal(args: tuple[Arg, ...]) -> list[str]:
    words = []
    for a in args:
        if not a.names[0].startswith("-") and a.options.get("nargs") not in ("?", "*"):
            words.append("2" if a.options.get("type") is int else "web")
        elif a.options.get("required"):
            words.append(a.names[0])
    return words


def _spellings(a: Arg, draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from([n for n in a.names if n.startswith("-")]))
    if a.options.get("action", "store") in ("store", "append"):
        value = draw(st.sampled_from(_VALUES))
        return [f"{name}={value}"] if name.startswith("--") and draw(st.booleans()) else [name, value]
    return [name]


@st.composite
def _lines(draw: st.DrawFn) -> list[str]:
    argv: list[str] = []
    for a in draw(st.lists(st.sampled_from(GLOBAL_OPTIONS), max_size=4)):
        argv += _spellings(a, draw)
    cmd = draw(st.sampled_from(COMMANDS))
    argv.append(cmd.name)
    own = [a for a in (JSON_OPTION, *cmd.args) if a.names[0].startswith("-")]
    parts = [_spellings(a, draw) for a in draw(st.lists(st.sampled_from(own), max_size=3))] if own else []
    positional = [a for a in cmd.args if not a.names[0].startswith("-")]
    words = draw(st.lists(st.sampled_from(_VALUES), min_size=0, max_size=len(positional) + 1))
    at = draw(st.integers(0, len(parts)))
    for part in parts[:at]:
        argv += part
    argv += words
    for part in parts[at:]:
        argv += part
    return argv


@settings(max_examples=600, deadline=None)
@given(_lines())
def test_generated_lines_agree(argv: list[str]) -> None:
    _agrees(argv)


_TOKENS = sorted(
    {n for a in GLOBAL_OPTIONS for n in a.names}
    | {n for c in COMMANDS for a in c.args for n in a.names if n.startswith("-")}
    | {c.name for c in COMMANDS}
    | set(_VALUES)
    | {"-h", "--help", "--json", "-vv", "-cx", "--al", "--connect=x", "--all=1", "--stdio=1"}
)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=8))
def test_any_token_soup_agrees(argv: list[str]) -> None:
    _agrees(argv)
