"""One domain's mutable state in the in-memory hypervisor, shared by the driver and its statistics."""

from __future__ import annotations

import uuid as _uuid

from virtkit import DomainConfig, DomainRef, DomainState

from ._stats import devices_of

__all__ = ["Dom"]


class Dom:
    """One domain's mutable state. Hot fields live here; the rest of its config in ``config``."""

    __slots__ = (
        "autostart",
        "config",
        "cpu_ns",
        "disks",
        "id",
        "max_memory",
        "max_vcpus",
        "memory",
        "name",
        "nets",
        "persistent",
        "reason",
        "ref",
        "since",
        "state",
        "uuid",
        "vcpu_base",
        "vcpu_t0",
        "vcpus",
    )

    def __init__(self, config: DomainConfig, uuid: _uuid.UUID, persistent: bool) -> None:
        assert config.max_memory is not None and config.max_vcpus is not None  # check_config filled them
        self.config = config
        self.name = config.name
        self.uuid = uuid
        self.persistent = persistent
        self.autostart = False  # only a persistent domain may be marked
        self.memory = config.memory
        self.max_memory = config.max_memory
        self.vcpus = config.vcpus
        self.max_vcpus = config.max_vcpus
        self.id: int | None = None
        self.state = DomainState.SHUTOFF
        self.reason = "unknown"
        self.cpu_ns = 0  # cpu time used up to ``since``
        self.since: int | None = None  # monotonic ns when it last started running; None unless RUNNING
        self.ref = DomainRef(self.name, uuid, None)
        self.disks, self.nets = devices_of(config, uuid)
        self.vcpu_base: list[int] = []  # each vcpu's cpu time (ns) when the vcpu count last changed
        self.vcpu_t0 = 0  # the domain's cpu time then

    def cpu_time(self, now: int) -> int:
        return self.cpu_ns if self.since is None else self.cpu_ns + (now - self.since)
