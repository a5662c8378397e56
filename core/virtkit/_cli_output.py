"""The CLI's output: text from a backend made safe for a terminal, virsh's tables and
``Key:  value`` blocks, and :func:`emit` (text, JSON, or one host's part of a fan-out)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["emit", "fields", "safe", "table"]

# Everything a backend names (domains, models, messages) is shown with control characters
# escaped, so a name cannot move the cursor, recolour the terminal or forge a line.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def safe(text: object) -> str:
    return _UNSAFE.sub(lambda m: repr(m.group())[1:-1], str(text))


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """virsh's table: a header, a rule, left-aligned columns three spaces apart."""
    cells = [[safe(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    line = " " + "   ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line.rstrip(), "-" * (len(line) + 2)]
    out += [(" " + "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip() for r in cells]
    return "\n".join(out)


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
