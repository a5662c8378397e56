"""virtkit-qemu: ``qemu:///session`` and ``qemu:///system``, QEMU processes driven through QMP.

A domain is a daemonized QEMU process started from a :class:`virtkit.DomainConfig`; its QMP
sockets, pidfile and console log live in the state directory, so domains outlive the connection
that started them and any later connection re-attaches to them.
"""

from __future__ import annotations

from ._command import check_config
from ._driver import Driver
from ._host import find_qemu, kvm_usable
from ._plugin import PRIORITY, Plugin, state_root
from ._version import __version__

__all__ = [
    "PRIORITY",
    "Driver",
    "Plugin",
    "__version__",
    "check_config",
    "find_qemu",
    "kvm_usable",
    "plugin",
    "state_root",
]

#: The object the ``virtkit.drivers`` entry point ``qemu`` names.
plugin = Plugin()
