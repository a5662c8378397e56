"""Fuzzing what users hand virtkit: JSON domain configs, test:/// host files and CLI argument
values. The property everywhere: a failure is a virtkit.VirtError subclass, nothing else escapes,
and the CLI answers with exit 0, 1 or 2, never `internal error` (issue 12)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import virtkit
from virtkit import _cli

FUZZ = settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

GOOD_CONFIG = {"name": "fuzz-vm", "memory": 131072, "vcpus": 1, "max_memory": 262144, "os_type": "linux"}

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_config_keys = st.sampled_from([*GOOD_CONFIG, "uuid", "kernel", "on_reboot", "devices", "extra", "max_vcpus", "bogus"])
_configs = st.dictionaries(_config_keys, _json, max_size=8).map(lambda d: {**GOOD_CONFIG, **d}) | st.dictionaries(
    _config_keys, _json, max_size=6
)


def _mutate(text: str, data: st.DataObject) -> str:
    """Insert, delete or replace a few characters of ``text``."""
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        how = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = data.draw(st.sampled_from(list('{}[]",:0123456789-.eE\\ntrue\x00\u00b2\ud7ff')))
        text = text[:i] + ch + text[i + (how != "insert") :] if how != "delete" else text[:i] + text[i + 1 :]
    return text


def _config_text(data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["structured", "mutated", "raw"]))
    if kind == "structured":
        return json.dumps(data.draw(_configs))
    if kind == "mutated":
        return _mutate(json.dumps(data.draw(_configs)), data)
    return data.draw(st.text(max_size=60))


@FUZZ
@given(data=st.data())
@example(data=None)  # None: the good config itself, so the happy path is always in the run
def test_fuzz_json_domain_configs(data: st.DataObject | None) -> None:
    text = json.dumps(GOOD_CONFIG) if data is None else _config_text(data)
    with virtkit.open("test:///default") as conn:
        try:
            cfg = virtkit.DomainConfig.from_dict(virtkit.parse_json(text))
            dom = conn.create(cfg)
        except virtkit.VirtError:
            return
        assert dom.name == cfg.name and dom.info().memory <= virtkit.MAX_MEMORY_KIB


_node = st.dictionaries(
    st.sampled_from(["model", "memory", "cpus", "mhz", "nodes", "sockets", "cores", "threads", "x"]), _json, max_size=4
)
_hosts = st.fixed_dictionaries(
    {},
    optional={
        "hostname": _json,
        "node": _node | _json,
        "domains": st.lists(_configs.map(lambda c: {**c, "state": "running"}) | _json, max_size=3) | _json,
    },
)


@FUZZ
@given(data=st.data())
def test_fuzz_test_host_files(data: st.DataObject) -> None:
    host = data.draw(_hosts)
    text = json.dumps(host) if data.draw(st.booleans()) else _mutate(json.dumps(host), data)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "host.json"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            with virtkit.open(f"test://{path}") as conn:
                for dom in conn.domains(all=True):
                    dom.info()
        except virtkit.VirtError:
            pass


_sizes = st.text(max_size=30) | st.from_regex(r"\s*[0-9]{1,40}\s*[A-Za-z]{0,4}\s*", fullmatch=True)
_timeouts = st.sampled_from(["nan", "inf", "-inf", "-0", "1e309", "0x10", "\u0661", "\u00b2"]) | st.floats().map(repr)
_names = st.text(max_size=20) | st.sampled_from(["1", "test", "²", "-1", "99999999999999999999", ".."])
_counts = st.integers(min_value=-(10**20), max_value=10**20).map(str) | st.text(max_size=6)


@st.composite
def _argv(draw: st.DrawFn) -> list[str]:
    cmd = draw(st.sampled_from(["setmem", "setmaxmem", "setvcpus", "dominfo", "suspend", "domstate", "list"]))
    argv = ["-c", "test:///default", "--timeout", draw(_timeouts)] if draw(st.booleans()) else ["-c", "test:///default"]
    argv.append(cmd)
    if cmd in ("setmem", "setmaxmem"):
        argv += [draw(_names), draw(_sizes)]
    elif cmd == "setvcpus":
        argv += [draw(_names), draw(_counts)]
    elif cmd != "list":
        argv.append(draw(_names))
    return [a for a in argv if "\x00" not in a]  # argv cannot carry NUL


@FUZZ
@given(argv=_argv())
def test_fuzz_cli_argument_values(argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = _cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code  # type: ignore[assignment]
    assert code in (0, 1, 2), (argv, code, err.getvalue())
    assert "internal error" not in err.getvalue() and "Traceback" not in err.getvalue()
    if code:
        assert err.getvalue().startswith("error:"), err.getvalue()


@FUZZ
@given(text=st.text(max_size=20) | st.floats().map(repr))
def test_fuzz_event_timeouts(text: str) -> None:
    """``events --timeout`` values: accepted as seconds (or inf), else an argparse usage error."""
    try:
        value = _cli._event_seconds(text)
    except argparse.ArgumentTypeError:
        pass
    else:
        assert value > 0
