"""Numbers from xend, bounded: a field a client can't use is a ProtocolError naming it.

xend writes integers bare, sometimes quoted (Python longs) or as floats (``(vcpus 1.0)``); a
broken or hostile peer can write ``1e999``, ``-9`` or five thousand digits, which int() and
float() turn into OverflowError, ValueError or a number no caller should see.
"""

from __future__ import annotations

import math

import virtkit
from virtkit import ProtocolError

__all__ = ["MAX_CPU_SECONDS", "MAX_DIGITS", "MAX_DOMID", "MAX_MIB", "number", "real"]

#: No number xend sends needs more characters (a 128-vcpu ``vcpu_avail`` has 39 digits); longer
#: text is refused before int() spends time on it or refuses it with ValueError.
MAX_DIGITS = 40
#: Xen's DOMID_FIRST_RESERVED - 1: ids above are reserved, never a domain's.
MAX_DOMID = 0x7FEF
MAX_MIB = virtkit.MAX_MEMORY_KIB >> 10
#: cpu_time in seconds whose nanoseconds still fit a signed 64-bit counter.
MAX_CPU_SECONDS = (2**63 - 1) / 1e9


def number(
    raw: str | None, what: str, *, high: int, default: int | None = None, digits: int = MAX_DIGITS
) -> int | None:
    """An integer field of xend's in 0..``high``: decimal, ``0x`` hex or an integral float (old xend
    wrote ``(vcpus 1.0)``); absent or empty gives ``default``; anything else is a ProtocolError."""
    if raw is None or raw == "":
        return default
    if len(raw) > digits:
        raise ProtocolError(f"xend {what} is not a sensible number: {raw[:20]!r}... ({len(raw)} characters)")
    try:
        n = int(raw, 16) if raw.startswith(("0x", "0X")) else int(raw)
    except ValueError:
        n = int(_finite(raw, what))
    if not 0 <= n <= high:
        top = high if high.bit_length() <= 64 else f"2**{high.bit_length()}-1"  # str() of a huge int raises
        raise ProtocolError(f"xend {what} is out of range (0..{top}): {raw[:40]!r}")
    return n


def real(raw: str | None, what: str, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A float field of xend's (seconds) in ``low``..``high``; absent or empty gives None."""
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_DIGITS:
        raise ProtocolError(f"xend {what} is not a sensible number: {raw[:20]!r}...")
    f = _finite(raw, what)
    if not low <= f <= high:
        raise ProtocolError(f"xend {what} is out of range: {raw!r}")
    return f


def _finite(raw: str, what: str) -> float:
    try:
        f = float(raw)
    except ValueError:
        raise ProtocolError(f"xend {what} is not a number: {raw!r}") from None
    if not math.isfinite(f):
        raise ProtocolError(f"xend {what} is not finite: {raw!r}")
    return f
