"""The plugin's negotiation: which xen URIs it takes, declines with reasons, TLS verification."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import virtkit
from virtkit import Declined, parse_uri
from virtkit_xen_xend import DEFAULT_SOCKET, PRIORITY, plugin
from virtkit_xen_xend.emulator import XendEmulator


def test_entry_point_names_the_scheme() -> None:
    eps = [
        ep for ep in importlib.metadata.entry_points(group="virtkit.drivers") if ep.value == "virtkit_xen_xend:plugin"
    ]
    assert [ep.name for ep in eps] == ["xen"]
    assert plugin.virtkit_catalogue == "1.2" and plugin.virtkit_name == "xen_xend"


@pytest.mark.parametrize(
    "uri",
    ["xen://host/", "xen://host:8000/", "xen+tcp://host/", "xen+https://host:8443/", "xen+tcp:///", "xen://u:p@h/"],
)
def test_remote_and_explicit_tcp_uris_are_taken(uri: str) -> None:
    assert plugin.can_handle(parse_uri(uri)) is True
    assert plugin.priority(parse_uri(uri)) == PRIORITY


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("xen+ssh://host/", "not '+ssh'"),
        ("xen+ssh:///", "not '+ssh'"),
        ("xen:///", f"no xend socket at {DEFAULT_SOCKET}"),
        ("xen+unix:///?socket=/nonexistent/sock", "no xend socket at /nonexistent/sock"),
        ("test:///default", "is not 'xen'"),
    ],
)
def test_declines_with_a_reason(uri: str, reason: str) -> None:
    why = plugin.can_handle(parse_uri(uri))
    assert isinstance(why, Declined) and reason in why.reason
    # open itself no longer re-checks: the core calls it only after can_handle said yes
    with pytest.raises(virtkit.NoDriver, match=re.escape(reason)):
        virtkit.open(uri, entry_points=False, plugins=[plugin])


def test_a_regular_file_is_not_a_socket(tmp_path: Path) -> None:
    f = tmp_path / "sock"
    f.write_text("")
    assert isinstance(plugin.can_handle(parse_uri(f"xen:///?socket={f}")), Declined)


def test_local_socket_is_taken_when_present(emu: XendEmulator) -> None:
    assert plugin.can_handle(parse_uri(emu.unix_uri)) is True
    assert plugin.can_handle(parse_uri(emu.unix_uri.replace("xen+unix", "xen"))) is True


@pytest.mark.parametrize(
    ("suffix", "message"),
    [("?bogus=1", "unknown parameter"), ("path", "no path")],
)
def test_bad_uris(emu: XendEmulator, suffix: str, message: str) -> None:
    with pytest.raises(virtkit.InvalidURI, match=message):
        virtkit.open(emu.uri + suffix, timeout=2)


def test_ssh_is_declined_with_the_reason() -> None:
    """xen+ssh:// belongs to the remote plugin (if installed); xend itself says why not."""
    why = plugin.can_handle(parse_uri("xen+ssh://host/"))
    assert isinstance(why, Declined) and "xend is reached over tcp" in str(why)


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


def test_https_verifies_certificates_by_default(tls_pair: tuple[str, str]) -> None:
    cert, _ = tls_pair
    with XendEmulator(tls=tls_pair) as emu:
        assert emu.uri.startswith("xen+https://127.0.0.1:")
        with pytest.raises(virtkit.DriverError, match=r"TLS failure.*certificate verify failed"):
            virtkit.open(emu.uri, timeout=5)
        with virtkit.open(f"{emu.uri}?cacert={cert}", timeout=5) as c:
            assert c.hostname() == "talon"
        with virtkit.open(f"{emu.uri}?no_verify=1", timeout=5) as c:
            assert c.lookup_by_id(0).name == "Domain-0"


def test_credentials_never_appear_in_errors_or_repr(emu: XendEmulator) -> None:
    uri = f"xen://admin:s3cret@127.0.0.1:{emu.port}/"
    with virtkit.open(uri, timeout=5) as c:
        assert "s3cret" not in repr(c) and "s3cret" not in str(c.uri)
        with pytest.raises(virtkit.NoSuchDomain) as info:
            c.lookup_by_name("nosuch")
        assert "s3cret" not in str(info.value) and "s3cret" not in str(info.value.uri)


def test_declining_imports_only_the_plugin_object() -> None:
    """A local xen:/// open on a host without xend loads this plugin only to hear it decline:
    the model, the S-expression reader and requests stay unimported until a URI is taken."""
    code = (
        "import json, sys, virtkit\n"
        "from virtkit import parse_uri\n"
        "from virtkit_xen_xend import plugin\n"
        "assert plugin.can_handle(parse_uri('xen:///?socket=/nonexistent')) is not True\n"
        "mods = ('virtkit_xen_xend._model', 'virtkit_xen_xend._sxp', 'virtkit_xen_xend._driver', 'requests')\n"
        "print(json.dumps([m for m in mods if m in sys.modules]))\n"
        "from virtkit_xen_xend import parse_one\n"
        "print(json.dumps('virtkit_xen_xend._sxp' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded, sxp_after = (json.loads(line) for line in out.stdout.splitlines())
    assert loaded == []
    assert sxp_after is True
