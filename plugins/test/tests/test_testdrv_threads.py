"""Several threads hammering one connection: no lost updates, no torn state, only typed refusals."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import virtkit
from virtkit import DomainConfig, DomainEvent, DomainState

THREADS = 8
ROUNDS = 200


def _run(workers: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(workers))

    def wrap(fn: Callable[[], None]) -> None:
        barrier.wait()
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a worker hung: deadlock?"
    return errors


def test_racing_suspend_resume_only_ever_refuses_cleanly(conn: virtkit.Connection) -> None:
    dom = conn.lookup_by_name("web")
    counts = {"ok": 0, "refused": 0}
    lock = threading.Lock()

    def flip() -> None:
        for _ in range(ROUNDS):
            for op in (dom.suspend, dom.resume):
                try:
                    op()
                    outcome = "ok"
                except virtkit.InvalidOperation:
                    outcome = "refused"
                with lock:
                    counts[outcome] += 1

    events: list[DomainEvent] = []
    conn.domain_event_register(events.append)
    assert _run([flip] * THREADS) == []
    assert counts["ok"] + counts["refused"] == THREADS * ROUNDS * 2
    # Every successful transition fired exactly one event, and they alternate as the state did.
    assert len(events) == counts["ok"]
    kinds = [e.type for e in events]
    assert all(a != b for a, b in itertools.pairwise(kinds))
    final = dom.info().state
    assert final is (
        DomainState.PAUSED if kinds and kinds[-1] is virtkit.DomainEventType.SUSPENDED else DomainState.RUNNING
    )


def test_concurrent_creates_get_unique_ids(conn: virtkit.Connection) -> None:
    made: list[virtkit.Domain] = []
    lock = threading.Lock()

    def create(i: int) -> Callable[[], None]:
        def run() -> None:
            for j in range(50):
                d = conn.create(DomainConfig(f"w{i}-{j}", 1024))
                with lock:
                    made.append(d)

        return run

    assert _run([create(i) for i in range(THREADS)]) == []
    ids = [d.id for d in made if d.id is not None]
    assert len(set(ids)) == len(ids) == THREADS * 50
    assert sorted(ids) == list(range(4, 4 + THREADS * 50))  # no id skipped or handed out twice
    assert conn.num_of_domains() == 3 + THREADS * 50
    assert conn.list_domains() == sorted([1, 2, 3, *ids])


def test_same_name_race_has_one_winner(conn: virtkit.Connection) -> None:
    wins: list[virtkit.Domain] = []
    refusals: list[virtkit.InvalidArgument] = []
    lock = threading.Lock()

    def define() -> None:
        try:
            d = conn.define(DomainConfig("contested", 1024))
            with lock:
                wins.append(d)
        except virtkit.InvalidArgument as exc:
            with lock:
                refusals.append(exc)

    assert _run([define] * THREADS) == []
    assert len(wins) == 1
    assert len(refusals) == THREADS - 1


def test_mixed_hammering_keeps_invariants(conn: virtkit.Connection) -> None:
    def lifecycle(i: int) -> Callable[[], None]:
        def run() -> None:
            dom = conn.define(DomainConfig(f"p{i}", 2048, max_memory=4096, vcpus=1, max_vcpus=4))
            for r in range(ROUNDS // 4):
                dom.start()
                dom.set_memory(1024 + r % 3000)
                dom.set_vcpus(1 + r % 4)
                dom.suspend()
                dom.resume()
                (dom.shutdown if r % 2 else dom.destroy)()

        return run

    def reader() -> None:
        for _ in range(ROUNDS):
            for d in conn.domains(all=True):
                try:
                    info = d.info()
                except virtkit.NoSuchDomain:
                    continue
                assert info.memory <= info.max_memory
                assert info.state in (DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF)
                assert 1 <= info.vcpus <= 8 and info.cpu_time >= 0
            node = conn.node_info()
            assert node.free_memory is not None and 0 <= node.free_memory <= node.memory

    assert _run([lifecycle(i) for i in range(THREADS - 2)] + [reader, reader]) == []
    assert conn.list_domains() == [1, 2, 3]
    assert conn.list_defined_domains() == sorted(["defined-vm", *(f"p{i}" for i in range(THREADS - 2))])
    for i in range(THREADS - 2):
        assert conn.lookup_by_name(f"p{i}").info().state is DomainState.SHUTOFF
