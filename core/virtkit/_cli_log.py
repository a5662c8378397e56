"""What the CLI logs: plugin trouble on stderr as one-line warnings; with ``-v`` every plugin's
open attempt (SUCCESS / DECLINED / ERROR), with ``-vv`` debug.

At the default verbosity, what is logged while a connection opens is held back until the open
ends. A failed open's ``error:`` line already names each plugin's failure, so it stays the one
line the README promises; a successful open lets its warnings through (a broken plugin that did
not stop the open), each message once.
"""

from __future__ import annotations

import logging
import sys
import threading

__all__ = ["OpenLog", "setup_logging"]

_HANDLER_NAME = "virtkit-cli"


class OpenLog(logging.Filter):
    """The stderr handler's filter: holds back the records of threads that are opening.

    ``hold()`` holds the calling thread's records until its ``open_ended``; ``hold_workers()``
    holds those of every thread but the main one (the fan-out's, one per host) until each
    thread's ``open_ended`` or ``drop_workers()``. Inactive (``-v``): nothing is held.
    """

    def __init__(self, handler: logging.Handler | None) -> None:
        super().__init__()
        self._handler = handler
        self._lock = threading.Lock()
        self._held: dict[threading.Thread, list[logging.LogRecord]] = {}
        self._done: set[threading.Thread] = set()
        self._workers = False
        self._shown: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        me = threading.current_thread()
        with self._lock:
            held = self._held.get(me)
            if held is None and self._workers and me is not threading.main_thread() and me not in self._done:
                held = self._held[me] = []
            if held is not None:
                held.append(record)
                return False
        return True

    def hold(self) -> None:
        if self._handler is not None:
            with self._lock:
                self._held.setdefault(threading.current_thread(), [])

    def hold_workers(self) -> None:
        if self._handler is not None:
            with self._lock:
                self._workers = True

    def open_ended(self, ok: bool) -> None:
        """The calling thread's open is over: show what it held back if it succeeded, else drop it."""
        if self._handler is None:
            return
        me = threading.current_thread()
        with self._lock:
            records = self._held.pop(me, [])
            if self._workers:
                self._done.add(me)
            if ok:
                fresh = [r for r in records if r.getMessage() not in self._shown]
                self._shown.update(r.getMessage() for r in fresh)
            else:
                fresh = []
        for record in fresh:
            self._handler.handle(record)

    def drop_workers(self) -> None:
        """The fan-out is over: what the hosts whose open failed held back is dropped."""
        with self._lock:
            self._workers = False
            for thread in [t for t in self._held if t is not threading.main_thread()]:
                del self._held[thread]
            self._done.clear()


def setup_logging(verbose: int) -> OpenLog:
    """Log the ``virtkit`` loggers to stderr; returns the filter that holds back an open's noise."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("virtkit: %(levelname)s: %(message)s"))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger("virtkit")
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:  # main() run again in-process
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    openlog = OpenLog(handler if verbose == 0 else None)
    handler.addFilter(openlog)
    return openlog
