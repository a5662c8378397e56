"""Running ``xl``, libxl's own command-line toolstack, and turning its failures into typed errors.

Every command runs with a timeout, ``LC_ALL=C`` and no stdin. ``xl create`` forks the domain's
babysitter (the process that applies on_poweroff/on_reboot/on_crash when the guest shuts down)
and returns once the domain is unpaused; the babysitter keeps running after we return, so it
gets no pipe of ours to hold open: its output goes to a file, read after xl returned.
"""

from __future__ import annotations

import json
import os
import select
from pathlib import Path

import virtkit
from virtkit import InvalidArgument, InvalidOperation, NoSuchDomain, PermissionDenied, VirtError

# A cold open only looks for xl (find_xl): typing, subprocess and tempfile (and shutil's
# compression modules) load with the first command run, not with the plugin (issue 14).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = ["XL_PATHS", "Xl", "XlError", "find_xl"]

#: Where Debian and upstream installs put xl, after $PATH.
XL_PATHS = ("/usr/sbin/xl", "/usr/lib/xen-4.17/bin/xl", "/usr/local/sbin/xl")


class XlError(InvalidArgument):
    """xl refused or failed: ``xl_message`` is xl's (and libxl's) own text."""

    def __init__(self, message: str, *, xl_message: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.xl_message = xl_message


def _which(name: str) -> str | None:
    """``shutil.which(name)`` on POSIX: the first executable non-directory ``name`` on $PATH."""
    path = os.environ.get("PATH")
    if path is None:
        path = os.confstr("CS_PATH") or os.defpath
    if not path:
        return None
    seen = set()
    for d in path.split(os.pathsep):
        if d in seen:
            continue
        seen.add(d)
        cand = os.path.join(d, name)
        if os.path.exists(cand) and os.access(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    return None


def find_xl() -> str | None:
    found = _which("xl")
    if found:
        return found
    return next((p for p in XL_PATHS if os.access(p, os.X_OK)), None)


#: xl's chatter, and libxl's clean-up after a failed create (which only says it had nothing to
#: clean: "Non-existant domain", "Unable to destroy guest"), kept out of error messages.
_NOISE = (
    "Parsing config from",
    "Waiting for domain",
    "libxl__destroy_domid",
    "domain_destroy_callback",
    "domain_destroy_cb",
)


def _message(out: str) -> str:
    """xl's diagnostics without its chatter."""
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(_NOISE[:2]) and not any(n in ln for n in _NOISE[2:])]
    return "; ".join(lines) or "(no message)"


class Xl:
    """One xl binary, bounded by ``timeout`` seconds per command."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._env = {**os.environ, "LC_ALL": "C"}

    def run(self, *args: str, timeout: float | None = None, what: str = "") -> str:
        """stdout of ``xl ARGS``; a non-zero exit raises the typed error for xl's message."""
        limit = self.timeout if timeout is None else timeout
        argv = [self.path, *args]
        creating = args[0] == "create"
        import subprocess
        import tempfile

        with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as err:
            try:
                if creating:  # no pipe for the babysitter to inherit: stdout in the file too
                    out, code = "", _run_to_files(argv, err, self._env, limit)
                else:
                    proc = subprocess.run(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        env=self._env,
                        timeout=limit,
                        check=False,
                        text=True,
                    )
                    out, code = proc.stdout or "", proc.returncode
            except subprocess.TimeoutExpired:
                raise virtkit.TimeoutError(f"xl {' '.join(args[:2])} did not finish within {limit:g}s") from None
            except OSError as exc:
                raise PermissionDenied(f"cannot run {self.path}: {exc.strerror}") from None
            err.seek(0)
            diag = err.read()
        if code != 0:
            raise classify(_message(diag), what or f"xl {args[0]}", creating=creating or "-N" in args)
        return out

    def create(self, cfg_path: Path) -> None:
        self.run("create", "-q", str(cfg_path), what="xl create")

    def check_config(self, cfg_path: Path) -> dict[str, Any]:
        """``xl -N create``: xl parses the file and prints libxl's JSON of it, creating nothing."""
        out = self.run("-N", "create", "-q", str(cfg_path), what="xl config check")
        try:
            data: dict[str, Any] = json.loads(out)
        except ValueError:
            raise InvalidArgument(f"xl config check printed no JSON: {out[:200]!r}") from None
        return data

    def list_long(self, domid: int) -> dict[str, Any]:
        """libxl's JSON of a running domain's configuration (``xl list -l DOMID``)."""
        out = self.run("list", "-l", str(domid), what=f"xl list -l {domid}")
        try:
            data = json.loads(out)
        except ValueError:
            raise NoSuchDomain(f"xl list -l {domid} printed no JSON") from None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            raise NoSuchDomain(f"no domain with id {domid}")
        entry: dict[str, Any] = data[0]
        return entry


def _run_to_files(argv: list[str], out: IO[str], env: dict[str, str], limit: float) -> int:
    """Run ``argv`` with stdout and stderr to ``out``; its exit code. Woken by the exit itself
    (a pidfd): with no pipe to read, subprocess's own wait polls, sleeping up to 50 ms a turn,
    so an exit would be seen up to 50 ms late. On timeout it is killed (TimeoutExpired)."""
    import subprocess

    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    try:
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:  # a kernel before 5.3: subprocess's polling wait
            return proc.wait(limit)
        try:
            ready, _w, _x = select.select([fd], [], [], limit)
        finally:
            os.close(fd)
        if not ready:
            raise subprocess.TimeoutExpired(argv, limit)
        return proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def classify(message: str, what: str, *, creating: bool = False) -> VirtError:
    """The typed error for one of xl's failure messages; a failed create is the config's fault
    (InvalidArgument) unless the name is taken."""
    low = message.lower()
    text = f"{what} failed: {message}"
    if "already exists" in low:
        return InvalidOperation(text)
    if creating:
        return XlError(text, xl_message=message)
    if any(s in low for s in ("invalid domain identifier", "non-existant domain", "no such domain")):
        return NoSuchDomain(text)
    if "permission denied" in low or "operation not permitted" in low:
        return PermissionDenied(text)
    return XlError(text, xl_message=message)
