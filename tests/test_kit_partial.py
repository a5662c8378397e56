"""The kit honours what a driver says it cannot do: partial events and state-refused max memory.

A libvirt-like in-memory driver (served as ``partial:///MODE`` to the kit with
``--virtkit-plugin=THIS_FILE:plugin``): it refuses ``domain_set_max_memory`` while the domain
runs and takes it shut off, as libvirt does, and declares the event types it delivers
(``virtkit_event_types``). MODE ``libvirt`` is that driver with one bug, a declared event it
never fires; ``baddecl`` declares its events wrongly; ``nomax`` refuses max memory in every state.
"""

from __future__ import annotations

import importlib.util
import itertools
import pathlib
import uuid as _uuid
from collections.abc import Callable
from typing import Any

from virtkit import (
    URI,
    Declined,
    DomainConfig,
    DomainEvent,
    DomainEventType,
    DomainInfo,
    DomainRef,
    DomainState,
    InvalidArgument,
    InvalidOperation,
    NoSuchDomain,
    OpenOptions,
    hookimpl,
)

RUNNING, PAUSED, SHUTOFF = DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF
E = DomainEventType


class PartialDriver:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        if mode == "baddecl":
            self.virtkit_event_types: object = "started"  # BUG: a string, not DomainEventType members
        else:
            # RESUMED is not declared: the kit must skip its check, not fail it.
            self.virtkit_event_types = frozenset({E.STARTED, E.STOPPED, E.DEFINED, E.UNDEFINED, E.SUSPENDED})
        self.doms: dict[_uuid.UUID, dict[str, Any]] = {}
        self.ids = itertools.count(1)
        self.callbacks: list[Callable[[DomainEvent], None]] = []

    def _ref(self, d: dict[str, Any]) -> DomainRef:
        return DomainRef(d["name"], d["uuid"], d["id"])

    def _get(self, dom: DomainRef) -> dict[str, Any]:
        d = self.doms.get(dom.uuid)
        if d is None:
            raise NoSuchDomain(f"no domain {dom.name}")
        return d

    def _emit(self, kind: DomainEventType, d: dict[str, Any]) -> None:
        for cb in list(self.callbacks):
            cb(DomainEvent(kind, self._ref(d)))

    def connect_get_type(self, *, flags: int = 0) -> str:
        return "Partial"

    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        return [d["id"] for d in self.doms.values() if d["id"] is not None]

    def connect_list_defined_domains(self, *, flags: int = 0) -> list[str]:
        return [d["name"] for d in self.doms.values() if d["id"] is None]

    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002 - the catalogue's name
        for d in self.doms.values():
            if d["id"] == id:
                return self._ref(d)
        raise NoSuchDomain(f"no id {id}")

    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        for d in self.doms.values():
            if d["name"] == name:
                return self._ref(d)
        raise NoSuchDomain(f"no domain named {name}")

    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        return self._ref(self._get(DomainRef("", uuid)))

    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        d = self._get(dom)
        return DomainInfo(d["state"], d["max"], d["mem"], 1, 0)

    def domain_define(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        if any(d["name"] == config.name for d in self.doms.values()):
            raise InvalidArgument(f"{config.name} exists")
        mem = config.memory
        d = {"name": config.name, "uuid": _uuid.uuid4(), "id": None, "state": SHUTOFF, "mem": mem, "max": mem}
        d["persistent"] = True
        self.doms[d["uuid"]] = d
        self._emit(E.DEFINED, d)
        return self._ref(d)

    def domain_start(self, dom: DomainRef, *, flags: int = 0) -> DomainRef:
        d = self._get(dom)
        if d["state"] is not SHUTOFF:
            raise InvalidOperation("already active")
        d["state"], d["id"] = RUNNING, next(self.ids)
        self._emit(E.STARTED, d)
        return self._ref(d)

    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        d = self._get(dom)
        if d["state"] is SHUTOFF:
            raise InvalidOperation("not running")
        d["state"], d["id"] = SHUTOFF, None
        if not d["persistent"]:
            del self.doms[d["uuid"]]
        self._emit(E.STOPPED, d)

    def domain_undefine(self, dom: DomainRef, *, flags: int = 0) -> None:
        d = self._get(dom)
        if not d["persistent"]:
            raise InvalidOperation("transient")
        d["persistent"] = False
        if d["id"] is None:
            del self.doms[d["uuid"]]
        self._emit(E.UNDEFINED, d)

    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        d = self._get(dom)
        if d["state"] is not RUNNING:
            raise InvalidOperation("not running")
        d["state"] = PAUSED
        if self.mode != "libvirt":
            self._emit(E.SUSPENDED, d)  # BUG in mode libvirt: declared, never fired

    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        d = self._get(dom)
        if d["state"] is not PAUSED:
            raise InvalidOperation("not paused")
        d["state"] = RUNNING  # no RESUMED event: not declared, so not owed

    def domain_set_max_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        d = self._get(dom)
        if memory < 1:
            raise InvalidArgument("memory must be positive")
        if d["state"] is not SHUTOFF or self.mode == "nomax":  # BUG in mode nomax: refused in every state
            raise InvalidOperation("the maximum changes only while shut off")
        d["max"], d["mem"] = memory, min(d["mem"], memory)

    def connect_domain_event_register(self, callback: Callable[[DomainEvent], None], *, flags: int = 0) -> Any:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback) if callback in self.callbacks else None


class Plugin:
    virtkit_catalogue = "1.0"
    virtkit_name = "partial"

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> PartialDriver | Declined:
        if uri.scheme != "partial":
            return Declined("not partial://")
        return PartialDriver(uri.path.strip("/"))


plugin = Plugin()


def _run(tmp_path: pathlib.Path, mode: str, *args: str) -> Any:
    path = pathlib.Path(__file__).with_name("test_kit_run.py")
    spec = importlib.util.spec_from_file_location("_virtkit_kit_runner", path)
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner.run_pytest(
        tmp_path,
        f"--virtkit-uri=partial:///{mode}",
        f"--virtkit-plugin={__file__}:plugin",
        "--virtkit-mutating",
        "--virtkit-timeout=1",
        *args,
    )


def test_declared_events_are_checked_and_the_others_skipped(tmp_path: pathlib.Path) -> None:
    run = _run(tmp_path, "libvirt")
    failed = sorted(n for n, o in run.outcomes.items() if o in ("failed", "error"))
    assert failed == ["test_event[suspend]"], run.output[-6000:]  # declared, never fired
    for change in ("define", "start", "destroy", "undefine"):
        assert run.outcomes[f"test_event[{change}]"] == "passed", change
    assert run.outcomes["test_event_declaration"] == "passed"
    assert run.outcomes["test_event[resume]"] == "skipped"
    assert run.skips["test_event[resume]"].startswith("not delivered: RESUMED")
    assert "virtkit_event_types" in run.skips["test_event[resume]"]
    assert "not delivered: SUSPENDED" not in run.output


def test_max_memory_refused_while_running_is_accepted(tmp_path: pathlib.Path) -> None:
    """libvirt's rule: InvalidOperation on the running domain, the change made on a shut-off one."""
    run = _run(tmp_path, "libvirt", "-k", "max_memory")
    assert run.outcomes["test_set_max_memory"] == "passed", run.output[-4000:]


def test_max_memory_refused_in_every_state_fails(tmp_path: pathlib.Path) -> None:
    run = _run(tmp_path, "nomax", "-k", "max_memory")
    assert run.outcomes["test_set_max_memory"] == "failed", run.output[-4000:]
    assert "refused (InvalidOperation) on a running and on a defined, shut-off domain" in run.output


def test_a_malformed_declaration_fails(tmp_path: pathlib.Path) -> None:
    run = _run(tmp_path, "baddecl", "-k", "event_declaration")
    assert run.outcomes["test_event_declaration"] == "failed", run.output[-4000:]
    assert "virtkit_event_types = 'started': expected a collection of DomainEventType" in run.output
