"""Connection and Domain behaviour: error completion, closing, lookups, the default URI."""

from __future__ import annotations

import threading

import pytest

import virtkit
from virtkit import DomainState


def test_errors_are_completed_with_operation_driver_and_uri() -> None:
    with virtkit.open("fake:///") as conn:
        with pytest.raises(virtkit.NoSuchDomain) as info:
            conn.lookup_by_id(99)
        err = info.value
        assert (err.operation, err.driver, err.uri) == ("domain_lookup_by_id", "fake_good", "fake:///")
        assert err.to_dict()["code"] == "no-such-domain"


def test_invalid_transition_typed() -> None:
    with virtkit.open("fake:///") as conn:
        dom = conn.lookup_by_name("beta")
        with pytest.raises(virtkit.InvalidOperation):
            dom.resume()
        dom.suspend()
        assert dom.info().state is DomainState.PAUSED


def test_close_is_idempotent_and_closes_drivers() -> None:
    from virtkit_fakes import good

    conn = virtkit.open("fake:///")
    dom = conn.lookup_by_id(1)
    driver = good.opened[-1]
    conn.close()
    conn.close()
    assert driver.closed and conn.closed
    with pytest.raises(virtkit.ConnectionClosed):
        dom.info()
    with pytest.raises(virtkit.ConnectionClosed):
        conn.list_domains()
    assert "closed" in repr(conn)


def test_lookup_like_virsh() -> None:
    with virtkit.open("fake:///") as conn:
        assert conn.lookup("1").name == "alpha"
        assert conn.lookup("beta").id == 2
        assert conn.lookup("00000000-0000-0000-0000-000000000002").name == "beta"
        with pytest.raises(virtkit.NoSuchDomain):
            conn.lookup("gamma")
        with pytest.raises(virtkit.InvalidArgument):
            conn.lookup_by_uuid("not-a-uuid")


def test_domains_and_equality() -> None:
    with virtkit.open("fake:///") as conn:
        doms = conn.domains()
        assert [d.name for d in doms] == ["alpha", "beta"]
        assert doms[0] == conn.lookup_by_name("alpha")
        assert len({*doms, conn.lookup_by_id(1)}) == 2


def test_default_uri_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTKIT_DEFAULT_URI", "other:///")
    with virtkit.open() as conn:
        assert str(conn.uri) == "other:///"


class Proposer:
    """An in-code plugin proposing a default URI at a given priority."""

    virtkit_catalogue = "1.0"

    def __init__(self, uri: str, prio: int, handles: bool = True) -> None:
        self.virtkit_name = f"proposer{prio}"
        self.virtkit_default_uri = uri
        self.prio, self.handles = prio, handles

    # hooks as pluggy registers them: the probe calls them through the one hook caller
    @virtkit.hookimpl
    def can_handle(self, uri: virtkit.URI) -> bool:
        return self.handles

    @virtkit.hookimpl
    def priority(self, uri: virtkit.URI) -> int:
        return self.prio

    @virtkit.hookimpl
    def open(self, uri: virtkit.URI, options: virtkit.OpenOptions) -> object:
        raise AssertionError("the default-URI probe opens nothing")


def test_default_uri_probed_by_priority() -> None:
    from virtkit._compose import ComposeOptions, probe_default_uri

    low, high = Proposer("other:///", 1), Proposer("fake:///", 5)
    refuses = Proposer("partial:///", 100, handles=False)  # can't handle here: skipped
    opts = ComposeOptions(plugins=(low, high, refuses), entry_points=False)
    assert probe_default_uri(opts) == "fake:///"
    assert probe_default_uri(ComposeOptions(plugins=(low,), entry_points=False)) == "other:///"


def test_default_uri_none_anywhere() -> None:
    with pytest.raises(virtkit.NoDriver, match="no URI given"):
        virtkit.open(entry_points=False)


def test_concurrent_calls_share_one_connection() -> None:
    errors: list[BaseException] = []
    with virtkit.open("fake:///") as conn:
        dom = conn.lookup_by_id(1)

        def work() -> None:
            try:
                for _ in range(200):
                    assert dom.info().max_memory == 1024 * 1024
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert errors == []


def test_domains_from_one_bulk_state_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the stats' state group is served, domains() is one bulk call (libvirt's
    listAllDomains), and selects what the per-domain lookups select."""
    with virtkit.open("test:///default") as conn:
        calls: list[str] = []
        for op in ("connect_get_all_domain_stats", "domain_lookup_by_id", "domain_lookup_by_name"):
            real = conn._vt[op]
            monkeypatch.setitem(conn._vt, op, lambda *a, _op=op, _real=real, **k: calls.append(_op) or _real(*a, **k))
        bulk = {a: [(d.id, d.name, d.uuid) for d in conn.domains(all=a)] for a in (False, True)}
        assert calls == ["connect_get_all_domain_stats"] * 2
        monkeypatch.setattr(type(conn), "served_by", lambda self, op: None)
        for a, expected in bulk.items():
            assert [(d.id, d.name, d.uuid) for d in conn.domains(all=a)] == expected
        assert "domain_lookup_by_id" in calls
    assert [name for _, name, _ in bulk[True]] == ["test", "web", "paused-vm", "defined-vm"]
    assert [i for i, _, _ in bulk[False]] == [1, 2, 3]
