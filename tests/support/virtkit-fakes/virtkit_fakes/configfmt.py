"""A config format of the tests' own (entry point ``fakefmt`` in group virtkit.config_formats):
``key = value`` lines with a name and a memory size in KiB."""

from __future__ import annotations

from virtkit import DomainConfig, InvalidArgument, read_config_file


def load(path: str) -> DomainConfig:
    fields: dict[str, str] = {}
    for n, line in enumerate(read_config_file(path, "fakefmt config").splitlines(), 1):
        if not line.strip():
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise InvalidArgument(f"fakefmt config {path!r}, line {n}: expected key = value")
        fields[key.strip()] = value.strip()
    if "explode" in fields:
        raise ValueError("a loader bug")
    try:
        return DomainConfig.from_dict({"name": fields.get("name"), "memory": int(fields.get("memory", "0"))})
    except ValueError as exc:
        raise InvalidArgument(f"fakefmt config {path!r}: {exc}") from None
