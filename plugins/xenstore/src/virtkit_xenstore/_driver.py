"""The xen:/// driver over XenStore: what a toolstack learns and does through xenstored.

Domains are the children of /local/domain; names, uuids (from the ``vm`` link), memory and vcpus
are the nodes libxl writes; shutdown/reboot ask the guest through ``control/shutdown`` and
set_memory asks its balloon through ``memory/target``. State and cpu time are the hypervisor's
business (xen_hyper): this driver's ``domain_get_info`` is partial and ranks below it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from uuid import UUID

import virtkit
from virtkit import (
    DomainEvent,
    DomainEventType,
    DomainInfo,
    DomainRef,
    DomainState,
    InvalidArgument,
    InvalidOperation,
    NoSuchDomain,
    VcpuFlags,
    VirtError,
)

from ._client import Client
from ._stats import StatsMixin
from ._wire import PathNotFound, decimal

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any, TypeVar

    from ._transaction import Transaction

    _F = TypeVar("_F", bound=Callable[..., Any])


__all__ = ["BETTER", "Driver"]


def log() -> logging.Logger:
    """The plugin's logger; logging is imported on the first record, not by a cold start."""
    import logging

    return logging.getLogger("virtkit.xenstore")


#: Per-operation priority where xenstore is the better source than hypercalls: names and uuids
#: live here, shutdown/reboot are cooperative requests to the guest (a hypercall can only force
#: them), events exist only here. Listing is left at the plugin's priority: the hypervisor's
#: batched sysctl (xen_hyper) is authoritative, as for xl, and sees domains xenstore doesn't yet.
BETTER = 90
_NIL_UUID = UUID(int=0)
_ROOT = "/local/domain"
_COUNT_DIGITS = 19  # a size or count libxl writes: decimal, never negative
_DOMID_DIGITS = 5  # a child of /local/domain that names a domain (ids < 0x7FF0)


def _int(raw: bytes, what: str) -> int:
    text = raw.strip(b"\0 \n")
    if not decimal(text, _COUNT_DIGITS):
        raise virtkit.ProtocolError(f"xenstore: {what} is not a non-negative number: {raw[:40]!r}")
    return int(text)


def _bounded(method: _F) -> _F:
    """The operation's requests share one deadline (the connection's timeout), so an operation
    made of several round trips still ends within it."""

    @functools.wraps(method)
    def bounded(self: Driver, *args: Any, **kwargs: Any) -> Any:
        with self.xs.deadline():
            return method(self, *args, **kwargs)

    return bounded  # type: ignore[return-value]


def _name_of(domid: int, raw: bytes | None) -> str:
    """A domain's name from its ``name`` node (None: absent). dom0 may have none: libvirt and
    xl call it Domain-0; any other domain without one is gone."""
    if raw is None:
        if domid == 0:
            return "Domain-0"
        raise NoSuchDomain(f"no domain with id {domid}")
    return raw.decode("utf-8", "surrogateescape")


class Driver(StatsMixin):
    """A driver connection (see docs/plugins.md) backed by one :class:`Client`; ``sysfs_root``
    is where dom0's sysfs is mounted (the stats read backend counters there)."""

    #: xenstore sees domains come and go, not pauses or reboots: the kit checks only these.
    virtkit_event_types = frozenset({DomainEventType.STARTED, DomainEventType.STOPPED})

    def __init__(self, client: Client, sysfs_root: str = "/sys") -> None:
        self.xs = client
        self.sysfs_root = sysfs_root
        self._subs: list[_EventSubscription] = []
        self._subs_lock = threading.Lock()

    def close(self) -> None:
        with self._subs_lock:
            subs, self._subs = self._subs, []
        for s in subs:
            s.cancel()
        self.xs.close()

    # -- helpers -------------------------------------------------------------------------------

    def _domids(self) -> list[int]:
        return sorted(int(c) for c in self.xs.directory(_ROOT) if decimal(c, _DOMID_DIGITS))

    def _name(self, domid: int) -> str:
        try:
            raw: bytes | None = self.xs.read(f"{_ROOT}/{domid}/name")
        except PathNotFound:
            raw = None
        return _name_of(domid, raw)

    def _uuid(self, domid: int) -> UUID:
        try:
            vm = self.xs.read(f"{_ROOT}/{domid}/vm")
        except PathNotFound:
            return _NIL_UUID
        return self._uuid_of(vm)

    def _uuid_of(self, vm: bytes | None) -> UUID:
        if vm is None:
            return _NIL_UUID  # dom0 on some setups; libvirt shows the nil uuid too
        path = vm.decode("utf-8", "surrogateescape")
        tail = path.rstrip("/").rsplit("/", 1)[-1]
        try:
            return UUID(tail[:36])  # libxl writes /vm/<uuid>; xend added "-<n>" suffixes
        except ValueError:
            try:
                return UUID(self.xs.read_text(f"{path}/uuid"))
            except (PathNotFound, ValueError, virtkit.InvalidArgument):
                return _NIL_UUID

    def _ref(self, domid: int) -> DomainRef:
        # name and vm in one round trip: a lookup costs one xenstored turn, not two
        name, vm = self.xs.read_many((f"{_ROOT}/{domid}/name", f"{_ROOT}/{domid}/vm"))
        return DomainRef(_name_of(domid, name), self._uuid_of(vm), domid)

    def _domid(self, dom: DomainRef, *, check: bool = False) -> int:
        """The running domain's id; with ``check``, make sure the id still names ``dom``."""
        if dom.id is None:
            return self.domain_lookup_by_name(dom.name).id or 0
        if check and dom.name and self._name(dom.id) != dom.name:
            raise NoSuchDomain(f"domain id {dom.id} is no longer {dom.name!r}")
        return dom.id

    def _read_int(self, path: str, domid: int) -> int | None:
        try:
            return _int(self.xs.read(path), path)
        except PathNotFound:
            if not self.xs.exists(f"{_ROOT}/{domid}"):
                raise NoSuchDomain(f"no domain with id {domid}") from None
            return None

    # -- connection ----------------------------------------------------------------------------

    def connect_get_type(self, *, flags: int = 0) -> str:
        return "Xen"

    @_bounded
    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        return self._domids()

    @_bounded
    def connect_num_of_domains(self, *, flags: int = 0) -> int:
        return len(self._domids())

    @_bounded
    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002 - catalogue name
        if not isinstance(id, int) or id < 0:
            raise NoSuchDomain(f"no domain with id {id!r}")
        return self._ref(id)

    @virtkit.priority(BETTER)
    @_bounded
    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        domids = self._domids()
        # every domain's name in one round trip; one that went away meanwhile reads as None
        names = self.xs.read_many(f"{_ROOT}/{d}/name" for d in domids)
        for domid, raw in zip(domids, names, strict=True):
            try:
                if _name_of(domid, raw) == name:
                    return DomainRef(name, self._uuid(domid), domid)
            except NoSuchDomain:
                continue  # went away while we looked
        raise NoSuchDomain(f"no running domain named {name!r}")

    @virtkit.priority(BETTER)
    @_bounded
    def domain_lookup_by_uuid(self, uuid: UUID, *, flags: int = 0) -> DomainRef:
        try:
            want = uuid if isinstance(uuid, UUID) else UUID(str(uuid))
        except ValueError:
            raise InvalidArgument(f"not a uuid: {str(uuid)[:40]!r}") from None
        domids = self._domids()
        vms = self.xs.read_many(f"{_ROOT}/{d}/vm" for d in domids)
        for domid, vm in zip(domids, vms, strict=True):
            if self._uuid_of(vm) == want:
                try:
                    return self._ref(domid)
                except NoSuchDomain:
                    continue  # went away while we looked
        raise NoSuchDomain(f"no running domain with uuid {want}")

    # -- domain queries ------------------------------------------------------------------------

    @_bounded
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        """Partial: xenstore knows memory and vcpus, not the run state or cpu time."""
        domid = self._domid(dom)
        target = self._read_int(f"{_ROOT}/{domid}/memory/target", domid) or 0
        maxmem = self._read_int(f"{_ROOT}/{domid}/memory/static-max", domid) or target
        return DomainInfo(DomainState.NOSTATE, maxmem, target, self._vcpus(domid, False), 0)

    @_bounded
    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        domid = self._domid(dom)
        value = self._read_int(f"{_ROOT}/{domid}/memory/static-max", domid)
        if value is None:
            raise virtkit.Unsupported(f"domain {domid} has no memory/static-max in xenstore")
        return value

    def _vcpus(self, domid: int, maximum: bool) -> int:
        try:
            cpus = [c for c in self.xs.directory(f"{_ROOT}/{domid}/cpu") if decimal(c, _DOMID_DIGITS)]
        except PathNotFound:
            if not self.xs.exists(f"{_ROOT}/{domid}"):
                raise NoSuchDomain(f"no domain with id {domid}") from None
            return 0
        if maximum:
            return len(cpus)
        online = 0
        for c in cpus:
            try:
                if self.xs.read(f"{_ROOT}/{domid}/cpu/{c}/availability") == b"online":
                    online += 1
            except PathNotFound:
                continue
        return online

    @_bounded
    def domain_get_vcpus(self, dom: DomainRef, *, flags: int = 0) -> int:
        return self._vcpus(self._domid(dom), bool(flags & VcpuFlags.MAXIMUM))

    @virtkit.priority(BETTER)
    @_bounded
    def domain_get_os_type(self, dom: DomainRef, *, flags: int = 0) -> str:
        domid = self._domid(dom)
        if domid == 0:
            return "linux"
        try:
            libxl_type = self.xs.read_text(f"/libxl/{domid}/type")
        except PathNotFound:
            libxl_type = ""
        if libxl_type:
            return "hvm" if libxl_type == "hvm" else "linux"  # libvirt: PV and PVH guests are 'linux'
        vm = self.xs.read_text(f"{_ROOT}/{domid}/vm") if self.xs.exists(f"{_ROOT}/{domid}/vm") else ""
        if vm:
            try:
                return self.xs.read_text(f"{vm}/image/ostype") or "linux"
            except (PathNotFound, InvalidArgument):  # InvalidArgument: the link is no valid path
                pass
        if not self.xs.exists(f"{_ROOT}/{domid}"):
            raise NoSuchDomain(f"no domain with id {domid}")
        return "linux"

    # -- guest-cooperative control -------------------------------------------------------------

    def _control(self, dom: DomainRef, action: str, feature: str) -> None:
        domid = self._domid(dom, check=True)
        if domid == 0:
            raise InvalidOperation(f"refusing to {action} Domain-0 through xenstore")
        base = f"{_ROOT}/{domid}"

        def request(tx: Transaction) -> None:
            # In one transaction, so the write cannot recreate the tree of a domain that just
            # went away (WRITE creates missing parents).
            try:
                tx.read(f"{base}/name")
            except PathNotFound:
                raise NoSuchDomain(f"no domain with id {domid}") from None
            try:
                advertised = tx.read(f"{base}/control/feature-{feature}").strip() == b"1"
            except PathNotFound:
                advertised = False
            if not advertised:
                raise InvalidOperation(
                    f"domain {domid} does not advertise control/feature-{feature} "
                    "(no PV drivers, or the guest is not up yet): it cannot be asked to " + action
                )
            tx.write(f"{base}/control/shutdown", action)

        self.xs.transact(request)

    @virtkit.priority(BETTER)
    @_bounded
    def domain_shutdown(self, dom: DomainRef, *, flags: int = 0) -> None:
        self._control(dom, "poweroff", "poweroff")

    @virtkit.priority(BETTER)
    @_bounded
    def domain_reboot(self, dom: DomainRef, *, flags: int = 0) -> None:
        self._control(dom, "reboot", "reboot")

    @virtkit.priority(BETTER)
    @_bounded
    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        """Ask the guest's balloon driver for ``memory`` KiB (memory/target), up to static-max."""
        if not isinstance(memory, int) or isinstance(memory, bool) or memory <= 0:
            raise InvalidArgument(f"memory must be a positive number of KiB, got {memory!r}")
        domid = self._domid(dom, check=True)
        base = f"{_ROOT}/{domid}/memory"

        def request(tx: Transaction) -> None:
            try:
                static_max = _int(tx.read(f"{base}/static-max"), "memory/static-max")
            except PathNotFound:
                raise NoSuchDomain(f"domain {domid} has no memory/static-max in xenstore") from None
            if memory > static_max:
                raise InvalidArgument(f"{memory} KiB exceeds domain {domid}'s maximum of {static_max} KiB")
            tx.write(f"{base}/target", str(memory))

        self.xs.transact(request)

    # -- events --------------------------------------------------------------------------------

    @virtkit.priority(BETTER)
    def connect_domain_event_register(
        self, callback: Callable[[DomainEvent], None], *, flags: int = 0
    ) -> Callable[[], None]:
        sub = _EventSubscription(self, callback)
        with self._subs_lock:
            self._subs.append(sub)
        sub.start()
        return sub.cancel

    @_bounded
    def snapshot(self) -> dict[int, DomainRef]:
        """Every domain in /local/domain, as refs (domains vanishing meanwhile are skipped)."""
        out = {}
        for domid in self._domids():
            try:
                out[domid] = self._ref(domid)
            except NoSuchDomain:
                continue
        return out


class _EventSubscription:
    """Watches @introduceDomain/@releaseDomain and turns them into STARTED/STOPPED events.

    xenstored only says "some domain came or went", so each burst of events triggers a rescan
    of /local/domain compared with the last one; names of departed domains come from the
    previous scan, since their nodes are gone by then. The watch and the rescans use a
    connection of their own: while a connection has watches a pump thread reads it, which would
    add a thread hand-off to every ordinary call on the driver's connection.
    """

    __slots__ = ("_callback", "_driver", "_known", "_stop", "_thread", "_watch")

    def __init__(self, driver: Driver, callback: Callable[[DomainEvent], None]) -> None:
        xs = driver.xs
        own = Client(xs.channel_path or xs.path, timeout=xs.timeout)
        self._driver = Driver(own)
        self._callback = callback
        self._stop = threading.Event()
        try:
            # Baseline first, then the watch: events fired after this are compared against it.
            self._known = self._driver.snapshot()
            self._watch = own.watch("@introduceDomain", "@releaseDomain")
        except BaseException:
            own.close()
            raise
        self._thread = threading.Thread(target=self._run, name="xenstore-domain-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._stop.set()
        try:
            self._watch.close()
        except VirtError:
            pass  # daemon gone: nothing left to unwatch
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=self._driver.xs.timeout)
        self._driver.xs.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            ev = self._watch.get(timeout=0.5)
            if ev is None:
                if self._watch.closed:
                    return
                continue
            self._watch.drain()  # one rescan serves a whole burst
            try:
                with self._driver.xs.deadline():
                    self._rescan()
            except VirtError as exc:
                log().debug("xenstore event rescan failed (retrying on the next event): %s", exc)

    def _rescan(self) -> None:
        drv = self._driver
        now: dict[int, DomainRef] = {}
        for domid in drv._domids():
            ref = self._known.get(domid)
            if ref is None:
                # A domain being built is in /local/domain before xenstored is told about it.
                if not drv.xs.is_domain_introduced(domid):
                    continue
                try:
                    ref = drv._ref(domid)
                except NoSuchDomain:
                    continue
            now[domid] = ref
        started = [now[d] for d in sorted(now.keys() - self._known.keys())]
        stopped = [self._known[d] for d in sorted(self._known.keys() - now.keys())]
        self._known = now
        stamp = time.time()
        for ref in stopped:
            self._emit(DomainEvent(DomainEventType.STOPPED, ref, "released", stamp))
        for ref in started:
            self._emit(DomainEvent(DomainEventType.STARTED, ref, "introduced", stamp))

    def _emit(self, event: DomainEvent) -> None:
        if self._stop.is_set():
            return
        try:
            self._callback(event)
        except Exception:  # a subscriber's bug must not end the others' events
            logger = log()
            logger.exception("virtkit domain event callback failed")
