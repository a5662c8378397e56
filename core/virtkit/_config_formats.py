"""Domain config files: virtkit's JSON, or a format a plugin distribution provides (xl's).

A distribution offers a format through an entry point in group ``virtkit.config_formats``: its
name is the format (``xl``), its value a function ``(path: str) -> DomainConfig`` that raises
:class:`InvalidArgument` for a file it cannot take. Which format reads a file is decided, never
tried in turn (a parser that fails would hide what the right one would have said): the one the
caller names; else JSON for a file that starts as JSON does; else the only other format installed;
else the caller must name one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._errors import DriverError, InvalidArgument, PluginLoadError, VirtError
from ._input import parse_json, read_config_file
from ._types import DomainConfig

if TYPE_CHECKING:
    import importlib.metadata

__all__ = ["CONFIG_FORMAT_GROUP", "JSON_FORMAT", "config_formats", "load_domain_config"]

CONFIG_FORMAT_GROUP = "virtkit.config_formats"
JSON_FORMAT = "json"


def config_formats() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed formats other than JSON, by name (read from the installed metadata)."""
    import importlib.metadata

    return {ep.name: ep for ep in importlib.metadata.entry_points(group=CONFIG_FORMAT_GROUP)}


def _from_json(text: str, shown: str) -> DomainConfig:
    data = parse_json(text, f"domain config {shown!r}")
    try:
        return DomainConfig.from_dict(data)
    except InvalidArgument as exc:
        raise InvalidArgument(f"bad domain config {shown!r}: {exc.message}") from None


def _loader(name: str, ep: importlib.metadata.EntryPoint) -> Callable[[str], object]:
    try:
        fn = ep.load()
    except Exception as exc:  # any import failure is the distribution's, reported typed
        raise PluginLoadError(f"config format {name!r} ({ep.value}) failed to load: {exc}") from exc
    if not callable(fn):
        raise PluginLoadError(f"config format {name!r} ({ep.value}) is not a function")
    return fn  # type: ignore[no-any-return]


def load_domain_config(path: str | os.PathLike[str], fmt: str | None = None) -> DomainConfig:
    """Read the domain config at ``path`` in format ``fmt`` (None: decided as the module says)."""
    shown = os.fspath(path)
    if fmt == JSON_FORMAT:
        return _from_json(read_config_file(shown, "domain config"), shown)
    formats = config_formats()
    if fmt is None:
        text = read_config_file(shown, "domain config")  # a FIFO or a device is refused here
        if text.lstrip()[:1] in ("{", "[") or not formats:  # JSON: an object, or an array to refuse
            return _from_json(text, shown)
        if len(formats) > 1:
            names = ", ".join(sorted([JSON_FORMAT, *formats]))
            raise InvalidArgument(f"domain config {shown!r} is not JSON: name its format ({names})")
        fmt = next(iter(formats))
    if fmt not in formats:
        names = ", ".join(sorted([JSON_FORMAT, *formats]))
        raise InvalidArgument(f"unknown config format {fmt!r} (installed: {names})")
    load = _loader(fmt, formats[fmt])
    try:
        config = load(shown)
    except VirtError:
        raise
    except Exception as exc:  # a loader's bug, not the user's file
        raise DriverError(f"config format {fmt!r} failed on {shown!r}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(config, DomainConfig):
        raise PluginLoadError(f"config format {fmt!r} returned {type(config).__name__}, not a DomainConfig")
    return config
