"""The plain command lines, read without argparse: a cold start's argument handling.

``argparse`` (with the ``gettext`` and ``locale`` it loads, and the parser it builds) is a
tenth of a cold ``virtkit list`` (bench/RESULTS.md). Most command lines are plain: known global
options, one command, that command's options spelled out in full, values that do not start
with ``-``, positionals in one run. :func:`read_plain` reads those from the command table, as
argparse would, into a namespace with the same attributes. For anything else it returns None
and argparse reads the line: help, ``--version``, abbreviations, ``-vv``, ``-cURI``, ``--``,
a value argparse would refuse, a missing or extra argument. Every error and help message
is therefore argparse's. tests/test_cli_quick.py checks that both read every line this module
accepts the same way.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence

from ._cli_table import BY_NAME, GLOBAL_OPTIONS, JSON_OPTION, SUPPRESS

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any

    from ._cli_table import Arg

__all__ = ["Namespace", "read_plain"]

# The add_argument options this reader follows; an argument with any other option (const,
# a nargs it does not know, ...) makes its command argparse's alone.
_KNOWN = frozenset({"action", "choices", "default", "dest", "help", "metavar", "nargs", "required", "type", "version"})
_ACTIONS = frozenset({"store", "store_true", "append", "count", "version"})
_TAKES_VALUE = frozenset({"store", "append"})


class Namespace(types.SimpleNamespace):
    """What ``argparse.Namespace`` is to the commands: attributes, ``in``, and ``==`` (also
    against an ``argparse.Namespace`` with the same attributes)."""

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __eq__(self, other: object) -> bool:
        argparse = sys.modules.get("argparse")
        if isinstance(other, Namespace) or (argparse is not None and isinstance(other, argparse.Namespace)):
            return vars(self) == vars(other)
        return NotImplemented

    __hash__ = None


class _Spec:
    """One argument as argparse reads it."""

    __slots__ = ("action", "choices", "default", "dest", "nargs", "positional", "required", "type")

    def __init__(self, a: Arg) -> None:
        o = a.options
        self.positional = not a.names[0].startswith("-")
        self.action: str = o.get("action", "store")
        self.nargs = o.get("nargs")
        self.type = o.get("type")
        self.choices = o.get("choices")
        self.required = bool(o.get("required", self.positional and self.nargs not in ("?", "*")))
        self.dest: str = o.get("dest") or _dest(a.names)
        default = o.get("default")
        if default is None and self.action == "store_true":
            default = False
        self.default = default

    def supported(self) -> bool:
        if self.action not in _ACTIONS:
            return False
        if self.positional:
            return self.action == "store" and self.nargs in (None, "?", "*") and not isinstance(self.default, str)
        return self.nargs is None and not (self.type is not None and isinstance(self.default, str))

    def convert(self, text: str) -> tuple[bool, object]:
        """(True, value) as argparse would store it, or (False, None) where argparse would refuse."""
        value: object = text
        if self.type is not None:
            try:
                value = self.type(text)
            except Exception:  # noqa: BLE001 - argparse reads it again: reports it, or raises as it does
                return False, None
        if self.choices is not None and value not in self.choices:
            return False, None
        return True, value


def _dest(names: tuple[str, ...]) -> str:
    """argparse's default dest: the first long option (else the first one) without dashes."""
    if not names[0].startswith("-"):
        return names[0]
    long = next((n for n in names if n.startswith("--")), names[0])
    return long.lstrip("-").replace("-", "_")


class _Parser:
    """The options and positionals of one parser (the global one, or one command's)."""

    __slots__ = ("ok", "options", "positionals", "specs")

    def __init__(self, args: Sequence[Arg]) -> None:
        self.specs = [_Spec(a) for a in args]
        self.ok = all(set(a.options) <= _KNOWN for a in args) and all(s.supported() for s in self.specs)
        self.options = {n: s for a, s in zip(args, self.specs, strict=True) if not s.positional for n in a.names}
        self.positionals = [s for s in self.specs if s.positional]

    def defaults(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in self.specs:
            if s.action != "version" and s.default != SUPPRESS:
                out[s.dest] = s.default
        return out

    def missing(self, seen: set[str]) -> bool:
        """Whether a required option was not given (argparse names it)."""
        return any(s.required and not s.positional and s.dest not in seen for s in self.specs)

    def option(self, argv: Sequence[str], i: int, ns: dict[str, Any], seen: set[str]) -> int:
        """Store the option at ``argv[i]``; the index after it, or -1 where argparse should read."""
        word = argv[i]
        spec = self.options.get(word)
        value: str | None = None
        if spec is None and word.startswith("--") and "=" in word:
            name, _, value = word.partition("=")
            spec = self.options.get(name)
            if spec is None or spec.action not in _TAKES_VALUE:
                return -1
        if spec is None or spec.action == "version" or value == "--":  # argparse drops a '--' value
            return -1
        i += 1
        if spec.action in _TAKES_VALUE and value is None:
            if i == len(argv) or argv[i].startswith("-"):
                return -1
            value, i = argv[i], i + 1
        seen.add(spec.dest)
        if spec.action == "store_true":
            ns[spec.dest] = True
        elif spec.action == "count":
            ns[spec.dest] = (ns.get(spec.dest) or 0) + 1
        else:
            ok, converted = spec.convert(value or "")
            if not ok:
                return -1
            ns[spec.dest] = [*(ns.get(spec.dest) or ()), converted] if spec.action == "append" else converted
        return i

    def assign(self, words: list[str], ns: dict[str, Any]) -> bool:
        """Give the run of positional words to the positionals, greedily, as argparse's pattern
        match does; False where argparse would refuse (a word too few or too many)."""
        left = len(words)
        for n, spec in enumerate(self.positionals):
            later = sum(1 for s in self.positionals[n + 1 :] if s.required)
            if spec.nargs is None:
                take = 1
            elif spec.nargs == "?":
                take = min(1, left - later)
            else:
                take = left - later
            if take < 0 or (spec.nargs is None and left < 1):
                return False
            mine, words, left = words[:take], words[take:], left - take
            if not mine:  # argparse: '?' gives its default, '*' its default or []
                ns[spec.dest] = spec.default if spec.nargs == "?" or spec.default is not None else []
                continue
            values = []
            for word in mine:
                ok, converted = spec.convert(word)
                if not ok:
                    return False
                values.append(converted)
            ns[spec.dest] = values if spec.nargs == "*" else values[0]
        return left == 0


_GLOBAL = _Parser(GLOBAL_OPTIONS)
_COMMANDS: dict[str, _Parser] = {}


def read_plain(argv: Sequence[str]) -> Namespace | None:
    """argparse's namespace for a plain command line, or None: then argparse reads it."""
    if not _GLOBAL.ok:
        return None
    ns = _GLOBAL.defaults()
    ns["command"] = None
    seen: set[str] = set()
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i = _GLOBAL.option(argv, i, ns, seen)
        if i < 0:
            return None
    if i == len(argv) or argv[i] not in BY_NAME or _GLOBAL.missing(seen):
        return None
    name = argv[i]
    ns["command"] = name
    parser = _COMMANDS.get(name)
    if parser is None:
        cmd = BY_NAME[name]
        parser = _COMMANDS[name] = _Parser((JSON_OPTION, *cmd.args))
    if not parser.ok:
        return None
    sub = parser.defaults()
    seen.clear()
    words: list[str] = []
    ended = False  # the positionals' run is over once an option follows it
    i += 1
    while i < len(argv):
        if argv[i].startswith("-"):
            i = parser.option(argv, i, sub, seen)
            if i < 0:
                return None
            ended = ended or bool(words)
        elif ended:
            return None
        else:
            words.append(argv[i])
            i += 1
    if not parser.assign(words, sub):
        return None
    if parser.missing(seen):
        return None
    ns.update(sub)
    return Namespace(**ns)
