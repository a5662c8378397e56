"""Every open attempt is logged SUCCESS / DECLINED / ERROR; passwords never reach the log."""

from __future__ import annotations

import logging

import pytest

import virtkit


def test_open_attempts_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="virtkit"):
        virtkit.open("fake:///").close()
    text = caplog.text
    assert "SUCCESS fake_good" in text
    assert "DECLINED fake_decliner: no fake daemon socket" in text
    assert "ERROR fake_raises: raised RuntimeError: probe exploded" in text
    assert "ERROR fake.broken failed to load" in text


def test_password_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="virtkit"), pytest.raises(virtkit.NoDriver) as info:
        virtkit.open("fake://admin:topsecret@remote.example/")
    assert "topsecret" not in caplog.text
    assert "topsecret" not in str(info.value)
    assert "fake_good serves local URIs only" in str(info.value)
