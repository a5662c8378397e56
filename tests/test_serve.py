"""``virtkit serve --stdio``: the far end, driven frame by frame as a client would."""

from __future__ import annotations

import os
import pathlib
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from virtkit import rpc

VIRTKIT = str(pathlib.Path(sys.executable).with_name("virtkit"))


class Far:
    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}
        self.proc = subprocess.Popen(
            [VIRTKIT, "serve", "--stdio", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.reader = rpc.FrameReader()
        self.queue: list[dict[str, Any]] = []

    def send(self, msg: dict[str, Any] | bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(msg if isinstance(msg, bytes) else rpc.encode_frame(msg))
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while not self.queue:
            data = self.proc.stdout.read1(65536)
            assert data, "the server ended"
            self.queue += self.reader.feed(data)
        return self.queue.pop(0)

    def hello(self, **kw: Any) -> dict[str, Any]:
        self.send({"k": "hello", "proto": rpc.PROTOCOL, "timeout": 10, **kw})
        return self.recv()

    def call(self, call_id: int, op: str, *args: Any, flags: int = 0) -> dict[str, Any]:
        self.send({"k": "call", "id": call_id, "op": op, "args": list(args), "flags": flags})
        return self.recv()

    def end(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        rc = self.proc.wait(20)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read().decode()
        for f in (self.proc.stdout, self.proc.stderr):
            assert f is not None
            f.close()
        return rc


@pytest.fixture
def far() -> Iterator[Far]:
    f = Far("test:///default")
    yield f
    if f.proc.poll() is None:
        f.proc.kill()
        f.end()


def _ref(far: Far, name: str = "web") -> Any:
    return far.call(99, "domain_lookup_by_name", name)["value"]


def test_hello_tells_the_far_composition_and_calls_are_answered(far: Far) -> None:
    h = far.hello()
    assert h["k"] == "hello" and h["uri"] == "test:///default" and h["readonly"] is False
    assert h["served"]["domain_suspend"] == "test" and h["explain"]["uri"] == "test:///default"
    assert far.call(1, "connect_list_domains") == {"k": "reply", "id": 1, "value": [1, 2, 3]}
    assert far.call(2, "domain_get_info", _ref(far))["value"]["state"] == 1
    far.send({"k": "keepalive", "ack": False})
    assert far.recv() == {"k": "keepalive", "ack": True}
    assert far.end() == 0


def test_errors_are_typed_and_values_checked(far: Far) -> None:
    far.hello()
    err = far.call(1, "domain_lookup_by_name", "nosuch")["error"]
    assert (err["class"], err["operation"], err["driver"]) == ("NoSuchDomain", "domain_lookup_by_name", "test")
    assert far.call(2, "no_such_op")["error"]["class"] == "ProtocolError"
    assert far.call(3, "domain_get_info")["error"]["class"] == "ProtocolError"  # wrong number of arguments
    assert far.call(4, "domain_get_info", {"name": 1})["error"]["class"] == "ProtocolError"
    assert far.call(5, "domain_set_memory", _ref(far), -5)["error"]["class"] == "InvalidArgument"
    assert far.call(6, "domain_set_vcpus", _ref(far), 10**9)["error"]["class"] == "InvalidArgument"
    assert far.call(7, "connect_list_domains", flags=-1)["error"]["class"] == "InvalidArgument"
    bad = {"name": "../../etc", "memory": 1024}
    assert far.call(8, "domain_create", bad)["error"]["class"] == "ProtocolError"


@pytest.mark.parametrize("how", ["hello", "flag"])
def test_read_only_is_enforced_by_the_server(how: str) -> None:
    far = Far("--readonly", "test:///default") if how == "flag" else Far("test:///default")
    try:
        h = far.hello(readonly=how == "hello")  # with --readonly, a hello asking read-write changes nothing
        assert h["readonly"] is True
        ref = _ref(far)
        err = far.call(1, "domain_suspend", ref)["error"]
        assert err["class"] == "ReadOnlyError"
        assert far.call(2, "domain_get_info", ref)["value"]["state"] == 1
    finally:
        far.end()


def test_events_are_forwarded_until_cancelled(far: Far) -> None:
    far.hello()
    assert far.call(5, "connect_domain_event_register") == {"k": "reply", "id": 5, "value": 5}
    ref = _ref(far)
    far.send({"k": "call", "id": 6, "op": "domain_suspend", "args": [ref], "flags": 0})
    msgs = [far.recv(), far.recv()]  # the reply and the event, in either order
    assert {"k": "reply", "id": 6, "value": None} in msgs
    ev = next(m for m in msgs if m["k"] == "event")
    assert ev["sub"] == 5 and ev["event"]["type"] == "suspended" and ev["event"]["domain"]["name"] == "web"
    far.send({"k": "cancel", "sub": 5})
    assert far.call(7, "domain_resume", ref) == {"k": "reply", "id": 7, "value": None}  # no event before it


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "exceeds the limit"),
        (struct.pack(">I", 5) + b"hello", "not UTF-8 JSON"),
        (rpc.encode_frame({"k": "dance"}), "unknown message kind"),
        (rpc.encode_frame({"k": "call", "id": "x", "op": "connect_get_type"}), "valid id"),
    ],
)
def test_garbage_after_hello_is_answered_then_the_server_ends(far: Far, data: bytes, words: str) -> None:
    far.hello()
    far.send(data)
    msg = far.recv()
    assert msg["k"] == "error" and msg["id"] == 0 and msg["error"]["class"] == "ProtocolError"
    assert words in msg["error"]["message"]
    assert far.end() == 1


def test_a_wrong_protocol_or_no_hello_is_refused(far: Far) -> None:
    far.send({"k": "hello", "proto": 99})
    msg = far.recv()
    assert msg["error"]["class"] == "ProtocolError" and "protocol 99" in msg["error"]["message"]
    assert far.end() == 1
    other = Far("test:///default")
    other.send({"k": "call", "id": 1, "op": "connect_get_type", "args": []})
    assert "expected hello" in other.recv()["error"]["message"]
    assert other.end() == 1


def test_a_uri_the_far_side_cannot_open_is_its_typed_error() -> None:
    far = Far("nosuch:///")
    try:
        msg = far.hello()
        assert msg["k"] == "error" and msg["error"]["class"] == "NoDriver"
    finally:
        assert far.end() == 1


@pytest.mark.parametrize("quiet", [0.0, 1.0], ids=["busy", "after-a-quiet-second"])
def test_a_slow_call_holds_up_neither_keepalives_nor_other_calls(quiet: float) -> None:
    """slow:/// (virtkit-fakes) takes 1.5 s for beta's info, and prints to stdout at import.
    The slow call comes while the server is busy, or after a second with nothing to read (its
    watcher of slow calls then sleeps until a message comes)."""
    far = Far("slow:///")
    try:
        assert far.hello()["k"] == "hello"  # the plugin's print() did not corrupt the stream
        beta = far.call(1, "domain_lookup_by_name", "beta")["value"]
        alpha = far.call(2, "domain_lookup_by_name", "alpha")["value"]
        time.sleep(quiet)
        # in one write: the server reads all three at once and must still answer them apart
        far.send(
            rpc.encode_frame({"k": "call", "id": 3, "op": "domain_get_info", "args": [beta], "flags": 0})
            + rpc.encode_frame({"k": "keepalive", "ack": False})
            + rpc.encode_frame({"k": "call", "id": 4, "op": "domain_get_info", "args": [alpha], "flags": 0})
        )
        order = [far.recv(), far.recv(), far.recv()]
        assert order[0] == {"k": "keepalive", "ack": True}
        assert [m.get("id") for m in order[1:]] == [4, 3]
    finally:
        far.end()
    assert "slow plugin opened" in far.stderr
