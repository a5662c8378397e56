"""A pretend Xen host for the host tests: a JSON world file, an ``xl`` that edits it, and an
inner plugin (standing in for xen_hyper + xenstore) that reads it.

Run as a script it is the fake ``xl``: ``fakexen.py WORLD create -q FILE`` etc. It behaves as
xl 4.17 did in the lab for what the driver uses, messages included: the babysitter's
on_poweroff/on_reboot actions happen at once when a guest is asked to shut down or reboot.
"""

from __future__ import annotations

import fcntl
import json
import sys
import uuid as _uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import virtkit
from virtkit import (
    Declined,
    DomainInfo,
    DomainRef,
    DomainState,
    DomainStateInfo,
    DomainStats,
    NoSuchDomain,
    VcpuFlags,
)

HOST_MIB = 1024  # free memory of the pretend host


@contextmanager
def world(path: Path) -> Iterator[dict[str, Any]]:
    """The world, locked, written back on exit."""
    with open(path.with_suffix(".lock"), "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {"next": 1, "doms": {}}
        yield data
        path.write_text(json.dumps(data))


def new_world(path: Path) -> None:
    with world(path) as w:
        w["doms"] = {
            "0": {"name": "Domain-0", "uuid": str(_uuid.UUID(int=0)), "mem": 786432, "max": 786432, "vcpus": 1}
        }
        w["doms"]["0"].update(maxv=1, state="running", reason=None, cfg={})


# -- the fake xl ----------------------------------------------------------------------------------


def _die(msg: str, rc: int = 3) -> None:
    print(msg, file=sys.stderr)
    sys.exit(rc)


def _by_id(w: dict[str, Any], arg: str) -> dict[str, Any]:
    d: dict[str, Any] | None = w["doms"].get(arg)
    if d is None:
        _die(f"invalid domain identifier: {arg}", 1)
    assert d is not None
    return d


def _libxl_json(domid: int, d: dict[str, Any]) -> dict[str, Any]:
    c = d["cfg"]
    b_info = {"max_vcpus": d["maxv"], "avail_vcpus": list(range(d["vcpus"])), "max_memkb": d["max"]}
    b_info.update(target_memkb=d["mem"], kernel=c.get("kernel"), ramdisk=c.get("ramdisk"), cmdline=c.get("extra"))
    cfg = {"c_info": {"type": c.get("type", "pv"), "name": d["name"], "uuid": d["uuid"]}, "b_info": b_info}
    for k in ("on_poweroff", "on_reboot", "on_crash"):
        if k in c:
            cfg[k] = c[k].replace("-", "_")
    return {"domid": domid, "config": cfg}


def xl_main(argv: list[str]) -> None:
    from virtkit_xen_libxl import _xlcfg

    path = Path(argv[0])
    args = argv[1:]
    dry = args[:1] == ["-N"]
    if dry:
        args = args[1:]
    cmd, rest = args[0], [a for a in args[1:] if a not in ("-q", "--ignore-host")]
    print("Parsing config from ...", file=sys.stderr) if cmd == "create" else None
    with world(path) as w:
        if cmd == "create":
            try:
                s = _xlcfg.parse(Path(rest[0]).read_text(), rest[0])
            except virtkit.InvalidArgument as exc:
                _die(f"{exc.message}\nFailed to parse config: Invalid argument", 1)
            if not s.get("kernel"):
                _die("Neither kernel nor bootloader specified", 1)
            uid = str(s.get("uuid") or _uuid.uuid4())
            if dry:
                print(json.dumps(_libxl_json(-1, {"cfg": s, "name": s["name"], "uuid": uid, "maxv": 1} | _sizes(s))))
                return
            domid = w["next"]
            w["next"] += 1
            if any(d["name"] == s["name"] for d in w["doms"].values()):
                _die(
                    f'libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain {domid}:Domain with name "'
                    f'{s["name"]}" already exists.'
                )
            if sum(d["max"] for k, d in w["doms"].items() if k != "0") // 1024 + _sizes(s)["max"] // 1024 > HOST_MIB:
                _die(
                    "xc: error: panic: xg_dom_boot.c:119: xc_dom_boot_mem_init: can't allocate low memory for "
                    f"domain: Out of memory\nlibxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain {domid}"
                    ":Non-existant domain"
                )
            if s["kernel"] == "/fake/dies":  # built and unpaused, then died before xl returned
                return
            if not Path(str(s["kernel"])).exists() and not str(s["kernel"]).startswith("/fake/"):
                _die(f"xc: error: panic: xg_dom_core.c:205: failed to open file '{s['kernel']}'")
            w["doms"][str(domid)] = {"name": s["name"], "uuid": uid, "state": "running", "reason": None, "cfg": s}
            w["doms"][str(domid)].update(_sizes(s))
            if s["kernel"] == "/fake/leftover":  # a failure that leaves the half-built domain
                path.write_text(json.dumps(w))
                _die(f"libxl: error: libxl_create.c:1640:domcreate_rebuild_done: Domain {domid}:cannot (re-)build")
        elif cmd == "destroy":
            _by_id(w, rest[0])
            del w["doms"][rest[0]]
        elif cmd in ("shutdown", "reboot"):
            d = _by_id(w, rest[0])
            action = d["cfg"].get(
                "on_poweroff" if cmd == "shutdown" else "on_reboot", "destroy" if cmd == "shutdown" else "restart"
            )
            del w["doms"][rest[0]]
            if action == "restart":
                w["doms"][str(w["next"])] = d
                w["next"] += 1
        elif cmd == "vcpu-set":
            d = _by_id(w, rest[0])
            n = int(rest[1])
            if n == 0:
                _die("libxl: error: libxl_domain.c:1863:libxl_set_vcpuonline: Requested 0 VCPUs!", 1)
            d["vcpus"] = min(n, d["maxv"])
        elif cmd == "list" and rest[0] == "-l":
            print(json.dumps([_libxl_json(int(rest[1]), _by_id(w, rest[1]))]))
        else:
            _die(f"fake xl: unknown command {args}", 2)


def _sizes(s: dict[str, Any]) -> dict[str, Any]:
    mem = int(s.get("memory", 32)) * 1024
    vcpus = int(s.get("vcpus", 1))
    return {
        "mem": mem,
        "max": int(s.get("maxmem", 0)) * 1024 or mem,
        "vcpus": vcpus,
        "maxv": int(s.get("maxvcpus", vcpus)),
    }


# -- the inner plugin (hypercalls + xenstore) ----------------------------------------------------


def _xs_uuid(d: dict[str, Any]) -> _uuid.UUID:
    """The uuid xenstore's ``vm`` link names: ``vm_uuid`` if set (the hypervisor has ``uuid``)."""
    return _uuid.UUID(d.get("vm_uuid") or d["uuid"])


class FakeHost:
    """What xen_hyper (the stats: hypervisor handles) and xenstore (lookups, names, ``vm``
    links) would read and do on the pretend host."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _find(self, dom: DomainRef) -> tuple[str, dict[str, Any]]:
        with world(self.path) as w:
            d = w["doms"].get(str(dom.id))
        if d is None or (dom.uuid.int and str(dom.uuid) not in (d["uuid"], d.get("vm_uuid"))):
            raise NoSuchDomain(f"no domain {dom}")
        return str(dom.id), d

    def _set(self, domid: str, **kw: Any) -> None:
        with world(self.path) as w:
            w["doms"][domid].update(kw)

    def connect_get_type(self, *, flags: int = 0) -> str:
        return "Xen"

    def connect_list_domains(self, *, flags: int = 0) -> list[int]:
        with world(self.path) as w:
            return sorted(int(k) for k in w["doms"])

    def domain_lookup_by_id(self, id: int, *, flags: int = 0) -> DomainRef:  # noqa: A002
        with world(self.path) as w:
            d = w["doms"].get(str(id))
        if d is None:
            raise NoSuchDomain(f"no domain {id}")
        return DomainRef(d["name"], _xs_uuid(d), id)

    def domain_lookup_by_name(self, name: str, *, flags: int = 0) -> DomainRef:
        with world(self.path) as w:
            for k, d in w["doms"].items():
                if d["name"] == name:
                    return DomainRef(name, _xs_uuid(d), int(k))
        raise NoSuchDomain(name)

    def domain_lookup_by_uuid(self, uuid: _uuid.UUID, *, flags: int = 0) -> DomainRef:
        with world(self.path) as w:
            for k, d in w["doms"].items():
                if _xs_uuid(d) == uuid:
                    return DomainRef(d["name"], uuid, int(k))
        raise NoSuchDomain(str(uuid))

    @virtkit.stats_groups("state")
    def connect_get_all_domain_stats(
        self, groups: Iterable[str], domains: list[DomainRef] | None = None, *, flags: int = 0
    ) -> list[DomainStats]:
        """xen_hyper's state group: every domain from one hypercall, with synthetic names."""
        assert tuple(groups) == ("state",) and domains is None, (groups, domains)
        with world(self.path) as w:
            doms = sorted((int(k), d) for k, d in w["doms"].items())
        state = DomainState.__getitem__
        return [
            DomainStats(
                DomainRef(f"domain-{k}", _uuid.UUID(d["uuid"]), k),
                DomainStateInfo(state(d["state"].upper()), d["reason"]),
            )
            for k, d in doms
        ]

    def domain_get_info(self, dom: DomainRef, *, flags: int = 0) -> DomainInfo:
        _k, d = self._find(dom)
        return DomainInfo(DomainState[d["state"].upper()], d["max"] + 1024, d["mem"], d["vcpus"], 1000)

    def domain_get_state(self, dom: DomainRef, *, flags: int = 0) -> DomainStateInfo:
        _k, d = self._find(dom)
        return DomainStateInfo(DomainState[d["state"].upper()], d["reason"])

    def domain_get_max_memory(self, dom: DomainRef, *, flags: int = 0) -> int:
        return self._find(dom)[1]["max"] + 1024

    def domain_get_vcpus(self, dom: DomainRef, *, flags: int = 0) -> int:
        d = self._find(dom)[1]
        return int(d["maxv"] if flags & VcpuFlags.MAXIMUM else d["vcpus"])

    def domain_get_os_type(self, dom: DomainRef, *, flags: int = 0) -> str:
        return "linux"

    def domain_suspend(self, dom: DomainRef, *, flags: int = 0) -> None:
        k, d = self._find(dom)
        if d["state"] != "running" or k == "0":
            raise virtkit.InvalidOperation(f"cannot pause {d['state']} domain")
        self._set(k, state="paused")

    def domain_resume(self, dom: DomainRef, *, flags: int = 0) -> None:
        k, d = self._find(dom)
        if d["state"] != "paused":
            raise virtkit.InvalidOperation("not paused")
        self._set(k, state="running")

    def domain_set_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        k, d = self._find(dom)
        if memory <= 0 or memory > d["max"] + 1024:
            raise virtkit.InvalidArgument(f"bad memory {memory}")
        self._set(k, mem=memory)

    def domain_set_max_memory(self, dom: DomainRef, memory: int, *, flags: int = 0) -> None:
        k, _d = self._find(dom)
        if memory <= 0:
            raise virtkit.InvalidArgument(f"bad max memory {memory}")
        self._set(k, max=memory - 1024)


class OldFakeHost(FakeHost):
    """A hypercall plugin from before catalogue 1.1: no stats."""

    connect_get_all_domain_stats = None  # type: ignore[assignment]


def idents_reader(
    path: Path,
) -> Callable[[Sequence[tuple[int, int]]], list[tuple[str | None, _uuid.UUID | None]]]:
    """What xen_libxl reads from xenstore in one round trip: each id's name and the uuid of its
    ``vm`` link (``vm_uuid`` in the world: xl's rename-restart gives the old run a new one)."""

    def idents(keys: Sequence[tuple[int, int]]) -> list[tuple[str | None, _uuid.UUID | None]]:
        with world(path) as w:
            doms = [w["doms"].get(str(i), {}) for i, _handle in keys]
        return [(d.get("name"), _uuid.UUID(d.get("vm_uuid") or d["uuid"]) if d else None) for d in doms]

    return idents


class FakeHostPlugin:
    """Serves xen:/// from the world file (stands in for xen_hyper and xenstore)."""

    virtkit_catalogue = "1.1"
    virtkit_name = "fake_host"

    def __init__(self, path: Path, *, stats: bool = True) -> None:
        self.path = path
        self.stats = stats

    @virtkit.hookimpl
    def priority(self, uri: virtkit.URI) -> int:
        return 50

    @virtkit.hookimpl
    def open(self, uri: virtkit.URI, options: virtkit.OpenOptions) -> object:
        if uri.scheme != "xen":
            return Declined("not xen")
        return FakeHost(self.path) if self.stats else OldFakeHost(self.path)


def xl_wrapper(tmp: Path, world_path: Path) -> str:
    """An executable that runs this file as xl on ``world_path``."""
    exe = tmp / "xl"
    here = Path(__file__).resolve()
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {here} {world_path} "$@"\n')
    exe.chmod(0o755)
    return str(exe)


if __name__ == "__main__":
    xl_main(sys.argv[1:])
