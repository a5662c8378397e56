"""An event source that dies (a remote link): the EventStream raises its typed error after the
events that came before, instead of waiting for events that cannot come."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

import virtkit
from virtkit import URI, DomainEvent, DomainEventType, DomainInfo, DomainRef, DomainState, OpenOptions, hookimpl

REF = DomainRef("d", uuid.UUID(int=5), 1)


class Driver:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[DomainEvent], None]] = []

    def connect_get_type(self, *, flags: int = 0) -> str:
        return "Ends"

    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        return [1]

    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002
        return REF

    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        return REF

    def domain_lookup_by_uuid(self, uuid: uuid.UUID, *, flags: int = 0) -> DomainRef:
        return REF

    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        return DomainInfo(DomainState.RUNNING, 1, 1, 1, 0)

    def connect_domain_event_register(self, callback: Any, *, flags: int = 0) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: None


class Plugin:
    virtkit_catalogue = "1.0"
    virtkit_name = "ends"

    def __init__(self) -> None:
        self.driver = Driver()

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> Driver:
        return self.driver


def test_the_stream_raises_the_drivers_error_after_the_events_before_it() -> None:
    plugin = Plugin()
    with virtkit.open("ends:///", plugins=[plugin], entry_points=False) as conn, conn.events() as stream:
        (cb,) = plugin.driver.callbacks
        cb(DomainEvent(DomainEventType.SUSPENDED, REF))
        cb.virtkit_error(virtkit.ConnectionClosed("the link went away"))  # type: ignore[attr-defined]
        ev = stream.get(1)
        assert ev is not None and ev.type is DomainEventType.SUSPENDED
        with pytest.raises(virtkit.ConnectionClosed, match="the link went away"):
            stream.get(None)
        with pytest.raises(virtkit.ConnectionClosed):
            next(stream.iter(None))
        assert isinstance(stream.error, virtkit.ConnectionClosed)


def test_a_plain_callback_is_still_just_called() -> None:
    plugin = Plugin()
    seen: list[DomainEvent] = []
    with virtkit.open("ends:///", plugins=[plugin], entry_points=False) as conn:
        conn.domain_event_register(seen.append)
        (cb,) = plugin.driver.callbacks
        assert not hasattr(cb, "virtkit_error")
        cb(DomainEvent(DomainEventType.STARTED, REF))
    assert [e.type for e in seen] == [DomainEventType.STARTED]
