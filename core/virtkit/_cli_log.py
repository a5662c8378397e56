"""What the CLI logs: plugin trouble on stderr as one-line warnings; with ``-v`` every plugin's
open attempt (SUCCESS / DECLINED / ERROR), with ``-vv`` debug.

At the default verbosity, what is logged while a connection opens is held back until the open
ends. A failed open's ``error:`` line already names each plugin's failure, so it stays the one
line the README promises; a successful open lets its warnings through (a broken plugin that did
not stop the open), each message once.

Also at the default verbosity, ``logging`` is configured when something first imports it, not
before: no record can exist until then, and a command whose plugins never log (``list`` on
``test:///``) does not pay for importing it. With ``-v`` it is configured at once.
"""

from __future__ import annotations

import _thread  # threading is not on the start-up path: see OpenLog
import sys
from collections.abc import Callable
from types import ModuleType

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    import logging
    from typing import Any

__all__ = ["OpenLog", "setup_logging"]

_HANDLER_NAME = "virtkit-cli"


class OpenLog:
    """The stderr handler's filter: holds back the records of threads that are opening.

    ``hold()`` holds the calling thread's records until its ``open_ended``; ``hold_workers()``
    holds those of every thread but the one that made the filter (the command's; the others are
    the fan-out's, one per host) until each thread's ``open_ended`` or ``drop_workers()``.
    Inactive (``-v``): nothing is held. Threads are told apart by ident (``_thread``: threading
    is not imported by a command that starts none).
    """

    def __init__(self, active: bool) -> None:
        self._active = active
        self._handler: logging.Handler | None = None  # set once logging is configured
        self._lock = _thread.allocate_lock()
        self._owner = _thread.get_ident()
        self._held: dict[int, list[logging.LogRecord]] = {}
        self._done: set[int] = set()
        self._workers = False
        self._shown: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        me = _thread.get_ident()
        with self._lock:
            held = self._held.get(me)
            if held is None and self._workers and me != self._owner and me not in self._done:
                held = self._held[me] = []
            if held is not None:
                held.append(record)
                return False
        return True

    def hold(self) -> None:
        if self._active:
            with self._lock:
                self._held.setdefault(_thread.get_ident(), [])

    def hold_workers(self) -> None:
        if self._active:
            with self._lock:
                self._workers = True

    def open_ended(self, ok: bool) -> None:
        """The calling thread's open is over: show what it held back if it succeeded, else drop it."""
        if not self._active:
            return
        me = _thread.get_ident()
        with self._lock:
            records = self._held.pop(me, [])
            if self._workers:
                self._done.add(me)
            if ok:
                fresh = [r for r in records if r.getMessage() not in self._shown]
                self._shown.update(r.getMessage() for r in fresh)
            else:
                fresh = []
        for record in fresh:  # a record exists only once the handler does
            assert self._handler is not None
            self._handler.handle(record)

    def drop_workers(self) -> None:
        """The fan-out is over: what the hosts whose open failed held back is dropped."""
        with self._lock:
            self._workers = False
            for thread in [t for t in self._held if t != self._owner]:
                del self._held[thread]
            self._done.clear()


def setup_logging(verbose: int) -> OpenLog:
    """Log the ``virtkit`` loggers to stderr, now (``-v``, or logging already imported) or when
    ``logging`` is first imported; returns the filter that holds back an open's noise."""
    openlog = OpenLog(active=verbose == 0)
    for old in [f for f in sys.meta_path if isinstance(f, _WhenImported)]:  # main() run again in-process
        sys.meta_path.remove(old)
    if verbose or "logging" in sys.modules:
        import logging

        _configure(logging, verbose, openlog)
    else:
        sys.meta_path.insert(0, _WhenImported("logging", lambda module: _configure(module, 0, openlog)))
    return openlog


def _configure(logging: ModuleType, verbose: int, openlog: OpenLog) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("virtkit: %(levelname)s: %(message)s"))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger("virtkit")
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:  # main() run again in-process
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    handler.addFilter(openlog)  # logging takes any object with a filter(record) method
    openlog._handler = handler


class _WhenImported:
    """A ``sys.meta_path`` finder that runs ``then(module)`` right after ``name`` is first imported
    (by anyone: the core, a plugin, the standard library), then leaves ``sys.meta_path``."""

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self._name = name
        self._then = then

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self._name:
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:  # already gone: another thread got here first
            return None
        for finder in sys.meta_path:  # the spec the import system would have found
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _ThenLoader(spec.loader, self._then)
        return spec


class _ThenLoader:
    """Loads as ``loader`` does, then calls ``then(module)``; the module keeps ``loader`` as its own."""

    def __init__(self, loader: Any, then: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._then = then

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._then(module)
