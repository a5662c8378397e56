"""Every open of test:///default is its own host: nothing one connection does shows in another."""

from __future__ import annotations

import virtkit
from virtkit import DomainConfig, DomainEvent, DomainState


def test_two_opens_do_not_share_state() -> None:
    with virtkit.open("test:///default") as a, virtkit.open("test:///default") as b:
        a.lookup_by_name("test").destroy()
        a.lookup_by_name("web").set_memory(1024)
        a.create(DomainConfig("only-in-a", 1024))
        a.lookup_by_name("defined-vm").undefine()
        assert b.list_domains() == [1, 2, 3]
        assert b.lookup_by_name("test").info().state is DomainState.RUNNING
        assert b.lookup_by_name("web").info().memory == 1048576
        assert b.list_defined_domains() == ["defined-vm"]
        assert [d.name for d in b.domains(all=True)] == ["test", "web", "paused-vm", "defined-vm"]
        # ids are per host too: b's next domain gets 4 although a already used 4
        assert b.create(DomainConfig("only-in-b", 1024)).id == 4
        assert "only-in-b" not in [d.name for d in a.domains()]


def test_a_new_open_after_changes_starts_fresh() -> None:
    with virtkit.open("test:///default") as a:
        a.lookup_by_name("paused-vm").resume()
        a.lookup_by_name("web").set_vcpus(8)
    with virtkit.open("test:///default") as b:
        assert b.lookup_by_name("paused-vm").info().state is DomainState.PAUSED
        assert b.lookup_by_name("web").vcpus() == 4


def test_events_stay_on_their_connection() -> None:
    with virtkit.open("test:///default") as a, virtkit.open("test:///default") as b:
        got_b: list[DomainEvent] = []
        b.domain_event_register(got_b.append)
        a.lookup_by_name("test").suspend()
        assert got_b == []


def test_closing_one_leaves_the_other_open() -> None:
    a = virtkit.open("test:///default")
    with virtkit.open("test:///default") as b:
        a.close()
        assert b.hostname() == "test-host"
        assert b.lookup_by_id(1).name == "test"
