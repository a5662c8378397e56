"""The kit's mutating checks: lifecycle transitions and resources, on domains the kit makes.

They create their own domain when the driver can (``domain_create``, else ``domain_define`` +
``domain_start``) and remove it after, else borrow a running domain (never id 0) and put it back
as it was. Collected through :mod:`virtkit.testing._contract`, with its fixtures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import uuid as _uuid
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from .._connection import Connection
from .._errors import InvalidArgument, InvalidOperation, NoSuchDomain, VirtError
from .._types import DomainConfig, DomainRef, DomainState
from ._checks import wait_for
from ._contract import (
    INACTIVE,
    RUNNING,
    TRANSITION_ERRORS,
    Settings,
    call,
    expect_error,
    need,
    need_mutating,
    provided,
    refresh,
    running_ids,
    state_of,
    wait_state,
)

# -- the kit's own domains ------------------------------------------------------------------------------


class Scratch(NamedTuple):
    ref: DomainRef
    owned: bool  # created by the kit: may be destroyed


def new_config(settings: Settings) -> DomainConfig:
    tag = _uuid.uuid4().hex[:8]
    if settings.config is not None:
        return dataclasses.replace(settings.config, name=f"{settings.config.name}-{tag}", uuid=None)
    return DomainConfig(name=f"virtkit-kit-{tag}", memory=131072, vcpus=1)


def remove(conn: Connection, uuid: _uuid.UUID, timeout: float) -> None:
    """Destroy and undefine a domain the kit made; quiet if it is already gone."""
    st = state_of(conn, uuid)
    if st is not None and st not in INACTIVE and provided(conn, "domain_destroy"):
        call(conn, "domain_destroy", refresh(conn, DomainRef("", uuid)))
        wait_for(lambda: state_of(conn, uuid) in (None, DomainState.SHUTOFF), timeout, f"{uuid} to stop")
    if state_of(conn, uuid) is not None and provided(conn, "domain_undefine"):
        call(conn, "domain_undefine", refresh(conn, DomainRef("", uuid)))


def start_new(conn: Connection, settings: Settings) -> DomainRef:
    """A new running domain: created, else defined and started."""
    cfg = new_config(settings)
    if provided(conn, "domain_create"):
        ref: DomainRef = call(conn, "domain_create", cfg)
    else:
        ref = call(conn, "domain_define", cfg)
        try:
            ref = call(conn, "domain_start", ref)
        except BaseException:
            remove(conn, ref.uuid, settings.timeout)
            raise
    wait_state(conn, ref, RUNNING, "running", settings.timeout)
    return refresh(conn, ref)


@pytest.fixture
def scratch(conn: Connection, settings: Settings) -> Iterator[Scratch]:
    need_mutating(settings)
    if provided(conn, "domain_create") or (provided(conn, "domain_define") and provided(conn, "domain_start")):
        ref = start_new(conn, settings)
        try:
            yield Scratch(ref, True)
        finally:
            remove(conn, ref.uuid, settings.timeout)
        return
    for dom_id in running_ids(conn):
        ref = call(conn, "domain_lookup_by_id", dom_id)
        if dom_id != 0 and call(conn, "domain_get_info", ref).state in RUNNING:
            break
    else:
        pytest.skip("no domain_create/domain_define and no running domain other than id 0 to borrow")
    try:
        yield Scratch(ref, False)
    finally:
        if state_of(conn, ref.uuid) is DomainState.PAUSED and provided(conn, "domain_resume"):
            call(conn, "domain_resume", refresh(conn, ref))


def need_owned(s: Scratch) -> None:
    if not s.owned:
        pytest.skip("the driver cannot create domains: the kit won't stop a domain it did not create")


def test_suspend_resume(conn: Connection, settings: Settings, scratch: Scratch) -> None:
    """suspend -> paused -> resume -> running."""
    need(conn, "domain_suspend", "domain_resume")
    ref = scratch.ref
    call(conn, "domain_suspend", ref)
    wait_state(conn, ref, frozenset({DomainState.PAUSED}), "paused after suspend", settings.timeout)
    if provided(conn, "domain_get_state"):
        st = call(conn, "domain_get_state", refresh(conn, ref)).state
        assert st is DomainState.PAUSED, f"get_state says {st.label} after suspend"
    call(conn, "domain_resume", refresh(conn, ref))
    wait_state(conn, ref, RUNNING, "running after resume", settings.timeout)
    assert refresh(conn, ref).id == ref.id, "suspend/resume changed the domain's id"


def test_invalid_transitions(conn: Connection, settings: Settings, scratch: Scratch) -> None:
    """resume a running domain, suspend a paused one: typed errors, no state change."""
    ref = scratch.ref
    if provided(conn, "domain_resume"):
        expect_error(TRANSITION_ERRORS, lambda: call(conn, "domain_resume", ref), "resume of a running domain")
        assert state_of(conn, ref.uuid) in RUNNING, "a refused resume changed the state"
    if provided(conn, "domain_suspend"):
        call(conn, "domain_suspend", ref)
        wait_state(conn, ref, frozenset({DomainState.PAUSED}), "paused", settings.timeout)
        expect_error(TRANSITION_ERRORS, lambda: call(conn, "domain_suspend", ref), "suspend of a paused domain")
        if provided(conn, "domain_resume"):
            call(conn, "domain_resume", refresh(conn, ref))
    if not (provided(conn, "domain_suspend") or provided(conn, "domain_resume")):
        pytest.skip("not provided: domain_suspend, domain_resume")


def _stopped(conn: Connection, ref: DomainRef, what: str) -> None:
    """Gone, or defined and shut off: no id, not listed as running, listed as defined."""
    st = state_of(conn, ref.uuid)
    if st is None:
        return
    assert st in INACTIVE, f"{ref.name} is {st.label} after {what}"
    again = refresh(conn, ref)
    assert again.id is None, f"{ref.name} still has id {again.id} after {what}"
    assert ref.id not in running_ids(conn), f"{ref.name}'s old id {ref.id} still listed after {what}"
    if provided(conn, "connect_list_defined_domains"):
        defined = call(conn, "connect_list_defined_domains")
        assert ref.name in defined, f"{ref.name} shut off after {what} but not in list_defined_domains {defined}"


def test_destroy(conn: Connection, settings: Settings, scratch: Scratch) -> None:
    """destroy -> gone, or defined and shut off; a second destroy is refused, typed."""
    need(conn, "domain_destroy")
    need_owned(scratch)
    ref = scratch.ref
    call(conn, "domain_destroy", ref)
    wait_for(lambda: state_of(conn, ref.uuid) in (None, DomainState.SHUTOFF), settings.timeout, "stop after destroy")
    _stopped(conn, ref, "destroy")
    expect_error(
        (*TRANSITION_ERRORS, NoSuchDomain),
        lambda: call(conn, "domain_destroy", ref),
        "destroy of a domain that is not running",
    )
    if state_of(conn, ref.uuid) is not None and provided(conn, "domain_suspend"):
        expect_error(
            TRANSITION_ERRORS,
            lambda: call(conn, "domain_suspend", refresh(conn, ref)),
            "suspend of a shut-off domain",
        )


def test_shutdown(conn: Connection, settings: Settings, scratch: Scratch) -> None:
    need(conn, "domain_shutdown")
    need_owned(scratch)
    ref = scratch.ref
    call(conn, "domain_shutdown", ref)
    wait_for(lambda: state_of(conn, ref.uuid) in (None, DomainState.SHUTOFF), settings.timeout, "stop after shutdown")
    _stopped(conn, ref, "shutdown")


def test_reboot(conn: Connection, settings: Settings, scratch: Scratch) -> None:
    need(conn, "domain_reboot")
    need_owned(scratch)
    ref = scratch.ref
    call(conn, "domain_reboot", ref)
    wait_state(conn, ref, RUNNING, "running after reboot", settings.timeout)


def test_create_transient(conn: Connection, settings: Settings) -> None:
    """create -> a running domain, listed and found; the same name again is refused; destroy -> gone."""
    need_mutating(settings)
    need(conn, "domain_create")
    cfg = new_config(settings)
    ref = call(conn, "domain_create", cfg)
    try:
        assert ref.name == cfg.name, f"create({cfg.name!r}) returned a domain named {ref.name!r}"
        wait_state(conn, ref, RUNNING, "running after create", settings.timeout)
        ref = refresh(conn, ref)
        assert ref.id is not None and ref.id in running_ids(conn), f"created {ref} is not listed as running"
        assert call(conn, "domain_lookup_by_name", cfg.name).uuid == ref.uuid
        if provided(conn, "domain_get_config"):
            got = call(conn, "domain_get_config", ref)
            assert got.name == cfg.name, f"get_config of {cfg.name!r} names {got.name!r}"
        expect_error(
            (InvalidArgument, InvalidOperation),
            lambda: call(conn, "domain_create", cfg),
            f"create of a second domain named {cfg.name!r}",
        )
        if provided(conn, "domain_destroy"):
            call(conn, "domain_destroy", ref)
            wait_for(lambda: state_of(conn, ref.uuid) is None, settings.timeout, "transient domain gone after destroy")
    finally:
        remove(conn, ref.uuid, settings.timeout)


def test_define_start_undefine(conn: Connection, settings: Settings) -> None:
    """define -> shut off and listed as defined; start -> running; destroy -> defined; undefine -> gone."""
    need_mutating(settings)
    need(conn, "domain_define")
    cfg = new_config(settings)
    ref = call(conn, "domain_define", cfg)
    try:
        assert ref.id is None, f"a defined domain has id {ref.id}"
        assert state_of(conn, ref.uuid) in INACTIVE, "a defined domain is not shut off"
        if provided(conn, "connect_list_defined_domains"):
            assert cfg.name in call(conn, "connect_list_defined_domains")
        if provided(conn, "domain_suspend"):
            expect_error(TRANSITION_ERRORS, lambda: call(conn, "domain_suspend", ref), "suspend of a shut-off domain")
        if provided(conn, "domain_start"):
            started = call(conn, "domain_start", ref)
            wait_state(conn, ref, RUNNING, "running after start", settings.timeout)
            ref = refresh(conn, ref)
            assert ref.id is not None and ref.id in running_ids(conn), f"started {ref} is not listed"
            assert started.uuid == ref.uuid, f"start returned {started}, not {ref.name}"
            if provided(conn, "domain_destroy"):
                call(conn, "domain_destroy", ref)
                wait_state(conn, ref, INACTIVE, "shut off after destroy", settings.timeout)
                _stopped(conn, ref, "destroy of a persistent domain")
                assert state_of(conn, ref.uuid) is not None, "a persistent domain vanished on destroy"
        if provided(conn, "domain_undefine") and state_of(conn, ref.uuid) in INACTIVE:
            call(conn, "domain_undefine", refresh(conn, ref))
            wait_for(lambda: state_of(conn, ref.uuid) is None, settings.timeout, "gone after undefine")
    finally:
        remove(conn, ref.uuid, settings.timeout)


def test_set_memory(conn: Connection, settings: Settings, scratch: Scratch) -> None:
    need(conn, "domain_set_memory")
    ref = scratch.ref
    info = call(conn, "domain_get_info", ref)
    for bad in (0, info.max_memory + 1024):
        set_bad = functools.partial(call, conn, "domain_set_memory", ref, bad)
        expect_error(InvalidArgument, set_bad, f"set_memory({bad})")
    call(conn, "domain_set_memory", ref, info.memory)
    if scratch.owned:
        target = max(info.memory - info.memory // 4, 1)
        call(conn, "domain_set_memory", ref, target)
        wait_for(lambda: call(conn, "domain_get_info", ref).memory == target, settings.timeout, f"memory {target} KiB")


def _change_max_memory(conn: Connection, ref: DomainRef, timeout: float) -> bool:
    """Raise ``ref``'s maximum by 1 MiB, see it, put it back: True; False when the driver refused
    with InvalidOperation (its state forbids the change), having changed nothing."""
    before = call(conn, "domain_get_info", ref).max_memory
    target = before + 1024
    try:
        call(conn, "domain_set_max_memory", ref, target)
    except InvalidOperation:
        after = call(conn, "domain_get_info", ref).max_memory
        assert after == before, f"a refused set_max_memory({target}) changed the maximum from {before} to {after} KiB"
        return False
    try:
        wait_for(lambda: call(conn, "domain_get_info", ref).max_memory == target, timeout, f"max memory {target} KiB")
    except BaseException:
        with contextlib.suppress(VirtError):  # put it back if we can; the violation is the news
            call(conn, "domain_set_max_memory", ref, before)
        raise
    call(conn, "domain_set_max_memory", ref, before)
    wait_for(lambda: call(conn, "domain_get_info", ref).max_memory == before, timeout, f"max memory back to {before}")
    return True


def test_set_max_memory(conn: Connection, settings: Settings, scratch: Scratch) -> None:
    """A real change (1 MiB more, then back): done, or InvalidOperation where the state forbids it
    (libvirt refuses while running); then a defined, shut-off domain must take it."""
    need(conn, "domain_set_max_memory")
    ref = scratch.ref
    expect_error(InvalidArgument, lambda: call(conn, "domain_set_max_memory", ref, 0), "set_max_memory(0)")
    if _change_max_memory(conn, ref, settings.timeout):
        return
    if not provided(conn, "domain_define"):
        pytest.skip(
            "set_max_memory refused on a running domain (InvalidOperation); no domain_define to try a shut-off one"
        )
    off = call(conn, "domain_define", new_config(settings))
    try:
        assert _change_max_memory(conn, off, settings.timeout), (
            "set_max_memory refused (InvalidOperation) on a running and on a defined, shut-off domain: "
            "a driver that can change the maximum in no state must not provide it"
        )
    finally:
        remove(conn, off.uuid, settings.timeout)


def test_set_vcpus(conn: Connection, settings: Settings, scratch: Scratch) -> None:
    need(conn, "domain_set_vcpus")
    ref = scratch.ref
    info = call(conn, "domain_get_info", ref)
    expect_error(InvalidArgument, lambda: call(conn, "domain_set_vcpus", ref, 0), "set_vcpus(0)")
    call(conn, "domain_set_vcpus", ref, info.vcpus)
    wait_for(lambda: call(conn, "domain_get_info", ref).vcpus == info.vcpus, settings.timeout, f"{info.vcpus} vcpus")


# -- persistence and autostart (catalogue 1.2) ------------------------------------------------------


@contextlib.contextmanager
def _made(conn: Connection, settings: Settings, op: str) -> Iterator[DomainRef]:
    """A new domain from ``op`` (domain_define or domain_create), removed afterwards."""
    ref = call(conn, op, new_config(settings))
    try:
        yield ref
    finally:
        remove(conn, ref.uuid, settings.timeout)


def test_persistence(conn: Connection, settings: Settings) -> None:
    """A defined domain is persistent, shut off and running; a created one is not."""
    need_mutating(settings)
    need(conn, "domain_is_persistent")
    if not (provided(conn, "domain_define") or provided(conn, "domain_create")):
        pytest.skip("the driver neither defines nor creates domains")
    if provided(conn, "domain_define"):
        with _made(conn, settings, "domain_define") as ref:
            assert call(conn, "domain_is_persistent", ref) is True, "a defined domain is not persistent"
            if provided(conn, "domain_start"):
                call(conn, "domain_start", ref)
                wait_state(conn, ref, RUNNING, "running after start", settings.timeout)
                ref = refresh(conn, ref)
                assert call(conn, "domain_is_persistent", ref) is True, "a started definition is not persistent"
    if provided(conn, "domain_create"):
        with _made(conn, settings, "domain_create") as ref:
            assert call(conn, "domain_is_persistent", ref) is False, "a domain made by create is persistent"


def test_autostart(conn: Connection, settings: Settings) -> None:
    """A new definition does not autostart; set_autostart is read back; a transient domain refuses it."""
    need_mutating(settings)
    need(conn, "domain_get_autostart", "domain_set_autostart")
    if provided(conn, "domain_define"):
        with _made(conn, settings, "domain_define") as ref:
            assert call(conn, "domain_get_autostart", ref) is False, "a new definition is marked to autostart"
            for flag in (True, False):
                call(conn, "domain_set_autostart", ref, flag)
                got = call(conn, "domain_get_autostart", ref)
                assert got is flag, f"set_autostart({flag}) then get_autostart() returned {got!r}"
            info = call(conn, "domain_get_info", ref)
            assert info.state in INACTIVE, f"set_autostart changed the domain's state to {info.state.label}"
    if provided(conn, "domain_create"):
        with _made(conn, settings, "domain_create") as ref:
            assert call(conn, "domain_get_autostart", ref) is False, "a transient domain is marked to autostart"
            expect_error(
                InvalidOperation,
                lambda: call(conn, "domain_set_autostart", ref, True),
                "set_autostart of a transient domain",
            )
