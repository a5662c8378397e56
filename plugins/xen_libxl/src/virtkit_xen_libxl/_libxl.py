"""libxl through ctypes: the few calls the engine makes, without libxl's struct layouts.

Configurations go in as libxl's own JSON (``libxl_domain_config_from_json``, generated from its
IDL) and events come out as JSON (``libxl_event_to_json``), so no struct is laid out here: a
``libxl_domain_config`` is an opaque buffer larger than the struct in any release (its first
member is the ``c_info`` that ``libxl_domain_preserve`` takes). The library is the one of the
running hypervisor's release (``libxenlight.so.MAJOR.MINOR``): the ABI changes with each one.
"""

from __future__ import annotations

import ctypes
import json
import os
import uuid as _uuid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CONFIG_BYTES", "Libxl", "LibxlError", "release", "soname"]

#: Bytes for an opaque libxl_domain_config (4.17's is ~2 KiB; room for growth).
CONFIG_BYTES = 65536
#: xentoollog levels (xentoollog.h): messages at or above ``ERROR`` are kept.
XTL_ERROR = 8
EVENTMASK_ALL = ctypes.c_uint64(~0 & 0xFFFFFFFFFFFFFFFF)
_HYP = "/sys/hypervisor/version"


class LibxlError(Exception):
    """A libxl call failed: ``rc`` is libxl's error code (negative)."""

    def __init__(self, what: str, rc: int) -> None:
        super().__init__(f"{what} failed (libxl error {rc})")
        self.what = what
        self.rc = rc


def release(hyp: str = _HYP) -> str | None:
    """The running hypervisor's ``MAJOR.MINOR`` (sysfs), or None when it cannot be read."""
    try:
        with open(f"{hyp}/major", encoding="ascii") as f:
            major = f.read().strip()
        with open(f"{hyp}/minor", encoding="ascii") as f:
            minor = f.read().strip()
    except OSError:
        return None
    return f"{major}.{minor}" if major.isdigit() and minor.isdigit() else None


def soname(rel: str) -> str:
    """libxenlight's soname for a release: its version is the release's (``libxenlight.so.4.17``)."""
    return f"libxenlight.so.{rel}"


class _Uuid(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint8 * 16)]


def _fn(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


class Libxl:
    """One libxl context, logging to ``log_fd`` (kept open by the caller). Thread-safe as libxl
    is: calls from several threads share the context; ``event_wait`` blocks one thread."""

    def __init__(self, rel: str, log_fd: int) -> None:
        vp, u32, i = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        libc = ctypes.CDLL(None)
        xtl = ctypes.CDLL("libxentoollog.so.1")
        lib = ctypes.CDLL(soname(rel))
        self._libc = libc
        self._free = _fn(libc, "free", None, vp)
        self._fflush = _fn(libc, "fflush", i, vp)
        fdopen = _fn(libc, "fdopen", vp, i, ctypes.c_char_p)
        self._log = fdopen(os.dup(log_fd), b"a")
        if not self._log:
            raise OSError(ctypes.get_errno(), "fdopen of the libxl log failed")
        mklogger = _fn(xtl, "xtl_createlogger_stdiostream", vp, vp, i, ctypes.c_uint)
        self._logger = mklogger(self._log, XTL_ERROR, 0)
        self.ctx = vp()
        alloc = _fn(lib, "libxl_ctx_alloc", i, ctypes.POINTER(vp), i, ctypes.c_uint, vp)
        rc = alloc(ctypes.byref(self.ctx), 0, 0, self._logger)
        if rc:
            raise LibxlError("libxl_ctx_alloc", rc)
        self.lib = lib
        self._cfg_init = _fn(lib, "libxl_domain_config_init", None, vp)
        self._cfg_dispose = _fn(lib, "libxl_domain_config_dispose", None, vp)
        self._cfg_from_json = _fn(lib, "libxl_domain_config_from_json", i, vp, vp, ctypes.c_char_p)
        self._create = _fn(lib, "libxl_domain_create_new", i, vp, vp, ctypes.POINTER(u32), vp, vp)
        self._soft_reset = _fn(lib, "libxl_domain_soft_reset", i, vp, vp, u32, vp, vp)
        self._unpause = _fn(lib, "libxl_domain_unpause", i, vp, u32, vp)
        self._destroy = _fn(lib, "libxl_domain_destroy", i, vp, u32, vp)
        self._shutdown = _fn(lib, "libxl_domain_shutdown", i, vp, u32, vp)
        self._reboot = _fn(lib, "libxl_domain_reboot", i, vp, u32, vp)
        self._core_dump = _fn(lib, "libxl_domain_core_dump", i, vp, u32, ctypes.c_char_p, vp)
        self._preserve = _fn(lib, "libxl_domain_preserve", i, vp, u32, vp, ctypes.c_char_p, _Uuid)
        self._name = _fn(lib, "libxl_domid_to_name", vp, vp, u32)
        self._evenable = _fn(lib, "libxl_evenable_domain_death", i, vp, u32, ctypes.c_uint64, ctypes.POINTER(vp))
        self._evdisable = _fn(lib, "libxl_evdisable_domain_death", None, vp, vp)
        self._event_wait = _fn(lib, "libxl_event_wait", i, vp, ctypes.POINTER(vp), ctypes.c_uint64, vp, vp)
        self._event_json = _fn(lib, "libxl_event_to_json", vp, vp, vp)
        self._event_free = _fn(lib, "libxl_event_free", None, vp, vp)
        try:  # only for xl's autoballoon rule (_xllock): a libxl without them still creates
            self._version_info = _fn(lib, "libxl_get_version_info", vp, vp)
            self._version_json = _fn(lib, "libxl_version_info_to_json", vp, vp, vp)
        except AttributeError:
            self._version_info = self._version_json = None

    def flush(self) -> None:
        self._fflush(self._log)

    def _check(self, what: str, rc: int) -> None:
        self.flush()
        if rc:
            raise LibxlError(what, rc)

    # -- configurations ------------------------------------------------------------------------

    def _config(self, config_json: str) -> ctypes.Array[ctypes.c_char]:
        buf = ctypes.create_string_buffer(CONFIG_BYTES)
        self._cfg_init(buf)
        rc = self._cfg_from_json(self.ctx, buf, config_json.encode())
        if rc:
            self._cfg_dispose(buf)
            self._check("libxl_domain_config_from_json", rc)
        return buf

    def create(self, config_json: str) -> int:
        """A new domain from libxl's JSON; it is left paused (libxl builds domains paused)."""
        buf = self._config(config_json)
        try:
            domid = ctypes.c_uint32(0xFFFFFFFF)
            rc = self._create(self.ctx, buf, ctypes.byref(domid), None, None)
            if rc:
                err = LibxlError("libxl_domain_create_new", rc)
                err.domid = domid.value  # type: ignore[attr-defined]
                self.flush()
                raise err
            self.flush()
            return domid.value
        finally:
            self._cfg_dispose(buf)

    def soft_reset(self, config_json: str, domid: int) -> None:
        buf = self._config(config_json)
        try:
            self._check("libxl_domain_soft_reset", self._soft_reset(self.ctx, buf, domid, None, None))
        finally:
            self._cfg_dispose(buf)

    def preserve(self, config_json: str, domid: int, suffix: str, new_uuid: _uuid.UUID) -> None:
        """The shut-down domain renamed NAME+suffix, with ``new_uuid`` in xenstore."""
        buf = self._config(config_json)
        try:
            u = _Uuid()
            ctypes.memmove(u.bytes, new_uuid.bytes, 16)
            self._check("libxl_domain_preserve", self._preserve(self.ctx, domid, buf, suffix.encode(), u))
        finally:
            self._cfg_dispose(buf)

    # -- running domains -----------------------------------------------------------------------

    def unpause(self, domid: int) -> None:
        self._check("libxl_domain_unpause", self._unpause(self.ctx, domid, None))

    def destroy(self, domid: int) -> None:
        self._check("libxl_domain_destroy", self._destroy(self.ctx, domid, None))

    def shutdown(self, domid: int) -> None:
        self._check("libxl_domain_shutdown", self._shutdown(self.ctx, domid, None))

    def reboot(self, domid: int) -> None:
        self._check("libxl_domain_reboot", self._reboot(self.ctx, domid, None))

    def core_dump(self, domid: int, path: str) -> None:
        self._check("libxl_domain_core_dump", self._core_dump(self.ctx, domid, path.encode(), None))

    def name(self, domid: int) -> str | None:
        """The domain's name, or None when there is no such domain."""
        p = self._name(self.ctx, domid)
        if not p:
            return None
        try:
            return ctypes.string_at(p).decode("utf-8", "replace")
        finally:
            self._free(p)

    # -- death events --------------------------------------------------------------------------

    def watch_death(self, domid: int, user: int) -> int:
        """Enable DOMAIN_SHUTDOWN / DOMAIN_DEATH events of ``domid`` (tagged ``user``); a handle."""
        h = ctypes.c_void_p()
        self._check("libxl_evenable_domain_death", self._evenable(self.ctx, domid, user, ctypes.byref(h)))
        return h.value or 0

    def unwatch(self, handle: int) -> None:
        self._evdisable(self.ctx, ctypes.c_void_p(handle))

    def commandline(self) -> str | None:
        """Xen's command line (``libxl_get_version_info``, read through its JSON), None if unknown."""
        if self._version_info is None or self._version_json is None:
            return None
        info = self._version_info(self.ctx)
        p = self._version_json(self.ctx, info) if info else None
        if not p:
            return None
        try:
            data = json.loads(ctypes.string_at(p).decode("utf-8", "replace"))
        finally:
            self._free(p)
        line = data.get("commandline") if isinstance(data, dict) else None
        return line if isinstance(line, str) else None

    def wait_event(self) -> dict[str, Any]:
        """The next event, as libxl's JSON of it (blocks; one thread waits)."""
        ev = ctypes.c_void_p()
        rc = self._event_wait(self.ctx, ctypes.byref(ev), EVENTMASK_ALL, None, None)
        if rc:
            raise LibxlError("libxl_event_wait", rc)
        try:
            p = self._event_json(self.ctx, ev)
            try:
                text = ctypes.string_at(p).decode("utf-8", "replace") if p else "{}"
            finally:
                if p:
                    self._free(p)
        finally:
            self._event_free(self.ctx, ev)
        data: dict[str, Any] = json.loads(text)
        return data
