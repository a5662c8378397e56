"""The domains of one state directory as a connection sees them, as libvirt's domain object
list: running ones (alive, asked of the supervisor) and defined ones, listed, found by id, name,
uuid or reference, and defined or undefined under the state directory's lock.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid as _uuid
from collections.abc import Callable

from virtkit import DomainRef, InvalidArgument, InvalidOperation, NoSuchDomain, ProtocolError

from ._process import Supervisor
from ._state import Defined, Record, Running, StateDir

__all__ = ["Domains"]

log = logging.getLogger("virtkit.qemu")


class Domains:
    """``status``: a running domain's QMP status, "gone" when it just ended (``_power``'s)."""

    __slots__ = ("_procs", "_status", "state")

    def __init__(self, state: StateDir, procs: Supervisor, *, status: Callable[[Running], str]) -> None:
        self.state = state
        self._procs = procs
        self._status = status

    def ids(self) -> list[int]:
        """The ids of the running domains; one whose state cannot be read is left out (a warning)."""
        ids = []
        for run in self._procs.running():
            try:
                if self._status(run) != "gone":
                    ids.append(run.id)
            except ProtocolError as exc:
                log.warning("domain %r: %s", run.config.name, exc)
        return ids

    def defined_names(self) -> list[str]:
        """The names of the defined domains that do not run."""
        running = {run.config.name for run in self._procs.running()}
        return [n for n in self.state.defined_names() if n not in running]

    def by_id(self, dom_id: int) -> DomainRef:
        run = self._procs.alive(dom_id) if isinstance(dom_id, int) and dom_id > 0 else None
        if run is None or self._status(run) == "gone":
            raise NoSuchDomain(f"no running domain with id {dom_id}")
        return run.ref

    def by_name(self, name: str) -> DomainRef:
        for run in self._procs.running():
            if run.config.name == name and self._status(run) != "gone":
                return run.ref
        try:
            return self.state.defined_record(name).ref
        except FileNotFoundError:
            raise NoSuchDomain(f"no domain named {name!r}") from None

    def by_uuid(self, uuid: _uuid.UUID) -> DomainRef:
        for run in self._procs.running():
            if run.uuid == uuid and self._status(run) != "gone":
                return run.ref
        for name in self.state.defined_names():
            try:
                dom = self.state.defined_record(name)
            except FileNotFoundError:
                continue  # undefined meanwhile
            except ProtocolError as exc:
                log.warning("%s", exc)
                continue
            if dom.uuid == uuid:
                return dom.ref
        raise NoSuchDomain(f"no domain with uuid {uuid}")

    def find(self, ref: DomainRef) -> Record:
        """A running record, or the defined one; NoSuchDomain otherwise."""
        try:
            uuid, name, dom_id = ref.uuid, ref.name, ref.id
        except AttributeError:
            raise InvalidArgument(f"expected a DomainRef, got {type(ref).__name__}") from None
        if dom_id is not None:
            run = self._procs.alive(dom_id)
            if run is not None and run.uuid == uuid:
                return run
        for run in self._procs.running():
            if run.uuid == uuid:
                return run
        try:
            dom = self.state.defined_record(name)
            if dom.uuid == uuid:
                return dom
        except (FileNotFoundError, InvalidArgument):
            pass
        raise NoSuchDomain(f"no domain {name!r} (uuid {uuid})")

    def active(self, ref: DomainRef, op: str) -> Running:
        """The running record; InvalidOperation (to ``op``) when the domain is not running."""
        rec = self.find(ref)
        if not isinstance(rec, Running):
            raise InvalidOperation(f"cannot {op} domain {rec.config.name!r}: it is not running")
        return rec

    def current(self, dom: Defined) -> DomainRef:
        """The reference of ``dom`` as it is now: with its id when it runs."""
        for run in self._procs.running():
            if run.uuid == dom.uuid:
                return run.ref
        return dom.ref

    def not_defined(self, dom: Defined) -> None:
        """InvalidOperation when ``dom``'s name is defined (create a transient one: start it instead)."""
        try:
            self.state.defined_record(dom.config.name)
        except FileNotFoundError:
            return
        raise InvalidOperation(f"domain {dom.config.name!r} is already defined: start it instead")

    def define(self, dom: Defined, *, uuid_given: bool) -> tuple[Defined, bool]:
        """Write ``dom``'s config; returns it as written and whether it replaced an older one
        (whose uuid it keeps, unless ``uuid_given`` names another: InvalidArgument)."""
        name = dom.config.name
        with self.state.locked():
            for run in self._procs.running():
                if run.config.name == name and not run.persistent:
                    raise InvalidOperation(f"a transient domain named {name!r} is running")
            try:
                old: Defined | None = self.state.defined_record(name)
            except FileNotFoundError:
                old = None
            if old is not None:
                if uuid_given and dom.uuid != old.uuid:
                    raise InvalidArgument(f"domain {name!r} is already defined with uuid {old.uuid}")
                dom = Defined(dataclasses.replace(dom.config, uuid=old.uuid), old.uuid)  # a redefine keeps the uuid
            self.state.write_defined(dom.config)
        return dom, old is not None

    def undefine(self, rec: Record) -> None:
        """Remove the defined config; a running domain lives on as a transient one, as in libvirt."""
        with self.state.locked():
            try:
                self.state.defined_record(rec.config.name)
            except FileNotFoundError:
                raise InvalidOperation(f"domain {rec.config.name!r} is transient: nothing to undefine") from None
            self.state.remove_defined(rec.config.name)
            if isinstance(rec, Running):
                self.state.write_running(rec, persistent=False)
