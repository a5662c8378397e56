"""A deliberately broken in-memory driver: the kit must catch each of its violations.

The plugin object below is handed to the kit with ``--virtkit-plugin=THIS_FILE:plugin`` (no entry
point, scheme ``broken``); the test asserts which contract tests fail, and that the rules this
driver keeps still pass, so a kit that failed everything would not pass either.
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


class BrokenDriver:
    """Mostly right; each ``BUG`` comment is one violation the kit has to report."""

    def __init__(self) -> None:
        self.doms: dict[_uuid.UUID, dict[str, Any]] = {}
        self.ids = itertools.count(1)
        self.callbacks: list[Callable[[DomainEvent], None]] = []
        for name in ("one", "two"):
            self._add(DomainConfig(name=name, memory=65536), RUNNING)

    def _add(self, cfg: DomainConfig, state: DomainState) -> dict[str, Any]:
        d = {"name": cfg.name, "uuid": _uuid.uuid4(), "state": state, "mem": cfg.memory}
        d["id"] = next(self.ids) if state is RUNNING else None
        self.doms[d["uuid"]] = d
        return d

    def _ref(self, d: dict[str, Any]) -> DomainRef:
        return DomainRef(d["name"], d["uuid"], d["id"])

    def _get(self, dom: DomainRef) -> dict[str, Any]:
        try:
            return self.doms[dom.uuid]
        except KeyError:
            raise NoSuchDomain(f"no domain {dom.name}") from None

    def _emit(self, kind: DomainEventType, d: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb(DomainEvent(kind, self._ref(d)))

    def connect_get_type(self, *, flags: int = 0) -> str:
        return "Broken"

    def connect_get_hostname(self, *, flags: int = 0) -> str:
        return None  # type: ignore[return-value]  # BUG: not a str

    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        return [d["id"] for d in self.doms.values() if d["id"] is not None]

    def connect_num_of_domains(self, *, flags: int = 0) -> int:
        return len(self.doms) + 1  # BUG: disagrees with list_domains

    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002
        for d in self.doms.values():
            if d["id"] == id:
                return self._ref(d)
        raise NoSuchDomain(f"no id {id}")

    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        return self._ref(next(d for d in self.doms.values() if d["name"] == name))  # BUG: StopIteration

    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        d = self._get(DomainRef("", uuid))
        return DomainRef(d["name"], d["uuid"], None)  # BUG: drops the id of a running domain

    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        d = self._get(dom)
        return DomainInfo(d["state"], 131072, d["mem"], 1, 0)

    def domain_get_max_memory(self, dom: DomainRef) -> int:  # BUG: no flags keyword
        return 131072

    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        d = self._get(dom)
        if d["state"] is not RUNNING:
            raise InvalidOperation("not running")
        d["state"] = PAUSED  # BUG: no SUSPENDED event

    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        d = self._get(dom)
        d["state"] = RUNNING  # BUG: resuming a running domain is silently accepted
        self._emit(DomainEventType.RESUMED, d)

    def domain_destroy(self, dom: DomainRef, *, flags: int = 0) -> None:
        d = self._get(dom)
        d["state"] = SHUTOFF  # BUG: a transient domain stays, still with its id
        self._emit(DomainEventType.STOPPED, d)

    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        d = self._get(dom)
        if memory <= 0:
            raise InvalidArgument("memory must be positive")
        d["mem"] = memory  # BUG: accepts more than the maximum

    def domain_set_max_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        self._get(dom)
        if memory <= 0:
            raise InvalidArgument("memory must be positive")
        # BUG: accepted, never applied (info keeps saying 131072 KiB)

    def domain_create(self, config: DomainConfig, *, flags: int = 0) -> DomainRef:
        if any(d["name"] == config.name for d in self.doms.values()):
            raise InvalidArgument(f"{config.name} exists")
        d = self._add(config, RUNNING)
        self._emit(DomainEventType.STARTED, d)
        return self._ref(d)

    def domain_is_persistent(self, dom: DomainRef, *, flags: int = 0) -> bool:
        self._get(dom)
        return True  # BUG: a domain made by create is transient

    def domain_get_autostart(self, dom: DomainRef, *, flags: int = 0) -> bool:
        return bool(self._get(dom).get("autostart", False))

    def domain_set_autostart(self, dom: DomainRef, autostart: bool, *, flags: int = 0) -> None:
        self._get(dom)["autostart"] = autostart  # BUG: a transient domain has nothing to autostart

    def connect_domain_event_register(self, callback: Callable[[DomainEvent], None], *, flags: int = 0) -> Any:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)


class Plugin:
    virtkit_catalogue = "1.2"
    virtkit_name = "broken"

    @hookimpl
    def open(self, uri: URI, options: OpenOptions) -> BrokenDriver:
        return BrokenDriver()


plugin = Plugin()

#: contract test -> the BUG above it must catch
EXPECTED_FAILURES = {
    "test_result_type[connect_get_hostname]": "hostname is None",
    "test_listings_consistent": "num_of_domains disagrees with list_domains",
    "test_missing_domain[domain_lookup_by_name]": "StopIteration instead of NoSuchDomain",
    "test_missing_lookups_raise": "StopIteration instead of NoSuchDomain",
    "test_lookups_round_trip": "lookup_by_uuid drops the id",
    "test_signature[domain_get_max_memory]": "no flags keyword",
    # ... so every call the core makes to it (always with flags=) breaks:
    "test_result_type[domain_get_max_memory]": "no flags keyword",
    "test_missing_domain[domain_get_max_memory]": "no flags keyword",
    "test_domain_reads_consistent": "no flags keyword on domain_get_max_memory",
    "test_event[suspend]": "no SUSPENDED event",
    "test_invalid_transitions": "resume of a running domain accepted",
    "test_destroy": "destroyed domain keeps its id",
    "test_create_transient": "a transient domain survives destroy",
    "test_set_memory": "memory above the maximum accepted",
    "test_set_max_memory": "a new maximum accepted but never applied",
    "test_persistence": "a created domain said to be persistent",
    "test_autostart": "a transient domain marked to autostart",
}
#: rules this driver keeps: the kit must not fail them
EXPECTED_PASSES = (
    "test_signature[domain_get_info]",
    "test_result_type[domain_get_info]",
    "test_missing_domain[domain_get_info]",
    "test_missing_domain[domain_lookup_by_uuid]",
    "test_readonly_refuses[domain_suspend]",
    "test_mandatory_operations_served",
    "test_suspend_resume",
    "test_event[create]",
    "test_event[resume]",
    "test_result_type[domain_get_autostart]",
    "test_missing_domain[domain_set_autostart]",
    "test_readonly_refuses[domain_set_autostart]",
)


def _runner() -> Any:
    """tests/test_kit_run.py, which runs the kit in a subprocess (tests/ is not a package)."""
    path = pathlib.Path(__file__).with_name("test_kit_run.py")
    spec = importlib.util.spec_from_file_location("_virtkit_kit_runner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kit_catches_every_violation(tmp_path: pathlib.Path) -> None:
    run = _runner().run_pytest(
        tmp_path,
        "--virtkit-uri=broken:///",
        f"--virtkit-plugin={__file__}:plugin",
        "--virtkit-mutating",
        "--virtkit-timeout=1",
    )
    assert run.returncode == 1, run.output[-4000:]
    failed = {name for name, outcome in run.outcomes.items() if outcome in ("failed", "error")}
    missed = {name: why for name, why in EXPECTED_FAILURES.items() if name not in failed}
    assert not missed, f"the kit missed: {missed}\n{run.output[-4000:]}"
    wrong = [name for name in EXPECTED_PASSES if run.outcomes.get(name) != "passed"]
    assert not wrong, f"the kit failed rules the driver keeps: {wrong}\n{run.output[-6000:]}"
    unexpected = sorted(failed - set(EXPECTED_FAILURES))
    assert unexpected == [], f"failures not explained by a BUG: {unexpected}\n{run.output[-6000:]}"
    # operations it lacks are reported as not provided, not failed
    assert run.skips["test_signature[domain_define]"].startswith("not provided: domain_define")
