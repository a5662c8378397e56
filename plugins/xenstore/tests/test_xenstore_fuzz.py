"""Fuzzed xenstore replies (issue 12): random and mutated packets (the ocaml-xenstore vectors as
seeds) fed to the wire decoder, the reply parsers, a client and the driver. Every failure is a
virtkit.VirtError, nothing else escapes, and no call outlives its deadline.

The client and driver targets get their replies over a socketpair, written before the call and
followed by EOF, so each example runs in about a millisecond; what a daemon that stops answering
does to the deadlines is test_xenstore_deadlines.py's concern.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import virtkit
from virtkit_xenstore import Client, Driver, Op, Perm, XenStoreError
from virtkit_xenstore._channel import socket_channel
from virtkit_xenstore._conn import Conn
from virtkit_xenstore._wire import (
    REPLY_MAX,
    REPLY_TYPES,
    decimal,
    error_from_reply,
    parse_perms,
    parse_tx_id,
    split_packets,
)

HDR = struct.Struct("<IIII")
FUZZ = settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
TIMEOUT = 2.0

VECTORS = json.loads((Path(__file__).parent / "data" / "ocaml-xenstore-packet-vectors.json").read_text())["vectors"]
SEED_WIRES = [bytes.fromhex(v["wire_hex"]) for v in VECTORS if v["direction"] == "response"]
SEED_PAYLOADS = [bytes.fromhex(v["payload_hex"]) for v in VECTORS] + [
    b"",
    b"\0",
    b"OK\0",
    b"ENOENT\0",
    b"E2BIG\0",
    b"EAGAIN\0",
    b"EWHAT\0",
    b"T\0",
    b"F\0",
    b"7\0",
    b"-1\0",
    b"1_0\0",
    b"4294967296\0",
    b"0\0",
    b"\xb2\0",
    "²".encode() + b"\0",
    b"r0\0b5\0",
    b"x0\0",
    b"r\0",
    b"r99999\0",
    b"0\0a\0b\0\0",
    b"1\0child\0",
    b"/vm/00000000-0000-0000-0000-000000000001\0",
    b"/vm/not-a-uuid",
    b"-5",
    b"99999999999999999999999",
    b"1 2",
    b"0\0" + b"7" * 5000,
]

u32 = st.integers(0, 0xFFFFFFFF)
payloads = st.one_of(st.sampled_from(SEED_PAYLOADS), st.binary(max_size=80))


@st.composite
def mutated(draw: st.DrawFn, wire: bytes) -> bytes:
    """``wire`` with a few bytes changed, cut, inserted, or a header field replaced."""
    data = bytearray(wire)
    for _ in range(draw(st.integers(0, 4))):
        how = draw(st.sampled_from(["set", "cut", "insert", "field"]))
        if how == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif how == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif how == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif how == "field" and len(data) >= 16:
            field = draw(st.integers(0, 3))
            data[field * 4 : field * 4 + 4] = struct.pack("<I", draw(u32))
    return bytes(data)


streams = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(SEED_WIRES), min_size=1, max_size=4).map(b"".join).flatmap(mutated),
    st.builds(lambda t, r, x, p: HDR.pack(t, r, x, len(p)) + p, u32, u32, u32, payloads),
)


# -- the decoder and the parsers -----------------------------------------------------------------


@FUZZ
@given(streams)
@example(HDR.pack(2, 1, 0, REPLY_MAX + 1))
@example(HDR.pack(77, 1, 0, 0))
def test_split_packets_never_raises_and_accounts_for_every_byte(data: bytes) -> None:
    packets, used, problem = split_packets(data)
    assert b"".join(HDR.pack(t, r, x, len(p)) + p for t, r, x, p in packets) == data[:used]
    for typ, _rid, _tx, payload in packets:
        assert typ in REPLY_TYPES and len(payload) <= REPLY_MAX
    rest = data[used:]
    if problem is None and len(rest) >= 16:  # what is left is an incomplete but plausible packet
        typ, _rid, _tx, ln = HDR.unpack_from(rest)
        assert typ in REPLY_TYPES and ln <= REPLY_MAX and len(rest) < 16 + ln
    if problem is not None:
        assert len(rest) >= 16


@FUZZ
@given(payloads, u32, st.one_of(st.none(), st.just("/a/b")))
def test_error_replies_always_give_a_xenstore_error(payload: bytes, op: int, path: str | None) -> None:
    err = error_from_reply(payload, op, path)
    assert isinstance(err, XenStoreError) and isinstance(err, virtkit.VirtError)
    assert err.message


@FUZZ
@given(payloads)
@example(b"r0\0b5\0n0x10\0")
def test_perms_and_transaction_ids_parse_or_raise_protocol_error(payload: bytes) -> None:
    try:
        perms = parse_perms(payload)
    except virtkit.ProtocolError:
        pass
    else:
        assert all(isinstance(p, Perm) and 0 <= p.domid <= 0xFFFF and p.access in "rwbn" for p in perms)
    try:
        tx_id = parse_tx_id(payload)
    except virtkit.ProtocolError:
        pass
    else:
        assert 0 < tx_id <= 0xFFFFFFFF


@FUZZ
@given(st.one_of(st.text(max_size=24), st.binary(max_size=24)), st.integers(1, 20))
@example("١٢", 5)  # Arabic-Indic digits: str.isdigit() says yes, [0-9] says no
@example("12\n", 5)
def test_decimal_is_the_pattern_it_replaced(text: str | bytes, digits: int) -> None:
    pattern = rf"[0-9]{{1,{digits}}}\Z"
    want = re.match(pattern.encode() if isinstance(text, bytes) else pattern, text) is not None
    assert decimal(text, digits) is want


@FUZZ
@given(st.one_of(payloads, st.from_regex(rb"\A[0-9]{1,11}\0{0,2}\Z")))
def test_transaction_ids_parse_as_the_pattern_did(payload: bytes) -> None:
    """parse_tx_id without its pattern accepts what ``[0-9]{1,10}\\0?\\Z`` matched, no more."""
    old = int(payload.rstrip(b"\0") or b"0") if re.match(rb"[0-9]{1,10}\0?\Z", payload) else 0
    try:
        got = parse_tx_id(payload)
    except virtkit.ProtocolError:
        got = 0
    assert got == (old if 0 < old <= 0xFFFFFFFF else 0)


# -- a client and the driver over a socketpair --------------------------------------------------


@st.composite
def replies(draw: st.DrawFn, types: tuple[int, ...]) -> bytes:
    """Replies to requests 1..n (as a fresh connection numbers them), each header field and
    the payload either right for the request or fuzzed, plus now and then stray bytes."""
    out = b""
    for i in range(draw(st.integers(1, 6))):
        want = types[min(i, len(types) - 1)]
        typ = draw(st.one_of(st.just(want), st.sampled_from([int(t) for t in Op]), u32))
        rid = draw(st.one_of(st.just(i + 1), st.integers(0, 8), u32))
        tx = draw(st.one_of(st.just(0), st.integers(0, 8), u32))
        payload = draw(payloads)
        ln = draw(st.one_of(st.just(len(payload)), st.integers(0, 100), u32))
        out += HDR.pack(typ, rid, tx, ln) + payload
    if draw(st.integers(0, 9)) == 0:
        out += draw(st.binary(min_size=1, max_size=20))
    return out


def run_over_socketpair(data: bytes, fn: Callable[[Client], object]) -> None:
    """``fn(client)`` against a daemon that has already written ``data`` and then hung up."""
    ours, theirs = socket.socketpair()
    client = Client("/nonexistent/xenstored", timeout=TIMEOUT)  # reconnecting fails at once
    client._conn = Conn(socket_channel(ours, "fuzz"), client._on_event)
    try:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        try:
            fn(client)
        except virtkit.VirtError:
            pass  # anything else fails the test with its traceback
        elapsed = time.monotonic() - t0
        assert elapsed <= TIMEOUT * 1.1 + 0.5, f"{elapsed:.2f} s"
    finally:
        client.close()
        theirs.close()


def _transaction(xs: Client) -> object:
    with xs.transaction() as tx:
        return tx.read("/a")


CLIENT_OPS: dict[str, tuple[tuple[int, ...], Callable[[Client], object]]] = {
    "read": ((Op.READ,), lambda xs: xs.read("/a")),
    "read_many": ((Op.READ,), lambda xs: xs.read_many(["/a", "/b", "/c"])),
    "directory": ((Op.DIRECTORY, Op.DIRECTORY_PART), lambda xs: xs.directory("/a")),
    "get_perms": ((Op.GET_PERMS,), lambda xs: xs.get_perms("/a")),
    "transaction": ((Op.TRANSACTION_START, Op.READ, Op.TRANSACTION_END), _transaction),
    "get_domain_path": ((Op.GET_DOMAIN_PATH,), lambda xs: xs.get_domain_path(3)),
    "is_domain_introduced": ((Op.IS_DOMAIN_INTRODUCED,), lambda xs: xs.is_domain_introduced(3)),
    "write": ((Op.WRITE,), lambda xs: xs.write("/a", b"v")),
    "watch": ((Op.WATCH, Op.WATCH_EVENT), lambda xs: xs.watch("/a").get(0)),
}


@FUZZ
@given(st.sampled_from(sorted(CLIENT_OPS)).flatmap(lambda op: st.tuples(st.just(op), replies(CLIENT_OPS[op][0]))))
def test_client_calls_end_typed_and_in_time(case: tuple[str, bytes]) -> None:
    op, data = case
    run_over_socketpair(data, CLIENT_OPS[op][1])


def _vcpus(drv: Driver) -> object:
    return drv.domain_get_vcpus(virtkit.DomainRef("d", None, 3))  # type: ignore[arg-type]


DRIVER_OPS: dict[str, tuple[tuple[int, ...], Callable[[Driver], object]]] = {
    "list": ((Op.DIRECTORY,), lambda d: d.connect_list_domains()),
    "lookup_by_id": ((Op.READ,), lambda d: d.domain_lookup_by_id(3)),
    "lookup_by_name": ((Op.DIRECTORY, Op.READ), lambda d: d.domain_lookup_by_name("d")),
    "info": ((Op.READ,), lambda d: d.domain_get_info(virtkit.DomainRef("d", None, 3))),  # type: ignore[arg-type]
    "vcpus": ((Op.DIRECTORY, Op.READ), _vcpus),
    "os_type": ((Op.READ,), lambda d: d.domain_get_os_type(virtkit.DomainRef("d", None, 3))),  # type: ignore[arg-type]
}


@FUZZ
@given(st.sampled_from(sorted(DRIVER_OPS)).flatmap(lambda op: st.tuples(st.just(op), replies(DRIVER_OPS[op][0]))))
def test_driver_operations_end_typed_and_in_time(case: tuple[str, bytes]) -> None:
    op, data = case
    fn: Callable[[Driver], object] = DRIVER_OPS[op][1]

    def call(xs: Client) -> Any:
        result = fn(Driver(xs))
        # what the driver returns from daemon data stays in range
        if isinstance(result, virtkit.DomainInfo):
            assert result.memory >= 0 and result.max_memory >= 0 and result.vcpus >= 0
        elif isinstance(result, virtkit.DomainRef):
            assert result.id is None or result.id >= 0
        elif isinstance(result, list):
            assert all(isinstance(i, int) and i >= 0 for i in result)
        return result

    run_over_socketpair(data, call)
