"""The scenarios: what each one asks of the load generator and which numbers it reports.

A scenario that needs a server is a :class:`LoadScenario` (run once per server per round);
``encode`` measures the schema encoders in-process and needs none (:class:`LocalScenario`).
"""

from __future__ import annotations

from .base import LoadScenario, LocalScenario, Metric, Scenario
from .broadcast import BROADCAST
from .echo import ECHO
from .encode import ENCODE
from .idle import IDLE
from .joins import JOINS
from .quiet import QUIET

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (JOINS, ECHO, BROADCAST, IDLE, QUIET, ENCODE)}

__all__ = ["SCENARIOS", "LoadScenario", "LocalScenario", "Metric", "Scenario"]
