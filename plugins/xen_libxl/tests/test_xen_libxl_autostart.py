"""Persistence and autostart (catalogue 1.2) on the pretend host: definitions are persistent,
created domains are not; autostart is an xl config in xendomains' auto directory (here the
test's own, ``host.auto_dir``), read back with the plugin's xl parser."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import Host

import virtkit
from virtkit import DomainConfig, DomainState, InvalidOperation, NoSuchDomain, OpenOptions, ReadOnlyError
from virtkit_xen_libxl import load_xl_file
from virtkit_xen_libxl._autostart import DEFAULT_AUTO_DIR, MAX_BYTES, AutoDir, xendomains_auto

KERNEL = "/fake/vmlinux"


def cfg(name: str = "g1", **kw: object) -> DomainConfig:
    base: dict[str, object] = {"name": name, "memory": 131072, "kernel": KERNEL, "cmdline": "console=hvc0"}
    return DomainConfig(**{**base, **kw})  # type: ignore[arg-type]


def entries(host: Host) -> list[str]:
    """What xendomains would see in its auto directory, dotfiles included (none may be left)."""
    return sorted(os.listdir(host.auto_dir)) if host.auto_dir.exists() else []


def xendomains_start(host: Host) -> None:
    """What xendomains does at boot: ``xl create`` of every file in the auto directory."""
    for name in entries(host):
        if not name.startswith("."):
            subprocess.run([host.xl, "create", "-q", str(host.auto_dir / name)], check=True, timeout=60)


# -- persistence ---------------------------------------------------------------------------------


def test_a_definition_is_persistent_shut_off_and_running(conn: virtkit.Connection) -> None:
    dom = conn.define(cfg())
    assert dom.id is None and dom.is_persistent() is True
    dom.start()
    running = conn.lookup_by_name("g1")
    assert running.id is not None and running.is_persistent() is True
    running.destroy()
    assert conn.lookup_by_name("g1").is_persistent() is True


def test_created_and_outside_domains_are_transient(conn: virtkit.Connection, host: Host, tmp_path: Path) -> None:
    made = conn.create(cfg("t1"))
    assert made.is_persistent() is False
    outside = tmp_path / "outside.cfg"
    outside.write_text(f'name = "x1"\nmemory = 64\nkernel = "{KERNEL}"\n')
    subprocess.run([host.xl, "create", "-q", str(outside)], check=True, timeout=60)
    assert conn.lookup_by_name("x1").is_persistent() is False


def test_undefined_while_running_is_transient_and_gone_is_no_such_domain(conn: virtkit.Connection) -> None:
    dom = conn.define(cfg())
    dom.start()
    running = conn.lookup_by_name("g1")
    running.undefine()
    assert running.is_persistent() is False
    running.destroy()
    with pytest.raises(NoSuchDomain):
        running.is_persistent()
    with pytest.raises(NoSuchDomain):
        running.autostart()
    with pytest.raises(NoSuchDomain):
        running.set_autostart(True)


# -- autostart -----------------------------------------------------------------------------------


def test_round_trip_writes_an_xl_config_of_the_definition_and_removes_it(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.define(cfg(max_vcpus=2, on_reboot="destroy"))
    assert dom.autostart() is False and entries(host) == []
    dom.set_autostart(True)
    assert dom.autostart() is True
    assert entries(host) == ["g1.cfg"]
    path = host.auto_dir / "g1.cfg"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the file xendomains hands to xl create is the definition, uuid included
    assert load_xl_file(str(path)) == dom.config()
    assert load_xl_file(str(path)).uuid == dom.uuid
    dom.set_autostart(True)  # again: the same file, rewritten
    assert entries(host) == ["g1.cfg"]
    assert dom.info().state is DomainState.SHUTOFF  # marking changes no state
    dom.set_autostart(False)
    assert dom.autostart() is False and entries(host) == []
    dom.set_autostart(False)  # unmarking an unmarked domain is no error
    assert dom.autostart() is False


def test_what_xendomains_starts_is_the_same_persistent_domain(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.define(cfg())
    dom.set_autostart(True)
    xendomains_start(host)
    running = conn.lookup_by_name("g1")
    assert running.id == host.doms()["g1"]["id"]
    assert running.uuid == dom.uuid and running.is_persistent() is True and running.autostart() is True
    assert conn.list_defined_domains() == []


def test_a_users_symlink_counts_and_unmarking_removes_only_the_link(
    conn: virtkit.Connection, host: Host, tmp_path: Path
) -> None:
    dom = conn.define(cfg("guest"))
    own = tmp_path / "guest.cfg"  # the user's config: no uuid, and a key xl ignores (xl reads it)
    own.write_text(f'name = "guest"\nmemory = 128\nkernel = "{KERNEL}"\nnot_an_xl_key = 1\n')
    host.auto_dir.mkdir()
    (host.auto_dir / "guest.cfg").symlink_to("../guest.cfg")
    assert dom.autostart() is True
    dom.set_autostart(False)
    assert entries(host) == [] and own.exists()
    # by uuid, whatever the file is called; a regular file the user wrote is theirs: never deleted
    users = host.auto_dir / "zz-other-name"
    users.write_text(f'name = "renamed"\nuuid = "{dom.uuid}"\n')
    assert dom.autostart() is True
    with pytest.raises(InvalidOperation, match="virtkit did not write it"):
        dom.set_autostart(False)
    assert entries(host) == ["zz-other-name"] and dom.autostart() is True


def test_undefine_keeps_a_users_own_file_and_warns(
    conn: virtkit.Connection, host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    dom = conn.define(cfg("guest"))
    dom.set_autostart(True)  # virtkit's guest.cfg
    host.auto_dir.joinpath("mine").write_text(f'name = "guest"\nuuid = "{dom.uuid}"\n')
    with caplog.at_level("WARNING", logger="virtkit.xen_libxl"):
        dom.undefine()
    assert entries(host) == ["mine"]  # virtkit's own file went, the user's stayed
    assert any("mine" in r.getMessage() and "still starts it" in r.getMessage() for r in caplog.records)


def test_unreadable_or_garbled_entries_are_skipped(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.define(cfg())
    auto = host.auto_dir
    auto.mkdir()
    (auto / "binary").write_bytes(os.urandom(4096) + b"\xff\xfe")
    (auto / "syntax.cfg").write_text('name = "g1"\nmemory = [[\n')
    (auto / "bad-uuid.cfg").write_text('name = "g1"\nuuid = "not-a-uuid"\n')
    (auto / "list-name.cfg").write_text('name = ["g1"]\n')
    (auto / "other.cfg").write_text(f'name = "g1"\nuuid = "{uuid.uuid4()}"\n')  # same name, another domain
    (auto / "huge.cfg").write_text(f'name = "g1"\nuuid = "{dom.uuid}"\n' + "#" * MAX_BYTES)
    (auto / "dangling.cfg").symlink_to("../nowhere.cfg")
    (auto / "a-directory").mkdir()
    os.mkfifo(auto / "fifo")  # opening it for reading must not block
    (auto / ".hidden.cfg").write_text(f'name = "g1"\nuuid = "{dom.uuid}"\n')  # xendomains' glob skips it
    denied = auto / "denied.cfg"
    denied.write_text(f'name = "g1"\nuuid = "{dom.uuid}"\n')
    denied.chmod(0)
    if os.access(denied, os.R_OK):  # root reads it anyway: make it garbage instead
        denied.write_text("\x00")
    before = entries(host)
    assert dom.autostart() is False
    dom.set_autostart(True)
    assert dom.autostart() is True
    dom.set_autostart(False)
    assert dom.autostart() is False
    assert entries(host) == before  # the others' files are left as they were


def test_a_file_of_another_kind_under_the_domains_name_is_not_overwritten(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.define(cfg())
    host.auto_dir.mkdir()
    theirs = host.auto_dir / "g1.cfg"
    for text in ("garbage ][", f'name = "g1"\nuuid = "{uuid.uuid4()}"\n'):
        theirs.write_text(text)
        with pytest.raises(InvalidOperation, match=r"g1\.cfg exists"):
            dom.set_autostart(True)
        assert theirs.read_text() == text and dom.autostart() is False


def test_a_users_own_file_under_the_domains_name_is_never_overwritten(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.define(cfg())
    host.auto_dir.mkdir()
    theirs = host.auto_dir / "g1.cfg"
    text = f'name = "g1"\nuuid = "{dom.uuid}"\nmemory = 128\nkernel = "{KERNEL}"\n'
    theirs.write_text(text)
    dom.set_autostart(True)  # marked already, by their file: nothing to write
    assert theirs.read_text() == text and dom.autostart() is True
    conn.define(cfg(uuid=dom.uuid, memory=262144))  # a redefine rewrites only virtkit's own file
    assert theirs.read_text() == text


def test_a_transient_domain_is_refused_and_never_autostarts(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.create(cfg("t1"))
    host.auto_dir.mkdir()
    (host.auto_dir / "t1.cfg").write_text(f'name = "t1"\nkernel = "{KERNEL}"\n')  # someone's config of its name
    assert dom.autostart() is False
    with pytest.raises(InvalidOperation, match="transient"):
        dom.set_autostart(True)
    with pytest.raises(InvalidOperation, match="transient"):
        dom.set_autostart(False)
    assert entries(host) == ["t1.cfg"]


def test_undefine_removes_the_mark(conn: virtkit.Connection, host: Host) -> None:
    off = conn.define(cfg("off"))
    off.set_autostart(True)
    off.undefine()
    assert entries(host) == []
    up = conn.define(cfg("up"))
    up.set_autostart(True)
    up.start()
    running = conn.lookup_by_name("up")
    running.undefine()
    assert entries(host) == [] and running.is_persistent() is False and running.autostart() is False


def test_a_redefine_rewrites_the_mark_a_new_definition_leaves_it(conn: virtkit.Connection, host: Host) -> None:
    dom = conn.define(cfg())
    dom.set_autostart(True)
    path = str(host.auto_dir / "g1.cfg")
    conn.define(cfg(uuid=dom.uuid, memory=262144))
    assert load_xl_file(path).memory == 262144
    conn.lookup_by_name("g1").set_max_memory(524288)  # a shut-off domain's change is a redefine too
    assert load_xl_file(path).max_memory == 524288 and load_xl_file(path) == dom.config()
    other = conn.define(cfg("g2"))
    assert other.autostart() is False and entries(host) == ["g1.cfg"]


def test_a_redefine_leaves_a_users_link_alone(conn: virtkit.Connection, host: Host, tmp_path: Path) -> None:
    dom = conn.define(cfg())
    own = tmp_path / "g1-own.cfg"
    own.write_text(f'name = "g1"\nuuid = "{dom.uuid}"\nmemory = 128\nkernel = "{KERNEL}"\n')
    host.auto_dir.mkdir()
    (host.auto_dir / "g1-link.cfg").symlink_to(own)
    conn.define(cfg(uuid=dom.uuid, memory=262144))
    assert entries(host) == ["g1-link.cfg"] and "memory = 128" in own.read_text()  # no second entry; theirs kept
    assert conn.lookup_by_name("g1").autostart() is True


def test_a_read_only_connection_reads_and_refuses_the_change(host: Host) -> None:
    with host.open() as rw:
        rw.define(cfg()).set_autostart(True)
    with host.open(readonly=True) as ro:
        dom = ro.lookup_by_name("g1")
        assert dom.is_persistent() is True and dom.autostart() is True
        with pytest.raises(ReadOnlyError):
            dom.set_autostart(False)
    assert entries(host) == ["g1.cfg"]


def test_the_three_operations_are_served_here(conn: virtkit.Connection) -> None:
    for op in ("domain_is_persistent", "domain_get_autostart", "domain_set_autostart"):
        assert conn.served_by(op) == "xen_libxl", op


# -- where the auto directory is -----------------------------------------------------------------


def test_auto_dir_from_params_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from virtkit_xen_libxl._plugin import auto_dir

    monkeypatch.setenv("VIRTKIT_XEN_LIBXL_AUTO_DIR", str(tmp_path / "env"))
    assert auto_dir(OpenOptions(readonly=False, timeout=5, params={})) == str(tmp_path / "env")
    opts = OpenOptions(readonly=False, timeout=5, params={"xen_libxl_auto_dir": "/x"})
    assert auto_dir(opts) == "/x"
    monkeypatch.delenv("VIRTKIT_XEN_LIBXL_AUTO_DIR")
    assert auto_dir(None) is None  # then xendomains' own settings say


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("XENDOMAINS_SAVE=/var/lib/xen/save\nXENDOMAINS_AUTO=/srv/xen/auto\n", "/srv/xen/auto"),
        ('XENDOMAINS_AUTO="/srv/a b"  # quoted, with a comment\n', "/srv/a b"),
        ("export XENDOMAINS_AUTO='/srv/exported'\n", "/srv/exported"),
        ("XENDOMAINS_AUTO=/first\nXENDOMAINS_AUTO=/last\n", "/last"),  # the shell's last word
        ("#XENDOMAINS_AUTO=/commented\n", DEFAULT_AUTO_DIR),
        ("XENDOMAINS_AUTO=$ROOT/auto\n", DEFAULT_AUTO_DIR),  # only a shell could say
        ('XENDOMAINS_AUTO="/unbalanced\n', DEFAULT_AUTO_DIR),
        ('XENDOMAINS_AUTO=""\n', None),  # xendomains then starts nothing
    ],
)
def test_auto_dir_from_xendomains_settings(tmp_path: Path, text: str, want: str | None) -> None:
    debian = tmp_path / "default"
    debian.write_text(text)
    assert xendomains_auto((str(debian), str(tmp_path / "sysconfig"))) == want


def test_xendomains_settings_files_in_order(tmp_path: Path) -> None:
    debian, sysconfig = tmp_path / "default", tmp_path / "sysconfig"
    sysconfig.write_text("XENDOMAINS_AUTO=/from/sysconfig\n")
    assert xendomains_auto((str(debian), str(sysconfig))) == "/from/sysconfig"
    debian.write_text("XENDOMAINS_MIGRATE=\n")  # Debian's file, without the setting
    assert xendomains_auto((str(debian), str(sysconfig))) == DEFAULT_AUTO_DIR
    assert xendomains_auto((str(tmp_path / "none"),)) == DEFAULT_AUTO_DIR


def test_autostart_switched_off_in_xendomains_refuses_to_mark(tmp_path: Path) -> None:
    settings = tmp_path / "xendomains"
    settings.write_text('XENDOMAINS_AUTO=""\n')
    auto = AutoDir(None, (str(settings),))
    c = cfg(uuid=uuid.uuid4())
    assert auto.path is None and auto.find(c) == []
    with pytest.raises(InvalidOperation, match="XENDOMAINS_AUTO is empty"):
        auto.write(c)
    auto.remove(c)  # nothing to remove
