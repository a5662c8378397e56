"""The stats types on the remote protocol: exact round trips, strict decoding."""

from __future__ import annotations

import pytest

import virtkit
from virtkit import CATALOGUE
from virtkit.rpc import decode_explanation, decode_value, encode_value


@pytest.fixture
def conn() -> virtkit.Connection:
    return virtkit.open("test:///default")


def test_every_stats_type_round_trips(conn: virtkit.Connection) -> None:
    web = conn.lookup_by_name("web")
    values = {
        "connect_get_all_domain_stats": conn.all_domain_stats(),
        "domain_block_stats": web.block_stats("xvdb"),
        "domain_interface_stats": web.interface_stats("vif2.0"),
        "domain_memory_stats": web.memory_stats(),
        "domain_get_vcpu_info": web.vcpu_info(),
    }
    for op, value in values.items():
        returns = CATALOGUE[op].returns
        assert decode_value(returns, encode_value(returns, value)) == value, op
    groups, domains = CATALOGUE["connect_get_all_domain_stats"].params
    assert decode_value(groups.type, encode_value(groups.type, ("cpu", "net"))) == ["cpu", "net"]
    assert decode_value(domains.type, encode_value(domains.type, [web.ref])) == [web.ref]
    assert decode_value(domains.type, encode_value(domains.type, None)) is None


@pytest.mark.parametrize(
    ("type_name", "data"),
    [
        ("BlockStats", {"device": "xvda", "read_requests": -1}),
        ("BlockStats", {"device": "xvda", "read_requests": 1, "read_bytes": 1, "write_requests": 1}),
        ("InterfaceStats", {"device": 3}),
        ("MemoryStats", {"actual_kib": "1"}),
        ("list[VcpuInfo]", [{"number": 0, "state": 9, "time_ns": 0}]),
        ("list[DomainStats]", [{"domain": {"name": "x", "uuid": "nope"}}]),
        ("list[DomainStats]", [{"domain": {"name": "x", "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f"}, "bogus": 1}]),
        ("StatsGroups", "cpu"),
    ],
)
def test_bad_shapes_are_protocol_errors(type_name: str, data: object) -> None:
    with pytest.raises(virtkit.ProtocolError):
        decode_value(type_name, data)


def test_explanation_with_stats_groups_round_trips(conn: virtkit.Connection) -> None:
    ex = conn.explain()
    assert [g.operation for g in ex.groups] == list(virtkit.STATS_GROUPS)
    assert decode_explanation(ex.to_dict()) == ex
