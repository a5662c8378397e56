"""``slow:///``: a driver whose ``domain_get_info`` of domain "beta" takes 1.5 s, and whose
open prints to stdout (as a careless plugin may): for ``virtkit serve`` tests."""

from __future__ import annotations

import time

from virtkit import URI, DomainInfo, DomainRef, OpenOptions, hookimpl

from ._memory import MemoryDriver


class SlowDriver(MemoryDriver):
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        if dom.name == "beta":
            time.sleep(1.5)
        return super().domain_get_info(dom, flags=flags)


class SlowPlugin:
    virtkit_catalogue = "1.0"
    virtkit_name = "slow"

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> SlowDriver:
        print("slow plugin opened")  # serve must keep this off the protocol stream
        return SlowDriver("slow")


plugin = SlowPlugin()
