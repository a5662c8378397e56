"""Shared fixtures for the core's tests: the fake plugins come from real entry points."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_default_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's VIRTKIT_DEFAULT_URI / VIRTKIT_STRICT must not change test outcomes."""
    monkeypatch.delenv("VIRTKIT_DEFAULT_URI", raising=False)
    monkeypatch.delenv("VIRTKIT_STRICT", raising=False)
