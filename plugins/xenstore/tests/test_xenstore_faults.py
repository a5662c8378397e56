"""Faults a real daemon can't produce on demand, from a scripted peer: every one fails only the
calls in flight, with a typed error and within the timeout, and the next call reconnects.
(pyxs issue #11: an unknown req_id killed its reader thread and hung every caller forever.)"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import virtkit
from virtkit_xenstore import Client, Op, WatchEvent

HDR = struct.Struct("<IIII")


class Call:
    """Run one client call in a thread; ``wait()`` returns its result or raises its error."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def wait(self, timeout: float = 10) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "call hung"
        if self.error is not None:
            raise self.error
        return self.result


def start(
    peer: Any, client: Client, n: int = 1, path: str = "/a"
) -> tuple[list[Call], list[tuple[int, int, int, bytes]]]:
    calls = [Call(lambda: client.read(path))]
    peer.accept()
    pkts = [peer.recv_packet()]
    for _ in range(n - 1):
        calls.append(Call(lambda: client.read(path)))
        pkts.append(peer.recv_packet())
    return calls, pkts


def recovers(peer: Any, client: Client) -> None:
    """The next call opens a new connection and works."""
    c = Call(lambda: client.read("/ok"))
    peer.accept()
    typ, rid, tx, _ = peer.recv_packet()
    peer.reply(typ, rid, b"fine", tx)
    assert c.wait() == b"fine"


@pytest.fixture
def client(raw_peer: Any) -> Any:
    c = Client(raw_peer.path, timeout=5)
    yield c
    c.close()


def test_replies_out_of_order_are_matched_by_req_id(raw_peer: Any, client: Client) -> None:
    calls = [Call(lambda i=i: client.read(f"/k{i}")) for i in range(1)]
    raw_peer.accept()
    pkts = [raw_peer.recv_packet()]
    for i in range(1, 4):
        calls.append(Call(lambda i=i: client.read(f"/k{i}")))
        pkts.append(raw_peer.recv_packet())
    by_path = {p[3].rstrip(b"\0"): p for p in pkts}
    for i in reversed(range(4)):
        typ, rid, tx, _ = by_path[f"/k{i}".encode()]
        raw_peer.reply(typ, rid, f"v{i}".encode(), tx)
    assert [c.wait() for c in calls] == [f"v{i}".encode() for i in range(4)]


def test_watch_event_between_request_and_reply(raw_peer: Any, client: Client) -> None:
    w = Call(lambda: client.watch("/w", token="t"))
    raw_peer.accept()
    typ, rid, tx, _ = raw_peer.recv_packet()
    raw_peer.reply(typ, rid, b"OK\0")
    watch = w.wait()
    c = Call(lambda: client.read("/x"))
    typ, rid, tx, _ = raw_peer.recv_packet()
    raw_peer.reply(Op.WATCH_EVENT, 0, b"/w/child\0t\0")
    raw_peer.reply(typ, rid, b"value", tx)
    assert c.wait() == b"value"
    assert watch.get(5) == WatchEvent("/w/child", "t")  # type: ignore[attr-defined]


def test_unknown_req_id_fails_calls_in_flight_then_reconnects(raw_peer: Any, client: Client) -> None:
    calls, _pkts = start(raw_peer, client, n=3)
    raw_peer.reply(Op.READ, 0xDEAD, b"stray")
    for c in calls:
        with pytest.raises(virtkit.ProtocolError, match="unknown req_id"):
            c.wait()
    recovers(raw_peer, client)


def test_malformed_header_oversize_length(raw_peer: Any, client: Client) -> None:
    calls, pkts = start(raw_peer, client, n=2)
    raw_peer.send(HDR.pack(Op.READ, pkts[0][1], 0, 0x41414141) + b"x" * 10)
    for c in calls:
        with pytest.raises(virtkit.ProtocolError, match="malformed"):
            c.wait()
    recovers(raw_peer, client)


def test_oversize_reply_is_malformed(raw_peer: Any, client: Client) -> None:
    calls, pkts = start(raw_peer, client, n=2)
    typ, rid, tx, _ = pkts[0]
    raw_peer.reply(typ, rid, b"y" * 70_000, tx)
    for c in calls:
        with pytest.raises(virtkit.ProtocolError, match="len 70000"):
            c.wait()
    recovers(raw_peer, client)


def test_reply_over_payload_max_from_oxenstored_is_delivered(raw_peer: Any, client: Client) -> None:
    # oxenstored 4.17 answers DIRECTORY with more than 4096 bytes (seen in the lab): the length
    # is honest, so the listing reaches the caller and the connection stays.
    calls, pkts = start(raw_peer, client)
    typ, rid, tx, _ = pkts[0]
    raw_peer.reply(typ, rid, b"y" * 6800, tx)
    assert calls[0].wait() == b"y" * 6800
    c = Call(lambda: client.read("/next"))
    typ, rid, tx, _ = raw_peer.recv_packet()
    raw_peer.reply(typ, rid, b"same connection", tx)
    assert c.wait() == b"same connection"


def test_unknown_message_type(raw_peer: Any, client: Client) -> None:
    calls, pkts = start(raw_peer, client)
    raw_peer.reply(77, pkts[0][1], b"", 0)
    with pytest.raises(virtkit.ProtocolError, match="type 77"):
        calls[0].wait()
    recovers(raw_peer, client)


def test_reply_of_the_wrong_type(raw_peer: Any, client: Client) -> None:
    calls, pkts = start(raw_peer, client)
    raw_peer.reply(Op.WRITE, pkts[0][1], b"OK\0", 0)
    with pytest.raises(virtkit.ProtocolError, match="type 11 reply to a type 2"):
        calls[0].wait()
    recovers(raw_peer, client)


def test_reply_in_the_wrong_transaction(raw_peer: Any, client: Client) -> None:
    calls, pkts = start(raw_peer, client)
    raw_peer.reply(Op.READ, pkts[0][1], b"v", 42)
    with pytest.raises(virtkit.ProtocolError, match="transaction 42"):
        calls[0].wait()


def test_daemon_closes_mid_reply(raw_peer: Any, client: Client) -> None:
    calls, pkts = start(raw_peer, client, n=2)
    typ, rid, tx, _ = pkts[0]
    raw_peer.send(HDR.pack(typ, rid, tx, 100) + b"only part of it")
    raw_peer.close_conn()
    for c in calls:
        with pytest.raises(virtkit.ConnectionClosed, match="closed"):
            c.wait()
    recovers(raw_peer, client)


def test_silent_daemon_times_out_and_late_reply_is_dropped(raw_peer: Any) -> None:
    client = Client(raw_peer.path, timeout=0.5)
    try:
        calls, pkts = start(raw_peer, client)
        t0 = time.monotonic()
        with pytest.raises(virtkit.TimeoutError):
            calls[0].wait()
        assert time.monotonic() - t0 < 5  # bounded, not a hang
        typ, rid, tx, _ = pkts[0]
        raw_peer.reply(typ, rid, b"too late", tx)  # must not be taken for the next call's reply
        c = Call(lambda: client.read("/b"))
        typ2, rid2, tx2, payload = raw_peer.recv_packet()
        assert payload == b"/b\0" and rid2 != rid
        raw_peer.reply(typ2, rid2, b"on time", tx2)
        assert c.wait() == b"on time"
    finally:
        client.close()


def test_transaction_does_not_survive_a_reconnect(raw_peer: Any, client: Client) -> None:
    t = Call(client.transaction)
    raw_peer.accept()
    typ, rid, _tx, _ = raw_peer.recv_packet()
    raw_peer.reply(typ, rid, b"7\0")
    tx_obj = t.wait()
    raw_peer.close_conn()
    with pytest.raises(virtkit.ConnectionClosed):
        Call(lambda: client.read("/x")).wait()  # notices EOF
    with pytest.raises(virtkit.ConnectionClosed, match="transaction 7 was lost"):
        tx_obj.read("/x")  # type: ignore[attr-defined]


def test_req_id_wraps_and_skips_zero(raw_peer: Any, client: Client) -> None:
    calls, pkts = start(raw_peer, client)
    raw_peer.reply(pkts[0][0], pkts[0][1], b"1", 0)
    calls[0].wait()
    client._current()._next_id = 0xFFFFFFFF  # type: ignore[misc]
    c = Call(lambda: client.read("/a"))
    typ, rid, tx, _ = raw_peer.recv_packet()
    assert rid == 1
    raw_peer.reply(typ, rid, b"2", tx)
    assert c.wait() == b"2"


def test_many_threads_survive_a_protocol_error(raw_peer: Any, client: Client) -> None:
    calls, pkts = start(raw_peer, client, n=8)
    for typ, rid, tx, _ in pkts[:4]:
        raw_peer.reply(typ, rid, b"ok", tx)
    raw_peer.reply(Op.READ, 999_999, b"stray")
    results = []
    for c in calls:
        try:
            results.append(c.wait())
        except virtkit.ProtocolError:
            results.append("protocol")
    assert results.count(b"ok") == 4 and results.count("protocol") == 4
    recovers(raw_peer, client)


def test_close_fails_calls_in_flight(raw_peer: Any, client: Client) -> None:
    calls, _ = start(raw_peer, client, n=3)
    client.close()
    for c in calls:
        with pytest.raises(virtkit.ConnectionClosed):
            c.wait()


def test_leader_hands_over_when_its_reply_comes_first(raw_peer: Any, client: Client) -> None:
    calls, pkts = start(raw_peer, client, n=4)
    for typ, rid, tx, payload in pkts:  # one reply per send: every leader leaves with others waiting
        raw_peer.reply(typ, rid, payload[::-1], tx)
        calls[pkts.index((typ, rid, tx, payload))].wait()
    assert [c.result for c in calls] == [p[3][::-1] for p in pkts]


def test_read_many_is_one_round_trip(raw_peer: Any, client: Client) -> None:
    """All requests are on the wire before any reply: the peer reads three packets without
    answering one. Replies out of order still land in ``paths`` order; ENOENT reads as None."""
    c = Call(lambda: client.read_many(["/a", "/b", "/c"]))
    raw_peer.accept()
    pkts = [raw_peer.recv_packet() for _ in range(3)]
    assert [p[3] for p in pkts] == [b"/a\0", b"/b\0", b"/c\0"]
    for typ, rid, tx, payload in reversed(pkts):
        if payload == b"/b\0":
            raw_peer.reply(Op.ERROR, rid, b"ENOENT\0", tx)
        else:
            raw_peer.reply(typ, rid, payload.rstrip(b"\0").upper(), tx)
    assert c.wait() == [b"/A", None, b"/C"]


def test_directory_many_is_one_round_trip(raw_peer: Any, client: Client) -> None:
    """As read_many: every DIRECTORY on the wire before a reply, the listings in ``paths``
    order, ENOENT as None (the stats' device discovery relies on it)."""
    c = Call(lambda: client.directory_many(["/a", "/b", "/c"]))
    raw_peer.accept()
    pkts = [raw_peer.recv_packet() for _ in range(3)]
    assert [(p[0], p[3]) for p in pkts] == [(Op.DIRECTORY, b"/a\0"), (Op.DIRECTORY, b"/b\0"), (Op.DIRECTORY, b"/c\0")]
    for typ, rid, tx, payload in reversed(pkts):
        if payload == b"/b\0":
            raw_peer.reply(Op.ERROR, rid, b"ENOENT\0", tx)
        else:
            raw_peer.reply(typ, rid, b"x\0" + payload[1:2] + b"\0", tx)
    assert c.wait() == [["x", "a"], None, ["x", "c"]]


def test_read_many_raises_the_first_other_error(raw_peer: Any, client: Client) -> None:
    c = Call(lambda: client.read_many(["/a", "/b"]))
    raw_peer.accept()
    pkts = [raw_peer.recv_packet() for _ in range(2)]
    raw_peer.reply(Op.ERROR, pkts[1][1], b"EACCES\0", pkts[1][2])
    raw_peer.reply(pkts[0][0], pkts[0][1], b"fine", pkts[0][2])
    with pytest.raises(virtkit.PermissionDenied):
        c.wait()
    recovers_without_reconnect = Call(lambda: client.read("/ok"))
    typ, rid, tx, _ = raw_peer.recv_packet()  # the same connection: nothing was broken
    raw_peer.reply(typ, rid, b"ok", tx)
    assert recovers_without_reconnect.wait() == b"ok"


def test_read_many_when_the_daemon_dies_mid_batch(raw_peer: Any, client: Client) -> None:
    c = Call(lambda: client.read_many(["/a", "/b"]))
    raw_peer.accept()
    first = raw_peer.recv_packet()
    raw_peer.recv_packet()
    raw_peer.reply(first[0], first[1], b"one", first[2])
    raw_peer.close_conn()
    with pytest.raises(virtkit.ConnectionClosed):
        c.wait()
    recovers(raw_peer, client)
