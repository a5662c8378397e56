"""The operation catalogue: the single source of truth for what a driver can be asked to do.

Everything else derives from this table: vtable slots, the public methods' names (checked by a
test), read-only enforcement, ``explain``, the support matrix and the conformance kit.
Naming is libvirt's: public ``Domain.suspend()`` <-> operation ``domain_suspend`` <-> plugin
method ``domain_suspend``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import NamedTuple

__all__ = [
    "CATALOGUE",
    "CATALOGUE_VERSION",
    "Operation",
    "Param",
    "catalogue_compatible",
    "public_name",
]

#: major.minor. A plugin targeting the same major and a minor <= ours is compatible: minors
#: only add optional operations, a new major may change signatures.
CATALOGUE_VERSION = "1.1"


class Param(NamedTuple):
    name: str
    type: str
    doc: str = ""


class Operation(NamedTuple):
    """One vtable slot. ``params`` exclude ``self`` and the keyword-only ``flags`` every op takes."""

    name: str
    params: tuple[Param, ...]
    returns: str
    doc: str
    mandatory: bool = False
    mutates: bool = False
    since: str = "1.0"

    @property
    def owner(self) -> str:
        """``domain`` when the operation acts on an existing domain (its first param is one)."""
        return "domain" if self.params and self.params[0].type == "DomainRef" else "connection"

    @property
    def method(self) -> str:
        """The public method's name on :class:`Connection` or :class:`Domain`."""
        return public_name(self.name)

    @property
    def signature(self) -> str:
        args = ", ".join(f"{p.name}: {p.type}" for p in self.params)
        return f"{self.name}({args}{', ' if args else ''}*, flags: int = 0) -> {self.returns}"


def public_name(op: str) -> str:
    """``connect_get_type`` -> ``type``, ``domain_get_info`` -> ``info``, ``node_get_info`` -> ``node_info``."""
    for prefix in ("connect_", "domain_"):
        if op.startswith(prefix):
            op = op[len(prefix) :]
            break
    if op.startswith("get_"):
        return op[4:]
    if op.startswith("node_get_"):
        return "node_" + op[9:]
    return op


def catalogue_compatible(target: str, current: str = CATALOGUE_VERSION) -> bool:
    try:
        t_major, t_minor = (int(x) for x in target.split("."))
        c_major, c_minor = (int(x) for x in current.split("."))
    except (ValueError, AttributeError):
        return False
    return t_major == c_major and t_minor <= c_minor


_DOM = Param("dom", "DomainRef", "the domain")


def _op(name: str, params: tuple[Param, ...], returns: str, doc: str, **kw: object) -> Operation:
    return Operation(name, params, returns, doc, **kw)  # type: ignore[arg-type]


_OPS = (
    _op("connect_get_type", (), "str", "Hypervisor type name, e.g. 'Xen', 'Test'.", mandatory=True),
    _op("connect_get_version", (), "Version", "Hypervisor version."),
    _op("connect_get_hostname", (), "str", "Host name of the hypervisor's host."),
    _op("node_get_info", (), "NodeInfo", "Physical host: cpus, memory (KiB), MHz, topology."),
    _op("connect_list_domains", (), "list[int]", "Ids of running domains.", mandatory=True),
    _op("connect_num_of_domains", (), "int", "Number of running domains."),
    _op("connect_list_defined_domains", (), "list[str]", "Names of defined domains that are not running."),
    _op("domain_lookup_by_id", (Param("id", "int"),), "DomainRef", "Find a running domain by id.", mandatory=True),
    _op("domain_lookup_by_name", (Param("name", "str"),), "DomainRef", "Find a domain by name.", mandatory=True),
    _op("domain_lookup_by_uuid", (Param("uuid", "UUID"),), "DomainRef", "Find a domain by UUID.", mandatory=True),
    _op(
        "domain_get_info",
        (_DOM,),
        "DomainInfo",
        "State, max/current memory (KiB), vcpus, cpu time (ns).",
        mandatory=True,
    ),
    _op("domain_get_state", (_DOM,), "DomainStateInfo", "State and the reason for it."),
    _op("domain_suspend", (_DOM,), "None", "Pause all vcpus.", mutates=True),
    _op("domain_resume", (_DOM,), "None", "Unpause a paused domain.", mutates=True),
    _op("domain_shutdown", (_DOM,), "None", "Ask the guest to shut down (cooperative).", mutates=True),
    _op("domain_reboot", (_DOM,), "None", "Ask the guest to reboot (cooperative).", mutates=True),
    _op("domain_destroy", (_DOM,), "None", "Stop the domain at once; a persistent domain stays defined.", mutates=True),
    _op(
        "domain_set_memory",
        (_DOM, Param("memory", "int", "KiB")),
        "None",
        "Set current memory (balloon).",
        mutates=True,
    ),
    _op("domain_set_max_memory", (_DOM, Param("memory", "int", "KiB")), "None", "Set maximum memory.", mutates=True),
    _op("domain_get_max_memory", (_DOM,), "int", "Maximum memory in KiB."),
    _op("domain_get_os_type", (_DOM,), "str", "Guest OS type: 'linux' (PV), 'hvm', ..."),
    _op("domain_get_vcpus", (_DOM,), "int", "Online vcpus; flags=VcpuFlags.MAXIMUM for the maximum."),
    _op(
        "domain_set_vcpus",
        (_DOM, Param("count", "int")),
        "None",
        "Set online vcpus (MAXIMUM: the maximum).",
        mutates=True,
    ),
    _op(
        "domain_create",
        (Param("config", "DomainConfig"),),
        "DomainRef",
        "Start a new transient domain from a config.",
        mutates=True,
    ),
    _op(
        "domain_define",
        (Param("config", "DomainConfig"),),
        "DomainRef",
        "Define a persistent domain without starting it.",
        mutates=True,
    ),
    _op("domain_start", (_DOM,), "DomainRef", "Start a defined domain (libvirt's virDomainCreate).", mutates=True),
    _op("domain_undefine", (_DOM,), "None", "Remove a defined domain's persistent config.", mutates=True),
    _op("domain_get_config", (_DOM,), "DomainConfig", "The domain's configuration."),
    _op(
        "connect_domain_event_register",
        (Param("callback", "Callable[[DomainEvent], None]"),),
        "Callable[[], None]",
        "Call back on every domain lifecycle event; returns a function that cancels.",
    ),
    # 1.1: statistics (records and units in virtkit._stats; optional, so 1.0 plugins keep working)
    _op(
        "connect_get_all_domain_stats",
        (
            Param("groups", "StatsGroups", "group names of virtkit.STATS_GROUPS, canonical order"),
            Param("domains", "list[DomainRef] | None", "None: every domain, active and inactive"),
        ),
        "list[DomainStats]",
        "Bulk stats of the requested groups per domain; a domain gone meanwhile is left out.",
        since="1.1",
    ),
    _op(
        "domain_block_stats",
        (_DOM, Param("device", "str", "disk target, e.g. 'vda'; '' sums every disk")),
        "BlockStats",
        "A disk's I/O counters: requests, bytes, ns.",
        since="1.1",
    ),
    _op(
        "domain_interface_stats",
        (_DOM, Param("device", "str", "interface name or MAC address")),
        "InterfaceStats",
        "An interface's counters: bytes, packets, errors, drops.",
        since="1.1",
    ),
    _op("domain_memory_stats", (_DOM,), "MemoryStats", "Balloon and guest memory figures (KiB).", since="1.1"),
    _op("domain_get_vcpu_info", (_DOM,), "list[VcpuInfo]", "Each online vcpu: state, cpu time (ns).", since="1.1"),
)

#: name -> Operation, in catalogue order.
CATALOGUE: Mapping[str, Operation] = types.MappingProxyType({op.name: op for op in _OPS})
