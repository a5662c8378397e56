"""One connection to xenstored: pipelined requests matched by req_id, shared by many threads.

No dedicated reader thread on the request path: a caller waiting for its reply becomes the
*leader* (holds ``read_lock``), reads whatever arrives and hands other callers their replies;
when its own reply is in, it passes leadership to another waiter. A single-threaded caller thus
does send + recv in its own thread like a bare socket loop, and with many threads one recv
carries several replies. A watch pump thread (see _client.Client) takes the same role while
watches exist.

Failure model (pyxs issue #11 is what this avoids): a malformed header, an oversize reply, a
reply with an unknown req_id or the wrong type, or EOF marks the connection *broken*: every call
in flight on it fails at once with a typed error, the socket is shut down, and the owner opens a
new connection on the next call. Replies to calls that already timed out are recognised and
dropped. Every wait is bounded by the caller's deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from virtkit import ConnectionClosed, ProtocolError, VirtError
from virtkit import TimeoutError as XsTimeout

from ._channel import Channel
from ._wire import HEADER, PAYLOAD_MAX, Op, error_from_reply, split_packets

__all__ = ["Conn"]

_pack = HEADER.pack
_monotonic = time.monotonic
_WATCH_EVENT = int(Op.WATCH_EVENT)
_ERROR = int(Op.ERROR)
_TSTART = int(Op.TRANSACTION_START)
_WATCH_OPS = (int(Op.WATCH), int(Op.UNWATCH))
#: Timed-out req_ids remembered so their late replies are dropped; past this, start afresh.
_ABANDONED_MAX = 4096


class Pending:
    """One request in flight. Its owner is woken (by its reply, a failure, or to take over
    reading) through ``signalled`` and, once the owner had to block, ``lock``: created only
    then, so a caller that reads its own reply (the single-threaded case) never pays for it."""

    __slots__ = ("done", "error", "lock", "op", "path", "payload", "req_id", "signalled", "tx_id")

    def __init__(self, op: int, tx_id: int, path: str | None) -> None:
        self.op = op
        self.tx_id = tx_id
        self.path = path
        self.req_id = 0
        self.done = False
        self.signalled = False
        self.payload = b""
        self.error: VirtError | None = None
        self.lock: threading.Lock | None = None


EventSink = Callable[[bytes, bytes], None]


class Conn:
    __slots__ = (
        "_abandoned",
        "_buf",
        "_next_id",
        "_outbox",
        "_pending",
        "_read_lock",
        "_send_lock",
        "_state",
        "broken",
        "chan",
        "sink",
    )

    def __init__(self, chan: Channel, sink: EventSink) -> None:
        self.chan = chan
        self.sink = sink  # called with (path, token) of every WATCH_EVENT, from the reader
        self.broken: VirtError | None = None
        self._state = threading.Lock()  # guards _pending, _abandoned, _next_id, _outbox, signalled
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._abandoned: set[int] = set()
        self._next_id = 0
        self._outbox: list[bytes] = []
        self._buf = bytearray()

    # -- the request path ----------------------------------------------------------------------

    def call(self, op: int, payload: bytes, tx_id: int, path: str | None, timeout: float) -> bytes:
        """Send one request and return its reply payload, or raise its typed error."""
        deadline = _monotonic() + timeout
        return self.finish(self.submit(op, payload, tx_id, path, deadline), deadline)

    def submit(self, op: int, payload: bytes, tx_id: int, path: str | None, deadline: float) -> Pending:
        """Send one request; :meth:`finish` waits for its reply (the two halves of :meth:`call`)."""
        if len(payload) > PAYLOAD_MAX:  # the public API checks first; this is the last guard
            raise ProtocolError(f"refusing to send a {len(payload)}-byte payload")
        p = Pending(op, tx_id, path)
        with self._state:
            if self.broken is not None:
                raise self.broken
            msg = self._register(p, payload)
            # Uncontended (the usual case): send it ourselves, skipping the outbox.
            direct = not self._outbox and self._send_lock.acquire(blocking=False)
            if not direct:
                self._outbox.append(msg)
        if direct:
            self._send_direct((msg,), deadline)
        else:
            self._flush(deadline)
        return p

    def finish(self, p: Pending, deadline: float) -> bytes:
        """The reply payload of a submitted request, or its typed error."""
        self._wait(p, deadline)
        if p.error is not None:
            raise p.error
        return p.payload

    def call_many(
        self, requests: Sequence[tuple[int, bytes, str | None]], tx_id: int, timeout: float
    ) -> list[bytes | VirtError]:
        """Several requests from one thread, pipelined: sent together, then each reply (or its
        typed error) in order. One round trip instead of ``len(requests)``."""
        for _op, payload, _path in requests:
            if len(payload) > PAYLOAD_MAX:
                raise ProtocolError(f"refusing to send a {len(payload)}-byte payload")
        deadline = _monotonic() + timeout
        pending = [Pending(op, tx_id, path) for op, _payload, path in requests]
        with self._state:
            if self.broken is not None:
                raise self.broken
            msgs = [self._register(p, payload) for p, (_op, payload, _path) in zip(pending, requests, strict=True)]
            direct = not self._outbox and self._send_lock.acquire(blocking=False)
            if not direct:
                self._outbox += msgs
        if direct:
            self._send_direct(msgs, deadline)
        else:
            self._flush(deadline)
        for p in pending:
            self._wait(p, deadline)
        return [p.error if p.error is not None else p.payload for p in pending]

    def _register(self, p: Pending, payload: bytes) -> bytes:
        """Under ``_state``: give ``p`` a free req_id, track it, return its message."""
        rid = self._next_id
        while True:
            rid = (rid + 1) & 0xFFFFFFFF  # req_id is u32: wrap, skip 0 and ids in use
            if rid and rid not in self._pending and rid not in self._abandoned:
                break
        self._next_id = rid
        p.req_id = rid
        self._pending[rid] = p
        return _pack(p.op, rid, p.tx_id, len(payload)) + payload

    def _write(self, batch: Sequence[bytes], deadline: float) -> bool:
        """Write queued messages (holding the send lock); False when that broke the connection."""
        try:
            if self.chan.is_socket:  # one syscall for several
                self.chan.send_all(batch[0] if len(batch) == 1 else b"".join(batch), deadline)
            else:
                for msg in batch:  # xenbus: exactly one message per write()
                    self.chan.send_all(msg, deadline)
        except XsTimeout as exc:
            self.fail(exc)  # part of a message may be out: the stream is unusable
            return False
        except OSError as exc:
            self.fail(ConnectionClosed(f"xenstore: sending to {self.chan.path} failed: {exc}"))
            return False
        return True

    def _send_direct(self, batch: Sequence[bytes], deadline: float) -> None:
        """Write ``batch`` under the send lock the caller acquired, then release it."""
        try:
            self._write(batch, deadline)
        finally:
            self._send_lock.release()
        # A request queued while we held the send lock was left to us: its owner's acquire
        # failed before our release, so this peek sees it.
        if self._outbox:
            self._flush(deadline)

    def _flush(self, deadline: float) -> None:
        # Whoever holds the send lock writes everyone's queued requests; a thread that finds it
        # taken leaves its request to the holder.
        while True:
            if not self._send_lock.acquire(blocking=False):
                return
            try:
                while True:
                    with self._state:
                        batch, self._outbox = self._outbox, []
                    if not batch or not self._write(batch, deadline):
                        break
            finally:
                self._send_lock.release()
            with self._state:  # a request queued while we were releasing must not be stranded
                if not self._outbox:
                    return

    def _wait(self, p: Pending, deadline: float) -> None:
        try:
            while not p.done:
                if self._read_lock.acquire(blocking=False):
                    try:
                        self._read_until(p, deadline)
                    finally:
                        self._read_lock.release()
                    break
                with self._state:
                    if p.signalled:  # woken before we blocked: consume it and look again
                        p.signalled = False
                        continue
                    lock = p.lock
                    if lock is None:
                        lock = p.lock = threading.Lock()
                        lock.acquire()
                remaining = deadline - _monotonic()
                if remaining <= 0 or not lock.acquire(timeout=min(remaining, 1.0)):
                    if _monotonic() >= deadline:
                        raise XsTimeout(f"xenstore: no reply from {self.chan.path} in time")
                    continue  # safety net: re-check leadership every second
                with self._state:
                    p.signalled = False
        except XsTimeout as exc:
            self._abandon(p, exc)
            if self._buf:
                # The daemon stopped mid-packet (a slow drip, a freeze): nothing else can arrive
                # before that packet ends, and no deadline can wait for it. Start afresh.
                self.fail(XsTimeout(f"xenstore: {self.chan.path} stalled in the middle of a reply; reconnecting"))
        finally:
            self._promote()

    def _abandon(self, p: Pending, exc: XsTimeout) -> None:
        with self._state:
            if p.done:
                return
            p.done = True
            p.error = exc
            if self._pending.pop(p.req_id, None) is not None:
                self._abandoned.add(p.req_id)
            too_many = len(self._abandoned) > _ABANDONED_MAX
        if too_many:
            self.fail(XsTimeout("xenstore: too many requests timed out; reconnecting"))

    def _promote(self) -> None:
        """Wake one waiter to take over reading, unless someone already reads."""
        # Unlocked peeks are safe: a waiter blocks only after failing to get read_lock, so it is
        # in _pending while a leader exists, and that leader promotes on its way out.
        if not self._pending or self._read_lock.locked():
            return
        with self._state:
            for q in self._pending.values():
                if not q.signalled and not q.done:
                    self._signal(q)
                    return

    @staticmethod
    def _signal(q: Pending) -> None:
        # under self._state; a spurious release is harmless (the owner re-checks), a double
        # release of a Lock is an error, hence the flag
        if not q.signalled:
            q.signalled = True
            if q.lock is not None:
                q.lock.release()

    # -- reading -------------------------------------------------------------------------------

    def _read_until(self, p: Pending, deadline: float) -> None:
        while not p.done:
            if _monotonic() >= deadline:
                raise XsTimeout(f"xenstore: no reply from {self.chan.path} in time")
            self._read_once()

    def pump(self, deadline: float) -> None:
        """Read and dispatch for up to ``deadline`` (the watch pump thread's turn as leader)."""
        if not self._read_lock.acquire(timeout=max(0.0, deadline - _monotonic())):
            return
        try:
            while self.broken is None and _monotonic() < deadline:
                if self._read_once():
                    return  # let callers take over when there is nothing else queued
        finally:
            self._read_lock.release()
            self._promote()

    def _read_once(self) -> bool:
        """One receive + dispatch; True when something was dispatched."""
        if self.broken is not None:
            return False
        try:
            data = self.chan.recv()
        except OSError as exc:
            self.fail(ConnectionClosed(f"xenstore: reading from {self.chan.path} failed: {exc}"))
            return False
        if data is None:
            return False
        if not data:
            self.fail(ConnectionClosed(f"xenstore: {self.chan.path} closed the connection"))
            return False
        # Parse straight from the received bytes when nothing is left over from before (the
        # usual case); only a partial packet goes to the bytearray.
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        packets, off, bad = split_packets(buf)
        for typ, rid, tx, payload in packets:
            if not self._dispatch(typ, rid, tx, payload):
                return False
        if bad is not None:
            self.fail(ProtocolError(f"xenstore: malformed packet from {self.chan.path} ({bad}); reconnecting"))
            return False
        if buf is self._buf:
            del self._buf[:off]
        elif off < len(buf):
            self._buf += buf[off:]
        return bool(packets)

    def _dispatch(self, typ: int, rid: int, tx: int, payload: bytes) -> bool:
        """Hand one packet to its owner; False when it broke the connection."""
        if typ == _WATCH_EVENT:
            path, _, rest = payload.partition(b"\0")
            token = rest.split(b"\0", 1)[0]
            try:
                self.sink(path, token)
            except Exception:  # noqa: BLE001 - a consumer's bug must not kill the reader
                pass
            return True
        with self._state:
            p = self._pending.pop(rid, None)
            if p is None:
                if rid in self._abandoned:
                    self._abandoned.discard(rid)  # late reply to a timed-out call
                    return True
                why = f"a reply (type {typ}) to unknown req_id {rid}"
            elif typ != p.op and typ != _ERROR:
                why = f"a type {typ} reply to a type {p.op} request (req_id {rid})"
            elif tx != p.tx_id and p.op != _TSTART and p.op not in _WATCH_OPS:
                why = f"a reply for transaction {tx} to a request in transaction {p.tx_id}"
            else:
                if typ == _ERROR:
                    p.error = error_from_reply(payload, p.op, p.path)
                else:
                    p.payload = payload
                p.done = True
                self._signal(p)
                return True
            if p is not None:
                self._pending[rid] = p  # fail() below fails it with everyone else
        self.fail(ProtocolError(f"xenstore: {self.chan.path} sent {why}; reconnecting"))
        return False

    # -- failure -------------------------------------------------------------------------------

    def fail(self, exc: VirtError) -> None:
        """Mark the connection broken and fail every call in flight with ``exc``."""
        with self._state:
            if self.broken is None:
                self.broken = exc
            for q in self._pending.values():
                if not q.done:
                    q.done = True
                    q.error = exc
                    self._signal(q)
            self._pending.clear()
            self._outbox.clear()
        self.chan.shutdown()

    def close(self) -> None:
        self.fail(ConnectionClosed("xenstore: connection closed"))
        self.chan.close()
