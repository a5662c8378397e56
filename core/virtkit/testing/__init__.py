"""virtkit's conformance kit: prove a plugin honours the contract, with pytest.

Run ``pytest --virtkit-uri=URI`` (add ``--virtkit-mutating`` for the checks that change
domains) in any environment where virtkit and the plugin are installed: the pytest plugin
(:mod:`virtkit.testing.plugin`, entry point ``pytest11: virtkit``) generates a contract test per
catalogue operation and behaviour; operations the driver does not provide are reported as
skipped, "not provided". See docs/plugin-guide.md.

The checkers are importable for a plugin's own tests too, and :func:`run_kit` runs the kit as
its users do (pytest in a subprocess) and reads each check's outcome back.
"""

from __future__ import annotations

from ._checks import (
    RESULT_CHECKS,
    ContractViolation,
    EventRecorder,
    check_result,
    check_signature,
    declared_events,
    wait_for,
)
from ._peer import ScriptedPeer, no_threads_left
from ._run import KitRun, run_kit

__all__ = [
    "RESULT_CHECKS",
    "ContractViolation",
    "EventRecorder",
    "KitRun",
    "ScriptedPeer",
    "check_result",
    "check_signature",
    "declared_events",
    "no_threads_left",
    "run_kit",
    "wait_for",
]
