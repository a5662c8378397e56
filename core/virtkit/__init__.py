"""virtkit: one Python API over many hypervisors, each a separately installed plugin.

>>> import virtkit
>>> with virtkit.open("test:///default") as conn:  # with the virtkit-test plugin installed
...     [d.name for d in conn.domains(all=True)]
['test', 'web', 'paused-vm', 'defined-vm']
"""

from __future__ import annotations

from ._catalogue import CATALOGUE, CATALOGUE_VERSION, Operation, Param, public_name
from ._connection import Connection, Domain, open
from ._discovery import ENTRY_POINT_GROUP
from ._discovery import refresh as refresh_plugins
from ._errors import (
    ConnectionClosed,
    DriverError,
    ErrorCode,
    InvalidArgument,
    InvalidOperation,
    InvalidURI,
    NoDriver,
    NoSuchDomain,
    PermissionDenied,
    PluginLoadError,
    ProtocolError,
    ReadOnlyError,
    TimeoutError,
    Unsupported,
    VirtError,
)
from ._explain import Attempt, Candidate, Explanation, Outcome, Route
from ._input import (
    MAX_CONFIG_BYTES,
    MAX_MEMORY_KIB,
    MAX_TIMEOUT,
    MAX_VCPUS,
    check_domain_config,
    check_domain_name,
    check_memory,
    check_timeout,
    check_vcpus,
    load_json_file,
    parse_json,
    read_config_file,
)
from ._plugin import Declined, OpenOptions, check_flags, hookimpl, priority
from ._types import (
    DomainConfig,
    DomainEvent,
    DomainEventType,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    DomainStats,
    NodeInfo,
    VcpuFlags,
    Version,
)
from ._uri import URI, parse_uri

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from ._events import EventStream
    from ._plugin import hookspec
    from ._stats import (
        STATS_GROUPS,
        BalloonStats,
        BlockStats,
        CpuStats,
        InterfaceStats,
        MemoryStats,
        VcpuInfo,
        VcpuState,
        VcpuStats,
        stats_groups,
    )
    from ._version import __version__

# Statistics (catalogue 1.1) load on first use: their record classes would be a noticeable share
# of every `import virtkit`, and most processes never ask for statistics.
_STATS_NAMES = frozenset(
    {
        "BalloonStats",
        "BlockStats",
        "CpuStats",
        "InterfaceStats",
        "MemoryStats",
        "VcpuInfo",
        "VcpuState",
        "VcpuStats",
    }
)

# pluggy's hookspec marker is made on first use (see _plugin): pluggy is imported when needed.
_PLUGGY_NAMES = frozenset({"hookspec"})

# Loaded on first use: most processes never ask for events (and queue is not on the start-up path);
# a listing needs the group names but none of the groups' records.
_HOMES = {
    "__version__": "_version",  # read when asked: a command that does not print it never loads it
    "EventStream": "_events",
    "STATS_GROUPS": "_stats_route",
    "stats_groups": "_stats_route",
}

# Public submodules, imported on first use so `import virtkit` stays cheap: virtkit.rpc (the
# remote protocol, for remote plugins), virtkit.fleet (many hosts at once) and virtkit.daemon (a
# process-based plugin's helper process).
_LAZY = ("daemon", "fleet", "rpc")


def __getattr__(name: str) -> object:
    import sys

    home = "_stats" if name in _STATS_NAMES else "_plugin" if name in _PLUGGY_NAMES else _HOMES.get(name)
    if home is None and name in _LAZY:
        home = name
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = f"{__name__}.{home}"
    __import__(module)  # importlib.import_module, without importing importlib (and warnings)
    if home == name:
        return sys.modules[module]
    value: object = getattr(sys.modules[module], name)
    globals()[name] = value
    return value


__all__ = [
    "CATALOGUE",
    "CATALOGUE_VERSION",
    "ENTRY_POINT_GROUP",
    "MAX_CONFIG_BYTES",
    "MAX_MEMORY_KIB",
    "MAX_TIMEOUT",
    "MAX_VCPUS",
    "STATS_GROUPS",
    "URI",
    "Attempt",
    "BalloonStats",
    "BlockStats",
    "Candidate",
    "Connection",
    "ConnectionClosed",
    "CpuStats",
    "Declined",
    "Domain",
    "DomainConfig",
    "DomainEvent",
    "DomainEventType",
    "DomainInfo",
    "DomainRef",
    "DomainState",
    "DomainStateInfo",
    "DomainStats",
    "DriverError",
    "ErrorCode",
    "EventStream",
    "Explanation",
    "InterfaceStats",
    "InvalidArgument",
    "InvalidOperation",
    "InvalidURI",
    "MemoryStats",
    "NoDriver",
    "NoSuchDomain",
    "NodeInfo",
    "OpenOptions",
    "Operation",
    "Outcome",
    "Param",
    "PermissionDenied",
    "PluginLoadError",
    "ProtocolError",
    "ReadOnlyError",
    "Route",
    "TimeoutError",
    "Unsupported",
    "VcpuFlags",
    "VcpuInfo",
    "VcpuState",
    "VcpuStats",
    "Version",
    "VirtError",
    "__version__",
    "check_domain_config",
    "check_domain_name",
    "check_flags",
    "check_memory",
    "check_timeout",
    "check_vcpus",
    "daemon",
    "fleet",
    "hookimpl",
    "hookspec",
    "load_json_file",
    "open",
    "parse_json",
    "parse_uri",
    "priority",
    "public_name",
    "read_config_file",
    "refresh_plugins",
    "rpc",
    "stats_groups",
]
