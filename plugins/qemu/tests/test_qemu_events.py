"""Events through the domain's relay: any number of listeners, in any number of processes.

These QEMUs are not waited for to boot: suspend and resume work on any running QEMU.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import virtkit

# A listener process: N connections, each registering a callback; prints "ready" once all are
# registered, then the event kinds each connection saw of the domain, once each saw it stop.
_LISTENER = r"""
import json, sys, threading, virtkit
dom_id, n = int(sys.argv[1]), int(sys.argv[2])
conns = [virtkit.open("qemu:///session") for _ in range(n)]
seen = [[] for _ in range(n)]
done = threading.Event()
def make(i):
    def cb(ev):
        if ev.domain.id == dom_id:
            seen[i].append(ev.type.value)
            if all("stopped" in s for s in seen):
                done.set()
    return cb
for i, c in enumerate(conns):
    c.domain_event_register(make(i))
print("ready", flush=True)
done.wait(120)
print(json.dumps(seen), flush=True)
for c in conns:
    c.close()
"""


class Seen:
    def __init__(self, dom_id: int | None) -> None:
        self.dom_id = dom_id
        self.kinds: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, ev: virtkit.DomainEvent) -> None:
        if ev.domain.id == self.dom_id:
            with self.lock:
                self.kinds.append(ev.type.value)

    def get(self) -> list[str]:
        with self.lock:
            return list(self.kinds)


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    assert line.strip() == "ready", f"listener process not ready: {line!r}"


def test_six_listeners_in_three_processes_all_get_suspend_and_resume(glab: Any) -> None:
    with glab.open() as owner:
        dom = owner.create(glab.config("ev6"))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _LISTENER, str(dom.id), "2"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        local = [glab.open(), glab.open()]
        try:
            seen = [Seen(dom.id) for _ in local]
            for conn, s in zip(local, seen, strict=True):
                conn.domain_event_register(s)
            for p in procs:
                _wait_ready(p)
            dom.suspend()
            dom.resume()
            # One relay serves them all: one process for the domain besides QEMU.
            relay = int((glab.rundir(dom.id) / "relay.pid").read_text())
            assert glab.pid_alive(relay)
            dom.destroy()
            want = ["suspended", "resumed", "shutdown", "stopped"]  # destroy: QEMU's SHUTDOWN, then gone
            for s in seen:
                glab.wait_until(lambda s=s: s.get() == want, "the events in this process")
            for p in procs:
                out, err = p.communicate(timeout=120)
                assert p.returncode == 0, err
                assert json.loads(out.splitlines()[-1]) == [want, want], (out, err)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
            for conn in local:
                conn.close()
        glab.wait_until(lambda: not glab.pid_alive(relay), "the relay to end with its QEMU", timeout=30)


def test_every_listener_hears_of_a_crash(glab: Any) -> None:
    with glab.open() as a, glab.open() as b:
        dom = a.create(glab.config("boom"))
        seen = [Seen(dom.id), Seen(dom.id)]
        a.domain_event_register(seen[0])
        b.domain_event_register(seen[1])
        pid = glab.qemu_pid(dom.id)
        os.kill(pid, signal.SIGKILL)
        for s in seen:  # each exactly once, whichever connection reaps the run directory
            glab.wait_until(lambda s=s: s.get() == ["crashed", "stopped"], "crashed, then stopped")
        glab.wait_until(lambda: a.list_domains() == [] and b.list_domains() == [], "the domain gone")
        assert [s.get() for s in seen] == [["crashed", "stopped"]] * 2  # reaping added no second report


def test_a_killed_relay_is_replaced_and_events_flow_again(glab: Any) -> None:
    with glab.open() as conn:
        dom = conn.create(glab.config("relay"))
        seen = Seen(dom.id)
        conn.domain_event_register(seen)
        rundir = glab.rundir(dom.id)
        first = int((rundir / "relay.pid").read_text())
        os.kill(first, signal.SIGKILL)

        def replaced() -> bool:
            try:
                pid = int((rundir / "relay.pid").read_text())
            except (OSError, ValueError):
                return False
            return pid != first and glab.pid_alive(pid)

        glab.wait_until(replaced, "a new relay (the listening connection starts one)")
        # Commands work throughout (directly on qmp.sock while there is no relay), and the new
        # relay delivers events: once the connection listens on it again, suspend is seen.
        deadline = time.monotonic() + 60
        while "suspended" not in seen.get() and time.monotonic() < deadline:
            dom.suspend()
            glab.wait_until(lambda: dom.info().state is virtkit.DomainState.PAUSED, "paused")
            time.sleep(0.5)
            if "suspended" not in seen.get():
                dom.resume()
        assert "suspended" in seen.get()
        dom.destroy()


def test_a_listener_hears_of_domains_that_others_start(glab: Any) -> None:
    with glab.open() as listener, glab.open() as other:
        seen_all: list[virtkit.DomainEvent] = []
        listener.domain_event_register(seen_all.append)
        dom = other.create(glab.config("late"))  # `other` has no listener of its own

        def kinds() -> list[str]:
            return [e.type.value for e in list(seen_all) if e.domain.uuid == dom.uuid]

        glab.wait_until(lambda: kinds() == ["started"], "the listener to find the new domain")
        dom.suspend()  # reported started only once subscribed: this change is seen
        glab.wait_until(lambda: kinds() == ["started", "suspended"], "its suspend")
        dom.destroy()
        glab.wait_until(lambda: kinds() == ["started", "suspended", "shutdown", "stopped"], "its end")
