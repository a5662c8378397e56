"""Declines every URI with a reason that explain must show."""

from __future__ import annotations

from virtkit import URI, Declined, OpenOptions, hookimpl


class DecliningPlugin:
    virtkit_catalogue = "1.0"
    virtkit_name = "fake_decliner"

    @hookimpl
    def can_handle(self, uri: URI) -> bool:
        return True

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        raise Declined("no fake daemon socket at /nonexistent")


plugin = DecliningPlugin()
