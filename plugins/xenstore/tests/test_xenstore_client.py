"""The client against the in-memory xenstored of conftest.py: every operation's semantics."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import virtkit
from virtkit_xenstore import (
    Client,
    LimitExceeded,
    NotSupportedByDaemon,
    PathExists,
    PathNotFound,
    Perm,
    ReplyTooBig,
    TransactionConflict,
    WatchEvent,
)


@pytest.fixture
def xs(fake_xs: Any) -> Any:
    with Client(fake_xs.path, timeout=10) as c:
        yield c


def test_write_read_binary_safe(xs: Client) -> None:
    value = b"\x00a\xffb\x00\x00"  # trailing NULs must survive (pyxs strips them)
    xs.write("/tool/bin", value)
    assert xs.read("/tool/bin") == value
    xs.write("/tool/text", "héllo")
    assert xs.read_text("/tool/text") == "héllo"
    xs.write("/tool/empty", b"")
    assert xs.read("/tool/empty") == b""


def test_missing_node_is_path_not_found(xs: Client) -> None:
    with pytest.raises(PathNotFound) as info:
        xs.read("/nope")
    assert info.value.errno_name == "ENOENT"
    assert info.value.path == "/nope"
    assert not xs.exists("/nope")


def test_mkdir_directory_rm(xs: Client) -> None:
    xs.mkdir("/d")
    for name in ("b", "a", "c"):
        xs.write(f"/d/{name}", name)
    assert sorted(xs.directory("/d")) == ["a", "b", "c"]
    xs.rm("/d/b")
    assert sorted(xs.directory("/d")) == ["a", "c"]
    xs.rm("/d")
    assert not xs.exists("/d/a")
    assert xs.directory("/") == ["tool"] or "d" not in xs.directory("/")


def test_big_directory_uses_directory_part(xs: Client, fake_xs: Any) -> None:
    names = [f"child-with-a-long-name-{i:04d}" for i in range(300)]  # ~9 KB of names
    for n in names:
        fake_xs.put(f"/big/{n}", "x")
    assert xs.directory("/big") == sorted(names)


def test_big_directory_without_directory_part_says_so(fake_xs_factory: Any) -> None:
    d = fake_xs_factory("ox.sock", directory_part=False)
    for i in range(300):
        d.put(f"/big/child-with-a-long-name-{i:04d}", "x")
    with Client(d.path, timeout=10) as c, pytest.raises(ReplyTooBig, match="DIRECTORY_PART"):
        c.directory("/big")


def test_directory_many_lists_each_node_and_fetches_big_ones_in_parts(xs: Client, fake_xs: Any) -> None:
    names = [f"child-with-a-long-name-{i:04d}" for i in range(300)]  # E2BIG for one DIRECTORY
    for n in names:
        fake_xs.put(f"/big/{n}", "x")
    xs.write("/small/a", "1")
    got = xs.directory_many(["/small", "/nope", "/big"])
    assert got[0] == ["a"] and got[1] is None and sorted(got[2] or ()) == sorted(names)
    assert xs.directory_many([]) == []


def test_perms_round_trip(xs: Client) -> None:
    xs.write("/p", "v")
    perms = [Perm(2, "r"), Perm(4, "n"), Perm(7, "b")]
    xs.set_perms("/p", perms)
    assert xs.get_perms("/p") == perms
    assert str(perms[0]) == "r2"


def test_domain_path_and_introduced(xs: Client) -> None:
    assert xs.get_domain_path(7) == "/local/domain/7"
    assert xs.is_domain_introduced(0) is True
    assert xs.is_domain_introduced(5) is False
    with pytest.raises(virtkit.InvalidArgument):
        xs.get_domain_path(-1)


def test_control_payload(xs: Client) -> None:
    assert xs.control("log", "on") == b"echo:log\0on\0"


def test_limits_are_enforced_before_sending(xs: Client, fake_xs: Any) -> None:
    before = fake_xs.requests
    with pytest.raises(LimitExceeded, match="4096"):
        xs.write("/tool/big", b"x" * 4096)
    with pytest.raises(LimitExceeded, match="3072"):
        xs.read("/" + "a" * 3072)
    with pytest.raises(LimitExceeded, match="2048"):
        xs.read("a" * 2049)
    for bad in ("", "/a//b", "/a/", "/a b", "/ü", "@introduceDomain"):
        with pytest.raises(LimitExceeded):
            xs.read(bad)
    assert fake_xs.requests == before  # nothing went out
    assert isinstance(LimitExceeded("x"), virtkit.InvalidArgument)
    xs.write("/tool/max", b"x" * (4096 - len("/tool/max") - 1))  # exactly at the limit: fine
    assert len(xs.read("/tool/max")) == 4096 - 10


def test_transaction_commit_and_abort(xs: Client) -> None:
    with xs.transaction() as tx:
        tx.write("/t/a", "1")
        assert tx.read("/t/a") == b"1"
        assert not xs.exists("/t/a")  # not visible outside before commit
    assert xs.read("/t/a") == b"1"
    tx = xs.transaction()
    tx.write("/t/b", "2")
    tx.abort()
    assert not xs.exists("/t/b")
    with pytest.raises(virtkit.InvalidArgument, match="ended"):
        tx.read("/t/a")


def test_transaction_conflict_and_transact_retry(xs: Client, fake_xs: Any) -> None:
    xs.write("/counter", "0")
    tx = xs.transaction()
    tx.write("/counter", "1")
    fake_xs.put("/other", "meddling")
    with pytest.raises(TransactionConflict):
        tx.commit()
    attempts = []

    def bump(t: Any) -> int:
        attempts.append(1)
        n = int(t.read("/counter")) + 1
        if len(attempts) == 1:
            fake_xs.put("/other", "again")  # force exactly one conflict
        t.write("/counter", str(n))
        return n

    assert xs.transact(bump) == 1
    assert len(attempts) == 2
    assert xs.read("/counter") == b"1"


def test_exception_in_transaction_aborts(xs: Client) -> None:
    with pytest.raises(RuntimeError), xs.transaction() as tx:
        tx.write("/t/x", "1")
        raise RuntimeError("boom")
    assert not xs.exists("/t/x")


def test_watch_initial_event_then_changes_in_order(xs: Client, fake_xs: Any) -> None:
    with xs.watch("/w", token="tok") as w:
        assert w.get(5) == WatchEvent("/w", "tok")  # fired once up front
        for i in range(5):
            xs.write(f"/w/{i}", str(i))
        got = [w.get(5) for _ in range(5)]
        assert [e.path if e else None for e in got] == [f"/w/{i}" for i in range(5)]
    assert w.closed
    xs.write("/w/after", "x")
    assert w.get(0.2) is None


def test_watch_events_arrive_without_calls(xs: Client, fake_xs: Any) -> None:
    w = xs.watch("@releaseDomain", "/x")
    assert {w.get(5), w.get(5)} == {WatchEvent("@releaseDomain", w.token.decode()), WatchEvent("/x", w.token.decode())}
    fake_xs.put("/x/y", "1")  # no call is running: the pump thread reads it
    ev = w.get(5)
    assert ev is not None and ev.path == "/x/y"
    w.close()


def test_duplicate_watch_token_refused(xs: Client) -> None:
    w = xs.watch("/a", token="same")
    with pytest.raises(virtkit.InvalidArgument):
        xs.watch("/b", token="same")
    w.close()


def test_daemon_side_duplicate_is_path_exists(xs: Client) -> None:
    w = xs.watch("/a", token="t1")
    with pytest.raises(PathExists):
        xs._request(  # the same (path, token) again, bypassing the client's own check
            __import__("virtkit_xenstore").Op.WATCH, b"/a\0t1\0", "/a"
        )
    w.close()


def test_unwatch_unknown_is_not_found(xs: Client) -> None:
    with pytest.raises(PathNotFound):
        xs.unwatch("/never", "watched")


def test_reset_watches_ends_watch_objects(xs: Client, fake_xs: Any) -> None:
    w = xs.watch("/r")
    xs.reset_watches()
    assert w.closed
    assert fake_xs.watches == []


def test_unknown_daemon_op_is_not_supported(xs: Client) -> None:
    with pytest.raises(NotSupportedByDaemon) as info:
        xs._request(__import__("virtkit_xenstore").Op.SET_TARGET, b"1\x002\0", None)
    assert isinstance(info.value, virtkit.Unsupported)


def test_threads_share_one_connection(xs: Client, fake_xs: Any) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                key = f"/mt/{n}/{i % 7}"
                xs.write(key, f"{n}:{i}")
                assert xs.read(key) == f"{n}:{i}".encode()
                if i % 50 == 0:
                    assert set(xs.directory(f"/mt/{n}")) <= {str(k) for k in range(7)}
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(fake_xs.conns) == 1


def test_reconnects_and_rewatches_after_daemon_restart(xs: Client, fake_xs: Any) -> None:
    w = xs.watch("/rw", token="rw")
    assert w.get(5) == WatchEvent("/rw", "rw")
    fake_xs.kick_all()
    # the pump notices EOF, reconnects and re-registers: xenstored fires the watch up front again
    assert w.get(10) == WatchEvent("/rw", "rw")
    xs.write("/rw/x", "1")
    assert w.get(5) == WatchEvent("/rw/x", "rw")
    w.close()


def test_closed_client_refuses(fake_xs: Any) -> None:
    c = Client(fake_xs.path, timeout=5)
    c.write("/a", "1")
    c.close()
    with pytest.raises(virtkit.ConnectionClosed):
        c.read("/a")


def test_no_daemon_is_connection_closed(tmp_path: Any) -> None:
    with pytest.raises(virtkit.ConnectionClosed, match="cannot reach"):
        Client(str(tmp_path / "missing.sock"), timeout=2).read("/")


def test_default_paths_follow_libxenstore(monkeypatch: pytest.MonkeyPatch) -> None:
    from virtkit_xenstore import default_paths

    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
    assert default_paths() == [
        "/var/run/xenstored/socket",
        "/run/xenstored/socket",
        "/dev/xen/xenbus",
        "/proc/xen/xenbus",
    ]
    monkeypatch.setenv("XENSTORED_RUNDIR", "/tmp/rd")
    assert default_paths()[0] == "/tmp/rd/socket"
    monkeypatch.setenv("XENSTORED_PATH", "/x/sock")
    assert default_paths() == ["/x/sock"]


def test_environment_picks_the_socket(fake_xs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENSTORED_PATH", fake_xs.path)
    with Client(timeout=5) as c:
        c.write("/env", "1")
        assert c.channel_path == fake_xs.path


def test_reconnect_stays_on_the_channel_that_worked(fake_xs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENSTORED_PATH", fake_xs.path)
    c = Client(timeout=5)
    try:
        c.write("/a", "1")
        monkeypatch.setenv("XENSTORED_PATH", "/nonexistent/elsewhere")
        fake_xs.kick_all()
        with pytest.raises(virtkit.ConnectionClosed):
            c.read("/a")  # notices the EOF
        assert c.read("/a") == b"1"  # reconnected to the same socket, not to the new default
    finally:
        c.close()


def test_watch_queue_is_bounded(xs: Client, fake_xs: Any) -> None:
    w = xs.watch("/flood", maxsize=3)
    assert w.get(5) is not None
    for i in range(6):
        xs.write(f"/flood/{i}", "x")
    xs.read("/flood/5")  # by now every event has been read off the wire
    deadline = __import__("time").monotonic() + 5
    while w.dropped < 3 and __import__("time").monotonic() < deadline:
        xs.read("/flood/5")
    assert w.dropped == 3
    assert [e.path for e in w.drain()] == ["/flood/3", "/flood/4", "/flood/5"]
    w.close()


def test_watch_add_and_remove_paths_under_one_token(xs: Client, fake_xs: Any) -> None:
    with xs.watch("/a", token="grow") as w:
        assert w.get(5) == WatchEvent("/a", "grow")
        w.add("/b", "/c", "/b")  # a path named twice is watched once
        assert sorted(e.path for e in (w.get(5), w.get(5)) if e) == ["/b", "/c"]  # fired up front
        assert w.paths == ("/a", "/b", "/c")
        xs.write("/c/x", "1")
        assert w.get(5) == WatchEvent("/c/x", "grow")
        w.remove("/b", "/never")  # not watched: ignored
        assert w.paths == ("/a", "/c")
        assert sorted(p for _s, p, t in fake_xs.watches if t == b"grow") == ["/a", "/c"]
        xs.write("/b/y", "1")
        xs.write("/a/z", "1")
        assert w.get(5) == WatchEvent("/a/z", "grow")  # nothing for /b came before it
        with pytest.raises(virtkit.InvalidArgument):
            w.add()
    with pytest.raises(virtkit.ConnectionClosed):
        w.add("/d")


def test_added_paths_are_rewatched_after_a_reconnect(xs: Client, fake_xs: Any) -> None:
    w = xs.watch("/r1", token="rr")
    w.add("/r2")
    assert {w.get(5), w.get(5)} == {WatchEvent("/r1", "rr"), WatchEvent("/r2", "rr")}
    fake_xs.kick_all()
    got = {w.get(10), w.get(10)}
    assert got == {WatchEvent("/r1", "rr"), WatchEvent("/r2", "rr")}
    xs.write("/r2/x", "1")
    assert w.get(5) == WatchEvent("/r2/x", "rr")
    w.close()


def test_read_later_overlaps_a_round_trip(xs: Client, fake_xs: Any) -> None:
    xs.write("/later", "v")
    first, missing = xs.read_later("/later"), xs.read_later("/nope")
    xs.write("/other", "x")  # other calls meanwhile
    assert missing() is None
    assert first() == b"v"
    with pytest.raises(virtkit.InvalidArgument):
        xs.read_later("no/../good")


def test_read_later_sees_events_fired_before_it_was_answered(xs: Client, fake_xs: Any) -> None:
    with Client(fake_xs.path, timeout=10) as writer, xs.watch("/ev", token="ev") as w:
        assert w.get(5) is not None
        writer.write("/ev/x", "1")  # another connection: its reply comes before our event
        xs.read_later("/ev/x")()
        assert [e.path for e in w.drain()] == ["/ev/x"]


def test_without_a_pump_events_arrive_with_the_next_reply(fake_xs: Any) -> None:
    with Client(fake_xs.path, timeout=10, pump=False) as c, Client(fake_xs.path, timeout=10) as writer:
        w = c.watch("/np", token="np")
        assert not any(t.name == "xenstore-watch-pump" and t.is_alive() for t in threading.enumerate())
        writer.write("/np/a", "1")
        writer.write("/np/b", "1")
        __import__("time").sleep(0.3)
        early = [e.path for e in w.drain()]
        assert early in ([], ["/np"])  # at most what came with the WATCH reply: nothing reads
        c.read("/np/a")
        assert early + [e.path for e in w.drain()] == ["/np", "/np/a", "/np/b"]


def test_a_path_the_daemon_refuses_is_not_kept(xs: Client, fake_xs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    w = xs.watch("/k1", token="k")
    real = Client._request_many

    def refuse_k3(self: Client, requests: list[tuple[int, bytes, str | None]]) -> list[Any]:
        out = real(self, [r for r in requests if r[2] != "/k3"])
        return [LimitExceeded("quota") if r[2] == "/k3" else out.pop(0) for r in requests]

    monkeypatch.setattr(Client, "_request_many", refuse_k3)
    with pytest.raises(LimitExceeded):
        w.add("/k2", "/k3")
    assert w.paths == ("/k1", "/k2")
    w.close()
