"""The resident libxl engine: one process per host that creates, destroys, shuts down and
reboots domains with one libxl context, and babysits every domain it created.

Why a process of its own (as libvirtd is, and unlike xl's per-domain babysitter): a guest's
on_poweroff / on_reboot / on_crash must be applied after whoever created it has gone, and a
library must not fork its caller. One resident process pays Python's and libxl's start once,
not per domain; each request is one round trip on a unix socket.

Protocol: one JSON object per line each way, one request per connection:
``{"op": "create", "config": LIBXL_JSON, "wait": S}`` -> ``{"ok": true, "domid": N}`` (S: how
long to wait for xl's create lock, ``_xllock``; then ``"kind": "busy"``);
``{"op": "destroy"|"shutdown"|"reboot", "domid": N, "name": NAME}`` -> ``{"ok": true}`` (NAME
optional: the domain must still have it);
``{"op": "ping"}`` -> ``{"ok": true, "pid": N, "domains": [N, ...]}``; a failure is
``{"ok": false, "kind": "libxl"|"nosuch"|"busy"|"request", "error": TEXT, "log": LIBXL'S MESSAGES}``.

The babysitter acts as ``xl create``'s (tools/xl/xl_vmcontrol.c): on a shutdown, the config's
action for its reason: destroy; restart (destroy, then the same config anew: same name and uuid,
a new id); rename-restart (the old run renamed NAME-<time> with a new uuid, then restart);
preserve (left shut down); coredump-destroy / coredump-restart (a core file in the dump
directory first); soft-reset; a suspend ends the watch. A domain destroyed by anyone just ends
it. Each domain's record (id, name, config) is kept in ``RUNDIR/domains`` while it is watched,
so an engine started again re-adopts the domains a previous one made (a shutdown it missed is
reported by libxl as soon as the watch is enabled, and acted on).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import socket
import socketserver
import sys
import threading
import time
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import virtkit
from virtkit.daemon import run_daemon

from . import _xllock
from ._libxl import Libxl, LibxlError, release
from ._plugin import DEFAULT_RUNDIR, ENDED, ENDED_KEEP_S, ENV_RUNDIR

__all__ = ["DEFAULT_RUNDIR", "DUMP_DIR", "ENV_RUNDIR", "Engine", "main"]

log = logging.getLogger("virtkit.xen_libxl.engine")

#: xl's XEN_DUMP_DIR on Debian (coredump-* actions write NAME there, as xl does).
DUMP_DIR = os.environ.get("VIRTKIT_XEN_DUMP_DIR", "/var/lib/xen/dump")
SOCKET = "engine.sock"
#: xl waits this long between a restarted domain's destruction and its new run ("re-creation
#: fails sometimes" without it, says xl_vmcontrol.c); the same here.
RESTART_PAUSE = 2.0
#: How long a create waits for xl's lock when the request does not say, and a restart always.
LOCK_WAIT = 60.0
#: An engine with no domain to watch and no request for this long exits.
IDLE_EXIT = 300.0
#: libxl's shutdown reasons -> the config key that names the action (libxl_types.idl).
_REASON_KEY = {
    "poweroff": "on_poweroff",
    "reboot": "on_reboot",
    "crash": "on_crash",
    "watchdog": "on_watchdog",
    "soft_reset": "on_soft_reset",
}
#: libxl's JSON leaves out a value equal to its type's initial one: an action's is destroy.
_DEFAULT_ACTION = "destroy"
#: libxl_shutdown_reason's values (the JSON of an event carries the number; 0 is left out).
_REASONS = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash", 4: "watchdog", 5: "soft_reset"}
_INVALID_DOMID = 0xFFFFFFFF
_UNREAD = object()


@dataclass
class Kid:
    """A domain the engine watches."""

    domid: int
    name: str
    config: str  # libxl's JSON
    handle: int = 0


def _action(config: str, reason: str) -> str:
    key = _REASON_KEY.get(reason)
    if key is None:
        return "destroy"  # an unknown reason: xl destroys too
    try:
        act = json.loads(config).get(key)
    except ValueError:
        act = None
    return str(act or _DEFAULT_ACTION).replace("-", "_")


def _uuid_of(config: str) -> str | None:
    """The uuid of libxl's JSON of a domain config, if it has one."""
    try:
        uid = json.loads(config).get("c_info", {}).get("uuid")
    except (ValueError, AttributeError):
        return None
    return uid if isinstance(uid, str) and uid else None


def _name(config: str) -> str:
    try:
        return str(json.loads(config)["c_info"]["name"])
    except (ValueError, KeyError, TypeError):
        return ""


class Engine:
    """The engine's state: the libxl context, the watched domains, one operation at a time
    (so that the log lines a failure leaves are that operation's)."""

    def __init__(self, rundir: pathlib.Path, lx: Libxl, log_fd: int) -> None:
        self.rundir = rundir
        self.lx = lx
        self.log_fd = log_fd
        self.ops = threading.Lock()
        self.kids: dict[int, Kid] = {}
        self.kids_lock = threading.Lock()
        self.busy = 0  # shutdown actions under way (their domain is out of ``kids`` meanwhile)
        self.last = time.monotonic()
        self.records = rundir / "domains"
        self.records.mkdir(mode=0o700, exist_ok=True)
        self.ended = rundir / ENDED
        self.ended.mkdir(mode=0o700, exist_ok=True)
        self.commandline: object = _UNREAD  # Xen's, for xl's autoballoon rule (_xl_lock)

    # -- records -------------------------------------------------------------------------------

    def _save(self, kid: Kid) -> None:
        path = self.records / f"{kid.domid}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"domid": kid.domid, "name": kid.name, "config": kid.config}))
        os.replace(tmp, path)

    def adopt(self, domid: int, config: str) -> Kid:
        kid = Kid(domid, _name(config), config)
        self._save(kid)
        with self.kids_lock:
            self.kids[domid] = kid
        handle = self.lx.watch_death(domid, domid)
        with self.kids_lock:  # its death may have been seen (and the kid forgotten) already
            if self.kids.get(domid) is kid:
                kid.handle, handle = handle, 0
        if handle:
            self.lx.unwatch(handle)
        return kid

    def forget(self, kid: Kid) -> None:
        with self.kids_lock:
            if self.kids.get(kid.domid) is kid:
                del self.kids[kid.domid]
            handle, kid.handle = kid.handle, 0
        if handle:
            self.lx.unwatch(handle)
        (self.records / f"{kid.domid}.json").unlink(missing_ok=True)

    def readopt(self) -> None:
        """Watch again the domains a previous engine made that still run under their name."""
        for path in sorted(self.records.glob("*.json")):
            try:
                rec = json.loads(path.read_text())
                domid, name, config = int(rec["domid"]), str(rec["name"]), str(rec["config"])
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if self.lx.name(domid) != name:
                path.unlink(missing_ok=True)
                continue
            log.warning("re-adopting domain %s (id %d)", name, domid)
            self.adopt(domid, config)

    # -- requests ------------------------------------------------------------------------------

    def _log_since(self, pos: int) -> str:
        self.lx.flush()
        with open(self.log_fd, "rb", closefd=False) as f:
            f.seek(pos)
            return f.read(65536).decode("utf-8", "replace").strip()

    def handle(self, req: Any, answer: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """The reply to ``req``; a create hands it to ``answer`` (if given) as soon as the domain
        runs, and enables the death watch after, still before any other operation."""
        self.last = time.monotonic()
        if not isinstance(req, dict):
            return {"ok": False, "kind": "request", "error": "a request is a JSON object"}
        op = req.get("op")
        if op == "ping":  # after any operation under way, as every other request
            with self.ops, self.kids_lock:
                return {"ok": True, "pid": os.getpid(), "domains": sorted(self.kids)}
        if op == "create" and isinstance(req.get("config"), str):
            wait = req.get("wait", LOCK_WAIT)
            if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 3600:
                return {"ok": False, "kind": "request", "error": f"bad wait {str(wait)[:40]!r}"}
            return self._create(req["config"], answer, float(wait))
        if op in ("destroy", "shutdown", "reboot") and isinstance(req.get("domid"), int):
            return self._act(op, req["domid"], req.get("name"))
        return {"ok": False, "kind": "request", "error": f"bad request {str(req)[:200]!r}"}

    def _xl_lock(self) -> str | None:
        """The lock file an xl create would hold now (xl.conf read each time, as each xl reads
        it), None when xl would hold none; Xen's command line is read once."""
        if self.commandline is _UNREAD:
            read = getattr(self.lx, "commandline", None)  # None: unknown, which xl takes as "on"
            try:
                self.commandline = read() if read is not None else None
            except (OSError, ValueError):
                log.exception("reading Xen's command line failed: taking autoballoon as xl's \"on\"")
                self.commandline = None
        return _xllock.wanted(self.commandline if isinstance(self.commandline, str) else None)

    def _fail(self, exc: LibxlError, pos: int) -> dict[str, Any]:
        return {"ok": False, "kind": "libxl", "error": str(exc), "log": self._log_since(pos)}

    def _create(self, config: str, answer: Callable[[dict[str, Any]], None] | None, wait: float) -> dict[str, Any]:
        with self.ops:  # xl's lock only under ops: a record lock is the process's, not a thread's
            pos = os.lseek(self.log_fd, 0, os.SEEK_END)
            path = self._xl_lock()
            try:
                with _xllock.held(path, time.monotonic() + wait):
                    domid = self.lx.create(config)
            except virtkit.TimeoutError as exc:
                return {"ok": False, "kind": "busy", "error": str(exc)}
            except OSError as exc:
                return {"ok": False, "kind": "request", "error": f"cannot take xl's create lock {path}: {exc.strerror}"}
            except LibxlError as exc:
                left = getattr(exc, "domid", _INVALID_DOMID)
                if 0 < left < _INVALID_DOMID and self.lx.name(left) is not None:
                    with contextlib.suppress(LibxlError):
                        self.lx.destroy(left)
                return self._fail(exc, pos)
            try:
                self.lx.unpause(domid)
            except LibxlError as exc:
                with contextlib.suppress(LibxlError):
                    self.lx.destroy(domid)
                return self._fail(exc, pos)
            reply = {"ok": True, "domid": domid}
            if answer is not None:
                answer(reply)  # as xl, which watches in its babysitter after the create returned
            # a shutdown in between is not missed: libxl reports one found when the watch starts
            try:
                self.adopt(domid, config)
            except LibxlError:
                log.exception("domain %d runs without a babysitter: its death watch failed", domid)
        return reply

    def _act(self, op: str, domid: int, name: Any) -> dict[str, Any]:
        """``op`` on ``domid`` if it runs (under ``name``, when given: an id is not reused
        while its domain exists, so this is the domain the caller means)."""
        if domid <= 0:
            return {"ok": False, "kind": "request", "error": f"refusing to {op} domain {domid}"}
        with self.ops:
            now = self.lx.name(domid)
            if now is None or (isinstance(name, str) and now != name):
                return {"ok": False, "kind": "nosuch", "error": f"no domain {name or ''} with id {domid}"}
            pos = os.lseek(self.log_fd, 0, os.SEEK_END)
            try:
                getattr(self.lx, op)(domid)
            except LibxlError as exc:
                return self._fail(exc, pos)
        return {"ok": True}

    # -- the babysitter ------------------------------------------------------------------------

    def pump(self) -> None:
        """Wait for libxl's death events of every watched domain (this thread only)."""
        while True:
            try:
                ev = self.lx.wait_event()
            except LibxlError:
                log.exception("waiting for libxl events failed")
                time.sleep(1)
                continue
            domid = ev.get("domid")
            shutdown = "type.domain_shutdown" in ev
            with self.kids_lock:
                kid = self.kids.get(domid) if isinstance(domid, int) else None
                if kid is not None and shutdown:
                    self.busy += 1  # counted before the kid leaves ``kids``: no idle exit between
            if kid is None:
                continue
            if shutdown:
                code = (ev["type.domain_shutdown"] or {}).get("shutdown_reason", 0)
                reason = _REASONS.get(code, "unknown") if isinstance(code, int) else str(code)
                threading.Thread(target=self._counted, args=(kid, reason), daemon=True).start()
            elif "type.domain_death" in ev:
                self.forget(kid)

    def _counted(self, kid: Kid, reason: str) -> None:
        try:
            self.shutdown_of(kid, reason)
        finally:
            with self.kids_lock:
                self.busy -= 1

    def shutdown_of(self, kid: Kid, reason: str) -> None:
        try:
            self._shutdown_of(kid, reason)
        except Exception:
            log.exception("applying the shutdown action of %s (id %d) failed", kid.name, kid.domid)

    def _mark_ended(self, kid: Kid, reason: str) -> None:
        """Say why ``kid``'s run ended, before acting on it: the engine destroys a shut-down
        domain within milliseconds, faster than an event watcher polling the hypervisor sees
        its shutdown reason; the watchers read it here (``_plugin.ended_reason``). Old marks go."""
        now = time.time()
        with contextlib.suppress(OSError):
            for old in self.ended.iterdir():
                if now - old.stat().st_mtime > ENDED_KEEP_S:
                    old.unlink(missing_ok=True)
        uid = _uuid_of(kid.config)
        if uid is not None:
            with contextlib.suppress(OSError):
                tmp = self.ended / f".{uid}.tmp"
                tmp.write_text(reason)
                os.replace(tmp, self.ended / str(uid))

    def _shutdown_of(self, kid: Kid, reason: str) -> None:
        self._mark_ended(kid, reason)
        self.forget(kid)  # this run ends here whatever the action; a new run is a new watch
        if reason == "suspend":
            log.warning("domain %s (id %d) suspended: not watched any more", kid.name, kid.domid)
            return
        action = _action(kid.config, reason)
        log.warning("domain %s (id %d) shut down (%s): %s", kid.name, kid.domid, reason, action)
        with self.ops:
            if action in ("coredump_destroy", "coredump_restart"):
                with contextlib.suppress(OSError):
                    os.makedirs(DUMP_DIR, exist_ok=True)
                try:
                    self.lx.core_dump(kid.domid, f"{DUMP_DIR}/{kid.name}")
                except LibxlError as exc:  # as xl: a failed dump does not stop the action
                    log.warning("core dump of %s failed: %s", kid.name, exc)
                action = "destroy" if action == "coredump_destroy" else "restart"
            if action == "preserve":
                return
            if action == "soft_reset":
                with _xllock.held(self._xl_lock(), time.monotonic() + LOCK_WAIT):  # as xl's
                    self.lx.soft_reset(kid.config, kid.domid)
                self.adopt(kid.domid, kid.config)
                self.lx.unpause(kid.domid)
                return
            if action == "restart_rename":
                suffix = time.strftime("-%Y%m%dT%H%MZ", time.gmtime())
                self.lx.preserve(kid.config, kid.domid, suffix, _uuid.uuid4())
            else:
                self.lx.destroy(kid.domid)
            if action == "destroy":
                return
        time.sleep(RESTART_PAUSE)
        with self.ops:
            with _xllock.held(self._xl_lock(), time.monotonic() + LOCK_WAIT):
                domid = self.lx.create(kid.config)
            self.adopt(domid, kid.config)
            self.lx.unpause(domid)
        log.warning("domain %s restarted as id %d", kid.name, domid)

    def idle(self) -> bool:
        """Nothing watched, no action under way, no request for a while: no event to come
        concerns this engine."""
        with self.kids_lock:
            return not self.kids and not self.busy and time.monotonic() - self.last > IDLE_EXIT


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        """Requests one line each, answered in order, until the client closes the connection."""
        while True:
            line = self.rfile.readline(1 << 22)
            if not line:
                return
            self._one(line)

    def _one(self, line: bytes) -> None:
        try:
            req = json.loads(line)
        except ValueError:
            req = None
        sent = False

        def answer(reply: dict[str, Any]) -> None:
            nonlocal sent
            sent = True
            with contextlib.suppress(OSError):
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        try:
            reply = self.server.engine.handle(req, answer)
        except Exception as exc:  # the engine stays up for the next request
            log.exception("request failed")
            reply = {"ok": False, "kind": "request", "error": f"{type(exc).__name__}: {exc}"}
        if not sent:
            answer(reply)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, engine: Engine) -> None:
        self.engine = engine
        super().__init__(path, _Handler)


def serve(rundir: pathlib.Path, ready: Any) -> int:
    rel = release()
    if rel is None:
        ready("cannot read the hypervisor's release (/sys/hypervisor/version)")
        return 1
    log_fd = os.open(rundir / "libxl.log", os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    lx = Libxl(rel, log_fd)
    engine = Engine(rundir, lx, log_fd)
    sock = rundir / SOCKET
    sock.unlink(missing_ok=True)
    server = _Server(str(sock), engine)
    os.chmod(sock, 0o600)
    threading.Thread(target=engine.pump, name="libxl-events", daemon=True).start()
    engine.readopt()
    threading.Thread(target=server.serve_forever, name="requests", daemon=True).start()
    ready("ok")
    while not engine.idle():
        time.sleep(5)
    sock.unlink(missing_ok=True)  # new clients start a new engine; this one drains and exits
    server.shutdown()
    with engine.ops:
        return 0


def main(argv: list[str] | None = None) -> int:
    """``python -c MAIN RUNDIR``: daemonize, then serve; the parent exits 0 once the engine is
    ready (or another one holds the rundir's lock), 1 with the reason on stderr."""
    ap = argparse.ArgumentParser(prog="virtkit_xen_libxl._engine")
    ap.add_argument("rundir", type=pathlib.Path)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    rundir: pathlib.Path = args.rundir.absolute()
    rundir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return run_daemon(
        rundir,
        "engine",
        lambda ready: serve(rundir, ready),
        wait=args.timeout,
        what=f"virtkit xen_libxl engine in {rundir}",
        log=log,
    )


# Not ``-m``: the package imports this module first, which runpy warns about (as the qemu relay).
MAIN = "import sys; from virtkit_xen_libxl._engine import main; sys.exit(main(sys.argv[1:]))"


def connect(path: pathlib.Path, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        raise
    return s


if __name__ == "__main__":
    sys.exit(main())
