"""An emulated xend (test support): xend's HTTP/SXP server, seeded from real captured records.

xend left Xen in 4.5 and cannot be run; this serves its URL tree with real state transitions
on 127.0.0.1 and/or a unix socket, so the driver's tests and ``virtkit -c xen://...`` have a
peer. Run it standalone with ``python -m virtkit_xen_xend.emulator --port 0 --socket PATH``:
it prints the URI of each listener, one per line, then serves until interrupted.
"""

from __future__ import annotations

from ._host import EmulatedDomain, Host, XendFault
from ._seed import SEED_FILES, default_node, seed_domains
from ._server import MAX_CONTENT_LENGTH, Fault, XendEmulator

__all__ = [
    "MAX_CONTENT_LENGTH",
    "SEED_FILES",
    "EmulatedDomain",
    "Fault",
    "Host",
    "XendEmulator",
    "XendFault",
    "default_node",
    "seed_domains",
]
