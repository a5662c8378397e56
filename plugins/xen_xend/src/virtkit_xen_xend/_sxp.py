"""xend's S-expression dialect (``application/sxp``): a strict reader, a writer, and lookups.

The reader follows xend's ``sxp.Parser`` (Xen 4.1): whitespace `` \\t\\n\\v\\f\\r``, ``#`` comments,
strings in ``'`` or ``"`` with Python-style escapes, atoms that end at whitespace, ``#`` or any
of ``{}()<>[]!;``, several top-level expressions, Ctrl-D as end of input. Values are ``str``
(atoms and strings alike, as in xend) and ``list``.

Strict by default: anything malformed raises :class:`SxpError` (a ``virtkit.ProtocolError``)
carrying the offset, line and column, never a crash or a hang. A truncated HTTP body is an
unclosed list, so strictness is what detects it. ``lenient=True`` reproduces libvirt's tolerance
(virsexpr.c) that four of its own test fixtures rely on: missing closing parentheses at the end
of input are supplied, and text after the first complete expression is ignored.

The writer follows ``sxp.show``: bare atoms where xend writes them bare, otherwise a quoted
string a Python ``repr`` would give, with escapes this reader (and xend's) decodes, so
``parse_one(dumps(x)) == x`` for every tree of strings. One deliberate difference: the empty
string is written ``''`` (xend writes nothing, which reads back as no value at all).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from typing import TypeAlias, Union

from virtkit import ProtocolError

__all__ = [
    "MAX_DEPTH",
    "Sxp",
    "SxpError",
    "atomp",
    "child",
    "children",
    "dumps",
    "join_continuations",
    "lookup",
    "parse",
    "parse_one",
    "value",
]

Sxp: TypeAlias = Union[str, list["Sxp"]]  # noqa: UP007 - a recursive alias needs the string form

#: Real xend nests about six deep; a bound keeps hostile input from exhausting the stack anywhere.
MAX_DEPTH = 256


class SxpError(ProtocolError):
    """Malformed S-expression text; ``offset`` (0-based), ``line`` and ``column`` (1-based) say where."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        self.offset = offset
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        self.reason = message
        super().__init__(f"S-expression error at line {self.line}, column {self.column}: {message}")


# One alternation, scanned left to right: whitespace and comments (no group), '(' , ')',
# single- and double-quoted strings (unrolled loops: linear, no backtracking), atoms, and a
# one-character catch-all that turns anything else into a positioned error.
_TOKEN = re.compile(
    r"""
    [ \t\n\v\f\r]+
  | \#[^\n]*
  | (\()
  | (\))
  | '([^'\\]*(?:\\.[^'\\]*)*)'
  | "([^"\\]*(?:\\.[^"\\]*)*)"
  | ([!$-&*-~][^ \t\n\v\f\r#{}()<>\[\]!;]*)
  | (.)
    """,
    re.VERBOSE | re.DOTALL,
)
# The fast path: one capture per token (leading whitespace folded in), read with findall so no
# match objects are built; any doubt (an error, Ctrl-D) sends the text to the positioned scanner.
_FAST = re.compile(
    r"""[ \t\n\v\f\r]*(
    \( | \) | '[^'\\]*(?:\\.[^'\\]*)*' | "[^"\\]*(?:\\.[^"\\]*)*"
  | [!$-&*-~][^ \t\n\v\f\r#{}()<>\[\]!;]* | \#[^\n]* | .
    )""",
    re.VERBOSE | re.DOTALL,
)
_ATOM_START = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset("\"#'()")
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)", re.DOTALL)
_SIMPLE = {"a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
_EOT = "\x04"


def join_continuations(text: str) -> tuple[str, list[int]]:
    """Drop backslash-newline pairs (libvirt's test files use them) and say where they were.

    Returns the joined text and, for each removal, its offset in the joined text, which is what
    :func:`parse` needs to report errors at positions of the original text.
    """
    if "\\\n" not in text:
        return text, []
    parts = text.split("\\\n")
    removed: list[int] = []
    at = 0
    for part in parts[:-1]:
        at += len(part)
        removed.append(at)
    return "".join(parts), removed


class _BadEscape(Exception):
    def __init__(self, message: str, at: int) -> None:
        super().__init__(message)
        self.at = at


def _unescape(raw: str) -> str:
    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        simple = _SIMPLE.get(esc)
        if simple is not None:
            return simple
        if esc == "x":
            raise _BadEscape("\\x escape without hex digits", m.start())
        if esc[0] == "x":
            return chr(int(esc[1:], 16))
        if esc[0] in "01234567":
            code = int(esc, 8)
            if code > 0xFF:
                raise _BadEscape(f"octal escape \\{esc} out of range", m.start())
            return chr(code)
        # unknown escape: kept as written (xend keeps the backslash; we keep the character too)
        return m.group(0)

    return _ESCAPE.sub(one, raw)


def parse(
    text: str,
    *,
    lenient: bool = False,
    continuation: bool = False,
    max_depth: int = MAX_DEPTH,
) -> list[Sxp]:
    """Every top-level expression in ``text``.

    ``lenient``: libvirt's reading (see the module doc): only the first expression is read, and
    lists left open at the end are closed. ``continuation``: backslash-newline pairs are removed
    first (libvirt's test-file convention); error positions still refer to ``text``.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse() takes str, not {type(text).__name__}")
    if not lenient:
        fast = _parse_fast(join_continuations(text)[0] if continuation else text, max_depth)
        if fast is not None:
            return fast
    return _parse_scan(text, lenient=lenient, continuation=continuation, max_depth=max_depth)


class _Doubt(Exception):
    pass


def _parse_fast(text: str, max_depth: int) -> list[Sxp] | None:
    """Well-formed text, quickly; None when anything is off (the scanner then says what and where)."""
    out: list[Sxp] = []
    stack: list[list[Sxp]] = []
    cur = out
    try:
        for tok in _FAST.findall(text):
            c = tok[0]
            if c == "(":
                if len(stack) >= max_depth:
                    raise _Doubt
                new: list[Sxp] = []
                cur.append(new)
                stack.append(cur)
                cur = new
            elif c == ")":
                cur = stack.pop()  # IndexError at top level: a doubt
            elif c == "'" or c == '"':
                if len(tok) < 2:
                    raise _Doubt  # an unterminated string
                body = tok[1:-1]
                cur.append(_unescape(body) if "\\" in body else body)
            elif c in _ATOM_START:
                cur.append(tok)
            elif c != "#":
                raise _Doubt  # an invalid character, or Ctrl-D
    except (_Doubt, _BadEscape, IndexError):
        return None
    return None if stack else out


def _parse_scan(text: str, *, lenient: bool, continuation: bool, max_depth: int) -> list[Sxp]:
    """The positioned scanner: exact error offsets, and libvirt's lenient reading."""
    original = text
    removed: list[int] = []
    if continuation:
        text, removed = join_continuations(text)

    def fail(message: str, pos: int) -> SxpError:
        return SxpError(message, original, pos + 2 * bisect.bisect_right(removed, pos) if removed else pos)

    out: list[Sxp] = []
    stack: list[list[Sxp]] = []
    opened: list[int] = []  # offsets of the '(' still open, for messages
    cur = out
    for m in _TOKEN.finditer(text):
        kind = m.lastindex
        if kind is None:  # whitespace or comment
            continue
        if kind == 1:
            if len(stack) >= max_depth:
                raise fail(f"lists nested deeper than {max_depth}", m.start())
            new: list[Sxp] = []
            cur.append(new)
            stack.append(cur)
            opened.append(m.start())
            cur = new
            continue
        if kind == 2:
            if not stack:
                if lenient:
                    break
                raise fail("unexpected ')' with no list open", m.start())
            cur = stack.pop()
            opened.pop()
            if lenient and not stack:
                break
            continue
        if kind == 3 or kind == 4:
            raw = m.group(kind)
            if "\\" in raw:
                try:
                    raw = _unescape(raw)
                except _BadEscape as exc:
                    raise fail(str(exc), m.start() + 1 + exc.at) from None
            cur.append(raw)
        elif kind == 5:
            cur.append(m.group(5))
        else:
            ch = m.group(6)
            if ch == _EOT:
                if stack and not lenient:
                    raise fail("end of input (Ctrl-D) inside a list", m.start())
                break
            if ch in "'\"":
                raise fail(f"unterminated string (opening {ch} has no closing {ch})", m.start())
            raise fail(f"invalid character U+{ord(ch):04X}", m.start())
        if lenient and not stack:
            break
    if stack and not lenient:
        raise fail(
            f"unexpected end of input: {len(stack)} list(s) not closed (innermost opened at offset "
            f"{opened[-1] + 2 * bisect.bisect_right(removed, opened[-1])})",
            len(text),
        )
    return out


def parse_one(text: str, **kw: bool | int) -> Sxp:
    """Exactly one expression (lenient: the first one). An empty text is an error too."""
    values = parse(text, **kw)  # type: ignore[arg-type]
    if not values:
        raise SxpError("no S-expression in the text (empty or only whitespace/comments)", text, len(text))
    if len(values) > 1:
        raise SxpError(f"expected one S-expression, found {len(values)}", text, len(text))
    return values[0]


# -- writer ------------------------------------------------------------------------------------

_ATOM_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:/~")
_WRITE_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def atomp(s: str) -> bool:
    """Can ``s`` be written bare? xend's rule, restricted to ASCII and to non-empty strings."""
    return bool(s) and (s == "@" or all(c in _ATOM_CHARS for c in s))


def _quote(s: str) -> str:
    q = '"' if "'" in s and '"' not in s else "'"  # Python repr's choice of delimiter
    out = []
    for c in s:
        if c == q:
            out.append("\\" + c)
        elif c in _WRITE_ESCAPES:
            out.append(_WRITE_ESCAPES[c])
        elif c < " " or "\x7f" <= c <= "\x9f":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return q + "".join(out) + q


def _write(x: object, out: list[str], depth: int) -> None:
    if isinstance(x, str):
        out.append(x if atomp(x) else _quote(x))
    elif isinstance(x, list | tuple):
        if depth >= MAX_DEPTH:
            raise ValueError(f"S-expression nested deeper than {MAX_DEPTH}")
        out.append("(")
        for i, item in enumerate(x):
            if i:
                out.append(" ")
            _write(item, out, depth + 1)
        out.append(")")
    elif isinstance(x, bool):
        out.append("1" if x else "0")  # xend's form fields and flags are 0/1
    elif isinstance(x, int | float):
        out.append(str(x))
    else:
        raise TypeError(f"cannot write {type(x).__name__} as an S-expression")


def dumps(x: object) -> str:
    """``x`` (str, int, float, bool, or lists/tuples of them) in xend's one-line syntax."""
    out: list[str] = []
    _write(x, out, 0)
    return "".join(out)


# -- lookups (libvirt's sexpr_node style) ------------------------------------------------------


def children(x: Sxp, name: str | None = None) -> list[list[Sxp]]:
    """The sub-lists of element ``x`` (after its name), those named ``name`` if given."""
    if not isinstance(x, list):
        return []
    return [c for c in x[1:] if isinstance(c, list) and (name is None or (c and c[0] == name))]


def child(x: Sxp, name: str) -> list[Sxp] | None:
    """The first sub-list of ``x`` named ``name``."""
    if isinstance(x, list):
        for c in x[1:]:
            if isinstance(c, list) and c and c[0] == name:
                return c
    return None


def value(x: Sxp | None, name: str) -> str | None:
    """The first atom of ``(name VALUE)`` in ``x``; ``""`` for ``(name )``; None when absent."""
    if x is None:
        return None
    c = child(x, name)
    if c is None:
        return None
    for v in c[1:]:
        return v if isinstance(v, str) else None
    return ""


def lookup(x: Sxp | None, path: str | Sequence[str]) -> list[Sxp] | None:
    """``lookup(dom, "image/hvm")``: walk named sub-lists; None if any step is missing."""
    parts: Iterable[str] = path.split("/") if isinstance(path, str) else path
    node: Sxp | None = x
    for p in parts:
        if node is None:
            return None
        node = child(node, p)
    return node if isinstance(node, list) else None
