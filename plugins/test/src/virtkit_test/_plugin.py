"""The plugin object: negotiation hooks for ``test:///default`` and ``test:///ABS/PATH.json``."""

from __future__ import annotations

from virtkit import URI, Declined, InvalidURI, OpenOptions, hookimpl

from ._driver import Driver
from ._host import DEFAULT_HOST, load_host

__all__ = ["PRIORITY", "Plugin"]

#: Low on purpose: a real hypervisor's plugin should win the default-URI probe.
PRIORITY = 10


class Plugin:
    """The ``test`` plugin. Each ``open`` builds a fresh, private host."""

    __slots__ = ()

    virtkit_catalogue = "1.2"
    virtkit_name = "test"
    virtkit_default_uri = "test:///default"

    def __repr__(self) -> str:
        return "<virtkit_test.Plugin>"

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        if uri.scheme != "test":
            return Declined(f"scheme {uri.scheme!r} is not 'test'")
        # test+tcp://host/... is libvirt's remote test driver: leave it to a remote plugin
        if uri.transport:
            return Declined(f"the embedded test driver takes no transport (got '+{uri.transport}')")
        if uri.host or uri.user:
            return Declined(f"the embedded test driver is local: use test:///..., not a host ({uri.host!r})")
        return True

    @hookimpl
    def priority(self, uri: URI) -> int:
        return PRIORITY

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> Driver:
        if uri.query or uri.fragment:
            raise InvalidURI(f"{uri}: test:/// URIs take no query or fragment", uri=str(uri))
        if uri.path == "/default":
            return Driver(DEFAULT_HOST, str(uri))
        import urllib.parse  # only for a file's path: not on test:///default's start-up path

        path = urllib.parse.unquote(uri.path)
        if path in ("", "/") or path.endswith("/"):
            raise InvalidURI(
                f"{uri}: name a host: test:///default or test:///ABSOLUTE/PATH.json (a host description)",
                uri=str(uri),
            )
        return Driver(load_host(path), str(uri))
