"""Run the kit as its users run it: pytest in a subprocess, in a directory of its own with a
strict configuration, each check's outcome read back from the JUnit report.

A plugin's own test suite uses it to prove that the kit passes on its URI end to end (the
entry point, the options, the skips) rather than calling the checks in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["KitRun", "run_kit"]

#: The run's own pytest.ini: only the kit runs, unknown markers fail, a warning is an error.
_INI = "[pytest]\naddopts = --strict-markers\nfilterwarnings = error\n"
#: Inherited variables that would change what the kit does (the caller's own settings).
_DROPPED_ENV = ("VIRTKIT_", "PYTEST_")


class KitRun:
    """What one run of the kit gave: pytest's exit code and output, and per check (the test's
    name, e.g. ``test_signature[domain_create]``) its outcome and, when skipped, why."""

    __slots__ = ("outcomes", "output", "returncode", "skips")

    def __init__(self, returncode: int, output: str, outcomes: dict[str, str], skips: dict[str, str]) -> None:
        self.returncode = returncode
        #: pytest's stdout and stderr.
        self.output = output
        #: check name -> ``passed`` / ``failed`` / ``error`` / ``skipped``.
        self.outcomes = outcomes
        #: check name -> the skip message (``not provided: ...``, ``needs --virtkit-mutating``).
        self.skips = skips

    def count(self, outcome: str) -> int:
        """How many checks ended with ``outcome``."""
        return sum(1 for o in self.outcomes.values() if o == outcome)

    def __repr__(self) -> str:
        counts = ", ".join(f"{o} {self.count(o)}" for o in ("passed", "failed", "error", "skipped"))
        return f"<KitRun rc={self.returncode}: {counts}>"


def run_kit(
    uri: str | None,
    directory: str | os.PathLike[str],
    *,
    mutating: bool = False,
    config: str | os.PathLike[str] | None = None,
    check_timeout: float | None = None,
    pytest_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 240.0,
) -> KitRun:
    """Run ``pytest --virtkit-uri=URI`` (the kit alone) in ``directory`` and read its outcomes.

    ``directory`` should be empty (a ``pytest.ini`` is written there, tests found there run
    too). The caller's ``VIRTKIT_*`` and ``PYTEST_*`` variables are not inherited; ``env`` is
    added on top. ``uri=None`` runs pytest without the kit's options (the kit stays inert).
    ``timeout`` bounds the whole run: :class:`subprocess.TimeoutExpired` past it.
    """
    where = Path(directory)
    (where / "pytest.ini").write_text(_INI)
    junit = where / "kit-junit.xml"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={junit}"]
    if uri is not None:
        argv.append(f"--virtkit-uri={uri}")
    if mutating:
        argv.append("--virtkit-mutating")
    if config is not None:
        argv.append(f"--virtkit-config={os.fspath(config)}")
    if check_timeout is not None:
        argv.append(f"--virtkit-timeout={check_timeout:g}")
    argv.extend(pytest_args)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV)}
    run_env.update(env or {})
    proc = subprocess.run(argv, cwd=where, env=run_env, capture_output=True, text=True, timeout=timeout, check=False)
    outcomes: dict[str, str] = {}
    skips: dict[str, str] = {}
    if junit.exists():  # absent when pytest failed before it ran anything (a usage error)
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = case.get("name", "")
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = "failed" if child.tag == "failure" else child.tag
                    if child.tag == "skipped":
                        skips[name] = child.get("message", "")
            outcomes[name] = outcome
    return KitRun(proc.returncode, proc.stdout + proc.stderr, outcomes, skips)
