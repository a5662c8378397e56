"""A well-behaved plugin for ``fake://``: a module-level plugin, as pluggy allows."""

from __future__ import annotations

from virtkit import URI, Declined, OpenOptions, hookimpl

from ._memory import MemoryDriver

virtkit_catalogue = "1.0"
virtkit_name = "fake_good"
virtkit_default_uri = "fake:///"

#: every driver this plugin opened, so tests can check close() reached it
opened: list[MemoryDriver] = []


@hookimpl
def can_handle(uri: URI) -> bool | Declined:
    if uri.host:
        return Declined("fake_good serves local URIs only")
    return True


@hookimpl
def priority(uri: URI) -> int:
    return 10


@hookimpl
def open(uri: URI, options: OpenOptions) -> MemoryDriver:  # noqa: A001 - the hook's name
    if uri.path == "/boom":
        raise RuntimeError("fake_good cannot open /boom")
    driver = MemoryDriver("good")
    opened.append(driver)
    return driver


plugin = __import__(__name__, fromlist=["_"])
