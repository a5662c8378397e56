"""Composition: per-operation priorities, prefer/exclude, fallback, mandatory ops, read-only."""

from __future__ import annotations

import pytest

import virtkit
from virtkit import URI, Declined, DomainInfo, DomainRef, DomainState, OpenOptions, hookimpl, priority


def test_per_operation_priority_decides() -> None:
    with virtkit.open("compete:///") as conn:
        ex = conn.explain()
        info = ex.route("domain_get_info")
        assert (info.plugin, info.priority) == ("compete_b", 30)
        assert [(c.plugin, c.priority) for c in info.lost] == [("compete_a", 5)]
        susp = ex.route("domain_suspend")
        assert (susp.plugin, susp.priority) == ("compete_a", 20)
        assert [(c.plugin, c.priority) for c in susp.lost] == [("compete_b", 10)]
        dom = conn.lookup_by_id(1)
        assert dom.info() == DomainInfo(DomainState.BLOCKED, 2048, 1024, 2, 7)  # b's answer
        dom.suspend()  # a's
        assert conn.served_by("domain_suspend") == "compete_a"


def test_vtable_is_frozen_mapping_of_bound_callables() -> None:
    with virtkit.open("compete:///") as conn:
        vt = conn.vtable
        assert set(vt) == set(virtkit.CATALOGUE)
        with pytest.raises(TypeError):
            vt["domain_get_info"] = print  # type: ignore[index]
        fn = vt["domain_get_info"]
        assert fn.__self__.__class__.__name__ == "DriverB"  # type: ignore[attr-defined]


def test_prefer_overrides_priority() -> None:
    with virtkit.open("compete:///", prefer={"domain_get_info": "compete_a"}) as conn:
        assert conn.served_by("domain_get_info") == "compete_a"
        assert "preferred" in conn.explain().route("domain_get_info").note
        assert conn.lookup_by_id(1).info().state is DomainState.RUNNING


def test_prefer_unknown_plugin_for_operation_is_an_error() -> None:
    with pytest.raises(virtkit.InvalidArgument, match="does not provide domain_get_info"):
        virtkit.open("compete:///", prefer={"domain_get_info": "nobody"})
    with pytest.raises(virtkit.InvalidArgument, match="unknown operation"):
        virtkit.open("compete:///", prefer={"domain_fly": "compete_a"})


def test_exclude_per_operation_and_everywhere() -> None:
    with virtkit.open("compete:///", exclude={"domain_get_info": ["compete_b"]}) as conn:
        assert conn.served_by("domain_get_info") == "compete_a"
        assert "compete_b excluded" in conn.explain().route("domain_get_info").note
    with virtkit.open("compete:///", exclude={"*": ["compete_b"]}) as conn:
        assert "compete_b" not in {conn.served_by(op) for op in virtkit.CATALOGUE}


def test_no_silent_fallback_error_reaches_caller() -> None:
    with virtkit.open("compete:///", prefer={"domain_suspend": "compete_b"}) as conn:
        dom = conn.lookup_by_id(1)
        with pytest.raises(virtkit.DriverError) as info:
            dom.suspend()
        err = info.value
        assert (err.operation, err.driver) == ("domain_suspend", "compete_b")
        assert isinstance(err.__cause__, RuntimeError)
        assert "b cannot suspend" in str(err)


def test_explicit_fallback_chain() -> None:
    with virtkit.open("compete:///", prefer={"domain_suspend": "compete_b"}, fallback=["domain_suspend"]) as conn:
        assert conn.explain().route("domain_suspend").fallback
        dom = conn.lookup_by_id(2)
        dom.suspend()  # b raises, a serves
        with pytest.raises(virtkit.InvalidOperation) as info:
            dom.suspend()  # now both fail: a says already paused
        assert any("b cannot suspend" in n for n in info.value.__notes__)


def test_mandatory_missing_fails_open_naming_them() -> None:
    with pytest.raises(virtkit.NoDriver) as info:
        virtkit.open("partial:///")
    for op in ("connect_list_domains", "domain_lookup_by_id", "domain_get_info"):
        assert op in str(info.value)


def test_unsupported_operation_is_typed() -> None:
    with virtkit.open("fake:///") as conn:
        with pytest.raises(virtkit.Unsupported) as info:
            conn.node_info()
        assert info.value.operation == "node_get_info"
        assert conn.explain().route("node_get_info").plugin is None


def test_readonly_refuses_mutating_operations_centrally() -> None:
    with virtkit.open("fake:///", readonly=True) as conn:
        dom = conn.lookup_by_name("alpha")
        assert dom.info().state is DomainState.RUNNING
        with pytest.raises(virtkit.ReadOnlyError) as info:
            dom.suspend()
        assert info.value.operation == "domain_suspend"
        assert dom.info().state is DomainState.RUNNING  # the driver was never called
        for op in virtkit.CATALOGUE.values():
            if op.mutates:
                with pytest.raises((virtkit.ReadOnlyError, virtkit.Unsupported)):
                    conn.vtable[op.name]()


class InCodePlugin:
    """An integrator's plugin registered in code, without entry points."""

    virtkit_catalogue = "1.0"
    virtkit_name = "incode"

    def __init__(self, prio: int = 50, decline: str | None = None) -> None:
        self.prio = prio
        self.decline = decline
        self.opened: list[object] = []

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        return Declined(self.decline) if self.decline else True

    @hookimpl
    def priority(self, uri: URI) -> int:
        return self.prio

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        plugin = self

        class Driver:
            readonly = options.readonly

            @priority(99)
            def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
                return DomainInfo(DomainState.CRASHED, 1, 1, 1, 1)

            def close(self) -> None:
                plugin.opened.remove(self)

        d = Driver()
        self.opened.append(d)
        return d


def test_in_code_plugin_composes_with_entry_points() -> None:
    p = InCodePlugin()
    with virtkit.open("fake:///", plugins=[p]) as conn:
        assert conn.served_by("domain_get_info") == "incode"
        assert conn.served_by("domain_lookup_by_id") == "fake_good"
        assert conn.lookup_by_id(1).info().state is DomainState.CRASHED
        attempt = next(a for a in conn.explain().attempts if a.plugin == "incode")
        assert attempt.origin == "registered in code"
    assert p.opened == []  # closed with the connection


def test_in_code_only_without_entry_points() -> None:
    with pytest.raises(virtkit.NoDriver, match="mandatory"):
        virtkit.open("fake:///", plugins=[InCodePlugin()], entry_points=False)


def test_declined_in_code_plugin_reason_shown() -> None:
    with virtkit.open("fake:///", plugins=[InCodePlugin(decline="not today")]) as conn:
        a = next(a for a in conn.explain().attempts if a.plugin == "incode")
        assert (a.outcome, a.reason) == (virtkit.Outcome.DECLINED, "not today")
        assert "not today" in conn.explain().render()


def test_outranked_driver_is_closed_at_open() -> None:
    class Useless(InCodePlugin):
        virtkit_name = "useless"

        @hookimpl
        def open(self, uri: URI, options: OpenOptions) -> object:
            d = super().open(uri, options)
            type(d).domain_get_info.__virtkit_priority__ = -1  # type: ignore[attr-defined]
            return d

    p = Useless(prio=-5)
    with virtkit.open("fake:///", plugins=[p]) as conn:
        assert conn.served_by("domain_get_info") == "fake_good"
        assert p.opened == []  # serves nothing: released at open


def test_open_error_is_recorded_and_other_plugins_still_open() -> None:
    with pytest.raises(virtkit.NoDriver) as info:
        virtkit.open("fake:///boom")
    assert "cannot open /boom" in str(info.value)
    assert "fake_decliner declined" in str(info.value)


def test_tie_is_explained() -> None:
    a, b = InCodePlugin(prio=10), InCodePlugin(prio=10)
    b.virtkit_name = "incode2"  # type: ignore[misc]
    with virtkit.open("fake:///", plugins=[a, b]) as conn:
        route = conn.explain().route("domain_get_info")
        assert route.plugin == "incode"
        assert "tie" in route.note


def test_driver_returning_wrong_type_is_driver_error() -> None:
    class Liar(InCodePlugin):
        @hookimpl
        def open(self, uri: URI, options: OpenOptions) -> object:
            class D:
                @priority(100)
                def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> object:  # noqa: A002
                    return {"id": id}

            return D()

    with (
        virtkit.open("fake:///", plugins=[Liar()]) as conn,
        pytest.raises(virtkit.DriverError, match="not a DomainRef"),
    ):
        conn.lookup_by_id(1)


def test_catalogue_incompatible_in_code_plugin_recorded() -> None:
    p = InCodePlugin()
    p.virtkit_catalogue = "2.0"  # type: ignore[misc]
    with virtkit.open("fake:///", plugins=[p]) as conn:
        assert any("incompatible" in e for _n, _t, e in conn.explain().load_failures)


def test_typed_error_from_open_reaches_the_caller() -> None:
    class Picky(InCodePlugin):
        virtkit_name = "picky"

        @hookimpl
        def open(self, uri: URI, options: OpenOptions) -> object:
            raise virtkit.InvalidArgument(f"{uri.path}: no such host file")

    with pytest.raises(virtkit.InvalidArgument) as info:
        virtkit.open("nosuch:///x.json", plugins=[Picky()])
    assert info.value.driver == "picky" and info.value.uri == "nosuch:///x.json"
    assert "no such host file" in str(info.value)
