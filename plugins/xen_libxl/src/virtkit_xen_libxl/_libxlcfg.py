"""libxl's JSON of a DomainConfig, built here for the keys the plugin maps (no xl process).

What ``xl -N create`` makes of the same xl file is the reference (tools/xl/xl_parse.c): the lab
test compares the two. A config that needs anything else (disks, extra xl keys, HVM, no kernel)
gets None: the engine then asks xl's own parser, which knows every key and says what is wrong.
"""

from __future__ import annotations

from virtkit import DomainConfig

from . import _xlcfg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["libxl_config"]

#: The xl keys built here; any other key leaves the config to xl's parser.
_BUILT = frozenset(
    {"name", "type", "uuid", "memory", "maxmem", "vcpus", "maxvcpus", "kernel", "ramdisk", "extra"}
    | {"on_poweroff", "on_reboot", "on_crash"}
)


#: xl's action names (xl_parse.c) -> libxl's (libxl_types.idl, action_on_shutdown).
_ACTIONS = {
    "destroy": "destroy",
    "restart": "restart",
    "rename-restart": "restart_rename",
    "preserve": "preserve",
    "coredump-destroy": "coredump_destroy",
    "coredump-restart": "coredump_restart",
    "soft-reset": "soft_reset",
}


def libxl_config(cfg: DomainConfig, settings: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """libxl's domain config JSON (as ``libxl_domain_config_from_json`` reads it) of a PV
    config with a kernel and only the mapped keys; None for any other (xl's parser then).
    ``settings``: ``cfg``'s xl settings when the caller has them already."""
    s = settings if settings is not None else _xlcfg.xl_settings(cfg)
    if set(s) - _BUILT or s.get("type") != "pv" or "kernel" not in s or "uuid" not in s:
        return None
    actions = {k: _ACTIONS.get(str(s[k]).replace("_", "-")) for k in ("on_poweroff", "on_reboot", "on_crash")}
    if None in actions.values():
        return None
    memory = int(s["memory"]) * 1024
    vcpus = int(s["vcpus"])
    b_info: dict[str, Any] = {
        "max_vcpus": int(s.get("maxvcpus", vcpus)),
        "avail_vcpus": list(range(vcpus)),
        "max_memkb": int(s.get("maxmem", s["memory"])) * 1024,
        "target_memkb": memory,
        "claim_mode": "True",
        "sched_params": {},
        "kernel": s["kernel"],
        "type.pv": {},
    }
    if "extra" in s:
        b_info["cmdline"] = s["extra"]
    if "ramdisk" in s:
        b_info["ramdisk"] = s["ramdisk"]
    return {
        "c_info": {"type": "pv", "name": s["name"], "uuid": s["uuid"], "run_hotplug_scripts": "True"},
        "b_info": b_info,
        "on_poweroff": actions["on_poweroff"],
        "on_reboot": actions["on_reboot"],
        "on_watchdog": "destroy",
        "on_crash": actions["on_crash"],
        "on_soft_reset": "soft_reset",
    }
