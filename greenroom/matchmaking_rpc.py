"""The matchmaker's calls between processes: asking the owner of a room for a seat or a
reconnection, asking another process to create a room, and answering those calls of others
(docs/architecture.md, "Calls to other processes").

A room's seats are decided by the process that holds it, so a request that reaches another
process is forwarded to the owner. What makes those calls safe is kept here, in one place: an
id per request (a call delivered twice reserves one seat and creates one room), a create that
went unanswered answered with 503 rather than a second room, and calls a worker of an older
generation (during a reload) still understands.

A mixin of MatchMaker; attributes it uses (set by MatchMaker): ``rpc``, ``rpc_timeout``,
``process_id``, ``rooms``, and the methods named in the ``TYPE_CHECKING`` block.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .capacity import ProcessFull
from .definitions import RoomDefinition, SeatReservation
from .errors import MatchMakeError, ServiceUnavailable
from .presence.rpc import RemoteCallFailed, RemoteCallTimeout, RemoteProcessGone

if TYPE_CHECKING:
    from .drivers.listing import RoomListing
    from .engine import RoomEngine
    from .room import Room

__all__ = ["MatchmakingRPC"]

log = logging.getLogger("greenroom.matchmaker")


class MatchmakingRPC:
    rpc: Any
    rpc_timeout: float
    process_id: str
    rooms: dict[str, Room]

    if TYPE_CHECKING:
        def definition(self, name: str) -> RoomDefinition: ...
        def engine(self, room_id: str) -> RoomEngine | None: ...
        def _options(self, definition: RoomDefinition | None,
                     options: Mapping[str, Any] | None) -> dict[str, Any]: ...
        def _create_room(self, definition: RoomDefinition, options: dict[str, Any], *,
                         seats: list[dict[str, Any]] | None = None, room_id: str | None = None,
                         restore: Any = None, auth: Any = None) -> tuple[Room, list[SeatReservation]]: ...
        def _reserve_local(self, room: Room, options: dict[str, Any], auth: Any = None,
                           admitted: bool = False) -> SeatReservation | None: ...

    def _register_matchmaking_rpc(self) -> None:
        self.rpc.register("reserve_seat", self._serve_reserve_seat)
        self.rpc.register("reserve_reconnection", self._serve_reserve_reconnection)
        self.rpc.register("create_and_reserve", self._serve_create_and_reserve)

    # -- asked of other processes -------------------------------------------------------------------

    def _remote(self, listing: RoomListing, method: str, *args: Any) -> Any:
        """Ask the owner of ``listing``; None when it cannot answer (it may be dead: its lease
        will take it out of the listings)."""
        if self.rpc is None or listing.process_id == self.process_id:
            return None
        try:
            # with an id, a request delivered twice (redis-py sends a PUBLISH again when the
            # connection drops before its reply) reserves one seat, not two
            return self.rpc.call(listing.process_id, method, *args, timeout=self.rpc_timeout,
                                 request_id=uuid.uuid4().hex)
        except RemoteProcessGone as exc:
            log.info("room %s: %s", listing.room_id, exc)
            return None
        except RemoteCallFailed as exc:
            log.warning("room %s: owner %s did not answer %s: %s", listing.room_id,
                        listing.process_id, method, exc)
            return None

    def _create_remotely(self, target: str, definition: RoomDefinition,
                         options: dict[str, Any], auth: Any = None) -> SeatReservation | None:
        """A seat in a room ``target`` creates; None when ``target`` certainly made none."""
        answer = self._ask_creator(target, "create_and_reserve", definition, options, *_given(auth))
        return SeatReservation(**answer) if answer is not None else None

    def _ask_creator(self, target: str, method: str, definition: RoomDefinition, *args: Any) -> Any:
        """Have ``target`` create a room (``method(name, *args)``); its answer, or None when
        ``target`` certainly made none (it is gone, or it failed), so this process may create it
        instead. When ``target`` does not answer, it may have made the room: creating another
        would make two, so the request answers 503 (its retry finds the room, if it was made)."""
        request_id = uuid.uuid4().hex  # a retry with the same id never makes a second room
        for attempt in (1, 2):
            try:
                answer = self.rpc.call(target, method, definition.name, *args,
                                       timeout=self.rpc_timeout, request_id=request_id)
            except RemoteCallTimeout:
                log.warning("matchmaker: process %s did not answer create (attempt %d)", target, attempt)
                continue
            except RemoteCallFailed as exc:
                log.warning("matchmaker: process %s failed to create a %s room: %s; creating it "
                            "here", target, definition.name, exc)
                return None
            if answer.get("full"):
                log.debug("matchmaker: process %s is at its limit: %s", target, answer["error"])
                return None
            if "error" in answer:
                raise MatchMakeError(answer["error"], answer["code"])
            return answer
        raise ServiceUnavailable(
            f'process {target} did not answer a request to create a "{definition.name}" room '
            f"within {2 * self.rpc_timeout:g} s; it may have created it: try again")

    # -- served to other processes ------------------------------------------------------------------
    def _serve_reserve_seat(self, room_id: str, options: dict[str, Any],
                            auth: Any = None) -> str | None:
        room = self.rooms.get(room_id)
        seat = self._reserve_local(room, dict(options or {}), auth) if room is not None else None
        return seat.session_id if seat is not None else None

    def _serve_reserve_reconnection(self, room_id: str, token: str) -> str | None:
        engine = self.engine(room_id)
        return engine.reserve_reconnection(token) if engine is not None else None

    def _serve_create_and_reserve(self, name: str, options: dict[str, Any],
                                  auth: Any = None) -> dict[str, Any]:
        try:
            definition = self.definition(name)
            options = self._options(definition, options)
            seat = self._create_room(definition, options, seats=[options], auth=auth)[1][0]
        except ProcessFull as exc:
            return {"error": exc.message, "code": exc.code, "full": True}
        except MatchMakeError as exc:
            return {"error": exc.message, "code": exc.code}
        return {"name": seat.name, "room_id": seat.room_id, "process_id": seat.process_id,
                "session_id": seat.session_id, "public_address": seat.public_address}


def _given(auth: Any) -> tuple[Any, ...]:
    """The auth argument of a call to another process, left out when there is none: a worker of
    an older generation (during a reload) takes the call as it knows it."""
    return () if auth is None else (auth,)
