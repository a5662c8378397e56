"""One deadline per operation: the connection's timeout from the call, shared by every exchange
the operation makes (a quit that times out leaves the rest of it for the SIGKILL), so an
operation of several round trips still ends within it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Deadline", "bounded"]

_F = TypeVar("_F", bound=Callable[..., Any])


class Deadline:
    """The deadline of each thread's current operation."""

    __slots__ = ("_local", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._local = threading.local()  # .until: the deadline of this thread's operation

    def until(self) -> float:
        """The current operation's deadline (a time.monotonic() value); outside of one, a fresh one."""
        until: float | None = getattr(self._local, "until", None)
        return time.monotonic() + self.timeout if until is None else until


def bounded(method: _F) -> _F:
    """A method of an object with a ``_deadline`` (a Deadline) runs as one operation."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        local = self._deadline._local
        if getattr(local, "until", None) is not None:
            return method(self, *args, **kwargs)  # an operation calling another: the outer bound
        local.until = time.monotonic() + self._deadline.timeout
        try:
            return method(self, *args, **kwargs)
        finally:
            local.until = None

    return wrapper  # type: ignore[return-value]
