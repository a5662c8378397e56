"""Registered for ``other://`` only: opening ``fake://`` must never import this module."""

from __future__ import annotations

import os

from virtkit import URI, OpenOptions, hookimpl

# Leaves a trace a subprocess test can look for.
os.environ["VIRTKIT_FAKES_OTHER_IMPORTED"] = "1"


class OtherPlugin:
    virtkit_catalogue = "1.0"
    virtkit_name = "other"

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        from ._memory import MemoryDriver

        return MemoryDriver("other")


plugin = OtherPlugin()
