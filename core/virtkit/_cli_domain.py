"""The CLI's domain commands, in virsh's formats: listing and looking (``list``, ``dominfo``,
``domstate``, ``domid``, ``domname``, ``domuuid``, ``vcpucount``, ``dumpconfig``), changing
(lifecycle, memory, vcpus, ``autostart``, ``create``, ``define``) and ``events``."""

from __future__ import annotations

import sys
from collections.abc import Callable

from ._cli_args import parse_size
from ._cli_output import emit, fields, safe, table
from ._connection import Connection, Domain
from ._errors import InvalidArgument, Unsupported
from ._types import DomainConfig, DomainEvent, DomainRef, DomainState, VcpuFlags

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["list_columns", "listing"]


# -- listing and looking --------------------------------------------------------------------------


def listing(
    conn: Connection,
    all: bool,  # noqa: A002 - virsh's --all
    inactive: bool = False,
) -> list[tuple[DomainRef, DomainState]]:
    """What ``list`` shows: running domains by id, then the defined ones; ``all`` both,
    ``inactive`` the defined ones only, neither the running ones only (virsh's flags).

    One bulk call where the connection serves the stats' state group (on a remote host: one
    round trip, not a lookup and an info per domain), else the catalogue's lookups and ``info``.
    """
    want_active, want_inactive = all or not inactive, all or inactive
    listed = conn._listed_states(active=want_active, inactive=want_inactive)
    if listed is not None:
        return listed
    doms = conn._looked_up(active=want_active, inactive=want_inactive)
    return [(d.ref, d.info().state) for d in doms]


def list_columns(args: argparse.Namespace) -> list[str]:
    """The fields ``list`` prints as text: virsh's table, or ``--name`` / ``--uuid`` lines."""
    if args.name or args.uuid:
        return ["uuid"] * args.uuid + ["name"] * args.name
    return ["id", "name", "state"]


def cmd_list(conn: Connection, args: argparse.Namespace) -> None:
    data = [
        {"id": ref.id, "name": ref.name, "uuid": str(ref.uuid), "state": state.label}
        for ref, state in listing(conn, args.all, args.inactive)
    ]
    columns = list_columns(args)

    def text() -> str:
        if columns[0] == "id":
            rows = [["-" if x["id"] is None else str(x["id"]), str(x["name"]), str(x["state"])] for x in data]
            return table(rows, ["Id", "Name", "State"])
        return "\n".join(" ".join(str(x[c]) for c in columns) for x in data)

    emit(args, data, text)


def cmd_dominfo(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    info = dom.info()
    data: dict[str, Any] = {
        "id": dom.id,
        "name": dom.name,
        "uuid": str(dom.uuid),
        "state": info.state.label,
        "max_memory_kib": info.max_memory,
        "memory_kib": info.memory,
        "vcpus": info.vcpus,
        "cpu_time_ns": info.cpu_time,
    }
    if conn.served_by("domain_get_os_type"):
        data["os_type"] = dom.os_type()
    if conn.served_by("domain_get_vcpus"):
        data["max_vcpus"] = dom.vcpus(flags=VcpuFlags.MAXIMUM)
    if conn.served_by("domain_is_persistent"):
        data["persistent"] = dom.is_persistent()
    elif dom.id is None:  # by the catalogue's contract only a persistent domain outlives its stop
        data["persistent"] = True
    if conn.served_by("domain_get_autostart"):
        data["autostart"] = dom.autostart()
    lines = [
        ("Id", "-" if dom.id is None else dom.id),
        ("Name", dom.name),
        ("UUID", data["uuid"]),
        ("OS Type", data.get("os_type", "-")),
        ("State", data["state"]),
        ("CPU(s)", data["vcpus"]),
        ("CPU time", f"{info.cpu_time / 1e9:.1f}s"),
        ("Max memory", f"{info.max_memory} KiB"),
        ("Used memory", f"{info.memory} KiB"),
    ]
    if "persistent" in data:
        lines.append(("Persistent", "yes" if data["persistent"] else "no"))
    if "autostart" in data:
        lines.append(("Autostart", "enable" if data["autostart"] else "disable"))
    emit(args, data, lambda: fields(lines))


def cmd_domstate(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    if conn.served_by("domain_get_state"):
        st = dom.state()
        state, reason = st.state, st.reason
    else:
        state, reason = dom.info().state, None
    data = {"name": dom.name, "state": state.label, "reason": reason}
    emit(args, data, state.label + (f" ({reason})" if args.reason and reason else ""))


def cmd_domid(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    emit(args, {"name": dom.name, "id": dom.id}, "-" if dom.id is None else str(dom.id))


def cmd_domname(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    emit(args, {"name": dom.name, "id": dom.id}, dom.name)


def cmd_domuuid(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    emit(args, {"name": dom.name, "uuid": str(dom.uuid)}, str(dom.uuid))


def _vcpu_counts(conn: Connection, dom: Domain) -> tuple[int | None, int]:
    """(maximum or None where the backend cannot tell, current)."""
    if conn.served_by("domain_get_vcpus"):
        return dom.vcpus(flags=VcpuFlags.MAXIMUM), dom.vcpus()
    current = dom.info().vcpus
    if conn.served_by("domain_get_config"):
        cfg = dom.config()
        return cfg.max_vcpus or cfg.vcpus, current
    return None, current


def cmd_vcpucount(conn: Connection, args: argparse.Namespace) -> None:
    """virsh's rows: ``maximum``/``current`` x ``live`` (running) or ``config`` (not running)."""
    if args.maximum and args.active:
        raise InvalidArgument("options --active and --maximum are mutually exclusive")
    dom = conn.lookup(args.domain)
    maximum, current = _vcpu_counts(conn, dom)
    scope = "config" if dom.id is None else "live"
    data = {"name": dom.name, "scope": scope, "maximum": maximum, "current": current}
    if args.maximum or args.active:  # one number, as virsh prints it
        value = maximum if args.maximum else current
        if value is None:
            raise Unsupported("this connection cannot tell a domain's maximum vcpus", operation="domain_get_vcpus")
        emit(args, data, str(value))
        return
    rows = [(kind, n) for kind, n in (("maximum", maximum), ("current", current)) if n is not None]
    emit(args, data, "\n".join(f"{kind:<12} {scope:<12} {n:3d}" for kind, n in rows))


def cmd_dumpconfig(conn: Connection, args: argparse.Namespace) -> None:
    """The config as JSON that ``create`` and ``define`` read back (ASCII: escapes survive)."""
    import json

    data = conn.lookup(args.domain).config().to_dict()
    emit(args, data, json.dumps(data, indent=2))


# -- changing -------------------------------------------------------------------------------------


def _lifecycle(verb: str, past: str) -> Callable[[Connection, argparse.Namespace], None]:
    def run(conn: Connection, args: argparse.Namespace) -> None:
        dom = conn.lookup(args.domain)
        getattr(dom, verb)()
        emit(args, {"name": dom.name, "action": verb, "ok": True}, f"Domain '{safe(dom.name)}' {past}")

    run.__name__ = run.__qualname__ = verb
    return run


suspend = _lifecycle("suspend", "suspended")
resume = _lifecycle("resume", "resumed")
shutdown = _lifecycle("shutdown", "is being shutdown")
reboot = _lifecycle("reboot", "is being rebooted")
destroy = _lifecycle("destroy", "destroyed")
start = _lifecycle("start", "started")
undefine = _lifecycle("undefine", "has been undefined")


def cmd_setmem(conn: Connection, args: argparse.Namespace) -> None:
    kib = parse_size(args.size)
    dom = conn.lookup(args.domain)
    dom.set_memory(kib)
    emit(args, {"name": dom.name, "memory_kib": kib}, f"Domain '{dom.name}' memory set to {kib} KiB")


def cmd_setmaxmem(conn: Connection, args: argparse.Namespace) -> None:
    kib = parse_size(args.size)
    dom = conn.lookup(args.domain)
    dom.set_max_memory(kib)
    emit(args, {"name": dom.name, "max_memory_kib": kib}, f"Domain '{dom.name}' maximum memory set to {kib} KiB")


def cmd_setvcpus(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    dom.set_vcpus(args.count, flags=VcpuFlags.MAXIMUM if args.maximum else 0)
    emit(args, {"name": dom.name, "vcpus": args.count}, f"Domain '{dom.name}' vcpus set to {args.count}")


def cmd_autostart(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.lookup(args.domain)
    flag = not args.disable
    dom.set_autostart(flag)
    done = "marked as autostarted" if flag else "unmarked as autostarted"
    emit(args, {"name": dom.name, "autostart": flag}, f"Domain '{safe(dom.name)}' {done}")


def _load_config(path: str, fmt: str | None) -> DomainConfig:
    from ._config_formats import load_domain_config

    return load_domain_config(path, fmt)


def cmd_create(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.create(_load_config(args.file, args.format))
    emit(args, {"name": dom.name, "id": dom.id, "uuid": str(dom.uuid)}, f"Domain '{dom.name}' created")


def cmd_define(conn: Connection, args: argparse.Namespace) -> None:
    dom = conn.define(_load_config(args.file, args.format))
    emit(args, {"name": dom.name, "uuid": str(dom.uuid)}, f"Domain '{dom.name}' defined")


def cmd_events(conn: Connection, args: argparse.Namespace) -> None:
    def show(ev: DomainEvent) -> None:
        if args.json:
            import json

            data = {"event": ev.type.value, "domain": ev.domain.name, "id": ev.domain.id, "detail": ev.detail}
            print(json.dumps(data))
        else:
            text = f"event '{ev.type.value}' for domain '{ev.domain.name}'" + (f": {ev.detail}" if ev.detail else "")
            print(safe(text))
        sys.stdout.flush()

    with conn.events() as stream:
        for ev in stream.iter(args.timeout):
            show(ev)
