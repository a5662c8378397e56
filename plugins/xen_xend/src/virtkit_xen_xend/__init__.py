"""virtkit-xen-xend: Xen through xend's legacy HTTP/S-expression API.

``xen://host:8000/`` (remote, served by this plugin alone), ``xen+https://host/`` and local
``xen:///`` over xend's unix socket. xend left Xen in 4.5; :mod:`virtkit_xen_xend.emulator`
serves its URL tree from captured records for tests.

>>> from virtkit_xen_xend import parse_one, dumps
>>> dumps(parse_one("(domain (name 'vm 1') (memory 512))"))
"(domain (name 'vm 1') (memory 512))"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._plugin import DEFAULT_PORT, DEFAULT_SOCKET, PRIORITY, Plugin
from ._version import __version__

if TYPE_CHECKING:
    from ._driver import Driver, XendError
    from ._model import Devices, XendDomain, state_from_flags
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
    from ._vmsxp import RUNTIME_KEYS, config_to_sxp

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

# Loaded on first use, so that declining a URI (every xen:/// open on a host without xend) costs
# only the plugin object: the HTTP side imports requests (~100 ms), the model and the S-expression
# reader a tenth of a second of a cold CLI under emulation.
_LAZY = {
    "Driver": "._driver",
    "XendError": "._driver",
    "MAX_REPLY": "._transport",
    "Reply": "._transport",
    "Transport": "._transport",
    "UnixAdapter": "._transport",
    **dict.fromkeys(("Devices", "XendDomain", "state_from_flags"), "._model"),
    **dict.fromkeys(("RUNTIME_KEYS", "config_to_sxp"), "._vmsxp"),
    **dict.fromkeys(
        (
            "MAX_DEPTH",
            "Sxp",
            "SxpError",
            "atomp",
            "child",
            "children",
            "dumps",
            "join_continuations",
            "lookup",
            "parse",
            "parse_one",
            "value",
        ),
        "._sxp",
    ),
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import sys

    module = __name__ + mod  # mod is relative: "._sxp"
    __import__(module)  # importlib.import_module, without importing importlib (and warnings)
    return getattr(sys.modules[module], name)


#: The object the ``virtkit.drivers`` entry point ``xen`` names.
plugin = Plugin()
