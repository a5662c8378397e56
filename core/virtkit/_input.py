"""Rules for what enters virtkit from a user: domain names, sizes, timeouts and config files.

One rule each, shared by the core, the CLI and every plugin, so the same bad input gets the
same :class:`InvalidArgument` whichever backend serves the call.
"""

from __future__ import annotations

import os
import stat
import uuid as _uuid

from ._errors import InvalidArgument
from ._types import DomainConfig, DomainRef

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "MAX_MEMORY_KIB",
    "MAX_TIMEOUT",
    "MAX_VCPUS",
    "check_domain_config",
    "check_domain_name",
    "check_memory",
    "check_timeout",
    "check_vcpus",
    "load_json_file",
    "parse_json",
    "read_config_file",
]

#: A config or host file larger than this is refused (virsh reads at most 10 MiB of XML).
MAX_CONFIG_BYTES = 10 * 1024 * 1024
#: Deeper JSON nesting is refused: no domain config needs it, and deeper data would
#: exhaust the stack of every recursive consumer after the parser.
MAX_CONFIG_DEPTH = 32
#: 1 EiB in KiB: above any machine, far below where integer conversions overflow.
MAX_MEMORY_KIB = 2**50
#: Xen's and QEMU's own ceilings are lower; this only keeps absurd numbers out.
MAX_VCPUS = 16384
#: About 115 days. Longer waits overflow the C time types below socket and lock timeouts.
MAX_TIMEOUT = 10_000_000.0
_INF = float("inf")

# Names become file names (qemu, libxl state), URL path segments (xend) and xenstore values:
# letters, digits and ". _ + -", starting with a letter or digit, at most 64 characters.
# That is the pattern ``[A-Za-z0-9][A-Za-z0-9._+-]{0,63}``, read with str methods: a test host's
# names are checked at every cold start, and a compiled pattern costs more than the check.
_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _NAME_FIRST | frozenset("._+-")


def check_domain_name(name: object) -> str:
    """Return ``name`` if it may name a new domain, else raise :class:`InvalidArgument`.

    Enforced where a name enters (create, define, a test host file); lookups accept any
    string, so domains named by other tools stay reachable.
    """
    if not isinstance(name, str) or not (0 < len(name) <= 64 and name[0] in _NAME_FIRST and set(name) <= _NAME_CHARS):
        raise InvalidArgument(
            f"invalid domain name {name!r}: use 1-64 of A-Z a-z 0-9 . _ + - (the first a letter or digit)"
        )
    return name


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an integer, got {_short(value)}")
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be between {low} and {high}, got {_short(value)}")
    return value


def check_memory(kib: object, what: str = "memory") -> int:
    """A memory size in KiB: an int in 1 .. :data:`MAX_MEMORY_KIB`."""
    return _check_int(kib, f"{what} (KiB)", 1, MAX_MEMORY_KIB)


def check_vcpus(count: object, what: str = "vcpus") -> int:
    """A vcpu count: an int in 1 .. :data:`MAX_VCPUS`."""
    return _check_int(count, what, 1, MAX_VCPUS)


def check_bool(value: object, what: str = "autostart") -> bool:
    """A yes/no argument: True or False only (a 0/1 or a string would hide a caller's mix-up)."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} must be True or False, got {_short(value)}")
    return value


def as_uuid(value: object) -> _uuid.UUID:
    """A UUID, or text naming one (any form uuid.UUID reads), as a uuid.UUID."""
    if isinstance(value, _uuid.UUID):
        return value
    try:
        return _uuid.UUID(str(value))
    except ValueError:
        raise InvalidArgument(f"not a UUID: {_short(value)}") from None


def as_domain_refs(domains: object) -> list[Any] | None:
    """Domains (or DomainRefs) as DomainRefs; None stays None. Anything else in the list is passed
    on as it is, for the check of the operation's arguments to refuse with its own message."""
    if domains is None:
        return None
    try:
        items = list(domains)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidArgument(f"domains must be a list of domains or None, got {type(domains).__name__}") from None
    return [d if isinstance(d, DomainRef) else getattr(d, "ref", d) for d in items]


def check_domain_config(config: object) -> DomainConfig:
    """Return ``config`` if it is a DomainConfig whose name and numbers are acceptable."""
    if not isinstance(config, DomainConfig):
        raise InvalidArgument(f"expected a DomainConfig, got {type(config).__name__}")
    check_domain_name(config.name)
    check_memory(config.memory, "memory")
    check_vcpus(config.vcpus, "vcpus")
    if config.max_memory is not None:
        check_memory(config.max_memory, "max_memory")
    if config.max_vcpus is not None:
        check_vcpus(config.max_vcpus, "max_vcpus")
    return config


def check_timeout(seconds: object, what: str = "timeout") -> float:
    """A timeout in seconds: above zero and at most :data:`MAX_TIMEOUT` (``nan``, ``inf``, 0 and
    negatives refused)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidArgument(f"{what} must be a number of seconds, got {_short(seconds)}")
    value = float(seconds) if isinstance(seconds, float) or abs(seconds) < 2**53 else _INF
    if value != value or value in (_INF, -_INF) or value <= 0:  # nan, infinities (math is not loaded)
        raise InvalidArgument(f"{what} must be a finite number of seconds above 0, got {_short(seconds)}")
    if value > MAX_TIMEOUT:
        raise InvalidArgument(f"{what} must be at most {MAX_TIMEOUT:.0f} seconds, got {_short(seconds)}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def read_config_file(path: str | os.PathLike[str], what: str = "config", *, limit: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes (:data:`MAX_CONFIG_BYTES`).

    FIFOs, devices and directories are refused before any read (a FIFO would block, a device
    like /dev/zero never ends); every failure is :class:`InvalidArgument` naming the file. A
    lower ``limit`` suits files of a kind known to be small.
    """
    shown = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not block; it is refused just below.
        fd = os.open(shown, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} {shown!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{what} {shown!r} is not a regular file")
        if st.st_size > limit:
            raise InvalidArgument(f"{what} {shown!r} is larger than {_size(limit)}")
        os.set_blocking(fd, True)
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 20):  # the file may grow after fstat: count what arrives
            total += len(chunk)
            if total > limit:
                raise InvalidArgument(f"{what} {shown!r} is larger than {_size(limit)}")
            chunks.append(chunk)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} {shown!r}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{what} {shown!r} is not UTF-8 text (byte {exc.start})") from None


def _size(limit: int) -> str:
    return f"{limit // 1024 // 1024} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidArgument(f"duplicate key {_short(key)}")
        out[key] = value
    return out


def _depth_ok(data: Any) -> bool:
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_CONFIG_DEPTH:
                return False
            stack.extend((x, depth + 1) for x in (item.values() if isinstance(item, dict) else item))
    return True


def parse_json(text: str, what: str = "config") -> Any:
    """Parse JSON strictly: duplicate keys, NaN/Infinity, nesting deeper than
    :data:`MAX_CONFIG_DEPTH` and every syntax error raise :class:`InvalidArgument`."""
    import json

    def no_constant(name: str) -> Any:
        raise InvalidArgument(f"{what}: {name} is not a JSON number")

    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=no_constant)
    except InvalidArgument as exc:
        raise InvalidArgument(f"bad {what}: {exc.message}") from None
    except RecursionError:
        raise InvalidArgument(f"bad {what}: nested deeper than {MAX_CONFIG_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and int() of a number with too many digits
        raise InvalidArgument(f"bad {what}: {exc}") from None
    if not _depth_ok(data):
        raise InvalidArgument(f"bad {what}: nested deeper than {MAX_CONFIG_DEPTH} levels")
    return data


def load_json_file(path: str | os.PathLike[str], what: str = "config") -> Any:
    """:func:`read_config_file` then :func:`parse_json`, errors naming the file."""
    text = read_config_file(path, what)
    return parse_json(text, f"{what} {os.fspath(path)!r}")
