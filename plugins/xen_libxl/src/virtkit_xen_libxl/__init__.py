"""virtkit-xen-libxl: create, define, start and undefine Xen domains on xen:///, through libxl.

A resident engine process per host holds one libxl context: it creates, destroys, shuts down
and reboots, and babysits what it created (applies on_poweroff/on_reboot/on_crash, as xl's
babysitter does). Where libxl's library for the running release is missing, ``xl`` does it.
Persistent definitions live in a state directory, one file per domain. Running domains' reads
stay with the hypercall and xenstore plugins.

>>> import virtkit, virtkit_xen_libxl
>>> cfg = virtkit_xen_libxl.load_xl_file("/etc/xen/guest.cfg")      # doctest: +SKIP
>>> with virtkit.open("xen:///") as conn:                           # doctest: +SKIP
...     conn.define(cfg).start()
"""

from __future__ import annotations

from ._plugin import PRIORITY, Plugin, connect
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._driver import Driver
    from ._xl import XlError
    from ._xlcfg import config_from_xl, config_to_xl, load_xl_file, parse

__all__ = [
    "PRIORITY",
    "Driver",
    "Plugin",
    "XlError",
    "__version__",
    "config_from_xl",
    "config_to_xl",
    "connect",
    "load_xl_file",
    "parse",
    "plugin",
]

_LAZY = {
    "Driver": "_driver",
    "XlError": "_xl",
    "config_from_xl": "_xlcfg",
    "config_to_xl": "_xlcfg",
    "load_xl_file": "_xlcfg",
    "parse": "_xlcfg",
}


def __getattr__(name: str) -> Any:
    # Everything but the plugin object loads on first use, not at entry-point import.
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import sys

    module = f"{__name__}.{mod}"
    __import__(module)  # importlib.import_module, without importing importlib (and warnings)
    return getattr(sys.modules[module], name)


#: The object the ``virtkit.drivers`` entry point ``xen.libxl`` names.
plugin = Plugin()
