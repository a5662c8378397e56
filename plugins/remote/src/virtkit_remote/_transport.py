"""From a ``SCHEME+ssh://`` or ``SCHEME+ext://`` URI to the argv of the local child and the far URI.

No shell ever sees a URI part on this host: the argv is a list. ssh joins its remote command
into one line for the far user's shell, so each remote word is quoted for a POSIX shell there.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import NamedTuple

from virtkit import URI, InvalidURI

__all__ = ["CLIENT_PARAMS", "TRANSPORTS", "Endpoint", "endpoint", "far_uri"]

TRANSPORTS = ("ssh", "ext")
#: Query parameters for this side (libvirt's names); every other one goes to the far URI.
CLIENT_PARAMS = frozenset({"command", "keyfile", "no_verify", "no_tty", "control"})
# A host ssh takes as a host, never as an option or a token to expand ('-', '%' excluded).
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}\Z|[0-9A-Fa-f:.]{2,45}\Z")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")  # what ssh -l and login names take
_TRUE = ("1", "yes", "true")


class Endpoint(NamedTuple):
    argv: list[str]
    far_uri: str
    command: str  # the program named on the far side (ssh) or here (ext): errors name it
    where: str  # "ssh root@host:2222" / "ext /path/cmd": errors and logs say it


def far_uri(uri: URI) -> str:
    """The URI the far side opens: no transport, no host, user or port, no client parameters."""
    query = tuple((k, v) for k, v in uri.query if k not in CLIENT_PARAMS)
    return str(URI(scheme=uri.scheme, path=uri.path or "/", query=query, fragment=uri.fragment))


def _flag(uri: URI, name: str) -> bool:
    return uri.params.get(name, "0").lower() in _TRUE


def endpoint(uri: URI, control_dir: str | None = None) -> Endpoint:
    """The child to run for ``uri``; InvalidURI says what is wrong with it."""
    shown = str(uri)
    if uri.transport not in TRANSPORTS:
        raise InvalidURI(f"{shown}: the remote plugin serves +ssh and +ext, not +{uri.transport}", uri=shown)
    if uri.password is not None:
        raise InvalidURI(f"{shown}: a password cannot be given in the URI: use a key or the ssh agent", uri=shown)
    far = far_uri(uri)
    params = uri.params
    if uri.transport == "ext":
        command = params.get("command", "")
        if not command:
            raise InvalidURI(f"{shown}: +ext needs ?command=PROGRAM (run as PROGRAM serve --stdio URI)", uri=shown)
        return Endpoint([command, "serve", "--stdio", far], far, command, f"ext {command}")
    host = uri.host
    if not host:
        raise InvalidURI(f"{shown}: +ssh needs a host (SCHEME+ssh://[user@]host[:port]/path)", uri=shown)
    if not _HOST.match(host):
        raise InvalidURI(f"{shown}: host {host!r} cannot be passed to ssh", uri=shown)
    if uri.user is not None and not _USER.match(uri.user):
        raise InvalidURI(f"{shown}: user {uri.user!r} cannot be passed to ssh", uri=shown)
    command = params.get("command", "virtkit") or "virtkit"
    argv = [os.environ.get("VIRTKIT_SSH") or "ssh", "-T", "-e", "none", "-o", "BatchMode=yes"]
    if uri.port is not None:
        argv += ["-p", str(uri.port)]
    if uri.user is not None:
        argv += ["-l", uri.user]
    if params.get("keyfile"):
        argv += ["-i", params["keyfile"]]
    if _flag(uri, "no_verify"):
        argv += ["-o", "StrictHostKeyChecking=no"]
    if control_dir is not None and params.get("control", "1").lower() in _TRUE:
        # One master connection per destination, kept a minute after its last user: the next
        # command to that host skips the handshake. %C hashes host, port and user.
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C", "-o", "ControlPersist=60"]
    remote = " ".join(shlex.quote(word) for word in (command, "serve", "--stdio", far))
    # '--' ends ssh's options: nothing after it (host included) is read as one.
    argv += ["--", host, remote]
    user = f"{uri.user}@" if uri.user else ""
    port = f":{uri.port}" if uri.port is not None else ""
    return Endpoint(argv, far, command, f"ssh {user}{host}{port}")
