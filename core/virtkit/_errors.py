"""The error tree: one root carrying libvirt's virError fields, subclasses callers branch on."""

from __future__ import annotations

import enum

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ConnectionClosed",
    "DriverError",
    "ErrorCode",
    "InvalidArgument",
    "InvalidOperation",
    "InvalidURI",
    "NoDriver",
    "NoSuchDomain",
    "PermissionDenied",
    "PluginLoadError",
    "ProtocolError",
    "ReadOnlyError",
    "TimeoutError",
    "Unsupported",
    "VirtError",
]


class ErrorCode(enum.Enum):
    """Stable machine-readable codes, one per error class (libvirt's virErrorNumber, trimmed)."""

    INTERNAL = "internal"
    INVALID_URI = "invalid-uri"
    NO_DRIVER = "no-driver"
    UNSUPPORTED = "unsupported"
    NO_SUCH_DOMAIN = "no-such-domain"
    PERMISSION_DENIED = "permission-denied"
    READ_ONLY = "read-only"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    DRIVER = "driver"
    PLUGIN_LOAD = "plugin-load"
    INVALID_ARGUMENT = "invalid-argument"
    INVALID_OPERATION = "invalid-operation"
    CONNECTION_CLOSED = "connection-closed"


class VirtError(Exception):
    """Root of every error virtkit raises.

    ``operation``, ``driver`` and ``uri`` are filled in by the core when a driver left them
    empty, so a caller always learns which plugin failed at what. ``uri`` is always the redacted
    form: no password ever travels inside an error.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        driver: str | None = None,
        uri: str | None = None,
        code: ErrorCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.driver = driver
        self.uri = uri
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        where = [f"{k}={v}" for k, v in (("operation", self.operation), ("driver", self.driver)) if v]
        return f"{self.message} ({', '.join(where)})" if where else self.message

    def to_dict(self) -> dict[str, str | None]:
        return {
            "code": self.code.value,
            "error": type(self).__name__,
            "message": self.message,
            "operation": self.operation,
            "driver": self.driver,
            "uri": self.uri,
        }


class InvalidURI(VirtError):
    code = ErrorCode.INVALID_URI


class NoDriver(VirtError):
    """No plugin could open the URI, or mandatory operations were left without a driver.

    ``explanation`` (a :class:`virtkit.Explanation` with no routes), when set, tells which
    plugins declined and which failed, as ``Connection.explain()`` would have.
    """

    code = ErrorCode.NO_DRIVER
    explanation: Any = None


class Unsupported(VirtError):
    """No driver provides this operation on this connection (an empty vtable slot)."""

    code = ErrorCode.UNSUPPORTED


class NoSuchDomain(VirtError):
    code = ErrorCode.NO_SUCH_DOMAIN


class PermissionDenied(VirtError):
    code = ErrorCode.PERMISSION_DENIED


class ReadOnlyError(VirtError):
    """A mutating operation was called on a read-only connection."""

    code = ErrorCode.READ_ONLY


class TimeoutError(VirtError):  # noqa: A001 - deliberate: virtkit.TimeoutError, like libvirt's
    code = ErrorCode.TIMEOUT


class ProtocolError(VirtError):
    """A peer (daemon, hypervisor, file) sent something that breaks its protocol."""

    code = ErrorCode.PROTOCOL


class DriverError(VirtError):
    """The backend failed; its own exception is chained as ``__cause__``."""

    code = ErrorCode.DRIVER


class PluginLoadError(VirtError):
    """A plugin failed to import, raised in a hook, or targets an incompatible catalogue."""

    code = ErrorCode.PLUGIN_LOAD


class InvalidArgument(VirtError, ValueError):
    """A value the caller passed is unacceptable. Also a ValueError, so code that guarded a
    parse with ``except ValueError`` keeps catching it."""

    code = ErrorCode.INVALID_ARGUMENT


class InvalidOperation(VirtError):
    """The operation is valid but not in the domain's current state (resume a running domain)."""

    code = ErrorCode.INVALID_OPERATION


class ConnectionClosed(VirtError):
    code = ErrorCode.CONNECTION_CLOSED
