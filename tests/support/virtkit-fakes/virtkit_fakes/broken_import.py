"""Fails at import, as a plugin with a missing dependency does."""

from __future__ import annotations

import virtkit_fakes_missing_dependency  # type: ignore[import-not-found]  # noqa: F401

plugin = object()
