"""LobbyRoom: a room whose clients see the listed rooms of the deployment, live (README,
"LobbyRoom"; the behaviour of Colyseus' LobbyRoom, on the wire the same messages).

A client gets ``rooms`` (the list) when it joins and after each ``filter`` message, then ``+``
``[roomId, listing]`` when a room it sees is created or changes and ``-`` ``roomId`` when it
is disposed, turns private or stops matching the client's filter. Events come from the lobby
channel (greenroom/lobby_channel.py), published by the rooms of definitions with
``enable_realtime_listing()`` in any process; nothing is polled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ..lobby_channel import LOBBY_CHANNEL, listing_event, lobby_listing
from ..protocol.codes import ErrorCode
from ..room import Room
from ..session import Client

__all__ = ["LobbyRoom", "listing_matches"]

log = logging.getLogger("greenroom.lobby")

Listing = dict[str, Any]

#: Seconds a removed room's last sequence number is kept, so a late event cannot revive it.
REMOVED_MEMORY = 60.0
#: After a move (``--migrate``): how long, and how often, to look for the moved clients' return.
RETURN_WAIT = 60.0
RETURN_CHECK = 0.1


def listing_matches(listing: Mapping[str, Any], filter_: Mapping[str, Any] | None) -> bool:
    """Whether a client with ``filter_`` sees ``listing``: same ``name`` (when the filter has
    one) and every ``metadata`` key of the filter equal. Colyseus also hides every room from a
    filter without a name; here such a filter matches any name."""
    if not filter_:
        return True
    name = filter_.get("name")
    if name is not None and name != listing.get("name"):
        return False
    wanted = filter_.get("metadata")
    if isinstance(wanted, Mapping):
        metadata = listing.get("metadata") or {}
        return all(key in metadata and metadata[key] == value for key, value in wanted.items())
    return True


class LobbyRoom(Room):
    """Define it under any name (``server.define("lobby", LobbyRoom)``) and enable realtime
    listing on the definitions it should follow. Subclasses that override ``on_create``,
    ``on_join`` or ``on_leave`` call ``super()``'s."""

    def on_create(self, options: dict[str, Any]) -> None:
        self._gr.unlisted = True  # a lobby does not list itself
        #: Visible listings by roomId, in the order they appeared (what ``rooms`` sends).
        self.rooms: dict[str, Listing] = {}
        self.lobby_filters: dict[str, Mapping[str, Any] | None] = {}
        self._seen: dict[str, int] = {}  # roomId -> sequence number of the last event applied
        self._removed_at: dict[str, float] = {}
        # Subscribed before the query: an event that follows it is not missed (it is applied
        # after on_create, so after the query's result).
        self.subscribe(LOBBY_CHANNEL, self._on_listing_event)
        host = self._gr.host
        for listing in host.query(None) if host is not None else ():  # type: ignore[attr-defined]
            if not (listing.private or listing.unlisted or listing.is_expired()):
                self.rooms[listing.room_id] = lobby_listing(listing)
        self.on_message("filter", self._on_filter)
        self.clock.set_interval(self._forget_removed, REMOVED_MEMORY * 1000 / 2)

    def on_join(self, client: Client, options: dict[str, Any], auth: Any) -> None:
        filter_ = options.get("filter") if isinstance(options, Mapping) else None
        self.lobby_filters[client.session_id] = filter_ if isinstance(filter_, Mapping) else None
        client.send("rooms", self.rooms_for(client))

    def on_leave(self, client: Client, consented: bool) -> None:
        self.lobby_filters.pop(client.session_id, None)

    def on_snapshot(self) -> dict[str, Any]:
        """A ``--migrate`` reload moves the lobby with its clients, and no ``on_join`` runs for
        them in the new code: their filters come along, or they would get no more events.
        (The listings do not: ``on_create`` queries them afresh.)"""
        return {"filters": dict(self.lobby_filters)}

    def on_restore(self, data: dict[str, Any]) -> None:
        """Each moved client gets ``rooms`` again once back: what changed while the lobby moved
        reached no one, so its list may be stale."""
        filters = data.get("filters")
        if not isinstance(filters, Mapping):
            return
        self.lobby_filters.update({session_id: filter_ if isinstance(filter_, Mapping) else None
                                   for session_id, filter_ in filters.items()})
        self._returning = set(self.lobby_filters)
        self._returning_until = time.monotonic() + RETURN_WAIT
        self._greeter = self.clock.set_interval(self._greet_returning, RETURN_CHECK * 1000)

    def _greet_returning(self) -> None:
        # A moved client is back once it is among the clients again (no on_join runs for it);
        # until it acknowledges the join, what it is sent waits for it.
        for client in self.clients:
            if client.session_id in self._returning:
                self._returning.discard(client.session_id)
                client.send("rooms", self.rooms_for(client))
        if not self._returning or time.monotonic() > self._returning_until:
            self._greeter.clear()

    def rooms_for(self, client: Client) -> list[Listing]:
        """The listings ``client``'s filter lets it see."""
        filter_ = self.lobby_filters.get(client.session_id)
        return [listing for listing in self.rooms.values() if listing_matches(listing, filter_)]

    # -- messages -------------------------------------------------------------------------------
    def _on_filter(self, client: Client, filter_: Any) -> None:
        if client.session_id not in self.lobby_filters:
            return
        if filter_ is not None and not isinstance(filter_, Mapping):
            log.info("lobby %s: filter from %s is %s, not an object; ignored", self.room_id,
                     client.session_id, type(filter_).__name__)
            client.error(ErrorCode.INVALID_PAYLOAD, "filter must be an object: {name, metadata}")
            return
        self.lobby_filters[client.session_id] = filter_ or None
        client.send("rooms", self.rooms_for(client))

    # -- the lobby channel ----------------------------------------------------------------------
    def _on_listing_event(self, message: Any) -> None:
        event = listing_event(message)
        if event is None:
            return
        room_id, seq, listing = event
        if seq <= self._seen.get(room_id, 0):
            return  # older than what this lobby already applied
        self._seen[room_id] = seq
        previous = self.rooms.get(room_id)
        if listing is None:
            self._removed_at[room_id] = time.monotonic()
            if previous is None:
                return
            del self.rooms[room_id]
        else:
            self._removed_at.pop(room_id, None)
            self.rooms[room_id] = listing
        for client in self.clients:
            if client.session_id not in self.lobby_filters:
                continue
            filter_ = self.lobby_filters[client.session_id]
            had = previous is not None and listing_matches(previous, filter_)
            has = listing is not None and listing_matches(listing, filter_)
            if has:
                client.send("+", [room_id, listing])
            elif had:
                client.send("-", room_id)

    def _forget_removed(self) -> None:
        cutoff = time.monotonic() - REMOVED_MEMORY
        for room_id in [r for r, at in self._removed_at.items() if at < cutoff]:
            del self._removed_at[room_id]
            self._seen.pop(room_id, None)
