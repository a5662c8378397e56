"""A guest's power, as libvirt's qemu driver handles it: what a power-off means, and the
cooperative shutdown and reboot (an ACPI power-button press, pressed again while pending).

QEMU runs with ``-no-shutdown``: when the guest powers off, QEMU stays (status "shutdown") until
the domain's relay -- or, without one, the first read-write connection that looks -- resets it
(a pending reboot: libvirt's "fake reboot") or quits it. A read-only connection only reports it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from virtkit import ProtocolError

from ._process import Supervisor
from ._relay import cancel_reboot, claim_reboot, reboot_deadline, reboot_pending, release_claim, request_reboot
from ._replies import status_of
from ._state import Running

__all__ = ["PRESS_INTERVAL", "Power"]

log = logging.getLogger("virtkit.qemu")

#: Seconds between two power-button presses while a shutdown or reboot request is pending.
PRESS_INTERVAL = 2.0
#: Seconds a query that QEMU's monitor failed waits for a QEMU that is exiting to be gone.
EXIT_GRACE = 2.0

Qmp = Callable[[Running, str, Mapping[str, object] | None], Any]


class Power:
    """One connection's hand on its domains' power: QMP through ``qmp``, deadlines from ``until``."""

    __slots__ = ("_closed", "_procs", "_qmp", "_until", "readonly", "timeout")

    def __init__(
        self,
        procs: Supervisor,
        qmp: Qmp,
        *,
        until: Callable[[], float],
        closed: Callable[[], bool],
        timeout: float,
        readonly: bool,
    ) -> None:
        self._procs = procs
        self._qmp = qmp
        self._until = until
        self._closed = closed
        self.timeout = timeout
        self.readonly = readonly  # then a look only reports: it never ends (or resets) a QEMU

    def status(self, run: Running) -> str:
        """query-status ("gone" when QEMU is); a guest that powered off is acted on here --
        reset (a pending reboot) or quit -- unless this connection is read-only."""
        try:
            status = status_of(self._qmp(run, "query-status", None))
        except ProtocolError:
            if self._procs.alive(run.id) is None:
                return "gone"
            # QEMU may be on its way out (its relay quit it after the guest's power-off, and
            # answers with its monitor's disconnection): let it finish exiting, within a moment.
            self._procs.wait_exit(run, min(EXIT_GRACE, self._until() - time.monotonic()))
            if self._procs.alive(run.id) is None:
                return "gone"
            raise
        if status == "shutdown" and not self.readonly:
            return self._powered_off(run)
        return status

    def _powered_off(self, run: Running) -> str:
        """The guest powered off and its relay has not acted (yet, or it has none): do it here.

        A pending cooperative reboot -> system_reset + cont ("running"); otherwise quit ("gone").
        """
        claim = claim_reboot(run.rundir) if run.config.on_reboot != "destroy" else False
        if claim is True:
            return "running"  # the relay (or another connection) is resetting it right now
        if claim:
            try:
                self._qmp(run, "system_reset", None)
                self._qmp(run, "cont", None)
            finally:
                release_claim(claim)
            return "running"
        # No claim: either a shutdown, or a reset that completed between our two looks.
        try:
            status = status_of(self._qmp(run, "query-status", None))
        except ProtocolError:
            status = "shutdown"
        if status != "shutdown":
            return status
        cancel_reboot(run.rundir)
        self.finish(run, "shutdown")
        return "gone"

    def finish(self, run: Running, reason: str) -> None:
        """quit, wait, SIGKILL when the operation's deadline is spent, then reap."""
        self._procs.finish(run, reason, lambda: self._qmp(run, "quit", None), self._until())

    def shutdown(self, run: Running) -> None:
        cancel_reboot(run.rundir)  # a shutdown wins over a pending reboot, as in libvirt
        # An ACPI power-button press: the guest decides, and QEMU reports SHUTDOWN when it is off.
        self._qmp(run, "system_powerdown", None)
        # A guest still booting (ACPI not up yet) loses the press: press again every 2 s while
        # it runs, for up to the timeout, as long as this connection is open.
        threading.Thread(target=self._press_again, args=(run,), daemon=True, name="virtkit-qemu-powerdown").start()

    def reboot(self, run: Running) -> None:
        # libvirt's ACPI reboot ("fake reboot"): record the request, press the power button; when
        # the guest has powered off, the relay (or, without one, the first connection that
        # looks) resets it and lets it run again: the same QEMU process, the same id. Returns
        # once the press is delivered; the request stays pending for the connection's timeout.
        deadline = request_reboot(run.rundir, self.timeout)
        try:
            self._qmp(run, "system_powerdown", None)
        except BaseException:
            cancel_reboot(run.rundir)
            raise
        threading.Thread(
            target=self._press_again, args=(run, deadline), daemon=True, name="virtkit-qemu-reboot"
        ).start()

    def _press_again(self, run: Running, reboot: float | None = None) -> None:
        """Press again every PRESS_INTERVAL while the guest runs and the request is pending.

        ``reboot``: the deadline of this connection's reboot request; the request is over once
        the marker is gone (claimed: the guest powered off and was reset) or was replaced.
        """
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline - PRESS_INTERVAL:
            time.sleep(PRESS_INTERVAL)
            if self._closed():
                return
            try:
                if reboot is not None and not _reboot_is(run, reboot):
                    return
                if self._procs.alive(run.id) is None or self.status(run) != "running":
                    return
                if reboot is not None and not _reboot_is(run, reboot):
                    return
                self._qmp(run, "system_powerdown", None)
            except Exception:  # noqa: BLE001 - it went away meanwhile: nothing left to press
                return
        if reboot is not None and _reboot_is(run, reboot):
            time.sleep(max(0.0, deadline - time.monotonic()))
            if _reboot_is(run, reboot):
                log.warning(
                    "domain %r ignored the reboot request for %g s: it is dropped (the guest runs on)",
                    run.config.name,
                    self.timeout,
                )
                cancel_reboot(run.rundir)


def _reboot_is(run: Running, deadline: float) -> bool:
    """Our reboot request (by its deadline) is still the pending one."""
    return reboot_pending(run.rundir) and reboot_deadline(run.rundir) == deadline
