"""A hook whose argument name the spec doesn't know: pluggy's validation rejects it."""

from __future__ import annotations

from virtkit import OpenOptions, hookimpl


class BadHookPlugin:
    """A class entry point: the core instantiates it with no arguments."""

    virtkit_catalogue = "1.0"
    virtkit_name = "fake_badhook"

    @hookimpl
    def can_handle(self, url: str) -> bool:
        return True

    @hookimpl
    def open(self, uri: object, options: OpenOptions) -> object:
        raise AssertionError("never reached")
