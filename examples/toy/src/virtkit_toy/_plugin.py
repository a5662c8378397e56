"""Negotiation: which URIs the toy serves, at what priority, and opening them."""

from __future__ import annotations

import os
import urllib.parse

from virtkit import URI, Declined, InvalidURI, OpenOptions, hookimpl

from ._driver import ToyDriver


class Plugin:
    virtkit_catalogue = "1.0"  # the catalogue version this plugin targets
    virtkit_name = "toy"  # shown by `virtkit explain`, `virtkit drivers`, `virtkit matrix`
    virtkit_default_uri = "toy:///"  # proposed when virtkit.open() gets no URI
    virtkit_driver_class = ToyDriver  # what `virtkit matrix` inspects, without opening anything

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        if uri.scheme != "toy":
            return Declined(f"scheme {uri.scheme!r} is not 'toy'")
        if uri.host or uri.transport:
            return Declined("the toy hypervisor is local: toy:/// or toy:///PATH.json")
        return True

    @hookimpl
    def priority(self, uri: URI) -> int:
        return 20

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> ToyDriver:
        path = urllib.parse.unquote(uri.path)
        if path in ("", "/"):
            return ToyDriver(None)
        if not path.endswith(".json"):
            raise InvalidURI(f"{uri}: name a JSON file, e.g. toy:///var/lib/toy/host.json", uri=str(uri))
        if not os.path.isdir(os.path.dirname(path)):
            raise InvalidURI(f"{uri}: directory {os.path.dirname(path)} does not exist", uri=str(uri))
        return ToyDriver(path)
