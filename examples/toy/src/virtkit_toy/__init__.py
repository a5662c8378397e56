"""virtkit-toy: the smallest complete virtkit plugin, as an example for plugin authors.

``toy:///`` is a fresh in-memory host; ``toy:///ABS/PATH.json`` keeps the host in that file
(created on the first change). It provides part of the catalogue on purpose: the conformance kit
reports the rest as "not provided".
"""

from __future__ import annotations

from ._driver import ToyDriver
from ._plugin import Plugin

__all__ = ["Plugin", "ToyDriver", "plugin"]

#: What the entry point names: ``toy = "virtkit_toy:plugin"``.
plugin = Plugin()
