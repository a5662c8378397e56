"""Fixtures for the host tests: a pretend Xen host (``fakexen``) and the plugin wired to it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtkit

sys.path.insert(0, str(Path(__file__).parent))
import fakexen

from virtkit_xen_libxl import Plugin


class Host:
    def __init__(self, tmp: Path, *, stats: bool = True) -> None:
        self.world = tmp / "world.json"
        fakexen.new_world(self.world)
        self.xl = fakexen.xl_wrapper(tmp, self.world)
        caps = tmp / "capabilities"
        caps.write_text("control_d\n")
        self.state_dir = tmp / "state"
        self.auto_dir = tmp / "auto"  # xendomains' /etc/xen/auto, never the real one
        self.host_plugin = fakexen.FakeHostPlugin(self.world, stats=stats)
        self.plugin = Plugin(
            str(caps),
            xl_path=self.xl,
            inner_plugins=(self.host_plugin,),
            entry_points=False,
            idents=fakexen.idents_reader(self.world),
        )

    def open(self, readonly: bool = False) -> virtkit.Connection:
        return virtkit.open(
            "xen:///",
            readonly=readonly,
            timeout=10,
            plugins=[self.host_plugin, self.plugin],
            entry_points=False,
            # the pretend host has only an xl command: no libxl library, no resident engine
            params={
                "xen_libxl_state_dir": str(self.state_dir),
                "xen_libxl_auto_dir": str(self.auto_dir),
                "xen_libxl_engine": "xl",
            },
        )

    def doms(self) -> dict[str, dict[str, object]]:
        with fakexen.world(self.world) as w:
            return {d["name"]: d | {"id": int(k)} for k, d in w["doms"].items()}


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


@pytest.fixture
def conn(host: Host) -> Iterator[virtkit.Connection]:
    c = host.open()
    yield c
    c.close()
