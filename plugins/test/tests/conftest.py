"""Fixtures for the test:/// plugin's tests: every test gets its own fresh default host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import virtkit


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's VIRTKIT_DEFAULT_URI / VIRTKIT_STRICT must not change test outcomes."""
    monkeypatch.delenv("VIRTKIT_DEFAULT_URI", raising=False)
    monkeypatch.delenv("VIRTKIT_STRICT", raising=False)


@pytest.fixture
def conn() -> Iterator[virtkit.Connection]:
    with virtkit.open("test:///default") as c:
        yield c
