"""The conformance kit, run as its users run it: `pytest --virtkit-uri=URI` in a subprocess.

This is how CI runs the kit on test:///default and on the example out-of-tree plugin (toy:///,
installed from examples/toy by scripts/setup --dev). The lab runs the same command on xen:///.
"""

from __future__ import annotations

import pathlib

import pytest

import virtkit
from virtkit.testing import KitRun, run_kit
from virtkit.testing._contract import MUTATORS, OPS, QUERIES


def run_pytest(tmp_path: pathlib.Path, *args: str, env: dict[str, str] | None = None) -> KitRun:
    """The kit's own runner with pytest arguments given as a user types them."""
    return run_kit(None, tmp_path, pytest_args=args, env=env)


def count(run: KitRun, outcome: str) -> int:
    return run.count(outcome)


def test_kit_passes_on_test_default_with_mutating_checks(tmp_path: pathlib.Path) -> None:
    run = run_pytest(tmp_path, "--virtkit-uri=test:///default", "--virtkit-mutating", "--virtkit-timeout=10")
    assert run.returncode == 0, run.output[-4000:]
    # the embedded hypervisor provides every operation: nothing is skipped, everything runs
    assert count(run, "failed") == 0 and count(run, "error") == 0
    assert count(run, "skipped") == 0, run.skips
    assert count(run, "passed") >= 100
    for op in OPS:  # one generated test per catalogue operation, at least
        assert run.outcomes[f"test_signature[{op.name}]"] == "passed"
    for op in QUERIES:
        if op.since == "1.0":  # the stats operations (1.1) have tests of their own, below
            assert run.outcomes[f"test_result_type[{op.name}]"] == "passed"
    stats = [t for t in run.outcomes if t.startswith("test_stats_")]
    assert len(stats) == 6 and all(run.outcomes[t] == "passed" for t in stats), stats
    for op in MUTATORS:
        assert run.outcomes[f"test_readonly_refuses[{op.name}]"] == "passed"


def test_kit_without_mutating_flag_changes_nothing(tmp_path: pathlib.Path) -> None:
    run = run_pytest(tmp_path, "--virtkit-uri=test:///default")
    assert run.returncode == 0, run.output[-4000:]
    assert count(run, "passed") >= 60
    assert run.outcomes["test_suspend_resume"] == "skipped"
    assert "--virtkit-mutating" in run.skips["test_suspend_resume"]
    assert run.outcomes["test_missing_domain[domain_destroy]"] == "skipped"
    assert run.outcomes["test_missing_domain[domain_get_info]"] == "passed"


def test_kit_on_the_example_out_of_tree_plugin(tmp_path: pathlib.Path) -> None:
    """examples/toy, installed from its own folder: a new scheme with no core change."""
    pytest.importorskip("virtkit_toy", reason="examples/toy is installed by scripts/setup --dev")
    run = run_pytest(tmp_path, "--virtkit-uri=toy:///", "--virtkit-mutating", "--virtkit-timeout=10")
    assert run.returncode == 0, run.output[-4000:]
    assert count(run, "passed") >= 50
    # what the toy leaves out is reported as such, never failed
    assert run.skips["test_signature[domain_create]"].startswith("not provided: domain_create")
    assert run.skips["test_result_type[node_get_info]"].startswith("not provided: node_get_info")
    assert all("not provided" in msg for msg in run.skips.values()), run.skips
    # no domain_create: the mutating checks made their own domain with define + start
    assert run.outcomes["test_suspend_resume"] == "passed"
    assert run.outcomes["test_event[start]"] == "passed"


def test_kit_reports_a_uri_nobody_opens(tmp_path: pathlib.Path) -> None:
    run = run_pytest(tmp_path, "--virtkit-uri=nosuchscheme:///")
    assert run.returncode == 1
    assert "no plugin can open nosuchscheme:///" in run.output
    assert count(run, "passed") == 0


def test_plugin_is_inert_without_uri(tmp_path: pathlib.Path) -> None:
    """Auto-loaded in every pytest run of this venv: without --virtkit-uri it adds no test."""
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    run = run_pytest(tmp_path)
    assert run.returncode == 0, run.output
    assert run.outcomes == {"test_one": "passed"}
    collected = run_pytest(tmp_path, "--collect-only")
    assert "virtkit-kit" not in collected.output


def test_kit_by_name_when_autoload_is_off(tmp_path: pathlib.Path) -> None:
    """`-p virtkit` (the pytest11 entry point's name) loads the kit where autoload is disabled."""
    run = run_pytest(
        tmp_path, "-p", "virtkit", "--virtkit-uri=test:///default", env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert run.returncode == 0, run.output[-4000:]
    assert count(run, "passed") >= 60


def test_plugin_is_registered_for_pytest(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("virtkit")
    assert plugin is not None and plugin.__name__ == "virtkit.testing.plugin"
    assert pytestconfig.getoption("virtkit_uri") is None


def test_every_catalogue_return_type_is_checkable() -> None:
    from virtkit.testing import RESULT_CHECKS

    assert {op.returns for op in virtkit.CATALOGUE.values()} <= set(RESULT_CHECKS)
