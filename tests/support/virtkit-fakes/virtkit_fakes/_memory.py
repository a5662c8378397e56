"""A small in-memory driver serving the mandatory operations, shared by the fake plugins."""

from __future__ import annotations

import uuid

import virtkit
from virtkit import DomainInfo, DomainRef, DomainState, NoSuchDomain


class MemoryDriver:
    """Two running domains; records every call so tests can see which driver served what."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.calls: list[str] = []
        self.closed = False
        self.doms = {
            1: DomainRef("alpha", uuid.UUID(int=1), 1),
            2: DomainRef("beta", uuid.UUID(int=2), 2),
        }
        self.paused: set[int] = set()

    def connect_get_type(self, *, flags: int = 0) -> str:
        self.calls.append("connect_get_type")
        return f"Fake-{self.label}"

    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        self.calls.append("connect_list_domains")
        return sorted(self.doms)

    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002
        self.calls.append("domain_lookup_by_id")
        try:
            return self.doms[id]
        except KeyError:
            raise NoSuchDomain(f"no domain with id {id}") from None

    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        self.calls.append("domain_lookup_by_name")
        for ref in self.doms.values():
            if ref.name == name:
                return ref
        raise NoSuchDomain(f"no domain named {name!r}")

    def domain_lookup_by_uuid(self, uuid: uuid.UUID, *, flags: int = 0) -> DomainRef:
        self.calls.append("domain_lookup_by_uuid")
        for ref in self.doms.values():
            if ref.uuid == uuid:
                return ref
        raise NoSuchDomain(f"no domain with uuid {uuid}")

    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        self.calls.append("domain_get_info")
        if dom.id not in self.doms:
            raise NoSuchDomain(f"no domain {dom.name}")
        state = DomainState.PAUSED if dom.id in self.paused else DomainState.RUNNING
        return DomainInfo(state, 1024 * 1024, 512 * 1024, 1, 0)

    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        self.calls.append("domain_suspend")
        if dom.id in self.paused:
            raise virtkit.InvalidOperation(f"domain {dom.name} is already paused")
        assert dom.id is not None
        self.paused.add(dom.id)

    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        self.calls.append("domain_resume")
        if dom.id not in self.paused:
            raise virtkit.InvalidOperation(f"domain {dom.name} is not paused")
        assert dom.id is not None
        self.paused.discard(dom.id)

    def close(self) -> None:
        self.closed = True
