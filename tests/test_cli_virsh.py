"""What a virsh user expects of `virtkit` (issue 14, item 6): --version, `python -m virtkit`,
help for every command and argument, list --name/--inactive/--uuid, domid/domname/domuuid,
vcpucount, dumpconfig (round trip through create/define), dominfo's Persistent and Autostart
lines and the autostart command (catalogue 1.2), one line
for a failed open, and one command table behind the parser, the start-up guess and dispatch."""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys

import pytest

import virtkit

from .test_cli import URI, ok, run

WEB_UUID = "6695eb01-f6a4-8304-79aa-97f2502e1940"
DEFINED_UUID = "6695eb01-f6a4-8304-79aa-97f2502e1942"


def test_version_option_prints_the_library_version() -> None:
    assert ok("--version") == virtkit.__version__ + "\n"


def test_python_dash_m_virtkit_is_the_cli() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "virtkit", "-c", URI, "domname", "1"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stdout == "test\n", r.stderr
    r = subprocess.run([sys.executable, "-m", "virtkit", "frobnicate"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: ")


# -- help ----------------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_and_argument_has_help() -> None:
    from virtkit._cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, action.option_strings or action.dest
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helped = {choice.dest for choice in sub._choices_actions}
    for name, sp in _subparsers(parser).items():
        assert name in helped and sp.description, name
        for action in sp._actions:
            shown = action.option_strings or [action.metavar or action.dest]
            assert action.help and action.help != argparse.SUPPRESS, (name, shown)


def test_command_help_describes_each_argument() -> None:
    out = ok("vcpucount", "--help")
    assert "DOM         domain id, name or UUID" in out
    assert "--maximum" in out and "--active" in out and "live values" in out
    assert "print names only" in ok("list", "--help")


def test_one_table_drives_the_parser_the_guess_and_dispatch() -> None:
    from virtkit import _cli_parser, _cli_table

    names = [c.name for c in _cli_table.COMMANDS]
    assert len(names) == len(set(names))
    assert list(_subparsers(_cli_parser.build_parser())) == names
    for cmd in _cli_table.COMMANDS:
        assert _cli_parser.guess_command(["-c", URI, cmd.name]) == cmd.name
        assert list(_subparsers(_cli_parser.build_parser(cmd.name))) == [cmd.name]
        assert callable(cmd.load()), cmd.handler
    valued = {"-c", "--connect", "--hosts", "--parallel", "--timeout", "--prefer", "--exclude"}
    assert valued == _cli_table.VALUED  # the global options the start-up guess skips the value of


# -- list ----------------------------------------------------------------------------------------


def test_list_name_uuid_inactive_as_virsh() -> None:
    assert ok("-c", URI, "list", "--name") == "test\nweb\npaused-vm\n"
    assert ok("-c", URI, "list", "--name", "--all").splitlines()[-1] == "defined-vm"
    assert ok("-c", URI, "list", "--inactive", "--name") == "defined-vm\n"
    assert ok("-c", URI, "list", "--inactive", "--all", "--name") == ok("-c", URI, "list", "--all", "--name")
    assert ok("-c", URI, "list", "--uuid").splitlines()[1] == WEB_UUID
    assert ok("-c", URI, "list", "--uuid", "--name", "--inactive") == f"{DEFINED_UUID} defined-vm\n"
    table = ok("-c", URI, "list", "--inactive").splitlines()
    assert table[0].split() == ["Id", "Name", "State"] and [r.split() for r in table[2:]] == [
        ["-", "defined-vm", "shut", "off"]
    ]
    data = json.loads(ok("-c", URI, "--json", "list", "--inactive", "--name"))
    assert data == [{"id": None, "name": "defined-vm", "uuid": DEFINED_UUID, "state": "shut off"}]


def test_listing_without_the_bulk_stats_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalogue path (a backend that serves no stats) selects as the bulk path does."""
    from virtkit._cli import listing

    with virtkit.open(URI) as conn:
        bulk = {(a, i): listing(conn, a, i) for a in (False, True) for i in (False, True)}
        monkeypatch.setattr(type(conn), "served_by", lambda self, op: None)
        for (a, i), expected in bulk.items():
            assert listing(conn, a, i) == expected
    assert [ref.name for ref, _ in bulk[False, True]] == ["defined-vm"]


def test_list_name_on_several_hosts() -> None:
    lines = ok("-c", URI, "-c", URI, "list", "--uuid", "--name", "--inactive").splitlines()
    assert lines[0].split() == ["HOST", "UUID", "Name"]
    assert lines[2].split() == [URI, DEFINED_UUID, "defined-vm"] and len(lines) == 4


# -- domid, domname, domuuid, vcpucount, dominfo ---------------------------------------------------


def test_domid_domname_domuuid() -> None:
    assert ok("-c", URI, "domid", "web") == "2\n"
    assert ok("-c", URI, "domid", "defined-vm") == "-\n"
    assert ok("-c", URI, "domname", "2") == "web\n"
    assert ok("-c", URI, "domname", WEB_UUID) == "web\n"
    assert ok("-c", URI, "domuuid", "web") == WEB_UUID + "\n"
    assert ok("-c", URI, "domuuid", "2") == WEB_UUID + "\n"
    assert json.loads(ok("-c", URI, "--json", "domid", "defined-vm")) == {"name": "defined-vm", "id": None}
    r = run("-c", URI, "domid", "nosuch")
    assert r.returncode == 1 and r.stderr.startswith("error: ")


def test_vcpucount_rows_as_virsh() -> None:
    # virsh's "%-12s %-12s %3d": live rows for a running domain, config rows for an inactive one
    assert ok("-c", URI, "vcpucount", "web") == "maximum      live           8\ncurrent      live           4\n"
    assert ok("-c", URI, "vcpucount", "defined-vm") == "maximum      config         2\ncurrent      config         1\n"
    assert ok("-c", URI, "vcpucount", "web", "--maximum") == "8\n"
    assert ok("-c", URI, "vcpucount", "web", "--active") == "4\n"
    data = json.loads(ok("-c", URI, "--json", "vcpucount", "defined-vm"))
    assert data == {"name": "defined-vm", "scope": "config", "maximum": 2, "current": 1}
    r = run("-c", URI, "vcpucount", "web", "--maximum", "--active")
    assert r.returncode == 1 and "mutually exclusive" in r.stderr


def test_vcpucount_leaves_out_what_the_backend_cannot_tell(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from virtkit import _cli

    served = virtkit.Connection.served_by
    gone = {"domain_get_vcpus", "domain_get_config"}
    monkeypatch.setattr(virtkit.Connection, "served_by", lambda self, op: None if op in gone else served(self, op))
    assert _cli.main(["-c", URI, "vcpucount", "web"]) == 0
    assert capsys.readouterr().out == "current      live           4\n"
    assert _cli.main(["-c", URI, "vcpucount", "web", "--maximum"]) == 1
    assert capsys.readouterr().err.startswith("error: this connection cannot tell")
    gone.discard("domain_get_config")  # the config still tells the maximum
    assert _cli.main(["-c", URI, "vcpucount", "web"]) == 0
    assert capsys.readouterr().out == "maximum      live           8\ncurrent      live           4\n"


def test_vcpucount_matches_virsh_for_libvirts_test_domain() -> None:
    """libvirt's test:///default has a running 'test' domain with 2 vcpus, as ours does."""
    virsh = pytest.importorskip("shutil").which("virsh")
    if not virsh:
        pytest.skip("virsh not installed")
    r = subprocess.run([virsh, "-c", URI, "vcpucount", "test"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"virsh cannot open test:///default here: {r.stderr.strip()}")
    live = [line for line in r.stdout.splitlines() if " live " in line]
    assert "\n".join(live) + "\n" == ok("-c", URI, "vcpucount", "test")


def _dominfo(*args: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in ok(*args).splitlines())


def test_dominfo_persistent_and_autostart_as_virsh_prints_them() -> None:
    ours = _dominfo("-c", URI, "dominfo", "test")
    assert (ours["Persistent"].strip(), ours["Autostart"].strip()) == ("yes", "disable")
    assert list(ours)[-2:] == ["Persistent", "Autostart"]  # virsh's order, after Used memory
    virsh = pytest.importorskip("shutil").which("virsh")
    if virsh:  # libvirt's own test:///default: the same two lines for its 'test' domain
        r = subprocess.run([virsh, "-c", URI, "dominfo", "test"], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            theirs = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)
            assert (theirs["Persistent"], theirs["Autostart"]) == (ours["Persistent"], ours["Autostart"])


def test_dominfo_of_a_transient_and_an_autostarting_domain(tmp_path: pathlib.Path) -> None:
    host = tmp_path / "host.json"
    host.write_text(
        json.dumps(
            {
                "domains": [
                    {"name": "once", "memory": 65536, "persistent": False},
                    {"name": "boots", "state": "shutoff", "memory": 65536, "autostart": True},
                ]
            }
        )
    )
    once = _dominfo("-c", f"test://{host}", "dominfo", "once")
    assert (once["Persistent"].strip(), once["Autostart"].strip()) == ("no", "disable")
    data = json.loads(ok("-c", f"test://{host}", "--json", "dominfo", "boots"))
    assert (data["persistent"], data["autostart"]) == (True, True)
    r = run("-c", f"test://{host}", "autostart", "once")
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "transient" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1


def test_dominfo_leaves_out_what_no_plugin_serves() -> None:
    """Without the 1.2 operations, a defined domain is still persistent by the catalogue's contract;
    a running one's persistence and any domain's autostart are left out."""
    without = ("--exclude", "domain_is_persistent=test", "--exclude", "domain_get_autostart=test")
    defined = _dominfo("-c", URI, *without, "dominfo", "defined-vm")
    assert defined["Persistent"].strip() == "yes" and "Autostart" not in defined
    running = _dominfo("-c", URI, *without, "dominfo", "web")
    assert "Persistent" not in running and "Autostart" not in running
    assert "persistent" not in json.loads(ok("-c", URI, *without, "--json", "dominfo", "web"))


def test_autostart_marks_and_unmarks_as_virsh_says_it() -> None:
    assert ok("-c", URI, "autostart", "test") == "Domain 'test' marked as autostarted\n"
    assert ok("-c", URI, "autostart", "--disable", "web") == "Domain 'web' unmarked as autostarted\n"
    assert json.loads(ok("-c", URI, "--json", "autostart", "--disable", "test")) == {"name": "test", "autostart": False}
    r = run("-r", "-c", URI, "autostart", "test")
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "read-only" in r.stderr, r.stderr


# -- dumpconfig ----------------------------------------------------------------------------------


def test_dumpconfig_round_trips_through_define_and_create(tmp_path: pathlib.Path) -> None:
    configs = {}
    for name in ("test", "web", "paused-vm", "defined-vm"):
        text = ok("-c", URI, "dumpconfig", name)
        configs[name] = json.loads(text)
        assert json.loads(ok("-c", URI, "--json", "dumpconfig", name)) == configs[name]
    web = configs["web"]
    assert web["uuid"] == WEB_UUID and web["max_vcpus"] == 8 and web["devices"][0]["target"] == "xvda"

    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    for name, cfg in configs.items():
        path = tmp_path / f"{name}.json"
        path.write_text(ok("-c", URI, "dumpconfig", name))
        defined = json.loads(ok("-c", f"test://{empty}", "--json", "define", str(path)))
        assert defined == {"name": name, "uuid": cfg["uuid"]}
        created = json.loads(ok("-c", f"test://{empty}", "--json", "create", str(path)))
        assert created["name"] == name and created["uuid"] == cfg["uuid"] and created["id"] is not None

    # a host made of the dumped configs dumps them again, unchanged
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"domains": list(configs.values())}))
    for name, cfg in configs.items():
        assert json.loads(ok("-c", f"test://{host}", "dumpconfig", name)) == cfg


def test_dumpconfig_text_is_json_even_for_odd_characters(tmp_path: pathlib.Path) -> None:
    """Paths with control or non-ASCII characters come out as JSON escapes, never raw."""
    odd = {"name": "odd", "memory": 1024, "cmdline": "a\x1b[31m\u2028é", "devices": [{"path": "/tmp/\x07x"}]}
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"domains": [odd]}))
    out = ok("-c", f"test://{host}", "dumpconfig", "odd")
    assert out.isascii() and "\x1b" not in out and "\x07" not in out
    cfg = json.loads(out)
    assert cfg["cmdline"] == odd["cmdline"] and cfg["devices"] == odd["devices"]


# -- one line for a failed open --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("fake://x/", "error: no plugin can open fake://x/ ("),  # broken plugins among the fakes
        ("test:///nonexistent.json", "error: cannot read test host file"),
    ],
)
def test_a_failed_open_is_one_line(uri: str, message: str) -> None:
    r = run("-c", uri, "list")
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(message), r.stderr
    assert "fake.broken" in r.stderr or "fake" not in uri  # the error line names the broken plugin
    r = run("-v", "-c", uri, "list")  # -v still logs every attempt
    assert r.returncode == 1 and "virtkit: WARNING: open " in r.stderr
    assert r.stderr.splitlines()[-1].startswith(message)


def test_a_broken_plugin_that_did_not_stop_the_open_warns_once() -> None:
    r = run("-c", "fake:///", "list")
    assert r.returncode == 0
    warnings = r.stderr.splitlines()
    assert any("ERROR fake.broken failed to load" in w for w in warnings)
    assert all(w.startswith("virtkit: WARNING: open fake:///: ERROR ") for w in warnings)
    assert len(warnings) == len(set(warnings))


def test_several_hosts_a_failed_open_is_its_error_line_only() -> None:
    r = run("-c", "fake://x/", "-c", "fake:///", "-c", "fake:///", "list", "--name")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0].split() == ["HOST", "Name"]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    warnings = [line for line in r.stderr.splitlines() if not line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: fake://x/: no plugin can open")
    assert warnings and all(re.match(r"virtkit: WARNING: open fake:///: ERROR ", w) for w in warnings)
    assert len(warnings) == len(set(warnings))  # two hosts of fake:///, each warning once
