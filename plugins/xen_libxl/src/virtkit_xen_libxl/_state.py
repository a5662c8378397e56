"""The plugin's state directory: one file per defined (persistent) domain, written atomically.

``ROOT/domains/<uuid>.json`` holds ``{"config": DomainConfig.to_dict()}``. A definition is
written to a temporary file in the same directory, flushed and fsynced, then renamed over the
old one and the directory fsynced: a crash at any point leaves the old definition or the new
one, never a torn file (leftover ``*.tmp`` files are ignored and swept). ``ROOT/lock`` is an
flock held while a definition changes or a domain is being created, so two processes cannot
both take one name. Reads are cached per file on (mtime_ns, size, inode).

The list of every definition is cached on the directory's (mtime_ns, inode): every define and
undefine, in any process, is a rename or an unlink in it, so it changes the directory's mtime.
A listing is trusted only once that mtime is older than the clock's granularity (two changes
in one tick of the kernel's coarse clock share an mtime): until then it is read again. A file
edited in place (not by virtkit) is seen by the lookups, by the listing once the directory
changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid as _uuid
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import virtkit
from virtkit import DomainConfig, InvalidArgument, PermissionDenied, ProtocolError

# Typing stays off the start-up path (issue 14): Record is a namedtuple with a typed stub.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    class _Record(NamedTuple):
        config: DomainConfig
        path: Path
else:
    _Record = namedtuple("_Record", "config path", module=__name__)

__all__ = ["DEFAULT_ROOT", "ENV_ROOT", "Record", "State", "fsync_dir", "write_atomic"]

DEFAULT_ROOT = "/var/lib/virtkit/xen-libxl"
ENV_ROOT = "VIRTKIT_XEN_LIBXL_STATE_DIR"
_SUFFIX = ".json"
#: Above the kernel's coarse clock tick (1/HZ, 10 ms at worst) that stamps the mtime.
_RACY_NS = 50_000_000


class Record(_Record):
    """A definition: its config (whose uuid is always set) and its file."""

    __slots__ = ()


class State:
    """Defined domains on disk; safe across threads and processes."""

    def __init__(self, root: str | os.PathLike[str], timeout: float = 30.0) -> None:
        self.root = Path(root)
        self.dir = self.root / "domains"
        self._dir_s = str(self.dir)
        self._by_name: dict[str, tuple[tuple[int, int], str]] = {}  # name -> (listing key, file name)
        self.timeout = timeout
        self._cache: dict[str, tuple[tuple[int, int, int], Record]] = {}
        self._listing: tuple[tuple[int, int], list[str]] | None = None
        self._records: tuple[list[str], list[Record]] | None = None
        self._lock = threading.Lock()
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except PermissionError as exc:
            raise PermissionDenied(f"cannot create the state directory {self.dir}: {exc.strerror}") from None
        except OSError as exc:
            raise InvalidArgument(f"cannot create the state directory {self.dir}: {exc.strerror}") from None

    # -- reading -------------------------------------------------------------------------------

    def _names(self) -> list[str]:
        st = os.stat(self._dir_s)
        key = (st.st_mtime_ns, st.st_ino)
        listing = self._listing
        if listing is not None and listing[0] == key:
            return listing[1]
        names = sorted(n for n in os.listdir(self._dir_s) if n.endswith(_SUFFIX))
        # kept only when no later change can share this mtime (see the module's docstring)
        self._listing = (key, names) if time.time_ns() - st.st_mtime_ns > _RACY_NS else None
        return names

    def _load(self, fname: str) -> Record | None:
        try:
            st = os.stat(os.path.join(self._dir_s, fname))  # a str join: pathlib costs more than the stat
        except FileNotFoundError:
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = self._cache.get(fname)
        if hit is not None and hit[0] == key:
            return hit[1]
        path = self.dir / fname
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cfg = DomainConfig.from_dict(data["config"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            raise ProtocolError(f"corrupted definition {path}: {exc}") from None
        if cfg.uuid is None or f"{cfg.uuid}{_SUFFIX}" != fname:
            raise ProtocolError(f"corrupted definition {path}: its uuid does not match its file name")
        rec = Record(cfg, path)
        self._cache[fname] = (key, rec)
        return rec

    def records(self) -> list[Record]:
        """Every definition; a corrupted one is skipped (reading it alone raises ProtocolError).
        The list is shared while the directory is unchanged: do not modify it."""
        names = self._names()
        cached = self._records
        if cached is not None and cached[0] is names:
            return cached[1]
        out = []
        for fname in names:
            try:
                rec = self._load(fname)
            except ProtocolError:
                continue
            if rec is not None:
                out.append(rec)
        listing = self._listing
        if listing is not None and listing[1] is names:
            self._records = (names, out)
        return out

    def by_uuid(self, uuid: _uuid.UUID) -> Record | None:
        return self._load(f"{uuid}{_SUFFIX}")

    def by_name(self, name: str) -> Record | None:
        # While the listing is unchanged, the file that had this name is checked alone (one stat:
        # a rewrite is a rename, which changes the listing too).
        self._names()
        listing = self._listing
        hit = self._by_name.get(name)
        if hit is not None and listing is not None and hit[0] == listing[0]:
            try:
                rec = self._load(hit[1])
            except ProtocolError:
                rec = None
            if rec is not None and rec.config.name == name:
                return rec
        for rec in self.records():
            if rec.config.name == name:
                if listing is not None:
                    self._by_name[name] = (listing[0], rec.path.name)
                return rec
        return None

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The state directory's flock (and this process's lock), bounded by the timeout."""
        deadline = time.monotonic() + self.timeout
        if not self._lock.acquire(timeout=self.timeout):
            raise virtkit.TimeoutError(f"timed out waiting for the lock of {self.root}")
        try:
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise virtkit.TimeoutError(f"timed out waiting for the lock of {self.root}") from None
                        time.sleep(0.02)
                yield
            finally:
                os.close(fd)
        finally:
            self._lock.release()

    def write(self, cfg: DomainConfig) -> Record:
        """Store ``cfg`` (uuid set) atomically; call with :meth:`locked` held."""
        if cfg.uuid is None:
            raise InvalidArgument("a definition needs a uuid")
        body: dict[str, Any] = {"config": cfg.to_dict()}
        final = write_atomic(self.dir, f"{cfg.uuid}{_SUFFIX}", json.dumps(body, indent=1, sort_keys=True) + "\n")
        self._listing = None
        return Record(cfg, final)

    def remove(self, rec: Record) -> None:
        """Delete a definition; call with :meth:`locked` held."""
        with contextlib.suppress(FileNotFoundError):
            rec.path.unlink()
        self._fsync_dir()
        self._cache.pop(rec.path.name, None)
        self._listing = None

    def sweep(self) -> None:
        """Remove temporary files a crashed writer left behind (older than a minute)."""
        now = time.time()
        for n in os.listdir(self.dir):
            if n.endswith(".tmp"):
                p = self.dir / n
                with contextlib.suppress(OSError):
                    if now - p.stat().st_mtime > 60:
                        p.unlink()

    def _fsync_dir(self) -> None:
        fsync_dir(self.dir)

    def scratch(self) -> Path:
        """A directory for the xl config files handed to ``xl create``."""
        d = self.root / "run"
        d.mkdir(exist_ok=True, mode=0o700)
        return d


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(directory: str | os.PathLike[str], name: str, text: str) -> Path:
    """``text`` as ``directory/name``, mode 0600 (a config may hold secrets, e.g. vncpasswd):
    written to a dotfile there, fsynced, renamed over the old file (a symlink there goes, its
    target stays untouched), the directory fsynced. A crash leaves the old file or the new one."""
    final = Path(directory, name)
    tmp = Path(directory, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)
    return final
