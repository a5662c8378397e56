"""A real relay, then a real QEMU, frozen with SIGSTOP (issue 12): the kernel still accepts and
buffers, nobody answers. Every operation ends with virtkit.TimeoutError within the connection's
timeout + 10 % (+ a constant for a loaded machine); after SIGCONT the same connection works
again; a destroy of a stopped QEMU ends in time too (quit unanswered: SIGKILL at the deadline),
and nothing is left behind: no QEMU, no relay, no thread of the connection.

The guest is never waited for to boot: the processes are what matters here.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import virtkit
from virtkit import DomainState

TIMEOUT = 2.0
SLACK = 0.5  # a loaded 2-core machine


def ends_with_timeout_in_time(call: Callable[[], object]) -> None:
    t0 = time.monotonic()
    with pytest.raises(virtkit.TimeoutError):
        call()
    elapsed = time.monotonic() - t0
    assert elapsed <= TIMEOUT * 1.1 + SLACK, f"took {elapsed:.2f} s for a {TIMEOUT} s timeout"


def test_stopped_relay_then_stopped_qemu(glab: Any) -> None:
    threads_before = set(threading.enumerate())
    with glab.open() as conn:  # the default timeout: starting QEMU under load takes a while
        created = conn.create(glab.config("frozen"))
    relay_pid = int((glab.rundir(created.id) / "relay.pid").read_text())
    qemu_pid = glab.qemu_pid(created.id)
    with virtkit.open("qemu:///session", timeout=TIMEOUT) as conn:
        dom = conn.lookup_by_name("frozen")
        assert dom.info().state is DomainState.RUNNING  # through the relay: the link is open

        os.kill(relay_pid, signal.SIGSTOP)
        try:
            ends_with_timeout_in_time(dom.info)  # on the open link
            ends_with_timeout_in_time(dom.suspend)  # a new link: connected, never greeted
            ends_with_timeout_in_time(dom.state)
            ends_with_timeout_in_time(conn.list_domains)
        finally:
            os.kill(relay_pid, signal.SIGCONT)
        assert dom.info().state is DomainState.RUNNING  # the same connection, a new link
        assert glab.qmp(dom.id, "query-status")["status"] == "running"  # the suspend never happened

        os.kill(qemu_pid, signal.SIGSTOP)  # the relay waits for QEMU; we wait for the relay
        ends_with_timeout_in_time(dom.info)
        ends_with_timeout_in_time(dom.suspend)
        t0 = time.monotonic()
        dom.destroy()  # quit goes unanswered: SIGKILL (which a stopped process gets) at the deadline
        assert time.monotonic() - t0 <= TIMEOUT * 1.1 + SLACK
        assert not glab.pid_alive(qemu_pid)
        assert conn.list_domains() == []
    glab.wait_until(lambda: not glab.pid_alive(relay_pid), "the relay to exit with QEMU's monitor", timeout=10)
    glab.wait_until(
        lambda: not [t for t in threading.enumerate() if t not in threads_before and t.name.startswith("virtkit-qemu")],
        "the connections' threads to end",
        timeout=10,
    )
