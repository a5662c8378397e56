"""Typed results and arguments shared by the public API and the plugin contract."""

from __future__ import annotations

import enum
import uuid as _uuid
from collections.abc import Mapping

# The records are made by ._record at run time (no typing, no dataclasses on the start-up
# path); type checkers see typing.NamedTuple and dataclasses.dataclass (docs/contract.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass, field
    from typing import Any, NamedTuple

    from ._stats import BalloonStats, BlockStats, CpuStats, InterfaceStats, VcpuStats
else:
    from ._record import NamedTuple, dataclass, field

__all__ = [
    "DomainConfig",
    "DomainEvent",
    "DomainEventType",
    "DomainInfo",
    "DomainRef",
    "DomainState",
    "DomainStateInfo",
    "DomainStats",
    "NodeInfo",
    "VcpuFlags",
    "Version",
]


class DomainState(enum.IntEnum):
    """libvirt's virDomainState values, plus DYING for Xen's dying flag."""

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4  # being shut down
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7
    DYING = 8

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]


_STATE_LABELS = {
    DomainState.NOSTATE: "no state",
    DomainState.RUNNING: "running",
    DomainState.BLOCKED: "idle",
    DomainState.PAUSED: "paused",
    DomainState.SHUTDOWN: "in shutdown",
    DomainState.SHUTOFF: "shut off",
    DomainState.CRASHED: "crashed",
    DomainState.PMSUSPENDED: "pmsuspended",
    DomainState.DYING: "dying",
}


class VcpuFlags(enum.IntFlag):
    """Flags for ``domain_get_vcpus`` / ``domain_set_vcpus`` (libvirt's VIR_DOMAIN_VCPU_*)."""

    CURRENT = 0
    MAXIMUM = 4


# The per-call results are NamedTuples, not frozen dataclasses: as immutable and typed, they
# build about 4x faster (tuple.__new__ instead of object.__setattr__ per field), which is most of
# a test:/// call, and they unpack like libvirt-python's lists: state, maxmem, mem, n, t = info.


class DomainRef(NamedTuple):
    """How drivers name a domain to each other: any plugin resolves it by what it knows.

    ``id`` is None for a defined domain that is not running.
    """

    name: str
    uuid: _uuid.UUID
    id: int | None = None


class DomainInfo(NamedTuple):
    """libvirt's virDomainInfo: memory in KiB, cpu time in nanoseconds."""

    state: DomainState
    max_memory: int
    memory: int
    vcpus: int
    cpu_time: int


class DomainStateInfo(NamedTuple):
    """libvirt's virDomainGetState: the state, and the backend's word on why."""

    state: DomainState
    reason: str | None = None


class DomainStats(NamedTuple):
    """One domain's record in a bulk call: the requested groups set, the others None."""

    domain: DomainRef
    state: DomainStateInfo | None = None
    cpu: CpuStats | None = None
    balloon: BalloonStats | None = None
    vcpu: VcpuStats | None = None
    block: tuple[BlockStats, ...] | None = None
    net: tuple[InterfaceStats, ...] | None = None


class NodeInfo(NamedTuple):
    """libvirt's virNodeInfo: memory in KiB, cpu frequency in MHz."""

    model: str
    memory: int
    cpus: int
    mhz: int
    nodes: int
    sockets: int
    cores: int
    threads: int
    free_memory: int | None = None


class Version(NamedTuple):
    """A version as three numbers (libvirt's unsigned long encoding: ``int(version)``)."""

    major: int
    minor: int
    release: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.release}"

    def __int__(self) -> int:
        """libvirt's encoding: major * 1,000,000 + minor * 1,000 + release."""
        return self.major * 1_000_000 + self.minor * 1_000 + self.release

    @classmethod
    def parse(cls, text: str) -> Version:
        parts = [int(p) for p in text.strip().split(".")[:3] if p.isdigit()]
        if not parts:
            raise ValueError(f"not a version: {text!r}")
        return cls(*[*parts, 0, 0][:3])


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """A hypervisor-neutral domain description; ``extra`` carries backend-specific keys.

    Memory in KiB. ``uuid`` None means "let the driver choose one".
    """

    name: str
    memory: int
    vcpus: int = 1
    max_memory: int | None = None
    max_vcpus: int | None = None
    uuid: _uuid.UUID | None = None
    os_type: str = "linux"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    devices: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {name: getattr(self, name) for name in self.__match_args__}
        d["uuid"] = str(self.uuid) if self.uuid else None
        d["devices"] = [dict(x) for x in self.devices]
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DomainConfig:
        """Build from JSON-like data, checked as :func:`virtkit.check_domain_config` checks.

        Unknown keys are an error, so typos don't vanish; every defect raises
        :class:`virtkit.InvalidArgument` (a ValueError too).
        """
        from ._errors import InvalidArgument

        if not isinstance(data, Mapping):
            raise InvalidArgument(f"a domain config must be an object, not {type(data).__name__}")
        unknown = sorted(map(str, set(data) - set(cls.__match_args__)))
        if unknown:
            raise InvalidArgument(f"unknown domain config key(s): {', '.join(unknown)}"[:200])
        kw = dict(data)
        if "name" not in kw:
            raise InvalidArgument("domain config needs a non-empty string 'name'")
        if "memory" not in kw:
            raise InvalidArgument("domain config needs 'memory' (KiB)")
        if kw.get("uuid") is not None:
            try:
                kw["uuid"] = _uuid.UUID(str(kw["uuid"]))
            except ValueError:
                raise InvalidArgument(f"domain config 'uuid' is not a UUID: {str(kw['uuid'])[:60]!r}") from None
        for key in ("os_type", "on_poweroff", "on_reboot", "on_crash", "kernel", "initrd", "cmdline"):
            if key in kw and not isinstance(kw[key], str) and not (kw[key] is None and key not in _REQUIRED_STR):
                raise InvalidArgument(f"domain config {key!r} must be a string, got {type(kw[key]).__name__}")
        if "devices" in kw:
            devices = kw["devices"]
            if not isinstance(devices, list | tuple) or not all(isinstance(x, Mapping) for x in devices):
                raise InvalidArgument("domain config 'devices' must be a list of objects")
            kw["devices"] = tuple(dict(x) for x in devices)
        if "extra" in kw and not isinstance(kw["extra"], Mapping):
            raise InvalidArgument("domain config 'extra' must be an object")
        from ._input import check_domain_config

        return check_domain_config(cls(**kw))


_REQUIRED_STR = frozenset({"os_type", "on_poweroff", "on_reboot", "on_crash"})


class DomainEventType(enum.Enum):
    """libvirt's lifecycle event kinds."""

    DEFINED = "defined"
    UNDEFINED = "undefined"
    STARTED = "started"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    STOPPED = "stopped"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"
    REBOOTED = "rebooted"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """One lifecycle change of one domain, as a driver hands it to each registered callback."""

    type: DomainEventType
    domain: DomainRef
    detail: str = ""
    timestamp: float = 0.0


#: Each field's meaning and unit, per type (and each member's, per enum): what a driver fills in.
#: docs/contract.md is generated from it; a test fails when a field has no entry.
FIELD_DOCS: Mapping[str, Mapping[str, str]] = {
    "DomainRef": {
        "name": "the domain's name (any string: lookups accept names other tools made)",
        "uuid": "the domain's uuid.UUID, stable for its whole life, across restarts",
        "id": "int >= 0 while the domain is active (running, paused, ...); None when defined and shut off",
    },
    "DomainInfo": {
        "state": "DomainState",
        "max_memory": "KiB: the most the domain may have",
        "memory": "KiB: what it has now (the balloon's size); 0 <= memory <= max_memory",
        "vcpus": "online vcpus (a count)",
        "cpu_time": "ns of cpu time used since the domain started (all vcpus together)",
    },
    "DomainStateInfo": {
        "state": "DomainState",
        "reason": "why it is in that state, the backend's word (e.g. 'booted', 'user', 'shutdown', "
        "'destroyed'); None when unknown",
    },
    "NodeInfo": {
        "model": "cpu architecture or model, e.g. 'x86_64'",
        "memory": "KiB of physical memory",
        "cpus": "active logical cpus",
        "mhz": "cpu frequency in MHz",
        "nodes": "NUMA nodes",
        "sockets": "cpu sockets per NUMA node",
        "cores": "cores per socket",
        "threads": "threads per core",
        "free_memory": "KiB of memory free for new domains; None where the backend cannot tell",
    },
    "Version": {
        "major": "int",
        "minor": "int",
        "release": "int (0 when the backend has no third number); int(v) is libvirt's "
        "major * 1,000,000 + minor * 1,000 + release",
    },
    "DomainConfig": {
        "name": "passes virtkit.check_domain_name (1-64 of A-Z a-z 0-9 . _ + -, first a letter or digit)",
        "memory": "KiB at start (current memory)",
        "vcpus": "online vcpus at start",
        "max_memory": "KiB; None: the same as memory",
        "max_vcpus": "None: the same as vcpus",
        "uuid": "uuid.UUID; None: the driver chooses one",
        "os_type": "'linux' (Xen PV) or 'hvm'",
        "kernel": "path of the kernel to boot on this host, or None",
        "initrd": "path of the initial ramdisk, or None",
        "cmdline": "kernel command line, or None",
        "on_poweroff": "libvirt's lifecycle action when the guest powers off: 'destroy', 'restart', "
        "'preserve', 'rename-restart', 'coredump-destroy', 'coredump-restart'",
        "on_reboot": "action when the guest reboots (same names); 'destroy' makes a reboot end the domain",
        "on_crash": "action when the guest crashes (same names)",
        "devices": "mappings, each with a 'type': 'disk' ('path', 'target' e.g. 'vda', 'format') or "
        "'interface' ('target', 'mac'); keys a backend does not know are its to refuse",
        "extra": "backend-specific keys (e.g. qemu's 'accel', 'machine'); others ignore them",
    },
    "DomainEvent": {
        "type": "DomainEventType",
        "domain": "the domain's DomainRef: its name and uuid say which domain changed",
        "detail": "the backend's word on the cause (e.g. 'booted', 'paused', 'destroyed', 'shutdown')",
        "timestamp": "seconds since the epoch (time.time()) when the backend saw the change; 0.0 unknown",
    },
    "DomainState": {
        "NOSTATE": "the backend cannot tell (counts as active)",
        "RUNNING": "running",
        "BLOCKED": "active but idle, blocked on a resource",
        "PAUSED": "paused by domain_suspend (or by the backend)",
        "SHUTDOWN": "active, being shut down",
        "SHUTOFF": "not running: the state of every defined domain without an id",
        "CRASHED": "crashed, not yet cleaned up",
        "PMSUSPENDED": "suspended by the guest's power management",
        "DYING": "Xen's dying flag: being destroyed",
    },
    "DomainEventType": {
        "DEFINED": "a persistent config was added (or updated)",
        "UNDEFINED": "the persistent config was removed",
        "STARTED": "the domain began running (create, start, or started by other means)",
        "SUSPENDED": "the domain was paused",
        "RESUMED": "the domain was unpaused",
        "STOPPED": "the domain stopped running, whatever the cause (destroy, shutdown, power-off)",
        "SHUTDOWN": "the guest finished (or began) its shutdown; STOPPED follows once it is gone",
        "CRASHED": "the guest or its emulator crashed",
        "REBOOTED": "the guest rebooted; the domain keeps its id",
    },
    "VcpuFlags": {
        "CURRENT": "0: the online vcpus",
        "MAXIMUM": "4: the maximum vcpus (domain_get_vcpus, domain_set_vcpus)",
    },
}
