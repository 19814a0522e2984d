"""Built-in rooms, as Colyseus ships them: LobbyRoom (live room listings), RelayRoom (relays
messages between its clients) and QueueRoom (groups players by rank, then seats each group in
a match room). README, "Built-in rooms"."""

from __future__ import annotations

from .lobby import LobbyRoom
from .queue import QueueRoom
from .queue_groups import MatchGroup, QueueEntry
from .relay import RelayRoom

__all__ = ["LobbyRoom", "MatchGroup", "QueueEntry", "QueueRoom", "RelayRoom"]
