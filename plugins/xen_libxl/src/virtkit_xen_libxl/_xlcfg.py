"""xl config files (xl.cfg(5)): read, write, and map to and from virtkit's DomainConfig.

The grammar is libxlutil's: ``KEY = VALUE`` settings separated by newlines or ``;``, ``#``
comments, values that are strings (``"..."`` or ``'...'`` with C escapes), numbers, or lists
``[ v, v, ]`` (nested lists too: ``vnuma``), and ``KEY += VALUE`` appending to a list or string.
Keys xl ignores silently (a typo stays unnoticed) are refused here, against the keys xl 4.17
reads (``XL_KEYS``): an unknown key is an :class:`virtkit.InvalidArgument` naming it.

What virtkit's DomainConfig has a field for maps to that field (memory in KiB there, MiB in xl);
everything else travels untouched in ``extra["xl"]``, so an xl config survives a round trip.
"""

from __future__ import annotations

import re
import uuid as _uuid
from collections.abc import Mapping

from virtkit import MAX_CONFIG_BYTES, DomainConfig, InvalidArgument, read_config_file

from ._xlkeys import XL_KEYS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "XL_KEYS",
    "Value",
    "config_from_xl",
    "config_to_xl",
    "dump",
    "load_xl_file",
    "parse",
    "xl_settings",
]

if TYPE_CHECKING:
    Value = str | int | list[Any]
else:  # the same alias without loading typing for Any
    Value = str | int | list

#: Larger files are refused, as the core refuses JSON configs (virsh caps its reads at 10 MiB).
MAX_BYTES = MAX_CONFIG_BYTES
#: Deeper list nesting is refused: xl's deepest real use (vnuma) is 2.
MAX_DEPTH = 16


_MAPPED = frozenset(
    {"name", "uuid", "type", "builder", "memory", "maxmem", "vcpus", "maxvcpus", "kernel", "ramdisk", "extra"}
    | {"cmdline", "on_poweroff", "on_reboot", "on_crash", "disk"}
)
_ACTIONS = frozenset(
    {"destroy", "restart", "rename-restart", "preserve", "coredump-destroy", "coredump-restart", "soft-reset"}
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r]+|\\\n)
  | (?P<comment>\#[^\n]*)
  | (?P<nl>[\n;])
  | (?P<op>\+=|[=\[\],])
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<num>0[xX][0-9a-fA-F]+|[0-9]+)
  | (?P<id>[A-Za-z_][A-Za-z0-9_.-]*)
    """,
    re.VERBOSE,
)


def _bad(where: str, line: int, msg: str) -> InvalidArgument:
    return InvalidArgument(f"{where}:{line}: {msg}")


def _unescape(raw: str, where: str, line: int) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n in _ESCAPES:
            out.append(_ESCAPES[n])
            i += 2
        elif n == "x" and re.match(r"[0-9a-fA-F]{2}", body[i + 2 : i + 4]):
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif n in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert m is not None
            out.append(chr(int(m.group(), 8)))
            i += 1 + len(m.group())
        else:
            out.append(n)
            i += 2
    return "".join(out)


def _tokens(text: str, where: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _bad(where, line, f"config parsing error near {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        value = m.group()
        if kind not in ("ws", "comment"):
            out.append((kind, value, line))
        line += value.count("\n")
        pos = m.end()
    out.append(("nl", "", line))
    return out


def parse(text: str, where: str = "<config>", *, strict: bool = True) -> dict[str, Value]:
    """An xl config's settings, in file order. Syntax errors and unknown keys are InvalidArgument;
    ``strict=False`` takes unknown keys as xl does (silently), to read configs xl would run."""
    if len(text) > MAX_BYTES:
        raise InvalidArgument(f"{where}: larger than {MAX_BYTES} bytes")
    toks = _tokens(text, where)
    settings: dict[str, Value] = {}
    i = 0

    def value(depth: int) -> tuple[Value, int]:
        nonlocal i
        kind, tok, line = toks[i]
        if kind == "str":
            i += 1
            return _unescape(tok, where, line), line
        if kind == "num":
            i += 1
            return int(tok, 0), line
        if kind == "op" and tok == "[":
            if depth >= MAX_DEPTH:
                raise _bad(where, line, f"lists nested deeper than {MAX_DEPTH}")
            i += 1
            items: list[Any] = []
            while True:
                while toks[i][0] == "nl" and toks[i][1] == "\n":
                    i += 1
                if toks[i][:2] == ("op", "]"):
                    i += 1
                    return items, line
                items.append(value(depth + 1)[0])
                while toks[i][0] == "nl" and toks[i][1] == "\n":
                    i += 1
                if toks[i][:2] == ("op", ","):
                    i += 1
                elif toks[i][:2] != ("op", "]"):
                    raise _bad(where, toks[i][2], f"expected ',' or ']' in a list, got {toks[i][1]!r}")
        raise _bad(where, line, f"expected a string, a number or a list, got {tok or 'end of file'!r}")

    while i < len(toks):
        kind, tok, line = toks[i]
        if kind == "nl":
            i += 1
            continue
        if kind != "id":
            raise _bad(where, line, f"expected a setting name, got {tok!r}")
        if strict and tok not in XL_KEYS:
            raise _bad(where, line, f"unknown xl config key {tok!r}")
        i += 1
        op = toks[i]
        if op[0] != "op" or op[1] not in ("=", "+="):
            raise _bad(where, op[2], f"expected '=' after {tok!r}")
        i += 1
        val, _ = value(0)
        if op[1] == "+=" and tok in settings:
            old = settings[tok]
            if (isinstance(old, list) and isinstance(val, list)) or (isinstance(old, str) and isinstance(val, str)):
                val = old + val  # type: ignore[operator]
            else:
                raise _bad(where, line, f"'+=' needs two lists or two strings for {tok!r}")
        settings[tok] = val
        if toks[i][0] != "nl":
            raise _bad(where, toks[i][2], f"expected the end of the setting {tok!r}, got {toks[i][1]!r}")
    return settings


def _quote(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    if out.isprintable():  # the usual case, checked at C speed rather than per character
        return f'"{out}"'
    return '"' + "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in out) + '"'


def _render(v: Any, depth: int = 0) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        if v < 0:
            raise InvalidArgument(f"xl config values are not negative, got {v}")
        return str(v)
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, list | tuple):
        if depth >= MAX_DEPTH:
            raise InvalidArgument(f"xl config lists nested deeper than {MAX_DEPTH}")
        return "[ " + ", ".join(_render(x, depth + 1) for x in v) + " ]"
    raise InvalidArgument(f"an xl config value is a string, a number or a list, not {type(v).__name__}")


def dump(settings: Mapping[str, Any]) -> str:
    """xl config text: one ``key = value`` per line."""
    lines = []
    for key, v in settings.items():
        if key not in XL_KEYS:
            raise InvalidArgument(f"unknown xl config key {key!r}")
        lines.append(f"{key} = {_render(v)}")
    return "\n".join(lines) + "\n"


def _str(s: Mapping[str, Value], key: str) -> str | None:
    v = s.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise InvalidArgument(f"xl config {key!r} must be a string, got {v!r}")
    return v


def _int(s: Mapping[str, Value], key: str) -> int | None:
    v = s.get(key)
    if v is None:
        return None
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v)
    if not isinstance(v, int) or v <= 0:
        raise InvalidArgument(f"xl config {key!r} must be a positive number, got {v!r}")
    return v


#: libxl's default memory for a guest whose config gives none (LIBXL_MEMKB_DEFAULT -> 32 MiB).
DEFAULT_MEMORY_MIB = 32


def config_from_xl(s: Mapping[str, Value]) -> DomainConfig:
    """A DomainConfig from parsed xl settings; the unmapped keys go to ``extra["xl"]`` as they are."""
    name = _str(s, "name")
    if not name:
        raise InvalidArgument("xl config has no 'name'")
    memory = _int(s, "memory") or DEFAULT_MEMORY_MIB
    maxmem = _int(s, "maxmem")
    vcpus = _int(s, "vcpus") or 1
    maxvcpus = _int(s, "maxvcpus")
    raw_uuid = _str(s, "uuid")
    try:
        uid = _uuid.UUID(raw_uuid) if raw_uuid else None
    except ValueError:
        raise InvalidArgument(f"xl config 'uuid' is not a UUID: {raw_uuid!r}") from None
    kind = _str(s, "type") or ("hvm" if _str(s, "builder") == "hvm" else "pv")
    extra_xl = {k: v for k, v in s.items() if k not in _MAPPED}
    if kind != "pv":
        extra_xl["type"] = kind
    if "disk" in s:
        extra_xl["disk"] = s["disk"]
    actions: dict[str, Any] = {}
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        act = _str(s, key)
        if act is not None:
            if act.replace("_", "-") not in _ACTIONS:
                raise InvalidArgument(f"xl config {key!r}: unknown action {act!r}")
            actions[key] = act
    cmdline = _str(s, "cmdline")
    if cmdline is None:
        cmdline = _str(s, "extra")
        if _str(s, "root") is not None:
            extra_xl["root"] = s["root"]
    return DomainConfig(
        name=name,
        memory=memory * 1024,
        vcpus=vcpus,
        max_memory=maxmem * 1024 if maxmem else None,
        max_vcpus=maxvcpus,
        uuid=uid,
        os_type="hvm" if kind == "hvm" else "linux",
        kernel=_str(s, "kernel"),
        initrd=_str(s, "ramdisk"),
        cmdline=cmdline,
        extra={"xl": extra_xl} if extra_xl else {},
        **actions,
    )


def _mib(kib: int, what: str) -> int:
    if kib % 1024:
        raise InvalidArgument(f"{what} must be a whole number of MiB for xl, got {kib} KiB")
    return kib // 1024


def _disk(dev: Mapping[str, Any], index: int) -> str:
    path = dev.get("path")
    if not isinstance(path, str) or not path or "," in path:
        raise InvalidArgument(f"device {index}: a disk needs a 'path' without commas, got {path!r}")
    fmt = str(dev.get("format", "raw"))
    vdev = str(dev.get("vdev", f"xvd{chr(ord('a') + index)}"))
    access = "ro" if dev.get("readonly") else "rw"
    return f"format={fmt}, vdev={vdev}, access={access}, target={path}"


def xl_settings(cfg: DomainConfig) -> dict[str, Any]:
    """The xl settings for a DomainConfig (the inverse of :func:`config_from_xl`)."""
    unknown = sorted(set(cfg.extra) - {"xl"})
    if unknown:
        raise InvalidArgument(
            f"extra key(s) xen:/// does not know: {', '.join(unknown)} (xl settings go in extra['xl'])"
        )
    extra_xl = cfg.extra.get("xl") or {}
    if not isinstance(extra_xl, Mapping):
        raise InvalidArgument("extra['xl'] must be a mapping of xl config keys to values")
    kind = extra_xl.get("type") or ("hvm" if cfg.os_type == "hvm" else "pv")
    if cfg.os_type not in ("linux", "hvm", "xen"):
        raise InvalidArgument(f"os_type {cfg.os_type!r}: xen:/// knows 'linux' (PV/PVH) and 'hvm'")
    s: dict[str, Any] = {"name": cfg.name, "type": kind}
    if cfg.uuid is not None:
        s["uuid"] = str(cfg.uuid)
    s["memory"] = _mib(cfg.memory, "memory")
    if cfg.max_memory is not None:
        if cfg.max_memory < cfg.memory:
            raise InvalidArgument(f"max_memory {cfg.max_memory} KiB is below memory {cfg.memory} KiB")
        s["maxmem"] = _mib(cfg.max_memory, "max_memory")
    s["vcpus"] = cfg.vcpus
    if cfg.max_vcpus is not None:
        if cfg.max_vcpus < cfg.vcpus:
            raise InvalidArgument(f"max_vcpus {cfg.max_vcpus} is below vcpus {cfg.vcpus}")
        s["maxvcpus"] = cfg.max_vcpus
    for key, val in (("kernel", cfg.kernel), ("ramdisk", cfg.initrd), ("extra", cfg.cmdline)):
        if val is not None:
            s[key] = val
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        act = getattr(cfg, key)
        if act.replace("_", "-") not in _ACTIONS:
            raise InvalidArgument(f"{key}: unknown action {act!r} (one of {', '.join(sorted(_ACTIONS))})")
        s[key] = act
    disks = [_disk(d, i) for i, d in enumerate(cfg.devices) if d.get("type") == "disk"]
    others = [d.get("type") for d in cfg.devices if d.get("type") != "disk"]
    if others:
        raise InvalidArgument(f"device type(s) {others} are not supported here; use extra['xl'] (vif = [...])")
    for key, val in extra_xl.items():
        if key in ("name", "uuid", "memory", "maxmem", "vcpus", "maxvcpus", "kernel", "ramdisk", "extra", "cmdline"):
            raise InvalidArgument(f"extra['xl'][{key!r}] duplicates a DomainConfig field: set that field instead")
        if key == "disk":
            disks = [*(val if isinstance(val, list) else [val]), *disks]
            continue
        if key != "type":
            s[key] = val
    if disks:
        s["disk"] = disks
    dump(s)  # every key known, every value renderable
    return s


def load_xl_file(path: str) -> DomainConfig:
    """An xl config file (a regular file of at most MAX_BYTES) as a DomainConfig."""
    return config_from_xl(parse(read_config_file(path, "xl config"), str(path)))


def config_to_xl(cfg: DomainConfig) -> str:
    """xl config text for a DomainConfig, as ``xl create`` will be given it."""
    return dump(xl_settings(cfg))
