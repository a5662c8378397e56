"""virtkit.fleet and the CLI's several -c / --hosts: a result or a typed error per host."""

from __future__ import annotations

import json
import pathlib
import threading
import time

import pytest

import virtkit
from virtkit import fleet
from virtkit._cli import main


def test_run_gives_each_host_its_result_or_its_typed_error() -> None:
    results = fleet.run(["test:///default", "nosuch:///", "test:///default", "bad uri"], lambda c: c.list_domains())
    assert [r.uri for r in results] == ["test:///default", "nosuch:///", "test:///default", "bad uri"]
    assert results[0].ok and results[0].value == [1, 2, 3] and results[2].value == [1, 2, 3]
    assert isinstance(results[1].error, virtkit.NoDriver)
    assert isinstance(results[3].error, virtkit.InvalidURI)


def test_a_function_that_fails_is_that_hosts_error_only() -> None:
    def fn(conn: virtkit.Connection) -> str:
        if conn.uri.path == "/default":
            raise KeyError("boom")
        return "fine"

    (r,) = fleet.run(["test:///default"], fn)
    assert isinstance(r.error, virtkit.DriverError) and "KeyError" in r.error.message


def test_a_slow_host_is_a_timeout_and_the_others_are_not_held_up() -> None:
    release = threading.Event()

    def fn(conn: virtkit.Connection) -> int:
        if conn.uri.path == "/default" and not release.is_set():
            release.set()
            time.sleep(5)  # the first host to get here hangs past the deadline
        return conn.num_of_domains()

    t0 = time.monotonic()
    results = fleet.run(["test:///default"] * 3, fn, timeout=1.0, parallel=3)
    took = time.monotonic() - t0
    assert took <= 1.0 * 1.1 + 0.5
    assert sum(isinstance(r.error, virtkit.TimeoutError) for r in results) == 1
    assert sum(r.value == 3 for r in results) == 2


def test_parallelism_is_bounded() -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def fn(conn: virtkit.Connection) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    results = fleet.run(["test:///default"] * 12, fn, parallel=3)
    assert all(r.ok for r in results) and peak[0] <= 3
    with pytest.raises(virtkit.InvalidArgument):
        fleet.run(["test:///default"], fn, parallel=0)


def test_open_many_keeps_connections_open_for_later_runs() -> None:
    opened = fleet.open_many(["test:///default", "nosuch:///"])
    try:
        conns = [r.value for r in opened if r.value is not None]
        assert len(conns) == 1 and not conns[0].closed
        (r,) = fleet.run(conns, lambda c: c.type())
        assert r.value == "Test" and not conns[0].closed  # given open, left open
    finally:
        fleet.close_all(opened)
    assert conns[0].closed


def test_cli_several_hosts_with_a_host_column(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# the lab\ntest:///default\n\nnosuch:///  # gone\n")
    assert main(["-c", "test:///default", "--hosts", str(hosts), "list", "--all"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["HOST", "Id", "Name", "State"]
    assert sum(line.startswith(" test:///default") for line in lines) == 8
    assert lines[2].split() == ["test:///default", "1", "test", "running"]
    assert "error: nosuch:///: no plugin can open nosuch:///" in err

    assert main(["-c", "test:///default", "-c", "test:///default", "--json", "suspend", "web"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"host": "test:///default", "name": "web", "action": "suspend", "ok": True}] * 2

    assert main(["-c", "test:///default", "-c", "nosuch:///", "--json", "nodeinfo"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["host"] == "test:///default" and rows[0]["cpus"] == 16
    assert rows[1] == {"host": "nosuch:///", "error": rows[1]["error"]} and rows[1]["error"]["error"] == "NoDriver"


def test_cli_one_host_commands_refuse_several(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", "test:///default", "-c", "test:///default", "events"]) == 1
    assert "events takes one host" in capsys.readouterr().err


def test_list_is_one_bulk_call_where_the_state_group_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a remote link that is one round trip per host, not a lookup and an info per domain."""
    import sys

    remote = pytest.importorskip("virtkit_remote._conn")
    from virtkit._cli import listing

    ops: list[str] = []
    real = remote.Link.call

    def counting(self: object, op: str, args: list[object], flags: int) -> object:
        ops.append(op)
        return real(self, op, args, flags)

    monkeypatch.setattr(remote.Link, "call", counting)
    command = pathlib.Path(sys.executable).with_name("virtkit")
    with virtkit.open(f"test+ext:///default?command={command}") as conn, virtkit.open("test:///default") as local:
        assert listing(conn, True) == listing(local, True) == [(d.ref, d.info().state) for d in local.domains(all=True)]
        assert ops == ["connect_get_all_domain_stats"]
        assert [ref.name for ref, _state in listing(conn, False)] == ["test", "web", "paused-vm"]


def test_a_stuck_host_gives_its_slot_back_at_its_deadline() -> None:
    """parallel=1 and a function that ignores every timeout: the next host still gets its turn."""
    stuck = threading.Event()

    def fn(conn: virtkit.Connection) -> int:
        if not stuck.is_set():
            stuck.set()
            time.sleep(5)
        return conn.num_of_domains()

    t0 = time.monotonic()
    results = fleet.run(["test:///default", "test:///default"], fn, parallel=1, timeout=0.5)
    took = time.monotonic() - t0
    assert isinstance(results[0].error, virtkit.TimeoutError) and results[1].value == 3
    assert took <= 2 * 0.5 * 1.1 + 0.5  # one deadline, then the second host's quick turn
