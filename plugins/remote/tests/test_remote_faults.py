"""A far side that misbehaves: each fault is a typed error within the timeout, and no child is
left behind. peer.py plays the far side (see its docstring); the real ``virtkit serve`` is
killed and frozen too."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

import virtkit

TIMEOUT = 2.0
SLACK = TIMEOUT * 0.1 + 1.0  # the deadline check: within the timeout + 10 % + a constant


def _pid(conn: virtkit.Connection) -> int:
    (driver,) = [d for _name, d in conn._drivers]
    pid: int = driver.link.pid
    return pid


def _timed(fn: Callable[[], object], error: type[Exception]) -> tuple[Exception, float]:
    t0 = time.monotonic()
    with pytest.raises(error) as e:
        fn()
    return e.value, time.monotonic() - t0


@pytest.mark.parametrize(
    ("mode", "error", "words"),
    [
        ("hang", virtkit.TimeoutError, "no answer"),
        ("freeze", virtkit.TimeoutError, "no answer"),
        ("die", virtkit.ConnectionClosed, "exit status 3"),
        ("garbage", virtkit.ProtocolError, "not UTF-8 JSON"),
        ("oversize", virtkit.ProtocolError, "exceeds the limit"),
        ("bad-value", virtkit.ProtocolError, "bad list of integers"),
    ],
)
def test_a_call_meets_a_fault(
    peer: Callable[[str], str], h: type, mode: str, error: type[Exception], words: str
) -> None:
    conn = virtkit.open(peer(mode), timeout=TIMEOUT)
    pid = _pid(conn)
    try:
        err, took = _timed(conn.list_domains, error)
        assert words in str(err)
        assert took <= TIMEOUT + SLACK
    finally:
        conn.close()
    assert not h.alive(pid)


def test_a_late_reply_is_dropped_and_the_right_one_taken(peer: Callable[[str], str]) -> None:
    with virtkit.open(peer("late"), timeout=TIMEOUT) as conn:
        assert conn.list_domains() == [1, 2]
        assert conn.list_domains() == [1, 2]


@pytest.mark.parametrize(
    ("mode", "error", "words"),
    [
        ("no-hello", virtkit.TimeoutError, "connecting: no answer"),
        ("exit-now", virtkit.ConnectionClosed, "giving up at once"),
        ("banner", virtkit.ProtocolError, "does the far side print to stdout"),
    ],
)
def test_opening_meets_a_fault(peer: Callable[[str], str], mode: str, error: type[Exception], words: str) -> None:
    err, took = _timed(lambda: virtkit.open(peer(mode), timeout=TIMEOUT), error)
    assert words in str(err)
    assert took <= TIMEOUT + SLACK


def test_killing_the_child_mid_call_fails_the_call_at_once(peer: Callable[[str], str], h: type) -> None:
    conn = virtkit.open(peer("slow"), timeout=30)
    pid = _pid(conn)
    threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
    err, took = _timed(conn.list_domains, virtkit.ConnectionClosed)
    assert "signal 9" in str(err)
    assert took < 5  # not the 30 s deadline: the link saw the child die
    conn.close()
    assert not h.alive(pid)


def test_a_silent_far_side_is_found_dead_by_the_keepalive(peer: Callable[[str], str], h: type) -> None:
    conn = virtkit.open(peer("no-keepalive"), timeout=TIMEOUT)
    pid = _pid(conn)
    # idle: a keepalive goes out after TIMEOUT/3; unanswered for TIMEOUT, the link is dead
    assert h.wait_gone(pid, within=TIMEOUT / 3 + TIMEOUT + SLACK + 1)
    err, took = _timed(conn.list_domains, virtkit.TimeoutError)
    assert "keepalive" in str(err) and took < 0.5
    conn.close()


def test_the_real_serve_killed_then_frozen(h: type) -> None:
    conn = virtkit.open(h.ext_uri(), timeout=TIMEOUT)
    pid = _pid(conn)  # with +ext the child is `virtkit serve` itself
    assert conn.list_domains() == [1, 2, 3]
    os.kill(pid, signal.SIGKILL)
    _timed(conn.list_domains, virtkit.ConnectionClosed)
    conn.close()

    conn = virtkit.open(h.ext_uri(), timeout=TIMEOUT)
    pid = _pid(conn)
    os.kill(pid, signal.SIGSTOP)
    try:
        _err, took = _timed(conn.list_domains, virtkit.TimeoutError)
        assert took <= TIMEOUT + SLACK
        t0 = time.monotonic()
        conn.close()  # a stopped child still ends
        assert time.monotonic() - t0 <= TIMEOUT + SLACK + 1
        assert not h.alive(pid)
    finally:
        if h.alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_an_event_stream_raises_when_its_link_dies(h: type) -> None:
    conn = virtkit.open(h.ext_uri(), timeout=TIMEOUT)
    with conn.events() as stream:
        conn.lookup_by_name("web").suspend()
        assert stream.get(TIMEOUT) is not None  # the events before the end still arrive
        os.kill(_pid(conn), signal.SIGKILL)
        err, took = _timed(lambda: stream.get(None), virtkit.ConnectionClosed)
        assert "signal 9" in str(err) and took < TIMEOUT + SLACK
        with pytest.raises(virtkit.ConnectionClosed):  # and it stays ended
            stream.get(0)
    conn.close()


def test_cli_events_end_with_the_link_not_at_their_timeout(peer: Callable[[str], str], h: type) -> None:
    """A far side that stops answering keepalives: `events --timeout inf` exits 1, not never."""
    import subprocess

    t0 = time.monotonic()
    out = subprocess.run(
        [h.virtkit, "--timeout", str(TIMEOUT), "-c", peer("quiet-events"), "events", "--timeout", "inf"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "keepalive" in out.stderr, out.stderr
    assert time.monotonic() - t0 < TIMEOUT / 3 + TIMEOUT + SLACK + 2  # + the CLI's start
