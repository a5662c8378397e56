"""The CLI's answer to bad input: one typed `error:` line and exit 1 (2 for usage), never a
traceback or `internal error`, never a password, never a hang (issue 12)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import virtkit
from virtkit import DomainRef

from .test_cli import URI, VIRTKIT, run


def _typed_failure(r: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    return r.stderr


@pytest.mark.parametrize(
    ("uri", "secret"),
    [
        ("xen://u:Zq9/cret@127.0.0.1:1/", "Zq9/cret"),
        ("xen://u:Qz?Vy@127.0.0.1:1/", "Qz?Vy"),
        ("xen://u:17/cret@127.0.0.1:1/", "17/cret"),  # would parse, with 17 as the port
        ("xen://u:hunter2@127.0.0.1:1/", "hunter2"),  # parses: fails at the connection
    ],
)
@pytest.mark.parametrize("extra", [[], ["--json"], ["-vv"], ["-vv", "--json"]])
def test_password_is_never_printed(uri: str, secret: str, extra: list[str]) -> None:
    for cmd in (["list"], ["explain"], ["uri"]):
        r = run(*extra, "-c", uri, "--timeout", "2", *cmd)
        assert r.returncode == 1
        assert secret not in r.stdout + r.stderr
        assert secret.split("/")[0].split("?")[0] not in r.stdout + r.stderr


def test_unicode_digit_is_not_an_id() -> None:
    err = _typed_failure(run("-c", URI, "dominfo", "²"))
    assert err.startswith("error: no domain named '²'")


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf", "soon", "1e308"])
@pytest.mark.parametrize("uri", [URI, "xen://127.0.0.1:1/"])
def test_bad_timeouts_are_usage_errors(value: str, uri: str) -> None:
    err = _typed_failure(run(f"--timeout={value}", "-c", uri, "list"), 2)
    assert "invalid timeout" in err


@pytest.mark.parametrize("value", ["-1", "0", "nan", "x"])
def test_bad_event_timeouts_are_usage_errors(value: str) -> None:
    assert "invalid timeout" in _typed_failure(run("-c", URI, "events", f"--timeout={value}"), 2)


def test_events_with_infinite_timeout_listen_until_interrupted() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}
    p = subprocess.Popen(
        [VIRTKIT, "-c", URI, "events", "--timeout", "inf"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        time.sleep(1.5)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=10)
    finally:
        p.kill()
    assert p.returncode == 130 and b"Traceback" not in err


def test_full_disk_is_a_typed_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}
    with open("/dev/full", "w") as full:
        r = subprocess.run([VIRTKIT, "-c", URI, "list"], stdout=full, stderr=subprocess.PIPE, text=True, env=env)
    err = _typed_failure(r)
    assert err == "error: cannot write output: No space left on device\n"


def test_closed_pipe_is_quiet() -> None:
    p = subprocess.Popen([VIRTKIT, "-c", URI, "list", "--all"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.close()  # the reader went away before the first line
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0 and err == b""


@pytest.mark.parametrize("size", ["99999999999999999999999", "9" * 4000, "2000000T", "1" + "0" * 40 + "K"])
def test_absurd_sizes_are_refused(size: str) -> None:
    err = _typed_failure(run("-c", URI, "setmaxmem", "test", size))
    assert err.startswith("error: ") and len(err) < 300


def test_absurd_vcpus_are_refused() -> None:
    assert "vcpus must be between" in _typed_failure(run("-c", URI, "setvcpus", "test", "99999999999"))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
@pytest.mark.parametrize("cmd", ["create", "define"])
def test_devices_as_configs_are_refused(device: str, cmd: str) -> None:
    assert "is not a regular file" in _typed_failure(run("-c", URI, cmd, device, timeout=20))


def test_devices_as_test_host_files_are_refused() -> None:
    assert "is not a regular file" in _typed_failure(run("-c", "test:///dev/zero", "list", timeout=20))


def test_fifo_as_config_or_host_file_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "host.json"
    os.mkfifo(fifo)
    assert "is not a regular file" in _typed_failure(run("-c", URI, "create", str(fifo), timeout=20))
    assert "is not a regular file" in _typed_failure(run("-c", f"test://{fifo}", "list", timeout=20))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
        ('{"name": "a", "name": "b", "memory": 1024}', "duplicate key 'name'"),
        ('{"name": "ok", "memory": ' + "9" * 4000 + "}", "memory (KiB) must be between"),
        ('{"name": "x\\u001b[31mred", "memory": 1024}', "invalid domain name 'x\\x1b[31mred'"),
        ('{"name": "a/b", "memory": 1024}', "invalid domain name 'a/b'"),
    ],
)
def test_bad_json_configs(tmp_path: Path, text: str, why: str) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(text)
    for cmd in ("create", "define"):
        assert why in _typed_failure(run("-c", URI, cmd, str(cfg)))
    host = tmp_path / "host.json"
    host.write_text('{"domains": [' + text + "]}" if text.startswith("{") else text)
    _typed_failure(run("-c", f"test://{host}", "list"))


# -- names from a backend are shown, never interpreted by the terminal ---------------------------

EVIL = "x\x1b[2J\x1b[31mred\nId: -9\r\x07"


def test_control_characters_from_a_backend_are_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from virtkit import _cli
    from virtkit_fakes import _memory

    real_init = _memory.MemoryDriver.__init__

    def evil_init(self: _memory.MemoryDriver, label: str) -> None:
        real_init(self, label)
        self.doms[1] = DomainRef(EVIL, uuid.UUID(int=1), 1)

    monkeypatch.setattr(_memory.MemoryDriver, "__init__", evil_init)
    for argv in (["list"], ["dominfo", "1"], ["suspend", "1"]):
        capsys.readouterr()
        code = _cli.main(["-c", "fake:///", *argv])
        out, err = capsys.readouterr()
        for text in (out, err):
            assert "\x1b" not in text and "\r" not in text and "\x07" not in text
        assert "\\x1b[2J\\x1b[31mred\\nId: -9\\r\\x07" in out + err, (code, out, err)
        assert not any(line.startswith("Id: -9") for line in out.splitlines())
    # JSON output escapes them the JSON way and stays one valid document
    capsys.readouterr()
    assert _cli.main(["-c", "fake:///", "--json", "list"]) == 0
    assert EVIL in [d["name"] for d in json.loads(capsys.readouterr().out)]


def test_exit_codes_are_documented() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for code in ("`0`", "`1`", "`2`", "`70`", "`130`"):
        assert code in readme.split("## Errors", 1)[1].split("\n## ", 1)[0]
    assert virtkit.InvalidArgument.__doc__
    assert sys.executable
