"""The driver interface: the room listings every matchmaker queries (docs/architecture.md, "Processes and leases").

A driver is a catalogue, not an authority: the room's owner decides whether a seat is free.
Listings are written by their owner only (register, update, remove) and read by everyone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from .listing import RoomListing

# A sort key is a listing attribute ("clients", "max_clients", "created_at") or "metadata.<key>";
# direction 1 ascending, -1 descending.
SortSpec = Sequence[tuple[str, int]]


class DriverUnavailable(RuntimeError):
    """The listing store cannot be reached; the server answers 503 rather than guessing."""


class Driver(ABC):
    @abstractmethod
    def register(self, listing: RoomListing) -> None:
        """Insert a new listing (room_id is unique)."""

    @abstractmethod
    def update(self, room_id: str, **changes: Any) -> None:
        """Set attributes of one listing; unknown room ids are ignored."""

    @abstractmethod
    def remove(self, room_id: str) -> None: ...

    @abstractmethod
    def get(self, room_id: str) -> RoomListing | None: ...

    @abstractmethod
    def query(
        self,
        name: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        available: bool = False,
        sort: SortSpec = (),
        limit: int | None = None,
    ) -> list[RoomListing]:
        """Listings of ``name`` (all names if None) whose ``filters`` contain every given pair.

        ``available`` keeps only rooms a matchmaker may put someone into: not locked, not
        private, and not full (clients < max_clients, when max_clients is set).
        """

    def find_one(self, name: str | None = None, **kwargs: Any) -> RoomListing | None:
        found = self.query(name, limit=1, **kwargs)
        return found[0] if found else None

    def renew(self, process_id: str, ttl: float) -> int:
        """Extend the lease of every listing of ``process_id`` to now + ``ttl`` seconds.

        Called by the owner's heartbeat, so a listing outlives a short stall but not its owner.
        Returns how many listings were renewed: fewer than the owner holds means some were
        reaped meanwhile and should be registered again.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support leases")

    @abstractmethod
    def cleanup(self, process_id: str) -> int:
        """Remove every listing owned by ``process_id``; returns how many."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every listing (tests, and a single process starting afresh)."""

    def close(self) -> None:
        """Release connections."""
