"""create / define / start / undefine, the transient versus persistent distinction, autostart."""

from __future__ import annotations

import json
import pathlib
import uuid

import pytest

import virtkit
import virtkit_test
from virtkit import DomainConfig, DomainState


def test_create_starts_a_transient_domain_with_the_next_id(conn: virtkit.Connection) -> None:
    dom = conn.create(DomainConfig("new", 131072, vcpus=2, os_type="hvm"))
    assert dom.id == 4
    assert dom.info().state is DomainState.RUNNING
    assert conn.list_domains() == [1, 2, 3, 4]
    assert "new" not in conn.list_defined_domains()
    cfg = dom.config()
    assert (cfg.memory, cfg.max_memory, cfg.vcpus, cfg.max_vcpus, cfg.os_type) == (131072, 131072, 2, 2, "hvm")
    assert cfg.uuid == dom.uuid
    assert conn.create(DomainConfig("newer", 65536)).id == 5


def test_destroying_a_transient_domain_removes_it(conn: virtkit.Connection) -> None:
    dom = conn.create(DomainConfig("tmp", 65536))
    dom.destroy()
    assert dom.id is None
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_name("tmp")
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_uuid(dom.uuid)
    assert "tmp" not in conn.list_defined_domains()
    assert conn.list_domains() == [1, 2, 3]


def test_shutting_down_a_transient_domain_removes_it(conn: virtkit.Connection) -> None:
    dom = conn.create(DomainConfig("tmp", 65536))
    dom.shutdown()
    with pytest.raises(virtkit.NoSuchDomain):
        dom.info()


def test_define_makes_a_shut_off_persistent_domain(conn: virtkit.Connection) -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    dom = conn.define(DomainConfig("db", 262144, max_memory=524288, uuid=u, kernel="/boot/vmlinuz"))
    assert (dom.id, dom.uuid) == (None, u)
    assert dom.info().state is DomainState.SHUTOFF
    assert conn.list_defined_domains() == ["db", "defined-vm"]
    assert conn.list_domains() == [1, 2, 3]
    assert dom.config() == DomainConfig("db", 262144, max_memory=524288, max_vcpus=1, uuid=u, kernel="/boot/vmlinuz")
    dom.start()
    assert dom.id == 4
    dom.shutdown()
    assert conn.lookup_by_uuid(u).id is None  # still defined after it stopped


def test_undefine_shut_off_domain_removes_it(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("defined-vm")
    dom.undefine()
    assert conn.list_defined_domains() == []
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_name("defined-vm")


def test_undefine_running_persistent_makes_it_transient(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("web")
    dom.undefine()
    assert dom.info().state is DomainState.RUNNING  # still running...
    assert conn.lookup_by_id(2) == dom
    dom.destroy()  # ...until it stops: then it is gone
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_name("web")


def test_undefine_transient_is_refused(conn: virtkit.Connection) -> None:
    dom = conn.create(DomainConfig("tmp", 65536))
    with pytest.raises(virtkit.InvalidOperation, match="transient"):
        dom.undefine()
    assert dom.info().state is DomainState.RUNNING


@pytest.mark.parametrize("how", ["create", "define"])
def test_duplicate_name_is_refused(conn: virtkit.Connection, how: str) -> None:
    with pytest.raises(virtkit.InvalidArgument, match="'test' already exists"):
        getattr(conn, how)(DomainConfig("test", 65536))
    assert conn.list_domains() == [1, 2, 3]


@pytest.mark.parametrize("how", ["create", "define"])
def test_duplicate_uuid_is_refused(conn: virtkit.Connection, how: str) -> None:
    taken = conn.lookup_by_name("defined-vm").uuid
    with pytest.raises(virtkit.InvalidArgument, match=f"uuid {taken} already exists"):
        getattr(conn, how)(DomainConfig("other", 65536, uuid=taken))
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_name("other")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (DomainConfig("m", 2048, max_memory=1024), "memory 2048 KiB is above max_memory 1024"),
        (DomainConfig("v", 1024, vcpus=4, max_vcpus=2), "vcpus 4 is above max_vcpus 2"),
        (DomainConfig("z", 0), r"memory \(KiB\) must be between 1 and"),
        (DomainConfig("", 1024), "invalid domain name ''"),
        (DomainConfig("o", 1024, on_crash="explode"), "on_crash"),
        (DomainConfig("t", 1024, os_type=""), "os_type"),
        ({"name": "dict", "memory": 1024}, "expected a DomainConfig, got dict"),
    ],
)
def test_bad_configs_are_refused(conn: virtkit.Connection, config: object, match: str) -> None:
    for how in (conn.create, conn.define):
        with pytest.raises(virtkit.InvalidArgument, match=match):
            how(config)  # type: ignore[arg-type]
    assert len(conn.domains(all=True)) == 4


def test_start_a_defined_after_a_create_takes_the_next_id(conn: virtkit.Connection) -> None:
    conn.create(DomainConfig("a", 1024))
    dom = conn.define(DomainConfig("b", 1024))
    dom.start()
    assert dom.id == 5


def test_random_uuid_when_config_has_none(conn: virtkit.Connection) -> None:
    a = conn.define(DomainConfig("a", 1024))
    b = conn.define(DomainConfig("b", 1024))
    assert a.uuid != b.uuid
    assert a.config().uuid == a.uuid


# -- persistence and autostart (catalogue 1.2) --------------------------------------------------


def test_persistence_follows_define_create_and_undefine(conn: virtkit.Connection) -> None:
    assert len(conn.domains(all=True)) == 4 and all(d.is_persistent() for d in conn.domains(all=True))
    once = conn.create(DomainConfig("once", 65536))
    assert once.is_persistent() is False
    kept = conn.define(DomainConfig("kept", 65536))
    assert kept.is_persistent() is True
    kept.start()
    assert kept.is_persistent() is True
    web = conn.lookup_by_name("web")
    web.set_autostart(True)
    web.undefine()  # running: it becomes transient, and a transient domain never autostarts
    assert (web.is_persistent(), web.autostart()) == (False, False)
    with pytest.raises(virtkit.InvalidOperation, match="transient"):
        web.set_autostart(True)


def test_autostart_is_kept_and_read_back(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("defined-vm")
    assert dom.autostart() is False
    dom.set_autostart(True)
    assert dom.autostart() is True
    assert conn.lookup_by_name("defined-vm").info().state is DomainState.SHUTOFF  # marking starts nothing
    dom.start()
    dom.destroy()
    assert dom.autostart() is True  # the mark belongs to the definition, not to one run
    dom.set_autostart(False)
    assert dom.autostart() is False


def test_autostart_of_a_transient_domain_is_refused(conn: virtkit.Connection) -> None:
    once = conn.create(DomainConfig("once", 65536))
    assert once.autostart() is False
    with pytest.raises(virtkit.InvalidOperation, match="transient"):
        once.set_autostart(True)
    assert once.autostart() is False


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_set_autostart_takes_a_bool_only(conn: virtkit.Connection, value: object) -> None:
    dom = conn.lookup_by_name("defined-vm")
    with pytest.raises(virtkit.InvalidArgument, match="autostart must be True or False"):
        dom.set_autostart(value)  # type: ignore[arg-type]
    assert dom.autostart() is False


def test_autostart_from_a_host_file(tmp_path: pathlib.Path) -> None:
    host = tmp_path / "host.json"
    boots = {"name": "boots", "state": "shutoff", "memory": 65536, "autostart": True}
    host.write_text(json.dumps({"domains": [boots]}))
    with virtkit.open(f"test://{host}", entry_points=False, plugins=[virtkit_test.plugin]) as c:
        assert c.lookup_by_name("boots").autostart() is True
