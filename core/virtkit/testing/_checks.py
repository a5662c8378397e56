"""What the kit checks, independent of pytest: result types, waits with deadlines, events."""

from __future__ import annotations

import inspect
import threading
import time
import uuid as _uuid
from collections.abc import Callable, Iterable
from typing import Any

from .._catalogue import CATALOGUE, EVENTS_ATTRIBUTE, Operation
from .._types import (
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
from ._stats_checks import STATS_CHECKS

__all__ = [
    "RESULT_CHECKS",
    "ContractViolation",
    "EventRecorder",
    "check_result",
    "check_signature",
    "declared_events",
    "wait_for",
]


class ContractViolation(AssertionError):
    """A driver broke the plugin contract; the message says which rule and how."""


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _fields(v: tuple[Any, ...]) -> dict[str, object]:
    """A NamedTuple's fields, typed as what a driver may really have put there: anything."""
    return dict(v._asdict())  # type: ignore[attr-defined]


def _bad_ints(f: dict[str, object], names: Iterable[str]) -> list[str]:
    return [n for n in names if not _int(f[n])]


def _check_version(v: object) -> str | None:
    if not isinstance(v, Version):
        return f"expected Version, got {type(v).__name__}"
    bad = _bad_ints(_fields(v), ("major", "minor", "release"))
    return f"Version fields not ints: {bad}" if bad else None


def _check_node(v: object) -> str | None:
    if not isinstance(v, NodeInfo):
        return f"expected NodeInfo, got {type(v).__name__}"
    f = _fields(v)
    if not isinstance(f["model"], str):
        return "NodeInfo.model is not a str"
    bad = _bad_ints(f, ("memory", "cpus", "mhz", "nodes", "sockets", "cores", "threads"))
    if bad:
        return f"NodeInfo fields not ints: {bad}"
    if f["free_memory"] is not None and not _int(f["free_memory"]):
        return "NodeInfo.free_memory is neither an int nor None"
    return None


def _check_ref(v: object) -> str | None:
    if not isinstance(v, DomainRef):
        return f"expected DomainRef, got {type(v).__name__}"
    f = _fields(v)
    name, uuid, dom_id = f["name"], f["uuid"], f["id"]
    if not isinstance(name, str) or not name:
        return f"DomainRef.name {name!r} is not a non-empty str"
    if not isinstance(uuid, _uuid.UUID):
        return f"DomainRef.uuid is {type(uuid).__name__}, not uuid.UUID"
    if dom_id is not None and not (isinstance(dom_id, int) and _int(dom_id) and dom_id >= 0):
        return f"DomainRef.id {dom_id!r} is neither None nor an int >= 0"
    return None


def _check_info(v: object) -> str | None:
    if not isinstance(v, DomainInfo):
        return f"expected DomainInfo, got {type(v).__name__}"
    f = _fields(v)
    if not isinstance(f["state"], DomainState):
        return f"DomainInfo.state is {type(f['state']).__name__}, not DomainState"
    bad = _bad_ints(f, ("max_memory", "memory", "vcpus", "cpu_time"))
    return f"DomainInfo fields not ints: {bad}" if bad else None


def _check_state(v: object) -> str | None:
    if not isinstance(v, DomainStateInfo):
        return f"expected DomainStateInfo, got {type(v).__name__}"
    f = _fields(v)
    if not isinstance(f["state"], DomainState):
        return f"DomainStateInfo.state is {type(f['state']).__name__}, not DomainState"
    if f["reason"] is not None and not isinstance(f["reason"], str):
        return "DomainStateInfo.reason is neither a str nor None"
    return None


def _is(kind: type, label: str) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
        return None if ok else f"expected {label}, got {type(v).__name__}"

    return check


def _list_of(kind: type, label: str) -> Callable[[object], str | None]:
    def check(v: object) -> str | None:
        if not isinstance(v, list):
            return f"expected {label}, got {type(v).__name__}"
        bad = [x for x in v if not isinstance(x, kind) or isinstance(x, bool)]
        return f"{label} holds {bad[:3]!r}" if bad else None

    return check


def _check_none(v: object) -> str | None:
    return None if v is None else f"expected None, got {type(v).__name__}"


def _check_callable(v: object) -> str | None:
    return None if callable(v) else f"expected a callable, got {type(v).__name__}"


#: The catalogue's return annotations, each with its checker. A test fails when the catalogue
#: gains a return type the kit cannot check.
RESULT_CHECKS: dict[str, Callable[[object], str | None]] = {
    "str": _is(str, "str"),
    "int": _is(int, "int"),
    "bool": _is(bool, "bool"),
    "None": _check_none,
    "Version": _check_version,
    "NodeInfo": _check_node,
    "list[int]": _list_of(int, "list[int]"),
    "list[str]": _list_of(str, "list[str]"),
    "DomainRef": _check_ref,
    "DomainInfo": _check_info,
    "DomainStateInfo": _check_state,
    "DomainConfig": _is(DomainConfig, "DomainConfig"),
    "Callable[[], None]": _check_callable,
}
RESULT_CHECKS.update(STATS_CHECKS)  # catalogue 1.1


def check_result(op: Operation | str, value: object) -> None:
    """Raise ContractViolation unless ``value`` is what the catalogue says ``op`` returns."""
    operation = CATALOGUE[op] if isinstance(op, str) else op
    checker = RESULT_CHECKS.get(operation.returns)
    if checker is None:
        raise ContractViolation(f"the kit cannot check return type {operation.returns!r} of {operation.name}")
    why = checker(value)
    if why is not None:
        raise ContractViolation(f"{operation.name} returned {value!r}: {why} (catalogue: {operation.signature})")


def check_signature(op: Operation, method: Callable[..., Any]) -> None:
    """The core calls ``method(*params, flags=N)``: the driver's method must accept exactly that."""
    try:
        sig = inspect.signature(method)
    except (TypeError, ValueError):
        return  # a builtin or C method without a signature: nothing to check
    n = len(op.params)
    dummies = [object()] * n
    for call, kwargs in (("with flags", {"flags": 0}), ("without flags", {})):
        try:
            sig.bind(*dummies, **kwargs)
        except TypeError as exc:
            raise ContractViolation(
                f"{op.name}{sig} cannot be called with {n} positional argument(s) {call}: {exc} "
                f"(catalogue: {op.signature})"
            ) from None
    flags = sig.parameters.get("flags")
    if flags is not None:
        if flags.kind not in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            raise ContractViolation(f"{op.name}{sig}: 'flags' must be passable by keyword")
        if flags.default != 0:
            raise ContractViolation(f"{op.name}{sig}: 'flags' must default to 0, not {flags.default!r}")


def declared_events(driver: object) -> frozenset[DomainEventType] | None:
    """The event types ``driver`` declares it delivers (``virtkit_event_types``); None: undeclared.

    Raise ContractViolation for a declaration that is not a collection of DomainEventType.
    """
    declared = getattr(driver, EVENTS_ATTRIBUTE, None)
    if declared is None:
        return None
    if isinstance(declared, str | bytes | DomainEventType) or not isinstance(declared, Iterable):
        raise ContractViolation(f"{EVENTS_ATTRIBUTE} = {declared!r}: expected a collection of DomainEventType")
    kinds = list(declared)
    bad = [k for k in kinds if not isinstance(k, DomainEventType)]
    if bad:
        raise ContractViolation(f"{EVENTS_ATTRIBUTE} holds {bad[:3]!r}: expected DomainEventType members")
    return frozenset(kinds)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; ContractViolation after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise ContractViolation(f"timed out after {timeout:g}s waiting for {what} (last seen: {last!r})")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, 1.0)


class EventRecorder:
    """Collects the events a driver delivers, for :meth:`expect` with a deadline."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: DomainEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def expect(self, kind: DomainEventType, uuid: _uuid.UUID, timeout: float, after: int = 0) -> DomainEvent:
        """The first ``kind`` event for ``uuid`` among events[after:], waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events[after:]:
                    if not isinstance(ev, DomainEvent):
                        raise ContractViolation(f"event callback got {type(ev).__name__}, not DomainEvent: {ev!r}")
                    if ev.type is kind and ev.domain.uuid == uuid:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e.type.value, e.domain.name) for e in self.events[after:] if isinstance(e, DomainEvent)]
                    raise ContractViolation(
                        f"no {kind.name} event for domain {uuid} within {timeout:g}s (events seen: {seen})"
                    )
                self._cond.wait(left)

    def mark(self) -> int:
        with self._cond:
            return len(self.events)
