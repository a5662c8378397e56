"""Listing as real xend 3.0.4-4.1 answers it (issue 12, item 7).

xend ignores ``state=`` once ``detail=1`` is sent and lists only the running domains, so paused,
crashed and defined domains must be found another way; and xend 3.0.x writes a live domain that
is runnable but on no cpu as ``------`` with no ``status``: it has a domid, so it is live.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

import virtkit
from virtkit import DomainState
from virtkit_xen_xend import XendDomain, parse_one
from virtkit_xen_xend.emulator import Host, XendEmulator

_SXP = {"Accept": "application/sxp"}


def _names(emu: XendEmulator, query: str) -> list[str]:
    r = requests.get(f"http://127.0.0.1:{emu.port}/xend/domain?{query}", headers=_SXP, timeout=5)
    body = parse_one(r.text)
    assert isinstance(body, list)
    return [x if isinstance(x, str) else XendDomain.from_sxp(x).name for x in body]


def test_the_emulator_ignores_state_when_detail_is_asked(emu: XendEmulator) -> None:
    with emu.host.lock:
        emu.host.pause(emu.host.find("rhel5"))
    running = ["Domain-0", "s10u4", "domu-224", "test2vm"]  # rhel5 paused, test defined
    for query in ("detail=1", "detail=1&state=all", "detail=1&state=paused", "detail=0&state=halted"):
        assert _names(emu, query) == running, query
    # names alone do honour state=
    assert "rhel5" in _names(emu, "state=paused") and "test" in _names(emu, "state=halted")
    assert len(_names(emu, "state=all")) == 6


def test_paused_crashed_and_defined_domains_are_listed(emu: XendEmulator, conn: virtkit.Connection) -> None:
    with emu.host.lock:
        emu.host.pause(emu.host.find("rhel5"))
        pv = emu.host.find("test2vm")
        pv.rec[:] = [c for c in pv.rec if not (isinstance(c, list) and c[0] == "on_crash")] + [["on_crash", "preserve"]]
        emu.host.crash(pv)
    ids = conn.list_domains()
    assert 5 in ids, "a paused domain is running for the contract: it has an id"
    crashed = conn.lookup_by_name("test2vm")
    assert crashed.id in ids and crashed.info().state is DomainState.CRASHED
    assert conn.lookup_by_id(5).info().state is DomainState.PAUSED
    assert conn.list_defined_domains() == ["test"]
    assert sorted(d.name for d in conn.domains(all=True)) == sorted(
        ["Domain-0", "s10u4", "rhel5", "domu-224", "test2vm", "test"]
    )


def test_a_domain_gone_between_the_two_requests_is_skipped(emu: XendEmulator, conn: virtkit.Connection) -> None:
    with emu.host.lock:
        emu.host.pause(emu.host.find("rhel5"))
    real = emu.host.find

    def vanish(key: str) -> object:
        if key == "rhel5":
            emu.host.find = real  # type: ignore[method-assign]
            emu.host.domains.remove(real("rhel5"))
        return real(key)

    emu.host.find = vanish  # type: ignore[assignment,method-assign]
    assert 5 not in conn.list_domains()


@pytest.fixture
def legacy() -> Iterator[XendEmulator]:
    with XendEmulator(host=Host(legacy=True)) as e:
        yield e


def test_the_legacy_emulator_writes_3_0_records(legacy: XendEmulator) -> None:
    with legacy.host.lock:
        d = legacy.host.create("(vm (name fresh) (memory 64) (vcpus 1) (image (linux (kernel /boot/vmlinuz))))")
        rec = legacy.host.sxpr(d)
    assert ["state", "------"] in rec and not any(isinstance(c, list) and c[0] == "status" for c in rec)


def test_a_live_domain_with_no_flags_set_is_live(legacy: XendEmulator) -> None:
    with legacy.host.lock:
        d = legacy.host.create("(vm (name fresh) (memory 64) (vcpus 1) (image (linux (kernel /boot/vmlinuz))))")
    with virtkit.open(legacy.uri, timeout=5) as conn:
        dom = conn.lookup_by_name("fresh")
        assert dom.id == d.domid and dom.id in conn.list_domains()
        assert dom.info().state is DomainState.RUNNING
        assert "fresh" not in conn.list_defined_domains()
        dom.suspend()  # not "it is not running"
        assert dom.info().state is DomainState.PAUSED
        dom.resume()
        assert dom.info().state is DomainState.RUNNING


@pytest.mark.parametrize(
    ("fields", "state", "active"),
    [
        ("(domid 3) (state ------)", DomainState.RUNNING, True),
        ("(domid 3) (state ??????)", DomainState.RUNNING, True),
        ("(domid 3) (state ------) (status 2)", DomainState.RUNNING, True),
        ("(domid 3) (state ------) (status 6)", DomainState.NOSTATE, True),  # xend's "unknown": still live
        ("(domid 3) (state ---s--)", DomainState.SHUTOFF, False),
        ("(domid 3) (status 0)", DomainState.SHUTOFF, False),
        ("(status 0)", DomainState.SHUTOFF, False),
        ("(state ------)", DomainState.NOSTATE, False),  # no domid: nothing runs
    ],
)
def test_the_model_decides_liveness_by_domid(fields: str, state: DomainState, active: bool) -> None:
    rec = XendDomain.from_text(f"(domain (name a) (uuid {uuid.UUID(int=7)}) {fields})")
    assert (rec.state, rec.active) == (state, active)
    assert rec.ref.id == (3 if active else None)
