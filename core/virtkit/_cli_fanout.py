"""One command on several hosts (several ``-c``, ``--hosts FILE``): in parallel through
``virtkit.fleet``, a HOST column before the command's own, one ``error:`` line per failed host."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from ._cli_args import excludes, op_plugin
from ._cli_log import OpenLog
from ._cli_output import safe, table
from ._cli_table import Command
from ._connection import Connection
from ._errors import InvalidArgument

if TYPE_CHECKING:
    import argparse

__all__ = ["fan_out"]


def fan_out(cmd: Command, uris: list[str], args: argparse.Namespace, openlog: OpenLog) -> int:
    if not cmd.fan_out:
        raise InvalidArgument(f"{cmd.name} takes one host, not {len(uris)}")
    if not 1 <= args.parallel <= 1024:
        raise InvalidArgument(f"--parallel must be 1..1024, got {args.parallel}")
    from .fleet import run

    handler = cmd.load()

    def one(conn: Connection) -> Any:
        openlog.open_ended(True)  # fleet calls this in the thread that opened conn
        host_args = type(args)(**vars(args))  # argparse's namespace or _cli_quick's
        host_args.sink = []
        handler(conn, host_args)
        return host_args.sink[0] if host_args.sink else None

    openlog.hold_workers()
    try:
        results = run(
            uris,
            one,
            parallel=args.parallel,
            timeout=args.open_timeout,
            readonly=args.readonly,
            prefer=dict(op_plugin(x) for x in args.prefer),
            exclude=excludes(args.exclude),
        )
    finally:
        openlog.drop_workers()
    rows: list[dict[str, Any]] = []
    for r in results:
        if r.error is not None:
            continue
        for item in r.value if isinstance(r.value, list) else [r.value]:
            rows.append({"host": r.uri, **(item if isinstance(item, dict) else {"result": item})})
    if args.json:
        errors = [{"host": r.uri, "error": r.error.to_dict()} for r in results if r.error is not None]
        print(json.dumps(rows + errors, indent=2, default=str))
    elif rows:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        header = ["HOST", *keys[1:]]
        if cmd.name == "list":  # the columns of one host's list, after HOST
            from ._cli_domain import list_columns

            keys = ["host", *list_columns(args)]
            header = ["HOST", *(k.upper() if k == "uuid" else k.capitalize() for k in keys[1:])]
        cells = [["-" if row.get(k) is None else str(row.get(k)) for k in keys] for row in rows]
        print("\n".join(map(safe, table(cells, header).split("\n"))))
    for r in results:
        if r.error is not None and not args.json:
            print(safe(f"error: {r.uri}: {r.error}"), file=sys.stderr)
    return 1 if any(r.error is not None for r in results) else 0
