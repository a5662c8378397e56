"""The plugin object: ``SCHEME+ssh://`` and ``SCHEME+ext://`` for every scheme.

Registered under the entry-point names ``+ssh`` and ``+ext``: the core imports it for any URI
with one of those transports, and for no other URI.
"""

from __future__ import annotations

import os
import tempfile

from virtkit import URI, Declined, OpenOptions, hookimpl
from virtkit.rpc import decode_explanation, served_operations

from ._transport import TRANSPORTS, endpoint

__all__ = ["PRIORITY", "Plugin"]

#: Above every local plugin's: a URI naming a transport is about the far side.
PRIORITY = 100


def _control_dir() -> str | None:
    """A private directory for ssh's master sockets: $XDG_RUNTIME_DIR, else one under the
    temp directory, mode 0700 and ours, else none (no connection reuse)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = os.path.join(base, f"virtkit-ssh-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None  # someone else's, or open to others: not a place for our sockets
    return path


class Plugin:
    __slots__ = ()

    virtkit_catalogue = "1.0"
    virtkit_name = "remote"
    virtkit_driver_class = "virtkit_remote._driver:RemoteDriver"

    def __repr__(self) -> str:
        return "<virtkit_remote.Plugin>"

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        if uri.transport not in TRANSPORTS:
            return Declined(
                f"remote serves +ssh and +ext, not {'+' + uri.transport if uri.transport else 'local'} URIs"
            )
        return True

    @hookimpl
    def priority(self, uri: URI) -> int:
        return PRIORITY

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        ep = endpoint(uri, _control_dir() if uri.transport == "ssh" else None)
        from ._conn import Link  # subprocess, selectors: only when a remote URI is opened
        from ._driver import driver_class

        link = Link(ep, timeout=options.timeout, readonly=options.readonly)
        try:
            hello = link.hello
            served = served_operations(hello.get("served"))
            far = hello.get("explain")
            explanation = decode_explanation(far) if far is not None else None
            return driver_class(served)(link, explanation)
        except BaseException:
            link.close()
            raise
