"""virtkit's remote protocol: the operation catalogue over a byte stream (``virtkit serve --stdio``).

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON, one object per frame,
at most :data:`MAX_FRAME` bytes. The client speaks first (``hello``), the server answers with the
far side's composition; then every message is one of:

=========== ======================= =================================================
kind        direction               fields
=========== ======================= =================================================
hello       both, once              ``proto``; server adds uri, served, explain
call        client -> server        ``id``, ``op`` (a catalogue name), ``args``, ``flags``
reply       server -> client        ``id``, ``value``
error       server -> client        ``id`` (0: the link itself), ``error``
event       server -> client        ``sub`` (the register call's id), ``event``
cancel      client -> server        ``sub``
keepalive   both                    ``ack`` (false: please answer; true: the answer)
=========== ======================= =================================================

Values are encoded by the catalogue's declared types, so nothing on the wire names a Python
type: a ``DomainRef`` is ``{"name", "uuid", "id"}``, a ``DomainState`` its number. Decoding is
strict: a value of the wrong shape is a :class:`virtkit.ProtocolError`, never a wrong result.
Errors travel as class name, message, operation, driver and uri and are rebuilt as the same
``virtkit`` exception class.
"""

from __future__ import annotations

import json
import struct
import uuid as _uuid
from collections.abc import Callable, Mapping
from typing import Any

from . import _errors
from ._catalogue import CATALOGUE
from ._errors import DriverError, ProtocolError, VirtError
from ._explain import Attempt, Candidate, Explanation, Outcome, Route
from ._types import (
    DomainConfig,
    DomainEvent,
    DomainEventType,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    NodeInfo,
    Version,
)

__all__ = [
    "MAX_FRAME",
    "PROTOCOL",
    "FrameReader",
    "decode_error",
    "decode_event",
    "decode_explanation",
    "decode_value",
    "encode_error",
    "encode_event",
    "encode_frame",
    "encode_value",
    "served_operations",
]

#: The protocol's version: a server refuses a hello of another major.
PROTOCOL = 1
#: The largest frame either side sends or accepts, header excluded.
MAX_FRAME = 4 * 1024 * 1024
_HEADER = struct.Struct(">I")
_MAX_TEXT = 4096  # error messages and fields are cut to this many characters
_INT_LIMIT = 2**63


def encode_frame(message: Mapping[str, Any]) -> bytes:
    """The frame of ``message``; a message over :data:`MAX_FRAME` is a ProtocolError."""
    body = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"a {message.get('k', '?')} message of {len(body)} bytes exceeds the frame limit")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Incremental decoding: ``feed`` bytes as they arrive, get whole messages back.

    Any defect (a length over the cap, bytes that are not UTF-8 JSON, a frame that is not an
    object with a string ``k``) raises ProtocolError; the stream cannot be resynchronised after.
    """

    __slots__ = ("_buf", "limit", "total")

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.limit = limit
        self.total = 0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        self.total += len(data)
        out: list[dict[str, Any]] = []
        buf = self._buf
        while len(buf) >= 4:
            (n,) = _HEADER.unpack_from(buf)
            if n > self.limit:
                hint = ""
                if self.total == len(buf) and not out:  # the very first bytes: a banner, a shell's echo?
                    hint = f" (the stream began with {bytes(buf[:16])!r}: does the far side print to stdout?)"
                raise ProtocolError(f"frame of {n} bytes exceeds the limit of {self.limit}{hint}")
            if len(buf) < 4 + n:
                break
            body = bytes(buf[4 : 4 + n])
            del buf[: 4 + n]
            out.append(_parse(body))
        return out


def _parse(body: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError(f"a frame of {len(body)} bytes is not UTF-8 JSON: {body[:40]!r}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("k"), str):
        raise ProtocolError(f"a frame is not a message object: {body[:40]!r}")
    return msg


# -- values, by the catalogue's declared type ------------------------------------------------------


def _bad(what: str, data: object) -> ProtocolError:
    shown = repr(data)
    return ProtocolError(f"bad {what} on the wire: {shown[:80]}")


def _int(data: object, what: str, low: int = -_INT_LIMIT) -> int:
    if not isinstance(data, int) or isinstance(data, bool) or not low <= data < _INT_LIMIT:
        raise _bad(what, data)
    return data


def _str(data: object, what: str) -> str:
    if not isinstance(data, str):
        raise _bad(what, data)
    return data


def _opt_int(data: object, what: str) -> int | None:
    return None if data is None else _int(data, what)


def _uuid_of(data: object) -> _uuid.UUID:
    if not isinstance(data, str) or len(data) > 64:
        raise _bad("UUID", data)
    try:
        return _uuid.UUID(data)
    except ValueError:
        raise _bad("UUID", data) from None


def _fields(data: object, what: str, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict) or not set(names) >= set(data):
        raise _bad(what, data)
    return data


def _ref(data: object) -> DomainRef:
    d = _fields(data, "DomainRef", ("name", "uuid", "id"))
    return DomainRef(_str(d.get("name"), "domain name"), _uuid_of(d.get("uuid")), _opt_int(d.get("id"), "domain id"))


def _state(data: object) -> DomainState:
    try:
        return DomainState(_int(data, "domain state"))
    except ValueError:
        raise _bad("domain state", data) from None


def _encode_ref(r: DomainRef) -> dict[str, Any]:
    return {"name": r.name, "uuid": str(r.uuid), "id": r.id}


_NODE = ("model", "memory", "cpus", "mhz", "nodes", "sockets", "cores", "threads", "free_memory")


def _node(data: object) -> NodeInfo:
    d = _fields(data, "NodeInfo", _NODE)
    memory, cpus, mhz, nodes, sockets, cores, threads = (_int(d.get(k), f"NodeInfo.{k}") for k in _NODE[1:8])
    model = _str(d.get("model"), "NodeInfo.model")
    free = _opt_int(d.get("free_memory"), "free_memory")
    return NodeInfo(model, memory, cpus, mhz, nodes, sockets, cores, threads, free)


def _info(data: object) -> DomainInfo:
    d = _fields(data, "DomainInfo", DomainInfo._fields)
    return DomainInfo(_state(d.get("state")), *(_int(d.get(k), f"DomainInfo.{k}") for k in DomainInfo._fields[1:]))


def _state_info(data: object) -> DomainStateInfo:
    d = _fields(data, "DomainStateInfo", ("state", "reason"))
    reason = d.get("reason")
    return DomainStateInfo(_state(d.get("state")), None if reason is None else _str(reason, "reason"))


def _version(data: object) -> Version:
    d = _fields(data, "Version", Version._fields)
    return Version(*(_int(d.get(k), f"Version.{k}", 0) for k in Version._fields))


def _config(data: object) -> DomainConfig:
    from ._errors import InvalidArgument

    if not isinstance(data, dict):
        raise _bad("DomainConfig", data)
    try:
        return DomainConfig.from_dict(data)
    except InvalidArgument as exc:
        raise ProtocolError(f"bad DomainConfig on the wire: {exc.message}") from None


def _list_of(item: Callable[[object], Any], what: str) -> Callable[[object], list[Any]]:
    def decode(data: object) -> list[Any]:
        if not isinstance(data, list):
            raise _bad(what, data)
        return [item(x) for x in data]

    return decode


_DECODERS: dict[str, Callable[[object], Any]] = {
    "str": lambda d: _str(d, "string"),
    "int": lambda d: _int(d, "integer"),
    "bool": lambda d: d if isinstance(d, bool) else _bad_raise("boolean", d),
    "None": lambda d: None if d is None else _bad_raise("None", d),
    "list[int]": _list_of(lambda d: _int(d, "integer"), "list of integers"),
    "list[str]": _list_of(lambda d: _str(d, "string"), "list of strings"),
    "UUID": _uuid_of,
    "DomainRef": _ref,
    "DomainInfo": _info,
    "DomainStateInfo": _state_info,
    "NodeInfo": _node,
    "Version": _version,
    "DomainConfig": _config,
}


def _bad_raise(what: str, data: object) -> Any:
    raise _bad(what, data)


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "UUID": str,
    "DomainRef": _encode_ref,
    "DomainInfo": lambda v: {"state": int(v.state), **{k: getattr(v, k) for k in DomainInfo._fields[1:]}},
    "DomainStateInfo": lambda v: {"state": int(v.state), "reason": v.reason},
    "NodeInfo": lambda v: v._asdict(),
    "Version": lambda v: v._asdict(),
    "DomainConfig": lambda v: v.to_dict(),
    "list[int]": list,
    "list[str]": list,
}


def encode_value(type_name: str, value: Any) -> Any:
    """``value`` of catalogue type ``type_name`` as JSON data."""
    enc = _ENCODERS.get(type_name)
    return value if enc is None else enc(value)


def decode_value(type_name: str, data: Any) -> Any:
    """JSON data back into catalogue type ``type_name``; a wrong shape is a ProtocolError."""
    dec = _DECODERS.get(type_name)
    if dec is None:
        raise ProtocolError(f"type {type_name!r} does not travel over the link")
    return dec(data)


def encode_event(event: DomainEvent) -> dict[str, Any]:
    return {
        "type": event.type.value,
        "domain": _encode_ref(event.domain),
        "detail": event.detail,
        "timestamp": event.timestamp,
    }


def decode_event(data: object) -> DomainEvent:
    d = _fields(data, "DomainEvent", ("type", "domain", "detail", "timestamp"))
    try:
        kind = DomainEventType(d.get("type"))
    except ValueError:
        raise _bad("event type", d.get("type")) from None
    ts = d.get("timestamp", 0.0)
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise _bad("event timestamp", ts)
    return DomainEvent(kind, _ref(d.get("domain")), _str(d.get("detail", ""), "event detail"), float(ts))


# -- errors ------------------------------------------------------------------------------------------

_ERROR_CLASSES: dict[str, type[VirtError]] = {
    name: cls
    for name in _errors.__all__
    if isinstance(cls := getattr(_errors, name), type) and issubclass(cls, VirtError)
}


def encode_error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, VirtError) and type(exc).__name__ in _ERROR_CLASSES:
        name, message = type(exc).__name__, exc.message
    elif isinstance(exc, VirtError):  # a plugin's own subclass: its nearest core ancestor travels
        base = next(c for c in type(exc).__mro__ if c.__name__ in _ERROR_CLASSES and c.__module__ == _errors.__name__)
        name, message = base.__name__, exc.message
    else:
        name, message = "DriverError", f"{type(exc).__name__}: {exc}"
    data: dict[str, Any] = {"class": name, "message": message[:_MAX_TEXT]}
    if isinstance(exc, VirtError):
        data.update(operation=exc.operation, driver=exc.driver, uri=exc.uri)
    return data


def _opt_text(data: object) -> str | None:
    return data[:_MAX_TEXT] if isinstance(data, str) else None


def decode_error(data: object) -> VirtError:
    """The same virtkit exception class as was raised on the far side (DriverError if unknown)."""
    if not isinstance(data, dict):
        return ProtocolError(f"bad error on the wire: {data!r:.80}")
    cls = _ERROR_CLASSES.get(str(data.get("class")), DriverError)
    message = _opt_text(data.get("message")) or "(no message)"
    return cls(
        message,
        operation=_opt_text(data.get("operation")),
        driver=_opt_text(data.get("driver")),
        uri=_opt_text(data.get("uri")),
    )


# -- the far side's composition --------------------------------------------------------------------


def decode_explanation(data: object) -> Explanation:
    """``Explanation.to_dict()`` back into an Explanation (the far side's, for ``explain``)."""
    if not isinstance(data, dict):
        raise _bad("explanation", data)
    try:
        routes = tuple(
            Route(
                str(r["operation"]),
                None if r["plugin"] is None else str(r["plugin"]),
                None if r["priority"] is None else int(r["priority"]),
                tuple(Candidate(str(c["plugin"]), int(c["priority"])) for c in r["lost"]),
                str(r["note"]),
                bool(r["fallback"]),
            )
            for r in data["operations"]
        )
        attempts = tuple(
            Attempt(
                str(a["plugin"]),
                Outcome(a["outcome"]),
                str(a["reason"]),
                None if a["priority"] is None else int(a["priority"]),
                str(a["origin"]),
            )
            for a in data["plugins"]
        )
        failures = tuple((str(f["plugin"]), str(f["target"]), str(f["error"])) for f in data["load_failures"])
        far = data.get("remote")
        groups = tuple(
            Route(
                str(r["group"]),
                None if r["plugin"] is None else str(r["plugin"]),
                None if r["priority"] is None else int(r["priority"]),
                tuple(Candidate(str(c["plugin"]), int(c["priority"])) for c in r["lost"]),
                str(r["note"]),
            )
            for r in data.get("stats_groups", ())
        )
        return Explanation(
            str(data["uri"]), routes, attempts, failures, None if far is None else decode_explanation(far), groups
        )
    except (KeyError, TypeError, ValueError):
        raise _bad("explanation", data) from None


def served_operations(data: object) -> dict[str, str]:
    """The hello's ``served``: catalogue operation -> far plugin; unknown operations are dropped
    (a newer far side may serve operations this core does not know)."""
    if not isinstance(data, dict):
        raise _bad("served operations", data)
    return {op: str(plugin) for op, plugin in data.items() if op in CATALOGUE and isinstance(plugin, str)}


# catalogue 1.1: the stats types (their codecs use the helpers above)
from ._stats_wire import DECODERS as _STATS_DECODERS  # noqa: E402
from ._stats_wire import ENCODERS as _STATS_ENCODERS  # noqa: E402

_DECODERS.update(_STATS_DECODERS)
_ENCODERS.update(_STATS_ENCODERS)
