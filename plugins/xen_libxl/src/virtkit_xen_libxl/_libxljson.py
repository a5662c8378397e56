"""libxl's JSON of a domain configuration (``xl list -l``, ``xl -N create``) as a DomainConfig."""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping

from virtkit import DomainConfig, ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["config_from_libxl"]

#: libxl's defaults where its JSON leaves an action out (libxl_types.idl, xl.cfg(5)).
_DEFAULT_ACTIONS = {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy"}


def _disk(d: Mapping[str, Any]) -> str:
    parts = []
    if d.get("format"):
        parts.append(f"format={str(d['format']).lower()}")
    if d.get("vdev"):
        parts.append(f"vdev={d['vdev']}")
    parts.append("access=" + ("rw" if d.get("readwrite", 1) else "ro"))
    parts.append(f"target={d.get('pdev_path', '')}")
    return ", ".join(parts)


def config_from_libxl(entry: Mapping[str, Any]) -> DomainConfig:
    """``entry`` is one element of ``xl list -l``'s array (``{"domid": N, "config": {...}}``)
    or a bare ``libxl_domain_config``."""
    try:
        cfg = entry.get("config", entry)
        c_info = cfg.get("c_info", {})
        b_info = cfg.get("b_info", {})
        name = str(c_info["name"])
        kind = str(c_info.get("type", "pv"))
        # libvirt's libxl driver fills the older per-type fields (b_info["type.pv"]["kernel"], ...)
        pv = b_info.get("type.pv") or {}
        boot = {k: b_info.get(k) or pv.get(k) for k in ("kernel", "ramdisk", "cmdline")}
        uid = _uuid.UUID(c_info["uuid"]) if c_info.get("uuid") else None
        max_kb = int(b_info.get("max_memkb") or 0)
        target_kb = int(b_info.get("target_memkb") or max_kb)
        max_vcpus = int(b_info.get("max_vcpus") or 0)
        avail = b_info.get("avail_vcpus")
        vcpus = len(avail) if isinstance(avail, list) and avail else max_vcpus
        actions: dict[str, Any] = {k: str(cfg.get(k, v)).replace("_", "-") for k, v in _DEFAULT_ACTIONS.items()}
        xl: dict[str, Any] = {}
        if kind != "pv":
            xl["type"] = kind
        disks = [_disk(d) for d in cfg.get("disks", []) if isinstance(d, Mapping)]
        if disks:
            xl["disk"] = disks
        return DomainConfig(
            name=name,
            memory=max(target_kb, 1),
            vcpus=max(vcpus, 1),
            max_memory=max_kb if max_kb and max_kb != target_kb else None,
            max_vcpus=max_vcpus if max_vcpus and max_vcpus != vcpus else None,
            uuid=uid if uid is not None and uid.int else None,
            os_type="hvm" if kind == "hvm" else "linux",
            kernel=boot["kernel"] or None,
            initrd=boot["ramdisk"] or None,
            cmdline=boot["cmdline"] or None,
            extra={"xl": xl} if xl else {},
            **actions,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"unexpected libxl JSON for a domain: {exc!r}") from None
