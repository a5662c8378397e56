"""``DomainStats``, the record of the bulk call, apart from the groups' records (``_stats``).

A listing asks the bulk call for the state group alone: its records are made without loading the
groups' record classes, which ``DomainStats`` names only in its annotations.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import NamedTuple

    from ._stats import BalloonStats, BlockStats, CpuStats, InterfaceStats, VcpuStats
    from ._types import DomainRef, DomainStateInfo
else:
    from ._record import NamedTuple

__all__ = ["DomainStats"]


class DomainStats(NamedTuple):
    """One domain's record in a bulk call: the requested groups set, the others None."""

    domain: DomainRef
    state: DomainStateInfo | None = None
    cpu: CpuStats | None = None
    balloon: BalloonStats | None = None
    vcpu: VcpuStats | None = None
    block: tuple[BlockStats, ...] | None = None
    net: tuple[InterfaceStats, ...] | None = None
