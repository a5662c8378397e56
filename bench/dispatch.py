"""Vtable dispatch cost: a Domain call vs a plain bound-method call on the same driver object,
and vs a pluggy firstresult hook call. Ratios from one run; best of several repeats.

Targets (issue 2): Domain call <= 1.5x plain call; >= 10x cheaper than a pluggy hook call.
"""

from __future__ import annotations

import platform
import timeit
import uuid

import pluggy

import virtkit
from virtkit import URI, DomainInfo, DomainRef, DomainState, OpenOptions, hookimpl

INFO = DomainInfo(DomainState.RUNNING, 1024, 512, 1, 0)
REF = DomainRef("bench", uuid.UUID(int=7), 1)


class Driver:
    def connect_get_type(self, *, flags: int = 0) -> str:
        return "Bench"

    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        return [1]

    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002
        return REF

    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        return REF

    def domain_lookup_by_uuid(self, uuid: uuid.UUID, *, flags: int = 0) -> DomainRef:
        return REF

    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        return INFO


class Plugin:
    virtkit_catalogue = "1.0"
    virtkit_name = "bench"

    def __init__(self) -> None:
        self.driver = Driver()

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> object:
        return self.driver


class Spec:
    @pluggy.HookspecMarker("benchpeer")(firstresult=True)
    def domain_get_info(self, dom: DomainRef, flags: int) -> DomainInfo:  # type: ignore[empty-body]
        ...


class PluggyImpl:
    @pluggy.HookimplMarker("benchpeer")
    def domain_get_info(self, dom: DomainRef, flags: int) -> DomainInfo:
        return INFO


def best(stmt: object, number: int) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=7)) / number  # type: ignore[arg-type]


def main() -> None:
    plugin = Plugin()
    conn = virtkit.open("bench:///", plugins=[plugin], entry_points=False)
    dom = conn.lookup_by_id(1)
    drv = plugin.driver
    pm = pluggy.PluginManager("benchpeer")
    pm.add_hookspecs(Spec)
    pm.register(PluggyImpl())
    hook = pm.hook.domain_get_info
    assert dom.info() is INFO and drv.domain_get_info(REF) is INFO and hook(dom=REF, flags=0) is INFO

    n = 200_000
    plain = best(lambda: drv.domain_get_info(REF), n)
    plain_kw = best(lambda: drv.domain_get_info(REF, flags=0), n)
    ours = best(dom.info, n)
    peer = best(lambda: hook(dom=REF, flags=0), n // 4)
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}")
    print(f"plain bound call          {plain * 1e9:8.1f} ns")
    print(f"plain bound call, flags=0 {plain_kw * 1e9:8.1f} ns")
    print(f"virtkit Domain.info()     {ours * 1e9:8.1f} ns")
    print(f"pluggy firstresult hook   {peer * 1e9:8.1f} ns")
    print(f"ratio virtkit / plain           = {ours / plain:.2f}x  (target <= 1.5x)")
    print(f"ratio virtkit / plain(flags=0)  = {ours / plain_kw:.2f}x")
    print(f"ratio pluggy / virtkit          = {peer / ours:.1f}x  (target >= 10x)")
    conn.close()


if __name__ == "__main__":
    main()
