"""virtkit-xenstore: the XenStore wire protocol, as a standalone client and a virtkit driver.

>>> from virtkit_xenstore import Client
>>> with Client() as xs:                                       # doctest: +SKIP
...     xs.write("/tool/demo", b"hello")
...     xs.read("/tool/demo")
b'hello'

As a virtkit plugin (entry point ``xen.xenstore``) it serves ``xen:///`` on a Xen host whose
xenstored is reachable: domain lists and lookups, memory target, cooperative shutdown/reboot and
domain events.
"""

from __future__ import annotations

from ._plugin import PRIORITY, Plugin
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._client import Client, default_paths
    from ._driver import Driver
    from ._transaction import Transaction
    from ._watch import Watch, WatchEvent
    from ._wire import (
        PAYLOAD_MAX,
        AccessDenied,
        InvalidRequest,
        LimitExceeded,
        NotSupportedByDaemon,
        Op,
        PathExists,
        PathNotFound,
        Perm,
        QuotaExceeded,
        ReplyTooBig,
        TransactionConflict,
        XenStoreError,
    )

__all__ = [
    "PAYLOAD_MAX",
    "PRIORITY",
    "AccessDenied",
    "Client",
    "Driver",
    "InvalidRequest",
    "LimitExceeded",
    "NotSupportedByDaemon",
    "Op",
    "PathExists",
    "PathNotFound",
    "Perm",
    "Plugin",
    "QuotaExceeded",
    "ReplyTooBig",
    "Transaction",
    "TransactionConflict",
    "Watch",
    "WatchEvent",
    "XenStoreError",
    "__version__",
    "default_paths",
    "plugin",
]

# Loaded on first use: the entry point's import (every xen:// URI, and a host without xenstored
# declines at once) costs the plugin object only; the client loads when a connection opens.
_LAZY = {
    "Client": "_client",
    "default_paths": "_client",
    "Driver": "_driver",
    "Transaction": "_transaction",
    "Watch": "_watch",
    "WatchEvent": "_watch",
    **dict.fromkeys(
        (
            "PAYLOAD_MAX",
            "AccessDenied",
            "InvalidRequest",
            "LimitExceeded",
            "NotSupportedByDaemon",
            "Op",
            "PathExists",
            "PathNotFound",
            "Perm",
            "QuotaExceeded",
            "ReplyTooBig",
            "TransactionConflict",
            "XenStoreError",
        ),
        "_wire",
    ),
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import sys

    module = f"{__name__}.{mod}"
    __import__(module)  # importlib.import_module, without importing importlib (and warnings)
    return getattr(sys.modules[module], name)


#: The object the ``virtkit.drivers`` entry point names.
plugin = Plugin()
