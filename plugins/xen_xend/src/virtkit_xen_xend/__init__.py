"""virtkit-xen-xend: Xen through xend's legacy HTTP/S-expression API.

``xen://host:8000/`` (remote, served by this plugin alone), ``xen+https://host/`` and local
``xen:///`` over xend's unix socket. xend left Xen in 4.5; :mod:`virtkit_xen_xend.emulator`
serves its URL tree from captured records for tests.

>>> from virtkit_xen_xend import parse_one, dumps
>>> dumps(parse_one("(domain (name 'vm 1') (memory 512))"))
"(domain (name 'vm 1') (memory 512))"
"""

from __future__ import annotations

from ._driver import Driver, XendError
from ._model import RUNTIME_KEYS, Devices, XendDomain, config_to_sxp, state_from_flags
from ._plugin import DEFAULT_PORT, DEFAULT_SOCKET, PRIORITY, Plugin
from ._sxp import (
    MAX_DEPTH,
    Sxp,
    SxpError,
    atomp,
    child,
    children,
    dumps,
    join_continuations,
    lookup,
    parse,
    parse_one,
    value,
)
from ._transport import MAX_REPLY, Reply, Transport, UnixAdapter
from ._version import __version__

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SOCKET",
    "MAX_DEPTH",
    "MAX_REPLY",
    "PRIORITY",
    "RUNTIME_KEYS",
    "Devices",
    "Driver",
    "Plugin",
    "Reply",
    "Sxp",
    "SxpError",
    "Transport",
    "UnixAdapter",
    "XendDomain",
    "XendError",
    "__version__",
    "atomp",
    "child",
    "children",
    "config_to_sxp",
    "dumps",
    "join_continuations",
    "lookup",
    "parse",
    "parse_one",
    "plugin",
    "state_from_flags",
    "value",
]

#: The object the ``virtkit.drivers`` entry point ``xen`` names.
plugin = Plugin()
