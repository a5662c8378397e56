"""``python -m virtkit_xen_xend.emulator``: serve an emulated xend until SIGINT/SIGTERM.

Prints one line per listener, the URI virtkit opens it with (TCP first, then the unix socket),
and flushes, so a parent process can read the address before talking to it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from ._host import Host
from ._server import XendEmulator


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m virtkit_xen_xend.emulator", description=__doc__)
    p.add_argument("--address", default="127.0.0.1", help="TCP address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    p.add_argument("--no-tcp", action="store_true", help="serve the unix socket only")
    p.add_argument("--socket", metavar="PATH", help="also serve on this unix socket")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (needs --tls-key)")
    p.add_argument("--tls-key", metavar="PEM")
    p.add_argument("--legacy", action="store_true", help="answer as xend 3.0.x: no status field, raw state flags")
    args = p.parse_args(argv)
    if args.no_tcp and not args.socket:
        p.error("--no-tcp needs --socket")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    emu = XendEmulator(
        host=Host(legacy=args.legacy),
        address=args.address,
        port=None if args.no_tcp else args.port,
        socket_path=args.socket,
        tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with emu:
        if emu.port is not None:
            print(emu.uri)
        if emu.socket_path is not None:
            print(emu.unix_uri)
        sys.stdout.flush()
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
