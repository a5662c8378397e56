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

from ._client import Client, Transaction, Watch, WatchEvent, default_paths
from ._driver import Driver
from ._plugin import PRIORITY, Plugin
from ._version import __version__
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

#: The object the ``virtkit.drivers`` entry point names.
plugin = Plugin()
