"""The pytest plugin: ``pytest --virtkit-uri=URI`` runs virtkit's conformance kit on a driver.

Registered through the core's ``pytest11`` entry point (name ``virtkit``), so it is loaded in
every pytest run of an environment where virtkit is installed. Without ``--virtkit-uri`` it only
adds its command-line options: no test, fixture, marker, or import of the rest of virtkit.
With it, the kit's tests (``virtkit.testing._contract``, generated from the operation catalogue)
join the collected tests under the node id ``virtkit-kit``.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import importlib
import pathlib
from typing import Any

import pytest

__all__ = ["KIT_NODE_ID"]

KIT_NODE_ID = "virtkit-kit"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("virtkit", "virtkit conformance kit (virtkit.testing)")
    group.addoption(
        "--virtkit-uri",
        metavar="URI",
        default=None,
        help="run virtkit's contract tests against the plugins that open URI",
    )
    group.addoption(
        "--virtkit-mutating",
        action="store_true",
        default=False,
        help="also run the checks that change domains (create/define their own domain when the driver can)",
    )
    group.addoption(
        "--virtkit-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="longest wait for a state change or an event (default 30)",
    )
    group.addoption(
        "--virtkit-plugin",
        action="append",
        default=[],
        metavar="MODULE:OBJECT",
        help="also register this plugin object in code (MODULE or FILE.py, then :OBJECT); repeatable",
    )
    group.addoption(
        "--virtkit-config",
        metavar="JSON",
        default=None,
        help="domain config (virtkit create's JSON) for the domains the mutating checks create",
    )


class _KitModule(pytest.Module):
    """The kit's test module, taken from the installed package rather than imported by path."""

    def _getobj(self) -> Any:
        return importlib.import_module("virtkit.testing._contract")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("virtkit_uri"):
        return
    contract = importlib.import_module("virtkit.testing._contract")
    assert contract.__file__ is not None
    module = _KitModule.from_parent(session, path=pathlib.Path(contract.__file__), name=KIT_NODE_ID, nodeid=KIT_NODE_ID)
    items.extend(session.genitems(module))
