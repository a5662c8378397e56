"""Two plugins competing for ``compete://`` with per-operation priorities.

a: plugin priority 20, but its domain_get_info carries @priority(5).
b: plugin priority 10, with domain_get_info at @priority(30); it lacks the other mandatory ops.
So b serves domain_get_info (30 > 5), a serves everything else (20 > nothing / 10).
"""

from __future__ import annotations

from virtkit import URI, DomainInfo, DomainRef, DomainState, OpenOptions, hookimpl, priority

from ._memory import MemoryDriver


class DriverA(MemoryDriver):
    @priority(5)
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        return super().domain_get_info(dom, flags=flags)


class DriverB:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @priority(30)
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        self.calls.append("domain_get_info")
        return DomainInfo(DomainState.BLOCKED, 2048, 1024, 2, 7)

    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        self.calls.append("domain_suspend")
        raise RuntimeError("b cannot suspend")


class CompetePlugin:
    virtkit_catalogue = "1.0"

    def __init__(self, name: str, prio: int, factory: type) -> None:
        self.virtkit_name = name
        self._prio = prio
        self._factory = factory

    @hookimpl
    def can_handle(self, uri: URI) -> bool:
        return True

    @hookimpl
    def priority(self, uri: URI) -> int:
        return self._prio

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        return self._factory("a") if self._factory is DriverA else self._factory()


plugin_a = CompetePlugin("compete_a", 20, DriverA)
plugin_b = CompetePlugin("compete_b", 10, DriverB)
