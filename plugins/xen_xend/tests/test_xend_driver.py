"""The driver through virtkit's public API, against the emulated xend over TCP and the unix socket."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

import virtkit
from virtkit import DomainConfig, DomainState, VcpuFlags
from virtkit_xen_xend import XendError, parse_one, value
from virtkit_xen_xend.emulator import XendEmulator, XendFault

RHEL5 = uuid.UUID("4f77abd2-3019-58e8-3bab-6fbf2118f880")


def test_connection_facts(conn: virtkit.Connection) -> None:
    assert conn.type() == "Xen"
    assert conn.version() == virtkit.Version(3, 0, 0)  # xen_extra '-devel': no release number
    assert conn.hostname() == "talon"
    ni = conn.node_info()
    assert (ni.model, ni.cpus, ni.mhz, ni.memory, ni.free_memory) == ("i686", 2, 696, 767 * 1024, 37 * 1024)
    assert (ni.nodes, ni.sockets, ni.cores, ni.threads) == (1, 2, 1, 1)  # sockets derived as libvirt does


def test_listing(conn: virtkit.Connection) -> None:
    assert conn.list_domains() == [0, 1, 5, 21, 22]
    assert conn.num_of_domains() == 5
    assert conn.list_defined_domains() == ["test"]
    assert [d.name for d in conn.domains(all=True)] == ["Domain-0", "s10u4", "rhel5", "domu-224", "test2vm", "test"]


def test_lookups(conn: virtkit.Connection) -> None:
    by_id, by_name, by_uuid = conn.lookup_by_id(5), conn.lookup_by_name("rhel5"), conn.lookup_by_uuid(RHEL5)
    assert by_id == by_name == by_uuid
    assert (by_id.id, by_id.name, by_id.uuid) == (5, "rhel5", RHEL5)
    assert conn.lookup_by_name("test").id is None
    for bad in (
        lambda: conn.lookup_by_id(99),
        lambda: conn.lookup_by_name("nosuch"),
        lambda: conn.lookup_by_uuid(uuid.uuid4()),
    ):
        with pytest.raises(virtkit.NoSuchDomain):
            bad()
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_name("5")  # xend would answer with domid 5: not a domain *named* "5"


def test_info_and_getters(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("rhel5")
    info = dom.info()
    assert (info.state, info.max_memory, info.memory, info.vcpus) == (DomainState.BLOCKED, 385 * 1024, 175 * 1024, 1)
    assert info.cpu_time >= 137_189_121_425
    assert dom.state().state is DomainState.BLOCKED
    assert dom.max_memory() == 385 * 1024
    assert dom.os_type() == "linux" and conn.lookup_by_name("domu-224").os_type() == "hvm"
    assert dom.vcpus() == 1 and dom.vcpus(flags=VcpuFlags.MAXIMUM) == 1
    cfg = dom.config()
    assert (cfg.name, cfg.uuid, cfg.kernel) == ("rhel5", RHEL5, "/var/lib/xen/vmlinuz.blj7cs")
    assert [d["type"] for d in cfg.devices] == ["disk", "interface", "graphics"]
    assert value(parse_one(cfg.extra["sxp"]), "name") == "rhel5"


def test_suspend_resume_memory_vcpus(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("test2vm")
    dom.suspend()
    assert dom.info().state is DomainState.PAUSED
    dom.resume()
    assert dom.info().state in (DomainState.RUNNING, DomainState.BLOCKED)
    dom.set_max_memory(256 * 1024)
    dom.set_memory(200 * 1024 + 1023)  # rounded down to whole MiB, as libvirt does
    assert (dom.info().max_memory, dom.info().memory) == (256 * 1024, 200 * 1024)
    with pytest.raises(virtkit.InvalidArgument, match=r"above the maximum of domain 'test2vm' \(262144 KiB\)") as info:
        dom.set_memory(300 * 1024)
    assert info.value.operation == "domain_set_memory" and info.value.driver == "xen_xend"
    with pytest.raises(virtkit.InvalidArgument):
        dom.set_memory(512)
    d0 = conn.lookup_by_id(0)
    d0.set_vcpus(1)
    assert d0.vcpus() == 1 and d0.vcpus(flags=VcpuFlags.MAXIMUM) == 2
    with pytest.raises(virtkit.InvalidArgument, match=r"above the maximum of domain 'Domain-0' \(2\)"):
        d0.set_vcpus(3)
    with pytest.raises(virtkit.Unsupported):
        d0.set_vcpus(2, flags=VcpuFlags.MAXIMUM)


def test_xend_errors_are_typed(conn: virtkit.Connection) -> None:
    with pytest.raises(virtkit.InvalidOperation, match="cannot destroy domain 'Domain-0'"):
        conn.lookup_by_id(0).destroy()
    # state errors are caught on the record fetched before acting: the contract's typed errors
    with pytest.raises(virtkit.InvalidOperation, match="it is not running"):
        conn.lookup_by_name("test").suspend()
    with pytest.raises(virtkit.InvalidOperation, match="it is not paused"):
        conn.lookup_by_name("rhel5").resume()
    with pytest.raises(virtkit.InvalidOperation, match="while it runs"):
        conn.lookup_by_name("rhel5").undefine()
    with pytest.raises(virtkit.InvalidArgument, match="unsupported flags"):
        conn.list_domains(flags=1)


def test_xend_refusing_what_the_record_allowed_is_a_driver_error(
    conn: virtkit.Connection, emu: XendEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise XendFault(500, "balloon driver not responding")

    monkeypatch.setattr(emu.host, "mem_target_set", refuse)
    with pytest.raises(virtkit.DriverError, match="xend: balloon driver not responding") as info:
        conn.lookup_by_name("rhel5").set_memory(150 * 1024)
    assert isinstance(info.value.__cause__, XendError) and info.value.__cause__.status == 500


def test_a_stale_ref_is_no_such_domain(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("domu-224")
    dom.destroy()  # transient: gone
    with pytest.raises(virtkit.NoSuchDomain):
        dom.info()


def test_shutdown_reboot_follow_the_domains_actions(conn: virtkit.Connection) -> None:
    s10 = conn.lookup_by_name("s10u4")  # on_poweroff destroy, on_reboot restart
    old_id = s10.id
    s10.reboot()
    s10 = conn.lookup_by_name("s10u4")
    assert s10.id is not None and s10.id != old_id  # Xen restarts as a new domain
    s10.shutdown()
    with pytest.raises(virtkit.NoSuchDomain):  # transient and powered off: gone
        conn.lookup_by_name("s10u4")


def test_define_start_shutdown_undefine(conn: virtkit.Connection) -> None:
    cfg = DomainConfig(name="vk-new", memory=128 * 1024, vcpus=1, kernel="/boot/vmlinuz", cmdline="ro")
    dom = conn.define(cfg)
    assert dom.id is None and "vk-new" in conn.list_defined_domains()
    assert dom.info().state is DomainState.SHUTOFF
    dom.start()
    assert dom.id is not None and dom.info().state is DomainState.RUNNING
    dom.shutdown()
    assert dom.id is None and "vk-new" in conn.list_defined_domains()  # managed: stays defined
    dom.undefine()
    with pytest.raises(virtkit.NoSuchDomain):
        conn.lookup_by_name("vk-new")


def test_create_from_fields_and_from_another_domains_config(conn: virtkit.Connection) -> None:
    dom = conn.create(DomainConfig(name="vk-tmp", memory=64 * 1024, kernel="/k", devices=({"type": "interface"},)))
    assert dom.id is not None and dom.info().memory == 64 * 1024
    assert dom.config().devices[0]["type"] == "interface"
    base = conn.lookup_by_name("rhel5").config()
    clone = conn.create(dataclasses.replace(base, name="rhel5-clone", uuid=uuid.uuid4(), memory=100 * 1024))
    c = clone.config()
    assert (c.kernel, c.memory, len(c.devices)) == (base.kernel, 100 * 1024, len(base.devices))
    with pytest.raises(virtkit.InvalidOperation, match="already exists"):
        conn.create(dataclasses.replace(base, uuid=uuid.uuid4()))
    twin = conn.create(dataclasses.replace(base, name="rhel5-twin", uuid=None))  # xend makes its uuid
    assert twin.uuid not in (base.uuid, clone.uuid) and twin.config().kernel == base.kernel


def test_readonly_refuses_mutations_centrally(emu: XendEmulator) -> None:
    with virtkit.open(emu.uri, readonly=True, timeout=5) as ro:
        dom = ro.lookup_by_name("rhel5")
        assert dom.info().state is DomainState.BLOCKED
        with pytest.raises(virtkit.ReadOnlyError):
            dom.destroy()
    assert emu.host.find("rhel5").active


def test_unix_socket_uri(emu: XendEmulator) -> None:
    with virtkit.open(emu.unix_uri, timeout=5) as c:
        assert c.lookup_by_id(5).name == "rhel5"
        assert c.served_by("domain_get_info") == "xen_xend"


def test_one_keep_alive_connection_serves_many_calls(emu: XendEmulator) -> None:
    with virtkit.open(emu.uri, timeout=5) as c:
        before = emu.connections
        dom = c.lookup_by_name("rhel5")
        for _ in range(20):
            dom.info()
        assert emu.connections == before  # the session opened at open() is reused


def test_remote_uri_is_served_by_this_plugin_alone(conn: virtkit.Connection) -> None:
    ex = conn.explain()
    served = {r.operation: r for r in ex.routes if r.plugin}
    assert served and all(r.plugin == "xen_xend" and not r.lost for r in served.values())
    assert "connect_domain_event_register" not in served  # xend has no events
    assert [a.plugin for a in ex.attempts if a.outcome.value == "SUCCESS"] == ["xen_xend"]
    assert "xen_xend" in ex.render()
