"""The emulated xend at the HTTP level: URL tree, status codes, negotiation, size cap, keep-alive."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import requests

from virtkit_xen_xend import XendDomain, dumps, parse_one, value
from virtkit_xen_xend.emulator import MAX_CONTENT_LENGTH, XendEmulator

SXP = {"Accept": "application/sxp"}


def base(emu: XendEmulator) -> str:
    return f"http://127.0.0.1:{emu.port}"


def raw_request(emu: XendEmulator, text: str) -> bytes:
    """Send bytes exactly as written (no client library adding headers) and read to EOF."""
    assert emu.port is not None
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as s:
        s.sendall(text.encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_libvirt_style_request_gets_sxp_and_the_connection_closes(emu: XendEmulator) -> None:
    # exactly what libvirt sent: no User-Agent, no Accept, no keep-alive
    reply = raw_request(emu, "GET /xend/domain HTTP/1.1\r\nHost: localhost:8000\r\nAccept-Encoding: identity\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Content-type: application/sxp" in lines  # xend's capitalize()d header names
    assert f"Content-length: {len(body)}" in lines
    assert parse_one(body.decode()) == ["Domain-0", "s10u4", "rhel5", "domu-224", "test2vm"]


def test_a_browser_like_client_gets_html(emu: XendEmulator) -> None:
    r = requests.get(base(emu) + "/xend/domain/rhel5", headers={"Accept": "text/html"}, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/html"
    assert r.text.startswith("<html>")
    # requests sends a User-Agent and Accept: */* -> HTML too, the trap the driver avoids
    assert requests.get(base(emu) + "/xend/node/", timeout=5).headers["Content-Type"] == "text/html"
    assert requests.get(base(emu) + "/xend/node/", headers=SXP, timeout=5).headers["Content-Type"] == "application/sxp"


def test_keep_alive_only_when_asked(emu: XendEmulator) -> None:
    with requests.Session() as s:
        for _ in range(5):
            assert s.get(base(emu) + "/xend/node/", headers=SXP, timeout=5).ok
    assert emu.connections == 1
    for _ in range(3):
        assert requests.get(base(emu) + "/xend/node/", headers={**SXP, "Connection": "close"}, timeout=5).ok
    assert emu.connections == 4


def test_url_tree(emu: XendEmulator) -> None:
    def get(path: str, **params: str) -> requests.Response:
        return requests.get(base(emu) + path, headers=SXP, params=params, timeout=5)

    assert parse_one(get("/xend/").text) == ["node", "domain", "vnet"]
    node = parse_one(get("/xend/node/").text)
    assert value(node, "host") == "talon" and value(node, "xen_major") == "3"
    assert "Xen" in get("/xend/node/dmesg").text
    assert get("/xend/node/log").headers["Content-Type"] == "text/plain"
    assert parse_one(get("/xend/domain", state="halted").text) == ["test"]
    assert parse_one(get("/xend/domain", state="ALL").text)[-1] == "test"  # case-insensitive
    assert get("/xend/domain", state="2").text == "()"  # numeric strings match nothing
    detail = parse_one(get("/xend/domain", detail="1").text)
    assert [XendDomain.from_sxp(d).name for d in detail] == ["Domain-0", "s10u4", "rhel5", "domu-224", "test2vm"]
    # a domain by name, id or uuid
    for key in ("rhel5", "5", "4f77abd2-3019-58e8-3bab-6fbf2118f880"):
        assert XendDomain.from_text(get(f"/xend/domain/{key}").text).name == "rhel5"
    info = parse_one(get("/xend/domain/rhel5", op="vcpuinfo").text)
    assert value(info, "vcpu_count") == "1"
    missing = get("/xend/domain/nosuch")
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "text/plain"
    assert get("/elsewhere").status_code == 404


def post(emu: XendEmulator, path: str, **form: str) -> requests.Response:
    return requests.post(base(emu) + path, headers=SXP, data=form, timeout=5)


def test_op_dispatch_status_codes(emu: XendEmulator) -> None:
    assert post(emu, "/xend/domain/rhel5").status_code == 406  # no op
    r = requests.post(base(emu) + "/xend/domain/rhel5", headers=SXP, data=[("op", "pause"), ("op", "x")], timeout=5)
    assert r.status_code == 406  # op twice
    r = post(emu, "/xend/domain/rhel5", op="frobnicate")
    assert r.status_code == 501 and r.text == "Operation not implemented: frobnicate"
    r = post(emu, "/xend/domain/Domain-0", op="destroy")
    assert r.status_code == 500 and r.reason == "Request failed: destroy"
    assert parse_one(r.text) == ["xend.err", "Cannot destroy privileged domain 0"]
    r = post(emu, "/xend/domain/rhel5", op="mem_target_set", target="many")
    assert r.status_code == 500 and "invalid literal" in r.text


def test_lifecycle_transitions(emu: XendEmulator) -> None:
    def state(key: str) -> tuple[str | None, str | None, str | None]:
        r = requests.get(base(emu) + f"/xend/domain/{key}", headers=SXP, timeout=5)
        rec = parse_one(r.text)
        return value(rec, "domid"), value(rec, "state"), value(rec, "status")

    assert post(emu, "/xend/domain/rhel5", op="pause").status_code == 200
    assert state("rhel5") == ("5", "--p---", "1")
    assert post(emu, "/xend/domain/rhel5", op="unpause").status_code == 200
    assert state("rhel5")[2] == "2"
    r = post(emu, "/xend/domain/domu-224", op="shutdown", reason="reboot")  # on_reboot destroy
    assert r.status_code == 202 and r.headers["Location"] == "/xend/domain/domu-224"
    assert requests.get(base(emu) + "/xend/domain/domu-224", headers=SXP, timeout=5).status_code == 404
    r = post(emu, "/xend/domain/s10u4", op="shutdown", reason="reboot")  # on_reboot restart: a new id
    assert r.status_code == 202 and state("s10u4")[0] not in (None, "1")
    assert post(emu, "/xend/domain/test", op="start").status_code == 202
    assert state("test")[2] == "2"
    assert parse_one(post(emu, "/xend/domain/test", op="delete").text)[0] == "xend.err"  # running
    assert post(emu, "/xend/domain/test", op="destroy").status_code == 202
    assert state("test") == (None, None, "0")  # managed: stays defined
    assert post(emu, "/xend/domain/test", op="delete").status_code == 202
    assert requests.get(base(emu) + "/xend/domain/test", headers=SXP, timeout=5).status_code == 404


def test_create_and_new(emu: XendEmulator) -> None:
    cfg = "(vm (name fresh) (memory 64) (vcpus 1) (image (linux (kernel /k))))"
    r = post(emu, "/xend/domain", op="create", config=cfg)
    assert r.status_code == 201 and r.headers["Location"] == "/xend/domain/fresh"
    rec = XendDomain.from_text(r.text)
    assert rec.name == "fresh" and rec.id is not None and rec.memory == 64 * 1024
    again = post(emu, "/xend/domain", op="create", config=cfg)
    assert again.status_code == 500 and "already in use" in again.text
    bad = post(emu, "/xend/domain", op="new", config="(vm (name x)")
    assert bad.status_code == 500 and "Invalid configuration" in bad.text
    r = post(emu, "/xend/domain", op="new", config="(vm (name later) (memory 32) (image (linux (kernel /k))))")
    assert r.ok and XendDomain.from_text(r.text).id is None


def test_new_redefines_by_name_and_uuid(emu: XendEmulator) -> None:
    """xend's op=new: the same name and uuid update the config (a (domain ...) record is read as
    a config too, as libvirt posted it back); the name with another uuid is refused."""
    rec = parse_one(requests.get(base(emu) + "/xend/domain/test", headers=SXP, timeout=5).text)
    assert isinstance(rec, list) and value(rec, "on_xend_start") == "ignore"
    marked = [c if not (isinstance(c, list) and c[0] == "on_xend_start") else ["on_xend_start", "start"] for c in rec]
    r = post(emu, "/xend/domain", op="new", config=dumps(marked))
    assert r.status_code == 200 and value(parse_one(r.text), "on_xend_start") == "start"
    assert len([d for d in emu.host.domains if d.name == "test"]) == 1
    clash = post(emu, "/xend/domain", op="new", config="(vm (name test) (memory 32) (image (linux (kernel /k))))")
    assert clash.status_code == 500 and parse_one(clash.text)[0] == "xend.err"
    fresh = post(emu, "/xend/domain", op="new", config="(vm (name bare) (memory 32) (image (linux (kernel /k))))")
    assert value(parse_one(fresh.text), "on_xend_start") == "ignore"  # XendConfig's default


def test_request_body_cap(emu: XendEmulator) -> None:
    big = "(vm (name big) (memory 64) (image (linux (kernel /k) (args '" + "x" * MAX_CONTENT_LENGTH + "'))))"
    r = post(emu, "/xend/domain", op="create", config=big)
    assert r.status_code == 413


def test_unix_socket_serves_the_same_tree(emu: XendEmulator) -> None:
    assert emu.socket_path is not None
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(emu.socket_path)
        s.sendall(b"GET /xend/domain/0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert XendDomain.from_text(data.partition(b"\r\n\r\n")[2].decode()).name == "Domain-0"


def test_standalone_emulator_prints_its_addresses(sockdir: Path) -> None:
    sock = str(sockdir / "s")
    cmd = [sys.executable, "-m", "virtkit_xen_xend.emulator", "--port", "0", "--socket", sock]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            tcp, unix = proc.stdout.readline().strip(), proc.stdout.readline().strip()
            assert tcp.startswith("xen://127.0.0.1:") and unix == "xen+unix:///?socket=" + urllib.parse.quote(sock)
            port = int(tcp.rsplit(":", 1)[1].rstrip("/"))
            assert requests.get(f"http://127.0.0.1:{port}/xend/node/", headers=SXP, timeout=5).ok
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("kind", ["nope"])
def test_unknown_fault_kind_is_refused(emu: XendEmulator, kind: str) -> None:
    with pytest.raises(ValueError, match="fault kind"):
        emu.fault(kind)
