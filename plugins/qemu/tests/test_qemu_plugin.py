"""The plugin's packaging and negotiation, and the state directory: no guest needed."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import uuid

import pytest

import virtkit
import virtkit_qemu
from virtkit_qemu import Plugin, state_root


def test_entry_point_is_the_scheme() -> None:
    eps = [ep for ep in importlib.metadata.entry_points(group="virtkit.drivers") if ep.name == "qemu"]
    assert [ep.value for ep in eps] == ["virtkit_qemu:plugin"]
    assert eps[0].load() is virtkit_qemu.plugin


def test_declines_without_qemu_binary(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no qemu-system-* anywhere
    why = Plugin().can_handle(virtkit.parse_uri("qemu:///session"))
    assert not why
    assert isinstance(why, virtkit.Declined) and "qemu-system" in why.reason
    with pytest.raises(virtkit.NoDriver):
        virtkit.open("qemu:///session")


@pytest.mark.parametrize("uri", ["qemu://otherhost/session", "qemu+ssh:///session", "xen:///"])
def test_declines_what_is_not_local_qemu(uri: str) -> None:
    assert not Plugin().can_handle(virtkit.parse_uri(uri))


@pytest.mark.parametrize("uri", ["qemu:///", "qemu:///sessions", "qemu:///session?x=1"])
def test_bad_paths_are_invalid(uri: str, lab: object) -> None:
    if virtkit_qemu.find_qemu() is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    with pytest.raises(virtkit.InvalidURI):
        virtkit.open(uri)


def test_state_roots(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_root("/session") == tmp_path / "virtkit" / "qemu"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_root("/session") == pathlib.Path.home() / ".local" / "state" / "virtkit" / "qemu"
    assert state_root("/system") == pathlib.Path("/var/lib/virtkit/qemu")


def _fake_config(tmp: pathlib.Path, name: str) -> virtkit.DomainConfig:
    kernel = tmp / "vmlinuz"
    kernel.write_bytes(b"not booted by these tests")
    return virtkit.DomainConfig(name=name, memory=65536, kernel=str(kernel))


def test_define_persists_across_connections(lab: object, tmp_path: pathlib.Path) -> None:
    if virtkit_qemu.find_qemu() is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    with virtkit.open("qemu:///session") as conn:
        dom = conn.define(_fake_config(tmp_path, "keep"))
        assert dom.id is None
        assert conn.list_defined_domains() == ["keep"]
    with virtkit.open("qemu:///session") as conn:
        again = conn.lookup_by_name("keep")
        assert again.uuid == dom.uuid
        assert conn.lookup_by_uuid(dom.uuid).name == "keep"
        assert again.info().state is virtkit.DomainState.SHUTOFF
        assert again.info().memory == 65536
        assert again.is_persistent() is True
        again.undefine()
        assert conn.list_defined_domains() == []
        with pytest.raises(virtkit.NoSuchDomain):
            conn.lookup_by_name("keep")


def test_bad_configs_are_refused(lab: object, tmp_path: pathlib.Path) -> None:
    if virtkit_qemu.find_qemu() is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    with virtkit.open("qemu:///session") as conn:
        with pytest.raises(virtkit.InvalidArgument, match="kernel or a disk"):
            conn.create(virtkit.DomainConfig(name="nokernel", memory=65536))
        with pytest.raises(virtkit.InvalidArgument, match="domain name"):
            conn.define(_fake_config(tmp_path, "../escape"))
        with pytest.raises(virtkit.InvalidArgument, match="no such file"):
            conn.define(virtkit.DomainConfig(name="x", memory=65536, kernel=str(tmp_path / "missing")))
        assert conn.list_defined_domains() == []


def test_corrupted_entries_are_named_and_isolated(lab: object, tmp_path: pathlib.Path) -> None:
    if virtkit_qemu.find_qemu() is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    with virtkit.open("qemu:///session") as conn:
        good = conn.define(_fake_config(tmp_path, "good"))
    root = state_root("/session")
    bad_defined = root / "defined" / "broken.json"
    bad_defined.write_text("{not json")
    bad_run = root / "run" / "77"
    bad_run.mkdir()
    (bad_run / "domain.json").write_text(json.dumps({"config": {"name": "half"}}))  # no memory, no uuid
    (bad_run / "started").touch()
    with virtkit.open("qemu:///session") as conn:
        with pytest.raises(virtkit.ProtocolError, match=r"corrupted state entry .*broken\.json"):
            conn.lookup_by_name("broken")
        with pytest.raises(virtkit.ProtocolError, match=r"corrupted state entry .*run/77/domain.json"):
            conn.lookup_by_id(77)
        # Everything else keeps working.
        assert conn.list_domains() == []
        assert conn.lookup_by_name("good").uuid == good.uuid
        assert conn.lookup_by_uuid(good.uuid).name == "good"
        with pytest.raises(virtkit.NoSuchDomain):
            conn.lookup_by_uuid(uuid.uuid4())
