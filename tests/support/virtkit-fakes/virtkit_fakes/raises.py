"""Its can_handle raises: recorded as ERROR, never fatal for the other plugins."""

from __future__ import annotations

from virtkit import URI, OpenOptions, hookimpl


class RaisingPlugin:
    virtkit_catalogue = "1.0"
    virtkit_name = "fake_raises"

    @hookimpl
    def can_handle(self, uri: URI) -> bool:
        raise RuntimeError("probe exploded")

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        raise AssertionError("never reached: can_handle raised")


plugin = RaisingPlugin()
