"""The emulated xend's HTTP server: xend's URL tree, status codes, bodies and quirks.

What it reproduces of xen/web/http.py and xend/server/Srv*.py (Xen 4.1):
* HTTP/1.1; the connection closes after each reply unless the client sent
  ``Connection: keep-alive``; header names written ``Content-type`` / ``Content-length``.
* SXP only when the request has no User-Agent, no Accept, or an Accept naming
  ``application/sxp``; otherwise HTML pages (the trap a plain HTTP client falls into).
* Request bodies over 10000 bytes -> 413; form args from the query and an urlencoded body.
* ``op`` missing or repeated -> 406, unknown -> 501 ``Operation not implemented: OP``, a failing
  op -> 500 ``Request failed: OP`` with ``(xend.err MSG)``, an unknown domain -> 404 text/plain.
* Faults for tests: a slow reply, a truncated body, HTML regardless of Accept, a dropped
  connection; "server gone" is :meth:`XendEmulator.stop`.
"""

from __future__ import annotations

import dataclasses
import html
import http.server
import os
import socket
import socketserver
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from .._sxp import dumps
from ._host import EmulatedDomain, Host, XendFault

__all__ = ["MAX_CONTENT_LENGTH", "Fault", "XendEmulator"]

MAX_CONTENT_LENGTH = 10000  # xen/web/http.py: bigger request bodies get 413
_SXP = "application/sxp"
_FAULT_KINDS = ("delay", "truncate", "html", "drop")


@dataclasses.dataclass(slots=True)
class Fault:
    """One injected fault: ``kind`` in delay/truncate/html/drop, for paths starting with ``path``."""

    kind: str
    path: str = "/"
    times: int | None = None  # None: every matching request
    delay: float = 0.0


class _Text(str):
    """A plain-text body (dmesg, the log, error pages): sent as text/plain, never as SXP."""

    __slots__ = ()


class _Reply(Exception):
    """Raised inside routing to answer at once."""

    def __init__(self, status: int, body: Any = None, *, reason: str | None = None, **headers: str) -> None:
        super().__init__(status)
        self.status = status
        self.body = body  # None (empty), str (text/plain) or an Sxp (application/sxp)
        self.reason = reason
        self.headers = headers


def _arg(args: dict[str, list[str]], key: str, default: str | None = None) -> str:
    vals = args.get(key)
    if not vals:
        if default is None:
            raise XendFault(500, f"missing argument: {key}")
        return default
    return vals[0]


def _int_arg(args: dict[str, list[str]], key: str) -> int:
    raw = _arg(args, key)
    try:
        return int(raw)
    except ValueError:
        raise XendFault(500, f"invalid literal for int() with base 10: {raw!r}") from None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xend-emulator"
    sys_version = ""
    emu: XendEmulator  # set on the subclass each server gets

    # -- plumbing ---------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass  # quiet: tests read the emulator's counters, not its log

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "unix"

    def setup(self) -> None:
        super().setup()
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            # headers and body go out in two writes: without this, Nagle + the client's delayed
            # ACK add ~40 ms to every reply, which would be the emulator's artefact, not xend's
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.emu._counter_lock:
            self.emu.connections += 1
            self.emu._live.add(self.connection)

    def finish(self) -> None:
        with self.emu._counter_lock:
            self.emu._live.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass  # the emulator was stopped under this connection

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        emu = self.emu
        with emu._counter_lock:
            emu.requests += 1
        # xend closes after every reply unless the client asks to keep the connection
        self.close_connection = self.headers.get("Connection", "").lower() != "keep-alive"
        url = urllib.parse.urlsplit(self.path)
        fault = emu._take_fault(url.path)
        sxp_ok = not self.headers.get("User-Agent") or not self.headers.get("Accept")
        sxp_ok = sxp_ok or _SXP in self.headers.get("Accept", "")
        if fault is not None and fault.kind == "html":
            sxp_ok = False
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_CONTENT_LENGTH:
            self.close_connection = True  # the body stays unread
            self._send(413, f"Request Entity Too Large: {length} > {MAX_CONTENT_LENGTH}", sxp_ok, "Request too large")
            return
        raw = self.rfile.read(length) if length else b""
        args = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        ctype = self.headers.get("Content-Type", "")
        if raw and "multipart/form-data" not in ctype:
            for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items():
                args.setdefault(k, []).extend(v)
        try:
            with emu.host.lock:
                result = self._route(method, url.path, args)
            reply = _Reply(200, result)
        except _Reply as r:
            reply = r
        except XendFault as f:
            if f.status == 404:
                reply = _Reply(404, f.message)
            else:
                op = args.get("op", ["?"])[0]
                reply = _Reply(f.status, ["xend.err", f.message], reason=f"Request failed: {op}")
        if fault is not None:
            if fault.kind == "delay" and emu._stopping.wait(fault.delay):
                self.close_connection = True
                return
            if fault.kind == "drop":
                self.close_connection = True
                return
        self._send(
            reply.status,
            reply.body,
            sxp_ok,
            reply.reason,
            truncate=fault is not None and fault.kind == "truncate",
            **reply.headers,
        )

    def _send(
        self, status: int, body: Any, sxp_ok: bool, reason: str | None = None, *, truncate: bool = False, **headers: str
    ) -> None:
        if body is None:
            data, ctype = b"", _SXP if sxp_ok else "text/html"
        elif isinstance(body, _Text) or (isinstance(body, str) and status >= 400):
            data, ctype = body.encode(), "text/plain"
        elif sxp_ok:
            data, ctype = (body if isinstance(body, str) else dumps(body)).encode(), _SXP
        else:
            text = body if isinstance(body, str) else dumps(body)
            page = f"<html><head><title>Xen</title></head><body><pre>{html.escape(text)}</pre></body></html>"
            data, ctype = page.encode(), "text/html"
        self.send_response(status, reason)
        # xend's http.py writes header names with str.capitalize()
        self.send_header("Content-type", ctype)
        self.send_header("Content-length", str(len(data)))
        self.send_header("Pragma", "no-cache")
        self.send_header("Cache-control", "no-cache")
        self.send_header("Expires", "-1")
        for k, v in headers.items():
            self.send_header(k.capitalize(), v)
        if self.close_connection or truncate:
            self.send_header("Connection", "close")  # so a client never reuses what we close
        self.end_headers()
        if truncate:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    # -- the URL tree -----------------------------------------------------------------------------

    def _route(self, method: str, path: str, args: dict[str, list[str]]) -> Any:
        host = self.emu.host
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "xend":
            raise _Reply(404, f"Not found: {path}")
        rest = parts[1:]
        if not rest:
            return ["node", "domain", "vnet"]
        top = rest[0]
        if top == "node" and len(rest) == 1:
            if method == "GET":
                return host.node
            return self._perform(args, {"shutdown": None, "reboot": None})
        if top == "node" and rest[1:] == ["dmesg"]:
            if method == "GET":
                return _Text("(XEN) Xen version 3.0-devel (emulated)\n")
            return self._perform(args, {"clear": lambda: None})
        if top == "node" and rest[1:] == ["log"]:
            return _Text("[2005-11-14 14:26:26 xend] INFO (emulated) xend started\n")
        if top == "vnet" and len(rest) == 1:
            return []
        if top != "domain":
            raise _Reply(404, f"Not found: {path}")
        if len(rest) == 1:
            return self._domain_dir(method, args)
        if len(rest) == 2:
            dom = host.find(urllib.parse.unquote(rest[1]))
            return self._domain(method, dom, args)
        raise _Reply(404, f"Not found: {path}")

    def _perform(self, args: dict[str, list[str]], ops: dict[str, Callable[[], Any] | None]) -> Any:
        """xend's SrvBase.perform: one ``op`` or 406; unknown (or not emulated) -> 501."""
        op = args.get("op")
        if op is None or len(op) != 1:
            raise _Reply(406, None, reason="Invalid request")
        fn = ops.get(op[0])
        if fn is None:
            text = f"Operation not implemented: {op[0]}"
            raise _Reply(501, text, reason=text)
        return fn()

    def _domain_dir(self, method: str, args: dict[str, list[str]]) -> Any:
        host = self.emu.host
        if method == "GET":
            return self._list(args)

        def create() -> Any:
            d = host.create(_arg(args, "config"))
            raise _Reply(201, host.sxpr(d), Location=f"/xend/domain/{urllib.parse.quote(d.name)}")

        def new() -> Any:
            return host.sxpr(host.new(_arg(args, "config")))

        return self._perform(args, {"create": create, "new": new, "list": lambda: self._list(args, detail=True)})

    def _list(self, args: dict[str, list[str]], detail: bool = False) -> Any:
        host = self.emu.host
        if detail or "detail" in args:
            # SrvDomainDir.ls_domain (3.0.4-4.1) tests for 'detail' first, whatever its value, and
            # then lists the running domains: 'state' is never read on that path
            return [host.sxpr(d) for d in host.listing("running")]
        return [d.name for d in host.listing(args.get("state", [None])[0])]

    def _domain(self, method: str, d: EmulatedDomain, args: dict[str, list[str]]) -> Any:
        host = self.emu.host
        if method == "GET" and args.get("op") != ["vcpuinfo"]:
            return host.sxpr(d)
        where = f"/xend/domain/{urllib.parse.quote(d.name)}"

        def accepted(fn: Callable[[], None]) -> Callable[[], Any]:
            def run() -> Any:
                fn()
                raise _Reply(202, None, Location=where)

            return run

        ops: dict[str, Callable[[], Any] | None] = {
            "pause": lambda: host.pause(d),
            "unpause": lambda: host.unpause(d),
            "shutdown": accepted(lambda: host.shutdown(d, _arg(args, "reason", "poweroff"))),
            "destroy": accepted(lambda: host.destroy(d)),
            "reset": accepted(lambda: host.reset(d)),
            "start": accepted(lambda: host.start(d, _arg(args, "paused", "0") == "1")),
            "delete": accepted(lambda: host.delete(d)),
            "rename": accepted(lambda: host.rename(d, _arg(args, "name"))),
            "maxmem_set": lambda: host.maxmem_set(d, _int_arg(args, "memory")),
            "mem_target_set": lambda: host.mem_target_set(d, _int_arg(args, "target")),
            "set_vcpus": lambda: host.set_vcpus(d, _int_arg(args, "vcpus")),
            "vcpuinfo": lambda: host.vcpuinfo(d),
        }
        return self._perform(args, ops)


class _TCPServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # a connection-per-request client must not overflow the backlog
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    request_queue_size = 128
    daemon_threads = True
    block_on_close = False


class XendEmulator:
    """xend on 127.0.0.1 (``port`` 0: any free one) and/or a unix socket, in background threads.

    >>> with XendEmulator() as emu:  # doctest: +SKIP
    ...     virtkit.open(emu.uri).list_domains()
    """

    def __init__(
        self,
        *,
        host: Host | None = None,
        address: str = "127.0.0.1",
        port: int | None = 0,
        socket_path: str | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.host = host if host is not None else Host()
        self.address = address
        self._want_port = port
        self.socket_path = socket_path
        self.tls = tls  # (certfile, keyfile)
        self.requests = 0
        self.connections = 0
        self._counter_lock = threading.Lock()
        self._faults: list[Fault] = []
        self._live: set[Any] = set()  # open client connections, closed by stop()
        self._stopping = threading.Event()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.port: int | None = None

    # -- addresses --------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The virtkit URI of the TCP (or TLS) listener."""
        if self.port is None:
            raise RuntimeError("the emulator has no TCP listener")
        return f"xen{'+https' if self.tls else ''}://{self.address}:{self.port}/"

    @property
    def unix_uri(self) -> str:
        if self.socket_path is None:
            raise RuntimeError("the emulator has no unix socket")
        return "xen+unix:///?socket=" + urllib.parse.quote(self.socket_path, safe="/")

    # -- faults -----------------------------------------------------------------------------------

    def fault(self, kind: str, *, path: str = "/", times: int | None = None, delay: float = 0.0) -> Fault:
        if kind not in _FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(_FAULT_KINDS)}, not {kind!r}")
        f = Fault(kind, path, times, delay)
        with self._counter_lock:
            self._faults.append(f)
        return f

    def clear_faults(self) -> None:
        with self._counter_lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._counter_lock:
            for f in self._faults:
                if path.startswith(f.path):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._faults.remove(f)
                    return f
        return None

    # -- lifecycle --------------------------------------------------------------------------------

    def _handler(self) -> type[_Handler]:
        return type("Handler", (_Handler,), {"emu": self})

    def start(self) -> XendEmulator:
        # xend (SrvServer.run) starts its marked managed domains as it comes up; done first here, so
        # no client sees the moment before
        self.host.autostart_domains()
        handler = self._handler()
        try:
            if self._want_port is not None:
                tcp = _TCPServer((self.address, self._want_port), handler)
                if self.tls:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(*self.tls)
                    tcp.socket = ctx.wrap_socket(tcp.socket, server_side=True)
                self.port = tcp.server_address[1]
                self._servers.append(tcp)
            if self.socket_path is not None:
                if os.path.exists(self.socket_path):
                    os.unlink(self.socket_path)
                self._servers.append(_UnixServer(self.socket_path, handler))
        except BaseException:
            self.stop()
            raise
        for srv in self._servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.name = f"xend-emulator-{type(srv).__name__}"
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening (clients then see the server gone); wakes replies held by a delay fault."""
        self._stopping.set()
        for srv, t in zip(self._servers, self._threads, strict=False):
            if t.is_alive():
                srv.shutdown()  # returns once serve_forever has left its loop
        for srv in self._servers:
            srv.server_close()
        with self._counter_lock:
            live, self._live = list(self._live), set()
        for conn in live:  # "server gone" means kept-alive connections too
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout)
        self._servers.clear()
        self._threads.clear()
        if self.socket_path is not None:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass

    def __enter__(self) -> XendEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = [f"tcp {self.address}:{self.port}"] if self.port is not None else []
        where += [f"unix {self.socket_path}"] if self.socket_path else []
        return f"<XendEmulator {', '.join(where) or 'stopped'} domains={len(self.host.domains)}>"
