"""The kit's checks of every stats operation a driver provides (catalogue 1.1).

Collected through ``_contract`` (whose fixtures and helpers they use). Types and units are the
result checks of ``_stats_checks``; counters are read twice and must not go backwards while the
domain keeps its id (one boot); unknown groups and devices are InvalidArgument.
"""

from __future__ import annotations

import functools
import uuid as _uuid
from typing import Any

import pytest

from .._connection import Connection
from .._errors import InvalidArgument, NoSuchDomain
from .._stats import STATS_GROUPS, DomainStats
from .._types import DomainRef
from ._checks import ContractViolation
from ._contract import call, expect_error, ghost, need, provided, running_ids
from ._stats_checks import counter_regressions

BULK = "connect_get_all_domain_stats"


def _bulk(conn: Connection, groups: Any = None, domains: list[DomainRef] | None = None) -> list[DomainStats]:
    result: list[DomainStats] = call(conn, BULK, groups, domains)
    return result


def _served_groups(conn: Connection) -> tuple[str, ...]:
    return tuple(r.operation for r in conn.explain().groups if r.plugin is not None) or STATS_GROUPS


def _running(conn: Connection) -> list[DomainRef]:
    refs = []
    for i in running_ids(conn):
        try:
            refs.append(call(conn, "domain_lookup_by_id", i))
        except NoSuchDomain:
            continue
    return refs


def test_stats_bulk_groups(conn: Connection) -> None:
    """Every served group is filled in when asked for, and only the groups asked for."""
    need(conn, BULK)
    served = _served_groups(conn)
    records = _bulk(conn)
    for rec in records:
        missing = [g for g in served if getattr(rec, g) is None]
        if rec.domain.id is None:  # shut off: only the state must be there (libvirt's rule)
            missing = [g for g in missing if g == "state"]
        assert not missing, f"{rec.domain.name}: groups {missing} asked for (all) but None"
    for group in served:
        for rec in _bulk(conn, [group]):
            extra = [g for g in STATS_GROUPS if g != group and getattr(rec, g) is not None]
            if rec.domain.id is not None or group == "state":
                assert getattr(rec, group) is not None, f"{rec.domain.name}: group {group} asked for but None"
            assert not extra, f"{rec.domain.name}: asked for {group} only, got {extra} too"
    listed = {r.uuid for r in _running(conn)}
    got = {rec.domain.uuid for rec in records}
    # running domains may come and go on a live host: only a domain both before and after counts
    after = {r.uuid for r in _running(conn)}
    absent = (listed & after) - got
    assert not absent, f"running domains missing from the bulk result: {sorted(map(str, absent))}"


def test_stats_bulk_named_domains(conn: Connection) -> None:
    """Asking for named domains returns those; one that does not exist is left out, no error."""
    need(conn, BULK)
    refs = _running(conn)[:2]
    missing = ghost(conn)
    records = _bulk(conn, None, [*refs, missing])
    uuids = [rec.domain.uuid for rec in records]
    assert missing.uuid not in uuids, "a domain that does not exist has a record"
    assert set(uuids) <= {r.uuid for r in refs}, f"records for domains not asked for: {uuids}"
    assert _bulk(conn, None, [missing]) == []


def test_stats_unknown_group(conn: Connection) -> None:
    need(conn, BULK)
    expect_error(InvalidArgument, lambda: _bulk(conn, ["cpu", "no-such-group"]), "an unknown stats group")


def _devices(conn: Connection, ref: DomainRef, group: str) -> list[str]:
    if not provided(conn, BULK) or group not in _served_groups(conn):
        return []
    for rec in _bulk(conn, [group], [ref]):
        return [d.device for d in getattr(rec, group)]
    return []


def _regressions(before: DomainStats, after: DomainStats) -> list[str]:
    name = before.domain.name
    out: list[str] = []
    if before.cpu is not None and after.cpu is not None:
        out += counter_regressions(before.cpu, after.cpu, f"{name} cpu.")
    if before.vcpu is not None and after.vcpu is not None:
        later = {v.number: v for v in after.vcpu.vcpus}
        for v in before.vcpu.vcpus:
            if v.number in later:
                out += counter_regressions(v, later[v.number], f"{name} vcpu.{v.number}.")
    for group in ("block", "net"):
        old, new = getattr(before, group), getattr(after, group)
        if old is not None and new is not None:
            later = {d.device: d for d in new}
            for d in old:
                if d.device in later:
                    out += counter_regressions(d, later[d.device], f"{name} {group} {d.device}: ")
    return out


def test_stats_counters_monotonic(conn: Connection) -> None:
    """Two bulk reads: no counter of a domain that kept its id went backwards."""
    need(conn, BULK)
    first = {rec.domain.uuid: rec for rec in _bulk(conn)}
    problems: list[str] = []
    for rec in _bulk(conn):
        before = first.get(rec.domain.uuid)
        if before is not None and before.domain.id is not None and before.domain.id == rec.domain.id:
            problems += _regressions(before, rec)
    assert not problems, "; ".join(problems[:10])


def _two_reads(conn: Connection, op: str, ref: DomainRef, *args: Any) -> None:
    a = call(conn, op, ref, *args)
    b = call(conn, op, ref, *args)
    if isinstance(a, list):  # vcpu info
        later = {v.number: v for v in b}
        bad = [x for v in a if v.number in later for x in counter_regressions(v, later[v.number], f"vcpu {v.number} ")]
    else:
        bad = counter_regressions(a, b)
    if bad:
        raise ContractViolation(f"{op}({ref.name}{''.join(f', {x!r}' for x in args)}): {'; '.join(bad)}")


def test_stats_domain_ops(conn: Connection) -> None:
    """Per-domain stats of every running domain: typed, and monotonic across two reads."""
    ops = ("domain_block_stats", "domain_interface_stats", "domain_memory_stats", "domain_get_vcpu_info")
    if not any(provided(conn, op) for op in ops):
        pytest.skip(f"not provided: {', '.join(ops)}")
    refs = _running(conn)
    if not refs:
        pytest.skip("no running domain")
    for ref in refs:
        try:
            call(conn, "domain_lookup_by_uuid", ref.uuid)
        except NoSuchDomain:
            continue
        if provided(conn, "domain_memory_stats"):
            _two_reads(conn, "domain_memory_stats", ref)
        if provided(conn, "domain_get_vcpu_info"):
            _two_reads(conn, "domain_get_vcpu_info", ref)
        if provided(conn, "domain_block_stats"):
            total = call(conn, "domain_block_stats", ref, "")
            assert total.device == "", f"block_stats({ref.name}, '') names device {total.device!r}"
            for dev in _devices(conn, ref, "block"):
                _two_reads(conn, "domain_block_stats", ref, dev)
        if provided(conn, "domain_interface_stats"):
            for dev in _devices(conn, ref, "net"):
                _two_reads(conn, "domain_interface_stats", ref, dev)


def test_stats_unknown_device(conn: Connection) -> None:
    ops = [op for op in ("domain_block_stats", "domain_interface_stats") if provided(conn, op)]
    if not ops:
        pytest.skip("not provided: domain_block_stats, domain_interface_stats")
    refs = _running(conn)
    if not refs:
        pytest.skip("no running domain")
    device = f"virtkit-kit-no-such-device-{_uuid.uuid4().hex[:8]}"
    for op in ops:
        expect_error(InvalidArgument, functools.partial(call, conn, op, refs[-1], device), f"{op} of an unknown device")
