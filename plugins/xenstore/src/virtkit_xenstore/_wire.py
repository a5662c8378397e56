"""XenStore wire format (Xen 4.17 ``xs_wire.h``): header, message types, limits, errors, paths.

Pure functions and constants only; no I/O. Everything here is checked against byte vectors from
mirage/ocaml-xenstore in the tests.
"""

from __future__ import annotations

import enum
import errno as _errno
import re
import struct
from collections import namedtuple

from virtkit import InvalidArgument, PermissionDenied, ProtocolError, Unsupported, VirtError

# Typing stays off the start-up path (issue 14): Perm is a namedtuple with a typed stub.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    class _Perm(NamedTuple):
        domid: int
        access: str
else:
    _Perm = namedtuple("_Perm", "domid access", module=__name__)

__all__ = [
    "ABS_PATH_MAX",
    "HEADER",
    "PAYLOAD_MAX",
    "REL_PATH_MAX",
    "REPLY_MAX",
    "AccessDenied",
    "InvalidRequest",
    "LimitExceeded",
    "NotSupportedByDaemon",
    "Op",
    "PathExists",
    "PathNotFound",
    "Perm",
    "QuotaExceeded",
    "ReplyTooBig",
    "TransactionConflict",
    "XenStoreError",
    "check_path",
    "check_payload",
    "decimal",
    "error_from_reply",
    "format_perms",
    "parse_perms",
    "parse_tx_id",
    "split_packets",
]

#: struct xsd_sockmsg {u32 type, req_id, tx_id, len}; every real Xen host is little-endian.
HEADER = struct.Struct("<IIII")
PAYLOAD_MAX = 4096  # XENSTORE_PAYLOAD_MAX, both directions
ABS_PATH_MAX = 3072  # XENSTORE_ABS_PATH_MAX
REL_PATH_MAX = 2048  # XENSTORE_REL_PATH_MAX


class Op(enum.IntEnum):
    """``enum xsd_sockmsg_type`` as of Xen 4.17 (20, XS_RESTRICT, was removed in 4.9)."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


# Types a daemon may legitimately send us; anything else means the stream is not XenStore.
REPLY_TYPES = frozenset(int(t) for t in Op)
#: oxenstored 4.17 does send replies over XENSTORE_PAYLOAD_MAX (a 6,800-byte DIRECTORY was seen
#: in the lab), so a longer reply is delivered as long as its length is plausible; beyond this
#: the header is garbage and the stream can't be resynchronised.
REPLY_MAX = 65536

Packet = tuple[int, int, int, bytes]  # (type, req_id, tx_id, payload)


def split_packets(buf: bytes | bytearray) -> tuple[list[Packet], int, str | None]:
    """Decode the complete packets at the start of ``buf``: (packets, bytes consumed, problem).

    ``problem`` describes the first malformed header (unknown type, length over REPLY_MAX): the
    packets before it are good, nothing after it can be trusted. A trailing partial packet is
    left unconsumed. Never raises.
    """
    out: list[Packet] = []
    off = 0
    n = len(buf)
    while n - off >= HEADER.size:
        typ, rid, tx, ln = HEADER.unpack_from(buf, off)
        if ln > REPLY_MAX or typ not in REPLY_TYPES:
            return out, off, f"type {typ}, req_id {rid}, len {ln}"
        end = off + HEADER.size + ln
        if end > n:
            break
        out.append((typ, rid, tx, bytes(buf[off + HEADER.size : end])))
        off = end
    return out, off, None


# -- errors ------------------------------------------------------------------------------------


class XenStoreError(VirtError):
    """xenstored answered ERROR. ``errno_name`` is its text (``"ENOENT"``), ``errno`` the number
    (EINVAL for names Python doesn't know, as libxenstore does; oxenstored's EQUOTA is one)."""

    def __init__(self, message: str, *, errno_name: str = "", path: str | None = None) -> None:
        super().__init__(message)
        self.errno_name = errno_name
        self.errno: int = getattr(_errno, errno_name, _errno.EINVAL) if errno_name else _errno.EINVAL
        self.path = path


class PathNotFound(XenStoreError):
    """ENOENT: the node (or, for writes in a transaction, the transaction) does not exist."""


class AccessDenied(PermissionDenied, XenStoreError):
    """EACCES / EPERM: the node's permissions or the connection's privilege forbid it."""


class PathExists(XenStoreError):
    """EEXIST (e.g. a duplicate watch)."""


class TransactionConflict(XenStoreError):
    """EAGAIN on transaction end: another writer changed what the transaction read; retry."""


class QuotaExceeded(XenStoreError):
    """EQUOTA (oxenstored) or ENOSPC (C xenstored): too many transactions, nodes, watches."""


class ReplyTooBig(XenStoreError):
    """E2BIG from the daemon: the reply would exceed 4096 bytes."""


class NotSupportedByDaemon(Unsupported, XenStoreError):
    """ENOSYS: this daemon doesn't implement the message type (oxenstored: DIRECTORY_PART)."""


class InvalidRequest(InvalidArgument, XenStoreError):
    """EINVAL: the daemon rejected the request's arguments."""


class LimitExceeded(InvalidArgument, XenStoreError):
    """Refused before sending: xenstored would drop the whole connection (payload > 4096) or
    reject the path, so the client says so clearly instead."""


_BY_NAME: dict[str, type[XenStoreError]] = {
    "ENOENT": PathNotFound,
    "EACCES": AccessDenied,
    "EPERM": AccessDenied,
    "EEXIST": PathExists,
    "EAGAIN": TransactionConflict,
    "EQUOTA": QuotaExceeded,
    "ENOSPC": QuotaExceeded,
    "E2BIG": ReplyTooBig,
    "ENOSYS": NotSupportedByDaemon,
    "EINVAL": InvalidRequest,
}


def error_from_reply(payload: bytes, op: int, path: str | None) -> XenStoreError:
    """The typed error for an ERROR reply's payload (errno name + NUL; unknown names tolerated)."""
    name = payload.split(b"\0", 1)[0].decode("ascii", "replace").strip() or "EINVAL"
    cls = _BY_NAME.get(name, XenStoreError)
    try:
        what = Op(op).name
    except ValueError:
        what = f"type {op}"
    where = f" on {path!r}" if path is not None else ""
    return cls(f"xenstored: {what}{where} failed with {name}", errno_name=name, path=path)


# -- paths and payloads ------------------------------------------------------------------------


def decimal(text: str | bytes, digits: int) -> bool:
    """``text`` is 1 to ``digits`` ASCII decimal digits, nothing else (what ``[0-9]{1,N}\\Z``
    matches, without a pattern to compile at import: a cold CLI pays each one)."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


_VALID = re.compile(r"[A-Za-z0-9\-/_@]*\Z")  # C xenstored valid_chars(), plus '@' for watches


_checked: dict[str, bytes] = {}  # hot paths are validated once (bounded: cleared when full)


def check_path(path: str, *, watch: bool = False) -> bytes:
    """Validate a node path as xenstored would and return it encoded with its NUL.

    Absolute paths start with '/', relative ones are relative to the connection's domain; watch
    paths may also be special ``@...`` names.
    """
    encoded = _checked.get(path) if isinstance(path, str) else None
    if encoded is not None:
        return encoded
    encoded = _check_path(path, watch)
    if not watch:
        if len(_checked) >= 4096:
            _checked.clear()
        _checked[path] = encoded
    return encoded


def _check_path(path: str, watch: bool) -> bytes:
    if not isinstance(path, str):
        raise LimitExceeded(f"a xenstore path must be a str, not {type(path).__name__}")
    if not path:
        raise LimitExceeded("empty xenstore path")
    special = path.startswith("@")
    if special and not watch:
        raise LimitExceeded(f"{path!r}: '@' paths are special watch paths only")
    if not _VALID.match(path):
        bad = sorted({c for c in path if not _VALID.match(c)})
        raise LimitExceeded(f"{path!r}: invalid character(s) {''.join(bad)!r} (allowed: A-Z a-z 0-9 - / _ @)")
    if not special:
        if "//" in path:
            raise LimitExceeded(f"{path!r}: empty path component ('//')")
        if len(path) > 1 and path.endswith("/"):
            raise LimitExceeded(f"{path!r}: trailing '/'")
    limit = ABS_PATH_MAX if path.startswith("/") else REL_PATH_MAX
    if len(path) > limit:
        kind = "absolute" if path.startswith("/") else "relative"
        raise LimitExceeded(f"xenstore {kind} path of {len(path)} characters exceeds {limit}")
    return path.encode("ascii") + b"\0"


def check_payload(payload: bytes) -> None:
    if len(payload) > PAYLOAD_MAX:
        raise LimitExceeded(
            f"request payload of {len(payload)} bytes exceeds XENSTORE_PAYLOAD_MAX ({PAYLOAD_MAX}); "
            "xenstored would drop the connection"
        )


# -- permissions -------------------------------------------------------------------------------


class Perm(_Perm):
    """One permission entry (domid, access): ``access`` is 'r', 'w', 'b' (both) or 'n' (none).

    In a node's list the first entry names the owner, and its access applies to every domain not
    listed after it.
    """

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.access}{self.domid}"


# libxenstore parses the domid with strtol(.., 0): decimal or 0x.. hex here; a domid is a u16.
# Compiled at the first GET_PERMS (re caches it), not at import.
_PERM = rb"([rwbn])(0[xX][0-9a-fA-F]{1,4}|0|[1-9][0-9]{0,4})\Z"


def parse_perms(payload: bytes) -> list[Perm]:
    """A GET_PERMS reply as Perms; anything else is the daemon's fault (ProtocolError)."""
    out = []
    for item in payload.split(b"\0"):
        if not item:
            continue
        m = re.match(_PERM, item)
        domid = int(m.group(2), 0) if m else -1
        if m is None or domid > 0xFFFF:
            raise ProtocolError(f"xenstore: bad permission {item[:40]!r} in a GET_PERMS reply")
        out.append(Perm(domid, m.group(1).decode()))
    return out


def parse_tx_id(reply: bytes) -> int:
    """TRANSACTION_START's reply: a u32 id above 0 in decimal (ProtocolError otherwise)."""
    digits = reply[:-1] if reply.endswith(b"\0") else reply  # [0-9]{1,10}\0?
    tx_id = int(digits) if decimal(digits, 10) else 0
    if not 0 < tx_id <= 0xFFFFFFFF:
        raise ProtocolError(f"xenstore: bad transaction id {reply[:20]!r}")
    return tx_id


def format_perms(perms: list[Perm] | tuple[Perm, ...]) -> bytes:
    if not perms:
        raise LimitExceeded("a permission list needs at least the owner entry")
    parts = []
    for p in perms:
        if p.access not in ("r", "w", "b", "n") or not isinstance(p.domid, int) or p.domid < 0:
            raise LimitExceeded(f"bad permission {p!r}")
        parts.append(f"{p.access}{p.domid}".encode("ascii") + b"\0")
    return b"".join(parts)
