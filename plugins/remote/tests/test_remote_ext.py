"""The remote plugin against a real far side: the venv's own ``virtkit serve`` through ``+ext``."""

from __future__ import annotations

import gc
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

import virtkit
from virtkit import DomainEventType, DomainState


def test_a_far_connection_answers_as_the_local_one(h: type) -> None:
    with virtkit.open("test:///default") as local, virtkit.open(h.ext_uri()) as far:
        assert far.served_by("domain_get_info") == "remote"
        assert far.type() == local.type()
        assert far.list_domains() == local.list_domains()
        assert far.list_defined_domains() == local.list_defined_domains()
        assert far.node_info() == local.node_info()
        assert far.version() == local.version()
        for ld, fd in zip(local.domains(all=True), far.domains(all=True), strict=True):
            assert (fd.name, fd.uuid, fd.id) == (ld.name, ld.uuid, ld.id)
            assert fd.info().state == ld.info().state
            assert fd.config() == ld.config()
        assert far.lookup_by_name("web").state().state is DomainState.RUNNING


def test_errors_arrive_as_the_same_classes_with_the_far_fields(h: type) -> None:
    with virtkit.open(h.ext_uri()) as conn:
        with pytest.raises(virtkit.NoSuchDomain) as e:
            conn.lookup_by_name("nosuch")
        assert (e.value.operation, e.value.driver, e.value.uri) == ("domain_lookup_by_name", "test", "test:///default")
        with pytest.raises(virtkit.InvalidOperation):
            conn.lookup_by_name("web").resume()
        with pytest.raises(virtkit.InvalidArgument):  # the far driver's own check: above the maximum
            conn.lookup_by_name("web").set_memory(2**40)


def test_mutations_and_events_cross_the_link(h: type) -> None:
    with virtkit.open(h.ext_uri()) as conn, conn.events() as stream:
        dom = conn.lookup_by_name("web")
        dom.suspend()
        assert dom.info().state is DomainState.PAUSED
        ev = stream.get(10)
        assert ev is not None and ev.type is DomainEventType.SUSPENDED and ev.domain.name == "web"
        dom.resume()
        ev = stream.get(10)
        assert ev is not None and ev.type is DomainEventType.RESUMED


def test_persistence_and_autostart_cross_the_link(h: type) -> None:
    """Catalogue 1.2's booleans travel as booleans; the far driver's refusal arrives typed."""
    with virtkit.open(h.ext_uri()) as conn:
        dom = conn.lookup_by_name("defined-vm")
        assert (dom.is_persistent(), dom.autostart()) == (True, False)
        dom.set_autostart(True)
        assert dom.autostart() is True  # one far connection: the far test host kept the mark
        once = conn.create(virtkit.DomainConfig("once", 65536))
        assert once.is_persistent() is False
        with pytest.raises(virtkit.InvalidOperation, match="transient"):
            once.set_autostart(True)
    with virtkit.open(h.ext_uri(), readonly=True) as conn, pytest.raises(virtkit.ReadOnlyError):
        conn.lookup_by_name("defined-vm").set_autostart(True)


def test_read_only_is_refused_here_and_on_the_far_side(h: type) -> None:
    with virtkit.open(h.ext_uri(), readonly=True) as conn:
        dom = conn.lookup_by_name("web")
        with pytest.raises(virtkit.ReadOnlyError):
            dom.suspend()
        # past the local refusal, straight onto the link: the far side refuses too
        (driver,) = [d for _name, d in conn._drivers]
        with pytest.raises(virtkit.ReadOnlyError) as e:
            driver.link.call("domain_suspend", [{"name": "web", "uuid": str(dom.uuid), "id": dom.id}], 0)
        assert e.value.uri == "test:///default"
        assert dom.info().state is DomainState.RUNNING


def test_explain_shows_the_local_route_and_the_far_composition(h: type) -> None:
    with virtkit.open(h.ext_uri()) as conn:
        ex = conn.explain()
    assert ex.route("domain_suspend").plugin == "remote"
    assert ex.remote is not None and ex.remote.uri == "test:///default"
    assert ex.remote.route("domain_suspend").plugin == "test"
    text = ex.render()
    assert "far side:" in text and "SUCCESS  test priority 10" in text
    assert ex.to_dict()["remote"]["uri"] == "test:///default"


def test_cli_through_ext(h: type) -> None:
    out = subprocess.run(
        [h.virtkit, "-c", h.ext_uri(), "--json", "list", "--all"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert [d["name"] for d in json.loads(out.stdout)] == ["test", "web", "paused-vm", "defined-vm"]
    out = subprocess.run(
        [h.virtkit, "-c", h.ext_uri(), "dominfo", "nosuch"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and out.stderr.startswith("error: no domain named 'nosuch'")


def _child_pid(conn: virtkit.Connection) -> int:
    (driver,) = [d for _name, d in conn._drivers]
    pid: int = driver.link.pid
    return pid


def test_close_ends_the_child(h: type) -> None:
    conn = virtkit.open(h.ext_uri())
    pid = _child_pid(conn)
    assert h.alive(pid)
    t0 = time.monotonic()
    conn.close()
    assert not h.alive(pid)
    assert time.monotonic() - t0 < 3
    with pytest.raises(virtkit.ConnectionClosed):
        conn.type()


def test_garbage_collection_ends_the_child(h: type) -> None:
    conn = virtkit.open(h.ext_uri())
    pid = _child_pid(conn)
    del conn
    gc.collect()
    assert h.wait_gone(pid)


def test_interpreter_exit_ends_the_child(h: type, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "leave.py"
    script.write_text(
        "import virtkit, sys\n"
        f"conn = virtkit.open({h.ext_uri()!r})\n"
        "print([d for _n, d in conn._drivers][0].link.pid, flush=True)\n"
        "sys.exit(0)\n"  # no close: the finalizer at exit must end the child
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert h.wait_gone(int(out.stdout))


def test_a_far_side_without_virtkit_is_a_clear_error(h: type, tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "no" / "virtkit")
    with pytest.raises(virtkit.NoDriver) as e:
        virtkit.open(h.ext_uri(missing))
    assert missing in str(e.value)


def test_an_untrusted_transport_is_refused_before_anything_runs(h: type, tmp_path: pathlib.Path) -> None:
    trace = tmp_path / "ran"
    script = tmp_path / "cmd"
    script.write_text(f"#!/bin/sh\ntouch {trace}\n")
    script.chmod(0o755)
    with pytest.raises(virtkit.PermissionDenied) as e:
        virtkit.open(h.ext_uri(str(script)), transports=("ssh",))
    assert "+ext is not allowed" in str(e.value)
    with pytest.raises(virtkit.PermissionDenied):
        virtkit.open(h.ext_uri(str(script)), transports=())
    assert not trace.exists()


def test_bad_remote_uris_are_invalid_uri(h: type) -> None:
    with pytest.raises(virtkit.InvalidURI, match=r"needs \?command="):
        virtkit.open("test+ext:///default")
    with pytest.raises(virtkit.InvalidURI, match="needs a host"):
        virtkit.open("test+ssh:///default")
    with pytest.raises(virtkit.InvalidURI, match="password"):
        virtkit.open("test+ssh://root:secret@host/default")


def test_a_process_with_many_open_files_still_links(h: type) -> None:
    """poll(), not select(): fds above FD_SETSIZE (1024), as in a process holding many links."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    null = os.open(os.devnull, os.O_RDONLY)
    fillers = [os.dup(null) for _ in range(1100)]
    try:
        with virtkit.open(h.ext_uri()) as conn:
            (driver,) = [d for _name, d in conn._drivers]
            assert driver.link._state.rfd > 1024
            assert conn.list_domains() == [1, 2, 3]
    finally:
        for fd in [*fillers, null]:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_threads_share_one_link(h: type) -> None:
    """Calls from many threads interleave on one link; each gets its own reply."""
    import threading

    with virtkit.open(h.ext_uri()) as conn:
        doms = {name: conn.lookup_by_name(name) for name in ("test", "web", "paused-vm")}
        expected = {name: dom.info() for name, dom in doms.items()}
        bad: list[object] = []

        def work(name: str) -> None:
            for _ in range(200):
                got = doms[name].info()
                if got.state != expected[name].state or got.max_memory != expected[name].max_memory:
                    bad.append((name, got))

        threads = [threading.Thread(target=work, args=(n,)) for n in list(doms) * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not bad and not any(t.is_alive() for t in threads)


def test_a_caller_reading_for_a_slow_reply_delivers_the_others_replies(h: type) -> None:
    """The thread holding the read role waits for a slow reply (slow:/// takes 1.5 s for beta's
    info) while another thread's calls are answered: each of those gets its reply meanwhile."""
    import threading

    with virtkit.open(h.ext_uri(path="/", scheme="slow")) as conn:
        alpha, beta = conn.lookup_by_name("alpha"), conn.lookup_by_name("beta")
        slow = threading.Thread(target=beta.info)
        slow.start()
        try:
            for _ in range(5):
                assert alpha.info().state is virtkit.DomainState.RUNNING
            assert slow.is_alive()  # the fast calls did not wait for the slow one
        finally:
            slow.join(30)
        assert not slow.is_alive()
