"""How the CLI reads argument values: sizes (``512M``), timeouts, ``[OP=]PLUGIN``.

A timeout is read by argparse (a bad one is a usage error, exit 2); a size is read by the
command (a bad one is an ``InvalidArgument``, exit 1, as virsh does).
"""

from __future__ import annotations

import re

from ._errors import InvalidArgument
from ._input import MAX_TIMEOUT, check_memory, check_timeout

__all__ = ["event_seconds", "excludes", "op_plugin", "parse_size", "seconds"]

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
_SIZE = r"\s*([0-9]{1,30})\s*([A-Za-z]*)\s*\Z"  # compiled on first use (re's cache), not at start-up


def parse_size(text: str) -> int:
    """``512M``, ``1G``, ``2048`` (KiB, virsh's default) -> KiB, rounded up."""
    m = re.match(_SIZE, text)
    if not m or m.group(2).lower() not in _UNITS:
        shown = repr(text) if len(text) <= 40 else f"{text[:20]!r}...({len(text)} characters)"
        raise InvalidArgument(f"invalid size {shown} (expected a number with an optional unit: K, M, G, T, KiB, ...)")
    nbytes = int(m.group(1)) * _UNITS[m.group(2).lower()]
    kib = -(-nbytes // 1024)
    if kib <= 0:
        raise InvalidArgument(f"invalid size {text!r}: must be positive")
    return check_memory(kib, "size")


def seconds(text: str) -> float:
    """argparse type of ``--timeout``: a finite number of seconds above 0."""
    try:
        return check_timeout(float(text))
    except (ValueError, InvalidArgument):
        import argparse  # argparse reports it: a bad value is never read without it (_cli_quick)

        why = f"seconds above 0, at most {MAX_TIMEOUT:.0f}"
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: {why}") from None


def event_seconds(text: str) -> float:
    """``events --timeout``: seconds above 0, or ``inf`` to listen until interrupted."""
    if text.strip().lower() in ("inf", "infinity"):
        return float("inf")
    return seconds(text)


def op_plugin(text: str) -> tuple[str, str]:
    """``domain_get_info=xenstore`` -> (op, plugin); a bare ``xenstore`` means every op ("*")."""
    op, eq, plugin = text.partition("=")
    if not eq:
        op, plugin = "*", op
    if not op or not plugin:
        raise InvalidArgument(f"expected [OP=]PLUGIN, got {text!r}")
    return op, plugin


def excludes(items: list[str]) -> dict[str, list[str]]:
    """``--exclude`` values -> ``virtkit.open``'s ``exclude``: op -> plugins."""
    out: dict[str, list[str]] = {}
    for op, plugin in map(op_plugin, items):
        out.setdefault(op, []).append(plugin)
    return out
