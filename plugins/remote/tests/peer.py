"""A scripted far side for fault tests: run as ``peer.py serve --stdio URI?mode=MODE``.

It speaks virtkit's protocol just well enough to misbehave on cue, so the client's handling of
what a real ``virtkit serve`` never does (garbage, oversized frames, silence, death mid-call) is
tested. MODE is taken from the far URI's query.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import time
import urllib.parse

from virtkit.rpc import PROTOCOL, FrameReader, encode_frame


def main() -> None:
    query = urllib.parse.urlsplit(sys.argv[-1]).query
    mode = dict(urllib.parse.parse_qsl(query)).get("mode", "ok")
    out = os.fdopen(1, "wb", buffering=0)
    if mode == "banner":
        out.write(b"Welcome to a host whose shell prints on login\n")
    if mode == "exit-now":
        sys.stderr.write("peer: giving up at once\n")
        sys.exit(3)
    reader = FrameReader()
    while True:
        data = os.read(0, 65536)
        if not data:
            return
        for msg in reader.feed(data):
            kind = msg["k"]
            if kind == "hello":
                if mode == "no-hello":
                    continue
                served = {"connect_get_type": "peer", "connect_list_domains": "peer", "domain_lookup_by_id": "peer"}
                served |= {"domain_lookup_by_name": "peer", "domain_lookup_by_uuid": "peer", "domain_get_info": "peer"}
                served["connect_domain_event_register"] = "peer"
                out.write(encode_frame({"k": "hello", "proto": PROTOCOL, "uri": "peer:///", "served": served}))
            elif kind == "keepalive":
                if mode not in ("no-keepalive", "quiet-events") and not msg.get("ack"):
                    out.write(encode_frame({"k": "keepalive", "ack": True}))
            elif kind == "call":
                answer(out, msg, mode)


def answer(out: object, msg: dict[str, object], mode: str) -> None:
    write = out.write  # type: ignore[attr-defined]
    if mode in ("hang", "no-keepalive"):
        return
    if mode == "slow":
        time.sleep(30)
    if mode == "die":
        os._exit(3)
    if mode == "freeze":
        os.kill(os.getpid(), signal.SIGSTOP)
    if mode == "garbage":
        write(struct.pack(">I", 9) + b"not json!")
        return
    if mode == "oversize":
        write(struct.pack(">I", 2**31))
        return
    if mode == "bad-value":
        write(encode_frame({"k": "reply", "id": msg["id"], "value": "three"}))
        return
    if mode == "late":  # a reply to a call never made, then the right one
        write(encode_frame({"k": "reply", "id": 999, "value": [7]}))
    write(encode_frame({"k": "reply", "id": msg["id"], "value": [1, 2]}))


if __name__ == "__main__":
    main()
