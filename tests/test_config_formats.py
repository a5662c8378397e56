"""Config files in formats plugins add (group virtkit.config_formats): chosen, never guessed in turn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import virtkit
from virtkit import _config_formats as formats

from .test_cli import URI, run


def _fake(tmp_path: Path, text: str = "name = from-fakefmt\nmemory = 131072\n") -> Path:
    f = tmp_path / "guest.conf"
    f.write_text(text)
    return f


def test_installed_formats_come_from_real_entry_points() -> None:
    assert {"fakefmt", "brokenfmt"} <= set(formats.config_formats())


def test_named_format_reads_the_file(tmp_path: Path) -> None:
    cfg = formats.load_domain_config(_fake(tmp_path), "fakefmt")
    assert (cfg.name, cfg.memory) == ("from-fakefmt", 131072)


def test_cli_creates_and_defines_from_a_named_format(tmp_path: Path) -> None:
    for cmd in ("create", "define"):
        r = run("-c", URI, "--json", cmd, "--format", "fakefmt", str(_fake(tmp_path)))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["name"] == "from-fakefmt"


def test_a_json_object_is_json_without_asking(tmp_path: Path) -> None:
    f = tmp_path / "guest.json"
    f.write_text(json.dumps({"name": "j", "memory": 1024}))
    assert formats.load_domain_config(f).name == "j"
    assert formats.load_domain_config(f, "json").name == "j"


def test_a_json_array_is_json_and_refused_as_json(tmp_path: Path) -> None:
    f = tmp_path / "guest.json"
    f.write_text("[1, 2]")
    with pytest.raises(virtkit.InvalidArgument, match="must be an object"):
        formats.load_domain_config(f)


def test_not_json_and_several_formats_installed_means_name_one(tmp_path: Path) -> None:
    with pytest.raises(virtkit.InvalidArgument, match=r"is not JSON: name its format \(.*fakefmt.*json"):
        formats.load_domain_config(_fake(tmp_path))
    r = run("-c", URI, "create", str(_fake(tmp_path)))
    assert r.returncode == 1 and "name its format" in r.stderr


def test_the_only_other_format_installed_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only = {"fakefmt": formats.config_formats()["fakefmt"]}
    monkeypatch.setattr(formats, "config_formats", lambda: only)
    assert formats.load_domain_config(_fake(tmp_path)).name == "from-fakefmt"


def test_no_other_format_installed_means_json_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "config_formats", dict)
    with pytest.raises(virtkit.InvalidArgument, match="Expecting value"):
        formats.load_domain_config(_fake(tmp_path))


def test_unknown_format_lists_the_installed_ones(tmp_path: Path) -> None:
    with pytest.raises(virtkit.InvalidArgument, match=r"unknown config format 'yaml' \(installed: .*fakefmt"):
        formats.load_domain_config(_fake(tmp_path), "yaml")


def test_a_broken_format_is_a_plugin_load_error(tmp_path: Path) -> None:
    with pytest.raises(virtkit.PluginLoadError, match=r"config format 'brokenfmt'.*failed to load"):
        formats.load_domain_config(_fake(tmp_path), "brokenfmt")
    r = run("-c", URI, "create", "--format", "brokenfmt", str(_fake(tmp_path)))
    assert r.returncode == 1 and r.stderr.startswith("error: config format 'brokenfmt'")


def test_a_loader_bug_is_a_driver_error_and_a_bad_file_its_own_message(tmp_path: Path) -> None:
    with pytest.raises(virtkit.DriverError, match="ValueError: a loader bug"):
        formats.load_domain_config(_fake(tmp_path, "explode = 1\n"), "fakefmt")
    with pytest.raises(virtkit.InvalidArgument, match="line 1: expected key = value"):
        formats.load_domain_config(_fake(tmp_path, "nonsense\n"), "fakefmt")


def test_a_fifo_is_refused_before_any_format_is_chosen(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "guest.cfg"
    os.mkfifo(fifo)
    with pytest.raises(virtkit.InvalidArgument, match="is not a regular file"):
        formats.load_domain_config(fifo)
