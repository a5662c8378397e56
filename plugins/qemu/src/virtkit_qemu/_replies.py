"""What the driver takes from QMP replies, checked: a reply of another shape is a ProtocolError.

qemu.qmp parses the JSON and matches replies to commands; what the ``return`` values hold is the
driver's business. QEMU always sends these shapes, but the relay is a process of its own and a
monitor can be anything that listens on the socket: nothing it sends may escape as a KeyError.
"""

from __future__ import annotations

from typing import Any

from virtkit import DomainState, ProtocolError

__all__ = ["ACTIVE", "balloon_kib", "domain_state", "status_of", "vcpu_threads"]

#: 1 EiB: a balloon reporting more is not a balloon (and stays far from any overflow).
_BYTES_MAX = 1 << 60


def _short(reply: object) -> str:
    text = repr(reply)
    return text if len(text) <= 120 else text[:117] + "..."


def _count(value: object, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high


_STATES = {
    "running": DomainState.RUNNING,
    "paused": DomainState.PAUSED,
    "suspended": DomainState.PMSUSPENDED,
    "shutdown": DomainState.SHUTDOWN,
    "guest-panicked": DomainState.CRASHED,
    "internal-error": DomainState.CRASHED,
    "io-error": DomainState.PAUSED,
    "prelaunch": DomainState.PAUSED,
    "debug": DomainState.PAUSED,
}
#: The states in which QEMU runs the guest (or holds it, paused).
ACTIVE = frozenset({DomainState.RUNNING, DomainState.PAUSED})


def domain_state(status: str) -> DomainState:
    """virtkit's state for a ``query-status`` status."""
    return _STATES.get(status, DomainState.NOSTATE)


def status_of(reply: object) -> str:
    """``query-status``: its ``status`` string ("running", "paused", "shutdown", ...)."""
    status = reply.get("status") if isinstance(reply, dict) else None
    if not isinstance(status, str) or not status:
        raise ProtocolError(f"QMP query-status answered {_short(reply)}")
    return status


def balloon_kib(reply: object) -> int:
    """``query-balloon``: the guest's current memory (``actual``, bytes) in KiB."""
    actual = reply.get("actual") if isinstance(reply, dict) else None
    if not _count(actual, _BYTES_MAX):
        raise ProtocolError(f"QMP query-balloon answered {_short(reply)}")
    assert isinstance(actual, int)
    return actual // 1024


def vcpu_threads(reply: object) -> tuple[int, list[int]]:
    """``query-cpus-fast``: (number of vcpus, host thread ids of those QEMU names)."""
    if not isinstance(reply, list) or not all(isinstance(c, dict) for c in reply):
        raise ProtocolError(f"QMP query-cpus-fast answered {_short(reply)}")
    tids = []
    for cpu in reply:
        tid: Any = cpu.get("thread-id")
        if tid is None:
            continue
        if not _count(tid, 1 << 31) or tid == 0:
            raise ProtocolError(f"QMP query-cpus-fast: bad thread-id in {_short(cpu)}")
        tids.append(tid)
    return len(reply), tids
