"""The operation catalogue: the single source of truth for what a driver can be asked to do.

Everything else derives from this table: vtable slots, the public methods' names (checked by a
test), read-only enforcement, ``explain``, the support matrix and the conformance kit.
Naming is libvirt's: public ``Domain.suspend()`` <-> operation ``domain_suspend`` <-> plugin
method ``domain_suspend``.

Besides the signature, each operation states the contract a driver keeps: the errors it raises
for which situation and the lifecycle events a successful call fires. docs/contract.md is
generated from this table (``python -m virtkit._reference``); a test fails when it is stale.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from ._record import NamedTuple

__all__ = [
    "CATALOGUE",
    "CATALOGUE_VERSION",
    "EVENTS_ATTRIBUTE",
    "Operation",
    "Param",
    "catalogue_compatible",
    "public_name",
]

#: major.minor. A plugin targeting the same major and a minor <= ours is compatible: minors
#: only add optional operations, a new major may change signatures.
CATALOGUE_VERSION = "1.2"

#: A driver that delivers only some event types names them in this attribute (a collection of
#: DomainEventType); undeclared means every type its operations must fire. The kit checks the
#: declared ones and skips the others, saying why.
EVENTS_ATTRIBUTE = "virtkit_event_types"


class Param(NamedTuple):
    name: str
    type: str
    doc: str = ""


class Operation(NamedTuple):
    """One vtable slot. ``params`` exclude ``self`` and the keyword-only ``flags`` every op takes.

    ``errors``: (error class name in virtkit, the situation a driver raises it in), beyond the
    ones every operation may raise. ``events``: the DomainEventType names a successful call fires
    for the domain, in order; ``note``: what else a driver must know (conditional events, ...).
    """

    name: str
    params: tuple[Param, ...]
    returns: str
    doc: str
    mandatory: bool = False
    mutates: bool = False
    since: str = "1.0"
    errors: tuple[tuple[str, str], ...] = ()
    events: tuple[str, ...] = ()
    note: str = ""

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
_MEMORY = Param("memory", "int", "KiB")

# The errors every domain operation raises in the same situation, and the common state refusals.
_GONE = ("NoSuchDomain", "the domain does not exist (any more)")
_NOT_ACTIVE = ("InvalidOperation", "the domain is not active (shut off)")
_NOT_RUNNING = ("InvalidOperation", "the domain is not running")


def _op(name: str, params: tuple[Param, ...], returns: str, doc: str, **kw: object) -> Operation:
    return Operation(name, params, returns, doc, **kw)  # type: ignore[arg-type]


_OPS = (
    _op("connect_get_type", (), "str", "Hypervisor type name, e.g. 'Xen', 'Test'.", mandatory=True),
    _op("connect_get_version", (), "Version", "Hypervisor version."),
    _op("connect_get_hostname", (), "str", "Host name of the hypervisor's host."),
    _op("node_get_info", (), "NodeInfo", "Physical host: cpus, memory (KiB), MHz, topology."),
    _op(
        "connect_list_domains",
        (),
        "list[int]",
        "Ids of running domains.",
        mandatory=True,
        note="Active domains only (running, paused, ...): a defined, shut-off domain has no id.",
    ),
    _op("connect_num_of_domains", (), "int", "Number of running domains.", note="Equals len(connect_list_domains())."),
    _op(
        "connect_list_defined_domains",
        (),
        "list[str]",
        "Names of defined domains that are not running.",
        note="Never a name that connect_list_domains lists by id.",
    ),
    _op(
        "domain_lookup_by_id",
        (Param("id", "int", "a running domain's id"),),
        "DomainRef",
        "Find a running domain by id.",
        mandatory=True,
        errors=(("NoSuchDomain", "no running domain has this id"),),
    ),
    _op(
        "domain_lookup_by_name",
        (Param("name", "str", "any string: names made by other tools stay reachable"),),
        "DomainRef",
        "Find a domain by name.",
        mandatory=True,
        errors=(("NoSuchDomain", "no domain, running or defined, has this name"),),
        note="Never return None. The DomainRef's id is None for a defined, shut-off domain.",
    ),
    _op(
        "domain_lookup_by_uuid",
        (Param("uuid", "UUID", "uuid.UUID"),),
        "DomainRef",
        "Find a domain by UUID.",
        mandatory=True,
        errors=(("NoSuchDomain", "no domain, running or defined, has this uuid"),),
    ),
    _op(
        "domain_get_info",
        (_DOM,),
        "DomainInfo",
        "State, max/current memory (KiB), vcpus, cpu time (ns).",
        mandatory=True,
        errors=(_GONE,),
        note="0 <= memory <= max_memory. A domain with an id is not SHUTOFF; one without is.",
    ),
    _op("domain_get_state", (_DOM,), "DomainStateInfo", "State and the reason for it.", errors=(_GONE,)),
    _op(
        "domain_suspend",
        (_DOM,),
        "None",
        "Pause all vcpus.",
        mutates=True,
        errors=(_GONE, ("InvalidOperation", "the domain is not running (already paused, or shut off)")),
        events=("SUSPENDED",),
        note="The domain keeps its id; its state becomes PAUSED.",
    ),
    _op(
        "domain_resume",
        (_DOM,),
        "None",
        "Unpause a paused domain.",
        mutates=True,
        errors=(_GONE, ("InvalidOperation", "the domain is not paused")),
        events=("RESUMED",),
    ),
    _op(
        "domain_shutdown",
        (_DOM,),
        "None",
        "Ask the guest to shut down (cooperative).",
        mutates=True,
        errors=(_GONE, _NOT_ACTIVE),
        events=("STOPPED",),
        note="Returns once the guest was asked; STOPPED fires when the guest is gone (after the call "
        "returns, or never if the guest ignores the request). Where the backend sees the guest "
        "finish its shutdown, SHUTDOWN fires before STOPPED (the test and qemu drivers do; the kit "
        "checks it where the driver declares SHUTDOWN in virtkit_event_types). A persistent domain "
        "stays defined and shut off; a transient one is gone.",
    ),
    _op(
        "domain_reboot",
        (_DOM,),
        "None",
        "Ask the guest to reboot (cooperative).",
        mutates=True,
        errors=(_GONE, _NOT_ACTIVE),
        events=("REBOOTED",),
        note="The domain keeps its id. When its config's on_reboot is 'destroy' the reboot ends the "
        "domain instead: STOPPED (SHUTDOWN first where seen), as for domain_shutdown.",
    ),
    _op(
        "domain_destroy",
        (_DOM,),
        "None",
        "Stop the domain at once; a persistent domain stays defined.",
        mutates=True,
        errors=(_GONE, _NOT_RUNNING),
        events=("STOPPED",),
        note="Afterwards a persistent domain is SHUTOFF with no id, listed by "
        "connect_list_defined_domains; a transient one is gone (lookups raise NoSuchDomain).",
    ),
    _op(
        "domain_set_memory",
        (_DOM, _MEMORY),
        "None",
        "Set current memory (balloon).",
        mutates=True,
        errors=(_GONE, ("InvalidArgument", "memory above the domain's maximum")),
        note="Visible in domain_get_info().memory once the balloon got there.",
    ),
    _op(
        "domain_set_max_memory",
        (_DOM, _MEMORY),
        "None",
        "Set maximum memory.",
        mutates=True,
        errors=(
            _GONE,
            ("InvalidOperation", "the domain's state forbids the change (libvirt refuses it while the domain runs)"),
            ("InvalidArgument", "a value the backend cannot take"),
        ),
        note="A driver must accept a real change in at least one state (the kit tries a running "
        "domain, then a defined, shut-off one). Below the current memory: lower the current "
        "memory with it (the test driver, Xen) or raise InvalidArgument.",
    ),
    _op("domain_get_max_memory", (_DOM,), "int", "Maximum memory in KiB.", errors=(_GONE,)),
    _op("domain_get_os_type", (_DOM,), "str", "Guest OS type: 'linux' (PV), 'hvm', ...", errors=(_GONE,)),
    _op(
        "domain_get_vcpus",
        (_DOM,),
        "int",
        "Online vcpus; flags=VcpuFlags.MAXIMUM for the maximum.",
        errors=(_GONE,),
        note="The maximum is never below the online count.",
    ),
    _op(
        "domain_set_vcpus",
        (_DOM, Param("count", "int", "vcpus")),
        "None",
        "Set online vcpus (MAXIMUM: the maximum).",
        mutates=True,
        errors=(
            _GONE,
            ("InvalidArgument", "count above the domain's maximum vcpus"),
            ("InvalidOperation", "flags=VcpuFlags.MAXIMUM while the domain is active (the maximum changes shut off)"),
        ),
    ),
    _op(
        "domain_create",
        (Param("config", "DomainConfig", "checked by virtkit.check_domain_config before you see it"),),
        "DomainRef",
        "Start a new transient domain from a config.",
        mutates=True,
        errors=(
            ("InvalidArgument", "a domain with the config's name or uuid exists (InvalidOperation is accepted too)"),
            ("InvalidArgument", "the backend cannot run this config"),
        ),
        events=("STARTED",),
        note="Returns the running domain's DomainRef, with its id. Transient: gone once it stops.",
    ),
    _op(
        "domain_define",
        (Param("config", "DomainConfig", "checked by virtkit.check_domain_config before you see it"),),
        "DomainRef",
        "Define a persistent domain without starting it.",
        mutates=True,
        errors=(("InvalidArgument", "the backend cannot store this config, or another domain has its name or uuid"),),
        events=("DEFINED",),
        note="Returns a DomainRef with id None; the domain is SHUTOFF and listed by "
        "connect_list_defined_domains. Redefining the same name and uuid, where the backend "
        "allows it, fires DEFINED again (detail 'updated').",
    ),
    _op(
        "domain_start",
        (_DOM,),
        "DomainRef",
        "Start a defined domain (libvirt's virDomainCreate).",
        mutates=True,
        errors=(_GONE, ("InvalidOperation", "the domain is already active")),
        events=("STARTED",),
        note="Returns the domain's new DomainRef, with its id.",
    ),
    _op(
        "domain_undefine",
        (_DOM,),
        "None",
        "Remove a defined domain's persistent config.",
        mutates=True,
        errors=(_GONE, ("InvalidOperation", "the domain is transient: nothing to undefine")),
        events=("UNDEFINED",),
        note="A shut-off domain is gone at once; a running one becomes transient and goes when it "
        "stops (libvirt's rule).",
    ),
    _op("domain_get_config", (_DOM,), "DomainConfig", "The domain's configuration.", errors=(_GONE,)),
    # 1.2: persistence and autostart (libvirt's virDomainIsPersistent, virDomainGet/SetAutostart)
    _op(
        "domain_is_persistent",
        (_DOM,),
        "bool",
        "Whether the domain has a persistent config, so that it outlives its stop.",
        since="1.2",
        errors=(_GONE,),
        note="True for a defined domain, shut off or running; False for one made by domain_create and "
        "for a running one after domain_undefine. Serve it only where the backend keeps the definitions.",
    ),
    _op(
        "domain_get_autostart",
        (_DOM,),
        "bool",
        "Whether the domain is started when its host (or the backend's daemon) starts.",
        since="1.2",
        errors=(_GONE,),
        note="False for a transient domain. Serve it only where something starts the marked domains.",
    ),
    _op(
        "domain_set_autostart",
        (_DOM, Param("autostart", "bool", "True: start it with the host")),
        "None",
        "Mark or unmark the domain to be started when its host starts.",
        mutates=True,
        since="1.2",
        errors=(_GONE, ("InvalidOperation", "the domain is transient: it has no config to start")),
        note="Read back by domain_get_autostart at once; changes no state and fires no event.",
    ),
    _op(
        "connect_domain_event_register",
        (Param("callback", "Callable[[DomainEvent], None]", "called once per event, from any thread"),),
        "Callable[[], None]",
        "Call back on every domain lifecycle event; returns a function that cancels.",
        errors=(("InvalidArgument", "callback is not callable"),),
        note="Call callback(DomainEvent(type, DomainRef, detail, timestamp)) outside your locks, so "
        "it may call the driver back; after cancel() it is no longer called. A driver that "
        "delivers only some event types declares them (virtkit_event_types).",
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
        note="Never NoSuchDomain: a named domain that does not exist is left out. Fill in exactly the groups asked"
        " for, the others None; of a defined, shut-off domain (id None) only the state group must be filled "
        "in (libvirt's rule: the other groups may be None). The core refuses unknown groups (InvalidArgument)"
        " and groups nobody serves (Unsupported) before you are called. A driver serving only some groups "
        "declares them on the method: @virtkit.stats_groups('state', 'cpu'); undeclared means every group. Of"
        " the stats providers, the one ranking highest for domain_lookup_by_uuid names the records: it is "
        "asked first, possibly for no group at all (return the records with every group None).",
    ),
    _op(
        "domain_block_stats",
        (_DOM, Param("device", "str", "disk target, e.g. 'vda'; '' sums every disk")),
        "BlockStats",
        "A disk's I/O counters: requests, bytes, ns.",
        since="1.1",
        errors=(_GONE, _NOT_RUNNING, ("InvalidArgument", "no disk of the domain is named device")),
    ),
    _op(
        "domain_interface_stats",
        (_DOM, Param("device", "str", "interface name or MAC address")),
        "InterfaceStats",
        "An interface's counters: bytes, packets, errors, drops.",
        since="1.1",
        errors=(_GONE, _NOT_RUNNING, ("InvalidArgument", "no interface of the domain is named device")),
    ),
    _op(
        "domain_memory_stats",
        (_DOM,),
        "MemoryStats",
        "Balloon and guest memory figures (KiB).",
        since="1.1",
        errors=(_GONE, _NOT_RUNNING),
    ),
    _op(
        "domain_get_vcpu_info",
        (_DOM,),
        "list[VcpuInfo]",
        "Each online vcpu: state, cpu time (ns).",
        since="1.1",
        errors=(_GONE, _NOT_RUNNING),
    ),
)

#: name -> Operation, in catalogue order.
CATALOGUE: Mapping[str, Operation] = types.MappingProxyType({op.name: op for op in _OPS})
