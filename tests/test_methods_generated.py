"""Connection's and Domain's catalogue methods are generated from the catalogue (virtkit._methods).

The file is plain source so mypy and IDEs see each signature and docstring; these tests fail when
it no longer matches the catalogue (regenerate: python -m virtkit._methods_gen).
"""

from __future__ import annotations

import inspect
import pathlib
import subprocess
import sys

import pytest

from virtkit import CATALOGUE, Connection, Domain, Operation, _methods, _methods_gen


def test_the_generated_file_is_current() -> None:
    assert _methods_gen.TARGET.read_text(encoding="utf-8") == _methods_gen.render(), (
        "core/virtkit/_methods.py is stale: run python -m virtkit._methods_gen"
    )


def test_check_mode_reports_staleness(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "_methods.py"
    stale.write_text(_methods_gen.render() + "# edited by hand\n", encoding="utf-8")
    monkeypatch.setattr(_methods_gen, "TARGET", stale)
    monkeypatch.setattr(sys, "argv", ["_methods_gen", "--check"])
    assert _methods_gen.main() == 1
    monkeypatch.setattr(sys, "argv", ["_methods_gen"])
    assert _methods_gen.main() == 0 and stale.read_text(encoding="utf-8") == _methods_gen.render()


GENERATED = list(CATALOGUE.values())  # every operation, the statistics of catalogue 1.1 too


@pytest.mark.parametrize("op", GENERATED, ids=[op.name for op in GENERATED])
def test_each_method_carries_the_catalogue_doc_and_types(op: Operation) -> None:
    owner = Domain if op.owner == "domain" else Connection
    method = getattr(owner, op.method)
    # the method the class resolves is the generated one: nothing hand-written shadows it
    home = _methods.DomainMethods if owner is Domain else _methods.ConnectionMethods
    assert method is home.__dict__[op.method]
    assert method.__doc__ == op.doc
    sig = inspect.signature(method)
    params = [p for p in op.params if p.type != "DomainRef"]
    declared = {name: str(p.annotation) for name, p in sig.parameters.items() if name not in ("self", "flags")}
    assert list(declared) == [p.name for p in params]
    for p in params:
        annotation, default = _methods_gen.public_param(op, p)
        assert declared[p.name] == annotation
        shown = sig.parameters[p.name].default
        assert (shown is inspect.Parameter.empty) if default is None else (repr(shown) == default.replace('"', "'"))
    returns = op.returns
    if returns == "DomainRef":
        returns = "Domain" if owner is Connection else "None"
    assert sig.return_annotation == returns


def test_mypy_sees_the_generated_signatures(tmp_path: pathlib.Path) -> None:
    """The point of generating source: a caller's wrong argument is a type error, not a runtime one."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import virtkit\n"
        "def f(conn: virtkit.Connection) -> None:\n"
        "    dom = conn.lookup_by_name('x')\n"
        "    dom.set_memory('lots')\n"
        "    n: str = dom.max_memory()\n",
        encoding="utf-8",
    )
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(probe)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 'Argument 1 to "set_memory" of "DomainMethods" has incompatible type "str"; expected "int"' in r.stdout
    assert 'Incompatible types in assignment (expression has type "int", variable has type "str")' in r.stdout
    assert r.stdout.count("error:") == 2, r.stdout
