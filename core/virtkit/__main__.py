"""``python -m virtkit``: the ``virtkit`` command."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
