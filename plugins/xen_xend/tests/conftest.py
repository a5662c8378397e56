"""Fixtures for the xen_xend tests: fixture data paths and an emulated xend per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtkit
from virtkit_xen_xend.emulator import XendEmulator

DATA = Path(__file__).parent / "data"
SEXPR2XML = DATA / "libvirt-3.0.0" / "sexpr2xmldata"
XML2SEXPR = DATA / "libvirt-3.0.0" / "xml2sexprdata"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # tmp_path can exceed the 108-byte limit of a unix socket path: use a short directory
    d = Path(tempfile.mkdtemp(prefix="xend-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def emu(sockdir: Path) -> Iterator[XendEmulator]:
    """xend on 127.0.0.1:<free port> and on a unix socket; stopped at teardown."""
    with XendEmulator(socket_path=str(sockdir / "xend-socket")) as e:
        yield e


@pytest.fixture
def conn(emu: XendEmulator) -> Iterator[virtkit.Connection]:
    with virtkit.open(emu.uri, timeout=5.0) as c:
        yield c
