"""The emulated xend's host: domains with real state transitions, kept as xend's own records.

Each domain keeps the ``(domain ...)`` record it was seeded or created with (key order and
unknown keys preserved); lifecycle operations edit its runtime keys the way xend 4.1 does:
``domid`` first while active, ``state`` flags, ``status`` (Xen-API power state), ``cpu_time``.
Errors are raised as :class:`XendFault` carrying the HTTP status and xend's message.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid as _uuid
from collections.abc import Iterable

from .._sxp import Sxp, SxpError, child, dumps, parse_one, value
from ._seed import default_node, seed_domains

__all__ = ["EmulatedDomain", "Host", "XendFault"]

_SHUTDOWN_REASONS = ("poweroff", "reboot", "halt", "suspend", "crash")


class XendFault(Exception):
    """An xend error: HTTP ``status`` and the message xend puts in ``(xend.err ...)``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _set(rec: list[Sxp], key: str, val: object, *, first: bool = False) -> None:
    item: list[Sxp] = [key, val if isinstance(val, str) else str(val)]
    for i, c in enumerate(rec):
        if isinstance(c, list) and c and c[0] == key:
            if first and i != 1:
                del rec[i]
                break
            rec[i] = item
            return
    if first:
        rec.insert(1, item)
    else:
        rec.append(item)


def _drop(rec: list[Sxp], *keys: str) -> None:
    rec[:] = [c for c in rec if not (isinstance(c, list) and c and c[0] in keys)]


def _int_field(rec: Sxp, key: str, default: int) -> int:
    raw = value(rec, key)
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


class EmulatedDomain:
    """One domain: its xend record plus the runtime state xend tracks outside of it."""

    __slots__ = (
        "cpu_base",
        "crashed",
        "domid",
        "managed",
        "paused",
        "pending_shutdown",
        "rec",
        "running_since",
        "staged",
    )

    def __init__(self, rec: list[Sxp], *, domid: int | None, managed: bool) -> None:
        self.rec = rec
        self.domid = domid
        self.managed = managed
        self.paused = False
        self.crashed = False  # kept by on_crash=preserve: still has its domid
        self.pending_shutdown: str | None = None  # a shutdown a paused guest has not acted on yet
        # op=new of a live domain: xend saves it as the managed config, but the running domain's
        # record (what GET answers) keeps its values until it stops
        self.staged: list[Sxp] | None = None
        try:
            self.cpu_base = float(value(rec, "cpu_time") or 0.0)
        except ValueError:
            self.cpu_base = 0.0
        self.running_since: float | None = time.monotonic() if domid is not None else None

    @property
    def name(self) -> str:
        return value(self.rec, "name") or ""

    @property
    def uuid(self) -> str:
        return value(self.rec, "uuid") or ""

    @property
    def active(self) -> bool:
        return self.domid is not None

    @property
    def power(self) -> str:
        if self.domid is None:
            return "halted"
        if self.crashed:
            return "crashed"
        return "paused" if self.paused else "running"

    def cpu_time(self) -> float:
        if self.running_since is None:
            return self.cpu_base
        return self.cpu_base + (time.monotonic() - self.running_since)

    def sxpr(self, *, legacy: bool = False) -> list[Sxp]:
        """The record as xend 4.1 would send it now; ``legacy``: as xend 3.0.x would.

        3.0.x has no ``status`` (Xen-API power state) and writes the hypervisor's flags as they are,
        so a live domain runnable but on no cpu at that instant is ``------``; 4.1 has the status.
        """
        rec: list[Sxp] = [x if not isinstance(x, list) else list(x) for x in self.rec]
        if self.domid is None:
            _drop(rec, "domid", "state", "start_time", "cpu_time", "online_vcpus", "store_mfn", "console_mfn")
            _set(rec, "status", 0)
            return rec
        _set(rec, "domid", self.domid, first=True)
        _set(rec, "cpu_time", f"{self.cpu_time():.9f}")
        flags = value(rec, "state") or ("------" if legacy else "r-----")
        if self.crashed:
            flags = "----c-"
        elif self.paused:
            flags = "--p---"
        elif "p" in flags:
            flags = "------" if legacy else "r-----"
        elif not legacy and not flags.strip("-?"):
            flags = "r-----"
        if legacy:
            _drop(rec, "status")
        else:
            _set(rec, "status", 5 if self.crashed else 1 if self.paused else 2)
        _set(rec, "state", flags)
        return rec

    def start(self, domid: int, *, paused: bool = False) -> None:
        self.domid = domid
        self.paused = paused
        self.crashed = False
        self.pending_shutdown = None
        self.cpu_base = 0.0
        self.running_since = None if paused else time.monotonic()
        _set(self.rec, "start_time", f"{time.time():.2f}")
        _set(self.rec, "state", "--p---" if paused else "------")  # runnable; sxpr() says how xend shows it
        _set(self.rec, "online_vcpus", self.vcpus_online())
        _drop(self.rec, "shutdown_reason")

    def stop(self, reason: str) -> None:
        self.domid = None
        self.paused = False
        self.crashed = False
        self.pending_shutdown = None
        self.cpu_base = 0.0
        self.running_since = None
        _drop(self.rec, "domid", "state")
        _set(self.rec, "shutdown_reason", reason)

    def pause(self) -> None:
        if not self.paused:
            self.cpu_base = self.cpu_time()
            self.running_since = None
            self.paused = True

    def unpause(self) -> None:
        if self.paused:
            self.paused = False
            self.running_since = time.monotonic()

    def vcpus_max(self) -> int:
        return max(1, _int_field(self.rec, "vcpus", 1))

    def vcpus_online(self) -> int:
        avail = _int_field(self.rec, "vcpu_avail", 0)
        n = avail.bit_count() if avail > 0 else 0
        return n if 0 < n <= self.vcpus_max() else self.vcpus_max()


class Host:
    """All domains of the emulated host, behind one lock.

    ``legacy=True`` answers as xend 3.0.x: records without ``status``, live domains' state flags
    as the hypervisor has them (``------`` for one runnable but not on a cpu).
    """

    def __init__(
        self, records: Iterable[list[Sxp]] | None = None, node: list[Sxp] | None = None, *, legacy: bool = False
    ) -> None:
        self.legacy = legacy
        self.lock = threading.RLock()
        self.node = node if node is not None else default_node()
        self.domains: list[EmulatedDomain] = []
        used: set[int] = set()
        pending: list[EmulatedDomain] = []
        for rec in seed_domains() if records is None else records:
            rec = [x if not isinstance(x, list) else list(x) for x in rec]
            status = _int_field(rec, "status", 2)
            captured = value(rec, "domid")
            active = captured is not None and status != 0
            d = EmulatedDomain(rec, domid=None, managed=not active or captured is None)
            if active:
                wanted = int(captured or 0)
                if wanted in used:
                    pending.append(d)  # renumbered below, after every captured id is taken
                else:
                    used.add(wanted)
                    d.domid = wanted
                    d.running_since = time.monotonic()
            else:
                d.stop(value(rec, "shutdown_reason") or "poweroff")
                _drop(d.rec, "shutdown_reason")
            self.domains.append(d)
        self._ids = itertools.count(max(used, default=0) + 1)
        for d in pending:
            d.domid = next(self._ids)
            d.running_since = time.monotonic()

    def next_id(self) -> int:
        return next(self._ids)

    def sxpr(self, d: EmulatedDomain) -> list[Sxp]:
        """``d``'s record as this host's xend version writes it."""
        return d.sxpr(legacy=self.legacy)

    # -- lookups (xend's domain_lookup_nr: name, then domid, then uuid) ---------------------------

    def find(self, key: str) -> EmulatedDomain:
        for d in self.domains:
            if d.name == key:
                return d
        if key.isdigit():
            for d in self.domains:
                if d.domid == int(key):
                    return d
        try:
            u = _uuid.UUID(key)
        except ValueError:
            u = None
        if u is not None:
            for d in self.domains:
                try:
                    if _uuid.UUID(d.uuid) == u:
                        return d
                except ValueError:
                    continue
        raise XendFault(404, f"Not found: {key}")

    def listing(self, state: str | None) -> list[EmulatedDomain]:
        """xend's ``list_sorted``: by domid, inactive ones last; ``state`` a power name or 'all'."""
        want = (state or "running").lower()
        doms = sorted(self.domains, key=lambda d: (d.domid is None, d.domid or 0, d.name))
        if want == "all":
            return doms
        return [d for d in doms if d.power == want]

    # -- domain operations --------------------------------------------------------------------

    def _not_dom0(self, d: EmulatedDomain, verb: str) -> None:
        if d.domid == 0:  # XendDomain's text; SrvDomain passes the domid
            raise XendFault(500, f"Cannot {verb} privileged domain 0")

    def _started(self, d: EmulatedDomain) -> None:
        if not d.active:
            raise XendFault(500, f"Domain '{d.name}' is not started")

    def pause(self, d: EmulatedDomain) -> None:
        self._not_dom0(d, "pause")
        self._started(d)
        d.pause()

    def unpause(self, d: EmulatedDomain) -> None:
        self._not_dom0(d, "unpause")
        self._started(d)
        d.unpause()
        if d.pending_shutdown:
            self._shutdown_now(d, d.pending_shutdown)

    def shutdown(self, d: EmulatedDomain, reason: str) -> None:
        if reason not in _SHUTDOWN_REASONS:
            raise XendFault(500, f"Invalid reason: {reason}")
        self._started(d)
        if d.domid == 0:  # XendDomainInfo.shutdown's own text
            raise XendFault(500, "Domain 0 cannot be shutdown")
        if d.paused:  # the guest sees control/shutdown only once it runs again
            d.pending_shutdown = reason
            return
        self._shutdown_now(d, reason)

    def _shutdown_now(self, d: EmulatedDomain, reason: str) -> None:
        key = {"reboot": "on_reboot", "crash": "on_crash"}.get(reason, "on_poweroff")
        default = "restart" if key == "on_reboot" else "destroy"
        action = value(d.rec, key) or default
        if action in ("restart", "rename-restart"):
            d.start(self.next_id())  # Xen restarts a domain as a new domain: a new id
        else:
            self._halt(d, reason)

    def _halt(self, d: EmulatedDomain, reason: str) -> None:
        if d.staged is not None:
            d.rec, d.staged = d.staged, None
        d.stop(reason)
        if not d.managed:  # a transient domain is gone once it stops
            self.domains.remove(d)

    def crash(self, d: EmulatedDomain) -> None:
        """The guest crashed (for tests: what the hypervisor reports); ``on_crash`` decides what
        follows, and ``preserve`` keeps it, crashed, with its domid."""
        self._started(d)
        action = value(d.rec, "on_crash") or "destroy"
        if action in ("preserve", "coredump-preserve"):
            d.pause()
            d.crashed = True
        elif action in ("restart", "rename-restart", "coredump-restart"):
            d.start(self.next_id())
        else:
            self._halt(d, "crash")

    def destroy(self, d: EmulatedDomain) -> None:
        self._not_dom0(d, "destroy")
        self._started(d)
        self._halt(d, "destroy")

    def reset(self, d: EmulatedDomain) -> None:
        self._not_dom0(d, "reset")
        self._started(d)
        d.start(self.next_id())

    def start(self, d: EmulatedDomain, paused: bool) -> None:
        if d.active:
            raise XendFault(500, f"Domain '{d.name}' is already running")
        d.start(self.next_id(), paused=paused)

    def autostart_domains(self) -> list[EmulatedDomain]:
        """What xend does as it starts (XendDomain.autostart_domains, 3.1.0 on): start, unpaused,
        each halted managed domain whose config says exactly ``(on_xend_start start)``. A node
        saying ``xend_config_format`` 3 or less is an older xend, which started none."""
        if _int_field(self.node, "xend_config_format", 0) < 4:
            return []
        with self.lock:
            marked = [
                d for d in self.domains if d.managed and not d.active and value(d.rec, "on_xend_start") == "start"
            ]
            for d in marked:
                self.start(d, paused=False)
            return marked

    def delete(self, d: EmulatedDomain) -> None:
        if d.active:
            raise XendFault(500, f"Domain '{d.name}' is not halted")
        self.domains.remove(d)

    def rename(self, d: EmulatedDomain, name: str) -> None:
        if not name:
            raise XendFault(500, "Invalid domain name")
        if any(o.name == name for o in self.domains if o is not d):
            raise XendFault(500, f"Domain '{name}' already exists")
        _set(d.rec, "name", name)

    def maxmem_set(self, d: EmulatedDomain, mib: int) -> None:
        if mib <= 0:
            raise XendFault(500, "Invalid memory size")
        _set(d.rec, "maxmem", mib)
        if _int_field(d.rec, "memory", mib) > mib:
            _set(d.rec, "memory", mib)

    def mem_target_set(self, d: EmulatedDomain, mib: int) -> None:
        maxmem = _int_field(d.rec, "maxmem", mib)
        if mib <= 0:
            raise XendFault(500, "Invalid memory target")
        if mib > maxmem:
            raise XendFault(500, f"cannot set memory target above maxmem: {mib} > {maxmem} MiB")
        _set(d.rec, "memory", mib)

    def set_vcpus(self, d: EmulatedDomain, n: int) -> None:
        top = d.vcpus_max()
        if n < 1:
            raise XendFault(500, "Invalid number of vcpus")
        if n > top:
            raise XendFault(500, f"Cannot set vcpus greater than max vcpus on running domain ({n} > {top})")
        _set(d.rec, "vcpu_avail", (1 << n) - 1)
        if d.active:
            _set(d.rec, "online_vcpus", n)

    def vcpuinfo(self, d: EmulatedDomain) -> list[Sxp]:
        out: list[Sxp] = ["domain", ["domid", str(d.domid)], ["name", d.name], ["vcpu_count", str(d.vcpus_max())]]
        online = d.vcpus_online()
        for i in range(d.vcpus_max()):
            up = i < online and d.active
            out.append(
                [
                    "vcpu",
                    ["number", str(i)],
                    ["online", "1" if up else "0"],
                    ["blocked", "0"],
                    ["running", "1" if up and not d.paused else "0"],
                    ["cpu_time", f"{d.cpu_time() / max(online, 1):.9f}" if up else "0.0"],
                    ["cpu", str(i % 2)],
                    ["cpumap", ["0", "1"]],
                ]
            )
        return out

    # -- create / new -------------------------------------------------------------------------

    def _same_uuid(self, uid: str) -> EmulatedDomain | None:
        want = _uuid.UUID(uid)
        for d in self.domains:
            try:
                if _uuid.UUID(d.uuid) == want:
                    return d
            except ValueError:
                continue
        return None

    def _refuse_clash(self, rec: list[Sxp]) -> None:
        name, uid = value(rec, "name") or "", value(rec, "uuid") or ""
        for d in self.domains:
            if d.name == name:
                raise XendFault(500, f"VM name '{name}' already in use by domain {d.domid if d.active else '-'}")
        if self._same_uuid(uid) is not None:
            raise XendFault(500, f"VM with UUID {uid} already exists")

    def _config(self, text: str) -> list[Sxp]:
        """A posted config as the record xend keeps; xend's XendConfig reads ``(vm ...)`` and
        ``(domain ...)`` alike (it never looks at the head), and libvirt posted records back."""
        try:
            vm = parse_one(text)
        except SxpError as exc:
            raise XendFault(500, f"Invalid configuration: {exc}") from None
        if not isinstance(vm, list) or not vm or vm[0] not in ("vm", "domain"):
            raise XendFault(500, "Invalid configuration: expected (vm ...)")
        name = value(vm, "name")
        if not name:
            raise XendFault(500, "Invalid configuration: missing name")
        uid = value(vm, "uuid") or str(_uuid.uuid4())
        try:
            parsed = _uuid.UUID(uid)
        except ValueError:
            raise XendFault(500, f"Invalid configuration: bad uuid {uid!r}") from None
        memory = _int_field(vm, "memory", 128)
        maxmem = max(_int_field(vm, "maxmem", memory), memory)
        rec: list[Sxp] = ["domain", ["uuid", str(parsed)]]
        for c in vm[1:]:
            if isinstance(c, list) and c and c[0] not in ("uuid", "memory", "maxmem"):
                rec.append(list(c))
        _set(rec, "maxmem", maxmem)
        _set(rec, "memory", memory)
        if child(rec, "vcpus") is None:
            _set(rec, "vcpus", 1)
        for key in ("on_xend_start", "on_xend_stop"):  # XendConfig's defaults, in every record since 3.0.4
            if child(rec, key) is None:
                _set(rec, key, "ignore")
        return rec

    def create(self, text: str) -> EmulatedDomain:
        rec = self._config(text)
        self._refuse_clash(rec)
        d = EmulatedDomain(rec, domid=None, managed=False)
        d.start(self.next_id())
        self.domains.append(d)
        return d

    def new(self, text: str) -> EmulatedDomain:
        """xend's domain_new: a name and uuid both in use by one domain update its config (the
        name check, XendDomainInfo._checkName, lets the same uuid through); xend then registers it
        as managed, a live transient domain included, whose running record keeps its values."""
        rec = self._config(text)
        same = self._same_uuid(value(rec, "uuid") or "")
        if same is None or same.name != value(rec, "name"):
            self._refuse_clash(rec)
            d = EmulatedDomain(rec, domid=None, managed=True)
            d.stop("poweroff")
            _drop(d.rec, "shutdown_reason")
            self.domains.append(d)
            return d
        same.managed = True
        if same.active:
            same.staged = rec
        else:
            same.rec = rec
            same.stop("poweroff")
            _drop(same.rec, "shutdown_reason")
        return same

    def dump(self) -> str:
        """Every domain's record, one per line: handy when a test fails."""
        with self.lock:
            return "\n".join(dumps(self.sxpr(d)) for d in self.domains)
