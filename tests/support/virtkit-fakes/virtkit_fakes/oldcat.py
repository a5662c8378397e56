"""Targets a catalogue major this core does not speak: refused at load."""

from __future__ import annotations

from virtkit import URI, OpenOptions, hookimpl


class OldCataloguePlugin:
    virtkit_catalogue = "0.9"
    virtkit_name = "fake_oldcat"

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        raise AssertionError("never reached: incompatible catalogue")


plugin = OldCataloguePlugin()
