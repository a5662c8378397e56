"""The two engines behind the driver's lifecycle operations, chosen once at open.

``LibxlEngine`` (the default in a dom0 whose libxenlight matches the running hypervisor's
release): create, destroy, shutdown and reboot are requests to the resident engine process
(``_engine``), which holds one libxl context and babysits the domains it created. ``XlEngine``:
the same through the ``xl`` command (``xl create`` leaves xl's own babysitter per domain); used
where libxl's library for the running release is missing, or when asked for
(``params={"xen_libxl_engine": "xl"}``). Neither falls back to the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import sys
import threading
import time
from collections.abc import Mapping

import virtkit
from virtkit import DomainConfig, InvalidArgument, InvalidOperation, NoSuchDomain, PermissionDenied, VirtError
from virtkit.daemon import stale

from . import _xlcfg
from ._libxlcfg import libxl_config
from ._xl import Xl, XlError, _message

__all__ = ["ENGINE_PARAM", "Engine", "LibxlEngine", "XlEngine", "choose"]

ENGINE_PARAM = "xen_libxl_engine"

# Typing stays off the start-up path (issue 14): Engine is a protocol for the type checker only,
# and subprocess is imported by the one method that starts a process.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Engine(Protocol):
        """``create`` returns the new domain's id when it knows it; with ``checks_name``, the other
        operations act only on a domain that still has the name given (else NoSuchDomain)."""

        name: str
        checks_name: bool

        def create(
            self, cfg: DomainConfig, scratch: pathlib.Path, settings: dict[str, Any] | None = None
        ) -> int | None:
            """``settings``: ``cfg``'s xl settings (``_xlcfg.xl_settings``) when known already."""

        def destroy(self, domid: int, what: str) -> None: ...
        def shutdown(self, domid: int, what: str) -> None: ...
        def reboot(self, domid: int, what: str) -> None: ...
        def close(self) -> None: ...


def _xl_file(cfg: DomainConfig, scratch: pathlib.Path, tag: str, settings: dict[str, Any] | None) -> pathlib.Path:
    path = scratch / f"{cfg.uuid}.{tag}-{threading.get_ident()}.cfg"
    path.write_text(_xlcfg.dump(settings if settings is not None else _xlcfg.xl_settings(cfg)), encoding="utf-8")
    return path


class XlEngine:
    """``xl create`` / ``xl destroy`` / ``xl shutdown`` / ``xl reboot``."""

    name = "xl"
    checks_name = False

    def __init__(self, xl: Xl) -> None:
        self.xl = xl

    def create(self, cfg: DomainConfig, scratch: pathlib.Path, settings: dict[str, Any] | None = None) -> int | None:
        path = _xl_file(cfg, scratch, "create", settings)
        try:
            self.xl.create(path)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
        return None

    def destroy(self, domid: int, what: str) -> None:
        self.xl.run("destroy", str(domid), what=f"xl destroy {what}")

    def shutdown(self, domid: int, what: str) -> None:
        self.xl.run("shutdown", str(domid), what=f"xl shutdown {what}")

    def reboot(self, domid: int, what: str) -> None:
        self.xl.run("reboot", str(domid), what=f"xl reboot {what}")

    def close(self) -> None:
        pass


class LibxlEngine:
    """Requests to the resident engine in ``rundir`` (started on first use, once per host)."""

    name = "libxl"
    checks_name = True

    def __init__(self, rundir: str, xl: Xl, timeout: float, python: str | None = None) -> None:
        self.rundir = pathlib.Path(rundir)
        self.xl = xl  # xl's own parser, for the configs libxl_config leaves to it
        self.timeout = timeout
        self.python = python or sys.executable
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def _config_json(self, cfg: DomainConfig, scratch: pathlib.Path, settings: dict[str, Any] | None) -> str:
        """libxl's JSON of ``cfg``: built here for the keys this plugin maps, else what
        ``xl -N create`` (xl's parser: every xl key, its messages) makes of the xl file."""
        built = libxl_config(cfg, settings)
        if built is not None:
            return json.dumps(built)
        path = _xl_file(cfg, scratch, "check", settings)
        try:
            data = self.xl.check_config(path)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
        # xl prints the config as ``xl list -l`` does ({"domid": null, "config": {...}})
        inner = data.get("config")
        return json.dumps(inner if isinstance(inner, dict) and "c_info" not in data else data)

    def create(self, cfg: DomainConfig, scratch: pathlib.Path, settings: dict[str, Any] | None = None) -> int | None:
        deadline = time.monotonic() + self.timeout
        config = self._config_json(cfg, scratch, settings)
        # the engine gives up on xl's create lock early enough to say so before the deadline
        wait = round(max(0.0, deadline - time.monotonic()) * 0.8, 3)
        reply = self.call({"op": "create", "config": config, "wait": wait}, deadline)
        if not reply.get("ok"):
            msg = _message(str(reply.get("log") or "")) if reply.get("log") else str(reply.get("error"))
            if reply.get("kind") == "libxl":
                raise XlError(f"libxl create of {cfg.name!r} failed: {msg}", xl_message=msg)
            if reply.get("kind") == "busy":
                raise virtkit.TimeoutError(f"create of {cfg.name!r}: {reply.get('error')}")
            raise InvalidOperation(f"engine refused create of {cfg.name!r}: {reply.get('error')}")
        domid = reply.get("domid")
        return domid if isinstance(domid, int) else None

    def _act(self, op: str, domid: int, what: str) -> None:
        reply = self.call({"op": op, "domid": domid, "name": what}, time.monotonic() + self.timeout)
        if reply.get("ok"):
            return
        kind, err = reply.get("kind"), str(reply.get("error"))
        if kind == "nosuch":
            raise NoSuchDomain(f"{op} {what}: {err}")
        detail = _message(str(reply.get("log") or "")) if reply.get("log") else err
        raise VirtError(f"libxl {op} of {what} failed: {detail}")

    def destroy(self, domid: int, what: str) -> None:
        self._act("destroy", domid, what)

    def shutdown(self, domid: int, what: str) -> None:
        self._act("shutdown", domid, what)

    def reboot(self, domid: int, what: str) -> None:
        self._act("reboot", domid, what)

    # -- the socket ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def _connect(self, deadline: float) -> socket.socket:
        from ._engine import SOCKET, connect

        path = self.rundir / SOCKET
        spawned = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise virtkit.TimeoutError(f"the xen_libxl engine ({self.rundir}) did not answer in time")
            try:
                return connect(path, left)
            except (FileNotFoundError, ConnectionRefusedError):
                if not spawned:
                    self._spawn(deadline)
                    spawned = True
                else:
                    time.sleep(0.05)  # an engine that idled out is leaving: the new one comes
                    spawned = False
            except OSError as exc:
                raise PermissionDenied(f"cannot reach the xen_libxl engine at {path}: {exc.strerror}") from None

    def call(self, req: dict[str, Any], deadline: float) -> dict[str, Any]:
        """One request, answered before ``deadline`` (the engine is started if need be), on the
        connection kept from the last one: a connection (and the engine's thread for it) per
        request cost more than the request's own round trip. A request is never sent twice: one
        whose connection ends before the reply is ConnectionClosed."""
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise virtkit.TimeoutError(f"the xen_libxl engine: another request held the connection ({req['op']})")
        try:
            if self._sock is not None and stale(self._sock):
                self._drop()
            if self._sock is None:
                self._sock = self._connect(deadline)
            sock = self._sock
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                sock.sendall(json.dumps(req).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise virtkit.ConnectionClosed(f"the xen_libxl engine closed the connection ({req['op']})")
                    buf += chunk
            except TimeoutError:
                self._drop()  # a late reply must not be taken for the next request's
                raise virtkit.TimeoutError(f"the xen_libxl engine did not finish {req['op']} in time") from None
            except virtkit.ConnectionClosed:
                self._drop()
                raise
            except OSError as exc:
                self._drop()
                raise virtkit.ConnectionClosed(
                    f"the xen_libxl engine's connection failed ({req['op']}): {exc}"
                ) from None
        finally:
            self._lock.release()
        reply: dict[str, Any] = json.loads(buf)
        return reply

    def _spawn(self, deadline: float) -> None:
        import subprocess

        from ._engine import MAIN

        left = max(1.0, deadline - time.monotonic())
        pkg_root = str(pathlib.Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([pkg_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        try:
            proc = subprocess.run(
                [self.python, "-c", MAIN, str(self.rundir), "--timeout", f"{left:g}"],
                capture_output=True,
                text=True,
                timeout=left + 5,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise virtkit.TimeoutError("the xen_libxl engine did not start in time") from None
        except OSError as exc:
            raise PermissionDenied(f"cannot start the xen_libxl engine: {exc.strerror}") from None
        if proc.returncode != 0:
            raise InvalidOperation(f"the xen_libxl engine did not start: {proc.stderr.strip() or proc.returncode}")


def choose(params: Mapping[str, Any], xl: Xl, timeout: float, rundir: str) -> Engine:
    """The engine for this open: asked for by ``params``, else libxl when this host's libxenlight
    is the running hypervisor's release, else xl (the reason is in the engine's ``why``)."""
    from ._libxl import release, soname

    asked = params.get(ENGINE_PARAM)
    if asked not in (None, "libxl", "xl"):
        raise InvalidArgument(f"{ENGINE_PARAM}={asked!r}: 'libxl' or 'xl'")
    if asked == "xl":
        return XlEngine(xl)
    rel = release()
    if rel is not None and _has_library(soname(rel)):
        return LibxlEngine(rundir, xl, timeout)
    if asked == "libxl":
        raise virtkit.Unsupported(f"no libxenlight for the running hypervisor ({rel or 'release unknown'})")
    return XlEngine(xl)


def _has_library(name: str) -> bool:
    # only looked for: libxl is never loaded into the caller's process
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"):
        if os.path.exists(os.path.join(d, name)):
            return True
    return False
