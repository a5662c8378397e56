"""Fuzzing what crosses the remote link (issue 16): whatever bytes or values a far side or a
client sends, the other side answers with a value or a typed virtkit error, nothing else."""

from __future__ import annotations

import os
import struct
import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import virtkit
from virtkit import rpc
from virtkit._serve import _Server

FUZZ = settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["6695eb01-f6a4-8304-79aa-97f2502e193f", "web", "running"])
)
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["name", "uuid", "id", "state", "memory", "model", "major", "k", "op", "x"])
            | st.text(max_size=6),
            inner,
            max_size=5,
        )
    ),
    max_leaves=10,
)
TYPES = sorted({op.returns for op in virtkit.CATALOGUE.values() if not op.returns.startswith("Callable")})


@FUZZ
@given(st.sampled_from(TYPES), _json)
def test_decoding_any_value_is_a_value_or_a_protocol_error(type_name: str, data: Any) -> None:
    try:
        rpc.decode_value(type_name, data)
    except virtkit.ProtocolError:
        pass


@FUZZ
@given(_json)
def test_decoding_any_error_event_or_explanation_is_typed(data: Any) -> None:
    assert isinstance(rpc.decode_error(data), virtkit.VirtError)
    for decode in (rpc.decode_event, rpc.decode_explanation, rpc.served_operations):
        try:
            decode(data)
        except virtkit.ProtocolError:
            pass


_frames = st.lists(
    st.one_of(
        _json.map(lambda v: rpc.encode_frame({"k": "reply", "id": 1, "value": v})),
        st.binary(max_size=40),
        st.binary(max_size=20).map(lambda b: struct.pack(">I", len(b)) + b),
        st.integers(0, 2**32 - 1).map(lambda n: struct.pack(">I", n)),
    ),
    max_size=5,
)


@FUZZ
@given(_frames, st.integers(1, 7))
def test_any_byte_stream_gives_messages_or_a_protocol_error(chunks: list[bytes], step: int) -> None:
    stream = b"".join(chunks)
    reader = rpc.FrameReader()
    try:
        for i in range(0, len(stream), step):
            for msg in reader.feed(stream[i : i + step]):
                assert isinstance(msg, dict) and isinstance(msg["k"], str)
    except virtkit.ProtocolError:
        pass


class _Drain:
    """A server without its loop: messages go in through handle(), replies out through a pipe."""

    def __init__(self) -> None:
        r, w = os.pipe()
        self.rfd = r
        self.server = _Server(os.open(os.devnull, os.O_RDONLY), w, "test:///default", False)
        self.reader = rpc.FrameReader()
        assert self.server.handle({"k": "hello", "proto": rpc.PROTOCOL, "timeout": 5})
        self.replies()

    def replies(self) -> list[dict[str, Any]]:
        os.set_blocking(self.rfd, False)
        out: list[dict[str, Any]] = []
        while True:
            try:
                data = os.read(self.rfd, 1 << 16)
            except BlockingIOError:
                return out
            out += self.reader.feed(data)


_drain: _Drain | None = None
_lock = threading.Lock()

_ops = st.sampled_from([*virtkit.CATALOGUE, "no_such_op", ""]) | st.text(max_size=8)
_calls = st.fixed_dictionaries(
    {"k": st.just("call"), "id": st.integers(1, 1000), "op": _ops, "args": st.lists(_json, max_size=3), "flags": _leaf}
)


@FUZZ
@given(_calls)
def test_the_server_answers_any_call_with_a_reply_or_a_typed_error(msg: dict[str, Any]) -> None:
    global _drain
    with _lock:
        if _drain is None:
            _drain = _Drain()
        d = _drain
        if msg["op"] == "connect_domain_event_register":
            msg["op"] = "connect_get_type"  # a subscription would outlive the example
        d.server.handle(msg)
        (reply,) = d.replies()
        assert reply["id"] == msg["id"]
        if reply["k"] == "error":
            cls = getattr(virtkit, reply["error"]["class"])
            assert issubclass(cls, virtkit.VirtError) and cls is not virtkit.DriverError, reply
        else:
            assert reply["k"] == "reply"
