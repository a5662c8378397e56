"""Host descriptions: the fixed ``test:///default`` host and the JSON files ``test:///PATH.json`` names.

A description is immutable; every open builds its own mutable state from it, so two connections
never share domains. The default host is written in the JSON format itself and goes through the
same validation as a file, so the README's format and the default can't drift apart.
"""

from __future__ import annotations

import collections
import uuid as _uuid
from collections.abc import Mapping

from virtkit import (
    MAX_MEMORY_KIB,
    MAX_VCPUS,
    DomainConfig,
    DomainState,
    InvalidArgument,
    NodeInfo,
    check_domain_name,
    load_json_file,
)

# Neither typing nor dataclasses is imported at run time (a CLI's start-up path, issue 14):
# the descriptions are namedtuples, typed for checkers by the classes below.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    class DomainSpec(NamedTuple):
        config: DomainConfig
        state: DomainState
        id: int | None
        persistent: bool
        cpu_time: int
        autostart: bool

    class HostSpec(NamedTuple):
        hostname: str
        node: NodeInfo
        domains: tuple[DomainSpec, ...]

else:
    DomainSpec = collections.namedtuple("DomainSpec", "config state id persistent cpu_time autostart")
    HostSpec = collections.namedtuple("HostSpec", "hostname node domains")

DomainSpec.__doc__ = """One domain as a description starts it: ``config`` is complete (max memory/vcpus and
uuid set), ``cpu_time`` the ns already used when the host is opened."""
HostSpec.__doc__ = """A host: its name, its node (free_memory is computed live, so None here), its domains."""

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_HOST_DATA",
    "DomainSpec",
    "HostSpec",
    "check_config",
    "load_host",
    "parse_host",
    "with_changes",
]

#: libvirt's accepted on_poweroff / on_reboot / on_crash actions.
LIFECYCLE_ACTIONS = frozenset(
    {"destroy", "restart", "preserve", "rename-restart", "coredump-destroy", "coredump-restart"}
)

#: JSON spelling of the states a description may start a domain in.
STATES: Mapping[str, DomainState] = {
    "running": DomainState.RUNNING,
    "paused": DomainState.PAUSED,
    "shutoff": DomainState.SHUTOFF,
}

# uuid5 namespace for domains a description gives no uuid: stable across opens and machines.
_UUID_NS = _uuid.UUID("0b6c3e6a-5e4f-4d1e-9a43-7a3d1c2b9e10")

DEFAULT_NODE_HOSTNAME = "test-host"

#: libvirt's test driver node (16 cpus at 1400 MHz, 2 nodes x 2 sockets x 2 cores x 2 threads), 3 GiB.
DEFAULT_NODE: Mapping[str, Any] = {
    "model": "x86_64",
    "memory": 3 * 1024 * 1024,
    "cpus": 16,
    "mhz": 1400,
    "nodes": 2,
    "sockets": 2,
    "cores": 2,
    "threads": 2,
}

_CONFIG_KEYS = frozenset(DomainConfig.__match_args__)
_DOMAIN_KEYS = _CONFIG_KEYS | {"id", "state", "persistent", "cpu_time", "autostart"}
_NODE_KEYS = frozenset({"model", "memory", "cpus", "mhz", "nodes", "sockets", "cores", "threads"})
_HOST_KEYS = frozenset({"hostname", "node", "domains"})


class _Bad(ValueError):
    """A defect at a location inside the description; the caller adds the file name."""


#: Counters and ids beyond this would not survive a JSON double or a C int64 in a peer.
_MAX_INT = 2**53


def _int(value: object, where: str, *, minimum: int = 1, maximum: int = _MAX_INT) -> int:
    # bool is an int subclass: reject it, "memory": true is a typo, not 1 KiB
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Bad(f"{where}: must be an integer, got {type(value).__name__} {_short(value)}")
    if not minimum <= value <= maximum:
        raise _Bad(f"{where}: must be between {minimum} and {maximum}, got {_short(value)}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(f"{where}: must be a non-empty string, got {type(value).__name__} {value!r}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"{where}: must be true or false, got {value!r}")
    return value


def _obj(value: object, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Bad(f"{where}: must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _Bad(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(allowed))})")
    return value


def check_config(config: object, where: str = "config") -> DomainConfig:
    """Validate a DomainConfig and complete it (max memory/vcpus default to memory/vcpus).

    Raises ValueError naming the field; ``uuid`` stays None when not given.
    """
    if not isinstance(config, DomainConfig):
        raise _Bad(f"{where}: expected a virtkit.DomainConfig, got {type(config).__name__}")
    _str(config.name, f"{where}.name")
    try:
        check_domain_name(config.name)
    except InvalidArgument as exc:
        raise _Bad(f"{where}.name: {exc.message}") from None
    memory = _int(config.memory, f"{where}.memory", maximum=MAX_MEMORY_KIB)
    vcpus = _int(config.vcpus, f"{where}.vcpus", maximum=MAX_VCPUS)
    max_memory = (
        memory if config.max_memory is None else _int(config.max_memory, f"{where}.max_memory", maximum=MAX_MEMORY_KIB)
    )
    max_vcpus = vcpus if config.max_vcpus is None else _int(config.max_vcpus, f"{where}.max_vcpus", maximum=MAX_VCPUS)
    if memory > max_memory:
        raise _Bad(f"{where}: memory {memory} KiB is above max_memory {max_memory} KiB")
    if vcpus > max_vcpus:
        raise _Bad(f"{where}: vcpus {vcpus} is above max_vcpus {max_vcpus}")
    if config.uuid is not None and not isinstance(config.uuid, _uuid.UUID):
        raise _Bad(f"{where}.uuid: must be a uuid.UUID, got {type(config.uuid).__name__}")
    _str(config.os_type, f"{where}.os_type")
    for key in ("kernel", "initrd", "cmdline"):
        if getattr(config, key) is not None:
            _str(getattr(config, key), f"{where}.{key}")
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        action = getattr(config, key)
        if action not in LIFECYCLE_ACTIONS:
            raise _Bad(f"{where}.{key}: {action!r} is not one of {', '.join(sorted(LIFECYCLE_ACTIONS))}")
    for i, dev in enumerate(config.devices):
        if not isinstance(dev, Mapping):
            raise _Bad(f"{where}.devices[{i}]: must be an object, got {type(dev).__name__}")
    if not isinstance(config.extra, Mapping):
        raise _Bad(f"{where}.extra: must be an object, got {type(config.extra).__name__}")
    if max_memory == config.max_memory and max_vcpus == config.max_vcpus:
        return config
    return with_changes(config, max_memory=max_memory, max_vcpus=max_vcpus)


def with_changes(config: DomainConfig, **changes: Any) -> DomainConfig:
    """``dataclasses.replace(config, **changes)`` without importing dataclasses."""
    values: dict[str, Any] = {name: getattr(config, name) for name in DomainConfig.__match_args__}
    values.update(changes)
    return DomainConfig(**values)


def _parse_uuid(value: object, where: str) -> _uuid.UUID:
    try:
        if isinstance(value, str):
            return _uuid.UUID(value)
    except ValueError:
        pass
    raise _Bad(f"{where}: not a UUID: {value!r}")


def _domain(raw: object, where: str) -> tuple[DomainConfig, DomainState, int | None, bool, int, bool]:
    data = _obj(raw, where, _DOMAIN_KEYS)
    name = _str(data.get("name"), f"{where}.name")
    state_name = data.get("state", "running")
    if state_name not in STATES:
        raise _Bad(f"{where}.state: {state_name!r} is not one of {', '.join(STATES)}")
    state = STATES[state_name]
    persistent = _bool(data.get("persistent", True), f"{where}.persistent")
    autostart = _bool(data.get("autostart", False), f"{where}.autostart")
    if autostart and not persistent:
        raise _Bad(f"{where}.autostart: a transient domain cannot autostart (it has no config to start)")
    dom_id = data.get("id")
    if dom_id is not None:
        dom_id = _int(dom_id, f"{where}.id", minimum=0, maximum=2**31 - 1)
    cpu_time = _int(data.get("cpu_time", 0), f"{where}.cpu_time", minimum=0)
    if state is DomainState.SHUTOFF:
        if dom_id is not None:
            raise _Bad(f"{where}.id: a shut-off domain has no id (got {dom_id})")
        if not persistent:
            raise _Bad(f"{where}: a shut-off domain must be persistent (a stopped transient domain is gone)")
        if cpu_time:
            raise _Bad(f"{where}.cpu_time: a shut-off domain has used no cpu time (got {cpu_time})")
    if "memory" not in data:
        raise _Bad(f"{where}.memory: missing (KiB)")
    kw = {k: v for k, v in data.items() if k in _CONFIG_KEYS}
    kw["name"] = name
    kw["uuid"] = _uuid.uuid5(_UUID_NS, name) if kw.get("uuid") is None else _parse_uuid(kw["uuid"], f"{where}.uuid")
    if "devices" in kw:
        if not isinstance(kw["devices"], list):
            raise _Bad(f"{where}.devices: must be a list of objects")
        kw["devices"] = tuple(kw["devices"])
    config = check_config(DomainConfig(**kw), where)
    return config, state, dom_id, persistent, cpu_time, autostart


def parse_host(data: object) -> HostSpec:
    """Validate a decoded description; ValueError names the defect's location (``domains[2].memory``)."""
    top = _obj(data, "host", _HOST_KEYS)
    hostname = _str(top.get("hostname", DEFAULT_NODE_HOSTNAME), "hostname")
    node_data = _obj(top.get("node", {}), "node", _NODE_KEYS)
    node_kw: dict[str, Any] = {**DEFAULT_NODE, **node_data}
    model = _str(node_kw.pop("model"), "node.model")
    node = NodeInfo(model=model, **{k: _int(v, f"node.{k}") for k, v in node_kw.items()})
    raw_domains = top.get("domains", [])
    if not isinstance(raw_domains, list):
        raise _Bad(f"domains: must be a list, got {type(raw_domains).__name__}")

    parsed = [_domain(raw, f"domains[{i}]") for i, raw in enumerate(raw_domains)]
    names: dict[str, int] = {}
    uuids: dict[_uuid.UUID, int] = {}
    ids: dict[int, int] = {}
    for i, (config, _state, dom_id, _p, _c, _a) in enumerate(parsed):
        if config.name in names:
            raise _Bad(f"domains[{i}].name: duplicate name {config.name!r} (also domains[{names[config.name]}])")
        names[config.name] = i
        assert config.uuid is not None
        if config.uuid in uuids:
            raise _Bad(f"domains[{i}].uuid: duplicate uuid {config.uuid} (also domains[{uuids[config.uuid]}])")
        uuids[config.uuid] = i
        if dom_id is not None:
            if dom_id in ids:
                raise _Bad(f"domains[{i}].id: duplicate id {dom_id} (also domains[{ids[dom_id]}])")
            ids[dom_id] = i
    # Active domains without an id get the next free ones, in file order.
    next_id = max(ids, default=0) + 1
    specs = []
    for config, state, dom_id, persistent, cpu_time, autostart in parsed:
        if dom_id is None and state is not DomainState.SHUTOFF:
            dom_id, next_id = next_id, next_id + 1
        specs.append(DomainSpec(config, state, dom_id, persistent, cpu_time, autostart))
    return HostSpec(hostname, node, tuple(specs))


def load_host(path: str) -> HostSpec:
    """Read and validate a JSON description; any defect is an InvalidArgument naming the file.

    The file must be a regular file of at most 10 MiB of strict JSON (virtkit.load_json_file):
    a FIFO or a device is refused before it is read.
    """
    try:
        data = load_json_file(path, "test host file")
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message) from None
    try:
        return parse_host(data)
    except ValueError as exc:
        raise InvalidArgument(f"test host file {path!r}: {exc}") from None


#: The ``test:///default`` host, in the JSON format a file uses.
DEFAULT_HOST_DATA: Mapping[str, Any] = {
    "hostname": DEFAULT_NODE_HOSTNAME,
    "node": dict(DEFAULT_NODE),
    "domains": [
        {
            # libvirt's test driver default domain: same name and uuid
            "name": "test",
            "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f",
            "id": 1,
            "state": "running",
            "cpu_time": 4_200_000_000,  # ns used before the open; it grows from there
            "memory": 524288,
            "max_memory": 1048576,
            "vcpus": 2,
            "max_vcpus": 2,
            "os_type": "hvm",
            "devices": [
                {"type": "disk", "target": "vda", "path": "/var/lib/virtkit-test/test.img"},
                {"type": "interface", "target": "vnet0", "mac": "52:54:00:00:00:01"},
            ],
        },
        {
            "name": "web",
            "uuid": "6695eb01-f6a4-8304-79aa-97f2502e1940",
            "id": 2,
            "state": "running",
            "cpu_time": 37_500_000_000,
            "memory": 1048576,
            "max_memory": 2097152,
            "vcpus": 4,
            "max_vcpus": 8,
            "os_type": "linux",
            "kernel": "/boot/vmlinuz-6.1.0-18-amd64",
            "initrd": "/boot/initrd.img-6.1.0-18-amd64",
            "cmdline": "root=/dev/xvda1 ro console=hvc0",
            "devices": [
                {"type": "disk", "target": "xvda", "path": "/var/lib/virtkit-test/web-root.img"},
                {"type": "disk", "target": "xvdb", "path": "/var/lib/virtkit-test/web-data.img"},
                {"type": "interface", "target": "vif2.0", "mac": "00:16:3e:00:00:02"},
            ],
        },
        {
            "name": "paused-vm",
            "uuid": "6695eb01-f6a4-8304-79aa-97f2502e1941",
            "id": 3,
            "state": "paused",
            "cpu_time": 1_500_000_000,  # it ran for 1.5 s before it was paused
            "memory": 262144,
            "max_memory": 524288,
            "vcpus": 1,
            "max_vcpus": 2,
            "os_type": "linux",
            "devices": [
                {"type": "disk", "target": "xvda", "path": "/var/lib/virtkit-test/paused.img"},
                {"type": "interface", "target": "vif3.0", "mac": "00:16:3e:00:00:03"},
            ],
        },
        {
            "name": "defined-vm",
            "uuid": "6695eb01-f6a4-8304-79aa-97f2502e1942",
            "state": "shutoff",
            "memory": 524288,
            "max_memory": 524288,
            "vcpus": 1,
            "max_vcpus": 2,
            "os_type": "hvm",
            "devices": [{"type": "disk", "target": "vda", "path": "/var/lib/virtkit-test/defined.img"}],
        },
    ],
}

DEFAULT_HOST: HostSpec = parse_host(DEFAULT_HOST_DATA)
