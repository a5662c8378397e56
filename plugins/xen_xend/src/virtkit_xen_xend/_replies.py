"""xend's replies to typed errors, as xend documents its status codes and libvirt read them.

2xx with an SXP body is the answer (unless it is ``(xend.err ...)``, or a 202 saying ``failed``);
404 -> NoSuchDomain, 501 -> Unsupported, 413 -> InvalidArgument, 401/403 -> PermissionDenied,
500 ``(xend.err MSG)`` -> DriverError(MSG), or InvalidOperation when MSG is one of xend's
refusals about a domain's state or its being Domain-0. xend's own text is the ``__cause__``.
"""

from __future__ import annotations

import re

from virtkit import (
    DriverError,
    InvalidArgument,
    InvalidOperation,
    NoSuchDomain,
    PermissionDenied,
    ProtocolError,
    Unsupported,
)

from ._sxp import Sxp, dumps, parse_one
from ._transport import Reply

__all__ = ["XendError", "decode"]

#: xend's refusals that are about the domain's state or its being dom0, not a failure of xend:
#: XendDomain's "Cannot pause privileged domain 0", XendDomainInfo's "Domain 0 cannot be
#: shutdown", and the VMBadState texts ("Domain 'x' is not started", ...).
_REFUSALS = re.compile(
    r"privileged domain|domain 0 cannot|cannot be shutdown|is not started|already running|is not halted",
    re.IGNORECASE,
)


class XendError(Exception):
    """xend's own failure text, chained as the ``__cause__`` of the DriverError raised for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _xend_err(body: Sxp | None) -> str | None:
    if isinstance(body, list) and body and body[0] == "xend.err":
        return " ".join(v if isinstance(v, str) else dumps(v) for v in body[1:]) or "unspecified xend error"
    return None


def decode(reply: Reply, where: str, method: str, path: str, what: str) -> Sxp | None:
    """The parsed SXP body of ``reply`` (None when empty), or the typed error for its status."""
    status, text = reply.status, reply.body
    html = "html" in reply.content_type.lower() or text.lstrip()[:1] == "<"
    if status in (200, 201, 202, 204):
        if not text.strip():
            return None
        if html:
            raise ProtocolError(
                f"xend at {where} answered {method} {path} with HTML, not SXP "
                f"(Content-Type {reply.content_type or 'missing'!r}): it ignored 'Accept: application/sxp'"
            )
        body = parse_one(text)
        err = _xend_err(body)
        if err is not None:  # some xend error paths still answer 200/202
            if _REFUSALS.search(err):
                raise InvalidOperation(f"xend refused: {err}") from XendError(status, err)
            raise DriverError(f"xend: {err}") from XendError(status, err)
        if status == 202 and "failed" in text:
            raise DriverError(f"xend: {text.strip()}") from XendError(status, text.strip())
        return body
    detail = text.strip()
    err = None
    if detail and not html and detail[:1] == "(":
        try:
            err = _xend_err(parse_one(detail))
        except ProtocolError:
            err = None
    message = err or detail or reply.reason
    cause = XendError(status, message)
    if status == 404:
        raise NoSuchDomain(f"no domain {what or path} on xend at {where}") from cause
    if status == 501:
        raise Unsupported(f"xend at {where} does not implement this: {message}") from cause
    if status == 413:
        raise InvalidArgument(f"xend at {where} refused the request as too large: {message}") from cause
    if status in (401, 403):
        raise PermissionDenied(f"xend at {where} refused access: {message}") from cause
    if status == 500 and err is not None:
        if _REFUSALS.search(err):
            raise InvalidOperation(f"xend refused: {err}") from cause
        raise DriverError(f"xend: {err}") from cause
    raise DriverError(f"xend at {where}: HTTP {status} {reply.reason}: {message}") from cause
