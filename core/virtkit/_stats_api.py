"""The public stats methods of Connection and Domain (catalogue 1.1), kept out of _connection.py.

Mixed into :class:`virtkit.Connection` and :class:`virtkit.Domain`; each method is one vtable call
with the errors completed as every public method does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._types import DomainRef

if TYPE_CHECKING:
    from ._connection import Connection, Domain
    from ._stats import BlockStats, DomainStats, InterfaceStats, MemoryStats, VcpuInfo

__all__ = ["ConnectionStats", "DomainStatsMethods"]


class ConnectionStats:
    __slots__ = ()

    if TYPE_CHECKING:
        _vt: dict[str, Callable[..., Any]]

        def _fail(self, op: str, exc: Exception) -> Exception: ...

    def all_domain_stats(
        self,
        groups: Iterable[str] | None = None,
        domains: Iterable[Domain | DomainRef] | None = None,
        *,
        flags: int = 0,
    ) -> list[DomainStats]:
        """Stats of ``groups`` (None: every group served here) for ``domains`` (None: all), in one
        call (libvirt's getAllDomainStats). A domain that vanishes meanwhile is left out."""
        refs = None if domains is None else [d if isinstance(d, DomainRef) else _ref_of(d) for d in domains]
        try:
            return self._vt["connect_get_all_domain_stats"](groups, refs, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_get_all_domain_stats", exc)


def _ref_of(dom: object) -> Any:
    return getattr(dom, "ref", dom)  # a Domain; anything else is refused by the core's check


class DomainStatsMethods:
    __slots__ = ()

    if TYPE_CHECKING:
        _vt: dict[str, Callable[..., Any]]
        _ref: DomainRef
        _conn: Connection

    def block_stats(self, device: str = "", *, flags: int = 0) -> BlockStats:
        """A disk's counters (``device`` its target name, e.g. ``vda``); ``''`` sums every disk."""
        try:
            return self._vt["domain_block_stats"](self._ref, device, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_block_stats", exc)

    def interface_stats(self, device: str, *, flags: int = 0) -> InterfaceStats:
        """An interface's counters; ``device`` is its name or MAC address."""
        try:
            return self._vt["domain_interface_stats"](self._ref, device, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_interface_stats", exc)

    def memory_stats(self, *, flags: int = 0) -> MemoryStats:
        try:
            return self._vt["domain_memory_stats"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_memory_stats", exc)

    def vcpu_info(self, *, flags: int = 0) -> list[VcpuInfo]:
        try:
            return self._vt["domain_get_vcpu_info"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_vcpu_info", exc)
