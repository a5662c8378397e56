"""The plugin object: local ``xen:///`` in a Xen control domain that has ``xl``.

``can_handle`` only reads ``/proc/xen/capabilities`` and looks for the xl binary. ``open``
composes the rest of xen:/// (hypercalls, xenstore) without this plugin, for the running
domains it hands over, and opens the state directory.
"""

from __future__ import annotations

import os
import time

import virtkit
from virtkit import URI, Declined, OpenOptions, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._driver import Driver
    from ._listing import Idents

__all__ = [
    "AUTO_DIR_PARAM",
    "CAPABILITIES",
    "ENDED",
    "INNER_PARAM",
    "PRIORITY",
    "STATE_PARAM",
    "Plugin",
    "ended_reason",
]

CAPABILITIES = "/proc/xen/capabilities"
#: Low at the plugin level: only the operations below, each with its own priority, are its job.
PRIORITY = 30
#: Marks the inner connection this plugin opens, so that it declines there (no recursion).
INNER_PARAM = "xen_libxl.inner"
#: ``params={"xen_libxl_state_dir": PATH}`` (or $VIRTKIT_XEN_LIBXL_STATE_DIR) moves the state.
STATE_PARAM = "xen_libxl_state_dir"
#: ``params={"xen_libxl_engine_dir": PATH}`` (or $VIRTKIT_XEN_LIBXL_ENGINE_DIR) moves the
#: resident engine's socket and records (default /run/virtkit/xen-libxl-engine).
ENGINE_DIR_PARAM = "xen_libxl_engine_dir"
#: ``params={"xen_libxl_auto_dir": PATH}`` (or $VIRTKIT_XEN_LIBXL_AUTO_DIR) moves xendomains'
#: auto directory, where autostart configs go (default: XENDOMAINS_AUTO, else /etc/xen/auto).
AUTO_DIR_PARAM = "xen_libxl_auto_dir"
# The engine's defaults live here, not in _engine (the engine process's module, with its
# logging and dataclasses): an open reads them without loading it.
DEFAULT_RUNDIR = "/run/virtkit/xen-libxl-engine"
ENV_RUNDIR = "VIRTKIT_XEN_LIBXL_ENGINE_DIR"
#: Where the engine says why a run of a domain it watched ended (one file per uuid) and how
#: long such a mark is kept: longer than a watcher's poll and a restart's pause. Here for the
#: same reason: the event watcher reads the marks.
ENDED = "ended"
ENDED_KEEP_S = 60.0
_PATHS = ("", "/", "/system")


class Plugin:
    """The ``xen_libxl`` plugin; stateless, each open builds its own driver."""

    virtkit_catalogue = "1.2"  # persistence and autostart (1.1: the state group of all_domain_stats)
    virtkit_name = "xen_libxl"
    virtkit_default_uri = "xen:///"
    virtkit_driver_class = "virtkit_xen_libxl._driver:Driver"

    def __init__(
        self,
        capabilities: str = CAPABILITIES,
        *,
        xl_path: str | None = None,
        inner_plugins: tuple[object, ...] = (),
        entry_points: bool = True,
        idents: Idents | None = None,
    ) -> None:
        # The keywords exist for tests: another xl, the inner xen:/// from given plugins, and
        # running domains' names and uuids from elsewhere than xenstore.
        self.capabilities = capabilities
        self.xl_path = xl_path
        self.inner_plugins = inner_plugins
        self.entry_points = entry_points
        self.idents = idents

    def __repr__(self) -> str:
        return "<virtkit_xen_libxl.Plugin>"

    def _why_not(self) -> str | None:
        try:
            with open(self.capabilities, "rb") as f:  # bytes: a text file would load a codec module
                caps = f.read().decode("ascii", "replace")
        except OSError as exc:
            return f"not running on Xen ({self.capabilities}: {exc.strerror})"
        if "control_d" not in {c.strip() for c in caps.split(",")}:
            return f"not the Xen control domain ({self.capabilities} lacks control_d)"
        from ._xl import find_xl

        if (self.xl_path or find_xl()) is None:
            return "no xl binary (xen-utils) on PATH"
        return None

    @hookimpl
    def can_handle(self, uri: URI) -> bool | Declined:
        if uri.scheme != "xen":
            return Declined(f"scheme {uri.scheme!r} is not 'xen'")
        if uri.host or uri.transport is not None:
            return Declined("xl manages the local host only (xen:///)")
        if uri.path not in _PATHS:
            return Declined(f"no such local Xen URI path {uri.path!r}")
        why = self._why_not()
        return True if why is None else Declined(why)

    @hookimpl
    def priority(self, uri: URI) -> int:
        return PRIORITY

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> Driver | Declined:
        if options.params.get(INNER_PARAM):
            return Declined("the inner connection of xen_libxl")
        return connect(uri, options, self.xl_path, self.inner_plugins, self.entry_points, self.idents)


def ended_reason(rundir: str | os.PathLike[str], uuid: str) -> str | None:
    """Why the engine in ``rundir`` saw the last run of domain ``uuid`` end (``poweroff``,
    ``reboot``, ``crash``, ...), if it watched that run and the mark is recent."""
    path = os.path.join(rundir, ENDED, uuid)
    try:
        if time.time() - os.stat(path).st_mtime > ENDED_KEEP_S:
            return None
        with open(path, "rb") as f:  # bytes, as above; the engine writes an ASCII reason
            return f.read().decode("ascii", "replace").strip() or None
    except OSError:
        return None


def _moved(options: OpenOptions | None, param: str, env: str) -> str | None:
    """A directory as ``params`` (first) or the environment move it; None where neither does."""
    if options is not None and options.params.get(param):
        return str(options.params[param])
    return os.environ.get(env) or None


def state_dir(options: OpenOptions | None = None) -> str:
    from ._state import DEFAULT_ROOT, ENV_ROOT

    return _moved(options, STATE_PARAM, ENV_ROOT) or DEFAULT_ROOT


def auto_dir(options: OpenOptions | None = None) -> str | None:
    """xendomains' auto directory as params or the environment move it; None: xendomains' own."""
    from ._autostart import ENV_AUTO_DIR

    return _moved(options, AUTO_DIR_PARAM, ENV_AUTO_DIR)


def connect(
    uri: URI,
    options: OpenOptions,
    xl_path: str | None = None,
    inner_plugins: tuple[object, ...] = (),
    entry_points: bool = True,
    idents: Idents | None = None,
) -> Driver:
    """The driver: the inner xen:/// (without this plugin), xl, and the state directory."""
    from ._autostart import AutoDir
    from ._driver import Driver
    from ._engines import choose
    from ._state import State
    from ._xl import Xl, find_xl

    path = xl_path or find_xl()
    if path is None:
        raise virtkit.Unsupported("no xl binary (xen-utils) on PATH")
    state = State(state_dir(options), timeout=options.timeout)
    state.sweep()
    inner = virtkit.open(
        str(uri),
        readonly=options.readonly,
        timeout=options.timeout,
        params={**options.params, INNER_PARAM: True},
        plugins=inner_plugins,
        entry_points=entry_points,
        # The inner bulk state read is the hypercall plugin's alone: with xenstore's stats in,
        # the core would ask xenstore first to name the domains (two more round trips on every
        # "is this definition running"); the listing names them itself, in one (_listing).
        exclude={"connect_get_all_domain_stats": ("xenstore",)},
    )
    xl = Xl(path, timeout=options.timeout)
    rundir = str(options.params.get(ENGINE_DIR_PARAM) or os.environ.get(ENV_RUNDIR) or DEFAULT_RUNDIR)
    try:
        engine = choose(options.params, xl, options.timeout, rundir)
    except BaseException:
        inner.close()
        raise
    return Driver(inner, xl, state, idents, engine, AutoDir(auto_dir(options)))
