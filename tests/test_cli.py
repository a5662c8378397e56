"""The real `virtkit` executable on test:///default: virsh's conventions, one-line errors."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

VIRTKIT = shutil.which("virtkit", path=str(pathlib.Path(sys.executable).parent)) or "virtkit"
URI = "test:///default"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}
    full_env.update(env or {})
    return subprocess.run([VIRTKIT, *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def ok(*args: str) -> str:
    r = run(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_list_all_shows_every_state() -> None:
    out = ok("-c", URI, "list", "--all")
    lines = out.splitlines()
    assert lines[0].split() == ["Id", "Name", "State"]
    rows = {line.split()[1]: line.split() for line in lines[2:]}
    assert rows["test"][0] == "1" and rows["test"][2] == "running"
    assert rows["paused-vm"][2] == "paused"
    assert rows["defined-vm"][0] == "-" and rows["defined-vm"][2:] == ["shut", "off"]
    assert "defined-vm" not in ok("-c", URI, "list")


def test_json_on_every_command() -> None:
    data = json.loads(ok("-c", URI, "--json", "list", "--all"))
    assert {d["name"] for d in data} >= {"test", "web", "paused-vm", "defined-vm"}
    info = json.loads(ok("-c", URI, "dominfo", "web", "--json"))
    assert info["name"] == "web" and info["vcpus"] >= 2 and info["max_memory_kib"] >= info["memory_kib"]
    for cmd in (["nodeinfo"], ["version"], ["hostname"], ["uri"], ["explain"], ["drivers"], ["domstate", "1"]):
        json.loads(ok("-c", URI, "--json", *cmd))


def test_dom_by_id_name_uuid() -> None:
    uuid = json.loads(ok("-c", URI, "--json", "dominfo", "test"))["uuid"]
    for ref in ("1", "test", uuid):
        assert json.loads(ok("-c", URI, "--json", "dominfo", ref))["uuid"] == uuid


def test_each_invocation_is_a_fresh_default_host() -> None:
    assert "Domain 'test' suspended" in ok("-c", URI, "suspend", "test")
    # a new process opens a new test:///default: the suspension did not persist
    assert ok("-c", URI, "domstate", "test").strip() == "running"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", URI, "dominfo", "nosuch"], "error: "),
        (["-c", URI, "resume", "test"], "not paused"),
        (["-c", URI, "setmem", "test", "12Q"], "invalid size"),
        (["-c", URI, "setmem", "test", "99G"], "above its maximum"),
        (["-c", "bad uri", "list"], "invalid URI"),
        (["-c", "nosuch:///", "list"], "no plugin can open"),
        (["-c", URI, "create", "/nonexistent.json"], "cannot read"),
        (["-c", URI, "--readonly", "destroy", "test"], "read-only"),
    ],
)
def test_user_mistakes_one_line_no_traceback(args: list[str], message: str) -> None:
    r = run(*args)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()  # one line: no plugin's warning before it (issue 14)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def test_usage_error_exit_2() -> None:
    r = run("-c", URI, "frobnicate")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = run("-c", URI, "setvcpus", "test", "many")
    assert r.returncode == 2


def test_default_uri_from_environment() -> None:
    r = run("uri", env={"VIRTKIT_DEFAULT_URI": URI})
    assert r.returncode == 0 and r.stdout.strip() == URI


def test_explain_table_names_plugin() -> None:
    out = ok("explain", URI)
    assert "URI: test:///default" in out
    row = next(line for line in out.splitlines() if line.startswith("domain_get_info"))
    assert row.split()[1] == "test"
    assert "SUCCESS  test" in out


def test_drivers_lists_loaded_and_failed() -> None:
    rows = {r["plugin"]: r for r in json.loads(ok("--json", "drivers"))}
    assert rows["test"]["status"] == "loaded" and rows["test"]["distribution"] == "virtkit-test"
    assert rows["fake.broken"]["status"] == "failed"
    text = ok("drivers")
    assert "virtkit-test" in text and "ModuleNotFoundError" in text


def test_drivers_wraps_a_long_error_to_the_terminal_width() -> None:
    """A failed plugin's message (pluggy's are hundreds of characters) wraps under the Status
    column instead of stretching the rule and every row past the screen."""
    errors = {r["plugin"]: r["error"] for r in json.loads(ok("--json", "drivers"))}
    assert len(errors["fake_badhook"]) > 120
    r = run("drivers", env={"COLUMNS": "90"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(len(line) <= 90 for line in lines), max(lines, key=len)
    assert set(lines[1]) == {"-"} and len(lines[1]) <= 90
    start = lines[0].index("Status")
    row = next(i for i, line in enumerate(lines) if line.startswith(" fake_badhook "))
    more = []
    for line in lines[row + 1 :]:
        if line[:start].strip():  # the next plugin's row
            break
        more.append(line[start:])
    assert more, "the message was not wrapped"
    shown = " ".join([lines[row][start:], *more])

    def words(text: str) -> str:  # pluggy names the plugin by id(), another in each process
        return re.sub(r"\d+", "N", text.replace(" ", ""))

    assert words(shown) == words("failed: " + errors["fake_badhook"])  # nothing lost


def test_setmem_units() -> None:
    out = ok("-c", URI, "--json", "setmem", "test", "256M")
    assert json.loads(out)["memory_kib"] == 256 * 1024


def test_create_and_define_from_json(tmp_path: pathlib.Path) -> None:
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({"name": "cli-vm", "memory": 131072, "vcpus": 1}))
    out = json.loads(ok("-c", URI, "--json", "create", str(cfg)))
    assert out["name"] == "cli-vm" and out["id"] is not None
    out = json.loads(ok("-c", URI, "--json", "define", str(cfg)))
    assert out["name"] == "cli-vm"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "memory": -1}))
    r = run("-c", URI, "create", str(bad))
    assert r.returncode == 1 and "memory (KiB) must be between 1 and" in r.stderr


def test_events_times_out_cleanly() -> None:
    r = run("-c", URI, "events", "--timeout", "0.3")
    assert r.returncode == 0 and r.stdout == ""


def test_explain_of_a_uri_nobody_opens_shows_who_declined() -> None:
    r = run("explain", "fake://admin:pw123@remote.example/")
    assert r.returncode == 1
    assert "DECLINED fake_good: fake_good serves local URIs only" in r.stdout
    assert "fake.broken" in r.stdout  # load failures too
    assert "pw123" not in r.stdout + r.stderr
    assert r.stderr.splitlines()[-1].startswith("error: no plugin can open fake://admin@remote.example/")


def test_prefer_and_exclude_from_the_command_line() -> None:
    out = json.loads(ok("--prefer", "domain_get_info=compete_a", "--json", "explain", "compete:///"))
    route = next(r for r in out["operations"] if r["operation"] == "domain_get_info")
    assert route["plugin"] == "compete_a" and "preferred" in route["note"]
    out = json.loads(ok("--exclude", "compete_b", "--json", "explain", "compete:///"))
    assert all(r["plugin"] != "compete_b" for r in out["operations"])
    r = run("--prefer", "=x", "explain", "compete:///")
    assert r.returncode == 1 and "expected [OP=]PLUGIN" in r.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "test:///default", "list", "--all"],
        ["--connect=test:///default", "--json", "dominfo", "web"],
        ["-ctest:///default", "setmem", "web", "512M"],
        ["--timeout", "5", "--prefer", "domain_get_info=test", "--exclude", "x", "-v", "-v", "nodeinfo"],
        ["--conn", "test:///default", "list"],  # an abbreviation the guess cannot follow
        ["-c", "list", "uri"],  # a URI that looks like a command
        ["--", "version"],  # argparse itself refuses this one: both must fail alike
        ["explain", "test:///default"],
        ["setvcpus", "web", "2", "--maximum"],
        ["drivers", "--json"],
        ["list", "--inactive", "--name", "--uuid"],
        ["-c", "test:///default", "vcpucount", "web", "--maximum"],
        ["dumpconfig", "web", "--json"],
        ["domstats", "--cpu-total", "--interface", "web", "test"],
        ["exporter", "-c", "test:///default", "--group", "cpu"],
        ["--version"],  # argparse exits: both must exit alike
        ["-c", "test:///default", "--version", "list"],
    ],
)
def test_quick_parse_equals_the_full_parser(argv: list[str]) -> None:
    """A cold start builds only the named subcommand's parser; the result must not differ."""
    from virtkit._cli import build_parser, parse_args

    try:
        full = build_parser().parse_args(argv)
    except SystemExit:
        with pytest.raises(SystemExit):
            parse_args(argv)
        return
    assert parse_args(argv) == full


@pytest.mark.parametrize(
    "argv",
    [["list", "--bogus"], ["setvcpus", "web", "two"], ["nosuchcommand"], ["--timeout", "x", "list"], []],
)
def test_quick_parse_errors_equal_the_full_parsers(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from virtkit._cli import build_parser, parse_args

    with pytest.raises(SystemExit) as quick:
        parse_args(argv)
    quick_err = capsys.readouterr().err
    with pytest.raises(SystemExit) as full:
        build_parser().parse_args(argv)
    assert quick.value.code == full.value.code == 2
    assert quick_err == capsys.readouterr().err
    assert quick_err.startswith("error: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["-h", "list"],
        ["--help"],
        ["-c", "test:///default", "--help", "list"],
        ["list", "-h"],
        ["vcpucount", "--help"],
        ["--version"],
    ],
)
def test_quick_parse_help_equals_the_full_parsers(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from virtkit import __version__
    from virtkit._cli import build_parser, parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    quick_out = capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert quick_out == capsys.readouterr().out
    assert "usage: virtkit" in quick_out or quick_out == __version__ + "\n"
