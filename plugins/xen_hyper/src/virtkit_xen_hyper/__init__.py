"""virtkit-xen-hyper: Xen through direct hypercalls on /dev/xen/privcmd, from dom0.

Serves local ``xen:///`` where this domain is Xen's control domain: hypervisor version, node
info, domain listing (one batched sysctl), info/state, pause/unpause, destroy and max memory,
with the domctl/sysctl ABI chosen from the hypervisor's version. Importing this package is
cheap; the hypercall machinery loads when a connection opens.
"""

from __future__ import annotations

from ._plugin import CAPABILITIES, PRIORITY, Plugin, connect
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._driver import LOOKUP_PRIORITY, Driver
    from ._hyper import Hypervisor

__all__ = [
    "CAPABILITIES",
    "LOOKUP_PRIORITY",
    "PRIORITY",
    "Driver",
    "Hypervisor",
    "Plugin",
    "__version__",
    "connect",
    "plugin",
]

_LAZY = {"Driver": "_driver", "LOOKUP_PRIORITY": "_driver", "Hypervisor": "_hyper"}


def __getattr__(name: str) -> Any:
    # The driver and hypercall modules load on first use, not at entry-point import.
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import sys

    module = f"{__name__}.{mod}"
    __import__(module)  # importlib.import_module, without importing importlib (and warnings)
    return getattr(sys.modules[module], name)


#: The object the ``virtkit.drivers`` entry point ``xen.hyper`` names.
plugin = Plugin()
