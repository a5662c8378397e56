"""The state directory: defined configs and one run directory per running QEMU.

::

    ROOT/lock                   flock: id allocation, define/undefine, starting
    ROOT/next-id                the next domain id (ids are never reused)
    ROOT/defined/NAME.json      a persistent domain's config
    ROOT/run/ID/domain.json     a running domain: its config and whether it is persistent
    ROOT/run/ID/qmp.sock        QMP kept free for short direct connections (when there is no relay)
    ROOT/run/ID/monitor.sock    QMP held by the domain's relay (``_relay``)
    ROOT/run/ID/relay.sock      the relay: events to any number of listeners, commands
    ROOT/run/ID/relay.pid       the relay's pid (relay.lock: flock held while it lives; relay.log)
    ROOT/run/ID/reboot          a pending cooperative reboot (reboot.claimed-*: one under way)
    ROOT/run/ID/qemu.pid        QEMU's pidfile
    ROOT/run/ID/console.log     the guest's serial console
    ROOT/run/ID/qemu.log        QEMU's own messages while starting
    ROOT/run/ID/started         written once QEMU is up: without it, the domain is still starting

The files are the truth: every connection, in any process, reads them, so a new connection sees
(re-attaches to) the domains an earlier one started. Run directories are named by id, not by
name, to keep socket paths short (a unix socket path is limited to 107 bytes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import shutil
import uuid as _uuid
from collections.abc import Iterator
from typing import Any, ClassVar

from virtkit import (
    DomainConfig,
    DomainRef,
    InvalidArgument,
    ProtocolError,
    VirtError,
    check_domain_name,
    load_json_file,
    read_config_file,
)

from ._relay import RELAY

__all__ = ["PIDFILE", "QMP", "Defined", "Record", "Running", "StateDir"]

#: QMP kept free for short direct connections (the relay holds its own monitor socket).
QMP = "qmp.sock"
#: QEMU's pidfile.
PIDFILE = "qemu.pid"


@dataclasses.dataclass(frozen=True, slots=True)
class Defined:
    """A domain as its defined config knows it: persistent, not running."""

    config: DomainConfig
    uuid: _uuid.UUID

    persistent: ClassVar[bool] = True
    id: ClassVar[None] = None

    @property
    def ref(self) -> DomainRef:
        return DomainRef(self.config.name, self.uuid, None)

    @property
    def max_memory(self) -> int:
        return self.config.max_memory or self.config.memory


@dataclasses.dataclass(frozen=True, slots=True)
class Running:
    """A running domain: its id and run directory, and where its QEMU and relay are found there."""

    config: DomainConfig
    uuid: _uuid.UUID
    persistent: bool
    id: int
    rundir: pathlib.Path

    @property
    def ref(self) -> DomainRef:
        return DomainRef(self.config.name, self.uuid, self.id)

    @property
    def max_memory(self) -> int:
        return self.config.max_memory or self.config.memory

    @property
    def key(self) -> str:
        """The run directory as a str: the key of per-domain caches."""
        return str(self.rundir)

    @property
    def relay_socket(self) -> str:
        return os.path.join(self.rundir, RELAY)

    @property
    def qmp_socket(self) -> str:
        return os.path.join(self.rundir, QMP)

    def pid(self) -> int | None:
        """QEMU's pid from its pidfile; None once QEMU exited cleanly (it removes the file)."""
        try:
            with open(f"{self.rundir}/{PIDFILE}") as fh:  # not pathlib: on the per-call path
                return int(fh.read().strip())
        except (OSError, ValueError):
            return None


#: Whatever the state directory knows of a domain.
Record = Defined | Running


class StateDir:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.defined = root / "defined"
        self.run = root / "run"
        # path -> (mtime_ns, size, entry): domain.json is read on every call, parsed once.
        self._cache: dict[pathlib.Path, tuple[int, int, tuple[DomainConfig, _uuid.UUID, bool]]] = {}

    def ensure(self) -> None:
        for d in (self.root, self.defined, self.run):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def next_id(self) -> int:
        """Call with the lock held."""
        path = self.root / "next-id"
        try:
            n = int(read_config_file(path, "id counter").strip() or "1")
        except (InvalidArgument, ValueError):  # missing or unreadable: the run directories decide
            n = 1
        # Never hand out an id whose run directory still exists (a next-id file lost or edited).
        existing = [int(p.name) for p in self.run.iterdir() if p.name.isdigit()]
        n = max([n, *(i + 1 for i in existing)])
        path.write_text(f"{n + 1}\n")
        return n

    # -- reading --------------------------------------------------------------------------------

    def _parse(self, path: pathlib.Path) -> tuple[DomainConfig, _uuid.UUID, bool]:
        """The config, its uuid and the persistent flag of a state entry."""
        try:
            st = path.stat()
            hit = self._cache.get(path)
            if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
                return hit[2]
            # a regular file of bounded size, strict JSON: a FIFO or a huge file there must not
            # block or exhaust a listing
            data: Any = load_json_file(path, "state entry")
            if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
                raise ValueError("expected an object with a 'config' object")
            cfg = DomainConfig.from_dict(data["config"])
            if cfg.uuid is None:
                raise ValueError("the config has no uuid")
            entry = (cfg, cfg.uuid, bool(data.get("persistent", True)))
        except (OSError, ValueError, TypeError, VirtError) as exc:
            raise ProtocolError(f"corrupted state entry {path}: {exc}") from exc
        self._cache[path] = (st.st_mtime_ns, st.st_size, entry)
        return entry

    def running_ids(self) -> list[int]:
        try:
            return sorted(int(p.name) for p in self.run.iterdir() if p.name.isdigit())
        except FileNotFoundError:
            return []

    def running(self, dom_id: int) -> Running:
        """The record of run directory ``dom_id``; FileNotFoundError when there is none."""
        path = self.run / str(dom_id) / "domain.json"
        if not path.parent.is_dir():
            raise FileNotFoundError(path)
        cfg, uuid, persistent = self._parse(path)
        return Running(cfg, uuid, persistent, dom_id, path.parent)

    def defined_names(self) -> list[str]:
        try:
            return sorted(p.name[: -len(".json")] for p in self.defined.glob("*.json"))
        except FileNotFoundError:
            return []

    def defined_record(self, name: str) -> Defined:
        """The defined domain ``name``; FileNotFoundError when there is none. Names are file
        names here: one virtkit.check_domain_name refuses (a path, say) is no defined domain."""
        try:
            check_domain_name(name)
        except InvalidArgument:
            raise FileNotFoundError(f"no defined domain {name!r}") from None
        path = self.defined / f"{name}.json"
        if not os.path.lexists(path):
            raise FileNotFoundError(path)  # anything else there (a FIFO, a directory) is corrupted
        cfg, uuid, _ = self._parse(path)
        if cfg.name != name:
            raise ProtocolError(f"corrupted state entry {path}: it names domain {cfg.name!r}")
        return Defined(cfg, uuid)

    # -- writing (lock held) ----------------------------------------------------------------

    def write_running(self, run: Running, *, persistent: bool) -> None:
        self._write(run.rundir / "domain.json", {"config": run.config.to_dict(), "persistent": persistent})

    @staticmethod
    def _write(path: pathlib.Path, data: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)  # atomic: a reader never sees half a file

    def write_defined(self, cfg: DomainConfig) -> None:
        self._write(self.defined / f"{cfg.name}.json", {"config": cfg.to_dict()})

    def remove_defined(self, name: str) -> None:
        (self.defined / f"{name}.json").unlink(missing_ok=True)

    def make_rundir(self, dom_id: int, dom: Defined, persistent: bool) -> Running:
        d = self.run / str(dom_id)
        d.mkdir(mode=0o700)
        run = Running(dom.config, dom.uuid, persistent, dom_id, d)
        self.write_running(run, persistent=persistent)
        return run

    def remove_rundir(self, rundir: pathlib.Path) -> None:
        self.forget(rundir)
        shutil.rmtree(rundir, ignore_errors=True)

    def forget(self, rundir: pathlib.Path) -> None:
        self._cache.pop(rundir / "domain.json", None)
