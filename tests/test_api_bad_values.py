"""Bad values through the public API are typed errors, on the way in, whatever backend serves."""

from __future__ import annotations

import math
import threading
import time

import pytest

import virtkit
from virtkit import InvalidArgument, NoSuchDomain

URI = "test:///default"


@pytest.fixture
def conn() -> virtkit.Connection:
    return virtkit.open(URI)


@pytest.mark.parametrize("text", ["²", "١٢", "99999999999999999999", "2147483648", "-1", "+1"])
def test_lookup_of_non_ids_is_a_name_lookup(conn: virtkit.Connection, text: str) -> None:
    with pytest.raises(NoSuchDomain):
        conn.lookup(text)


def test_lookup_of_an_id_still_works(conn: virtkit.Connection) -> None:
    assert conn.lookup(" 1 ").name == "test"


@pytest.mark.parametrize("timeout", [-1, 0, math.nan, math.inf, -math.inf])
def test_open_refuses_bad_timeouts(timeout: float) -> None:
    with pytest.raises(InvalidArgument, match="timeout must be a finite number of seconds above 0"):
        virtkit.open(URI, timeout=timeout)


@pytest.mark.parametrize("bad", [math.nan, -1, -math.inf, "soon"])
def test_event_get_refuses_bad_timeouts(conn: virtkit.Connection, bad: object) -> None:
    with conn.events() as stream, pytest.raises(InvalidArgument, match="timeout must be"):
        stream.get(bad)  # type: ignore[arg-type]


def test_event_get_zero_polls_and_inf_waits_for_the_event(conn: virtkit.Connection) -> None:
    with conn.events() as stream:
        assert stream.get(0) is None
        dom = conn.lookup("test")
        threading.Timer(0.2, dom.suspend).start()
        ev = stream.get(math.inf)
        assert ev is not None and ev.type is virtkit.DomainEventType.SUSPENDED


def test_event_iter_with_inf_yields_until_the_caller_stops(conn: virtkit.Connection) -> None:
    with conn.events() as stream:
        threading.Timer(0.1, conn.lookup("test").suspend).start()
        for ev in stream.iter(math.inf):
            assert ev.type is virtkit.DomainEventType.SUSPENDED
            break


def test_event_iter_refuses_nan(conn: virtkit.Connection) -> None:
    with conn.events() as stream, pytest.raises(InvalidArgument):
        next(stream.iter(math.nan))


def test_event_iter_ends_after_its_timeout(conn: virtkit.Connection) -> None:
    start = time.monotonic()
    with conn.events() as stream:
        assert list(stream.iter(0.2)) == []
    assert time.monotonic() - start < 0.2 * 1.1 + 0.5


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda d: d.set_memory(10**23), "memory"),
        (lambda d: d.set_max_memory(99999999999999999999999), "memory"),
        (lambda d: d.set_memory(-1), "memory"),
        (lambda d: d.set_vcpus(10**9), "vcpus"),
        (lambda d: d.set_vcpus(-2), "vcpus"),
    ],
)
def test_setters_refuse_values_without_bounds(conn: virtkit.Connection, call: object, what: str) -> None:
    dom = conn.lookup("test")
    before = dom.info()
    with pytest.raises(InvalidArgument, match=what) as info:
        call(dom)  # type: ignore[operator]
    assert info.value.operation is not None and info.value.operation.startswith("domain_set_")
    after = dom.info()
    assert after._replace(cpu_time=0) == before._replace(cpu_time=0)


@pytest.mark.parametrize("name", ["a/b", "..", "x\nInjected: line", "x\x1b[31m", "a\x00b"])
def test_create_and_define_refuse_bad_names(conn: virtkit.Connection, name: str) -> None:
    cfg = virtkit.DomainConfig(name=name, memory=131072)
    before = conn.list_defined_domains(), conn.list_domains()
    for how in (conn.create, conn.define):
        with pytest.raises(InvalidArgument, match="invalid domain name"):
            how(cfg)
    assert (conn.list_defined_domains(), conn.list_domains()) == before


def test_create_refuses_absurd_memory(conn: virtkit.Connection) -> None:
    with pytest.raises(InvalidArgument, match="memory"):
        conn.create(virtkit.DomainConfig(name="big", memory=int("9" * 4000)))
