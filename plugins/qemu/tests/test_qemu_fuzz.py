"""Fuzzed QMP and relay replies (issue 12). qemu.qmp parses QMP itself; what the plugin parses is
fuzzed here: the ``return`` values it reads (query-status, query-balloon, query-cpus-fast), the
relay's batch replies, lines on the command link and on the event connection, and, on the relay's
side, its clients' requests. Every failure is a virtkit.VirtError, nothing else escapes, and no
call outlives its deadline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import virtkit
from virtkit_qemu._qmp import CommandLink, RelayClient, RelayMissing, batch_results
from virtkit_qemu._relay import Relay
from virtkit_qemu._replies import balloon_kib, status_of, vcpu_threads

FUZZ = settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
INFO = (("query-status", None), ("query-balloon", None), ("query-cpus-fast", None))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.sampled_from(["running", "paused", "shutdown", "", "thread-id", "actual", "status", "return"]),
)
_keys = st.sampled_from(["status", "actual", "thread-id", "id", "return", "error", "class", "desc", "x"])
_flat = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(_keys, scalars, max_size=3))
json_values = st.one_of(_flat, st.lists(_flat, max_size=3), st.dictionaries(_keys, _flat, max_size=3))
# the right shapes with wrong values, and the wrong shapes
statuses = st.one_of(json_values, st.fixed_dictionaries({"status": json_values}))
balloons = st.one_of(json_values, st.fixed_dictionaries({"actual": json_values}))
cpus = st.one_of(
    json_values, st.lists(st.one_of(json_values, st.fixed_dictionaries({"thread-id": json_values})), max_size=4)
)
results = st.one_of(
    json_values,
    st.fixed_dictionaries({"return": json_values}),
    st.fixed_dictionaries({"error": json_values | st.fixed_dictionaries({"class": scalars, "desc": scalars})}),
)
batch_replies = st.one_of(
    json_values,
    st.fixed_dictionaries({"id": st.one_of(st.just(1), scalars), "results": st.one_of(json_values, st.lists(results))}),
    st.tuples(statuses, balloons, cpus).map(lambda t: {"id": 1, "results": [{"return": v} for v in t]}),
)


def _line(value: object) -> bytes:
    return json.dumps(value).encode() + b"\n"


lines = st.one_of(
    batch_replies.map(_line),
    st.binary(max_size=60),
    st.just(b"[" * 5000 + b"]" * 5000 + b"\n"),  # deep enough to exhaust the parser's stack
    st.just(b'{"id": 1, "results": ' + b"9" * 5000 + b"}\n"),  # an int of too many digits
)


# -- what the driver reads from QMP ---------------------------------------------------------------


@FUZZ
@given(statuses, balloons, cpus)
@example({"status": "running"}, {"actual": 1 << 27}, [{"thread-id": 42}, {"cpu-index": 1}])
@example({"status": 1}, {"actual": True}, [{"thread-id": -1}])
def test_reply_values_are_read_or_refused_as_protocol_errors(status: Any, balloon: Any, cpu_list: Any) -> None:
    try:
        assert isinstance(status_of(status), str) and status_of(status)
    except virtkit.ProtocolError:
        pass
    try:
        assert balloon_kib(balloon) >= 0
    except virtkit.ProtocolError:
        pass
    try:
        count, tids = vcpu_threads(cpu_list)
        assert count == len(cpu_list) and all(isinstance(t, int) and t > 0 for t in tids)
    except virtkit.ProtocolError:
        pass


@FUZZ
@given(batch_replies)
def test_batch_replies_give_results_or_a_typed_error(reply: Any) -> None:
    try:
        out = batch_results(INFO, reply)
    except virtkit.VirtError:
        return
    assert len(out) == len(INFO)


# -- the command link: lines from a relay ---------------------------------------------------------


@FUZZ
@given(st.lists(lines, min_size=1, max_size=3))
def test_command_link_ends_typed_and_in_time(reply_lines: list[bytes]) -> None:
    """Whatever a relay answers (then it hangs up), the command ends with results or a typed
    error, within its deadline."""
    ours, theirs = socket.socketpair()
    link = CommandLink("/nonexistent/relay.sock", 2.0)
    link._connect = lambda until: ours  # type: ignore[method-assign] # greeted already
    try:
        theirs.sendall(b"".join(reply_lines))
        theirs.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        try:
            out = link.execute_many(INFO, time.monotonic() + 2.0)
        except virtkit.VirtError:
            pass
        else:
            assert len(out) == len(INFO)
        assert time.monotonic() - t0 <= 2.0 * 1.1 + 0.5
    finally:
        link.close()
        ours.close()
        theirs.close()


# -- the event connection: lines from a relay --------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@FUZZ
@given(data=st.lists(lines, max_size=4))
def test_event_connection_reader_never_raises(loop: asyncio.AbstractEventLoop, data: list[bytes]) -> None:
    seen: list[tuple[object, object]] = []

    async def go() -> None:
        client = RelayClient("/nonexistent/relay.sock", 2.0)
        client._on_event = lambda kind, detail: seen.append((kind, detail))
        pending = loop.create_future()
        client._pending[7] = pending
        reader = asyncio.StreamReader(limit=1 << 16)
        reader.feed_data(b"".join(data))
        reader.feed_eof()
        await asyncio.wait_for(client._read(reader), 2.0)  # ends at EOF (or at the first bad line)
        assert client.closed
        if not pending.done() or pending.exception() is not None:
            assert isinstance(pending.exception(), RelayMissing)

    loop.run_until_complete(go())
    assert all(isinstance(k, str) and isinstance(d, str) for k, d in seen)


# -- the relay's side: its clients' requests ---------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.transport = self

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def close(self) -> None:
        pass


class _QMP:
    async def execute(self, cmd: str, args: object = None) -> object:
        return {"ran": cmd}


requests = st.one_of(
    json_values,
    st.fixed_dictionaries({"id": scalars, "execute": json_values, "arguments": json_values}),
    st.fixed_dictionaries({"id": scalars, "batch": json_values | st.lists(st.lists(json_values, max_size=3))}),
    st.fixed_dictionaries({"id": scalars, "listen": json_values}),
)


@FUZZ
@given(requests)
@example({"id": 3, "batch": [["query-status", None], [1, 2]]})
def test_relay_answers_every_request_with_one_line(loop: asyncio.AbstractEventLoop, msg: Any) -> None:
    relay = Relay(None, _QMP(), 2.0, "restart")  # type: ignore[arg-type]
    writer = _Writer()
    loop.run_until_complete(asyncio.wait_for(relay.request(msg, writer), 2.0))  # type: ignore[arg-type]
    assert len(writer.out) == 1
    reply = json.loads(writer.out[0])
    assert "return" in reply or "error" in reply or isinstance(reply.get("results"), list)


# -- a direct QMP connection: qemu.qmp parses, the plugin maps its errors -----------------------

QMP_VERSION = {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}
QMP_HELLO = _line({"QMP": {"version": QMP_VERSION, "capabilities": []}})
qmp_replies = st.one_of(
    st.fixed_dictionaries({"return": json_values, "id": st.one_of(st.just("__qmp#00000"), scalars)}),
    st.fixed_dictionaries({"error": json_values, "id": st.just("__qmp#00000")}),
    st.fixed_dictionaries(
        {"error": st.fixed_dictionaries({"class": scalars, "desc": scalars}), "id": st.just("__qmp#00000")}
    ),
    st.fixed_dictionaries({"event": scalars, "data": json_values, "timestamp": json_values}),
    json_values,
).map(_line)


@FUZZ
@given(
    hello=st.one_of(st.just(QMP_HELLO), lines),
    negotiated=st.one_of(st.just(_line({"return": {}})), qmp_replies, lines),
    replies=st.lists(st.one_of(qmp_replies, lines), max_size=3),
)
# found by this test: qemu.qmp's connect raised AssertionError, its disconnect UnicodeDecodeError
@example(hello=QMP_HELLO, negotiated=_line({"return": {}}), replies=[b"\x80"])
def test_direct_qmp_ends_typed_and_in_time(
    loop: asyncio.AbstractEventLoop, hello: bytes, negotiated: bytes, replies: list[bytes]
) -> None:
    """Whatever a monitor says after connecting (then it hangs up), a direct command ends with
    its result or a typed error, within its deadline."""
    from virtkit_qemu._qmp import Loop

    ours, theirs = socket.socketpair()
    theirs.sendall(hello + negotiated + b"".join(replies))
    theirs.shutdown(socket.SHUT_WR)
    direct = Loop.execute_direct  # a coroutine function: run on this test's loop, no thread
    fake = Loop.__new__(Loop)
    fake.timeout = 2.0
    t0 = time.monotonic()
    try:
        loop.run_until_complete(direct(fake, ours, (("query-status", None),), time.monotonic() + 2.0))
    except virtkit.VirtError:
        pass
    finally:
        ours.close()
        theirs.close()
    assert time.monotonic() - t0 <= 2.0 * 1.1 + 0.5
