"""HTTP to xend with requests: one keep-alive session, TCP/TLS or xend's unix socket.

Every request asks for ``application/sxp`` (without it xend answers HTML to any client that
sends a User-Agent). The connection's timeout is a total deadline per operation (see
``_deadline``): connect, TLS handshake, request, headers and body together, not each read.
Transport failures come out typed: TimeoutError, ProtocolError (truncated or HTML body,
oversized reply), DriverError (refused, reset, TLS). Credentials travel in ``Session.auth``,
never in a URL, so nothing logs them.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import ssl
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions
import urllib3.util

import virtkit
from virtkit import DriverError, InvalidArgument, ProtocolError, VirtError
from virtkit import TimeoutError as VirtTimeoutError

from ._deadline import DeadlineSocket, DeadlineSSLSocket, bounded, remaining, resolve

__all__ = ["MAX_REPLY", "Reply", "Transport", "UnixAdapter"]

log = logging.getLogger("virtkit.xen_xend")

#: Replies above this are refused (libvirt stops at 256 KiB; a host with many domains and
#: ``?detail=1`` can exceed that, a hostile peer must not exhaust memory).
MAX_REPLY = 16 * 1024 * 1024
_HEADERS = {"Accept": "application/sxp"}
_UNIX_BASE = "http+unix://xend"


def _connect_timeout(conn: urllib3.connection.HTTPConnection) -> None:
    """Connect within what is left of the operation, never past it."""
    left = remaining()
    if left is None:
        return
    if left <= 0:
        raise urllib3.exceptions.ConnectTimeoutError(conn, "the operation's deadline passed before connecting")
    current = conn.timeout
    if not isinstance(current, int | float) or current > left:
        conn.timeout = left


def _tcp_socket(conn: urllib3.connection.HTTPConnection) -> DeadlineSocket:
    """What urllib3's own ``_new_conn`` does (look the host up, try each address in turn), with
    the look-up and every connect inside the operation's deadline: urllib3 looks the name up
    with no bound at all. Errors come out as urllib3's, which requests turns into its own."""
    _connect_timeout(conn)
    host, port = conn.host, conn.port
    try:
        addresses = resolve(host, port)
    except TimeoutError as exc:
        raise urllib3.exceptions.ConnectTimeoutError(conn, str(exc)) from exc
    except socket.gaierror as exc:
        raise urllib3.exceptions.NameResolutionError(host, conn, exc) from exc
    last: OSError | None = None
    for family, kind, proto, _name, address in addresses:
        _connect_timeout(conn)  # what is left now, after the look-up and any failed address
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            timeout = conn.timeout
            sock.settimeout(timeout if isinstance(timeout, int | float) else None)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
        except TimeoutError as exc:  # socket.timeout
            sock.close()
            raise urllib3.exceptions.ConnectTimeoutError(conn, f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return DeadlineSocket.adopt(sock)
    raise urllib3.exceptions.NewConnectionError(conn, f"cannot connect to {host}:{port}: {last}")


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _tcp_socket(self)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _tcp_socket(self)  # wrapped by the context's DeadlineSSLSocket


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _TcpAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with deadline-bound connections and this transport's own TLS context."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._ssl_context = ssl_context  # read by init_poolmanager, which HTTPAdapter.__init__ calls
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        if self._ssl_context is not None:
            pool_kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    """A context whose sockets keep the deadline; ``verify`` a CA bundle path is loaded now, so a
    missing or unreadable one is an InvalidArgument at open rather than a failure at the first call."""
    ctx = urllib3.util.create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE)
    ctx.sslsocket_class = DeadlineSSLSocket
    if isinstance(verify, str):
        try:
            if os.path.isdir(verify):
                ctx.load_verify_locations(capath=verify)
            else:
                ctx.load_verify_locations(cafile=verify)
        except (OSError, ssl.SSLError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            raise InvalidArgument(f"cacert={verify}: cannot use it as a CA bundle: {why}") from None
    return ctx


class _UnixConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection whose socket is AF_UNIX: urllib3 does the rest (HTTP/1.1, keep-alive)."""

    def __init__(self, *args: Any, socket_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        _connect_timeout(self)
        sock = DeadlineSocket(socket.AF_UNIX, socket.SOCK_STREAM)
        timeout = self.timeout
        sock.settimeout(timeout if isinstance(timeout, int | float) else None)
        try:
            sock.connect(self.socket_path)
        except TimeoutError as exc:  # socket.timeout
            sock.close()
            raise urllib3.exceptions.ConnectTimeoutError(self, f"timed out connecting to {self.socket_path}") from exc
        except OSError as exc:
            sock.close()
            raise urllib3.exceptions.NewConnectionError(self, f"cannot connect to {self.socket_path}: {exc}") from exc
        return sock


class _UnixPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _UnixConnection


class UnixAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter that sends every request over one unix socket (mount it on a prefix)."""

    def __init__(self, socket_path: str, pool_maxsize: int = 4) -> None:
        super().__init__(pool_maxsize=pool_maxsize)
        self.socket_path = socket_path
        self._pool = _UnixPool("localhost", maxsize=pool_maxsize, socket_path=socket_path)

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> urllib3.HTTPConnectionPool:
        return self._pool

    def get_connection(self, url: str | bytes, proxies: Mapping[str, str] | None = None) -> urllib3.HTTPConnectionPool:
        return self._pool

    def close(self) -> None:
        self._pool.close()
        super().close()


class Reply:
    """One HTTP answer, read in full."""

    __slots__ = ("body", "content_type", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, content_type: str, body: str, headers: Mapping[str, str]) -> None:
        self.status = status
        self.reason = reason
        self.content_type = content_type
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.content_type} {len(self.body)} chars>"


class Transport:
    """A keep-alive session to one xend; ``where`` names it in messages (never with credentials).

    ``timeout`` is the total deadline of one operation: a request on its own, or every request
    made inside :meth:`operation`.
    """

    __slots__ = ("_base", "_session", "insecure", "keepalive", "timeout", "where")

    def __init__(
        self, session: requests.Session, base: str, where: str, timeout: float, keepalive: bool = True
    ) -> None:
        self.timeout = virtkit.check_timeout(timeout)  # finite and > 0: requests gets nothing it can't take
        self._session = session
        self._base = base
        self.where = where
        self.keepalive = keepalive
        self.insecure = session.verify is False  # the user turned verification off: don't warn per call

    @classmethod
    def tcp(
        cls,
        host: str,
        port: int,
        *,
        timeout: float,
        https: bool = False,
        verify: bool | str = True,
        auth: tuple[str, str] | None = None,
        keepalive: bool = True,
    ) -> Transport:
        s = requests.Session()
        s.headers.update(_HEADERS)
        s.verify = verify
        s.trust_env = False  # no proxies or netrc picked up from the environment: xend is addressed directly
        if auth is not None:
            s.auth = auth
        # a CA bundle is checked even for plain HTTP: a URI naming one the plugin cannot read is wrong
        ctx = _tls_context(verify) if https or isinstance(verify, str) else None
        adapter = _TcpAdapter(ctx if https else None)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        h = f"[{host}]" if ":" in host else host
        scheme = "https" if https else "http"
        return cls(s, f"{scheme}://{h}:{port}", f"{scheme}://{h}:{port}", timeout, keepalive)

    @classmethod
    def unix(cls, path: str, *, timeout: float, keepalive: bool = True) -> Transport:
        s = requests.Session()
        s.headers.update(_HEADERS)
        s.trust_env = False
        s.mount("http+unix://", UnixAdapter(path))
        return cls(s, _UNIX_BASE, f"unix:{path}", timeout, keepalive)

    def close(self) -> None:
        self._session.close()

    def operation(self) -> contextlib.AbstractContextManager[float]:
        """One operation's deadline around several requests (inside another operation, that one's)."""
        return bounded(self.timeout)

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, form: Any = None) -> Reply:
        """Send one request and read the whole reply by the deadline; trouble raises a typed error."""
        with bounded(self.timeout):
            try:
                return self._exchange(method, path, params, form)
            except VirtTimeoutError:
                raise
            except VirtError as exc:
                left = remaining()
                if left is not None and left <= 0:  # whatever broke, it broke because time ran out
                    raise self._timed_out(method, path) from exc
                raise

    def _timed_out(self, method: str, path: str) -> VirtTimeoutError:
        return VirtTimeoutError(f"xend at {self.where} did not answer {method} {path} within {self.timeout:g}s")

    def _exchange(self, method: str, path: str, params: Mapping[str, str] | None, form: Any) -> Reply:
        left = remaining()
        if left is not None and left <= 0:
            raise self._timed_out(method, path)
        headers = None if self.keepalive else {"Connection": "close"}
        try:
            with _insecure() if self.insecure else contextlib.nullcontext():
                resp = self._session.request(
                    method,
                    self._base + path,
                    params=params,
                    data=form,
                    headers=headers,
                    timeout=left if left is not None else self.timeout,
                    stream=True,
                    allow_redirects=False,
                )
        except requests.exceptions.Timeout as exc:
            raise self._timed_out(method, path) from exc
        except requests.exceptions.SSLError as exc:
            raise DriverError(f"TLS failure talking to xend at {self.where}: {_reason(exc)}") from exc
        except requests.exceptions.ConnectionError as exc:
            raise DriverError(f"cannot reach xend at {self.where}: {_reason(exc)}") from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            # e.g. requests' own OSError for a CA bundle that vanished after open
            raise DriverError(f"request to xend at {self.where} failed: {_reason(exc)}") from exc
        try:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_REPLY:
                raise ProtocolError(f"xend at {self.where} sent a {declared}-byte reply (limit {MAX_REPLY})")
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_content(65536):
                size += len(chunk)
                if size > MAX_REPLY:
                    raise ProtocolError(f"xend at {self.where} sent more than {MAX_REPLY} bytes")
                chunks.append(chunk)
        except requests.exceptions.ChunkedEncodingError as exc:
            raise ProtocolError(
                f"truncated reply from xend at {self.where} to {method} {path}: {_reason(exc)}"
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            cause = exc.args[0] if exc.args else None
            if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
                raise self._timed_out(method, path) from exc
            raise DriverError(f"connection to xend at {self.where} broke: {_reason(exc)}") from exc
        except (
            requests.exceptions.RequestException,
            urllib3.exceptions.HTTPError,
            http.client.HTTPException,
            OSError,
        ) as exc:
            raise DriverError(f"reading xend's reply failed: {_reason(exc)}") from exc
        finally:
            resp.close()
        raw = b"".join(chunks)
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body = raw.decode("latin-1")  # xend was Python 2: bytes, not necessarily UTF-8
        ctype = resp.headers.get("Content-Type", "")
        log.debug("%s %s%s -> %d %s (%d bytes)", method, self.where, path, resp.status_code, ctype, len(raw))
        return Reply(resp.status_code, resp.reason or "", ctype, body, resp.headers)


@contextlib.contextmanager
def _insecure() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        yield


def _reason(exc: BaseException) -> str:
    """The innermost useful message of a requests/urllib3 exception chain."""
    seen: BaseException | None = exc
    last = str(exc)
    while seen is not None:
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        if inner is None:
            inner = getattr(seen, "reason", None) if isinstance(getattr(seen, "reason", None), BaseException) else None
        if inner is None:
            break
        seen = inner
        last = str(seen)
    return last
