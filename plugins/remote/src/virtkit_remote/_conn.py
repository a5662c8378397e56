"""One link: the child process (ssh or an ``+ext`` command), frames both ways, calls by id.

Callers send their own frames (under a lock, with the call's deadline). Reading is a role held
by one thread at a time: a caller waiting for its reply takes it when it is free and reads until
its reply came (delivering whatever else arrives), then hands it to the next caller waiting for
a reply, so the reply reaches the thread that waits for it with no hand-over between threads
(libvirt's client does the same). When no caller reads, the link's own thread does: it notices
a far side that ends, delivers events, and, when idle, sends a keepalive; a far side that stays
silent for the timeout after one is dead: every call in flight fails at once and the child is
ended. A caller that finds that thread polling wakes it through a pipe to take the role over.
Every call has one total deadline.

The reader thread holds only the link's state, never the :class:`Link` the driver holds: when
the driver is dropped unclosed, ``weakref.finalize`` ends the child (also at interpreter exit).
The child itself (starting it, its stderr, why it ended, ending it) is ``_child.py``'s.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import queue
import select
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from virtkit import ConnectionClosed, DomainEvent, DriverError, ProtocolError, VirtError
from virtkit import TimeoutError as VirtTimeout
from virtkit.rpc import PROTOCOL, FrameReader, decode_error, decode_event, encode_frame

from ._child import Child, ms
from ._transport import Endpoint

__all__ = ["Link"]

log = logging.getLogger("virtkit.remote")

_GRACE = 2.0  # seconds a closed child gets to end on its own before it is signalled
#: How often the link's thread looks whether the read role is free while callers hold it
#: briefly (it is not woken for it: calls back to back would pay a wake-up each), and how long
#: the role must have been free before it takes it. A caller holding the role longer (a slow
#: call, the hello) wakes it when it lets the role go, so it does not look in the meantime.
_PARK = 0.02


class _Pending:
    """One call's reply slot: a bare lock (a threading.Event is a Condition and a lock: dearer on
    every call), released once, under the link's lock: when the call is complete (``done``) or
    when its caller is handed the read role (``lead``), whichever comes first."""

    __slots__ = ("_lock", "done", "error", "lead", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Any = None
        self.error: VirtError | None = None
        self.done = False
        self.lead = False

    def set(self) -> None:
        self._lock.release()

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=max(0.0, timeout))


class _State:
    """Everything the reader thread and callers share; the Link is a thin handle on it."""

    def __init__(self, child: Child, timeout: float) -> None:
        self.child = child
        self.ep: Endpoint = child.ep
        self.timeout = timeout
        self.interval = min(max(timeout / 3, 0.2), 10.0)
        self.lock = threading.Lock()
        self.wlock = threading.Lock()
        self.pending: dict[int, _Pending] = {}
        self.subs: dict[int, Callable[[DomainEvent], None]] = {}
        self.ids = itertools.count(1)
        self.dead: VirtError | None = None
        self.closed = False
        self.greeted = False
        self.events: queue.Queue[tuple[Callable[[Any], None], DomainEvent | VirtError] | None] | None = None
        self.wfd, self.rfd, self.efd = child.wfd, child.rfd, child.efd
        os.set_blocking(self.wfd, False)
        self.wpoll = select.poll()  # used under wlock only
        self.wpoll.register(self.wfd, select.POLLOUT)
        # The read role (under self.lock): who holds it, who waits for it.
        self.reading = False
        self.want: collections.deque[_Pending] = collections.deque()
        self.polling = False  # the link's thread holds the role: a caller kicks it out
        self.freed = 0.0  # when a caller last let the role go free
        self.held = 0.0  # when its holder took the role
        self.roomy = threading.Condition(self.lock)  # the link's thread waits here for the role
        self.kicked = False
        self.kick_r, self.kick_w = os.pipe()
        os.set_blocking(self.kick_w, False)
        # What only the holder of the read role touches.
        self.frames = FrameReader()
        self.rpoll = select.poll()  # poll, not select: a process with many links has fds above 1024
        for fd in (self.rfd, self.efd, self.kick_r):
            self.rpoll.register(fd, select.POLLIN)
        self.last_rx = time.monotonic()
        self.ping_sent: float | None = None
        self.reader = threading.Thread(target=self.read_loop, name=f"virtkit-remote {self.ep.where}", daemon=True)

    # -- failure -----------------------------------------------------------------------------

    def fail(self, error: VirtError) -> None:
        """The link is dead: every waiting call gets ``error``'s class and message."""
        with self.lock:
            if self.dead is None:
                self.dead = error
            waiting = list(self.pending.values())
            self.pending.clear()  # completed here, once: a late reply finds nothing to complete
            self.roomy.notify_all()  # the link's thread ends now, not at its next look
            for p in waiting:
                p.error = _copy(self.dead)
                self._complete(p)
        for callback in list(self.subs.values()):  # an event stream must not wait on a dead link
            hook = getattr(callback, "virtkit_error", None)
            if callable(hook):
                self.post(hook, _copy(self.dead))
        self.child.kill()

    # -- reading: the role, and what its holder does ---------------------------------------------

    def _complete(self, p: _Pending) -> None:
        """Under self.lock: the call has its value or error."""
        if not p.done:
            p.done = True
            if not p.lead:
                p.set()

    def release_role(self) -> None:
        """The holder stops reading: the first caller still waiting for a reply takes over."""
        with self.lock:
            now = time.monotonic()
            if now - self.held > _PARK:  # the link's thread may be waiting for this long hold
                self.roomy.notify()
            while self.want:
                q = self.want.popleft()
                if not q.done and not q.lead:
                    q.lead = True
                    self.held = now
                    q.set()
                    return
            self.reading = False
            self.freed = now

    def pump(self, ready: list[tuple[int, int]]) -> None:
        """Read what poll found ready and deliver it (holder of the read role only)."""
        for fd, _ev in ready:
            if fd == self.kick_r:
                os.read(self.kick_r, 64)
            elif fd == self.efd:
                chunk = os.read(self.efd, 4096)
                if chunk:
                    self.child.keep_stderr(chunk)
                else:
                    self.rpoll.unregister(self.efd)
        for fd, _ev in ready:
            if fd == self.rfd:
                data = os.read(self.rfd, 1 << 16)
                if not data:
                    self.fail(ConnectionClosed(f"{self.ep.where}: closed") if self.closed else self.child.ended())
                    return
                self.last_rx, self.ping_sent = time.monotonic(), None
                for msg in self.frames.feed(data):
                    self.deliver(msg)

    def read_some(self, timeout: float) -> bool:
        """One poll and what it found, as holder of the read role; a broken stream fails the
        link. True when the link is dead."""
        try:
            self.pump(self.rpoll.poll(ms(timeout)))
        except VirtError as exc:  # garbage, an oversized frame, a write that failed
            self.fail(exc)
        except OSError as exc:
            self.fail(ConnectionClosed(f"{self.ep.where}: {exc.strerror or exc}"))
        except Exception as exc:  # noqa: BLE001 - a bug here ends the link typed, not calls at their deadline
            self.fail(DriverError(f"{self.ep.where}: the link's reader failed: {type(exc).__name__}: {exc}"))
        return self.dead is not None

    def await_reply(self, p: _Pending, deadline: float) -> bool:
        """Until ``p`` is complete (True) or the deadline passed (False), reading when it is our turn."""
        with self.lock:
            if p.done:
                return True
            mine = not self.reading
            if mine:
                self.reading = True
                self.held = time.monotonic()
            else:
                self.want.append(p)
                kick = self.polling and not self.kicked
                self.kicked = self.kicked or kick
        if not mine:
            if kick:
                try:
                    os.write(self.kick_w, b"k")
                except OSError:  # full: it is woken anyway; closed: the link is closing
                    pass
            p.wait(deadline - time.monotonic())
            with self.lock:
                if not p.lead:  # complete, or out of time: no longer a candidate for the role
                    if p in self.want:
                        self.want.remove(p)
                    return p.done
        try:
            while (left := deadline - time.monotonic()) > 0 and not self.read_for(p, left):
                pass
            return p.done
        finally:
            self.release_role()

    def read_for(self, p: _Pending, left: float) -> bool:
        """Whether ``p`` is complete, else one read of at most ``left`` seconds."""
        if not p.done:
            self.read_some(left)
        return p.done

    def read_loop(self) -> None:
        """The link's thread: reads whenever no caller does."""
        while self.dead is None:
            with self.lock:
                now = time.monotonic()
                # Not in the gap between two calls of a caller: a caller would have to kick.
                idle = not self.reading and not self.want and now - self.freed >= _PARK
                if idle:
                    self.reading = self.polling = True
                elif self.reading and now - self.held > _PARK:
                    self.roomy.wait(self.interval / 2)  # woken when this long hold ends
                else:
                    self.roomy.wait(_PARK)
            if not idle:
                continue
            try:
                while not self.keep_reading():
                    with self.lock:
                        if self.want:  # a caller waits for a reply: it reads from here on
                            break
            finally:
                with self.lock:
                    self.polling = self.kicked = False
                self.release_role()

    def keep_reading(self) -> bool:
        """One poll of the link's thread, and the keepalive; True when the link is dead."""
        if self.read_some(self.interval / 2):
            return True
        now = time.monotonic()
        if self.ping_sent is not None and now - self.ping_sent > self.timeout:
            self.fail(VirtTimeout(f"{self.ep.where}: no answer to a keepalive for {self.timeout:g}s"))
            return True
        if self.ping_sent is None and self.greeted and now - self.last_rx > self.interval:
            self.ping_sent = now
            try:
                self.send({"k": "keepalive", "ack": False}, now + self.timeout)
            except VirtError as exc:
                self.fail(exc)
                return True
        return False

    def _take(self, call_id: object) -> _Pending | None:
        if not isinstance(call_id, int):
            return None
        with self.lock:
            return self.pending.pop(call_id, None)

    def deliver(self, msg: dict[str, Any]) -> None:
        kind = msg["k"]
        if kind == "reply" or kind == "hello":
            call_id = 0 if kind == "hello" else msg.get("id")
            p = self._take(call_id)
            self.greeted = True  # keepalives only after the hello: opening may take its time
            if p is not None:  # else: the reply to a call that timed out; dropped
                p.value = msg if kind == "hello" else msg.get("value")
                with self.lock:
                    self._complete(p)
        elif kind == "error":
            err = decode_error(msg.get("error"))
            call_id = msg.get("id")
            p = self._take(call_id)
            if p is not None:
                p.error = err
                with self.lock:
                    self._complete(p)
            elif call_id == 0:  # the far side gave up on the link itself
                self.fail(err)
        elif kind == "event":
            callback = self.subs.get(msg.get("sub"))  # type: ignore[arg-type]
            if callback is not None:
                self.post(callback, decode_event(msg.get("event")))
        elif kind == "keepalive":
            if not msg.get("ack"):
                self.send({"k": "keepalive", "ack": True}, time.monotonic() + self.timeout)
        else:
            raise ProtocolError(f"{self.ep.where}: unknown message kind {kind!r:.40}")

    # -- events: delivered on a thread of their own, so a callback may call back ------------------

    def post(self, callback: Callable[[Any], None], event: DomainEvent | VirtError) -> None:
        with self.lock:  # the reader and a failing caller may both post first
            if self.events is None:
                self.events = queue.Queue()
                threading.Thread(
                    target=self.event_loop, args=(self.events,), name="virtkit-remote-events", daemon=True
                ).start()
            events = self.events
        events.put((callback, event))

    @staticmethod
    def event_loop(q: queue.Queue[tuple[Callable[[Any], None], DomainEvent | VirtError] | None]) -> None:
        while (item := q.get()) is not None:
            try:
                item[0](item[1])
            except Exception as exc:  # noqa: BLE001 - a callback's bug must not stop the others
                log.warning("event callback %r raised %s: %s", item[0], type(exc).__name__, exc)

    # -- sending -----------------------------------------------------------------------------

    def send(self, msg: dict[str, Any], deadline: float) -> None:
        frame = memoryview(encode_frame(msg))
        with self.wlock:
            while frame:
                try:  # the pipe has room nearly always: poll only when it has none
                    frame = frame[os.write(self.wfd, frame) :]
                    continue
                except BlockingIOError:
                    pass
                except OSError as exc:  # EPIPE: the child is gone; the reader says why
                    raise ConnectionClosed(f"{self.ep.where}: {exc.strerror or exc}") from None
                left = deadline - time.monotonic()
                if left <= 0:  # half a frame may be in the pipe: the stream is beyond repair
                    err = VirtTimeout(f"{self.ep.where}: could not send within {self.timeout:g}s")
                    self.fail(err)
                    raise _copy(err)
                self.wpoll.poll(ms(left))

    def request(self, call_id: int, msg: dict[str, Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        p = _Pending()
        with self.lock:
            if self.dead is not None:
                raise _copy(self.dead)
            self.pending[call_id] = p
        try:
            try:
                self.send(msg, deadline)
            except ConnectionClosed:
                if not self.await_reply(p, min(deadline, time.monotonic() + 1.0)):  # the reader's diagnosis
                    raise
            else:
                if not self.await_reply(p, deadline):
                    raise VirtTimeout(f"{what}: no answer from {self.ep.where} within {timeout:g}s") from None
        finally:
            with self.lock:
                self.pending.pop(call_id, None)
        if p.error is not None:
            raise p.error
        return p.value

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.child.hang_up(min(_GRACE, self.timeout))
        if self.dead is None:
            self.fail(ConnectionClosed(f"{self.ep.where}: closed"))
        self.child.kill()
        if self.reader.is_alive() and self.reader is not threading.current_thread():
            self.reader.join(2.0)
        if not self.reader.is_alive():  # else it may still poll them: left to the process's end
            for fd in (self.kick_r, self.kick_w):
                os.close(fd)
        if self.events is not None:
            self.events.put(None)
        self.child.close_pipes()


def _copy(err: VirtError) -> VirtError:
    """A fresh exception of the same class: one object is never raised in two threads."""
    return type(err)(err.message, operation=err.operation, driver=err.driver, uri=err.uri)


class Link:
    """A live link to ``virtkit serve --stdio`` behind an ssh or ``+ext`` child."""

    __slots__ = ("__weakref__", "_finalizer", "_state", "hello")

    def __init__(self, ep: Endpoint, *, timeout: float, readonly: bool) -> None:
        state = self._state = _State(Child(ep), timeout)
        self._finalizer = weakref.finalize(self, state.close)
        state.reader.start()
        hello = {"k": "hello", "proto": PROTOCOL, "readonly": readonly, "timeout": timeout}
        hello["keepalive"] = state.interval
        try:
            self.hello: dict[str, Any] = state.request(0, hello, timeout, "connecting")
        except BaseException:
            self.close()
            raise

    def call(self, op: str, args: list[Any], flags: int) -> Any:
        s = self._state
        call_id = next(s.ids)
        return s.request(call_id, {"k": "call", "id": call_id, "op": op, "args": args, "flags": flags}, s.timeout, op)

    def subscribe(self, callback: Callable[[DomainEvent], None], flags: int) -> Callable[[], None]:
        s = self._state
        sub = next(s.ids)
        s.subs[sub] = callback  # before the call: an event may follow the reply at once
        try:
            s.request(sub, {"k": "call", "id": sub, "op": "connect_domain_event_register", "args": [], "flags": flags},
                      s.timeout, "connect_domain_event_register")  # fmt: skip
        except BaseException:
            s.subs.pop(sub, None)
            raise

        def cancel() -> None:
            if s.subs.pop(sub, None) is not None and s.dead is None:
                try:
                    s.send({"k": "cancel", "sub": sub}, time.monotonic() + s.timeout)
                except VirtError as exc:
                    log.info("%s: cancelling events: %s", s.ep.where, exc)

        return cancel

    @property
    def pid(self) -> int:
        """The local child's process id (ssh, or the ``+ext`` command)."""
        return self._state.child.pid

    @property
    def alive(self) -> bool:
        return self._state.dead is None

    def close(self) -> None:
        self._finalizer()
