"""Listing: the state stats group served here (running by name, defined as SHUTOFF), and the same
answers from the lookups whether or not the hypercall plugin serves the state group."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fakexen
import pytest
from conftest import Host

import virtkit
from virtkit import DomainConfig, DomainRef, DomainState
from virtkit.testing import EventRecorder

KERNEL = "/fake/vmlinux"


def cfg(name: str) -> DomainConfig:
    return DomainConfig(name=name, memory=131072, kernel=KERNEL)


@pytest.fixture
def rec_events(conn: virtkit.Connection) -> Iterator[EventRecorder]:
    r = EventRecorder()
    cancel = conn.domain_event_register(r)
    yield r
    cancel()


def _rows(conn: virtkit.Connection, domains: list[DomainRef] | None = None) -> list[tuple[str, int | None, str]]:
    return [(s.domain.name, s.domain.id, s.state.state.name) for s in conn.all_domain_stats(["state"], domains)]  # type: ignore[union-attr]


def test_state_group_is_served_here(conn: virtkit.Connection) -> None:
    state = next(r for r in conn.explain().groups if r.operation == "state")
    assert state.plugin == "xen_libxl" and [c.plugin for c in state.lost] == ["fake_host"]


def test_state_group_lists_running_by_name_then_defined(conn: virtkit.Connection) -> None:
    conn.define(cfg("off"))
    up = conn.define(cfg("up"))
    up.start()
    conn.create(cfg("tmp"))
    rows = _rows(conn)
    # names from the names reader (xenstore), not the hypercall plugin's synthetic domain-N
    assert rows == [("Domain-0", 0, "RUNNING"), ("up", 1, "RUNNING"), ("tmp", 2, "RUNNING"), ("off", None, "SHUTOFF")]
    assert [(d.name, d.id) for d in conn.domains(all=True)] == [(n, i) for n, i, _s in rows]


def test_state_group_of_named_domains_as_they_are_now(conn: virtkit.Connection) -> None:
    off = conn.define(cfg("off"))
    up = conn.define(cfg("up"))
    up.start()
    stale = DomainRef("up", up.uuid, 7)  # an id it no longer (or never) had: found by uuid
    ghost = DomainRef("ghost", uuid.uuid4(), 1)  # id 1 is "up": the uuid does not match
    gone = DomainRef("gone", uuid.uuid4(), None)
    assert _rows(conn, [off.ref, stale, ghost, gone]) == [("off", None, "SHUTOFF"), ("up", 1, "RUNNING")]
    assert _rows(conn, [DomainRef("Domain-0", uuid.UUID(int=0), 0)]) == [("Domain-0", 0, "RUNNING")]


def test_a_domain_without_a_name_yet_is_left_out(host: Host, conn: virtkit.Connection) -> None:
    conn.create(cfg("building"))
    driver = dict(conn._drivers)["xen_libxl"]  # type: ignore[attr-defined]
    driver._idents = lambda keys: [(None, None) if i == 1 else ("Domain-0", None) for i, _h in keys]
    assert _rows(conn) == [("Domain-0", 0, "RUNNING")]


@pytest.mark.parametrize("stats", [True, False], ids=["state-group", "no-stats"])
def test_lookups_agree_with_or_without_the_state_group(tmp_path: Path, stats: bool) -> None:
    host = Host(tmp_path, stats=stats)
    with host.open() as conn:
        conn.define(cfg("off"))
        up = conn.define(cfg("up"))
        up.start()
        assert conn.list_defined_domains() == ["off"]
        assert conn.lookup_by_name("up").id == 1 and conn.lookup_by_name("off").id is None
        assert conn.lookup_by_uuid(up.uuid).ref == DomainRef("up", up.uuid, 1)
        assert [(d.name, d.id) for d in conn.domains(all=True)] == [("Domain-0", 0), ("up", 1), ("off", None)]
        assert conn.lookup_by_name("off").info().state is DomainState.SHUTOFF


def test_xls_renamed_old_run_is_listed_under_its_xenstore_uuid(
    conn: virtkit.Connection, host: Host, rec_events: EventRecorder
) -> None:
    """rename-restart as xl 4.17 does it (seen in the lab): the old run is renamed NAME-STAMP
    and given a new uuid in xenstore, the hypervisor's handle stays; the name runs anew."""
    dom = conn.define(cfg("g"))
    dom.start()
    rec_events.expect(virtkit.DomainEventType.STARTED, dom.uuid, 10)
    fresh = uuid.uuid4()
    with fakexen.world(host.world) as w:
        w["doms"]["1"].update(name="g-20261130T1246Z", vm_uuid=str(fresh), state="shutdown", reason="reboot")
        w["doms"]["2"] = {**w["doms"]["1"], "name": "g", "state": "running", "reason": None}
        del w["doms"]["2"]["vm_uuid"]
    assert _rows(conn) == [("Domain-0", 0, "RUNNING"), ("g-20261130T1246Z", 1, "SHUTDOWN"), ("g", 2, "RUNNING")]
    assert [s.domain.uuid for s in conn.all_domain_stats(["state"])][1:] == [fresh, dom.uuid]
    assert conn.lookup_by_uuid(dom.uuid).id == 2 and conn.list_defined_domains() == []
    assert conn.lookup_by_name("g-20261130T1246Z").ref == DomainRef("g-20261130T1246Z", fresh, 1)
    rec_events.expect(virtkit.DomainEventType.REBOOTED, dom.uuid, 10)
    # the old run is not a domain that started: no event of its own
    assert not [e for e in rec_events.events if e.domain.uuid == fresh]


class _Namer:
    """Stands in for xenstore: knows names (lookups at 90) and serves the block stats group."""

    def __init__(self) -> None:
        self.calls = 0

    @virtkit.priority(90)
    def domain_lookup_by_uuid(self, uuid: uuid.UUID, *, flags: int = 0) -> DomainRef:
        raise virtkit.NoSuchDomain(str(uuid))

    @virtkit.stats_groups("block")
    def connect_get_all_domain_stats(
        self, groups: object, domains: object = None, *, flags: int = 0
    ) -> list[virtkit.DomainStats]:
        self.calls += 1
        return []


class _NamerPlugin:
    virtkit_catalogue = "1.1"
    virtkit_name = "xenstore"

    def __init__(self) -> None:
        self.driver = _Namer()

    @virtkit.hookimpl
    def priority(self, uri: virtkit.URI) -> int:
        return 10

    @virtkit.hookimpl
    def open(self, uri: virtkit.URI, options: virtkit.OpenOptions) -> object:
        return self.driver


def test_the_inner_state_read_is_the_hypercall_plugins_alone(tmp_path: Path) -> None:
    # With xenstore's stats composed in, the core would ask it first to name the domains.
    host = Host(tmp_path)
    namer = _NamerPlugin()
    host.plugin.inner_plugins = (host.host_plugin, namer)
    with host.open() as conn:
        conn.define(cfg("off"))
        assert [(n, i) for n, i, _s in _rows(conn)] == [("Domain-0", 0), ("off", None)]
        assert conn.list_defined_domains() == ["off"] and conn.lookup_by_name("off").id is None
    assert namer.driver.calls == 0


def test_asked_for_no_group_it_names_the_domains_only(conn: virtkit.Connection) -> None:
    # what the core asks of the provider ranking highest for lookups before others' groups
    conn.define(cfg("off"))
    driver = dict(conn._drivers)["xen_libxl"]  # type: ignore[attr-defined]
    got = driver.connect_get_all_domain_stats((), None)
    assert [(r.domain.name, r.domain.id, r.state) for r in got] == [("Domain-0", 0, None), ("off", None, None)]
