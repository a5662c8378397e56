"""The state directory: atomic definitions, crash leftovers, corruption, the lock."""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path

import pytest

import virtkit
from virtkit import DomainConfig, ProtocolError
from virtkit_xen_libxl._state import State


def cfg(name: str = "a", **kw: object) -> DomainConfig:
    return DomainConfig(name=name, memory=131072, uuid=uuid.uuid4(), kernel="/k", **kw)  # type: ignore[arg-type]


def test_write_read_by_name_and_uuid(tmp_path: Path) -> None:
    st = State(tmp_path)
    c = cfg()
    rec = st.write(c)
    assert rec.path == tmp_path / "domains" / f"{c.uuid}.json"
    other = State(tmp_path)  # another connection sees it
    assert other.by_name("a") is not None and other.by_name("a").config == c  # type: ignore[union-attr]
    assert other.by_uuid(c.uuid).config == c  # type: ignore[arg-type, union-attr]
    assert [r.config.name for r in other.records()] == ["a"]
    st.remove(rec)
    assert other.by_name("a") is None and other.records() == []


def test_rewrite_replaces_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    st = State(tmp_path)
    c = cfg()
    st.write(c)
    st.write(DomainConfig(**{**c.to_dict(), "uuid": c.uuid, "memory": 262144}))
    assert st.by_uuid(c.uuid).config.memory == 262144  # type: ignore[arg-type, union-attr]
    assert sorted(os.listdir(tmp_path / "domains")) == [f"{c.uuid}.json"]


def test_a_crash_mid_write_keeps_the_old_definition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = State(tmp_path)
    c = cfg()
    st.write(c)

    def crash(*_a: object) -> None:
        raise OSError(5, "Input/output error")  # the rename never happens

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        st.write(DomainConfig(**{**c.to_dict(), "uuid": c.uuid, "memory": 262144}))
    monkeypatch.undo()
    assert State(tmp_path).by_uuid(c.uuid).config.memory == 131072  # type: ignore[arg-type, union-attr]
    assert not [n for n in os.listdir(tmp_path / "domains") if n.endswith(".tmp")]


def test_leftover_temporaries_are_ignored_then_swept(tmp_path: Path) -> None:
    st = State(tmp_path)
    c = cfg()
    st.write(c)
    torn = tmp_path / "domains" / f".{uuid.uuid4()}.99.1.tmp"
    torn.write_text('{"config": {"name": "half')  # a writer killed mid-write
    assert [r.config.name for r in State(tmp_path).records()] == ["a"]
    os.utime(torn, (1, 1))
    st.sweep()
    assert not torn.exists()


def test_corrupted_definition_is_a_protocol_error_and_skipped_in_listings(tmp_path: Path) -> None:
    st = State(tmp_path)
    good, bad = cfg("good"), cfg("bad")
    st.write(good)
    st.write(bad)
    (tmp_path / "domains" / f"{bad.uuid}.json").write_text("{not json")
    with pytest.raises(ProtocolError, match="corrupted definition"):
        st.by_uuid(bad.uuid)  # type: ignore[arg-type]
    assert [r.config.name for r in st.records()] == ["good"]
    moved = tmp_path / "domains" / f"{uuid.uuid4()}.json"
    moved.write_text(json.dumps({"config": good.to_dict()}))
    with pytest.raises(ProtocolError, match="does not match"):
        st.by_uuid(uuid.UUID(moved.stem))


def test_lock_serialises_threads_and_times_out(tmp_path: Path) -> None:
    st = State(tmp_path, timeout=0.3)
    other = State(tmp_path, timeout=0.3)  # another process's view: same flock file
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with st.locked():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(5)
    with pytest.raises(virtkit.TimeoutError), other.locked():
        pass
    release.set()
    t.join()
    with other.locked():
        pass


def test_unwritable_state_directory_is_typed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(virtkit.VirtError):
        State(blocker / "sub")


def test_by_name_follows_renames_and_removals(tmp_path: Path) -> None:
    st = State(tmp_path)
    c = cfg("old")
    st.write(c)
    assert st.by_name("old") is not None  # now remembered
    st.write(DomainConfig(**{**c.to_dict(), "uuid": c.uuid, "name": "new"}))
    assert st.by_name("old") is None and st.by_name("new") is not None
    st.remove(st.by_name("new"))  # type: ignore[arg-type]
    assert st.by_name("new") is None


def _age(path: Path, seconds: float) -> int:
    """Set the directory's mtime ``seconds`` back (as if its last change were that old)."""
    ns = os.stat(path).st_mtime_ns - int(seconds * 1e9)
    os.utime(path, ns=(ns, ns))
    return ns


def _counting_listdir(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = os.listdir

    def listdir(p: str) -> list[str]:
        calls.append(str(p))
        return real(p)

    monkeypatch.setattr(os, "listdir", listdir)
    return calls


def test_an_unchanged_directory_is_listed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = State(tmp_path)
    st.write(cfg("a"))
    _age(st.dir, 5)
    calls = _counting_listdir(monkeypatch)
    first = st.records()
    assert st.records() is first and [r.config.name for r in first] == ["a"]
    assert len(calls) == 1


def test_another_process_defining_and_undefining_is_seen_at_once(tmp_path: Path) -> None:
    st = State(tmp_path)
    st.write(cfg("a"))
    _age(st.dir, 5)
    assert [r.config.name for r in st.records()] == ["a"]  # cached from here
    other = State(tmp_path)  # its writes do not touch st's caches, like another process's
    b = other.write(cfg("b"))
    assert sorted(r.config.name for r in st.records()) == ["a", "b"]
    assert st.by_name("b") is not None
    _age(st.dir, 5)
    st.records()
    other.remove(b)
    assert [r.config.name for r in st.records()] == ["a"]
    assert st.by_name("b") is None


def test_a_change_in_the_same_clock_tick_is_not_missed(tmp_path: Path) -> None:
    # Two changes in one tick of the coarse clock share the directory's mtime: a listing taken
    # between them must not be kept.
    st = State(tmp_path)
    st.write(cfg("a"))
    stamp = os.stat(st.dir).st_mtime_ns  # now: within the racy window
    assert [r.config.name for r in st.records()] == ["a"]
    State(tmp_path).write(cfg("b"))
    os.utime(st.dir, ns=(stamp, stamp))  # the same tick
    assert sorted(r.config.name for r in st.records()) == ["a", "b"]


def test_a_definition_written_by_another_process_is_listed(tmp_path: Path) -> None:
    import subprocess
    import sys

    st = State(tmp_path)
    st.write(cfg("a"))
    _age(st.dir, 5)
    assert len(st.records()) == 1
    code = (
        "import sys, uuid; from virtkit import DomainConfig; from virtkit_xen_libxl._state import State; "
        "State(sys.argv[1]).write(DomainConfig(name='p', memory=131072, uuid=uuid.uuid4(), kernel='/k'))"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    assert sorted(r.config.name for r in st.records()) == ["a", "p"]
