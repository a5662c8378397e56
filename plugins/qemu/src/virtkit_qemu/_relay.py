"""The per-domain relay: one small process per running domain, the domain's only QMP watcher.

QEMU serves one client per QMP monitor, so a domain cannot have an unbounded number of direct
event listeners. Instead, every domain gets a relay process (started right after QEMU, daemonized
the same way) that holds the domain's ``monitor.sock`` for its whole life and:

* re-broadcasts QEMU's events, already translated to virtkit's, to any number of subscribers on
  ``relay.sock`` (a line of JSON each): every virtkit connection, in any process, that listens;
* runs QMP commands for its clients on that same monitor (``execute``), so a virtkit connection
  keeps one cheap unix connection to the relay instead of a QMP handshake per command;
* acts on the guest's power-off at once, whether or not any virtkit connection is open: a pending
  cooperative reboot (the ``reboot`` file) -> ``system_reset`` + ``cont`` (libvirt's "fake
  reboot"); otherwise ``quit`` (QEMU runs with ``-no-shutdown``);
* exits when QEMU's monitor closes (QEMU quit, was killed, or crashed).

Wire protocol on ``relay.sock`` (JSON lines). The relay greets with ``{"relay": 1, "pid": N}``.
A client sends ``{"id": I, "listen": true}`` (reply ``{"id": I, "return": {}}``: events from
then on are delivered), ``{"id": I, "execute": CMD, "arguments": {...}}`` (reply ``{"id": I,
"return": ...}`` or ``{"id": I, "error": {"class": C, "desc": D}}``, C "RelayTimeout" when QEMU
did not answer within the relay's timeout), or ``{"id": I, "batch":
[[CMD, ARGS], ...]}`` (reply ``{"id": I, "results": [{"return": ...} or {"error": ...}, ...]}``,
one line for the whole batch). Events to listeners:
``{"event": "suspended", "detail": "paused"}`` (a :class:`virtkit.DomainEventType` value), and
``{"event": "gone", "detail": HOW}`` once QEMU's monitor closed, HOW being "shutdown" (the
guest powered off, or QEMU was told to stop by a signal), "destroyed" (someone sent ``quit``) or
"crashed" (the monitor closed without QEMU saying why: ``kill -9``, a QEMU crash).

The reboot file is shared with the driver, which handles a power-off itself when the relay is
missing: whoever renames ``reboot`` to ``reboot.claimed-PID-TID`` first performs the reset, so
it happens exactly once; a claim exists only while the reset is under way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pathlib
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from qemu.qmp import ExecuteError, QMPClient, QMPError
from qemu.qmp.message import Message
from qemu.qmp.protocol import Runstate

from virtkit import VirtError, load_json_file, read_config_file
from virtkit.daemon import run_daemon

__all__ = [
    "MONITOR",
    "RELAY",
    "cancel_reboot",
    "claim_reboot",
    "reboot_deadline",
    "reboot_pending",
    "release_claim",
    "request_reboot",
    "spawn",
]

log = logging.getLogger("virtkit.qemu.relay")

MONITOR = "monitor.sock"  # the relay's QMP monitor (events and proxied commands)
RELAY = "relay.sock"  # the relay's own socket, for any number of virtkit connections
REBOOT = "reboot"  # a pending cooperative reboot: {"deadline": unix time, "pid": requester}
_EOF = "__virtkit_eof__"
_MAX_BUFFER = 1 << 20  # a listener that does not read 1 MiB of events is dropped


# -- the reboot request, shared with the driver --------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def request_reboot(rundir: pathlib.Path, timeout: float) -> float:
    """Record a pending reboot, valid for ``timeout`` seconds (atomically replaces an older one).

    Returns its deadline (unix time), which also tells this request from a later one.
    """
    deadline = time.time() + timeout
    tmp = rundir / f".{REBOOT}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(json.dumps({"deadline": deadline, "pid": os.getpid()}) + "\n")
    os.replace(tmp, rundir / REBOOT)
    return deadline


def cancel_reboot(rundir: pathlib.Path) -> None:
    (rundir / REBOOT).unlink(missing_ok=True)


def _deadline(path: pathlib.Path) -> float:
    try:
        # a regular file of bounded size, strict JSON: anything else there must not block or crash
        return float(load_json_file(path, "reboot request")["deadline"])
    except (VirtError, KeyError, TypeError, ValueError, OverflowError):
        return 0.0  # unreadable: treated as expired


def reboot_deadline(rundir: pathlib.Path) -> float:
    """The deadline of the pending reboot request (0.0: none, or unreadable)."""
    return _deadline(rundir / REBOOT)


def reboot_pending(rundir: pathlib.Path) -> bool:
    """A reboot request that has not expired (an expired one is removed)."""
    path = rundir / REBOOT
    if not path.exists():
        return False
    if _deadline(path) < time.time():
        path.unlink(missing_ok=True)
        return False
    return True


def claim_reboot(rundir: pathlib.Path) -> pathlib.Path | bool:
    """After the guest powered off: the claim file (reset it now, then :func:`release_claim`),
    True when another process or thread holds a claim (it is resetting: leave QEMU alone), or
    False (no pending reboot: the power-off is a shutdown)."""
    mine = rundir / f"{REBOOT}.claimed-{os.getpid()}-{threading.get_ident()}"
    try:
        os.rename(rundir / REBOOT, mine)
    except FileNotFoundError:
        for claim in rundir.glob(f"{REBOOT}.claimed-*"):
            try:
                pid = int(claim.name.split("-")[1])
            except (IndexError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                return True
            claim.unlink(missing_ok=True)  # its claimer died: stale
        return False
    if _deadline(mine) < time.time():
        log.warning("%s: the reboot request had expired: the power-off is a shutdown", rundir)
        mine.unlink(missing_ok=True)
        return False
    return mine


def release_claim(claim: pathlib.Path) -> None:
    claim.unlink(missing_ok=True)


# -- the relay process ----------------------------------------------------------------------------


def _is_command(item: object) -> bool:
    """One ``[CMD, ARGS]`` of a batch."""
    return isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)


class Relay:
    def __init__(self, rundir: pathlib.Path, qmp: QMPClient, timeout: float, on_reboot: str) -> None:
        self.rundir = rundir
        self.qmp = qmp
        self.timeout = timeout
        self.on_reboot = on_reboot
        self.listeners: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.rebooting = False  # between a fake reboot's power-off and its cont
        self.ended = False  # the guest powered off (or QEMU was told to quit): no more events
        self.ending = "crashed"  # how QEMU went away, unless it says otherwise first

    def send(self, writer: asyncio.StreamWriter, msg: Mapping[str, Any]) -> None:
        if writer.is_closing() or writer.transport.get_write_buffer_size() > _MAX_BUFFER:
            self.listeners.discard(writer)
            writer.close()
            return
        writer.write((json.dumps(msg) + "\n").encode())

    def broadcast(self, kind: str, detail: str = "") -> None:
        for w in list(self.listeners):
            self.send(w, {"event": kind, "detail": detail})

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.send(writer, {"relay": 1, "pid": os.getpid()})
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                task = asyncio.ensure_future(self.request(msg, writer))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        except (OSError, ValueError, RecursionError, asyncio.IncompleteReadError):
            pass  # a client that sends junk is dropped
        finally:
            self.listeners.discard(writer)
            writer.close()

    async def request(self, msg: Any, writer: asyncio.StreamWriter) -> None:
        rid = msg.get("id") if isinstance(msg, dict) else None
        rid = rid if isinstance(rid, int | str) else None
        reply: dict[str, Any]
        batch = msg.get("batch") if isinstance(msg, dict) else None
        if isinstance(msg, dict) and msg.get("listen"):
            self.listeners.add(writer)
            reply = {"id": rid, "return": {}}
        elif isinstance(msg, dict) and isinstance(msg.get("execute"), str):
            reply = {"id": rid, **await self._execute(msg["execute"], msg.get("arguments"))}
        elif isinstance(batch, list) and all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) for c in batch
        ):
            # One after the other (sending them at once measured no faster), answered in one line.
            reply = {"id": rid, "results": [await self._execute(c[0], c[1]) for c in batch]}
        else:
            reply = {"id": rid, "error": {"class": "RelayError", "desc": f"bad request {str(msg)[:200]}"}}
        self.send(writer, reply)

    async def _execute(self, cmd: str, args: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):  # cheaper than wait_for: no task per command
                ret = await self.qmp.execute(cmd, args if isinstance(args, dict) else None)
            return {"return": ret}
        except ExecuteError as exc:
            return {"error": {"class": exc.error_class, "desc": str(exc)}}
        except TimeoutError:
            return {"error": {"class": "RelayTimeout", "desc": f"QEMU did not answer within {self.timeout:g} s"}}
        # QMPError, OSError, EOFError and what qemu.qmp lets through untyped: every request is answered
        except Exception as exc:  # noqa: BLE001
            return {"error": {"class": "RelayError", "desc": f"{type(exc).__name__}: {exc}"}}

    async def _cmd(self, cmd: str) -> None:
        try:
            await asyncio.wait_for(self.qmp.execute(cmd), self.timeout)
        except (TimeoutError, QMPError, OSError, EOFError) as exc:
            log.warning("%s: %s failed: %s", self.rundir, cmd, exc)

    async def powered_off(self) -> None:
        """The guest powered off: a pending reboot resets it, otherwise QEMU is told to quit."""
        claim = claim_reboot(self.rundir) if self.on_reboot != "destroy" else False
        if claim is True:  # a driver without us is resetting it
            self.rebooting = True
            return
        if claim:
            assert isinstance(claim, pathlib.Path)
            self.rebooting = True
            try:
                await self._cmd("system_reset")
                await self._cmd("cont")
            finally:
                release_claim(claim)
            return
        cancel_reboot(self.rundir)
        self.ended = True
        self.ending = "shutdown"
        self.broadcast("shutdown", "guest")
        await self._cmd("quit")

    async def on_event(self, name: str, data: Mapping[str, Any]) -> None:
        log.debug("QMP event %s %s", name, dict(data))
        if self.ended:
            return
        if name == "SHUTDOWN":
            if data.get("guest"):
                await self.powered_off()
            else:  # quit from a destroy, a signal to QEMU...: QEMU is going away
                self.ended = True
                reason = str(data.get("reason", "host"))
                self.ending = "destroyed" if reason == "host-qmp-quit" else "shutdown"
                self.broadcast("shutdown", reason)
        elif name == "STOP":
            if not self.rebooting:
                self.broadcast("suspended", "paused")
        elif name == "RESUME":
            if self.rebooting:
                self.rebooting = False  # the cont of a fake reboot
            else:
                self.broadcast("resumed", "unpaused")
        elif name == "RESET":
            # Ours ("reboot"), or the guest's own ("guest": note that SeaBIOS resets the machine
            # once more right after a fake reboot's cont), or another host reset (its reason).
            reason = str(data.get("reason", ""))
            if self.rebooting and reason == "host-qmp-system-reset":
                self.broadcast("rebooted", "reboot")
            else:
                self.broadcast("rebooted", "guest" if data.get("guest") else reason or "host")

    async def pump(self) -> None:
        async def watch() -> None:
            while self.qmp.runstate == Runstate.RUNNING:
                await self.qmp.runstate_changed()
            await self.qmp.events.put(Message({"event": _EOF}))

        watcher = asyncio.ensure_future(watch())
        try:
            while True:
                event = await self.qmp.events.get()
                name = str(event["event"])
                if name == _EOF:
                    break
                data = event.get("data")
                await self.on_event(name, data if isinstance(data, Mapping) else {})
        finally:
            watcher.cancel()
        with contextlib.suppress(VirtError):
            # A virtkit connection that quits (and, if need be, kills) QEMU says why first.
            self.ending = read_config_file(self.rundir / "ending", "ending").strip()[:40] or self.ending
        self.broadcast("gone", self.ending)


async def serve(rundir: pathlib.Path, timeout: float, ready: Callable[[str], None]) -> int:
    try:
        cfg = load_json_file(rundir / "domain.json", "domain state")["config"]
        on_reboot = str(cfg.get("on_reboot", "restart"))
    except (VirtError, KeyError, TypeError, AttributeError) as exc:
        ready(f"cannot read {rundir / 'domain.json'}: {exc}")
        return 1
    qmp = QMPClient("virtkit-relay")
    try:
        await asyncio.wait_for(qmp.connect(str(rundir / MONITOR)), timeout)
    except (TimeoutError, QMPError, OSError, EOFError) as exc:
        ready(f"cannot connect to {rundir / MONITOR}: {type(exc).__name__} {exc}")
        return 1
    relay = Relay(rundir, qmp, timeout, on_reboot)
    sock = rundir / RELAY
    sock.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(relay.client, path=str(sock))
    ready("ok")
    try:
        await relay.pump()
    finally:
        server.close()
        sock.unlink(missing_ok=True)
        for w in list(relay.listeners):
            w.close()
        with contextlib.suppress(TimeoutError, QMPError, OSError, EOFError):
            await asyncio.wait_for(qmp.disconnect(), 5)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m virtkit_qemu._relay RUNDIR [--timeout S]``: daemonize, then relay until QEMU exits.

    The parent exits once the relay is ready (0), found another relay alive (0), or failed (1,
    the reason on stderr), as QEMU's ``-daemonize`` does.
    """
    ap = argparse.ArgumentParser(prog="virtkit_qemu._relay")
    ap.add_argument("rundir", type=pathlib.Path)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    rundir: pathlib.Path = args.rundir.absolute()
    return run_daemon(
        rundir,
        "relay",
        lambda ready: asyncio.run(serve(rundir, args.timeout, ready)),
        wait=args.timeout + 5,
        what=f"virtkit-qemu relay for {rundir}",
        log=log,
    )


# Not ``-m virtkit_qemu._relay``: the package imports this module first, which runpy warns about.
_MAIN = "import sys; from virtkit_qemu._relay import main; sys.exit(main(sys.argv[1:]))"


def spawn(python: str, rundir: pathlib.Path, timeout: float) -> str | None:
    """Start the relay of ``rundir`` (a no-op when one is alive); None, or why it failed."""
    import subprocess

    try:
        proc = subprocess.run(
            [python, "-c", _MAIN, str(rundir), "--timeout", f"{timeout:g}"],
            capture_output=True,
            text=True,
            timeout=timeout + 10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"exit {proc.returncode}")


if __name__ == "__main__":
    sys.exit(main())
