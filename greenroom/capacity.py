"""How many rooms and clients one process takes: ``Server(max_rooms=, max_clients=)``, or
``GREENROOM_MAX_ROOMS`` / ``GREENROOM_MAX_CLIENTS`` (README, "Limits").

A process at its limit is not an error for the player: the matchmaker creates the room in
another process of the deployment, and only when none can take it does the request get 523.
The owner of a room is the one that decides, without yielding between the check and the seat
or room it admits, so concurrent requests never take a process past its limit; what the
registry says about other processes' load only steers the first choice.

"Clients" are seats: joined clients, reservations waiting for their socket and seats held for
a reconnection, as ``Room.max_clients`` counts them. Rooms moving in during a reload
(greenroom.migration) are never refused: they were admitted once, by the worker they leave.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .errors import MatchMakeError
from .protocol.codes import ErrorCode
from .settings import ConfigurationError, env_limit

__all__ = ["ProcessCapacity", "ProcessFull"]

log = logging.getLogger("greenroom.matchmaker")


def _chosen(name: str, argument: int | None, variable: str) -> int | None:
    setting = env_limit(variable)
    if argument is None:
        return setting
    if setting is not None and setting != argument:
        log.warning("Server(%s=%r) overrides %s=%d (--%s)", name, argument, variable, setting,
                    name.replace("_", "-"))
    return argument


class ProcessFull(MatchMakeError):
    """This process (or every process) is at its room or client limit: 523 when nowhere else
    can take the room."""

    code = ErrorCode.MATCHMAKE_UNHANDLED


class ProcessCapacity:
    """The limits of one process and the rooms and seats being admitted right now."""

    def __init__(self, max_rooms: int | None = None, max_clients: int | None = None) -> None:
        for name, value in (("max_rooms", max_rooms), ("max_clients", max_clients)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"Server({name}={value!r}): expected a positive whole "
                                         "number, or None for no limit")
        self.max_rooms = max_rooms
        self.max_clients = max_clients
        self._rooms_pending = 0  # rooms being created (on_create may block), not yet in `rooms`
        self._seats_pending = 0  # their creators' seats
        self._refusing = False

    @classmethod
    def from_environment(cls, max_rooms: int | None = None,
                         max_clients: int | None = None) -> ProcessCapacity:
        """The arguments, else GREENROOM_MAX_ROOMS / GREENROOM_MAX_CLIENTS (``--max-rooms``,
        ``--max-clients``), else no limit. An argument that overrides a different setting says
        so in one line: the operator who passed the flag would otherwise not know why it did
        nothing."""
        return cls(_chosen("max_rooms", max_rooms, "GREENROOM_MAX_ROOMS"),
                   _chosen("max_clients", max_clients, "GREENROOM_MAX_CLIENTS"))

    @property
    def limited(self) -> bool:
        return self.max_rooms is not None or self.max_clients is not None

    def seats(self, rooms: Mapping[str, Any]) -> int:
        """Seats taken in this process's rooms, and the creators' seats of rooms being made."""
        return sum(room._gr.seats_taken for room in rooms.values()) + self._seats_pending

    def describe(self, rooms: Mapping[str, Any]) -> dict[str, Any]:
        """What /health shows: the limits (None: none) and the seats they count."""
        return {"maxRooms": self.max_rooms, "maxClients": self.max_clients,
                "seats": self.seats(rooms)}

    def seat_refusal(self, rooms: Mapping[str, Any], wanted: int = 1) -> str | None:
        """Why ``wanted`` seats (a QueueRoom's group: all or none) may not be reserved here now
        (None: they may)."""
        if self.max_clients is None:
            return None
        seats = self.seats(rooms)
        full = seats + wanted > self.max_clients
        return self._verdict(f"{seats} of {self.max_clients} clients" if full else None)

    def room_refusal(self, rooms: Mapping[str, Any], seats: int) -> str | None:
        """Why no room (with ``seats`` seats for its creator) may be created here now."""
        if self.max_rooms is not None:
            count = len(rooms) + self._rooms_pending
            if count >= self.max_rooms:
                return self._verdict(f"{count} of {self.max_rooms} rooms")
        if self.max_clients is not None:
            # A room without a seat for its creator (create_room) is not refused for clients,
            # nor does it say that the process is under its client limit.
            return self.seat_refusal(rooms) if seats else None
        return self._verdict(None)

    @contextmanager
    def admit_room(self, rooms: Mapping[str, Any], process_id: str, seats: int) -> Iterator[None]:
        """Count a room (and its creator's seat) as taken while it is being created; raises
        ProcessFull at the limit. The caller puts the room in ``rooms`` before leaving."""
        why = self.room_refusal(rooms, seats)
        if why is not None:
            raise ProcessFull(f"process {process_id} is at its limit ({why})")
        self._rooms_pending += 1
        self._seats_pending += seats
        try:
            yield
        finally:
            self._rooms_pending -= 1
            self._seats_pending -= seats

    def _verdict(self, why: str | None) -> str | None:
        """One log line when the process reaches a limit (and one when it is under it again)."""
        if why is not None and not self._refusing:
            log.warning("this process reached its limit (%s): new rooms and seats go to other "
                        "processes of the deployment, or get 523 where there are none", why)
        elif why is None and self._refusing:
            log.info("this process is under its room and client limits again")
        self._refusing = why is not None
        return why
