"""The remote protocol, for remote plugins: ``import virtkit.rpc`` (not imported by ``virtkit``).

What a client of ``virtkit serve --stdio`` needs: framing with a size cap, the values of the
catalogue's types, typed errors and events, the far side's composition. The wire format is
described in ``virtkit._rpc``; the server is ``virtkit serve``.
"""

from __future__ import annotations

from ._rpc import (
    MAX_FRAME,
    PROTOCOL,
    FrameReader,
    decode_error,
    decode_event,
    decode_explanation,
    decode_value,
    encode_error,
    encode_event,
    encode_frame,
    encode_value,
    served_operations,
)

__all__ = [
    "MAX_FRAME",
    "PROTOCOL",
    "FrameReader",
    "decode_error",
    "decode_event",
    "decode_explanation",
    "decode_value",
    "encode_error",
    "encode_event",
    "encode_frame",
    "encode_value",
    "served_operations",
]
