"""Listings in a dict: for one process, where every room is local."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Driver, SortSpec
from .listing import RoomListing


def _sort_value(listing: RoomListing, key: str) -> Any:
    if key.startswith("metadata."):
        return listing.metadata.get(key[len("metadata."):])
    return getattr(listing, key)


def _is_available(listing: RoomListing) -> bool:
    if listing.locked or listing.private:
        return False
    return listing.max_clients is None or listing.clients < listing.max_clients


class LocalDriver(Driver):
    def __init__(self) -> None:
        self._rooms: dict[str, RoomListing] = {}

    def register(self, listing: RoomListing) -> None:
        if listing.room_id in self._rooms:
            raise ValueError(f"room {listing.room_id} is already listed")
        self._rooms[listing.room_id] = listing

    def update(self, room_id: str, **changes: Any) -> None:
        listing = self._rooms.get(room_id)
        if listing is None:
            return
        for key, value in changes.items():
            if key not in RoomListing.__dataclass_fields__:
                raise AttributeError(f"RoomListing has no attribute {key!r}")
            setattr(listing, key, value)

    def remove(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)

    def get(self, room_id: str) -> RoomListing | None:
        return self._rooms.get(room_id)

    def query(
        self,
        name: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        available: bool = False,
        sort: SortSpec = (),
        limit: int | None = None,
    ) -> list[RoomListing]:
        found = [
            listing
            for listing in self._rooms.values()
            if (name is None or listing.name == name)
            and (not available or _is_available(listing))
            and all(listing.filters.get(k) == v for k, v in (filters or {}).items())
        ]
        # Stable sorts applied last key first give a multi-key sort; None sorts first.
        for key, direction in reversed(list(sort)):
            found.sort(
                key=lambda item, key=key: (_sort_value(item, key) is not None, _sort_value(item, key)),
                reverse=direction < 0,
            )
        return found if limit is None else found[:limit]

    def cleanup(self, process_id: str) -> int:
        doomed = [rid for rid, item in self._rooms.items() if item.process_id == process_id]
        for rid in doomed:
            del self._rooms[rid]
        return len(doomed)

    def clear(self) -> None:
        self._rooms.clear()
