"""A plugin for ``renamed://`` whose hook implementations have other names than the hooks.

pluggy allows it (``@hookimpl(specname=...)``): open, ``virtkit drivers``, ``virtkit matrix``
and the default-URI probe must all see these functions as the plugin's hooks.
"""

from __future__ import annotations

from virtkit import URI, Declined, OpenOptions, hookimpl

from ._memory import MemoryDriver

virtkit_catalogue = "1.0"
virtkit_name = "renamed"
virtkit_default_uri = "renamed:///"

PRIORITY = 37

#: the URIs each hook was called with, so tests can check what the core asked
asked: list[str] = []
opened: list[str] = []


class RenamedDriver(MemoryDriver):
    """Its own class, so the matrix shows it found the ``open`` implementation's annotation."""


@hookimpl(specname="can_handle")
def claims(uri: URI) -> bool | Declined:
    asked.append(str(uri))
    if uri.path == "/no":
        return Declined("renamed declines /no")
    return True


@hookimpl(specname="priority")
def bid(uri: URI) -> int:
    return PRIORITY


@hookimpl(specname="open")
def connect(uri: URI, options: OpenOptions) -> RenamedDriver | Declined:
    opened.append(str(uri))
    return RenamedDriver("renamed")


plugin = __import__(__name__, fromlist=["_"])
