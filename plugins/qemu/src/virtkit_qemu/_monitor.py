"""One connection's way to its domains' QMP, as libvirt's qemu_monitor.c: commands go over a
blocking link to the domain's relay, or -- when it has none -- over a short direct QMP
connection; events come from a subscription to the relay. The transport itself is ``_qmp``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._qmp import CommandLink, Commands, Loop, RelayMissing
from ._state import Running

__all__ = ["Monitor", "RelayMissing"]


class Monitor:
    """Command links (one per domain, made on first use) and the event loop of one connection."""

    __slots__ = ("_links", "_loop", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._loop = Loop(timeout)
        self._links: dict[str, CommandLink] = {}  # run directory -> command link to its relay

    def _link(self, run: Running) -> CommandLink:
        link = self._links.get(run.key)
        if link is None:
            link = self._links.setdefault(run.key, CommandLink(run.relay_socket, self.timeout))
        return link

    def execute(self, run: Running, cmds: Commands, until: float) -> list[Any]:
        """Through the domain's relay; straight to QEMU without one. All of it by ``until``."""
        try:
            return self._link(run).execute_many(cmds, until)
        except RelayMissing:
            return self._loop.run(self._loop.execute_direct(run.qmp_socket, cmds, until), until)

    def command(self, run: Running, cmd: str, args: Mapping[str, object] | None, until: float) -> Any:
        return self.execute(run, ((cmd, args),), until)[0]

    def through_relay(self, run: Running, cmds: Commands, until: float) -> list[Any]:
        """Through the relay only (``RelayMissing`` without one): the fast path's proof of life."""
        return self._link(run).execute_many(cmds, until)

    def listen(self, run: Running, on_event: Callable[[str, str], None], until: float) -> bool:
        """Subscribe to the relay's events; False when the domain has no relay."""
        return self._loop.run(self._loop.listen(run.key, on_event, until), until)

    def forget(self, run: Running) -> None:
        """Drop what this connection holds for a domain that is gone."""
        self._loop.forget(run.key)
        link = self._links.pop(run.key, None)
        if link is not None:
            link.close()

    def close(self) -> None:
        for link in list(self._links.values()):
            link.close()
        self._loop.close()
