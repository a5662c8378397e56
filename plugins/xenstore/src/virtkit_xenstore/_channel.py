"""The byte pipe to xenstored (a unix stream socket) or to the xenbus device, with every
blocking syscall bounded: the connection above it (_conn) counts on waking at least every
``SLICE`` seconds to honour deadlines and close()."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time

from virtkit import TimeoutError as XsTimeout

__all__ = ["SLICE", "Channel", "open_channel", "socket_channel"]

_monotonic = time.monotonic
#: Blocking syscalls wake at least this often so deadlines and close() are honoured.
SLICE = 0.2


class Channel:
    """The byte pipe: a unix stream socket (blocking, kernel-side SO_RCVTIMEO/SO_SNDTIMEO so a
    receive is one syscall with a bound) or the xenbus character device (non-blocking + poll)."""

    __slots__ = ("_poll", "closed", "fd", "is_socket", "path", "sock")

    def __init__(self, path: str, sock: socket.socket | None, fd: int) -> None:
        self.path = path
        self.sock = sock
        self.fd = fd
        self.is_socket = sock is not None
        self.closed = False
        self._poll: select.poll | None = None
        if sock is None:
            self._poll = select.poll()
            self._poll.register(fd, select.POLLIN)

    def send_all(self, data: bytes, deadline: float) -> None:
        sent = 0
        if self.sock is not None:
            try:
                sent = self.sock.send(data)  # the usual case: all of it in one syscall
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
        view = memoryview(data)[sent:]
        while view:
            if self.sock is not None:
                try:
                    n = self.sock.send(view)
                except BlockingIOError:  # SO_SNDTIMEO slice elapsed: the daemon isn't reading
                    n = 0
            else:
                try:
                    n = os.write(self.fd, view)  # xenbus: exactly one message per write()
                except BlockingIOError:
                    n = 0
                    select.select([], [self.fd], [], SLICE)
            if n == 0 and _monotonic() > deadline:
                raise XsTimeout(f"xenstore: sending to {self.path} timed out")
            view = view[n:]

    def recv(self) -> bytes | None:
        """Some bytes, b"" at EOF, or None when nothing came within one slice."""
        if self.sock is not None:
            try:
                return self.sock.recv(65536)
            except BlockingIOError:
                return None
        assert self._poll is not None
        if not self._poll.poll(SLICE * 1000):
            return None
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return None

    def shutdown(self) -> None:
        """Wake every thread blocked on this channel (they then see EOF or an error)."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.sock is not None:
            self.shutdown()
            self.sock.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self.fd)


def socket_channel(sock: socket.socket, path: str) -> Channel:
    """A channel over a connected stream socket: blocking, each syscall bounded by SLICE."""
    sock.settimeout(None)
    tv = struct.pack("ll", int(SLICE), int((SLICE % 1) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
    return Channel(path, sock, sock.fileno())


def open_channel(path: str, timeout: float) -> Channel:
    """Connect to a xenstored unix socket, or open a xenbus device, like libxenstore's xs_open.

    A daemon whose listen backlog is full (it stopped accepting) refuses with EAGAIN: that is
    retried until ``timeout``, then virtkit's TimeoutError. Other OSErrors go to the caller.
    """
    st = os.stat(path)
    import stat

    if stat.S_ISSOCK(st.st_mode):
        deadline = _monotonic() + timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            while True:
                left = deadline - _monotonic()
                if left <= 0:
                    raise XsTimeout(f"xenstore: {path} did not accept a connection within {timeout:.3g} s")
                sock.settimeout(left)
                try:
                    sock.connect(path)
                    break
                except TimeoutError:
                    continue
                except BlockingIOError:  # the backlog is full: wait for the daemon to accept
                    time.sleep(min(0.02, max(0.0, deadline - _monotonic())))
            return socket_channel(sock, path)
        except BaseException:
            sock.close()
            raise
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    return Channel(path, None, fd)
