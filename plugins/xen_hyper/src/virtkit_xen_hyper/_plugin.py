"""The plugin object: local ``xen:///`` in a Xen control domain, nothing else.

Cheap probes only in ``can_handle``: ``/proc/xen/capabilities`` must contain ``control_d`` (the
file exists in every Xen guest, so its presence proves nothing) and the privcmd device must
open. The hypercall machinery is imported by ``open`` alone, so a host without Xen pays for a
file read, not for ctypes.
"""

from __future__ import annotations

import errno
import os

from virtkit import URI, Declined, OpenOptions, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._driver import Driver

__all__ = ["CAPABILITIES", "PRIORITY", "PRIVCMD_DEVICES", "Plugin", "connect"]

CAPABILITIES = "/proc/xen/capabilities"
#: libxencall's order: the devfs node, then the old procfs one.
PRIVCMD_DEVICES = ("/dev/xen/privcmd", "/proc/xen/privcmd")
#: Highest of the Xen plugins where it serves (xenstore ~20, xend 10).
PRIORITY = 50
_PATHS = ("", "/", "/system")  # libvirt's libxl driver is xen:///system


class Plugin:
    """The ``xen_hyper`` plugin; stateless, each open builds its own privcmd connection."""

    __slots__ = ("capabilities", "privcmd_paths")

    virtkit_catalogue = "1.1"
    virtkit_name = "xen_hyper"
    virtkit_default_uri = "xen:///"
    # a string: the support matrix reads the driver's methods without importing the hypercall layer
    virtkit_driver_class = "virtkit_xen_hyper._driver:Driver"

    def __init__(self, capabilities: str = CAPABILITIES, privcmd_paths: tuple[str, ...] | None = None) -> None:
        self.capabilities = capabilities
        self.privcmd_paths = privcmd_paths or PRIVCMD_DEVICES

    def __repr__(self) -> str:
        return "<virtkit_xen_hyper.Plugin>"

    def _why_not(self) -> str | None:
        """None when this domain can make control hypercalls, else the reason it can't."""
        try:
            with open(self.capabilities, "rb") as f:  # bytes: a text file would load a codec module
                caps = f.read().decode("ascii", "replace")
        except OSError as exc:
            return f"not running on Xen ({self.capabilities}: {exc.strerror})"
        if "control_d" not in {c.strip() for c in caps.split(",")}:  # the file ends in a newline
            return f"not the Xen control domain ({self.capabilities} lacks control_d)"
        errors = []
        for path in self.privcmd_paths:
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
                return None
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror}")
        return "privcmd does not open (" + "; ".join(errors) + ")"

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        if uri.scheme != "xen":
            return Declined(f"scheme {uri.scheme!r} is not 'xen'")
        if uri.host or uri.transport is not None:
            return Declined("hypercalls reach the local hypervisor only (xen:///)")
        if uri.path not in _PATHS:
            return Declined(f"no such local Xen URI path {uri.path!r}")
        why = self._why_not()
        return True if why is None else Declined(why)

    @hookimpl
    def priority(self, uri: URI) -> int:
        return PRIORITY

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> Driver:
        return connect(str(uri), self.privcmd_paths)


def connect(uri: str = "xen:///", privcmd_paths: tuple[str, ...] | None = None) -> Driver:
    """Open privcmd and a hypercall buffer, read Xen's version and pick its ABI."""
    try:
        return _connect(uri, privcmd_paths or PRIVCMD_DEVICES)
    except OSError as exc:
        # Typed for the caller: a restricted or XSM-confined privcmd says EPERM/EACCES.
        from virtkit import DriverError, PermissionDenied

        kind = PermissionDenied if exc.errno in (errno.EPERM, errno.EACCES) else DriverError
        raise kind(f"cannot use Xen's privcmd: {exc.strerror or exc}", uri=uri) from exc


def _connect(uri: str, privcmd_paths: tuple[str, ...]) -> Driver:
    from ._driver import Driver
    from ._hyper import LIST_PAGES, Hypervisor
    from ._privcmd import HypercallBuffer, Privcmd

    priv = Privcmd(privcmd_paths)
    try:
        buf = HypercallBuffer(1 + LIST_PAGES)
        priv.set_pinned(buf.pinned)
        try:
            hv = Hypervisor(priv.call, buf, close=priv.close, prepare=priv.prepared)
        except BaseException:
            buf.close()
            raise
    except BaseException:
        priv.close()
        raise
    return Driver(hv, uri)
