"""The catalogue is the single source of truth: the public API and naming are derived from it."""

from __future__ import annotations

import inspect

import pytest

import virtkit
from virtkit import CATALOGUE, Connection, Domain, public_name
from virtkit._catalogue import catalogue_compatible


@pytest.mark.parametrize("op", list(CATALOGUE.values()), ids=list(CATALOGUE))
def test_every_operation_has_its_public_method(op: virtkit.Operation) -> None:
    owner = Domain if op.owner == "domain" else Connection
    method = getattr(owner, op.method, None)
    assert method is not None, f"{owner.__name__}.{op.method} missing for {op.name}"
    sig = inspect.signature(method)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    expected = [p.name for p in op.params if p.type != "DomainRef"]
    assert positional == expected
    flags = sig.parameters["flags"]
    assert flags.kind is flags.KEYWORD_ONLY and flags.default == 0
    # the method body names its operation: a renamed op can't silently route elsewhere
    assert f'"{op.name}"' in inspect.getsource(method)


def test_naming_rule() -> None:
    assert public_name("domain_suspend") == "suspend"
    assert public_name("domain_get_info") == "info"
    assert public_name("connect_get_type") == "type"
    assert public_name("node_get_info") == "node_info"
    assert public_name("domain_lookup_by_name") == "lookup_by_name"


def test_catalogue_fields() -> None:
    assert {op for op, o in CATALOGUE.items() if o.mandatory} >= {"connect_get_type", "domain_get_info"}
    assert {o.since for o in CATALOGUE.values()} == {"1.0", "1.1", "1.2"}
    added = {o.name for o in CATALOGUE.values() if o.since == "1.1"}
    assert added == {
        "connect_get_all_domain_stats",
        "domain_block_stats",
        "domain_interface_stats",
        "domain_memory_stats",
        "domain_get_vcpu_info",
    }
    assert not any(CATALOGUE[op].mandatory or CATALOGUE[op].mutates for op in added)  # a 1.0 plugin still opens
    added = {o.name for o in CATALOGUE.values() if o.since == "1.2"}
    assert added == {"domain_is_persistent", "domain_get_autostart", "domain_set_autostart"}
    assert not any(CATALOGUE[op].mandatory for op in added)  # a 1.1 plugin still opens
    assert {op for op in added if CATALOGUE[op].mutates} == {"domain_set_autostart"}
    mut = {op for op, o in CATALOGUE.items() if o.mutates}
    assert "domain_suspend" in mut and "domain_get_info" not in mut
    assert all(not o.name.startswith("domain_get") for o in CATALOGUE.values() if o.mutates)
    assert CATALOGUE["domain_set_memory"].signature == (
        "domain_set_memory(dom: DomainRef, memory: int, *, flags: int = 0) -> None"
    )


@pytest.mark.parametrize(
    ("target", "ok"),
    [("1.0", True), ("1.1", False), ("0.9", False), ("2.0", False), ("x", False), ("1", False)],
)
def test_catalogue_compatibility(target: str, ok: bool) -> None:
    assert catalogue_compatible(target, "1.0") is ok
    assert catalogue_compatible("1.0", "1.3")  # newer minor core still serves 1.0 plugins


def test_contract_metadata_names_real_errors_and_events() -> None:
    """Errors and events in the catalogue are real virtkit classes and DomainEventType members."""
    for op in CATALOGUE.values():
        for name, why in op.errors:
            cls = getattr(virtkit, name, None)
            assert isinstance(cls, type) and issubclass(cls, virtkit.VirtError), (op.name, name)
            assert why, (op.name, name)
        assert all(e in virtkit.DomainEventType.__members__ for e in op.events), op.name
        assert not op.events or op.mutates, f"{op.name} is a query but says it fires {op.events}"
        if op.owner == "domain":  # the kit checks NoSuchDomain for every operation on a domain
            assert "NoSuchDomain" in {name for name, _ in op.errors}, op.name
    lifecycle = {name: op.events for name, op in CATALOGUE.items() if op.events}
    assert lifecycle == {
        "domain_suspend": ("SUSPENDED",),
        "domain_resume": ("RESUMED",),
        "domain_shutdown": ("STOPPED",),
        "domain_reboot": ("REBOOTED",),
        "domain_destroy": ("STOPPED",),
        "domain_create": ("STARTED",),
        "domain_define": ("DEFINED",),
        "domain_start": ("STARTED",),
        "domain_undefine": ("UNDEFINED",),
    }
    assert "SHUTDOWN" in CATALOGUE["domain_shutdown"].note  # fired first where the backend sees it


def test_operations_built_without_the_contract_fields_still_work() -> None:
    """Operation gained errors/events/note with defaults: positional construction is unchanged."""
    op = virtkit.Operation("x_op", (), "None", "doc", False, True, "1.0")
    assert (op.errors, op.events, op.note, op.mutates) == ((), (), "", True)
