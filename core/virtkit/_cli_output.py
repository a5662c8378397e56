"""The CLI's output: text from a backend made safe for a terminal, virsh's tables and
``Key:  value`` blocks, and :func:`emit` (text, JSON, or one host's part of a fan-out)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["columns", "emit", "fields", "safe", "table"]

# Everything a backend names (domains, models, messages) is shown with control characters
# escaped, so a name cannot move the cursor, recolour the terminal or forge a line.
_UNSAFE = r"[\x00-\x1f\x7f-\x9f\u2028\u2029]"


def safe(text: object) -> str:
    shown = str(text)
    if shown.isprintable():  # none of _UNSAFE's characters is printable: nothing to escape
        return shown
    return re.sub(_UNSAFE, lambda m: repr(m.group())[1:-1], shown)


def table(rows: Sequence[Sequence[str]], header: Sequence[str], width: int | None = None) -> str:
    """virsh's table: a header, a rule, left-aligned columns three spaces apart.

    With ``width`` (the terminal's), a last column that would overflow it wraps at word
    boundaries, its further lines under its first: a long error message no longer stretches
    the rule and every row across the screen. It keeps at least 20 characters.
    """
    cells = [[safe(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    indent = 1 + sum(w + 3 for w in widths[:-1])  # where the last column starts
    if width is not None and indent + widths[-1] > width:
        widths[-1] = max(width - indent, 20, len(header[-1]))
    line = " " + "   ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    rule = len(line) + 2 if width is None else min(len(line) + 2, max(width, len(line.rstrip())))
    out = [line.rstrip(), "-" * rule]
    for r in cells:
        *first, last = r
        parts = _wrap(last, widths[-1])
        out.append((" " + "   ".join([*(c.ljust(w) for c, w in zip(first, widths, strict=False)), parts[0]])).rstrip())
        out += [" " * indent + part for part in parts[1:]]
    return "\n".join(out)


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    import textwrap  # only for a cell too wide: textwrap is not on the start-up path

    return textwrap.wrap(text, width, break_on_hyphens=False) or [text]


def columns(default: int = 100) -> int:
    """The terminal's width: ``COLUMNS`` if set (as shutil reads it), else the terminal's own,
    else ``default`` (output to a pipe or a file)."""
    try:
        return max(int(os.environ["COLUMNS"]), 1)
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return default


def fields(pairs: Sequence[tuple[str, object]], width: int = 16) -> str:
    """virsh's ``dominfo`` / ``nodeinfo`` block: ``Key:`` padded to ``width``, then the value."""
    return "\n".join(f"{k + ':':<{width}}{safe(v)}" for k, v in pairs)


def emit(args: argparse.Namespace, data: Any, text: Callable[[], str] | str) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``; with several hosts, hand ``data`` to
    the fan-out, which renders every host's together."""
    sink = getattr(args, "sink", None)
    if sink is not None:
        sink.append(data)
        return
    if args.json:
        import json  # only for --json: json is not on the start-up path

        print(json.dumps(data, indent=2, default=str))
    else:
        shown = text() if callable(text) else text
        print("\n".join(map(safe, shown.split("\n"))))
