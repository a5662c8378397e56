"""``virtkit exporter``: Prometheus metrics of every domain over HTTP.

A custom collector makes one bulk stats call (``all_domain_stats``) per connection per scrape and
turns the records into metric families on the exporter's prometheus_client registry; nothing is
cached between scrapes. The HTTP endpoint is prometheus_client's WSGI app for that registry on its
threading WSGI server, except that a client taking the text format 0.0.4 (Prometheus does) gets it
written straight from the same reading by ``_exposition.text``: the same bytes, without building
and formatting 28,000 sample objects for a host of 1,000 domains. A connection that
fails to open or to answer shows as ``virtkit_up{uri=...} 0`` (the URI without its password) and
the other connections' metrics are still served; a closed connection is opened again at the next
scrape. ``prometheus_client`` is imported only here: ``pip install 'virtkit[exporter]'``.
"""

from __future__ import annotations

import gzip
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from ._connection import Connection
from ._connection import open as open_connection
from ._errors import ConnectionClosed, InvalidArgument, Unsupported, VirtError
from ._exposition import Reading, families, text
from ._stats import DomainStats
from ._stats_route import check_groups
from ._uri import parse_uri

__all__ = ["Exporter", "parse_listen", "run_exporter"]

log = logging.getLogger("virtkit.exporter")

DEFAULT_LISTEN = "127.0.0.1:9177"  # 9177: the port libvirt exporters use


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[V6ADDR]:PORT`` or ``:PORT`` (every address) -> (address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"--listen {text!r}: expected ADDR:PORT, e.g. 127.0.0.1:9177")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)  # ":PORT" asks for every address


class _Target:
    """One URI: its connection, opened lazily and again after it closed."""

    def __init__(self, uri: str | None, timeout: float, groups: Sequence[str] | None = None) -> None:
        self.uri = uri
        self.groups = groups
        self.shown = "(default)" if uri is None else str(parse_uri(uri))  # password-free
        self.timeout = timeout
        self.conn: Connection | None = None
        self.lock = threading.Lock()

    def stats(self) -> list[DomainStats]:
        with self.lock:
            if self.conn is None or self.conn.closed:
                self.conn = open_connection(self.uri, readonly=True, timeout=self.timeout)
                self.shown = str(self.conn.uri)
            conn = self.conn
        try:
            return conn.all_domain_stats(self.groups)
        except ConnectionClosed:
            with self.lock:
                self.conn = None
            raise

    def close(self) -> None:
        with self.lock:
            conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except VirtError as exc:
                log.warning("exporter: closing %s failed: %s", self.shown, exc)


class StatsCollector:
    """prometheus_client's custom collector: one bulk call per target per scrape."""

    def __init__(self, targets: Sequence[_Target]) -> None:
        self.targets = targets

    def describe(self) -> list[Any]:
        # the families without samples: registering must not scrape every hypervisor, and
        # prometheus_client's ``?name[]=`` filter finds a collector by the names it describes
        return families(())

    def read(self) -> list[Reading]:
        """Every target's reading; several targets are read at once, so a slow hypervisor delays
        the scrape by its own timeout, not by the sum of them."""
        if len(self.targets) == 1:
            return [_read(self.targets[0])]
        with ThreadPoolExecutor(max_workers=min(len(self.targets), 16), thread_name_prefix="virtkit-exporter") as pool:
            return list(pool.map(_read, self.targets))

    def collect(self) -> Iterator[Any]:
        yield from families(self.read())


def _read(target: _Target) -> Reading:
    start = time.perf_counter()
    try:
        records = target.stats()
    except VirtError as exc:
        log.warning("exporter: %s: %s", target.shown, exc)
        records = None
    return target.shown, records, time.perf_counter() - start


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def takes_text(accept: str) -> bool:
    """Whether an Accept header allows the text format 0.0.4: none, ``*/*``, ``text/*`` or
    ``text/plain`` without another version, unless at q=0 (Prometheus asks for OpenMetrics first
    and text/plain 0.0.4 next: it gets the latter)."""
    if not accept.strip():
        return True
    for item in accept.split(","):
        kind, *params = (p.strip() for p in item.split(";"))
        args = dict(p.partition("=")[::2] for p in params)
        if kind.lower() not in ("*/*", "text/*", "text/plain") or args.get("version", "0.0.4") != "0.0.4":
            continue
        try:
            if float(args.get("q", "1")) > 0:
                return True
        except ValueError:
            continue
    return False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class' name
        pass  # as prometheus_client's server: no line per scrape on stderr


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise Unsupported("virtkit exporter needs prometheus_client: pip install 'virtkit[exporter]'") from None
    return prometheus_client


class Exporter:
    """The collector on its own registry, served over HTTP once :meth:`start` is called."""

    def __init__(
        self,
        uris: Iterable[str | None],
        listen: str = DEFAULT_LISTEN,
        *,
        timeout: float = 30.0,
        groups: Sequence[str] | None = None,
    ) -> None:
        """``groups``: the stats groups to export (None: every group each connection serves)."""
        self.prom = _prometheus()
        self.address, self.port = parse_listen(listen)
        if groups:
            check_groups(groups)
        # one target per URI: the same URI twice would export every series twice
        self.targets = [_Target(u, timeout, tuple(groups) if groups else None) for u in dict.fromkeys(uris)]
        self.registry = self.prom.CollectorRegistry()
        self.collector = StatsCollector(self.targets)
        self.registry.register(self.collector)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def scrape(self) -> bytes:
        """One scrape, as the HTTP endpoint answers Prometheus (the text format 0.0.4): the
        bytes ``generate_latest(self.registry)`` would give for the same reading, written directly."""
        return text(self.collector.read())

    def _app(self) -> Callable[..., Iterable[bytes]]:
        """prometheus_client's WSGI app for the registry, with the text format served by
        :meth:`scrape`; OpenMetrics-only clients, ``name[]`` filters, OPTIONS and the like go to
        prometheus_client's app itself."""
        from prometheus_client.exposition import gzip_accepted

        fallback = self.prom.make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if (
                environ.get("REQUEST_METHOD") != "GET"
                or environ.get("PATH_INFO") == "/favicon.ico"
                or "name[]" in parse_qs(environ.get("QUERY_STRING", ""))
                or not takes_text(environ.get("HTTP_ACCEPT") or "")
            ):
                return fallback(environ, start_response)  # type: ignore[no-any-return]
            body = self.scrape()
            headers = [("Content-Type", CONTENT_TYPE)]
            if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""):
                # level 6 (zlib's default, Go's and nginx's): 9, prometheus_client's, costs three
                # times the CPU for a few per cent less
                body = gzip.compress(body, compresslevel=6)
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [body]

        return app

    def start(self) -> None:
        from prometheus_client.exposition import ThreadingWSGIServer

        class Server(ThreadingWSGIServer):
            pass

        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                self.address, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            Server.address_family = family
            self._server = make_server(str(sockaddr[0]), self.port, self._app(), Server, handler_class=_QuietHandler)
        except OSError as exc:
            raise InvalidArgument(f"cannot listen on {self.address}:{self.port}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="virtkit-exporter-http", daemon=True)
        self._thread.start()
        self.port = self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
        for t in self.targets:
            t.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_exporter(
    uris: Sequence[str | None], listen: str, *, timeout: float = 30.0, groups: Sequence[str] | None = None
) -> int:
    """The command: serve until interrupted or terminated, then close every connection."""
    stop = threading.Event()
    with Exporter(uris, listen, timeout=timeout, groups=groups) as exporter:
        exporter.start()
        shown = f"[{exporter.address}]" if ":" in exporter.address else exporter.address
        print(f"virtkit exporter: http://{shown}:{exporter.port}/metrics", file=sys.stderr, flush=True)
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    return 0
