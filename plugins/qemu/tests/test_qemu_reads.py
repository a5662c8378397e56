"""Reads create nothing (issue 12, item 8): `virtkit list` without -c used to create the qemu
state directory, because opening the driver made it. Probing, opening, listing and looking up
leave HOME and the XDG directories as they were; the first define (a mutation) creates it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import uuid

import pytest

import virtkit
from virtkit_qemu import Plugin, find_qemu

pytestmark = pytest.mark.skipif(find_qemu() is None, reason="qemu-system-x86_64 is not installed")


def _tree(root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def empty_home(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """HOME and the XDG state directory empty; the core's discovery cache kept elsewhere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VIRTKIT_QEMU_SYSTEM_DIR", str(home / "system"))
    return home


def test_probing_opening_and_reading_create_nothing(empty_home: pathlib.Path) -> None:
    uris = ["qemu:///session"] + (["qemu:///system"] if os.geteuid() == 0 else [])
    for uri in uris:
        parsed = virtkit.parse_uri(uri)
        assert Plugin().can_handle(parsed) is True
        Plugin().priority(parsed)
        with virtkit.open(uri) as conn:
            assert conn.list_domains() == []
            assert conn.list_defined_domains() == []
            assert conn.domains(all=True) == []
            for lookup in (lambda: conn.lookup_by_name("nope"), lambda: conn.lookup_by_id(1)):
                with pytest.raises(virtkit.NoSuchDomain):
                    lookup()
            with pytest.raises(virtkit.NoSuchDomain):
                conn.lookup_by_uuid(uuid.uuid4())
            conn.explain().render()
        assert _tree(empty_home) == [], uri


def test_the_first_define_creates_the_state_directory(empty_home: pathlib.Path, tmp_path: pathlib.Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"never booted")
    with virtkit.open("qemu:///session") as conn:
        conn.define(virtkit.DomainConfig(name="d1", memory=65536, kernel=str(kernel)))
        assert conn.list_defined_domains() == ["d1"]
    root = empty_home / ".local" / "state" / "virtkit" / "qemu"
    assert (root / "defined" / "d1.json").is_file()
    assert root.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("args", [["list"], ["list", "--all"], ["-c", "qemu:///session", "list", "--all"]])
def test_the_cli_listing_creates_nothing(args: list[str], empty_home: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VIRTKIT_DEFAULT_URI"}
    cli = pathlib.Path(sys.executable).parent / "virtkit"
    proc = subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _tree(empty_home) == []
