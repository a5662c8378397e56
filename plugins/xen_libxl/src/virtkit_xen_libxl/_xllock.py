"""xl's global create lock, taken by the engine when ``xl create`` would take it.

xl (tools/xl/xl_vmcontrol.c, ``acquire_lock``) holds a POSIX record lock (``fcntl`` F_SETLKW,
whole file, write) on xl.conf's ``lockfile`` (default /var/lock/xl) while it balloons dom0 down
to make room for a new domain and creates it, for a first run and for every restart its
babysitter makes: another create in between would take the memory it freed. Xen 4.17's xl does
so only when it autoballoons (the lab: no lock file appears otherwise), so the engine, which
never balloons, takes the lock only then, to keep out of an xl that does. It is a record lock,
not ``flock``: the two kinds do not see each other on Linux.

A record lock belongs to the process, and closing any descriptor of the file releases it: the
engine opens the file only here, for as long as it holds the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import struct
import time

import virtkit

from . import _xlcfg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["DEFAULT_LOCKFILE", "XL_CONF", "autoballoon", "held", "lockfile", "settings", "wanted"]

#: xl's XL_LOCK_FILE, used when xl.conf does not set ``lockfile``.
DEFAULT_LOCKFILE = "/var/lock/xl"
#: xl's global config ($VIRTKIT_XEN_XL_CONF moves it: for tests).
XL_CONF = os.environ.get("VIRTKIT_XEN_XL_CONF", "/etc/xen/xl.conf")
#: How often a waiter tries again: xl waits in the kernel, a deadline needs a loop.
_POLL_S = 0.05


#: xl's ``auto_autoballoon`` (tools/xl/xl.c): a dom0_mem= of sizes or fractions on Xen's command
#: line turns autoballooning off.
_SIZE = r"-?[0-9]+[bBkKmMgGtT]?"
_DOM0_MEM = re.compile(rf"(^| )dom0_mem=((|min:|max:)({_SIZE}|({_SIZE}\+)?[0-9]{{1,2}}%),?)+($| )")


def settings(conf: str | None = None) -> dict[str, object]:
    """xl.conf's settings; none where xl cannot read it (xl says so and goes on with defaults)."""
    try:
        return dict(_xlcfg.parse(virtkit.read_config_file(conf or XL_CONF, "xl.conf"), conf or XL_CONF, strict=False))
    except virtkit.VirtError:
        return {}


def lockfile(conf: str | None = None) -> str:
    """xl.conf's ``lockfile``, else xl's default."""
    return _lockfile_of(settings(conf))


def _lockfile_of(found: dict[str, object]) -> str:
    value = found.get("lockfile")
    return value if isinstance(value, str) and value else DEFAULT_LOCKFILE


def autoballoon(setting: object, commandline: str | None) -> bool:
    """Whether xl autoballoons: xl.conf's ``autoballoon`` ("on"/"off"/"auto", or the older 1/0),
    "auto" (the default) unless Xen's command line sets dom0_mem."""
    if setting in ("on", "1", 1):
        return True
    if setting in ("off", "0", 0):
        return False
    return commandline is None or _DOM0_MEM.search(commandline) is None


def wanted(commandline: str | None, conf: str | None = None) -> str | None:
    """The lock file xl would take for a create now (it autoballoons), else None."""
    found = settings(conf)
    return _lockfile_of(found) if autoballoon(found.get("autoballoon", "auto"), commandline) else None


@contextlib.contextmanager
def held(path: str | None, deadline: float) -> Iterator[None]:
    """Hold xl's lock at ``path`` (created as xl creates it) until the block ends;
    virtkit.TimeoutError, naming the holder, if it is not free before ``deadline``
    (``time.monotonic()``). ``path`` None: nothing to hold."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o200)
    try:
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                holder = _holder(fd)
                by = f" by process {holder}" if holder else ""
                raise virtkit.TimeoutError(f"xl's create lock {path} is held{by}: another domain is being created")
            time.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


_FLOCK = "hhqqi4x"  # struct flock on LP64 Linux: type, whence, start, len, pid


def _holder(fd: int) -> int | None:
    """The pid holding a lock that conflicts with a write lock of the whole file, if any."""
    try:
        got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        kind, _whence, _start, _len, pid = struct.unpack(_FLOCK, got)
    except (OSError, struct.error):
        return None
    return pid if kind != fcntl.F_UNLCK and pid > 0 else None
