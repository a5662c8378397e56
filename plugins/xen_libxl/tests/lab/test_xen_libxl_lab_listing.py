"""The listing's caches on real Xen: every change made outside this connection (``xl create``,
``xl rename``, ``xl destroy``, define/undefine by the CLI in another process) shows in the very
next listing, through both the bulk call (``virtkit list --all``) and ``domains(all=True)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_xenlab
from pytest_xenlab import guest_config, sh

import virtkit
from virtkit import DomainState

pytestmark = pytest.mark.lab
Made = Callable[..., str]


def listed(conn: virtkit.Connection) -> dict[str, tuple[int | None, DomainState | None]]:
    """name -> (id, state) from the bulk call, checked equal to domains(all=True)'s names/ids."""
    bulk = {s.domain.name: (s.domain.id, s.state.state if s.state else None) for s in conn.all_domain_stats(["state"])}
    doms = {d.name: d.id for d in conn.domains(all=True)}
    assert doms == {n: i for n, (i, _s) in bulk.items()}
    return bulk


def xl_ids() -> dict[str, int]:
    return {n: d.domid for n, d in pytest_xenlab.xl_list().items()}


def cli(state: Path, *args: str) -> None:
    env = {**os.environ, "VIRTKIT_XEN_LIBXL_STATE_DIR": str(state)}
    r = subprocess.run(
        [sys.executable, "-m", "virtkit", "-c", "xen:///", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr


def test_changes_outside_the_connection_show_in_the_next_listing(tmp_path: Path, made: Made) -> None:
    state = tmp_path / "state"
    with virtkit.open("xen:///", timeout=60, params={"xen_libxl_state_dir": str(state)}) as conn:
        for _ in range(3):
            listed(conn)  # caches warm
        # xl create outside virtkit: listed at once, with xl's id
        name = made()
        cfg = tmp_path / f"{name}.cfg"
        cfg.write_text(guest_config(name))
        sh("xl", "create", "-q", str(cfg), timeout=120)
        assert listed(conn)[name][0] == xl_ids()[name]
        # xl rename, several times, each listing right after it
        current = name
        for n in range(4):
            new = made(f"{name}-r{n}")
            sh("xl", "rename", current, new)
            now = listed(conn)
            assert new in now and current not in now, (current, new, sorted(now))
            assert now[new][0] == xl_ids()[new]
            current = new
        # defined and undefined by another process (the CLI), listed or gone at once
        dcfg = tmp_path / "def.cfg"
        defined = made()
        dcfg.write_text(guest_config(defined))
        for _ in range(2):
            cli(state, "define", "--format", "xl", str(dcfg))
            assert listed(conn).get(defined) == (None, DomainState.SHUTOFF)
            cli(state, "undefine", defined)
            assert defined not in listed(conn)
        # xl destroy: gone at once
        sh("xl", "destroy", current, timeout=60)
        assert current not in listed(conn)
        # a new domain may take no id the old one had, but the cache must not care
        sh("xl", "create", "-q", str(cfg), timeout=120)
        assert listed(conn)[name][0] == xl_ids()[name]
        sh("xl", "destroy", name, timeout=60)
        assert name not in listed(conn)
