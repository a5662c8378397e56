"""Registered under the transport name ``+faket``: serves SCHEME+faket:// for any scheme."""

from __future__ import annotations

import os

from virtkit import URI, Declined, OpenOptions, hookimpl

from ._memory import MemoryDriver

# Leaves a trace a subprocess test can look for.
os.environ["VIRTKIT_FAKES_TRANSPORT_IMPORTED"] = "1"


class TransportPlugin:
    virtkit_catalogue = "1.0"
    virtkit_name = "fake_transport"

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        return True if uri.transport == "faket" else Declined("serves +faket only")

    @hookimpl
    def priority(self, uri: URI) -> int:
        return 100

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> MemoryDriver:
        return MemoryDriver("fake_transport")


plugin = TransportPlugin()
