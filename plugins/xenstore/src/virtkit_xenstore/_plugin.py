"""The plugin object: negotiation for xen:/// (local only)."""

from __future__ import annotations

import os

from virtkit import URI, Declined, OpenOptions, VirtError, hookimpl

__all__ = ["PRIORITY", "Plugin"]

#: Below xen_hyper (hypercalls are the authority where both serve), above xen_xend (10).
PRIORITY = 20
_LOCAL_PATHS = ("", "/", "/system")


class Plugin:
    """virtkit plugin ``xenstore``: scheme ``xen``, entry point ``xen.xenstore``."""

    virtkit_catalogue = "1.1"
    virtkit_name = "xenstore"
    # a string: the support matrix reads the driver's methods without opening xenstored
    virtkit_driver_class = "virtkit_xenstore._driver:Driver"

    def __repr__(self) -> str:
        return "<virtkit_xenstore.Plugin>"

    @staticmethod
    def channel_path(options: OpenOptions | None = None) -> str | None:
        """An explicit socket/device: ``params={"xenstore_path": ...}``, else $XENSTORED_PATH."""
        if options is not None and options.params.get("xenstore_path"):
            return str(options.params["xenstore_path"])
        return None

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        if uri.scheme != "xen":
            return Declined(f"scheme {uri.scheme!r} is not 'xen'")
        if uri.host:
            return Declined(f"xenstore serves only the local host (xen:///), not {uri.host}")
        if uri.transport:
            return Declined(f"xenstore is local; '+{uri.transport}' is another plugin's transport")
        if uri.path not in _LOCAL_PATHS:
            return Declined(f"xenstore serves xen:/// or xen:///system, not path {uri.path!r}")
        return True

    @hookimpl
    def priority(self, uri: URI) -> int:
        return PRIORITY

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        from ._client import Client, default_paths  # here, not at the entry point's import

        path = self.channel_path(options)
        if path is None and not any(os.path.exists(p) for p in default_paths()):
            return Declined("no xenstored reachable: none of " + ", ".join(default_paths()) + " exists")
        client = Client(path, timeout=options.timeout)
        try:
            client.get_domain_path(0)  # one round trip: is a daemon really answering?
        except VirtError as exc:
            client.close()
            return Declined(f"no xenstored reachable: {exc.message}")
        from ._driver import Driver

        return Driver(client, str(options.params.get("sysfs_root") or "/sys"))
