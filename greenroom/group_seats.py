"""Seats for a whole group at once: what sends the players a QueueRoom matched to one room
(README, "QueueRoom").

Every member of a group gets a seat or none does. The owner of the room claims them all in
one step that does not yield (``RoomEngine.reserve_seats``), so no other join can take a seat
between two of the group's, and no member is left holding a seat its group-mates lack. A room
created for a group gets the group's seats before it is listed: nobody else can even find it
before they are taken. Either call works whichever process owns, or is to create, the room.

A mixin of MatchMaker; attributes it uses (set by MatchMaker): ``rpc``, ``rooms``,
``placement``, ``process_id``, and the methods named in the ``TYPE_CHECKING`` block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .definitions import SeatReservation
from .errors import MatchMakeError
from .protocol.codes import ErrorCode

if TYPE_CHECKING:
    from .definitions import RoomDefinition
    from .drivers.listing import RoomListing
    from .room import Room

__all__ = ["GroupSeating"]


class GroupSeating:
    rpc: Any
    rooms: dict[str, Room]
    placement: Any
    process_id: str

    if TYPE_CHECKING:
        def _options(self, definition: RoomDefinition | None,
                     options: Mapping[str, Any] | None) -> dict[str, Any]: ...
        def definition(self, name: str) -> RoomDefinition: ...
        def _listing(self, room_id: str) -> RoomListing: ...
        def _least_loaded_process(self) -> str: ...
        def _remote(self, listing: RoomListing, method: str, *args: Any) -> Any: ...
        def _ask_creator(self, target: str, method: str, definition: RoomDefinition,
                         *args: Any) -> Any: ...
        def _create_room(self, definition: RoomDefinition, options: dict[str, Any], *,
                         seats: list[dict[str, Any]] | None = None, room_id: str | None = None,
                         restore: Any = None, auth: Any = None) -> tuple[Room, list[SeatReservation]]: ...
        def _reserve_local_many(self, room: Room, seats: list[dict[str, Any]],
                                auth: Any = None) -> list[SeatReservation] | None: ...

    def _register_group_rpc(self) -> None:
        self.rpc.register("create_with_seats", self._serve_create_with_seats)
        self.rpc.register("reserve_seats", self._serve_reserve_seats)

    # -- what MatchMaker.create_with_seats / reserve_seats do -------------------------------------
    def _create_with_seats(self, name: str, options: Mapping[str, Any] | None,
                           seats: Sequence[Mapping[str, Any]]) -> list[SeatReservation]:
        definition = self.definition(name)
        options = self._options(definition, options)
        members = _member_options(seats)
        target = (self.placement.choose(definition.name, options) if self.placement is not None
                  else self._least_loaded_process())
        if target != self.process_id:
            answer = self._ask_creator(target, "create_with_seats", definition, options, members)
            if answer is not None:
                return _reservations(answer)
        return self._create_room(definition, options, seats=members)[1]

    def _reserve_seats(self, room_id: str, seats: Sequence[Mapping[str, Any]]) -> list[SeatReservation]:
        members = _member_options(seats)
        listing = self._listing(room_id)
        room = self.rooms.get(room_id)
        if room is not None:
            reserved = self._reserve_local_many(room, members)
        else:
            session_ids = self._remote(listing, "reserve_seats", room_id, members)
            reserved = None if session_ids is None else [
                SeatReservation(listing.name, room_id, listing.process_id, session_id,
                                listing.public_address) for session_id in session_ids]
        if reserved is None:
            raise MatchMakeError(f'room "{room_id}" cannot seat {len(members)} more client(s) '
                                 "(full, locked or closing)", ErrorCode.MATCHMAKE_INVALID_ROOM_ID)
        return reserved

    # -- served to other processes ------------------------------------------------------------------
    def _serve_create_with_seats(self, name: str, options: dict[str, Any],
                                 seats: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            definition = self.definition(name)
            reserved = self._create_room(definition, self._options(definition, options),
                                         seats=_member_options(seats))[1]
        except MatchMakeError as exc:
            return {"error": exc.message, "code": exc.code}
        first = reserved[0]
        return {"name": first.name, "room_id": first.room_id, "process_id": first.process_id,
                "public_address": first.public_address,
                "session_ids": [seat.session_id for seat in reserved]}

    def _serve_reserve_seats(self, room_id: str, seats: list[dict[str, Any]]) -> list[str] | None:
        room = self.rooms.get(room_id)
        reserved = self._reserve_local_many(room, _member_options(seats)) if room is not None else None
        return [seat.session_id for seat in reserved] if reserved is not None else None


def _member_options(seats: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    members = [dict(options or {}) for options in seats]
    if not members:
        raise MatchMakeError("a group needs at least one seat", ErrorCode.MATCHMAKE_INVALID_CRITERIA)
    return members


def _reservations(answer: dict[str, Any]) -> list[SeatReservation]:
    return [SeatReservation(answer["name"], answer["room_id"], answer["process_id"], session_id,
                            answer.get("public_address")) for session_id in answer["session_ids"]]
