"""The rules for what enters: names, sizes, timeouts and config files, one rule for every backend."""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import pytest

import virtkit
from virtkit import InvalidArgument


@pytest.mark.parametrize("name", ["test", "Domain-0", "a", "web.example.com", "vm_1+x", "9lives", "x" * 64])
def test_good_names_pass(name: str) -> None:
    assert virtkit.check_domain_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "/etc", "a\x00b", "a\nb", "x\x1b[31mred", "-rf", ".hidden", "x" * 65, "é", "a b", 5, None],
)
def test_bad_names_are_invalid_argument(name: object) -> None:
    with pytest.raises(InvalidArgument, match="invalid domain name"):
        virtkit.check_domain_name(name)


@pytest.mark.parametrize("value", [0, -1, virtkit.MAX_MEMORY_KIB + 1, 10**4000, True, 1.5, "512", None])
def test_memory_out_of_bounds(value: object) -> None:
    with pytest.raises(InvalidArgument, match=r"memory \(KiB\) must be"):
        virtkit.check_memory(value)


def test_memory_message_stays_short_for_huge_numbers() -> None:
    with pytest.raises(InvalidArgument) as info:
        virtkit.check_memory(10**4000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("value", [0, -3, virtkit.MAX_VCPUS + 1, False])
def test_vcpus_out_of_bounds(value: object) -> None:
    with pytest.raises(InvalidArgument, match="vcpus must be"):
        virtkit.check_vcpus(value)


@pytest.mark.parametrize(
    "value", [0, -1, -0.0, math.nan, math.inf, -math.inf, 10**400, 1e308, virtkit.MAX_TIMEOUT * 2, "2", None, True]
)
def test_bad_timeouts(value: object) -> None:
    with pytest.raises(InvalidArgument, match="timeout must be"):
        virtkit.check_timeout(value)


@pytest.mark.parametrize("value", [0.001, 1, 2.5, 86400, virtkit.MAX_TIMEOUT])
def test_good_timeouts(value: float) -> None:
    assert virtkit.check_timeout(value) == float(value)


# -- config files ------------------------------------------------------------------------------


def test_regular_file_is_read(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text('{"a": 1}')
    assert virtkit.read_config_file(f) == '{"a": 1}'
    assert virtkit.load_json_file(f) == {"a": 1}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="No such file"):
        virtkit.read_config_file(tmp_path / "absent.json")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_refused_before_reading(device: str) -> None:
    with pytest.raises(InvalidArgument, match="is not a regular file"):
        virtkit.read_config_file(device)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="is not a regular file"):
        virtkit.read_config_file(tmp_path)


def test_fifo_without_writer_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    result: list[BaseException] = []
    t = threading.Thread(target=lambda: _capture(result, fifo), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert isinstance(result[0], InvalidArgument) and "is not a regular file" in str(result[0])


def test_a_lower_limit_is_kept(tmp_path: Path) -> None:
    f = tmp_path / "small.cfg"
    f.write_text("x" * 100)
    assert virtkit.read_config_file(f, limit=100) == "x" * 100
    with pytest.raises(InvalidArgument, match="larger than 99 bytes"):
        virtkit.read_config_file(f, limit=99)
    f.write_bytes(b"x" * (1 << 20) + b"x")
    with pytest.raises(InvalidArgument, match="larger than 1 MiB"):
        virtkit.read_config_file(f, "entry", limit=1 << 20)


def _capture(out: list[BaseException], path: Path) -> None:
    try:
        virtkit.read_config_file(path)
    except Exception as exc:  # noqa: BLE001 - the test checks which one it is
        out.append(exc)


def test_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(virtkit.MAX_CONFIG_BYTES + 1)  # sparse: no 10 MiB written
    with pytest.raises(InvalidArgument, match="larger than 10 MiB"):
        virtkit.read_config_file(big)
    exact = tmp_path / "exact.json"
    with exact.open("wb") as f:
        f.truncate(virtkit.MAX_CONFIG_BYTES)
    assert len(virtkit.read_config_file(exact)) == virtkit.MAX_CONFIG_BYTES


def test_non_utf8_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "latin1.json"
    f.write_bytes(b'{"name": "h\xe9"}')
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        virtkit.read_config_file(f)


# -- strict JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"name": "a", "name": "b"}', "duplicate key 'name'"),
        ('{"a": {"x": 1, "x": 2}}', "duplicate key 'x'"),
        ('{"memory": NaN}', "NaN is not a JSON number"),
        ('{"memory": Infinity}', "Infinity is not a JSON number"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
        ('{"a":' * 40 + "1" + "}" * 40, "nested deeper than"),
        ("{nope", "Expecting property name"),
        ('{"memory": ' + "9" * 5000 + "}", "bad config"),
        ("", "Expecting value"),
    ],
)
def test_parse_json_refuses(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        virtkit.parse_json(text)


def test_parse_json_accepts_the_limit() -> None:
    text = '{"a":' * (virtkit._input.MAX_CONFIG_DEPTH - 1) + "[1]" + "}" * (virtkit._input.MAX_CONFIG_DEPTH - 1)
    assert virtkit.parse_json(text)


# -- DomainConfig.from_dict -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"name": "a/b", "memory": 1024}, "invalid domain name"),
        ({"name": "..", "memory": 1024}, "invalid domain name"),
        ({"name": "x\x1b[2J", "memory": 1024}, "invalid domain name"),
        ({"name": "ok", "memory": int("9" * 4000)}, r"memory \(KiB\) must be between"),
        ({"name": "ok", "memory": 1024, "vcpus": 10**6}, "vcpus must be between"),
        ({"name": "ok", "memory": 1024, "uuid": "nope"}, "is not a UUID"),
        ({"name": "ok", "memory": 1024, "devices": {"a": 1}}, "'devices' must be a list"),
        ({"name": "ok", "memory": 1024, "extra": []}, "'extra' must be an object"),
        ({"name": "ok", "memory": 1024, "kernel": 5}, "'kernel' must be a string"),
        ({"name": "ok", "memory": 1024, "os_type": None}, "'os_type' must be a string"),
        ({"memory": 1024}, "needs a non-empty string 'name'"),
        ({"name": "ok"}, "needs 'memory'"),
        ([1, 2], "must be an object"),
    ],
)
def test_from_dict_refuses(data: object, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        virtkit.DomainConfig.from_dict(data)  # type: ignore[arg-type]


def test_invalid_argument_is_still_a_value_error() -> None:
    """Code that guarded DomainConfig.from_dict with ``except ValueError`` keeps working."""
    with pytest.raises(ValueError, match="invalid domain name"):
        virtkit.DomainConfig.from_dict(json.loads('{"name": "", "memory": 1}'))
