"""The toy's own behaviour; the contract itself is checked by `pytest --virtkit-uri=toy:///`."""

from __future__ import annotations

import pathlib

import pytest

import virtkit


def test_default_host() -> None:
    with virtkit.open("toy:///") as conn:
        assert conn.type() == "Toy"
        assert [d.name for d in conn.domains(all=True)] == ["alpha", "beta"]
        assert conn.explain().route("domain_get_info").priority == 30  # the method's own priority
        assert conn.explain().route("domain_suspend").priority == 20  # the plugin's


def test_json_host_persists(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "host.json"
    with virtkit.open(f"toy://{path}") as conn:
        conn.lookup_by_name("alpha").suspend()
        conn.define(virtkit.DomainConfig(name="gamma", memory=65536))
    with virtkit.open(f"toy://{path}") as conn:
        assert conn.lookup_by_name("alpha").info().state is virtkit.DomainState.PAUSED
        assert "gamma" in conn.list_defined_domains()


def test_bad_uri_is_typed() -> None:
    with pytest.raises(virtkit.InvalidURI):
        virtkit.open("toy:///not-json")
