"""The client's bytes on the wire against mirage/ocaml-xenstore's packet vectors (data/)."""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from virtkit_xenstore import Client, Op, Perm, Transaction

DATA = json.loads((Path(__file__).parent / "data" / "ocaml-xenstore-packet-vectors.json").read_text())
HDR = struct.Struct("<IIII")
REQUESTS = {v["op"]: v for v in DATA["vectors"] if v["direction"] == "request"}
RESPONSES = [v for v in DATA["vectors"] if v["direction"] == "response"]


def run(peer: Any, fn: Callable[[Client], object]) -> tuple[list[tuple[int, int, int, bytes]], object]:
    """Run ``fn(client)`` against the scripted peer, answering every request with OK (or a tx
    id for TRANSACTION_START); returns the packets the client sent and fn's result."""
    client = Client(peer.path, timeout=10)
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["result"] = fn(client)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            out["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    peer.accept()
    seen = []
    while t.is_alive() or peer.buf:
        try:
            peer.conn.settimeout(0.2)
            pkt = peer.recv_packet()
        except TimeoutError:
            continue
        except EOFError:
            break
        seen.append(pkt)
        typ, rid, tx, payload = pkt
        if typ == Op.TRANSACTION_START:
            peer.reply(typ, rid, str(fn.tx_id).encode() + b"\0")  # type: ignore[attr-defined]
        elif typ in (Op.GET_DOMAIN_PATH,):
            peer.reply(typ, rid, b"/local/domain/" + payload)
        elif typ in (Op.READ, Op.DIRECTORY, Op.GET_PERMS, Op.CONTROL):
            peer.reply(typ, rid, b"", tx)
        else:
            peer.reply(typ, rid, b"OK\0", tx)
    t.join(10)
    client.close()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return seen, out.get("result")


def in_tx(tx_id: int, body: Callable[[Transaction], object]) -> Callable[[Client], object]:
    def fn(c: Client) -> object:
        tx = c.transaction()
        return body(tx)

    fn.tx_id = tx_id  # type: ignore[attr-defined]
    return fn


def plain(body: Callable[[Client], object]) -> Callable[[Client], object]:
    body.tx_id = 0  # type: ignore[attr-defined]
    return body


CASES: dict[str, Callable[[Client], object]] = {
    "Directory": in_tx(5, lambda t: t.directory("/whatever/whenever")),
    "Read": in_tx(6, lambda t: t.read("/a/b/c")),
    "Getperms": in_tx(7, lambda t: t.get_perms("/a/b")),
    "Rm": plain(lambda c: c.rm("/")),
    "Setperms": in_tx(1, lambda t: t.set_perms("/", [Perm(5, "r"), Perm(2, "w"), Perm(3, "b")])),
    "Write": in_tx(1, lambda t: t.write("/key", b"value")),
    "Mkdir": in_tx(1024, lambda t: t.mkdir("/")),
    "Transaction_end": in_tx(1, lambda t: t.commit()),
    "Introduce": plain(lambda c: c.introduce_domain(4, 5, 1)),
    "Release": plain(lambda c: c.release_domain(2)),
    "Resume": plain(lambda c: c.resume_domain(3)),
    "Getdomainpath": plain(lambda c: c.get_domain_path(3)),
    "Unwatch": plain(lambda c: c.unwatch("/foo/bar", "somethinglse")),
    "Debug": plain(lambda c: c.control("a", "b", "something")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_request_bytes_match_the_vector(raw_peer: Any, name: str) -> None:
    vec = REQUESTS[name]
    seen, _ = run(raw_peer, CASES[name])
    typ, _rid, tx, payload = seen[-1]
    wire = HDR.pack(typ, 0, tx, len(payload)) + payload  # the vectors were recorded with req_id 0
    assert wire.hex() == vec["wire_hex"]


def test_transaction_start_and_watch_bytes(raw_peer: Any) -> None:
    def fn(c: Client) -> object:
        c.transaction()
        return c.watch("/foo/bar", token="something")

    fn.tx_id = 9  # type: ignore[attr-defined]
    seen, _ = run(raw_peer, fn)
    start = next(p for p in seen if p[0] == Op.TRANSACTION_START)
    watch = next(p for p in seen if p[0] == Op.WATCH)
    for pkt, name in ((start, "Transaction_start"), (watch, "Watch")):
        typ, _rid, tx, payload = pkt
        assert (HDR.pack(typ, 0, tx, len(payload)) + payload).hex() == REQUESTS[name]["wire_hex"]


def _decode(c: Client, vec: dict[str, Any]) -> object:
    op = vec["op"]
    return {
        "Read": lambda: c.read("/x"),
        "Getperms": lambda: c.get_perms("/x"),
        "Getdomainpath": lambda: c.get_domain_path(4),
        "Directory": lambda: c.directory("/x"),
        "Write": lambda: c.write("/x", b"v"),
        "Mkdir": lambda: c.mkdir("/x"),
        "Rm": lambda: c.rm("/x"),
        "Setperms": lambda: c.set_perms("/x", [Perm(0, "n")]),
        "Unwatch": lambda: c.unwatch("/x", "t"),
    }[op]()


EXPECTED: dict[str, object] = {
    "Read": None,  # filled per vector: the raw payload
    "Getperms": [Perm(2, "r"), Perm(4, "n")],
    "Getdomainpath": "/local/domain/4",
    "Directory": ["a", "b", "c", "aseasyas", "1", "2", "3"],
    "Write": None,
    "Mkdir": None,
    "Rm": None,
    "Setperms": None,
    "Unwatch": None,
}


@pytest.mark.parametrize("index", [i for i, v in enumerate(RESPONSES) if v["op"] in EXPECTED])
def test_response_vectors_decode(raw_peer: Any, index: int) -> None:
    vec = RESPONSES[index]
    payload = bytes.fromhex(vec["payload_hex"])
    client = Client(raw_peer.path, timeout=10)
    out: dict[str, object] = {}
    t = threading.Thread(target=lambda: out.setdefault("r", _decode(client, vec)))
    t.start()
    raw_peer.accept()
    typ, rid, tx, _ = raw_peer.recv_packet()
    assert typ == vec["type"]
    raw_peer.send(HDR.pack(vec["type"], rid, tx, vec["len"]) + payload)
    t.join(10)
    client.close()
    want = payload if vec["op"] == "Read" else EXPECTED[vec["op"]]
    assert out["r"] == want


def test_error_vector_is_a_typed_error_with_the_unknown_name(raw_peer: Any) -> None:
    from virtkit_xenstore import XenStoreError

    vec = next(v for v in RESPONSES if v["op"] == "Error")
    client = Client(raw_peer.path, timeout=10)
    out: dict[str, BaseException] = {}

    def target() -> None:
        try:
            client.read("/x")
        except BaseException as exc:  # noqa: BLE001
            out["e"] = exc

    t = threading.Thread(target=target)
    t.start()
    raw_peer.accept()
    _typ, rid, tx, _ = raw_peer.recv_packet()
    raw_peer.reply(Op.ERROR, rid, bytes.fromhex(vec["payload_hex"]), tx)
    t.join(10)
    client.close()
    err = out["e"]
    assert type(err) is XenStoreError
    assert err.errno_name == "whatyoutalkingabout"
    assert bytes.fromhex(vec["wire_hex"])[:4] == b"\x10\0\0\0"  # ERROR = 16
