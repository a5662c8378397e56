"""Host-side lab tests: run on the host by ``lab/xenlab test`` while the lab's dom0 is up, over
ssh into it (``XENLAB_HOST_PHASE=1``, see lab/xenlab_host.py); never by a plain ``pytest``."""

from __future__ import annotations

import os

if os.environ.get("XENLAB_HOST_PHASE") != "1":
    collect_ignore_glob = ["*"]
