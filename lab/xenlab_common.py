"""What every xenlab module shares: the lab's directory, the typed build error, the log line,
the cache directory with its flock, and running a command with a deadline."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"xenlab: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# cache directory and locking


def cache_dir() -> Path:
    env = os.environ.get("VIRTKIT_LAB_CACHE")
    if env:
        return Path(env).resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(xdg) / "virtkit-lab").resolve()


@contextlib.contextmanager
def locked(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path``; wait at most ``timeout`` seconds for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BuildError(f"timed out after {timeout:.0f}s waiting for {what} ({path})") from None
                if not announced:
                    log(f"waiting for another xenlab process holding {path} ({what})")
                    announced = True
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# running commands


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    logfile: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    capture: bool = False,
) -> str:
    """Run a command with a timeout; on failure raise BuildError with the output's tail."""
    argv = [str(c) for c in cmd]
    full_env = None if env is None else {**os.environ, **env}
    out_fh = None
    try:
        if logfile is not None and not capture:
            out_fh = logfile.open("ab")
            out_fh.write(f"\n$ {' '.join(argv)}\n".encode())
            out_fh.flush()
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture or out_fh is None else out_fh,
            stderr=subprocess.PIPE if capture or out_fh is None else subprocess.STDOUT,
            cwd=cwd,
            env=full_env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"timed out after {timeout:.0f}s: {' '.join(argv)}") from exc
    except FileNotFoundError as exc:
        raise BuildError(f"command not found: {argv[0]}") from exc
    finally:
        if out_fh is not None:
            out_fh.close()
    if proc.returncode != 0:
        if out_fh is not None and logfile is not None:
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-30:])
        else:
            tail = (proc.stdout or b"").decode(errors="replace")[-3000:]
            tail += (proc.stderr or b"").decode(errors="replace")[-3000:]
        raise BuildError(f"command failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")
    return (proc.stdout or b"").decode(errors="replace") if capture else ""
