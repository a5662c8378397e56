"""What a cold start imports: only what the command needs (issue 14's cold start).

Each check runs a fresh interpreter: what ``import virtkit`` or an ``open()`` pulls in is a
property of the process, not of this one.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_HEAVY = ("pluggy", "logging", "json", "queue", "shutil", "importlib.metadata")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def test_import_virtkit_loads_none_of_the_heavy_modules() -> None:
    r = _run(f"import sys, virtkit\nprint(' '.join(m for m in {_HEAVY!r} if m in sys.modules))")
    assert r.stdout.split() == []


def test_lazy_names_still_resolve() -> None:
    r = _run(
        "import sys, virtkit\n"
        "assert virtkit.EventStream.__name__ == 'EventStream' and 'queue' in sys.modules\n"
        "assert callable(virtkit.hookspec) and 'pluggy' in sys.modules\n"
        "print('ok')\n"
    )
    assert r.stdout.strip() == "ok"


def _imports_of(command: list[str], watched: tuple[str, ...], *, drop: bool) -> tuple[str, list[str]]:
    """``virtkit -c test:///default COMMAND`` run by ``main`` in a fresh interpreter: its output,
    and which of ``watched`` it imported. With ``drop``, they are dropped from sys.modules first:
    an interpreter's site (an editable install's finder) may have loaded some, and the check is
    about what the command loads."""
    r = _run(
        "import sys\n"
        f"watched = {watched!r}\n"
        + ("for m in watched:\n    sys.modules.pop(m, None)\n" if drop else "")
        + "from virtkit._cli import main\n"
        f"code = main(['-c', 'test:///default', *{command!r}])\n"
        "print('imported:', ' '.join(m for m in watched if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    *out, last = r.stdout.splitlines()
    assert last.startswith("imported:")
    return "\n".join(out), last.split()[1:]


def test_a_plain_list_imports_no_logging() -> None:
    """``virtkit -c test:///default list --all``: neither the CLI (its stderr handler waits for
    logging to be imported) nor the test plugin's driver (it logs only a failing callback) loads it."""
    out, imported = _imports_of(["list", "--all"], ("logging", "pluggy", "json"), drop=False)
    assert "defined-vm" in out
    assert imported == []


# Off the path of a plain list since session 5: the records are made by virtkit._record, the test
# plugin's descriptions are namedtuples (see docs/contract.md, "Record types"), and a local URI
# is parsed without urllib.parse (_uri._LOCAL). Since session 6, a plain command line is read
# without argparse (_cli_quick), which brings gettext and locale, and the stats groups' records
# are not loaded for a listing (the state group alone). Since session 9, the plugin index's file
# name is checksummed without zlib and a timeout is checked without math.
_OFF_THE_LIST_PATH = (
    *("typing", "dataclasses", "inspect", "ast", "dis", "tokenize", "urllib.parse", "ipaddress"),
    *("argparse", "gettext", "locale", "threading", "virtkit._stats", "zlib", "math"),
)


def test_a_plain_list_imports_neither_typing_nor_dataclasses_nor_urllib_nor_argparse() -> None:
    out, imported = _imports_of(["list", "--all"], _OFF_THE_LIST_PATH, drop=True)
    assert "defined-vm" in out
    assert imported == []


@pytest.mark.parametrize("command", [["domstats", "web"], ["dominfo", "web"], ["nodeinfo"], ["domstate", "web"]])
def test_other_plain_commands_import_neither_typing_nor_argparse(command: list[str]) -> None:
    _out, imported = _imports_of(command, ("typing", "argparse", "gettext", "logging", "json"), drop=True)
    assert imported == []
