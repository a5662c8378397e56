"""xen_hyper against the real Xen 4.17 of the lab, cross-checked with xl and Xen's own binding.

Each check reads xl (or ``xen.lowlevel.xc``) and the plugin, and compares values that do not
move by themselves; nothing depends on timing beyond bounded waits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import pytest_xenlab
from pytest_xenlab import GuestFactory, XenGuest, is_paused, is_running, sh, wait_for

import virtkit
from virtkit import DomainRef, DomainState, InvalidOperation, NoSuchDomain, Unsupported, VcpuFlags
from virtkit_xen_hyper import Driver, connect
from virtkit_xen_hyper import _abi as A
from virtkit_xen_hyper._hyper import LIST_PAGES, Hypervisor
from virtkit_xen_hyper._privcmd import HypercallBuffer, Privcmd

pytestmark = pytest.mark.lab
T = TypeVar("T")

XC_PATH = "/usr/lib/xen-4.17/lib/python"
LIBXL_MAXMEM_CONSTANT = 1024  # KiB libxl adds to a PV guest's max_pages (libxl_internal.h)


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XenGuest]:
    """One PV guest shared by the read/pause/max-memory tests: creating guests is the slow part."""
    factory = GuestFactory(tmp_path_factory.mktemp("xen-hyper"))
    try:
        yield _twice(factory, "xl create")
    finally:
        errors = factory.cleanup()
        assert not errors, errors


@pytest.fixture
def drv() -> Iterator[Driver]:
    d = connect()
    yield d
    d.close()


def _twice(fn: Callable[[], T], what: str) -> T:
    """Run a toolstack step, once more if it failed: xl and virsh have crashed intermittently in
    the lab (a segfault in xl's monitoring child, "malloc(): unsorted double linked list
    corrupted"), independent of this plugin. Bounded: a second failure fails the test."""
    try:
        return fn()
    except pytest.fail.Exception as exc:
        print(f"retrying {what} once after: {exc}")
        return fn()


def xl_list() -> dict[str, pytest_xenlab.XlDomain]:
    return _twice(pytest_xenlab.xl_list, "xl list")


def xl_info() -> dict[str, str]:
    out = _twice(lambda: sh("xl", "info", timeout=30).stdout, "xl info")
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if _}


def xc_maxmem_kb(domid: int) -> int:
    """Xen's own C binding, as an independent reader of the hypervisor's max_pages."""
    code = (
        f"import sys; sys.path.insert(0, {XC_PATH!r}); import xen.lowlevel.xc as x; "
        f"print(x.xc().domain_getinfo({domid}, 1)[0]['maxmem_kb'])"
    )
    return int(sh(sys.executable, "-c", code, timeout=30).stdout.strip())


def ref(guest: XenGuest) -> DomainRef:
    return DomainRef(guest.name, uuid.UUID(guest.uuid), guest.domid)


def test_destroy_and_missing_ids(drv: Driver, xen_guest_factory: GuestFactory, request: pytest.FixtureRequest) -> None:
    a = _twice(xen_guest_factory, "xl create")
    drv.domain_destroy(ref(a))
    wait_for(lambda: a.name not in xl_list(), timeout=30, what=f"{a.name} gone from xl list")
    # The hypervisor forgot a; clear what libxl would have cleared in xenstore.
    sh("xenstore-rm", f"/local/domain/{a.domid}", check=False)
    sh("xenstore-rm", f"/libxl/{a.domid}", check=False)
    sh("xenstore-rm", f"/vm/{a.uuid}", check=False)
    b = request.getfixturevalue("guest")  # created now (first test): its id is above a's
    # 4.17's getdomaininfo answers a missing id with the next domain (b): must not leak through.
    wait_for(lambda: a.domid not in drv.connect_list_domains(), timeout=30, what="a gone from the list")
    with pytest.raises(NoSuchDomain):
        drv.domain_lookup_by_id(a.domid)
    with pytest.raises(NoSuchDomain):
        drv.domain_get_info(ref(a))
    with pytest.raises(NoSuchDomain):
        drv.domain_lookup_by_uuid(uuid.UUID(a.uuid))
    with pytest.raises(NoSuchDomain):
        drv.domain_lookup_by_id(max(drv.connect_list_domains()) + 1)
    with pytest.raises(NoSuchDomain):
        drv.domain_lookup_by_id(0x7FF0)
    # A stale ref whose id now names another domain is not that domain.
    with pytest.raises(NoSuchDomain):
        drv.domain_get_info(DomainRef(a.name, uuid.UUID(a.uuid), b.domid))
    assert drv.domain_lookup_by_id(b.domid).uuid == uuid.UUID(b.uuid)


def test_version_and_node_info_match_xl_info(drv: Driver) -> None:
    info = xl_info()
    v = drv.connect_get_version()
    assert f"{v.major}.{v.minor}" == f"{info['xen_major']}.{info['xen_minor']}"
    assert drv.hypervisor.extraversion == info["xen_extra"]
    assert str(v) == info["xen_version"]
    node = drv.node_get_info()
    assert node.cpus == int(info["nr_cpus"])
    assert node.cores == int(info["cores_per_socket"])
    assert node.threads == int(info["threads_per_core"])
    assert node.nodes == int(info["nr_nodes"])
    assert node.mhz == int(float(info["cpu_mhz"]))
    assert node.memory // 1024 == int(info["total_memory"])
    assert node.free_memory is not None and 0 < node.free_memory <= node.memory
    # The 4.17 ABI was chosen from the version, and Xen accepted it (no probing needed).
    assert drv.hypervisor.abi == A.Abi(0x15, 0x15, True)
    drv.domain_get_info(DomainRef("Domain-0", uuid.UUID(int=0), 0))
    assert drv.hypervisor.interface_versions == (0x15, 0x15)
    assert drv.hypervisor.buf.pinned  # /dev/xen/hypercall exists in this dom0


def test_dom0_and_guest_agree_with_xl(drv: Driver, guest: XenGuest) -> None:
    guest.wait_state(is_running, "running")
    xl_before = xl_list()
    ids = drv.connect_list_domains()
    assert sorted(ids) == sorted(d.domid for d in xl_before.values())
    assert drv.connect_num_of_domains() == len(ids)
    for dom in xl_before.values():
        r = drv.domain_lookup_by_id(dom.domid)
        assert str(r.uuid) == dom.uuid and r.id == dom.domid
        assert drv.domain_lookup_by_uuid(r.uuid).id == dom.domid
        info = drv.domain_get_info(r)
        assert info.memory // 1024 == dom.memory  # xl's Mem column: tot_pages in MiB
        assert info.vcpus == dom.vcpus
        assert drv.domain_get_vcpus(r) == dom.vcpus
        assert drv.domain_get_vcpus(r, flags=VcpuFlags.MAXIMUM) >= dom.vcpus
        assert info.state in (DomainState.RUNNING, DomainState.BLOCKED), (info, dom.state)
        assert dom.state.strip("-") in ("r", "b"), dom.state
        assert drv.domain_get_max_memory(r) == info.max_memory == xc_maxmem_kb(dom.domid)
        assert drv.domain_get_os_type(r) == "linux"
    g = ref(guest)
    assert drv.domain_lookup_by_id(guest.domid).uuid == g.uuid
    # libxl gives a PV guest max_pages >= memory + LIBXL_MAXMEM_CONSTANT.
    assert drv.domain_get_max_memory(g) >= 128 * 1024 + LIBXL_MAXMEM_CONSTANT
    assert drv.domain_get_vcpus(g, flags=VcpuFlags.MAXIMUM) == 1


def test_cpu_time_increases_and_is_at_least_xls(drv: Driver, guest: XenGuest) -> None:
    dom0 = DomainRef("Domain-0", uuid.UUID(int=0), 0)
    t0 = drv.domain_get_info(dom0).cpu_time
    sh("sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")  # dom0 burns some cpu
    assert drv.domain_get_info(dom0).cpu_time > t0
    line = _twice(lambda: sh("xl", "list", guest.name).stdout, "xl list").splitlines()[1]
    xl_time = float(line.split()[5])
    ours = drv.domain_get_info(ref(guest)).cpu_time
    assert ours > 0
    assert ours / 1e9 + 0.1 >= xl_time  # read after xl, rounded to 0.1 s by xl


def test_pause_and_resume_show_in_xl(drv: Driver, guest: XenGuest) -> None:
    guest.wait_state(is_running, "running")
    g = ref(guest)
    drv.domain_suspend(g)
    assert is_paused(guest.state())
    assert drv.domain_get_state(g) == (DomainState.PAUSED, None)
    with pytest.raises(InvalidOperation):
        drv.domain_suspend(g)  # Xen would count a second pause
    drv.domain_resume(g)
    assert is_running(guest.state())
    assert drv.domain_get_info(g).state in (DomainState.RUNNING, DomainState.BLOCKED)
    with pytest.raises(InvalidOperation):
        drv.domain_resume(g)


def test_dom0_is_refused(drv: Driver) -> None:
    dom0 = drv.domain_lookup_by_id(0)
    assert dom0.name == "Domain-0"
    with pytest.raises(InvalidOperation, match="dom0"):
        drv.domain_suspend(dom0)
    with pytest.raises(InvalidOperation, match="dom0"):
        drv.domain_destroy(dom0)
    assert is_running(xl_list()["Domain-0"].state)


def test_set_max_memory_seen_by_xens_binding(drv: Driver, guest: XenGuest) -> None:
    g = ref(guest)
    new = drv.domain_get_max_memory(g) + 4096
    drv.domain_set_max_memory(g, new)
    assert drv.domain_get_max_memory(g) == new == xc_maxmem_kb(guest.domid)
    assert drv.domain_get_info(g).max_memory == new


def test_wrong_interface_version_is_probed_and_unknown_abi_reported() -> None:
    priv = Privcmd()
    hv = Hypervisor(priv.call, HypercallBuffer(1 + LIST_PAGES), close=priv.close)
    try:
        hv._set_domctl(0x14)  # as if the table were wrong: Xen answers EACCES, we probe
        hv._set_sysctl(0x16)
        assert hv.dominfo(0).domid == 0
        assert hv.physinfo().nr_cpus >= 1
        assert hv.interface_versions == (0x15, 0x15)
    finally:
        hv.close()
    priv = Privcmd()
    hv = Hypervisor(priv.call, HypercallBuffer(1 + LIST_PAGES), close=priv.close)
    try:
        real = A.domctl_candidates
        hv._set_domctl(0x14)
        A.domctl_candidates = lambda first: tuple(v for v in real(first) if v != 0x15)  # type: ignore[assignment]
        try:
            with pytest.raises(Unsupported, match=r"unsupported Xen ABI 4\.17"):
                hv.dominfo(0)
        finally:
            A.domctl_candidates = real  # type: ignore[assignment]
    finally:
        hv.close()


def test_anonymous_locked_buffer_works_on_real_xen() -> None:
    priv = Privcmd()
    buf = HypercallBuffer(1 + LIST_PAGES, device=None)  # the fallback for kernels < 4.18
    assert not buf.pinned
    priv.set_pinned(False)
    hv = Hypervisor(priv.call, buf, close=priv.close)
    try:
        assert [d.domid for d in hv.domains()][:1] == [0]
        assert hv.dominfo(0).domid == 0
    finally:
        hv.close()


def test_entry_point_composition_agrees_with_xl_and_virsh(libvirtd: object) -> None:
    """xen_hyper via its entry point (names from xenstore's plugin or a stub), vs xl and virsh."""
    guest = _twice(libvirtd.create_guest, "virsh create")  # type: ignore[attr-defined]

    class Names:
        virtkit_catalogue = "1.0"
        virtkit_name = "names"

        @virtkit.hookimpl
        def open(self, uri: virtkit.URI, options: virtkit.OpenOptions) -> object:
            return self

        def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
            d = xl_list()[name]
            return DomainRef(name, uuid.UUID(d.uuid), d.domid)

    # xen_libxl (when installed) bids higher for domains it may have defined: this test is about
    # what xen_hyper serves through its entry point, so libxl stays out of the composition
    with virtkit.open("xen:///", plugins=[Names()], exclude={"*": ["xen_libxl"]}) as conn:
        ex = conn.explain()
        for op in ("domain_get_info", "node_get_info", "domain_suspend", "domain_destroy", "domain_set_max_memory"):
            assert conn.served_by(op) == "xen_hyper", (op, str(ex))
        dom = conn.lookup_by_name(guest.name)
        assert dom.id == guest.domid and str(dom.uuid) == guest.uuid
        info = dom.info()
        virsh = _twice(lambda: libvirtd.virsh("dominfo", guest.name), "virsh dominfo")  # type: ignore[attr-defined]
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in virsh.splitlines()) if _}
        assert int(fields["Id"]) == guest.domid
        assert fields["UUID"] == str(dom.uuid)
        assert int(fields["CPU(s)"]) == info.vcpus
        assert int(fields["Used memory"].split()[0]) == info.memory
        listed = _twice(lambda: libvirtd.virsh("list", "--id"), "virsh list")  # type: ignore[attr-defined]
        virsh_ids = {int(x) for x in listed.split()}
        assert virsh_ids <= set(conn.list_domains())
        assert sorted(conn.list_domains()) == sorted(d.domid for d in xl_list().values())


def test_cli_explain_shows_xen_hyper_opened() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "virtkit._cli", "explain", "--json", "xen:///"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    data, _ = json.JSONDecoder().raw_decode(proc.stdout)  # the explanation comes first
    mine = [p for p in data["plugins"] if p["plugin"] == "xen_hyper"]
    assert len(mine) == 1, proc.stdout
    assert mine[0]["outcome"] not in ("DECLINED", "ERROR"), mine
    assert mine[0]["priority"] == 50


def test_cli_list_and_dominfo_agree_with_xl(guest: XenGuest) -> None:
    """The composed CLI (hyper + xenstore): ``list`` and ``dominfo`` against xl."""
    cli = [sys.executable, "-m", "virtkit._cli", "-c", "xen:///", "--json"]
    proc = subprocess.run([*cli, "list"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    listed = {d["name"]: d for d in json.loads(proc.stdout)}
    xl = xl_list()
    assert set(listed) == set(xl)
    for name, dom in xl.items():
        assert listed[name]["id"] == dom.domid and listed[name]["uuid"] == dom.uuid
    proc = subprocess.run([*cli, "dominfo", guest.name], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["id"] == guest.domid and info["uuid"] == guest.uuid
    assert info["memory_kib"] // 1024 == xl[guest.name].memory
    assert info["max_memory_kib"] == xc_maxmem_kb(guest.domid)
    assert info["vcpus"] == xl[guest.name].vcpus
