"""Stats (catalogue 1.1) in the core: per-group composition, argument checks, 1.0 plugins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import virtkit
from virtkit import CATALOGUE, URI, CpuStats, DomainRef, DomainStats, OpenOptions, hookimpl
from virtkit_test import Driver
from virtkit_test._host import DEFAULT_HOST


class Counting(Driver):
    """The test driver, counting bulk calls; ``drop`` names a domain it no longer sees."""

    __slots__ = ("calls", "drop", "fail")

    def __init__(self) -> None:
        super().__init__(DEFAULT_HOST, "mix:///")
        self.calls: list[tuple[tuple[str, ...], list[DomainRef] | None]] = []
        self.drop: str | None = None
        self.fail: Exception | None = None

    def connect_get_all_domain_stats(
        self, groups: Any, domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        self.calls.append((tuple(groups), domains))
        if self.fail is not None:
            raise self.fail
        records = super().connect_get_all_domain_stats(groups, domains, flags=flags)
        return [r for r in records if r.domain.name != self.drop]


class CpuOnly:
    """A second plugin's driver: serves the state and cpu groups only, with its own cpu figure."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.calls: list[tuple[str, ...]] = []

    @virtkit.stats_groups("state", "cpu")
    def connect_get_all_domain_stats(
        self, groups: Any, domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        self.calls.append(tuple(groups))
        return [
            r._replace(cpu=CpuStats(42) if r.cpu else None)
            for r in self.inner.connect_get_all_domain_stats(groups, domains)
        ]


class Part:
    virtkit_catalogue = "1.1"

    def __init__(self, name: str, prio: int, driver: object, catalogue: str = "1.1") -> None:
        self.virtkit_name = name
        self.prio = prio
        self.driver = driver
        self.virtkit_catalogue = catalogue

    @hookimpl
    def can_handle(self, uri: URI) -> bool:
        return True

    @hookimpl
    def priority(self, uri: URI) -> int:
        return self.prio

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        return self.driver


class Mix:
    def __init__(self) -> None:
        self.full = Counting()
        self.cpu = CpuOnly(Driver(DEFAULT_HOST, "mix:///"))  # its own host: the same domains and uuids

    def open(self, **kw: Any) -> virtkit.Connection:
        plugins = [Part("full", 10, self.full), Part("cpuonly", 50, self.cpu)]
        return virtkit.open("mix:///", entry_points=False, plugins=plugins, **kw)


@pytest.fixture
def mix() -> Iterator[Mix]:
    yield Mix()


def test_groups_split_between_plugins_and_merged(mix: Mix) -> None:
    with mix.open() as conn:
        groups = {r.operation: (r.plugin, r.priority, [c.plugin for c in r.lost]) for r in conn.explain().groups}
        assert groups == {
            "state": ("cpuonly", 50, ["full"]),
            "cpu": ("cpuonly", 50, ["full"]),
            "balloon": ("full", 10, []),
            "vcpu": ("full", 10, []),
            "block": ("full", 10, []),
            "net": ("full", 10, []),
        }
        records = conn.all_domain_stats()
        assert [r.domain.name for r in records] == ["test", "web", "paused-vm", "defined-vm"]
        assert {r.cpu for r in records} == {CpuStats(42)}  # cpuonly's figure
        assert records[0].balloon == virtkit.BalloonStats(524288, 1048576)  # full's
        assert records[1].block is not None and [b.device for b in records[1].block] == ["xvda", "xvdb"]
        # one call each: full names the domains (it serves the lookups), cpuonly is asked about those
        assert mix.cpu.calls == [("state", "cpu")]
        assert mix.full.calls == [(("balloon", "vcpu", "block", "net"), None)]
        text = conn.explain().render()
        assert "connect_get_all_domain_stats by group:" in text and "lost: full(10)" in text
        assert [g["plugin"] for g in conn.explain().to_dict()["stats_groups"]] == ["cpuonly"] * 2 + ["full"] * 4


def test_one_plugin_serving_the_groups_asked_is_called_alone(mix: Mix) -> None:
    with mix.open() as conn:
        assert conn.all_domain_stats("net")[0].net is not None  # one group as a plain string
        assert mix.full.calls == [(("net",), None)] and mix.cpu.calls == []


def test_the_plugin_naming_domains_is_asked_first_even_for_no_group(mix: Mix) -> None:
    """cpuonly's records would carry whatever names it makes up; full serves the lookups, so it
    names the records, asked for no group when it won none of those asked."""
    mix.cpu.inner = Renamed(mix.cpu.inner)
    with mix.open() as conn:
        records = conn.all_domain_stats(["cpu"])
        assert [r.domain.name for r in records] == ["test", "web", "paused-vm", "defined-vm"]
        assert {r.cpu for r in records} == {CpuStats(42)} and records[0].balloon is None
        assert mix.full.calls == [((), None)] and mix.cpu.calls == [("cpu",)]


def test_without_a_namer_serving_stats_the_winner_is_called_alone() -> None:
    cpu = CpuOnly(Driver(DEFAULT_HOST, "mix:///"))
    plugins = [Part("names", 10, Driver(DEFAULT_HOST, "mix:///"), catalogue="1.0"), Part("cpuonly", 50, cpu)]
    with virtkit.open("mix:///", entry_points=False, plugins=plugins) as conn:
        assert {r.cpu for r in conn.all_domain_stats(["cpu"])} == {CpuStats(42)}
        assert cpu.calls == [("cpu",)]


class Renamed:
    """A stats source that knows ids and UUIDs only, as a hypervisor does."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner

    def connect_get_all_domain_stats(self, groups: Any, domains: Any = None, **kw: Any) -> list[DomainStats]:
        records = self.inner.connect_get_all_domain_stats(groups, domains, **kw)
        if domains is not None:
            return records
        return [r._replace(domain=r.domain._replace(name=f"domain-{r.domain.id}")) for r in records]


def test_a_domain_gone_from_a_later_part_is_left_out(mix: Mix) -> None:
    mix.full.drop = "web"
    with mix.open() as conn:
        names = [r.domain.name for r in conn.all_domain_stats(["cpu", "balloon"])]
        assert names == ["test", "paused-vm", "defined-vm"]


class RunningOnly(CpuOnly):
    """A hypervisor's view: figures of running domains only, a shut-off one is unknown to it."""

    @virtkit.stats_groups("cpu")
    def connect_get_all_domain_stats(
        self, groups: Any, domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        records = super().connect_get_all_domain_stats(groups, domains, flags=flags)
        return [r for r in records if r.domain.id is not None]


def test_a_shut_off_domain_is_kept_when_a_later_part_knows_running_domains_only() -> None:
    full, cpu = Counting(), RunningOnly(Driver(DEFAULT_HOST, "mix:///"))
    plugins = [Part("full", 10, full), Part("running", 50, cpu)]
    with virtkit.open("mix:///", entry_points=False, plugins=plugins) as conn:
        records = {r.domain.name: r for r in conn.all_domain_stats(["state", "cpu", "balloon"])}
        assert list(records) == ["test", "web", "paused-vm", "defined-vm"]
        off = records["defined-vm"]
        assert off.domain.id is None and off.state is not None and off.state.state is virtkit.DomainState.SHUTOFF
        assert off.cpu is None  # no figure for a domain that does not run
        assert records["web"].cpu == CpuStats(42)
        full.drop = "web"  # a running domain gone from the first part's read is still left out
        assert "web" not in {r.domain.name for r in conn.all_domain_stats(["state", "cpu"])}


def test_prefer_and_exclude_apply_per_group() -> None:
    mix = Mix()
    with mix.open(prefer={"connect_get_all_domain_stats": "full"}) as conn:
        assert {r.plugin for r in conn.explain().groups} == {"full"}
        assert conn.all_domain_stats(["cpu"])[0].cpu != CpuStats(42)
        assert mix.cpu.calls == []
    with Mix().open(exclude={"connect_get_all_domain_stats": ["full"]}) as conn:
        assert [r.operation for r in conn.explain().groups if r.plugin] == ["state", "cpu"]
        rec = conn.all_domain_stats()[0]
        assert rec.cpu == CpuStats(42) and rec.block is None  # every group served here: state, cpu
        with pytest.raises(virtkit.Unsupported, match="balloon"):
            conn.all_domain_stats(["cpu", "balloon"])


def test_bad_arguments_are_invalid(mix: Mix) -> None:
    with mix.open() as conn:
        with pytest.raises(virtkit.InvalidArgument, match="unknown stats group") as err:
            conn.all_domain_stats(["cpu", "disk"])
        assert err.value.operation == "connect_get_all_domain_stats"
        with pytest.raises(virtkit.InvalidArgument, match="collection"):
            conn.all_domain_stats(7)  # type: ignore[arg-type]
        with pytest.raises(virtkit.InvalidArgument, match="DomainRefs"):
            conn.all_domain_stats(None, ["web"])  # type: ignore[list-item]
        with pytest.raises(virtkit.InvalidArgument, match="list of domains") as err:
            conn.all_domain_stats(None, 7)  # type: ignore[arg-type]
        assert err.value.operation == "connect_get_all_domain_stats"  # completed as any public error
        web = conn.lookup_by_name("web")
        assert [r.domain.name for r in conn.all_domain_stats(None, [web])] == ["web"]
        assert [r.domain.name for r in conn.all_domain_stats(None, (web.ref,))] == ["web"]


def test_a_failing_part_names_its_plugin(mix: Mix) -> None:
    mix.full.fail = OSError("disk statistics unreadable")
    with mix.open() as conn:
        with pytest.raises(virtkit.DriverError, match="unreadable") as err:
            conn.all_domain_stats()
        assert (err.value.driver, err.value.operation) == ("full", "connect_get_all_domain_stats")
        assert isinstance(err.value.__cause__, OSError)


class Old:
    """A catalogue 1.0 driver: the 1.0 operations of the test driver, nothing newer."""

    def __init__(self) -> None:
        self._inner = Driver(DEFAULT_HOST, "old:///")

    def __getattr__(self, name: str) -> Any:
        op = CATALOGUE.get(name)
        if op is None or op.since != "1.0":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_a_catalogue_1_0_plugin_keeps_working() -> None:
    assert virtkit.CATALOGUE_VERSION == "1.2"
    plugin = Part("old", 10, Old(), catalogue="1.0")
    with virtkit.open("old:///", entry_points=False, plugins=[plugin], strict=True) as conn:
        assert [d.name for d in conn.domains()] == ["test", "web", "paused-vm"]
        assert conn.explain().groups == ()
        assert conn.explain().route("connect_get_all_domain_stats").plugin is None
        with pytest.raises(virtkit.Unsupported):
            conn.all_domain_stats()
        with pytest.raises(virtkit.Unsupported):
            conn.lookup_by_name("web").block_stats()


def test_stats_groups_decorator_refuses_unknown_groups() -> None:
    with pytest.raises(TypeError):
        virtkit.stats_groups("cpu", "disk")
    with pytest.raises(TypeError):
        virtkit.stats_groups()


class FarSide(Counting):
    """Like a remote plugin's driver: it declares nothing, its far side's composition says what
    it serves (here: the far side serves state and cpu only)."""

    __slots__ = ("virtkit_remote_explanation",)

    def __init__(self) -> None:
        super().__init__()
        groups = tuple(virtkit.Route(g, "far" if g in ("state", "cpu") else None, 1) for g in virtkit.STATS_GROUPS)
        self.virtkit_remote_explanation = virtkit.Explanation("far:///", (), (), groups=groups)


def test_a_remote_driver_serves_the_groups_its_far_side_serves() -> None:
    far = FarSide()
    with virtkit.open("mix:///", entry_points=False, plugins=[Part("remote", 10, far)]) as conn:
        assert [r.operation for r in conn.explain().groups if r.plugin] == ["state", "cpu"]
        rec = conn.all_domain_stats()[0]  # every group served here: asks the far side for those only
        assert far.calls == [(("state", "cpu"), None)] and rec.balloon is None
        with pytest.raises(virtkit.Unsupported, match="block"):
            conn.all_domain_stats(["block"])


class RunningStateOnly:
    """A hypervisor-like stats source: the state group of running domains only."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner

    @virtkit.stats_groups("state")
    def connect_get_all_domain_stats(
        self, groups: Any, domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        return [r for r in self.inner.connect_get_all_domain_stats(groups, domains) if r.domain.id is not None]


def test_list_all_adds_the_definitions_another_plugin_keeps() -> None:
    from virtkit._cli_domain import listing

    keeper = Driver(DEFAULT_HOST, "mix:///")
    plugins = [Part("keeper", 10, keeper, catalogue="1.0"), Part("hyper", 50, RunningStateOnly(keeper))]
    with virtkit.open("mix:///", entry_points=False, plugins=plugins) as conn:
        names = [(ref.name, state) for ref, state in listing(conn, True)]
        assert names == [
            ("test", virtkit.DomainState.RUNNING),
            ("web", virtkit.DomainState.RUNNING),
            ("paused-vm", virtkit.DomainState.PAUSED),
            ("defined-vm", virtkit.DomainState.SHUTOFF),
        ]
        assert [ref.name for ref, _ in listing(conn, False, inactive=True)] == ["defined-vm"]
