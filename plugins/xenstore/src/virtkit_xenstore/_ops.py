"""The node operations (read, write, directory, permissions...), shared by a client and a transaction.

A subclass says how one request travels (``_request``, ``_request_many``) and what bounds a
sequence of them (``_bounded``): the client on its own connection, a transaction inside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from virtkit import InvalidArgument, ProtocolError, VirtError

from ._wire import (
    NotSupportedByDaemon,
    Op,
    PathNotFound,
    Perm,
    ReplyTooBig,
    TransactionConflict,
    check_path,
    check_payload,
    format_perms,
    parse_perms,
)

__all__ = ["Ops", "domid_bytes", "number", "text"]

#: A DIRECTORY_PART listing longer than this is a daemon gone wrong (a real one ends far sooner).
_LISTING_MAX = 4 << 20


def text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _value(value: bytes | str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidArgument(f"a xenstore value must be bytes or str, not {type(value).__name__}")


class Ops:
    """The node operations, shared by the client (no transaction) and a transaction."""

    __slots__ = ()

    def _request(self, op: Op, payload: bytes, path: str | None) -> bytes:
        raise NotImplementedError

    def _request_many(self, requests: list[tuple[int, bytes, str | None]]) -> list[bytes | VirtError]:
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        """The node's value, byte for byte (it may be empty or contain NULs)."""
        return self._request(Op.READ, check_path(path), path)

    def read_many(self, paths: Iterable[str]) -> list[bytes | None]:
        """Several nodes' values in one round trip (the reads are pipelined); None for a node
        that does not exist. Any other error is raised (the first, in ``paths`` order)."""
        requests: list[tuple[int, bytes, str | None]] = [(Op.READ, check_path(p), p) for p in paths]
        if not requests:
            return []
        out: list[bytes | None] = []
        for r in self._request_many(requests):
            if isinstance(r, bytes):
                out.append(r)
            elif isinstance(r, PathNotFound):
                out.append(None)
            else:
                raise r
        return out

    def read_text(self, path: str) -> str:
        return text(self.read(path))

    def exists(self, path: str) -> bool:
        try:
            self.read(path)
        except PathNotFound:
            return False
        return True

    def write(self, path: str, value: bytes | str) -> None:
        """Set the node's value (missing parents are created by xenstored)."""
        payload = check_path(path) + _value(value)
        check_payload(payload)
        self._request(Op.WRITE, payload, path)

    def mkdir(self, path: str) -> None:
        self._request(Op.MKDIR, check_path(path), path)

    def rm(self, path: str) -> None:
        """Remove the node and its children (absent node: fine; absent parent: PathNotFound)."""
        self._request(Op.RM, check_path(path), path)

    def directory(self, path: str) -> list[str]:
        """The node's children's names. Lists over 4096 bytes: C xenstored answers E2BIG and
        they are fetched with DIRECTORY_PART; oxenstored sends them whole."""
        p = check_path(path)
        try:
            payload = self._request(Op.DIRECTORY, p, path)
        except ReplyTooBig:
            return self._directory_part(path, p)
        return [text(c) for c in payload.split(b"\0")[:-1]]

    def directory_many(self, paths: Iterable[str]) -> list[list[str] | None]:
        """Several nodes' children in one round trip (the requests are pipelined, as in
        :meth:`read_many`); None for a node that does not exist. A listing too big for one
        reply is fetched on its own with DIRECTORY_PART; any other error is raised (the first,
        in ``paths`` order)."""
        requests: list[tuple[int, bytes, str | None]] = [(Op.DIRECTORY, check_path(p), p) for p in paths]
        if not requests:
            return []
        out: list[list[str] | None] = []
        for (_op, p, path), r in zip(requests, self._request_many(requests), strict=True):
            if isinstance(r, bytes):
                out.append([text(c) for c in r.split(b"\0")[:-1]])
            elif isinstance(r, PathNotFound):
                out.append(None)
            elif isinstance(r, ReplyTooBig) and path is not None:
                out.append(self._directory_part(path, p))
            else:
                raise r
        return out

    def _bounded(self) -> contextlib.AbstractContextManager[None]:
        """One deadline for a request sequence (the client's; a transaction's client's)."""
        raise NotImplementedError

    def _directory_part(self, path: str, p: bytes) -> list[str]:
        # libxenstore's xs_directory_part: restart whenever the node's generation changes. The
        # whole listing shares one deadline and is capped in size: a daemon that never ends it
        # must not hold the caller (or its memory) beyond that.
        with self._bounded():
            return self._directory_parts(path, p)

    def _directory_parts(self, path: str, p: bytes) -> list[str]:
        for _attempt in range(100):
            acc = bytearray()
            gen: bytes | None = None
            restart = False
            while True:
                payload = p + str(len(acc)).encode() + b"\0"
                try:
                    reply = self._request(Op.DIRECTORY_PART, payload, path)
                except NotSupportedByDaemon:
                    raise ReplyTooBig(
                        f"xenstore: the children of {path!r} exceed 4096 bytes and this daemon has no DIRECTORY_PART",
                        errno_name="E2BIG",
                        path=path,
                    ) from None
                g, sep, rest = reply.partition(b"\0")
                if not sep:
                    raise ProtocolError(f"xenstore: DIRECTORY_PART reply without a generation: {reply[:40]!r}")
                if gen is None:
                    gen = g
                elif g != gen:
                    restart = True
                    break
                acc += rest
                if len(acc) > _LISTING_MAX:
                    raise ProtocolError(f"xenstore: the listing of {path!r} exceeds {_LISTING_MAX} bytes")
                if len(acc) <= 1 or acc[-2] == 0:
                    break
            if not restart:
                return [text(c) for c in bytes(acc).split(b"\0") if c]
        raise TransactionConflict(f"xenstore: {path!r} kept changing while being listed", errno_name="EAGAIN")

    def get_perms(self, path: str) -> list[Perm]:
        return parse_perms(self._request(Op.GET_PERMS, check_path(path), path))

    def set_perms(self, path: str, perms: Iterable[Perm]) -> None:
        payload = check_path(path) + format_perms(tuple(perms))
        check_payload(payload)
        self._request(Op.SET_PERMS, payload, path)

    def get_domain_path(self, domid: int) -> str:
        return text(self._request(Op.GET_DOMAIN_PATH, domid_bytes(domid), None).rstrip(b"\0"))


def number(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative int, not {value!r}")
    return value


def domid_bytes(domid: int) -> bytes:
    if not isinstance(domid, int) or isinstance(domid, bool) or not 0 <= domid < 0x7FF0:
        raise InvalidArgument(f"not a domain id: {domid!r}")
    return str(domid).encode() + b"\0"
