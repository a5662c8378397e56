"""Many hosts at once: ``import virtkit.fleet`` (not imported by ``virtkit`` itself).

>>> from virtkit import fleet
>>> for r in fleet.run(["test:///default", "nosuch:///"], lambda c: c.num_of_domains()):
...     print(r.uri, r.value if r.ok else type(r.error).__name__)
test:///default 3
nosuch:/// NoDriver

Every host gets its own thread (at most ``parallel`` at a time), its own connection and a total
deadline (``timeout``: opening included). A host's failure is its result, a typed
:class:`virtkit.VirtError`, and never spoils another's. Results come back in the order of the
URIs given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from ._connection import Connection
from ._connection import open as open_connection
from ._errors import DriverError, InvalidArgument, VirtError
from ._errors import TimeoutError as VirtTimeout
from ._input import check_timeout
from ._uri import parse_uri

__all__ = ["HostResult", "close_all", "open_many", "run"]

T = TypeVar("T")


class HostResult(NamedTuple, Generic[T]):
    """One host's outcome: ``value`` when ``ok``, else ``error``."""

    uri: str  # as shown: without a password
    value: T | None = None
    error: VirtError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _shown(uri: str | Connection) -> str:
    if isinstance(uri, Connection):
        return str(uri.uri)
    try:
        return str(parse_uri(uri))
    except VirtError as exc:
        return exc.uri or "(invalid URI)"


def _typed(exc: BaseException, uri: str) -> VirtError:
    if isinstance(exc, VirtError):
        if exc.uri is None:
            exc.uri = uri
        return exc
    err = DriverError(f"{type(exc).__name__}: {exc}", uri=uri)
    err.__cause__ = exc
    return err


def run(
    targets: Iterable[str | Connection],
    fn: Callable[[Connection], T],
    *,
    parallel: int = 16,
    timeout: float = 30.0,
    close: bool = True,
    **open_kwargs: Any,
) -> list[HostResult[T]]:
    """``fn(conn)`` on every target (a URI, opened here, or an open Connection).

    ``timeout`` bounds each host's whole turn and is the timeout of the connections opened
    here; a host past it is a :class:`virtkit.TimeoutError` and its connection is closed, which
    ends its calls in flight. Connections opened here are closed afterwards unless ``close`` is
    False (what :func:`open_many` uses). ``open_kwargs`` go to :func:`virtkit.open`.
    """
    timeout = check_timeout(timeout)
    if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= 1024:
        raise InvalidArgument(f"parallel must be 1..1024, got {parallel!r}")
    items = list(targets)
    n = len(items)
    results: list[HostResult[T] | None] = [None] * n
    opened: list[Connection | None] = [None] * n
    deadlines: list[float] = []
    held = [False] * n  # host i holds one of the `parallel` slots
    slots = threading.Semaphore(parallel)
    cond = threading.Condition()

    def release(i: int) -> None:  # under cond
        if held[i]:
            held[i] = False
            slots.release()

    def turn(i: int) -> None:
        target = items[i]
        shown = _shown(target)
        late: Connection | None = None
        try:
            if isinstance(target, Connection):
                conn = target
            else:
                conn = open_connection(target, timeout=timeout, **open_kwargs)
                with cond:
                    if results[i] is None:
                        opened[i] = conn
                    else:  # its deadline passed while it was opening
                        late = conn
                if late is not None:
                    late.close()
                    return
            outcome: HostResult[T] = HostResult(shown, fn(conn))
        except Exception as exc:  # noqa: BLE001 - a host's failure is its result
            outcome = HostResult(shown, None, _typed(exc, shown))
        with cond:
            if results[i] is None:
                results[i] = outcome
            release(i)
            cond.notify_all()

    # Hosts start as slots free up; a host past its deadline gets a TimeoutError and gives its slot
    # back at once (its connection is closed, which ends its calls in flight), so one stuck host
    # never holds up the others, even a function that ignores every timeout.
    started = 0
    while True:
        expired: list[Connection] = []
        with cond:
            now = time.monotonic()
            for i, deadline in enumerate(deadlines):
                if results[i] is None and now >= deadline:
                    shown = _shown(items[i])
                    results[i] = HostResult(shown, None, VirtTimeout(f"no result within {timeout:g}s", uri=shown))
                    release(i)
                    conn = opened[i]
                    if conn is not None:
                        expired.append(conn)
            while not expired and started < n and slots.acquire(blocking=False):
                held[started] = True
                deadlines.append(now + timeout)
                threading.Thread(target=turn, args=(started,), name=f"virtkit-fleet-{started}", daemon=True).start()
                started += 1
            if not expired:
                if started == n and all(r is not None for r in results):
                    break
                waiting = [d for i, d in enumerate(deadlines) if results[i] is None]
                cond.wait(max(0.0, min(waiting) - now) if waiting else None)
        for gone in expired:
            gone.close()
    if close:
        for conn in opened:
            if conn is not None and not conn.closed:
                conn.close()
    return [r for r in results if r is not None]


def open_many(
    uris: Sequence[str], *, parallel: int = 16, timeout: float = 30.0, **open_kwargs: Any
) -> list[HostResult[Connection]]:
    """Open every URI in parallel: an open :class:`Connection` or a typed error per host.

    The caller closes the connections (:func:`close_all`); pass them to :func:`run` later.
    """
    return run(uris, lambda conn: conn, parallel=parallel, timeout=timeout, close=False, **open_kwargs)


def close_all(results: Iterable[HostResult[Connection]]) -> None:
    for r in results:
        if r.value is not None:
            try:
                r.value.close()
            except VirtError:
                pass
