"""The lobby channel: how rooms with realtime listing tell every LobbyRoom of the deployment
that their listing changed (``RoomDefinition.enable_realtime_listing``; README, "LobbyRoom").

Colyseus publishes only ``"roomId,0"`` and makes every lobby query the listing back, a round
trip per lobby per change that can also read a listing older than the event (its
``removedRoomIds`` workaround). Here the owner publishes the listing itself, right after the
driver has it, so a lobby in any process applies the event without asking anything.

Each event carries a sequence number: increasing per publishing process, and taken from the
wall clock so that a room that moved to another process (a migration) keeps increasing. A
lobby ignores an event older than the last one it applied for that room: a listing write that
finished after the room's disposal can never bring the room back.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from .drivers.listing import RoomListing

__all__ = ["LOBBY_CHANNEL", "LobbyPublisher", "lobby_listing", "listing_event"]

log = logging.getLogger("greenroom.lobby")

#: The presence channel of listing events (the name Colyseus uses for the same purpose).
LOBBY_CHANNEL = "$lobby"


def lobby_listing(listing: RoomListing) -> dict[str, Any]:
    """A listing as the lobby's clients get it: ``createdAt`` is an ISO 8601 string, as
    Colyseus' listings arrive from its Redis driver (front ends do ``new Date(createdAt)``,
    which would read greenroom's epoch seconds as milliseconds, a date in 1970)."""
    out = listing.to_json()
    created = datetime.fromtimestamp(listing.created_at, timezone.utc)
    out["createdAt"] = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return out


def listing_event(message: Any) -> tuple[str, int, dict[str, Any] | None] | None:
    """(roomId, seq, listing or None when removed) from a message of the channel; None when
    the message is not one (another version, or something else published on the channel)."""
    if not isinstance(message, dict):
        return None
    room_id, seq, listing = message.get("roomId"), message.get("seq"), message.get("listing")
    if not isinstance(room_id, str) or not isinstance(seq, int):
        return None
    if listing is not None and not isinstance(listing, dict):
        return None
    return room_id, seq, listing


class LobbyPublisher:
    """What a process publishes for its realtime-listed rooms. A listing that is private or
    unlisted is published as removed (once, when it stops being visible), as Colyseus does."""

    def __init__(self, presence: Any) -> None:
        self.presence = presence
        self._seq = 0
        self._visible: set[str] = set()

    def updated(self, listing: RoomListing) -> None:
        """The driver holds ``listing`` as it is now (called after each successful write)."""
        room_id = listing.room_id
        if listing.private or listing.unlisted:
            if room_id in self._visible:
                self._visible.discard(room_id)
                self._publish(room_id, None)
            return
        self._visible.add(room_id)
        self._publish(room_id, lobby_listing(listing))

    def removed(self, room_id: str) -> None:
        """The room is disposed and its listing removed."""
        self._visible.discard(room_id)
        self._publish(room_id, None)

    def _next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns())
        return self._seq

    def _publish(self, room_id: str, listing: dict[str, Any] | None) -> None:
        message = {"roomId": room_id, "seq": self._next_seq(), "listing": listing}
        try:
            self.presence.publish(LOBBY_CHANNEL, message)
        except Exception as exc:  # noqa: BLE001 - the room plays on; lobbies miss this change
            log.warning("room %s: lobby update not published: %s", room_id, exc)
