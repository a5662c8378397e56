"""Opens fine but lacks mandatory operations: the open must fail naming them."""

from __future__ import annotations

from virtkit import URI, OpenOptions, hookimpl


class OnlyType:
    def connect_get_type(self, *, flags: int = 0) -> str:
        return "Partial"


class PartialPlugin:
    virtkit_catalogue = "1.0"
    virtkit_name = "partial"

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        return OnlyType()


plugin = PartialPlugin()
