"""Lab tests run only inside the xenlab dom0 (``lab/xenlab test``), never on the host.

On the host this conftest makes pytest ignore every file here, so they are not even
imported. The same two lines go into every ``plugins/*/tests/lab/conftest.py``.
"""

from __future__ import annotations

import os

if os.environ.get("VIRTKIT_IN_LAB") != "1":
    collect_ignore_glob = ["*"]
