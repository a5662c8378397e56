"""One total deadline per operation, enforced on every socket call the operation makes.

requests' ``timeout`` bounds each read, so a peer that sends one byte a second, or its headers
slowly, holds a call for as long as it likes. Here an operation opens :func:`bounded` (the outer
one wins when operations nest); every send, receive and TLS handshake on the sockets below first
sets the socket's timeout to what is left, and refuses to start once nothing is. Python's TLS
layer already treats one call's timeout as a deadline for that call, so the bound holds from
``connect`` through the last byte of the body, over TCP, TLS and the unix socket alike. The
host name is looked up under the same deadline (:func:`resolve`): a resolver that does not
answer would otherwise hold the operation for as long as the system's resolver retries.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["DeadlineSSLSocket", "DeadlineSocket", "bounded", "remaining", "resolve"]

_state = threading.local()


def remaining() -> float | None:
    """Seconds left to this thread's current operation (<= 0 once past), None outside any."""
    deadline: float | None = getattr(_state, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[float]:
    """Run the block under a deadline ``seconds`` from now; inside an enclosing block, its deadline holds."""
    outer: float | None = getattr(_state, "deadline", None)
    if outer is not None:
        yield outer
        return
    deadline = _state.deadline = time.monotonic() + seconds
    try:
        yield deadline
    finally:
        _state.deadline = None


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo`` for a stream connection, done by this thread's deadline.

    getaddrinfo cannot be interrupted, so past the deadline it is left to end on a daemon thread
    (its answer unused) and TimeoutError is raised; errors (``socket.gaierror``) propagate. An
    address literal is read at once."""
    try:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass  # a name: look it up
    left = remaining()
    if left is None:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    if left <= 0:
        raise TimeoutError(f"timed out: the operation's deadline passed before looking up {host}")
    box: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    if not done.wait(left):
        raise TimeoutError(f"timed out looking up {host} ({left:.3g}s left of the operation)")
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]  # type: ignore[no-any-return]


def _arm(sock: socket.socket) -> None:
    deadline: float | None = getattr(_state, "deadline", None)
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out: the operation's deadline has passed")
    sock.settimeout(left)


class DeadlineSocket(socket.socket):
    """A plain (TCP or unix) socket whose every send and receive ends by the operation's deadline."""

    __slots__ = ()

    @classmethod
    def adopt(cls, sock: socket.socket) -> DeadlineSocket:
        """The same connection (same descriptor) as a DeadlineSocket; ``sock`` is detached."""
        timeout = sock.gettimeout()
        new = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        new.settimeout(timeout)
        return new

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        _arm(self)
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        _arm(self)
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        _arm(self)
        return super().send(data, flags)

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        _arm(self)  # sendall's timeout is already a total one for the whole buffer
        super().sendall(data, flags)


class DeadlineSSLSocket(ssl.SSLSocket):
    """The TLS counterpart, installed as an SSLContext's ``sslsocket_class``.

    ``recv``/``recv_into`` go through :meth:`read`, ``sendall`` through :meth:`send`.
    """

    def do_handshake(self, block: bool = False) -> None:
        _arm(self)
        super().do_handshake(block)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:  # noqa: A002 - ssl.SSLSocket's name
        _arm(self)
        return super().read(len, buffer)

    def write(self, data: ReadableBuffer) -> int:
        _arm(self)
        return super().write(data)

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        _arm(self)
        return super().send(data, flags)
