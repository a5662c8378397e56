"""Lab tests run only inside the xenlab dom0 (``lab/xenlab test``), never on the host.

On the host this conftest makes pytest ignore every file here, so they are not even
imported. The same two lines go into every ``plugins/*/tests/lab/conftest.py``. In the lab it
gives the tests ``made``: names for the guests a test makes, destroyed in teardown, ``conn``:
``xen:///`` with the plugin's state directory in the test's temporary directory, and ``guest``:
the ``DomainConfig`` of the lab's tiny PV guest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import virtkit

if os.environ.get("VIRTKIT_IN_LAB") != "1":
    collect_ignore_glob = ["*"]
else:
    import pytest_xenlab  # on PYTHONPATH in dom0 only


#: xl's XEN_DUMP_DIR on Debian: where coredump-destroy / coredump-restart write core files.
DUMP_DIR = Path("/var/lib/xen/dump")
#: The lab guest's kernel command line: xenlab.role=guest makes its initramfs the guests' idle
#: init (lab/image/stage1-init).
CMDLINE = "console=hvc0 xenlab.role=guest quiet mitigations=off"


class Made:
    """Names of guests a test made; teardown destroys them and what xl renamed them to
    (``NAME-<time>``: rename-restart's old run)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, name: str | None = None) -> str:
        name = name or pytest_xenlab.unique_name("vkx")
        self.names.append(name)
        return name

    def left(self) -> list[str]:
        return [x for x in pytest_xenlab.xl_list() if any(x == n or x.startswith(f"{n}-") for n in self.names)]

    def cleanup(self) -> None:
        try:
            self._destroy_all()
        finally:
            # Their core files (coredump-* actions) are the size of their memory, on dom0's
            # small root file system: left behind, a few starve the next tests' domain creation.
            if DUMP_DIR.is_dir():
                for dump in DUMP_DIR.iterdir():
                    if any(n in dump.name for n in self.names):
                        dump.unlink(missing_ok=True)

    def _destroy_all(self) -> None:
        # A restart action can bring a guest back while it is destroyed (its babysitter was
        # between the old run and the new one, or dumping core): done when none is seen twice,
        # 3 s apart.
        quiet = 0
        for _ in range(10):
            left = self.left()
            quiet = 0 if left else quiet + 1
            if quiet == 2:
                return
            for name in left:
                pytest_xenlab.sh("xl", "destroy", name, timeout=60, check=False)
            time.sleep(3)
        pytest.fail(f"guests still there after 10 rounds of xl destroy: {left}", pytrace=False)


@pytest.fixture
def made() -> Iterator[Made]:
    m = Made()
    yield m
    m.cleanup()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[virtkit.Connection]:
    c = virtkit.open("xen:///", timeout=60, params={"xen_libxl_state_dir": str(tmp_path / "state")})
    yield c
    c.close()


def lab_guest(name: str, *, after: str | None = None, **kw: object) -> virtkit.DomainConfig:
    """The lab's tiny PV guest; keywords replace or add fields. ``after="ACTION:S"`` (poweroff,
    reboot, crash) has the guest do that by itself S seconds after boot."""
    cmdline = CMDLINE if after is None else f"{CMDLINE} xenlab.after={after}"
    base: dict[str, object] = {
        "name": name,
        "memory": 131072,
        "kernel": pytest_xenlab.GUEST_KERNEL,
        "initrd": pytest_xenlab.GUEST_RAMDISK,
        "cmdline": cmdline,
    }
    return virtkit.DomainConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
def guest() -> Callable[..., virtkit.DomainConfig]:
    return lab_guest
