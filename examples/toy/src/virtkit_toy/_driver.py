"""The toy hypervisor: domains as dicts, persisted to a JSON file when the URI names one."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid as _uuid
from collections.abc import Callable
from typing import Any

import virtkit
from virtkit import (
    DomainConfig,
    DomainEvent,
    DomainEventType,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    InvalidArgument,
    InvalidOperation,
    NoSuchDomain,
)

Callback = Callable[[DomainEvent], None]

_START = {
    "domains": [
        {"name": "alpha", "uuid": "7a0e0000-0000-4000-8000-000000000001", "id": 1, "state": "running",
         "memory": 262144, "max_memory": 524288, "vcpus": 1},
        {"name": "beta", "uuid": "7a0e0000-0000-4000-8000-000000000002", "id": None, "state": "shutoff",
         "memory": 131072, "max_memory": 131072, "vcpus": 1},
    ],
    "next_id": 2,
}  # fmt: skip
_STATES = {"running": DomainState.RUNNING, "paused": DomainState.PAUSED, "shutoff": DomainState.SHUTOFF}


class ToyDriver:
    """One driver connection. Methods named after catalogue operations; no others are needed."""

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callback] = {}
        self._tokens = itertools.count()
        self._host: dict[str, Any] = json.loads(json.dumps(_START))
        if path is not None and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self._host = json.load(f)

    # -- helpers ----------------------------------------------------------------------------------

    def _save(self) -> None:
        if self._path is not None:
            tmp = f"{self._path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self._host, f, indent=1)
            os.replace(tmp, self._path)

    def _find(self, dom: DomainRef) -> dict[str, Any]:
        domains: list[dict[str, Any]] = self._host["domains"]
        for d in domains:
            if d["uuid"] == str(dom.uuid):
                return d
        raise NoSuchDomain(f"no toy domain {dom.name!r}")

    @staticmethod
    def _ref(d: dict[str, Any]) -> DomainRef:
        return DomainRef(d["name"], _uuid.UUID(d["uuid"]), d["id"])

    def _change(self, dom: DomainRef, allowed: str, state: str, event: DomainEventType) -> None:
        with self._lock:
            d = self._find(dom)
            if d["state"] != allowed:
                raise InvalidOperation(f"toy domain {d['name']!r} is {d['state']}, not {allowed}")
            d["state"] = state
            if state == "shutoff":
                d["id"] = None
            elif d["id"] is None:
                d["id"] = self._host["next_id"]
                self._host["next_id"] += 1
            self._save()
            ref = self._ref(d)
        self._emit(event, ref)

    def _emit(self, kind: DomainEventType, ref: DomainRef) -> None:
        """Outside the lock, so a callback may call the driver again."""
        event = DomainEvent(kind, ref, timestamp=time.time())
        for callback in list(self._callbacks.values()):
            callback(event)

    # -- connection operations --------------------------------------------------------------------

    def connect_get_type(self, *, flags: int = 0) -> str:
        return "Toy"

    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        with self._lock:
            return sorted(d["id"] for d in self._host["domains"] if d["id"] is not None)

    def connect_num_of_domains(self, *, flags: int = 0) -> int:
        return len(self.connect_list_domains())

    def connect_list_defined_domains(self, *, flags: int = 0) -> list[str]:
        with self._lock:
            return [d["name"] for d in self._host["domains"] if d["id"] is None]

    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002 - the catalogue's name
        with self._lock:
            for d in self._host["domains"]:
                if d["id"] == id:
                    return self._ref(d)
        raise NoSuchDomain(f"no running toy domain with id {id}")

    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        with self._lock:
            for d in self._host["domains"]:
                if d["name"] == name:
                    return self._ref(d)
        raise NoSuchDomain(f"no toy domain named {name!r}")

    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        with self._lock:
            return self._ref(self._find(DomainRef(str(uuid), uuid)))

    def connect_domain_event_register(self, callback: Callback, *, flags: int = 0) -> Callable[[], None]:
        token = next(self._tokens)
        self._callbacks[token] = callback

        def cancel() -> None:
            self._callbacks.pop(token, None)

        return cancel

    # -- domain operations ------------------------------------------------------------------------

    # A per-method priority: this one operation outranks the plugin's 20 (see docs/plugin-guide.md).
    @virtkit.priority(30)
    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        with self._lock:
            d = self._find(dom)
            return DomainInfo(_STATES[d["state"]], d["max_memory"], d["memory"], d["vcpus"], 0)

    def domain_get_state(self, dom: DomainRef, *, flags: int = 0) -> DomainStateInfo:
        return DomainStateInfo(self.domain_get_info(dom).state)

    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        return self.domain_get_info(dom).max_memory

    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        self._change(dom, "running", "paused", DomainEventType.SUSPENDED)

    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        self._change(dom, "paused", "running", DomainEventType.RESUMED)

    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        with self._lock:
            state = self._find(dom)["state"]
        if state == "shutoff":
            raise InvalidOperation(f"toy domain {dom.name!r} is not running")
        self._change(dom, state, "shutoff", DomainEventType.STOPPED)

    def domain_start(self, dom: DomainRef, *, flags: int = 0) -> DomainRef:
        self._change(dom, "shutoff", "running", DomainEventType.STARTED)
        return self.domain_lookup_by_uuid(dom.uuid)

    def domain_define(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        with self._lock:
            if any(d["name"] == config.name for d in self._host["domains"]):
                raise InvalidArgument(f"a toy domain named {config.name!r} exists")
            d = {
                "name": config.name,
                "uuid": str(config.uuid or _uuid.uuid4()),
                "id": None,
                "state": "shutoff",
                "memory": config.memory,
                "max_memory": config.max_memory or config.memory,
                "vcpus": config.vcpus,
            }
            self._host["domains"].append(d)
            self._save()
            ref = self._ref(d)
        self._emit(DomainEventType.DEFINED, ref)
        return ref

    def domain_undefine(self, dom: DomainRef, *, flags: int = 0) -> None:
        with self._lock:
            d = self._find(dom)
            if d["state"] != "shutoff":
                raise InvalidOperation(f"toy domain {d['name']!r} is running: destroy it first")
            self._host["domains"].remove(d)
            self._save()
        self._emit(DomainEventType.UNDEFINED, dom)

    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        with self._lock:
            d = self._find(dom)
            if not 0 < memory <= d["max_memory"]:
                raise InvalidArgument(f"memory must be 1..{d['max_memory']} KiB, not {memory}")
            d["memory"] = memory
            self._save()
