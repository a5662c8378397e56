"""virtkit.rpc: frames, catalogue-typed values, typed errors, events, explanations."""

from __future__ import annotations

import struct
import uuid

import pytest

import virtkit
from virtkit import (
    DomainConfig,
    DomainEvent,
    DomainEventType,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    NodeInfo,
    Version,
    rpc,
)

REF = DomainRef("web", uuid.UUID("6695eb01-f6a4-8304-79aa-97f2502e1940"), 2)
VALUES = {
    "str": "Test",
    "int": 3,
    "None": None,
    "list[int]": [1, 2, 3],
    "list[str]": ["a", "b"],
    "UUID": REF.uuid,
    "DomainRef": REF,
    "DomainInfo": DomainInfo(DomainState.PAUSED, 1024, 512, 2, 10**12),
    "DomainStateInfo": DomainStateInfo(DomainState.SHUTOFF, "destroyed"),
    "NodeInfo": NodeInfo("x86_64", 4096, 16, 1400, 2, 2, 2, 2, None),
    "Version": Version(4, 17, 2),
    "DomainConfig": DomainConfig("vm-1", 65536, vcpus=2, uuid=REF.uuid, devices=({"kind": "disk"},), extra={"k": 1}),
}
# catalogue 1.1: statistics (their shapes in detail: tests/test_stats_wire.py)
_VCPU = virtkit.VcpuInfo(0, virtkit.VcpuState.RUNNING, 10**9, 3)
_BLOCK = virtkit.BlockStats("xvda", 1, 4096, 2, 8192, None, None, None, None, 0, "/img")
_NET = virtkit.InterfaceStats("vif2.0", 1000, 1, 600, 1)
VALUES |= {
    "StatsGroups": ["cpu", "net"],
    "bool": True,  # catalogue 1.2: persistence and autostart
    "list[DomainRef] | None": [REF],
    "list[DomainStats]": [
        virtkit.DomainStats(REF, DomainStateInfo(DomainState.RUNNING, "booted"), virtkit.CpuStats(10**9)),
        virtkit.DomainStats(REF._replace(name="db"), vcpu=virtkit.VcpuStats(1, 2, (_VCPU,)), block=(_BLOCK,), net=()),
    ],
    "BlockStats": _BLOCK,
    "InterfaceStats": _NET,
    "MemoryStats": virtkit.MemoryStats(524288, rss_kib=600000),
    "list[VcpuInfo]": [_VCPU],
}


def test_every_catalogue_type_that_travels_round_trips() -> None:
    travels = {op.returns for op in virtkit.CATALOGUE.values()} | {
        p.type for op in virtkit.CATALOGUE.values() for p in op.params
    }
    travels -= {"Callable[[], None]", "Callable[[DomainEvent], None]"}  # events go by subscription
    assert travels <= set(VALUES)
    for type_name, value in VALUES.items():
        frame = rpc.encode_frame({"k": "reply", "id": 1, "value": rpc.encode_value(type_name, value)})
        (msg,) = rpc.FrameReader().feed(frame)
        assert rpc.decode_value(type_name, msg["value"]) == value


@pytest.mark.parametrize(
    ("type_name", "data"),
    [
        ("int", True),
        ("int", 2**64),
        ("int", "3"),
        ("str", 3),
        ("bool", 1),
        ("bool", "true"),
        ("bool", None),
        ("None", 0),
        ("list[int]", [1, "2"]),
        ("UUID", "not-a-uuid"),
        ("DomainRef", {"name": "x", "uuid": str(REF.uuid), "id": -(2**70)}),
        ("DomainRef", {"name": "x", "uuid": str(REF.uuid), "id": 1, "extra": 1}),
        ("DomainInfo", {"state": 99, "max_memory": 1, "memory": 1, "vcpus": 1, "cpu_time": 1}),
        ("Version", {"major": -1, "minor": 0, "release": 0}),
        ("DomainConfig", {"name": "../etc", "memory": 1024}),
        ("NodeInfo", []),
    ],
)
def test_a_wrong_shape_is_a_protocol_error(type_name: str, data: object) -> None:
    with pytest.raises(virtkit.ProtocolError):
        rpc.decode_value(type_name, data)


def test_frames_split_anywhere_are_reassembled() -> None:
    stream = b"".join(rpc.encode_frame({"k": "keepalive", "n": i, "t": "é" * i}) for i in range(20))
    reader = rpc.FrameReader()
    got = [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])]
    assert [m["n"] for m in got] == list(range(20))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (struct.pack(">I", rpc.MAX_FRAME + 1), "exceeds the limit"),
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", "does the far side print to stdout"),
        (struct.pack(">I", 4) + b"\xff\xfe{}", "not UTF-8 JSON"),
        (struct.pack(">I", 2) + b"[]", "not a message object"),
        (struct.pack(">I", 8) + b'{"k": 1}', "not a message object"),
        (struct.pack(">I", 20000) + b"[" * 20000, "not UTF-8 JSON"),
    ],
)
def test_bad_frames_are_protocol_errors(data: bytes, words: str) -> None:
    with pytest.raises(virtkit.ProtocolError, match=words):
        rpc.FrameReader().feed(data)


def test_an_oversized_message_is_refused_before_sending() -> None:
    with pytest.raises(virtkit.ProtocolError, match="exceeds the frame limit"):
        rpc.encode_frame({"k": "reply", "value": "x" * rpc.MAX_FRAME})


@pytest.mark.parametrize(
    "cls", [c for c in vars(virtkit).values() if isinstance(c, type) and issubclass(c, virtkit.VirtError)]
)
def test_every_error_class_crosses_as_itself(cls: type[virtkit.VirtError]) -> None:
    err = cls("it failed", operation="domain_suspend", driver="test", uri="test:///default")
    back = rpc.decode_error(rpc.encode_error(err))
    assert type(back) is cls
    assert (back.message, back.operation, back.driver, back.uri) == (
        "it failed",
        "domain_suspend",
        "test",
        "test:///default",
    )


def test_a_plugins_own_error_crosses_as_its_core_ancestor_and_others_as_driver_error() -> None:
    class Mine(virtkit.NoSuchDomain):
        pass

    assert type(rpc.decode_error(rpc.encode_error(Mine("gone")))) is virtkit.NoSuchDomain
    back = rpc.decode_error(rpc.encode_error(KeyError("x")))
    assert type(back) is virtkit.DriverError and "KeyError" in back.message
    assert type(rpc.decode_error({"class": "SystemExit", "message": "x"})) is virtkit.DriverError
    assert type(rpc.decode_error("junk")) is virtkit.ProtocolError


def test_events_and_explanations_round_trip() -> None:
    ev = DomainEvent(DomainEventType.SUSPENDED, REF, "by test", 12.5)
    assert rpc.decode_event(rpc.encode_event(ev)) == ev
    with pytest.raises(virtkit.ProtocolError):
        rpc.decode_event({"type": "exploded", "domain": rpc.encode_value("DomainRef", REF)})
    with virtkit.open("test:///default") as conn:
        ex = conn.explain()
    assert rpc.decode_explanation(ex.to_dict()) == ex
    with pytest.raises(virtkit.ProtocolError):
        rpc.decode_explanation({"uri": "x"})
