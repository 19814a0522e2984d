"""Where a room is in its life (docs/architecture.md, "The room engine").

Its own module because both halves of the engine (engine.py, membership.py) decide by it.
"""

from __future__ import annotations

from enum import Enum


class Phase(Enum):
    DETACHED = "detached"    # constructed; no matchmaker has attached it yet
    RUNNING = "running"      # seats can be reserved and claimed
    CLOSING = "closing"      # disconnect(): clients are being closed, no new seats
    DISPOSING = "disposing"  # the last on_leave and on_dispose are running
    DISPOSED = "disposed"    # nothing of the room runs any more

