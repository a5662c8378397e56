"""The plugin object: which ``xen`` URIs xend serves, and opening them.

* ``xen://host[:port]/``, ``xen+tcp://host[:port]/``: HTTP to xend's TCP server (default 8000).
  Only this plugin can reach a remote host, so it serves it alone.
* ``xen+https://host[:port]/``: the same over TLS, certificates verified by default
  (``?cacert=PATH`` names a CA bundle, ``?no_verify=1`` turns verification off).
* ``xen:///``, ``xen+unix:///``: local xend's unix socket, ``/var/lib/xend/xend-socket`` unless
  ``?socket=PATH``. Declined when the socket is absent, so the hypercall and xenstore plugins
  (which rank higher locally) serve a host without xend.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from virtkit import URI, Declined, InvalidURI, OpenOptions, hookimpl

if TYPE_CHECKING:
    from ._driver import Driver

__all__ = ["DEFAULT_PORT", "DEFAULT_SOCKET", "PRIORITY", "Plugin"]

DEFAULT_PORT = 8000
DEFAULT_SOCKET = "/var/lib/xend/xend-socket"
#: Low: locally the hypercall and xenstore plugins win where they serve; remote, xend is alone.
PRIORITY = 10

_TCP = (None, "tcp", "https")
_LOCAL = (None, "unix")
_KNOWN_PARAMS = frozenset({"socket", "cacert", "no_verify"})


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class Plugin:
    """The ``xen_xend`` plugin; stateless, each open builds its own session."""

    __slots__ = ()

    virtkit_catalogue = "1.2"
    virtkit_name = "xen_xend"
    # a string, so the support matrix can read it without importing requests
    virtkit_driver_class = "virtkit_xen_xend._driver:Driver"

    def __repr__(self) -> str:
        return "<virtkit_xen_xend.Plugin>"

    @staticmethod
    def socket_path(uri: URI) -> str:
        return uri.params.get("socket") or DEFAULT_SOCKET

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        if uri.scheme != "xen":
            return Declined(f"scheme {uri.scheme!r} is not 'xen'")
        t = uri.transport
        if uri.host:
            if t not in _TCP:
                return Declined(f"xend is reached over tcp, https or a local unix socket, not '+{t}'")
            return True
        if t == "tcp" or t == "https":
            return True  # xen+tcp:/// means this host's TCP server (libvirt: localhost:8000)
        if t not in _LOCAL:
            return Declined(f"xend is reached over tcp, https or a local unix socket, not '+{t}'")
        path = self.socket_path(uri)
        if not _is_socket(path):
            return Declined(f"no xend socket at {path}")
        return True

    @hookimpl
    def priority(self, uri: URI) -> int:
        return PRIORITY

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> Driver:
        unknown = sorted(set(uri.params) - _KNOWN_PARAMS)
        if unknown:
            raise InvalidURI(f"{uri}: unknown parameter(s) {', '.join(unknown)} for xend", uri=str(uri))
        if uri.path not in ("", "/"):
            raise InvalidURI(f"{uri}: xend URIs have no path (use '/')", uri=str(uri))
        # imported here: requests costs ~100 ms, not worth paying to decline xen:/// on a host without xend
        from ._driver import Driver
        from ._transport import Transport

        timeout = options.timeout
        if uri.host or uri.transport in ("tcp", "https"):
            https = uri.transport == "https"
            verify: bool | str = True
            if uri.params.get("no_verify", "0") not in ("", "0"):
                verify = False
            elif uri.params.get("cacert"):
                verify = uri.params["cacert"]
            auth = (uri.user, uri.password or "") if uri.user else None
            transport = Transport.tcp(
                uri.host or "localhost",
                uri.port or DEFAULT_PORT,
                timeout=timeout,
                https=https,
                verify=verify,
                auth=auth,
            )
        else:
            transport = Transport.unix(self.socket_path(uri), timeout=timeout)
        driver = Driver(transport, str(uri))
        try:
            driver.connect_get_hostname()  # fail at open, with xend's address, not at the first call
        except BaseException:
            driver.close()
            raise
        return driver
