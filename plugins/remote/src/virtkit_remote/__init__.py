"""virtkit-remote: any virtkit plugin on a far host, through ``virtkit serve --stdio`` there.

``SCHEME+ssh://[user@]host[:port]/path`` runs the system OpenSSH client (``~/.ssh/config``, the
agent and ``known_hosts`` apply); ``SCHEME+ext:///path?command=PROGRAM`` runs PROGRAM instead.
Either way the far side opens ``SCHEME:///path`` with its own plugins and the catalogue crosses
the link.
"""

from __future__ import annotations

from ._plugin import PRIORITY, Plugin
from ._transport import CLIENT_PARAMS, TRANSPORTS, Endpoint, endpoint, far_uri
from ._version import __version__

__all__ = [
    "CLIENT_PARAMS",
    "PRIORITY",
    "TRANSPORTS",
    "Endpoint",
    "Plugin",
    "__version__",
    "endpoint",
    "far_uri",
    "plugin",
]

#: The object the ``virtkit.drivers`` entry points name.
plugin = Plugin()
