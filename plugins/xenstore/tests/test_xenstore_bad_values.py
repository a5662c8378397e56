"""Regressions for what the fuzzing found (issue 12): bad daemon data and bad arguments end in
typed errors (ProtocolError / InvalidArgument), never ValueError, struct.error or a negative size."""

from __future__ import annotations

import math
import socket
import struct
import time
from collections.abc import Callable

import pytest

import virtkit
from virtkit_xenstore import Client, Driver, Op
from virtkit_xenstore._channel import socket_channel
from virtkit_xenstore._conn import Conn

HDR = struct.Struct("<IIII")


def answered(typ: int, payload: bytes, fn: Callable[[Client], object]) -> object:
    """``fn(client)`` when the daemon answers request 1 with ``payload``."""
    ours, theirs = socket.socketpair()
    xs = Client("/nonexistent/xenstored", timeout=2)
    xs._conn = Conn(socket_channel(ours, "test"), xs._on_event)
    try:
        theirs.sendall(HDR.pack(typ, 1, 0, len(payload)) + payload)
        theirs.shutdown(socket.SHUT_WR)
        return fn(xs)
    finally:
        xs.close()
        theirs.close()


def test_bad_permission_in_a_reply_is_a_protocol_error() -> None:
    with pytest.raises(virtkit.ProtocolError, match="bad permission"):
        answered(Op.GET_PERMS, b"r0\0rx\0", lambda xs: xs.get_perms("/a"))
    assert answered(Op.GET_PERMS, b"b0\0r0x10\0", lambda xs: xs.get_perms("/a")) == [(0, "b"), (16, "r")]


@pytest.mark.parametrize("reply", [b"-1\0", b"0\0", b"4294967296\0", b"1_0\0", b" 7\0", b"seven\0"])
def test_bad_transaction_id_is_a_protocol_error(reply: bytes) -> None:
    # a negative or over-u32 id used to reach struct.pack (struct.error) on the next request
    with pytest.raises(virtkit.ProtocolError, match="bad transaction id"):
        answered(Op.TRANSACTION_START, reply, lambda xs: xs.transaction().read("/a"))


def test_non_ascii_digit_child_is_not_a_domain() -> None:
    # '²'.isdigit() is True and int('²') raises ValueError
    ids = answered(Op.DIRECTORY, "0\0²\0007\0".encode(), lambda xs: Driver(xs).connect_list_domains())
    assert ids == [0, 7]


@pytest.mark.parametrize("value", [b"-5", b"1_0", b"\xb2", b"9" * 5000, b"0x10"])
def test_bad_number_in_a_node_is_a_protocol_error(value: bytes) -> None:
    dom = virtkit.DomainRef("d", None, 3)  # type: ignore[arg-type]
    with pytest.raises(virtkit.ProtocolError, match="not a non-negative number"):
        answered(Op.READ, value, lambda xs: Driver(xs).domain_get_max_memory(dom))


def test_lookup_by_a_malformed_uuid_string_is_invalid_argument() -> None:
    with pytest.raises(virtkit.InvalidArgument):
        answered(Op.DIRECTORY, b"", lambda xs: Driver(xs).domain_lookup_by_uuid("not-a-uuid"))  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, "1"])
def test_client_timeout_must_be_finite_and_positive(timeout: object) -> None:
    with pytest.raises(virtkit.InvalidArgument):
        Client("/x", timeout=timeout)  # type: ignore[arg-type]


def test_watch_get_timeouts(fake_xs: object) -> None:
    with Client(fake_xs.path, timeout=5) as xs:  # type: ignore[attr-defined]
        w = xs.watch("/w", token="t")
        assert w.get(5) is not None  # xenstored's initial event
        with pytest.raises(virtkit.InvalidArgument):
            w.get(math.nan)  # used to block forever
        t0 = time.monotonic()
        assert w.get(-1) is None and w.get(-math.inf) is None  # don't wait
        assert time.monotonic() - t0 < 1
        fake_xs.put("/w/x", "1")  # type: ignore[attr-defined]
        assert w.get(math.inf) is not None  # no limit (an event is coming)


def test_a_path_with_a_nul_is_a_typed_error() -> None:
    with Client("/tmp/xs\0sock", timeout=1) as xs, pytest.raises(virtkit.ConnectionClosed, match="cannot reach"):
        xs.read("/a")


def test_privileged_calls_check_their_arguments(fake_xs: object) -> None:
    with Client(fake_xs.path, timeout=5) as xs:  # type: ignore[attr-defined]
        for bad in ("12", -1, 1.5, True):
            with pytest.raises(virtkit.InvalidArgument):
                xs.introduce_domain(3, bad, 1)  # type: ignore[arg-type]
        with pytest.raises(virtkit.InvalidArgument):
            xs.control(b"print")  # type: ignore[arg-type]
        with pytest.raises(virtkit.InvalidArgument):
            xs.control("print", 7)  # type: ignore[arg-type]
        assert xs.control("print", "x") == b"echo:print\0x\0"


def test_watch_arguments_are_checked(fake_xs: object) -> None:
    with Client(fake_xs.path, timeout=5) as xs:  # type: ignore[attr-defined]
        for kw in ({"token": 5}, {"token": "a\0b"}, {"token": ""}, {"maxsize": "10"}):
            with pytest.raises(virtkit.InvalidArgument):
                xs.watch("/w", **kw)  # type: ignore[arg-type]
        for token in (None, "", "a\0b"):
            with pytest.raises(virtkit.InvalidArgument):
                xs.unwatch("/w", token)  # type: ignore[arg-type]
