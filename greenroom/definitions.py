"""What a process serves and what a join gets: room definitions (name, class, default options,
filters, sort) and seat reservations (what POST /matchmake/... answers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .room import Room

__all__ = ["RoomDefinition", "SeatReservation"]


class RoomDefinition:
    """What ``Server.define`` returns: chain ``filter_by`` / ``sort_by`` on it."""

    def __init__(self, name: str, room_cls: type[Room], default_options: dict[str, Any]) -> None:
        if not (isinstance(room_cls, type) and issubclass(room_cls, Room)):
            raise TypeError(f"room {name!r}: {room_cls!r} is not a greenroom.Room subclass")
        self.name = name
        self.room_cls = room_cls
        self.default_options = default_options
        self.filter_keys: tuple[str, ...] = ()
        self.sort: tuple[tuple[str, int], ...] = ()
        self.realtime_listing = False
        #: None, "name" (one room of this name in the deployment) or "filter" (one per filter values).
        self.singleton_scope: str | None = None

    def filter_by(self, *keys: str) -> RoomDefinition:
        """joinOrCreate/join only pick rooms created with the same values of these options."""
        self.filter_keys = tuple(keys)
        return self

    def sort_by(self, *fields: tuple[str, int], **kwargs: int) -> RoomDefinition:
        """Order candidate rooms: ``sort_by(clients=-1)`` fills the fullest room first.

        Keys are listing fields (``clients``, ``max_clients``, ``created_at``) or
        ``metadata.<key>`` (pass those as tuples: ``sort_by(("metadata.level", 1))``).
        """
        spec = list(fields) + list(kwargs.items())
        for key, direction in spec:
            if direction not in (1, -1):
                raise ValueError(f"sort_by {key!r}: direction must be 1 or -1, not {direction!r}")
        self.sort = tuple(spec)
        return self

    def enable_realtime_listing(self) -> RoomDefinition:
        """Tell every LobbyRoom of the deployment when a room of this name is created, changes
        (clients, metadata, lock, private) or is disposed, through presence (README, "LobbyRoom")."""
        self.realtime_listing = True
        return self

    def singleton(self, *, per_filter: bool = False) -> RoomDefinition:
        """At most one room of this name in the whole deployment, whichever process is asked;
        ``per_filter=True``: one per combination of the ``filter_by`` values. joinOrCreate joins
        it; ``create`` while it exists, or joinOrCreate while it is full or locked, answers 523
        (README, "Limits")."""
        self.singleton_scope = "filter" if per_filter else "name"
        return self

    def filters_for(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {key: options.get(key) for key in self.filter_keys}

    def creation_filters(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The filter values room creation is serialised by, and a singleton is unique over
        (none for a singleton per name: two filter values must not race to two rooms)."""
        return {} if self.singleton_scope == "name" else self.filters_for(options)

    def __repr__(self) -> str:
        return f"<RoomDefinition {self.name} {self.room_cls.__name__}>"


@dataclass(slots=True)
class SeatReservation:
    name: str
    room_id: str
    process_id: str
    session_id: str
    public_address: str | None = None
    reconnection_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Both shapes at once: flat for @colyseus/sdk, nested ``room`` for colyseus.js 0.16."""
        room: dict[str, Any] = {"name": self.name, "roomId": self.room_id, "processId": self.process_id}
        if self.public_address:
            room["publicAddress"] = self.public_address
        out: dict[str, Any] = {**room, "sessionId": self.session_id, "room": room}
        if self.reconnection_token:
            out["reconnectionToken"] = self.reconnection_token
        return out
