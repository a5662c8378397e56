"""The driver composed with a pretend host: defined domains beside running ones, xl for changes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import Host

import virtkit
from virtkit import DomainConfig, DomainState, InvalidArgument, InvalidOperation, NoSuchDomain, VcpuFlags

KERNEL = "/fake/vmlinux"


def cfg(name: str = "g1", **kw: object) -> DomainConfig:
    base: dict[str, object] = {"name": name, "memory": 131072, "kernel": KERNEL}
    return DomainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_explain_routes_defined_domain_operations_here(conn: virtkit.Connection) -> None:
    for op in ("domain_create", "domain_define", "connect_list_defined_domains", "domain_get_info"):
        assert conn.served_by(op) == "xen_libxl", op
    assert conn.served_by("connect_list_domains") == "fake_host"


def test_define_start_destroy_undefine(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.define(cfg(max_vcpus=2))
    assert dom.id is None and conn.list_defined_domains() == ["g1"]
    info = dom.info()
    assert (info.state, info.memory, info.vcpus) == (DomainState.SHUTOFF, 131072, 1)
    assert dom.vcpus(flags=VcpuFlags.MAXIMUM) == 2
    assert conn.lookup_by_uuid(dom.uuid).name == "g1"
    assert [d.name for d in conn.domains(all=True)] == ["Domain-0", "g1"]
    with pytest.raises(InvalidOperation):
        dom.suspend()
    with pytest.raises(InvalidOperation):
        dom.destroy()
    running = conn.lookup_by_name("g1")
    running.start()
    assert running.id == host.doms()["g1"]["id"]
    assert host.doms()["g1"]["uuid"] == str(dom.uuid)
    assert conn.list_defined_domains() == []
    with pytest.raises(InvalidOperation, match="already running"):
        running.start()
    assert running.info().state is DomainState.RUNNING
    running.destroy()
    assert "g1" not in host.doms()
    again = conn.lookup_by_name("g1")
    assert again.id is None and again.info().state is DomainState.SHUTOFF
    again.undefine()
    with pytest.raises(NoSuchDomain):
        conn.lookup_by_name("g1")


def test_stale_id_of_a_persistent_domain_resolves_to_its_definition(conn: virtkit.Connection) -> None:
    dom = conn.define(cfg())
    dom.start()
    conn.vtable["domain_destroy"](dom.ref, flags=0)
    assert conn.vtable["domain_get_info"](dom.ref, flags=0).state is DomainState.SHUTOFF


def test_create_is_transient_and_refuses_names_and_uuids_in_use(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.create(cfg("t1"))
    assert dom.id is not None and conn.list_defined_domains() == []
    with pytest.raises(InvalidOperation, match="already running"):
        conn.create(cfg("t1"))
    with pytest.raises(InvalidOperation, match="uuid"):
        conn.create(cfg("t2", uuid=dom.uuid))
    conn.define(cfg("d1"))
    with pytest.raises(InvalidOperation, match="already defined"):
        conn.create(cfg("d1"))
    with pytest.raises(InvalidOperation, match="transient"):
        dom.undefine()
    dom.destroy()
    with pytest.raises(NoSuchDomain):
        conn.lookup_by_uuid(dom.uuid)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"kernel": None}, "Neither kernel nor bootloader"),
        ({"memory": 4 * 1024 * 1024}, "Out of memory"),
        ({"kernel": "/nonexistent"}, "failed to open file"),
    ],
)
def test_bad_configs_leave_nothing_behind(
    conn: virtkit.Connection, host: Host, kw: dict[str, object], needle: str
) -> None:
    before = set(host.doms())
    with pytest.raises(InvalidArgument, match=needle):
        conn.create(cfg("bad", **kw))
    assert set(host.doms()) == before
    assert conn.list_defined_domains() == []
    assert not list((host.state_dir / "run").iterdir())


def test_define_checks_the_config_with_xl(conn: virtkit.Connection, host: Host) -> None:
    with pytest.raises(InvalidArgument, match="Neither kernel nor bootloader"):
        conn.define(cfg("bad", kernel=None))
    assert conn.list_defined_domains() == []
    assert not list((host.state_dir / "run").iterdir())


def test_bad_names_are_refused_where_they_enter(conn: virtkit.Connection) -> None:
    for bad in ("", "a/b", "x\ny", "../up"):
        with pytest.raises(InvalidArgument):
            conn.define(cfg(bad))
        with pytest.raises(InvalidArgument):
            conn.create(cfg(bad))


def test_redefine_keeps_uuid_and_refuses_a_taken_name(conn: virtkit.Connection) -> None:
    a = conn.define(cfg("a"))
    again = conn.define(cfg("a", memory=262144))
    assert again.uuid == a.uuid and again.info().memory == 262144
    conn.define(cfg("b"))
    with pytest.raises(InvalidOperation, match="already defined"):
        conn.define(cfg("b", uuid=a.uuid))


def test_set_vcpus_and_memory_of_defined_and_running(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.define(cfg(max_vcpus=2, max_memory=262144))
    dom.set_vcpus(2)
    with pytest.raises(InvalidArgument):
        dom.set_vcpus(3)
    with pytest.raises(InvalidArgument):
        dom.set_vcpus(0)
    dom.set_memory(196608)
    with pytest.raises(InvalidArgument):
        dom.set_memory(262144 + 1024)
    assert (dom.info().vcpus, dom.info().memory) == (2, 196608)
    dom.set_vcpus(4, flags=VcpuFlags.MAXIMUM)
    assert dom.vcpus(flags=VcpuFlags.MAXIMUM) == 4
    dom.set_vcpus(1)
    dom.start()
    run = dom
    assert host.doms()["g1"]["vcpus"] == 1 and host.doms()["g1"]["maxv"] == 4
    run.set_vcpus(3)
    assert host.doms()["g1"]["vcpus"] == 3
    with pytest.raises(InvalidArgument):
        run.set_vcpus(5)
    with pytest.raises(InvalidOperation):
        run.set_vcpus(2, flags=VcpuFlags.MAXIMUM)


def test_get_config_of_running_and_defined(conn: virtkit.Connection) -> None:
    d = conn.define(cfg(cmdline="console=hvc0", on_reboot="destroy"))
    assert d.config().cmdline == "console=hvc0"
    d.start()
    live = d.config()
    assert (live.name, live.uuid, live.kernel, live.on_reboot) == ("g1", d.uuid, KERNEL, "destroy")
    assert conn.lookup_by_id(0).config().name == "Domain-0"


def test_shutdown_and_reboot_follow_on_actions(conn: virtkit.Connection, host: Host) -> None:
    a = conn.create(cfg("a", on_reboot="restart"))
    a.reboot()
    assert host.doms()["a"]["id"] != a.id and host.doms()["a"]["uuid"] == str(a.uuid)
    b = conn.define(cfg("b", on_reboot="destroy"))
    b.start()
    b.reboot()
    assert "b" not in host.doms() and conn.lookup_by_name("b").id is None
    c = conn.create(cfg("c"))
    c.shutdown()
    assert "c" not in host.doms()
    with pytest.raises(NoSuchDomain):
        conn.lookup_by_name("c")
    with pytest.raises(InvalidOperation, match="Domain-0"):
        conn.lookup_by_id(0).shutdown()


def test_readonly_connection_refuses_mutations(host: Host) -> None:
    rw = host.open()
    rw.define(cfg())
    ro = host.open(readonly=True)
    try:
        with pytest.raises(virtkit.ReadOnlyError):
            ro.define(cfg("x"))
        with pytest.raises(virtkit.ReadOnlyError):
            ro.lookup_by_name("g1").start()
        assert ro.list_defined_domains() == ["g1"]
    finally:
        ro.close()
        rw.close()


def test_corrupted_definition_fails_alone(conn: virtkit.Connection, host: Host) -> None:
    good = conn.define(cfg("good"))
    bad = conn.define(cfg("bad"))
    (host.state_dir / "domains" / f"{bad.uuid}.json").write_text("garbage")
    assert conn.list_defined_domains() == ["good"]
    with pytest.raises(virtkit.ProtocolError):
        conn.lookup_by_uuid(bad.uuid)
    assert good.info().state is DomainState.SHUTOFF


def test_unknown_flags_and_ghosts(conn: virtkit.Connection) -> None:
    with pytest.raises(InvalidArgument):
        conn.define(cfg(), flags=8)
    ghost = virtkit.DomainRef("nobody", uuid.uuid4(), None)
    for op in ("domain_get_info", "domain_start", "domain_undefine", "domain_get_config", "domain_destroy"):
        with pytest.raises(NoSuchDomain):
            conn.vtable[op](ghost, flags=0)


def test_inner_connection_does_not_include_this_plugin(conn: virtkit.Connection) -> None:
    drivers = dict(conn._drivers)
    inner = drivers["xen_libxl"].inner
    assert inner.served_by("domain_create") is None
    assert Path(drivers["xen_libxl"].state.root).name == "state"


def test_a_failed_create_that_left_a_domain_destroys_it(conn: virtkit.Connection, host: Host) -> None:
    with pytest.raises(InvalidArgument, match="cannot"):
        conn.create(cfg("half", kernel="/fake/leftover"))
    assert "half" not in host.doms()


def test_a_domain_that_dies_while_created_is_reported(conn: virtkit.Connection) -> None:
    with pytest.raises(InvalidOperation, match="died while it was being created"):
        conn.create(cfg("gone", kernel="/fake/dies"))
    with pytest.raises(NoSuchDomain):
        conn.lookup_by_name("gone")
