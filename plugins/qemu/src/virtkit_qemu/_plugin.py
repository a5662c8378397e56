"""The plugin object: negotiation hooks for ``qemu:///session`` and ``qemu:///system``."""

from __future__ import annotations

import os
import pathlib

from virtkit import URI, Declined, InvalidURI, OpenOptions, PermissionDenied, hookimpl

from ._driver import Driver
from ._host import any_qemu, find_qemu

__all__ = ["PRIORITY", "Plugin", "state_root"]

PRIORITY = 50

#: qemu:///system's state: shared by every user of the host, so root's.
SYSTEM_ROOT = pathlib.Path("/var/lib/virtkit/qemu")
#: Overrides SYSTEM_ROOT, for tests (CI runs as root and must not touch the host's real state).
SYSTEM_ROOT_ENV = "VIRTKIT_QEMU_SYSTEM_DIR"


def state_root(path: str) -> pathlib.Path:
    """``/session``: $XDG_STATE_HOME/virtkit/qemu (~/.local/state/...); ``/system``:
    /var/lib/virtkit/qemu, or $VIRTKIT_QEMU_SYSTEM_DIR when set (tests)."""
    if path == "/system":
        return pathlib.Path(os.environ.get(SYSTEM_ROOT_ENV) or SYSTEM_ROOT)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return pathlib.Path(base) / "virtkit" / "qemu"


class Plugin:
    """The ``qemu`` plugin: each open is a view of the state directory; domains outlive it."""

    __slots__ = ()

    virtkit_catalogue = "1.2"
    virtkit_name = "qemu"
    virtkit_default_uri = "qemu:///session"
    virtkit_driver_class = "virtkit_qemu._driver:Driver"

    def __repr__(self) -> str:
        return "<virtkit_qemu.Plugin>"

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        if uri.scheme != "qemu":
            return Declined(f"scheme {uri.scheme!r} is not 'qemu'")
        if uri.transport or uri.host or uri.user:
            return Declined("the qemu plugin is local only: use qemu:///session or qemu:///system")
        if not any_qemu():
            return Declined("no qemu-system-* binary on PATH (install e.g. Debian's qemu-system-x86)")
        return True

    @hookimpl
    def priority(self, uri: URI) -> int:
        return PRIORITY

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> Driver | Declined:
        if uri.path not in ("/session", "/system") or uri.query or uri.fragment:
            raise InvalidURI(f"{uri}: use qemu:///session or qemu:///system", uri=str(uri))
        qemu = find_qemu()
        if qemu is None:
            return Declined(f"no qemu-system binary for this host's architecture (found: {', '.join(any_qemu())})")
        root = state_root(uri.path)
        if uri.path == "/system" and os.geteuid() != 0:
            raise PermissionDenied(f"{uri} needs root (its state is {root})", uri=str(uri))
        try:
            return Driver(root, str(uri), qemu, options.timeout, readonly=options.readonly)
        except PermissionError as exc:
            raise PermissionDenied(f"{uri}: cannot use the state directory {root}: {exc}", uri=str(uri)) from exc
