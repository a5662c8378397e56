"""The kit's event checks: each mutating operation fires the events the catalogue names for it.

A driver that delivers only some event types declares them (``virtkit_event_types``, see
:data:`virtkit._catalogue.EVENTS_ATTRIBUTE`): the checks of the others are skipped, saying so;
the declared ones are checked like any. Collected through :mod:`virtkit.testing._contract`.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Iterator

import pytest

from .._catalogue import CATALOGUE, EVENTS_ATTRIBUTE
from .._connection import Connection
from .._types import DomainEventType, DomainState
from ._checks import EventRecorder, declared_events
from ._contract import Settings, call, need, need_mutating, provided, wait_state
from ._contract_lifecycle import new_config, remove, start_new

#: change -> the operations it needs (its own last); the event it must fire comes from the catalogue.
_CHANGE_OPS: dict[str, tuple[str, ...]] = {
    "create": ("domain_create",),
    "define": ("domain_define",),
    "start": ("domain_define", "domain_start"),
    "suspend": ("domain_suspend",),
    "resume": ("domain_suspend", "domain_resume"),
    "shutdown": ("domain_shutdown",),
    "reboot": ("domain_reboot",),
    "destroy": ("domain_destroy",),
    "undefine": ("domain_define", "domain_undefine"),
}

#: change -> (operations it needs, the event it must fire): the last event the operation fires.
EVENT_CHANGES: dict[str, tuple[tuple[str, ...], DomainEventType]] = {
    change: (ops, DomainEventType[CATALOGUE[ops[-1]].events[-1]]) for change, ops in _CHANGE_OPS.items()
}


def events_driver(conn: Connection) -> object:
    """The driver serving connect_domain_event_register: whose declaration counts."""
    plugin = conn.served_by("connect_domain_event_register")
    return next(driver for name, driver in conn._drivers if name == plugin)


def delivered(conn: Connection) -> frozenset[DomainEventType] | None:
    return declared_events(events_driver(conn))


def need_event(conn: Connection, kind: DomainEventType) -> None:
    declared = delivered(conn)
    if declared is not None and kind not in declared:
        names = ", ".join(sorted(k.name for k in declared)) or "none"
        pytest.skip(f"not delivered: {kind.name} (the driver's {EVENTS_ATTRIBUTE} declares {names})")


@pytest.fixture
def recorder(conn: Connection, settings: Settings) -> Iterator[EventRecorder]:
    need_mutating(settings)
    need(conn, "connect_domain_event_register")
    rec = EventRecorder()
    cancel = call(conn, "connect_domain_event_register", rec)
    try:
        yield rec
    finally:
        cancel()


def test_event_declaration(conn: Connection) -> None:
    """A driver's virtkit_event_types, when it has one, is a collection of DomainEventType."""
    need(conn, "connect_domain_event_register")
    delivered(conn)


@pytest.mark.parametrize("change", list(EVENT_CHANGES))
def test_event(conn: Connection, settings: Settings, recorder: EventRecorder, change: str) -> None:
    """Each lifecycle change fires its event, for that domain, within the timeout.

    Where the driver declares SHUTDOWN, a shutdown fires it before STOPPED.
    """
    ops, kind = EVENT_CHANGES[change]
    need(conn, *ops)
    need_event(conn, kind)
    made: list[_uuid.UUID] = []
    t = settings.timeout
    try:
        if change in ("create", "define", "start", "undefine"):
            op = "domain_create" if change == "create" else "domain_define"
            mark = recorder.mark()
            ref = call(conn, op, new_config(settings))
            made.append(ref.uuid)
            if change == "start":
                mark = recorder.mark()
                call(conn, "domain_start", ref)
            elif change == "undefine":
                mark = recorder.mark()
                call(conn, "domain_undefine", ref)
        else:
            if not (provided(conn, "domain_create") or provided(conn, "domain_define")):
                pytest.skip("the kit checks this event on a domain it creates; the driver cannot create one")
            ref = start_new(conn, settings)
            made.append(ref.uuid)
            if change == "resume":
                call(conn, "domain_suspend", ref)
                wait_state(conn, ref, frozenset({DomainState.PAUSED}), "paused", t)
            mark = recorder.mark()
            call(conn, f"domain_{change}", ref)
        ev = recorder.expect(kind, ref.uuid, t, after=mark)
        assert ev.domain.name == ref.name, f"{kind.name} event names {ev.domain.name!r}, not {ref.name!r}"
        declared = delivered(conn)
        if change == "shutdown" and declared is not None and DomainEventType.SHUTDOWN in declared:
            notice = recorder.expect(DomainEventType.SHUTDOWN, ref.uuid, t, after=mark)
            assert recorder.events.index(notice) < recorder.events.index(ev), "SHUTDOWN came after STOPPED"
    finally:
        for u in made:
            remove(conn, u, t)
