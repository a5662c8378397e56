"""Fixtures for the remote plugin's tests: the venv's own ``virtkit`` as the far side (``+ext``),
a scripted misbehaving far side (peer.py), and checks that no child outlives its test."""

from __future__ import annotations

import pathlib
import sys
import time
import urllib.parse
from collections.abc import Callable

import pytest

HERE = pathlib.Path(__file__).resolve().parent
VIRTKIT = str(pathlib.Path(sys.executable).with_name("virtkit"))


def ext_uri(command: str = VIRTKIT, path: str = "/default", scheme: str = "test", **params: str) -> str:
    query = urllib.parse.urlencode({"command": command, **params}, safe="/")
    return f"{scheme}+ext://{path}?{query}"


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped has ended)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def wait_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def peer(tmp_path: pathlib.Path) -> Callable[[str], str]:
    """``peer(mode)`` -> a ``test+ext://`` URI whose far side is peer.py misbehaving as told."""
    script = tmp_path / "peer"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE / "peer.py"} "$@"\n')
    script.chmod(0o755)

    def make(mode: str) -> str:
        return ext_uri(str(script), mode=mode)

    return make


@pytest.fixture(autouse=True)
def _no_default_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTKIT_DEFAULT_URI", raising=False)
    monkeypatch.delenv("VIRTKIT_STRICT", raising=False)


class Helpers:
    """What the tests share (with --import-mode=importlib a test cannot import conftest)."""

    virtkit = VIRTKIT
    ext_uri = staticmethod(ext_uri)
    alive = staticmethod(alive)
    wait_gone = staticmethod(wait_gone)


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers
