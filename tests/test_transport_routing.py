"""A transport is routed like a scheme: plugins registered as ``+T`` serve every SCHEME+T:// URI.

tests/support/virtkit-fakes registers ``+faket`` (a real entry point); xen_xend's xen+tcp keeps
its own route (registered under ``xen``, it reads the transport itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import virtkit


def _imports(uri: str) -> dict[str, object]:
    code = (
        "import os, sys, json, virtkit\n"
        f"c = virtkit.open({uri!r})\n"
        "print(json.dumps({'transport': 'virtkit_fakes.transport' in sys.modules,"
        " 'other': 'virtkit_fakes.other' in sys.modules, 'good': 'virtkit_fakes.good' in sys.modules,"
        " 'served': c.served_by('domain_get_info')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTKIT_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    seen: dict[str, object] = json.loads(out.stdout)
    return seen


def test_a_transport_entry_point_serves_any_scheme_with_that_transport() -> None:
    assert _imports("nosuch+faket:///") == {
        "transport": True,
        "other": False,
        "good": False,
        "served": "fake_transport",
    }


def test_the_scheme_plugins_are_imported_beside_it_and_outbid() -> None:
    seen = _imports("fake+faket:///")
    assert seen["transport"] is True and seen["good"] is True and seen["served"] == "fake_transport"
    with virtkit.open("fake+faket:///") as conn:
        route = conn.explain().route("domain_get_info")
        assert route.plugin == "fake_transport" and "fake_good" in [c.plugin for c in route.lost]


def test_a_uri_without_the_transport_never_imports_it() -> None:
    assert _imports("fake:///")["transport"] is False


def test_another_transport_does_not_reach_it() -> None:
    with pytest.raises(virtkit.NoDriver):
        virtkit.open("nosuch+other:///")


def test_xen_tcp_still_reaches_xen_xend() -> None:
    pytest.importorskip("virtkit_xen_xend")
    with pytest.raises(virtkit.VirtError) as e:  # nothing listens there: xend's own typed error
        virtkit.open("xen+tcp://127.0.0.1:1/", timeout=2)
    assert e.value.driver == "xen_xend"


def test_transports_allow_list() -> None:
    with virtkit.open("nosuch+faket:///", transports=["faket"]) as conn:
        assert conn.served_by("domain_get_info") == "fake_transport"
    with pytest.raises(virtkit.PermissionDenied, match=r"\+faket is not allowed here \(allowed: \+ssh\)"):
        virtkit.open("nosuch+faket:///", transports=["ssh"])
    with pytest.raises(virtkit.PermissionDenied, match="allowed: none"):
        virtkit.open("nosuch+faket:///", transports=())
    with virtkit.open("fake:///", transports=()) as conn:  # local URIs need no transport
        assert conn.type()
