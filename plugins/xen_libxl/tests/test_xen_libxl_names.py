"""The name cache (_names): against xenstore's in-memory xenstored (plugins/xenstore/tests), a
listing right after any change must show it: a rename, a new domain, a preserved old run, a
domain named late, a daemon restart."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import virtkit
from virtkit_xen_libxl._names import XenstoreIdents
from virtkit_xenstore import Client

_spec = importlib.util.spec_from_file_location(
    "xenstore_test_peers", Path(__file__).parents[2] / "xenstore" / "tests" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
peers: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)

H0, H1, H2 = 0, uuid.uuid4().int, uuid.uuid4().int
V1, V1B = uuid.uuid4(), uuid.uuid4()


@pytest.fixture
def xsd(tmp_path: Path) -> Iterator[Any]:
    d = peers.FakeXenstored(peers._sock_path(tmp_path, "xsd.sock"))
    d.put("/local/domain/0/name", "Domain-0")
    d.put("/local/domain/1/name", "alpha")
    d.put("/local/domain/1/vm", f"/vm/{V1}")
    yield d
    d.close()


@pytest.fixture
def idents(xsd: Any) -> Iterator[XenstoreIdents]:
    i = XenstoreIdents(10.0, xsd.path)
    yield i
    i.close()


@pytest.fixture
def writer(xsd: Any) -> Iterator[Client]:
    """Another xenstore client: what xl does, from its own connection."""
    with Client(xsd.path, timeout=10) as c:
        yield c


KEYS = [(0, H0), (1, H1)]


def test_names_are_read_once_then_each_call_is_one_small_round_trip(idents: XenstoreIdents, xsd: Any) -> None:
    assert idents(KEYS) == [("Domain-0", None), ("alpha", V1)]
    assert xsd.watches == []  # the first call (a CLI lists once) watches nothing
    idents(KEYS)  # watched from here
    idents(KEYS)  # what fired up front when the watches were set is read again once
    before = xsd.requests
    assert idents(KEYS) == [("Domain-0", None), ("alpha", V1)]
    assert xsd.requests - before == 1
    assert sorted(p for _s, p, _t in xsd.watches) == ["/local/domain/0/name", "/local/domain/1/name"]


def test_a_rename_shows_in_the_next_call(idents: XenstoreIdents, writer: Client) -> None:
    for _ in range(2):
        idents(KEYS)
    for n in range(20):
        writer.write("/local/domain/1/name", f"beta{n}")
        assert idents(KEYS)[1] == (f"beta{n}", V1)


def test_a_preserved_old_run_gets_its_new_name_and_uuid(idents: XenstoreIdents, writer: Client) -> None:
    idents(KEYS)
    idents(KEYS)

    def preserve(tx: Any) -> None:  # libxl_domain_preserve: both nodes in one transaction
        tx.write("/local/domain/1/vm", f"/vm/{V1B}")
        tx.write("/local/domain/1/name", "alpha--incoming")

    writer.transact(preserve)
    assert idents(KEYS)[1] == ("alpha--incoming", V1B)


def test_a_new_domain_is_read_and_watched_and_a_dead_one_forgotten(
    idents: XenstoreIdents, xsd: Any, writer: Client
) -> None:
    idents(KEYS)
    writer.write("/local/domain/2/name", "gamma")
    assert idents([*KEYS, (2, H2)])[2] == ("gamma", None)
    writer.write("/local/domain/2/name", "delta")
    assert idents([*KEYS, (2, H2)])[2] == ("delta", None)
    writer.rm("/local/domain/2")
    assert idents(KEYS) == [("Domain-0", None), ("alpha", V1)]
    assert "/local/domain/2/name" not in [p for _s, p, _t in xsd.watches]
    # the same id again with another handle (a new domain) is read anew
    writer.write("/local/domain/2/name", "epsilon")
    assert idents([*KEYS, (2, uuid.uuid4().int)])[2] == ("epsilon", None)


def test_a_domain_named_late_is_listed_once_named(idents: XenstoreIdents, writer: Client) -> None:
    keys = [*KEYS, (2, H2)]
    assert idents(keys)[2] == (None, None)
    assert idents(keys)[2] == (None, None)
    writer.write("/local/domain/2/name", "late")
    assert idents(keys)[2] == ("late", None)


def test_a_rename_while_xenstored_restarts_is_seen(idents: XenstoreIdents, xsd: Any) -> None:
    idents(KEYS)
    idents(KEYS)
    xsd.kick_all()  # the connection and its watches are gone: events may be lost
    xsd.put("/local/domain/1/name", "renamed-meanwhile")
    for _ in range(3):  # the call that finds the connection dead may fail; the next reconnects
        try:
            got = idents(KEYS)
            break
        except virtkit.ConnectionClosed:
            continue
    assert got[1] == ("renamed-meanwhile", V1)
    assert idents(KEYS)[1] == ("renamed-meanwhile", V1)


def test_threads_share_the_cache(idents: XenstoreIdents, writer: Client) -> None:
    import threading

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(30):
                assert idents(KEYS)[0] == ("Domain-0", None)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_a_round_trip_started_before_the_hypercall_serves_as_the_sync(
    idents: XenstoreIdents, xsd: Any, writer: Client
) -> None:
    for _ in range(3):  # unwatched, watched, what fired up front read again
        idents(KEYS, idents.start())
    for n in range(10):
        writer.write("/local/domain/1/name", f"zeta{n}")
        before = xsd.requests
        started = idents.start()  # the listing's hypercall happens here
        assert idents(KEYS, started)[1] == (f"zeta{n}", V1)
        assert xsd.requests - before == 3  # the started read, the renamed one's name and vm
    before = xsd.requests
    idents(KEYS, idents.start())
    assert xsd.requests - before == 1  # all known, nothing fired: the started read was all


def test_an_event_of_another_node_empties_the_cache(idents: XenstoreIdents, xsd: Any, writer: Client) -> None:
    for _ in range(3):
        idents(KEYS)
    xsd.store.nodes["/local/domain/1/name"] = b"silently"  # changed without an event
    assert idents(KEYS)[1] == ("alpha", V1)  # cached, as it should be without an event
    idents._watch.add("/local/domain/0/namespace")  # an event the cache cannot place: all go
    assert idents(KEYS)[1] == ("silently", V1)
