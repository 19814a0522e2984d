"""Listings in a dict: for one process, where every room is local."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from .base import Driver, SortSpec
from .listing import RoomListing

SORTABLE = ("clients", "max_clients", "created_at", "lease_expires_at", "name", "room_id")


def check_sort(sort: SortSpec) -> list[tuple[str, int]]:
    """Reject unknown sort keys up front, identically in every driver."""
    checked = []
    for key, direction in sort:
        if key not in SORTABLE and not (key.startswith("metadata.") and len(key) > 9):
            raise ValueError(f"cannot sort room listings by {key!r}")
        if direction not in (1, -1):
            raise ValueError(f"sort direction for {key!r} must be 1 or -1, not {direction!r}")
        checked.append((key, direction))
    return checked


def _sort_value(listing: RoomListing, key: str) -> Any:
    if key.startswith("metadata."):
        return listing.metadata.get(key[len("metadata.") :])
    return getattr(listing, key)


def _rank(value: Any) -> tuple[int, Any]:
    """A total order across types (missing < numbers < strings < other < booleans), as MongoDB.

    Without it one listing with a string where the others have numbers would make every sorted
    query of that room name raise TypeError.
    """
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (4, value)
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, 0)


def sort_listings(found: list[RoomListing], sort: SortSpec) -> None:
    """Sort in place; ties fall back to creation order then room id, as the other drivers do."""
    found.sort(key=lambda item: (item.created_at, item.room_id))
    for key, direction in reversed(check_sort(sort)):
        found.sort(key=lambda item, key=key: _rank(_sort_value(item, key)), reverse=direction < 0)


def is_available(listing: RoomListing) -> bool:
    if listing.locked or listing.private:
        return False
    return listing.max_clients is None or listing.clients < listing.max_clients


def check_changes(changes: Mapping[str, Any]) -> None:
    for key in changes:
        if key not in RoomListing.__dataclass_fields__ or key == "room_id":
            raise AttributeError(f"RoomListing has no settable attribute {key!r}")


def matches(listing: RoomListing, filters: Mapping[str, Any] | None) -> bool:
    return all(listing.filters.get(k) == v for k, v in (filters or {}).items())


class LocalDriver(Driver):
    """Indexed by name so a joinOrCreate never walks the listings of other room names.

    Listings are copied in and out: a caller mutating a returned listing must not change the
    catalogue behind the owner's back, exactly as with the Redis and MongoDB drivers.
    """

    def __init__(self) -> None:
        self._rooms: dict[str, RoomListing] = {}
        self._by_name: dict[str, dict[str, RoomListing]] = {}

    def register(self, listing: RoomListing) -> None:
        if listing.room_id in self._rooms:
            raise ValueError(f"room {listing.room_id} is already listed")
        stored = copy.deepcopy(listing.validate())
        self._rooms[stored.room_id] = stored
        self._by_name.setdefault(stored.name, {})[stored.room_id] = stored

    def update(self, room_id: str, **changes: Any) -> None:
        check_changes(changes)
        listing = self._rooms.get(room_id)
        if listing is None:
            return
        self._unindex(listing)
        for key, value in copy.deepcopy(changes).items():
            setattr(listing, key, value)
        self._by_name.setdefault(listing.name, {})[room_id] = listing

    def remove(self, room_id: str) -> None:
        listing = self._rooms.pop(room_id, None)
        if listing is not None:
            self._unindex(listing)

    def get(self, room_id: str) -> RoomListing | None:
        listing = self._rooms.get(room_id)
        if listing is None or listing.is_expired():
            return None
        return copy.deepcopy(listing)

    def query(
        self,
        name: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        available: bool = False,
        sort: SortSpec = (),
        limit: int | None = None,
    ) -> list[RoomListing]:
        check_sort(sort)
        now = time.time()
        candidates = self._rooms if name is None else self._by_name.get(name, {})
        found = [
            listing
            for listing in candidates.values()
            if not listing.is_expired(now)
            and (not available or is_available(listing))
            and matches(listing, filters)
        ]
        sort_listings(found, sort)
        if limit is not None:
            found = found[:limit]
        return [copy.deepcopy(listing) for listing in found]

    def renew(self, process_id: str, ttl: float) -> int:
        expires = time.time() + ttl
        renewed = 0
        for listing in self._rooms.values():
            if listing.process_id == process_id:
                listing.lease_expires_at = expires
                renewed += 1
        return renewed

    def cleanup(self, process_id: str) -> int:
        doomed = [rid for rid, item in self._rooms.items() if item.process_id == process_id]
        for rid in doomed:
            self.remove(rid)
        return len(doomed)

    def clear(self) -> None:
        self._rooms.clear()
        self._by_name.clear()

    def _unindex(self, listing: RoomListing) -> None:
        same_name = self._by_name.get(listing.name)
        if same_name is not None:
            same_name.pop(listing.room_id, None)
            if not same_name:
                del self._by_name[listing.name]
