"""The public methods of Connection and Domain: GENERATED from the catalogue, do not edit.

Regenerate with ``python -m virtkit._methods_gen`` (a test fails when this file is stale). Each
method is one vtable lookup and one call; an error is completed on the way out (the operation,
the plugin that served it, the redacted URI) and a backend's own exception becomes a DriverError.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Callable, Iterable

from ._input import as_domain_refs, as_uuid, check_bool, check_domain_config, check_memory, check_vcpus
from ._types import DomainConfig, DomainEvent, DomainInfo, DomainRef, DomainStateInfo, NodeInfo, Version

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any

    from ._connection import Connection, Domain
    from ._stats import BlockStats, DomainStats, InterfaceStats, MemoryStats, VcpuInfo

__all__ = ["ConnectionMethods", "DomainMethods"]


class ConnectionMethods:
    """The catalogue's connection operations as methods of :class:`virtkit.Connection`."""

    __slots__ = ()

    if TYPE_CHECKING:
        _vt: dict[str, Callable[..., Any]]
        _Domain: Callable[[Any, DomainRef], Domain]  # the Domain class

        def _fail(self, op: str, exc: Exception) -> Exception: ...

    def type(self, *, flags: int = 0) -> str:
        """Hypervisor type name, e.g. 'Xen', 'Test'."""
        try:
            return self._vt["connect_get_type"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_get_type", exc)

    def version(self, *, flags: int = 0) -> Version:
        """Hypervisor version."""
        try:
            return self._vt["connect_get_version"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_get_version", exc)

    def hostname(self, *, flags: int = 0) -> str:
        """Host name of the hypervisor's host."""
        try:
            return self._vt["connect_get_hostname"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_get_hostname", exc)

    def node_info(self, *, flags: int = 0) -> NodeInfo:
        """Physical host: cpus, memory (KiB), MHz, topology."""
        try:
            return self._vt["node_get_info"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("node_get_info", exc)

    def list_domains(self, *, flags: int = 0) -> list[int]:
        """Ids of running domains."""
        try:
            return self._vt["connect_list_domains"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_list_domains", exc)

    def num_of_domains(self, *, flags: int = 0) -> int:
        """Number of running domains."""
        try:
            return self._vt["connect_num_of_domains"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_num_of_domains", exc)

    def list_defined_domains(self, *, flags: int = 0) -> list[str]:
        """Names of defined domains that are not running."""
        try:
            return self._vt["connect_list_defined_domains"](flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_list_defined_domains", exc)

    def lookup_by_id(self, id: int, *, flags: int = 0) -> Domain:  # noqa: A002 - libvirt's name
        """Find a running domain by id."""
        try:
            return self._Domain(self, self._vt["domain_lookup_by_id"](id, flags=flags))
        except Exception as exc:
            raise self._fail("domain_lookup_by_id", exc)

    def lookup_by_name(self, name: str, *, flags: int = 0) -> Domain:
        """Find a domain by name."""
        try:
            return self._Domain(self, self._vt["domain_lookup_by_name"](name, flags=flags))
        except Exception as exc:
            raise self._fail("domain_lookup_by_name", exc)

    def lookup_by_uuid(self, uuid: _uuid.UUID | str, *, flags: int = 0) -> Domain:
        """Find a domain by UUID."""
        try:
            return self._Domain(self, self._vt["domain_lookup_by_uuid"](as_uuid(uuid), flags=flags))
        except Exception as exc:
            raise self._fail("domain_lookup_by_uuid", exc)

    def create(self, config: DomainConfig, *, flags: int = 0) -> Domain:
        """Start a new transient domain from a config."""
        try:
            return self._Domain(self, self._vt["domain_create"](check_domain_config(config), flags=flags))
        except Exception as exc:
            raise self._fail("domain_create", exc)

    def define(self, config: DomainConfig, *, flags: int = 0) -> Domain:
        """Define a persistent domain without starting it."""
        try:
            return self._Domain(self, self._vt["domain_define"](check_domain_config(config), flags=flags))
        except Exception as exc:
            raise self._fail("domain_define", exc)

    def domain_event_register(self, callback: Callable[[DomainEvent], None], *, flags: int = 0) -> Callable[[], None]:
        """Call back on every domain lifecycle event; returns a function that cancels."""
        try:
            return self._vt["connect_domain_event_register"](callback, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_domain_event_register", exc)

    def all_domain_stats(
        self,
        groups: Iterable[str] | str | None = None,
        domains: Iterable[Domain | DomainRef] | None = None,
        *,
        flags: int = 0,
    ) -> list[DomainStats]:
        """Bulk stats of the requested groups per domain; a domain gone meanwhile is left out."""
        try:
            return self._vt["connect_get_all_domain_stats"](groups, as_domain_refs(domains), flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._fail("connect_get_all_domain_stats", exc)


class DomainMethods:
    """The catalogue's domain operations as methods of :class:`virtkit.Domain`."""

    __slots__ = ()

    if TYPE_CHECKING:
        _vt: dict[str, Callable[..., Any]]
        _ref: DomainRef
        _conn: Connection

        def _refresh(self, ref: object = None) -> None: ...
        def _stopped(self) -> None: ...

    def info(self, *, flags: int = 0) -> DomainInfo:
        """State, max/current memory (KiB), vcpus, cpu time (ns)."""
        try:
            return self._vt["domain_get_info"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_info", exc)

    def state(self, *, flags: int = 0) -> DomainStateInfo:
        """State and the reason for it."""
        try:
            return self._vt["domain_get_state"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_state", exc)

    def suspend(self, *, flags: int = 0) -> None:
        """Pause all vcpus."""
        try:
            self._vt["domain_suspend"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_suspend", exc)

    def resume(self, *, flags: int = 0) -> None:
        """Unpause a paused domain."""
        try:
            self._vt["domain_resume"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_resume", exc)

    def shutdown(self, *, flags: int = 0) -> None:
        """Ask the guest to shut down (cooperative)."""
        try:
            self._vt["domain_shutdown"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_shutdown", exc)
        self._refresh()

    def reboot(self, *, flags: int = 0) -> None:
        """Ask the guest to reboot (cooperative)."""
        try:
            self._vt["domain_reboot"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_reboot", exc)

    def destroy(self, *, flags: int = 0) -> None:
        """Stop the domain at once; a persistent domain stays defined."""
        try:
            self._vt["domain_destroy"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_destroy", exc)
        self._stopped()

    def set_memory(self, memory: int, *, flags: int = 0) -> None:
        """Set current memory (balloon)."""
        try:
            self._vt["domain_set_memory"](self._ref, check_memory(memory), flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_set_memory", exc)

    def set_max_memory(self, memory: int, *, flags: int = 0) -> None:
        """Set maximum memory."""
        try:
            self._vt["domain_set_max_memory"](self._ref, check_memory(memory), flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_set_max_memory", exc)

    def max_memory(self, *, flags: int = 0) -> int:
        """Maximum memory in KiB."""
        try:
            return self._vt["domain_get_max_memory"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_max_memory", exc)

    def os_type(self, *, flags: int = 0) -> str:
        """Guest OS type: 'linux' (PV), 'hvm', ..."""
        try:
            return self._vt["domain_get_os_type"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_os_type", exc)

    def vcpus(self, *, flags: int = 0) -> int:
        """Online vcpus; flags=VcpuFlags.MAXIMUM for the maximum."""
        try:
            return self._vt["domain_get_vcpus"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_vcpus", exc)

    def set_vcpus(self, count: int, *, flags: int = 0) -> None:
        """Set online vcpus (MAXIMUM: the maximum)."""
        try:
            self._vt["domain_set_vcpus"](self._ref, check_vcpus(count), flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_set_vcpus", exc)

    def start(self, *, flags: int = 0) -> None:
        """Start a defined domain (libvirt's virDomainCreate)."""
        try:
            ref = self._vt["domain_start"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_start", exc)
        self._refresh(ref)

    def undefine(self, *, flags: int = 0) -> None:
        """Remove a defined domain's persistent config."""
        try:
            self._vt["domain_undefine"](self._ref, flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_undefine", exc)

    def config(self, *, flags: int = 0) -> DomainConfig:
        """The domain's configuration."""
        try:
            return self._vt["domain_get_config"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_config", exc)

    def is_persistent(self, *, flags: int = 0) -> bool:
        """Whether the domain has a persistent config, so that it outlives its stop."""
        try:
            return self._vt["domain_is_persistent"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_is_persistent", exc)

    def autostart(self, *, flags: int = 0) -> bool:
        """Whether the domain is started when its host (or the backend's daemon) starts."""
        try:
            return self._vt["domain_get_autostart"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_autostart", exc)

    def set_autostart(self, autostart: bool, *, flags: int = 0) -> None:
        """Mark or unmark the domain to be started when its host starts."""
        try:
            self._vt["domain_set_autostart"](self._ref, check_bool(autostart), flags=flags)
        except Exception as exc:
            raise self._conn._fail("domain_set_autostart", exc)

    def block_stats(self, device: str = "", *, flags: int = 0) -> BlockStats:
        """A disk's I/O counters: requests, bytes, ns."""
        try:
            return self._vt["domain_block_stats"](self._ref, device, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_block_stats", exc)

    def interface_stats(self, device: str, *, flags: int = 0) -> InterfaceStats:
        """An interface's counters: bytes, packets, errors, drops."""
        try:
            return self._vt["domain_interface_stats"](self._ref, device, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_interface_stats", exc)

    def memory_stats(self, *, flags: int = 0) -> MemoryStats:
        """Balloon and guest memory figures (KiB)."""
        try:
            return self._vt["domain_memory_stats"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_memory_stats", exc)

    def vcpu_info(self, *, flags: int = 0) -> list[VcpuInfo]:
        """Each online vcpu: state, cpu time (ns)."""
        try:
            return self._vt["domain_get_vcpu_info"](self._ref, flags=flags)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._conn._fail("domain_get_vcpu_info", exc)
