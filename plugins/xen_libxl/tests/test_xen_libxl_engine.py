"""The resident libxl engine against a pretend libxl: the babysitter's action for each shutdown
reason (as xl's), re-adoption of a previous engine's domains, the request protocol over its
socket, and the client's deadline. libxl itself is exercised in the lab (tests/lab)."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import virtkit
from virtkit import DomainConfig
from virtkit.daemon import stale
from virtkit_xen_libxl import _engine, _xllock
from virtkit_xen_libxl._engine import Engine, _Server
from virtkit_xen_libxl._engines import LibxlEngine, XlEngine, choose
from virtkit_xen_libxl._libxl import LibxlError
from virtkit_xen_libxl._libxlcfg import libxl_config
from virtkit_xen_libxl._plugin import ended_reason
from virtkit_xen_libxl._xl import Xl, XlError


class FakeLibxl:
    """Records every call; domains are ids with names; ``fail_create`` makes create fail after
    writing a libxl-like message to the log."""

    def __init__(self, log_fd: int) -> None:
        self.log_fd = log_fd
        self.calls: list[tuple[Any, ...]] = []
        self.doms: dict[int, str] = {}
        self.next = 10
        self.watched: dict[int, int] = {}
        self.fail_create: str | None = None

    def flush(self) -> None:
        pass

    def create(self, config: str) -> int:
        name = json.loads(config)["c_info"]["name"]
        self.calls.append(("create", name))
        if self.fail_create:
            os.write(self.log_fd, self.fail_create.encode() + b"\n")
            raise LibxlError("libxl_domain_create_new", -3)
        self.next += 1
        self.doms[self.next] = name
        return self.next

    def _op(self, op: str, domid: int, *rest: Any) -> None:
        self.calls.append((op, domid, *rest))

    def unpause(self, domid: int) -> None:
        self._op("unpause", domid)

    def destroy(self, domid: int) -> None:
        self._op("destroy", domid)
        self.doms.pop(domid, None)

    def shutdown(self, domid: int) -> None:
        self._op("shutdown", domid)

    def reboot(self, domid: int) -> None:
        self._op("reboot", domid)

    def core_dump(self, domid: int, path: str) -> None:
        self._op("core_dump", domid, path)

    def soft_reset(self, config: str, domid: int) -> None:
        self._op("soft_reset", domid)

    def preserve(self, config: str, domid: int, suffix: str, new_uuid: uuid.UUID) -> None:
        self._op("preserve", domid)
        self.doms[domid] += suffix

    def name(self, domid: int) -> str | None:
        return self.doms.get(domid)

    def watch_death(self, domid: int, user: int) -> int:
        self.watched[domid] = user
        return 1000 + domid

    def unwatch(self, handle: int) -> None:
        self.watched.pop(handle - 1000, None)


def cfg_json(name: str, **actions: str) -> str:
    return json.dumps({"c_info": {"type": "pv", "name": name, "uuid": str(uuid.uuid4())}, "b_info": {}, **actions})


@pytest.fixture
def engine(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, FakeLibxl]]:
    monkeypatch.setattr(_engine, "RESTART_PAUSE", 0.0)
    monkeypatch.setattr(_engine, "DUMP_DIR", str(tmp_path / "dump"))
    (tmp_path / "xl.conf").write_text(f'lockfile="{tmp_path / "xl.lock"}"\n')  # never /var/lock/xl
    monkeypatch.setattr(_xllock, "XL_CONF", str(tmp_path / "xl.conf"))
    fd = os.open(tmp_path / "libxl.log", os.O_RDWR | os.O_CREAT | os.O_APPEND)
    lx = FakeLibxl(fd)
    yield Engine(tmp_path, lx, fd), lx  # type: ignore[arg-type]
    os.close(fd)


def ops(lx: FakeLibxl) -> list[str]:
    return [c[0] for c in lx.calls]


def test_create_answers_once_running_then_watches_and_keeps_a_record(engine: tuple[Engine, FakeLibxl]) -> None:
    eng, lx = engine
    answered: list[tuple[dict[str, Any], bool]] = []
    reply = eng.handle({"op": "create", "config": cfg_json("a")}, lambda r: answered.append((r, 11 in lx.watched)))
    assert reply == {"ok": True, "domid": 11} and answered == [(reply, False)]
    assert ops(lx) == ["create", "unpause"] and 11 in lx.watched
    assert json.loads((eng.records / "11.json").read_text())["name"] == "a"
    assert eng.handle({"op": "ping"})["domains"] == [11]


@pytest.mark.parametrize(
    ("reason", "actions", "want", "back"),
    [
        ("poweroff", {}, ["destroy"], False),  # left out of libxl's JSON: its initial value, destroy
        ("reboot", {"on_reboot": "restart"}, ["destroy", "create", "unpause"], True),
        ("crash", {"on_crash": "preserve"}, [], False),
        ("reboot", {"on_reboot": "restart_rename"}, ["preserve", "create", "unpause"], True),
        ("crash", {"on_crash": "coredump_destroy"}, ["core_dump", "destroy"], False),
        ("crash", {"on_crash": "coredump_restart"}, ["core_dump", "destroy", "create", "unpause"], True),
        ("watchdog", {"on_watchdog": "restart"}, ["destroy", "create", "unpause"], True),
        ("soft_reset", {"on_soft_reset": "soft_reset"}, ["soft_reset", "unpause"], True),
        ("suspend", {"on_poweroff": "restart"}, [], False),
    ],
)
def test_shutdown_actions_as_xl_applies_them(
    engine: tuple[Engine, FakeLibxl], reason: str, actions: dict[str, str], want: list[str], back: bool
) -> None:
    eng, lx = engine
    config = cfg_json("g", **actions)
    domid = eng.handle({"op": "create", "config": config})["domid"]
    lx.calls.clear()
    eng.shutdown_of(eng.kids[domid], reason)
    assert ops(lx) == want
    # why the run ended, for event watchers that could not see it before the action
    assert ended_reason(eng.rundir, json.loads(config)["c_info"]["uuid"]) == reason
    assert bool(eng.kids) is back  # a new run is watched; otherwise nothing is
    if back:
        (kid,) = eng.kids.values()
        assert kid.name == "g" and kid.domid in lx.watched
        assert [p.name for p in eng.records.iterdir()] == [f"{kid.domid}.json"]
    else:
        assert not list(eng.records.iterdir()) and not lx.watched
    if "core_dump" in want:
        assert lx.calls[0][2].endswith("/dump/g")


def test_a_domain_destroyed_by_anyone_is_forgotten(engine: tuple[Engine, FakeLibxl]) -> None:
    eng, lx = engine
    domid = eng.handle({"op": "create", "config": cfg_json("d")})["domid"]
    eng.forget(eng.kids[domid])
    assert not eng.kids and not lx.watched and not list(eng.records.iterdir())


def test_readopt_watches_what_still_runs_under_its_name(engine: tuple[Engine, FakeLibxl]) -> None:
    eng, lx = engine
    a = eng.handle({"op": "create", "config": cfg_json("a")})["domid"]
    b = eng.handle({"op": "create", "config": cfg_json("b")})["domid"]
    (eng.records / "99.json").write_text("{torn")
    lx.doms[b] = "b-20261130T1200Z"  # renamed since: not ours any more
    again = Engine(eng.rundir, lx, eng.log_fd)  # type: ignore[arg-type]
    again.readopt()
    assert sorted(again.kids) == [a]
    assert sorted(p.name for p in eng.records.iterdir()) == [f"{a}.json"]


def test_failed_create_returns_libxls_messages(engine: tuple[Engine, FakeLibxl]) -> None:
    eng, lx = engine
    lx.fail_create = "xc: error: panic: xc_dom_core.c:208: failed to open file '/nope': No such file"
    reply = eng.handle({"op": "create", "config": cfg_json("bad")})
    assert reply["ok"] is False and reply["kind"] == "libxl" and "failed to open file" in reply["log"]
    assert not eng.kids and not list(eng.records.iterdir())


def test_bad_requests_and_unknown_domains(engine: tuple[Engine, FakeLibxl]) -> None:
    eng, _lx = engine
    assert eng.handle(["op"])["kind"] == "request"
    assert eng.handle({"op": "format"})["kind"] == "request"
    assert eng.handle({"op": "destroy", "domid": 0})["kind"] == "request"
    assert eng.handle({"op": "destroy", "domid": 42})["kind"] == "nosuch"


@pytest.fixture
def served(engine: tuple[Engine, FakeLibxl], tmp_path: pathlib.Path) -> Iterator[tuple[LibxlEngine, FakeLibxl]]:
    eng, lx = engine
    server = _Server(str(tmp_path / _engine.SOCKET), eng)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    client = LibxlEngine(str(tmp_path), Xl("/bin/false", timeout=5), timeout=5)
    yield client, lx
    client.close()
    server.shutdown()
    server.server_close()


def guest(name: str, **kw: Any) -> DomainConfig:
    base: dict[str, Any] = {"name": name, "memory": 131072, "kernel": "/k", "uuid": uuid.uuid4()}
    return DomainConfig(**{**base, **kw})


def test_client_creates_and_destroys_over_the_socket(
    served: tuple[LibxlEngine, FakeLibxl], tmp_path: pathlib.Path
) -> None:
    client, lx = served
    client.create(guest("s"), tmp_path)
    (domid,) = lx.doms
    client.destroy(domid, "s")
    with pytest.raises(virtkit.NoSuchDomain):
        client.shutdown(domid, "s")
    lx.fail_create = "libxl: error: libxl_create.c:720: Out of memory"
    with pytest.raises(XlError, match="Out of memory") as err:
        client.create(guest("t"), tmp_path)
    assert isinstance(err.value, virtkit.InvalidArgument)


def test_client_deadline_when_the_engine_does_not_answer(tmp_path: pathlib.Path) -> None:
    path = tmp_path / _engine.SOCKET
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(path))
    mute.listen(1)
    client = LibxlEngine(str(tmp_path), Xl("/bin/false", timeout=0.5), timeout=0.5)
    t = time.monotonic()
    with pytest.raises(virtkit.TimeoutError):
        client.destroy(5, "x")
    assert time.monotonic() - t < 5
    client.close()
    mute.close()


def test_requests_share_one_connection(served: tuple[LibxlEngine, FakeLibxl], tmp_path: pathlib.Path) -> None:
    client, lx = served
    client.create(guest("one"), tmp_path)
    first = client._sock
    (domid,) = lx.doms
    client.destroy(domid, "one")
    assert first is not None and client._sock is first


def test_a_connection_the_engine_ended_is_replaced_before_sending(tmp_path: pathlib.Path) -> None:
    """An engine that idled out or was restarted has closed the kept connection: the next
    request connects anew, and a request is never sent twice."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / _engine.SOCKET))
    listener.listen(4)
    seen: list[bytes] = []

    def one_request_per_connection() -> None:  # answers, then closes, as an exiting engine
        for _ in range(2):
            conn, _a = listener.accept()
            with conn:
                seen.append(conn.recv(65536))
                conn.sendall(b'{"ok": true}\n')

    t = threading.Thread(target=one_request_per_connection, daemon=True)
    t.start()
    client = LibxlEngine(str(tmp_path), Xl("/bin/false", timeout=5), timeout=5)
    try:
        client.destroy(5, "a")
        t0 = time.monotonic()
        while client._sock is not None and not stale(client._sock):  # what the client asks before sending
            assert time.monotonic() - t0 < 5, "the engine's close never showed"
            time.sleep(0.01)
        client.destroy(6, "b")
    finally:
        client.close()
        listener.close()
    t.join(5)
    assert [json.loads(m)["domid"] for m in seen] == [5, 6]


def test_libxl_config_built_for_mapped_keys_only() -> None:
    built = libxl_config(guest("m", max_memory=262144, vcpus=1, max_vcpus=2, on_reboot="rename-restart"))
    assert built is not None
    assert built["c_info"]["name"] == "m" and built["on_reboot"] == "restart_rename"
    b = built["b_info"]
    assert (b["max_memkb"], b["target_memkb"], b["max_vcpus"], b["avail_vcpus"]) == (262144, 131072, 2, [0])
    assert libxl_config(guest("n", kernel=None)) is None  # xl's parser says what is missing
    assert libxl_config(guest("h", os_type="hvm")) is None
    assert libxl_config(guest("x", extra={"xl": {"vif": ["bridge=br0"]}})) is None


def test_engine_choice_is_explicit(tmp_path: pathlib.Path) -> None:
    xl = Xl("/bin/false")
    assert isinstance(choose({"xen_libxl_engine": "xl"}, xl, 5, str(tmp_path)), XlEngine)
    with pytest.raises(virtkit.InvalidArgument):
        choose({"xen_libxl_engine": "fast"}, xl, 5, str(tmp_path))


class _Stop(BaseException):
    pass


def test_pump_reads_libxls_event_json(engine: tuple[Engine, FakeLibxl]) -> None:
    """libxl's JSON of events (4.17): the union under "type.NAME", the reason as a number
    left out when 0 (poweroff)."""
    eng, lx = engine
    a = eng.handle({"op": "create", "config": cfg_json("a", on_reboot="restart")})["domid"]
    b = eng.handle({"op": "create", "config": cfg_json("b")})["domid"]
    c = eng.handle({"op": "create", "config": cfg_json("c")})["domid"]
    events = [
        {"domid": a, "for_user": a, "type.domain_shutdown": {"shutdown_reason": 1}},
        {"domid": b, "for_user": b, "type.domain_shutdown": {}},
        {"domid": c, "for_user": c, "type.domain_death": {}},
        {"domid": 77, "for_user": 77, "type.domain_death": {}},
    ]
    seen = threading.Event()

    def wait_event() -> dict[str, Any]:
        if events:
            return events.pop(0)
        seen.set()
        raise _Stop

    lx.wait_event = wait_event  # type: ignore[attr-defined]
    lx.calls.clear()
    with pytest.raises(_Stop):
        eng.pump()
    assert seen.is_set()
    deadline = time.monotonic() + 5
    while len([c for c in lx.calls if c[0] == "unpause"]) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert ("destroy", a) in lx.calls and ("destroy", b) in lx.calls  # reboot: restart; poweroff: destroy
    assert [k.name for k in eng.kids.values()] == ["a"]  # a's new run; b destroyed; c gone
    assert eng.busy == 0


def test_no_idle_exit_while_an_action_is_under_way(
    engine: tuple[Engine, FakeLibxl], monkeypatch: pytest.MonkeyPatch
) -> None:
    eng, _lx = engine
    monkeypatch.setattr(_engine, "IDLE_EXIT", 0.0)
    assert eng.idle()
    domid = eng.handle({"op": "create", "config": cfg_json("r", on_reboot="restart")})["domid"]
    assert not eng.idle()
    eng.busy += 1  # as the pump counts an action before its domain leaves ``kids``
    eng.forget(eng.kids[domid])
    assert not eng.idle()


def test_an_engine_that_cannot_start_says_why(tmp_path: pathlib.Path) -> None:
    """The request starts the engine (a daemon, ready before the request is sent); here, off
    Xen, it cannot read the hypervisor's release and the caller gets that reason."""
    if pathlib.Path("/sys/hypervisor/version").exists():
        pytest.skip("a Xen host: the engine would start")
    client = LibxlEngine(str(tmp_path / "engine"), Xl("/bin/false", timeout=30), timeout=30)
    with pytest.raises(virtkit.InvalidOperation, match="release"):
        client.destroy(5, "x")
    assert not (tmp_path / "engine" / _engine.SOCKET).exists()
