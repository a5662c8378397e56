"""virtkit-test: the embedded ``test:///`` hypervisor, a complete in-memory host.

``test:///default`` opens a fixed host (see the README); ``test:///ABS/PATH.json`` one described
in a JSON file. Every open gets its own state.

>>> import virtkit
>>> with virtkit.open("test:///default") as conn:
...     conn.type(), conn.hostname(), conn.list_domains()
('Test', 'test-host', [1, 2, 3])
"""

from __future__ import annotations

from ._driver import Driver
from ._host import DEFAULT_HOST, DEFAULT_HOST_DATA, DomainSpec, HostSpec, load_host, parse_host
from ._plugin import PRIORITY, Plugin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._version import __version__

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_HOST_DATA",
    "PRIORITY",
    "DomainSpec",
    "Driver",
    "HostSpec",
    "Plugin",
    "__version__",
    "load_host",
    "parse_host",
    "plugin",
]


def __getattr__(name: str) -> object:
    # The version is read when asked for: an open never needs it.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._version import __version__

    return __version__


#: The object the ``virtkit.drivers`` entry point ``test`` names.
plugin = Plugin()
