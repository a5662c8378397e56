"""What ``Connection.explain()`` returns: the routing metadata, kept apart from the vtable."""

from __future__ import annotations

import enum

TYPE_CHECKING = False  # typing is not imported at run time: see _record
if TYPE_CHECKING:
    from typing import Any, NamedTuple
else:
    from ._record import NamedTuple

__all__ = ["Attempt", "Candidate", "Explanation", "Outcome", "Route"]


class Outcome(enum.Enum):
    SUCCESS = "SUCCESS"
    DECLINED = "DECLINED"
    ERROR = "ERROR"


class Candidate(NamedTuple):
    plugin: str
    priority: int


class Route(NamedTuple):
    """One operation: who serves it, at what priority, who lost, and why the choice fell so."""

    operation: str
    plugin: str | None
    priority: int | None
    lost: tuple[Candidate, ...] = ()
    note: str = ""
    fallback: bool = False


class Attempt(NamedTuple):
    """One plugin's part in opening the connection."""

    plugin: str
    outcome: Outcome
    reason: str = ""
    priority: int | None = None
    origin: str = ""


class Explanation(NamedTuple):
    uri: str
    routes: tuple[Route, ...]
    attempts: tuple[Attempt, ...]
    load_failures: tuple[tuple[str, str, str], ...] = ()  # (plugin, target, error)
    remote: Explanation | None = None  # the far side's composition, behind a remote plugin
    groups: tuple[Route, ...] = ()  # connect_get_all_domain_stats per stats group (operation = group)

    # NamedTuples for import speed (a dataclass costs ~1 ms to create at import): the CLI
    # imports this on every start.

    def route(self, operation: str) -> Route:
        for r in self.routes:
            if r.operation == operation:
                return r
        raise KeyError(operation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "operations": [
                {
                    "operation": r.operation,
                    "plugin": r.plugin,
                    "priority": r.priority,
                    "lost": [{"plugin": c.plugin, "priority": c.priority} for c in r.lost],
                    "note": r.note,
                    "fallback": r.fallback,
                }
                for r in self.routes
            ],
            "plugins": [
                {
                    "plugin": a.plugin,
                    "outcome": a.outcome.value,
                    "reason": a.reason,
                    "priority": a.priority,
                    "origin": a.origin,
                }
                for a in self.attempts
            ],
            "load_failures": [{"plugin": p, "target": t, "error": e} for p, t, e in self.load_failures],
            **({"remote": self.remote.to_dict()} if self.remote is not None else {}),
            **({"stats_groups": [_route_dict(r) for r in self.groups]} if self.groups else {}),
        }

    def render(self) -> str:
        """A plain-text table for humans (``virtkit explain``)."""
        width = max(len(r.operation) for r in self.routes) if self.routes else 10
        lines = [f"URI: {self.uri}", "", f"{'operation':<{width}}  {'plugin':<14} {'prio':>5}  lost / note"]
        lines.append("-" * (width + 40))
        for r in self.routes:
            lost = ", ".join(f"{c.plugin}({c.priority})" for c in r.lost)
            extra = "; ".join(x for x in (lost and "lost: " + lost, r.note, r.fallback and "fallback chain") if x)
            plugin = r.plugin or "-"
            prio = "" if r.priority is None else str(r.priority)
            lines.append(f"{r.operation:<{width}}  {plugin:<14} {prio:>5}  {extra}")
        lines += ["", "plugins:"]
        for a in self.attempts:
            prio = "" if a.priority is None else f" priority {a.priority}"
            reason = f": {a.reason}" if a.reason else ""
            lines.append(f"  {a.outcome.value:<8} {a.plugin}{prio}{reason}  [{a.origin}]")
        if self.load_failures:
            lines += ["", "failed to load:"]
            lines += [f"  {p} ({t}): {e}" for p, t, e in self.load_failures]
        if self.groups:
            lines += ["", "connect_get_all_domain_stats by group:"]
            for r in self.groups:
                lost = ", ".join(f"{c.plugin}({c.priority})" for c in r.lost)
                extra = "; ".join(x for x in (lost and "lost: " + lost, r.note) if x)
                prio = "" if r.priority is None else str(r.priority)
                lines.append(f"  {r.operation:<8} {r.plugin or '-':<14} {prio:>5}  {extra}".rstrip())
        if self.remote is not None:
            lines += ["", "far side:"]
            lines += [f"  {line}" if line else "" for line in self.remote.render().split("\n")]
        return "\n".join(lines)


def _route_dict(r: Route) -> dict[str, Any]:
    return {
        "group": r.operation,
        "plugin": r.plugin,
        "priority": r.priority,
        "lost": [{"plugin": c.plugin, "priority": c.priority} for c in r.lost],
        "note": r.note,
    }
