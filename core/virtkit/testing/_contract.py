"""The kit's contract tests, generated from the operation catalogue (collected by the plugin).

Every test reaches the driver through the connection's vtable, the way the public API does, and
turns a backend's own exception into the ``DriverError`` a caller would see. Read-only checks run
on a read-only connection unless ``--virtkit-mutating`` is given; the mutating ones create their
own domain when the driver can (``domain_create``, else ``domain_define`` + ``domain_start``) and
remove it after, else borrow a running domain (never id 0) and put it back as it was.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pathlib
import sys
import uuid as _uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

from .._catalogue import CATALOGUE, Operation
from .._connection import Connection
from .._connection import open as open_connection
from .._errors import InvalidArgument, InvalidOperation, NoSuchDomain, ReadOnlyError, VirtError
from .._input import load_json_file
from .._types import DomainConfig, DomainRef, DomainState, VcpuFlags
from ._checks import ContractViolation, check_result, check_signature, wait_for

OPS = list(CATALOGUE.values())
QUERIES = [op for op in OPS if not op.mutates]
MUTATORS = [op for op in OPS if op.mutates]
DOMAIN_OPS = [op for op in OPS if op.owner == "domain"]
#: Checked by their own tests (at the end of this module): they need running domains and devices.
STATS_OPS = frozenset(op.name for op in OPS if op.since == "1.1")
PLAIN_QUERIES = [op for op in QUERIES if op.name not in STATS_OPS]
LOOKUPS = [CATALOGUE[n] for n in ("domain_lookup_by_id", "domain_lookup_by_name", "domain_lookup_by_uuid")]

RUNNING = frozenset({DomainState.RUNNING, DomainState.BLOCKED, DomainState.NOSTATE})
INACTIVE = frozenset({DomainState.SHUTOFF})
#: What "invalid transition" may raise: libvirt's OPERATION_INVALID, or an invalid argument.
TRANSITION_ERRORS = (InvalidOperation, InvalidArgument)


def _names(ops: list[Operation]) -> list[str]:
    return [op.name for op in ops]


# -- settings and connections ------------------------------------------------------------------


class Settings(NamedTuple):
    uri: str
    mutating: bool
    timeout: float
    plugins: tuple[object, ...]
    config: DomainConfig | None


def load_object(spec: str) -> object:
    """``pkg.mod:obj`` or ``path/to/file.py:obj`` -> the object."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise pytest.UsageError(f"--virtkit-plugin {spec!r}: expected MODULE:OBJECT or FILE.py:OBJECT")
    if where.endswith(".py"):
        path = pathlib.Path(where).resolve()
        name = f"_virtkit_kit_plugin_{abs(hash(str(path))):x}"
        module = sys.modules.get(name)
        if module is None:
            spec_ = importlib.util.spec_from_file_location(name, path)
            if spec_ is None or spec_.loader is None:
                raise pytest.UsageError(f"--virtkit-plugin {spec!r}: cannot load {path}")
            module = importlib.util.module_from_spec(spec_)
            sys.modules[name] = module
            spec_.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    try:
        obj: object = getattr(module, attr)
        return obj
    except AttributeError:
        raise pytest.UsageError(f"--virtkit-plugin {spec!r}: {where} has no {attr!r}") from None


@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest) -> Settings:
    opt = request.config.getoption
    config = None
    if opt("virtkit_config"):
        try:
            config = DomainConfig.from_dict(load_json_file(opt("virtkit_config"), "--virtkit-config"))
        except InvalidArgument as exc:
            raise pytest.UsageError(exc.message) from None
    return Settings(
        uri=opt("virtkit_uri"),
        mutating=bool(opt("virtkit_mutating")),
        timeout=float(opt("virtkit_timeout")),
        plugins=tuple(load_object(s) for s in opt("virtkit_plugin")),
        config=config,
    )


def _open(s: Settings, readonly: bool) -> Connection:
    return open_connection(s.uri, readonly=readonly, timeout=s.timeout, plugins=s.plugins)


@pytest.fixture(scope="session")
def conn(settings: Settings) -> Iterator[Connection]:
    """The connection under test: read-only unless the mutating checks were asked for."""
    c = _open(settings, readonly=not settings.mutating)
    yield c
    c.close()


@pytest.fixture(scope="session")
def ro_conn(settings: Settings, conn: Connection) -> Iterator[Connection]:
    if conn.readonly:
        yield conn
        return
    c = _open(settings, readonly=True)
    yield c
    c.close()


# -- calling the driver as the public API does ----------------------------------------------------


def provided(conn: Connection, op: str) -> bool:
    return conn.served_by(op) is not None


def need(conn: Connection, *ops: str) -> None:
    missing = [op for op in ops if not provided(conn, op)]
    if missing:
        pytest.skip(f"not provided: {', '.join(missing)} (no plugin that opened {conn.uri} implements it)")


def need_mutating(settings: Settings) -> None:
    if not settings.mutating:
        pytest.skip("mutating check: pass --virtkit-mutating")


def call(conn: Connection, op: str, *args: Any, flags: int = 0) -> Any:
    """One vtable call; a backend's own exception becomes the DriverError a caller would get."""
    try:
        result = conn.vtable[op](*args, flags=flags)
    except Exception as exc:  # noqa: BLE001 - completed or wrapped, as Connection does
        raise conn._fail(op, exc) from (None if isinstance(exc, VirtError) else exc)
    check_result(op, result)
    return result


Errors = type[BaseException] | tuple[type[BaseException], ...]


def expect_error(kinds: Errors, fn: Callable[[], object], what: str) -> None:
    try:
        got = fn()
    except kinds:
        return
    except Exception as exc:  # any other outcome is the violation we report
        names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        raise ContractViolation(f"{what}: expected {names}, got {type(exc).__name__}: {exc}") from exc
    names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
    raise ContractViolation(f"{what}: expected {names}, but it succeeded (returned {got!r})")


def running_ids(conn: Connection) -> list[int]:
    return list(call(conn, "connect_list_domains"))


def all_refs(conn: Connection) -> list[DomainRef]:
    refs = [call(conn, "domain_lookup_by_id", i) for i in running_ids(conn)]
    if provided(conn, "connect_list_defined_domains"):
        refs += [call(conn, "domain_lookup_by_name", n) for n in call(conn, "connect_list_defined_domains")]
    return refs


def ghost(conn: Connection) -> DomainRef:
    """A domain that does not exist: unused name, random uuid, an id above every running one."""
    unused_id = max(running_ids(conn), default=0) + 7919
    return DomainRef(f"virtkit-kit-missing-{_uuid.uuid4().hex[:12]}", _uuid.uuid4(), unused_id)


def state_of(conn: Connection, uuid: _uuid.UUID) -> DomainState | None:
    """The domain's state, None once it is gone."""
    try:
        ref = call(conn, "domain_lookup_by_uuid", uuid)
    except NoSuchDomain:
        return None
    state: DomainState = call(conn, "domain_get_info", ref).state
    return state


def refresh(conn: Connection, ref: DomainRef) -> DomainRef:
    r: DomainRef = call(conn, "domain_lookup_by_uuid", ref.uuid)
    return r


def wait_state(conn: Connection, ref: DomainRef, states: frozenset[DomainState], what: str, timeout: float) -> None:
    wait_for(lambda: state_of(conn, ref.uuid) in states, timeout, f"{ref.name} to be {what}")


def arg_for(conn: Connection, op: Operation, index: int, ref: DomainRef) -> Any:
    p = op.params[index]
    if p.type == "DomainRef":
        return ref
    if p.name == "memory":
        return 131072
    if p.name == "count":
        return 1
    if p.type == "DomainConfig":
        return DomainConfig(name=ref.name, memory=131072)
    if p.name == "id":
        return ref.id
    if p.name == "name":
        return ref.name
    if p.type == "UUID":
        return ref.uuid
    if p.name == "callback":
        return lambda _event: None
    if p.name == "device":
        return ""
    if p.name == "autostart":
        return False
    raise AssertionError(f"the kit has no argument for {op.name}({p.name}: {p.type})")


def args_for(conn: Connection, op: Operation, ref: DomainRef) -> list[Any]:
    return [arg_for(conn, op, i, ref) for i in range(len(op.params))]


def _driver_method(conn: Connection, op: Operation) -> Callable[..., Any]:
    plugin = conn.served_by(op.name)
    for name, driver in conn._drivers:
        if name == plugin:
            method: Callable[..., Any] = getattr(driver, op.name)
            return method
    return conn.vtable[op.name]  # not reached: the serving plugin's driver is always kept


# -- every operation ------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS, ids=_names(OPS))
def test_signature(conn: Connection, op: Operation) -> None:
    """The driver's method takes the catalogue's parameters positionally and keyword ``flags=0``."""
    need(conn, op.name)
    check_signature(op, _driver_method(conn, op))


def test_mandatory_operations_served(conn: Connection) -> None:
    missing = [op.name for op in OPS if op.mandatory and not provided(conn, op.name)]
    assert not missing, f"mandatory operations without a provider: {missing}"


@pytest.mark.parametrize("op", PLAIN_QUERIES, ids=_names(PLAIN_QUERIES))
def test_result_type(conn: Connection, op: Operation) -> None:
    """Each query returns the catalogue's type, on every domain it applies to."""
    need(conn, op.name)
    if op.name == "connect_domain_event_register":
        cancel = call(conn, op.name, lambda _event: None)
        cancel()
        return
    if not op.params:
        call(conn, op.name)
        return
    refs = all_refs(conn)
    if not refs:
        pytest.skip("the host has no domain to query")
    for ref in refs:
        if op.name == "domain_lookup_by_id" and ref.id is None:
            continue
        call(conn, op.name, *args_for(conn, op, ref))


@pytest.mark.parametrize("op", LOOKUPS + DOMAIN_OPS, ids=_names(LOOKUPS + DOMAIN_OPS))
def test_missing_domain(conn: Connection, settings: Settings, op: Operation) -> None:
    """Asking about a domain that does not exist raises NoSuchDomain, for every domain operation."""
    need(conn, op.name)
    if op.mutates and not settings.mutating:
        pytest.skip("mutating operation: pass --virtkit-mutating")
    missing = ghost(conn)
    expect_error(
        NoSuchDomain,
        lambda: call(conn, op.name, *args_for(conn, op, missing)),
        f"{op.name} on a domain that does not exist ({missing})",
    )


@pytest.mark.parametrize("op", MUTATORS, ids=_names(MUTATORS))
def test_readonly_refuses(ro_conn: Connection, op: Operation) -> None:
    """A read-only connection refuses every mutating operation, and nothing changes."""
    need(ro_conn, op.name)
    refs = all_refs(ro_conn)
    target = next((r for r in refs if r.id), refs[0] if refs else ghost(ro_conn))
    if op.params and op.params[0].type == "DomainConfig":
        target = ghost(ro_conn)  # create/define: its name must stay unknown
    before = _settled(state_of(ro_conn, target.uuid))
    expect_error(
        ReadOnlyError,
        lambda: call(ro_conn, op.name, *args_for(ro_conn, op, target)),
        f"{op.name} on a read-only connection",
    )
    after = _settled(state_of(ro_conn, target.uuid))
    assert after == before, f"{op.name} changed {target.name} on a read-only connection"


def _settled(state: DomainState | None) -> DomainState | frozenset[DomainState] | None:
    """A real guest moves between running and idle (BLOCKED) on its own: those count as one."""
    return RUNNING if state in RUNNING else state


# -- lookups and listings -------------------------------------------------------------------------


def test_lookups_round_trip(conn: Connection) -> None:
    """id -> name -> uuid -> the same domain, for every running and defined domain."""
    for dom_id in running_ids(conn):
        by_id = call(conn, "domain_lookup_by_id", dom_id)
        assert by_id.id == dom_id, f"lookup_by_id({dom_id}) returned id {by_id.id}"
        by_name = call(conn, "domain_lookup_by_name", by_id.name)
        assert (by_name.name, by_name.uuid, by_name.id) == (by_id.name, by_id.uuid, dom_id), (
            f"lookup_by_name({by_id.name!r}) = {by_name} but lookup_by_id({dom_id}) = {by_id}"
        )
        by_uuid = call(conn, "domain_lookup_by_uuid", by_id.uuid)
        assert (by_uuid.name, by_uuid.uuid, by_uuid.id) == (by_id.name, by_id.uuid, dom_id), (
            f"lookup_by_uuid({by_id.uuid}) = {by_uuid} but lookup_by_id({dom_id}) = {by_id}"
        )
    if provided(conn, "connect_list_defined_domains"):
        for name in call(conn, "connect_list_defined_domains"):
            ref = call(conn, "domain_lookup_by_name", name)
            assert ref.name == name and ref.id is None, f"defined {name!r}: lookup_by_name gave {ref}"
            again = call(conn, "domain_lookup_by_uuid", ref.uuid)
            assert again.name == name and again.id is None, f"defined {name!r}: lookup_by_uuid gave {again}"


def test_missing_lookups_raise(conn: Connection) -> None:
    """By id, name and uuid: a domain that does not exist is NoSuchDomain, not None or a crash."""
    missing = ghost(conn)
    for op, arg in (
        ("domain_lookup_by_id", missing.id),
        ("domain_lookup_by_name", missing.name),
        ("domain_lookup_by_uuid", missing.uuid),
    ):
        expect_error(NoSuchDomain, functools.partial(call, conn, op, arg), f"{op}({arg!r})")


def test_listings_consistent(conn: Connection) -> None:
    ids = running_ids(conn)
    assert len(ids) == len(set(ids)), f"list_domains repeats ids: {ids}"
    if provided(conn, "connect_num_of_domains"):
        n = call(conn, "connect_num_of_domains")
        assert n == len(ids), f"num_of_domains() = {n} but list_domains() has {len(ids)}"
    if provided(conn, "connect_list_defined_domains"):
        defined = call(conn, "connect_list_defined_domains")
        assert len(defined) == len(set(defined)), f"list_defined_domains repeats names: {defined}"
        running_names = {call(conn, "domain_lookup_by_id", i).name for i in ids}
        both = sorted(running_names & set(defined))
        assert not both, f"domains both running and defined-inactive: {both}"


def test_domain_reads_consistent(conn: Connection) -> None:
    """info agrees with state, max memory and vcpus; running domains are active, defined ones off."""
    for ref in all_refs(conn):
        info = call(conn, "domain_get_info", ref)
        if ref.id is None:
            assert info.state in INACTIVE, f"{ref.name} has no id but its state is {info.state.label}"
        else:
            assert info.state not in INACTIVE, f"{ref.name} is listed as running (id {ref.id}) but shut off"
        assert 0 <= info.memory <= info.max_memory, f"{ref.name}: memory {info.memory} > max {info.max_memory}"
        if provided(conn, "domain_get_state"):
            st = call(conn, "domain_get_state", ref).state
            assert st == info.state, f"{ref.name}: get_state says {st.label}, get_info {info.state.label}"
        if provided(conn, "domain_get_max_memory"):
            mx = call(conn, "domain_get_max_memory", ref)
            assert mx == info.max_memory, f"{ref.name}: get_max_memory {mx} != info.max_memory {info.max_memory}"
        if provided(conn, "domain_get_vcpus"):
            n = call(conn, "domain_get_vcpus", ref)
            if ref.id is not None:
                assert n == info.vcpus, f"{ref.name}: get_vcpus {n} != info.vcpus {info.vcpus}"
            most = call(conn, "domain_get_vcpus", ref, flags=VcpuFlags.MAXIMUM)
            assert most >= n, f"{ref.name}: maximum vcpus {most} < online vcpus {n}"
        if provided(conn, "domain_get_config"):
            cfg = call(conn, "domain_get_config", ref)
            assert cfg.name == ref.name, f"{ref.name}: get_config names {cfg.name!r}"
        persistent = call(conn, "domain_is_persistent", ref) if provided(conn, "domain_is_persistent") else None
        assert persistent is not False or ref.id is not None, f"{ref.name} is defined and shut off, not persistent"
        if persistent is False and provided(conn, "domain_get_autostart"):
            assert not call(conn, "domain_get_autostart", ref), f"transient {ref.name} is marked to autostart"


# -- mutating checks, events and statistics (catalogue 1.1): tests in their own modules, collected here

from ._contract_events import (  # noqa: E402, F401 - collected here, with this module's fixtures
    EVENT_CHANGES,
    recorder,
    test_event,
    test_event_declaration,
)
from ._contract_lifecycle import (  # noqa: E402, F401 - collected here, with this module's fixtures
    Scratch,
    need_owned,
    new_config,
    remove,
    scratch,
    start_new,
    test_autostart,
    test_create_transient,
    test_define_start_undefine,
    test_destroy,
    test_invalid_transitions,
    test_persistence,
    test_reboot,
    test_set_max_memory,
    test_set_memory,
    test_set_vcpus,
    test_shutdown,
    test_suspend_resume,
)
from ._contract_stats import (  # noqa: E402, F401 - collected here, with this module's fixtures
    test_stats_bulk_groups,
    test_stats_bulk_named_domains,
    test_stats_counters_monotonic,
    test_stats_domain_ops,
    test_stats_unknown_device,
    test_stats_unknown_group,
)
