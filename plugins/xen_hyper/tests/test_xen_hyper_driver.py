"""The Hypervisor and Driver against a simulated Xen of each release (see conftest.FakeXen)."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from virtkit import (
    DomainInfo,
    DomainRef,
    DomainState,
    InvalidArgument,
    InvalidOperation,
    NodeInfo,
    NoSuchDomain,
    PermissionDenied,
    Unsupported,
    VcpuFlags,
    Version,
)
from virtkit_xen_hyper import Driver
from virtkit_xen_hyper._hyper import LIST_PAGES, Hypervisor

Make = Callable[..., tuple[Any, Hypervisor]]
RELEASES = ["4.5.0", "4.9.4", "4.10.0", "4.10.1", "4.11.0", "4.13.5", "4.15.7", "4.16.7", "4.17.7", "4.18.6", "4.22.0"]
DOM0 = DomainRef("Domain-0", uuid.UUID(int=0), 0)
SYSCTL, DOMCTL = 35, 36


def ref(xen: Any, domid: int) -> DomainRef:
    return DomainRef("x", uuid.UUID(bytes=xen.domains[domid].handle), domid)


@pytest.mark.parametrize("release", RELEASES)
def test_each_release_decodes_without_probing(fake_xen: Make, release: str) -> None:
    xen, hv = fake_xen(release)
    g = xen.add(5, tot_pages=1000, max_pages=2000, cpu_time=123, online=2, max_vcpu_id=3, flags=1 << 5)
    d = Driver(hv)
    major, minor, patch = (int(x) for x in release.split("."))
    assert d.connect_get_version() == Version(major, minor, patch)
    assert d.connect_list_domains() == [0, 5]
    r = d.domain_lookup_by_id(5)
    assert r == DomainRef("domain-5", uuid.UUID(bytes=g.handle), 5)
    assert d.domain_get_info(r) == DomainInfo(DomainState.RUNNING, 8000, 4000, 2, 123)
    assert d.domain_get_vcpus(r, flags=VcpuFlags.MAXIMUM) == 4
    # 2 nodes x 2 sockets x 4 cores x 2 threads = 32 cpus; 8 GiB total, 4 GiB free.
    assert d.node_get_info() == NodeInfo(os.uname().machine, 8388608, 32, 2400, 2, 2, 4, 2, 4194304)
    # The versions chosen from xen_version were right: no refused (EACCES) call along the way.
    assert hv.interface_versions == (xen.domctl, xen.sysctl)
    # The first listing confirms the domctl version first (its array holds domctl structs).
    assert xen.calls == [(DOMCTL, 5), (SYSCTL, 6), (DOMCTL, 5), (DOMCTL, 5), (DOMCTL, 5), (SYSCTL, 3)]


def test_call_counts_one_hypercall_per_operation(fake_xen: Make) -> None:
    xen, hv = fake_xen("4.17.7")
    xen.add(1)
    d = Driver(hv)
    d.connect_list_domains()
    xen.calls.clear()
    d.connect_list_domains()
    assert xen.calls == [(SYSCTL, 6)]
    xen.calls.clear()
    d.domain_get_info(DomainRef("x", uuid.UUID(bytes=xen.domains[1].handle), 1))
    assert xen.calls == [(DOMCTL, 5)]
    xen.calls.clear()
    d.node_get_info()
    assert xen.calls == [(SYSCTL, 3)]


def test_listing_is_batched(fake_xen: Make) -> None:
    xen, hv = fake_xen("4.17.7")
    for i in range(1, 301):
        xen.add(i * 3)
    d = Driver(hv)
    d.domain_get_info(DOM0)
    xen.calls.clear()
    ids = d.connect_list_domains()
    assert ids == [0, *(i * 3 for i in range(1, 301))]
    per_batch = LIST_PAGES * 4096 // 112
    assert len(xen.calls) == -(-301 // per_batch)  # one sysctl per batch, not one per domain
    assert d.connect_num_of_domains() == 301
    target = uuid.UUID(bytes=xen.domains[600].handle)
    assert d.domain_lookup_by_uuid(target).id == 600


def test_a_missing_id_below_an_existing_one_is_not_the_next_domain(fake_xen: Make) -> None:
    xen, hv = fake_xen("4.17.7")  # 4.17 answers getdomaininfo(3) with domain 7
    xen.add(7)
    d = Driver(hv)
    with pytest.raises(NoSuchDomain):
        d.domain_lookup_by_id(3)
    with pytest.raises(NoSuchDomain):
        d.domain_lookup_by_id(8)
    with pytest.raises(NoSuchDomain):
        d.domain_lookup_by_id(0x7FF0)
    with pytest.raises(NoSuchDomain):
        d.domain_lookup_by_id(-1)
    with pytest.raises(NoSuchDomain):
        d.domain_lookup_by_uuid(uuid.uuid4())
    assert d.domain_lookup_by_id(7).id == 7


def test_a_reused_id_is_another_domain(fake_xen: Make) -> None:
    xen, hv = fake_xen("4.18.6")
    xen.add(4)
    d = Driver(hv)
    with pytest.raises(NoSuchDomain, match="no longer"):
        d.domain_get_info(DomainRef("old", uuid.uuid4(), 4))
    # Without an id the UUID decides.
    r = ref(xen, 4)
    assert d.domain_get_info(DomainRef(r.name, r.uuid, None)).memory == 32768 * 4
    with pytest.raises(NoSuchDomain):
        d.domain_get_state(DomainRef("gone", uuid.uuid4(), None))


def test_states_and_reasons(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    xen.add(1, flags=(1 << 2) | (3 << 16))
    xen.add(2, flags=(1 << 2) | (0 << 16))
    xen.add(3, flags=1)
    xen.add(4, flags=(1 << 4) | (1 << 1))
    d = Driver(hv)
    assert d.domain_get_state(ref(xen, 1)) == (DomainState.CRASHED, "crash")
    assert d.domain_get_state(ref(xen, 2)) == (DomainState.SHUTDOWN, "poweroff")
    assert d.domain_get_state(ref(xen, 3)) == (DomainState.DYING, None)
    assert d.domain_get_state(ref(xen, 4)) == (DomainState.BLOCKED, None)
    assert d.domain_get_os_type(ref(xen, 4)) == "hvm"
    assert d.domain_get_os_type(ref(xen, 2)) == "linux"


def test_pause_resume_destroy_and_dom0(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    xen.add(2)
    d = Driver(hv)
    r = ref(xen, 2)
    d.domain_suspend(r)
    assert xen.domains[2].pause_count == 1
    assert d.domain_get_state(r).state is DomainState.PAUSED
    with pytest.raises(InvalidOperation):
        d.domain_suspend(r)  # a second pause would need two resumes
    assert xen.domains[2].pause_count == 1
    d.domain_resume(r)
    assert xen.domains[2].pause_count == 0
    with pytest.raises(InvalidOperation, match="not paused"):
        d.domain_resume(r)
    for op in (d.domain_suspend, d.domain_destroy):
        with pytest.raises(InvalidOperation, match="dom0"):
            op(DOM0)
    assert 0 in xen.domains
    d.domain_destroy(r)
    assert 2 not in xen.domains
    with pytest.raises(NoSuchDomain):
        d.domain_get_info(r)


def test_max_memory(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    xen.add(2)
    d = Driver(hv)
    r = ref(xen, 2)
    d.domain_set_max_memory(r, 262144)
    assert xen.domains[2].max_pages == 65536
    assert d.domain_get_max_memory(r) == 262144
    for bad in (0, -4, True, 1.5):
        with pytest.raises(InvalidArgument):
            d.domain_set_max_memory(r, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        d.domain_get_info(r, flags=1)


def test_a_backported_abi_is_found_by_probing(fake_xen: Make) -> None:
    xen, hv = fake_xen("4.17.7", domctl=0x16, sysctl=0x16)  # as if a distro backported 4.18/4.21
    xen.add(9, tot_pages=5)
    d = Driver(hv)
    assert d.domain_get_info(ref(xen, 9)).memory == 20
    assert d.connect_list_domains() == [0, 9]
    assert hv.interface_versions == (0x16, 0x16)
    xen.calls.clear()
    d.domain_get_info(ref(xen, 9))
    assert xen.calls == [(DOMCTL, 5)]  # once confirmed, no more probing


def test_listing_first_confirms_the_domctl_layout(fake_xen: Make) -> None:
    # A 4.15 whose domctl (and getdomaininfo layout) was backported from 4.16, sysctl unchanged.
    xen, hv = fake_xen("4.15.7", domctl=0x14, dom_format="<HHI7QIII16sIB7xII")
    xen.add(3, tot_pages=77)
    d = Driver(hv)
    xen.calls.clear()
    assert d.connect_list_domains() == [0, 3]
    assert hv.interface_versions == (0x14, 0x13)
    assert d.domain_get_info(ref(xen, 3)).memory == 77 * 4
    # Probing happened once, at the first listing; afterwards one sysctl per list.
    assert xen.calls[-2:] == [(SYSCTL, 6), (DOMCTL, 5)]
    xen.calls.clear()
    d.connect_list_domains()
    assert xen.calls == [(SYSCTL, 6)]


def test_an_unknown_newer_release_works_when_its_abi_is_known(fake_xen: Make) -> None:
    _xen, hv = fake_xen("4.23.0", domctl=0x18, sysctl=0x16)
    assert hv.abi.known is False
    assert Driver(hv).connect_list_domains() == [0]


def test_an_unknown_abi_is_unsupported_not_permission_denied(fake_xen: Make) -> None:
    _xen, hv = fake_xen("4.17.7", domctl=0x42, sysctl=0x42)
    d = Driver(hv)
    with pytest.raises(Unsupported, match=r"unsupported Xen ABI 4\.17") as exc:
        d.domain_get_info(DOM0)
    assert not isinstance(exc.value, PermissionDenied)
    with pytest.raises(Unsupported, match=r"unsupported Xen ABI 4\.17.*sysctl"):
        d.node_get_info()
    with pytest.raises(Unsupported, match=r"unsupported Xen ABI 4\.17"):
        d.connect_list_domains()
    _xen, hv = fake_xen("4.30.1", domctl=0x42, sysctl=0x42)
    with pytest.raises(Unsupported, match=r"unsupported Xen ABI 4\.30.*newer or older"):
        Driver(hv).node_get_info()


def test_errors_after_the_abi_is_accepted_are_typed(fake_xen: Make) -> None:
    xen, hv = fake_xen()
    d = Driver(hv)
    d.connect_list_domains()
    d.domain_get_info(DOM0)
    xen.deny = errno.EPERM
    with pytest.raises(PermissionDenied):
        d.domain_get_info(DOM0)
    xen.deny = errno.EACCES  # once the version is confirmed, EACCES is a real denial
    with pytest.raises(PermissionDenied):
        d.connect_list_domains()
    xen.deny = errno.ENOMEM
    with pytest.raises(Exception, match="failed") as exc:
        d.node_get_info()
    assert type(exc.value).__name__ == "DriverError"


def test_close_releases_the_buffer(fake_xen: Make) -> None:
    closed = []
    _xen, hv = fake_xen()
    hv._close = lambda: closed.append(1)
    d = Driver(hv)
    d.close()
    assert closed == [1]
    assert hv.buf.addr == 0 and hv.buf.mem.closed
    d.close()  # idempotent
    assert closed == [1]


def test_node_info_is_fresh_every_call(fake_xen: Make) -> None:
    """One physinfo sysctl per call, through the prepared fast path after the first; an answer
    is reused only when every value Xen returned is the same."""
    xen, hv = fake_xen("4.17.7")
    d = Driver(hv)
    first = d.node_get_info()
    xen.calls.clear()
    assert d.node_get_info() is first  # nothing changed: the same immutable NodeInfo
    assert xen.calls == [(SYSCTL, 3)]
    xen.free_pages = 1000
    changed = d.node_get_info()
    assert changed.free_memory == 4000 and changed.memory == first.memory  # 1000 pages of 4 KiB
    assert xen.calls == [(SYSCTL, 3), (SYSCTL, 3)]


def test_node_info_fast_path_reports_xen_errors_typed(fake_xen: Make) -> None:
    xen, hv = fake_xen("4.17.7")
    d = Driver(hv)
    d.node_get_info()  # the fast path is built from the confirmed request
    xen.deny = errno.EPERM
    with pytest.raises(PermissionDenied, match="physinfo"):
        d.node_get_info()
