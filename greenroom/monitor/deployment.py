"""The monitor's view of the whole deployment, from any one process of it.

Listings come from the driver, which every process shares, so the room list covers every
process. A room's details and actions belong to its owner: a room of this process is handled
here, any other goes to its owner over the presence RPC that matchmaking already uses. That
works the same between machines sharing Redis and between the workers of one host.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from ..in_room import RoomUnavailable
from ..presence.rpc import RemoteCallError, RemoteCallFailed
from . import rooms
from .rooms import BadRequest, RoomNotFound

log = logging.getLogger("greenroom.monitor")

# RPC method names, served by every process of a deployment (see register()).
DESCRIBE, DISPOSE, KICK, SEND = "monitor.describe", "monitor.dispose", "monitor.kick", "monitor.send"

# Remote exception types that keep their meaning on this side.
_REMOTE_ERRORS: dict[str, type[Exception]] = {
    "RoomNotFound": RoomNotFound, "BadRequest": BadRequest, "RoomUnavailable": RoomUnavailable}


class OwnerUnreachable(RuntimeError):
    """The room's owner did not answer (dead, stalled, or without the monitor's RPC methods)."""


def register(rpc: Any, matchmaker: Any) -> None:
    """Answer other processes' monitor calls for the rooms of this one."""

    def local(room_id: str) -> Any:
        room = matchmaker.get_room(room_id)
        if room is None:
            raise RoomNotFound(f"room {room_id} is not on process {matchmaker.process_id}")
        return room

    rpc.register(DESCRIBE, lambda room_id: rooms.describe(local(room_id)))
    rpc.register(DISPOSE, lambda room_id: rooms.dispose(local(room_id)))
    rpc.register(KICK, lambda room_id, session_id, code: rooms.kick(local(room_id), session_id, code))
    rpc.register(SEND, lambda room_id, message_type, message, session_id:
                 rooms.send(local(room_id), message_type, message, session_id))


class Deployment:
    """Rooms and processes of the deployment this process belongs to."""

    def __init__(self, matchmaker: Any, registry: Any = None) -> None:
        self.matchmaker = matchmaker
        self.registry = registry

    @property
    def process_id(self) -> str:
        return self.matchmaker.process_id

    # -- reading ---------------------------------------------------------------------------
    def rooms(self, name: str | None = None, limit: int | None = None) -> dict[str, Any]:
        listings = self.matchmaker.driver.query(name, sort=[("created_at", 1)], limit=limit)
        return {
            "processId": self.process_id,
            "time": time.time(),
            "rooms": [listing.to_json() for listing in listings],
            "processes": self.processes(),
        }

    def processes(self) -> list[dict[str, Any]]:
        if self.registry is None:
            return [{"processId": self.process_id, "host": socket.gethostname(), "pid": os.getpid()}]
        return [{"processId": info.process_id, "host": info.host, "pid": info.pid,
                 "publicAddress": info.public_address, "rooms": info.rooms, "clients": info.ccu,
                 "startedAt": info.started_at} for info in self.registry.alive_processes()]

    def room(self, room_id: str) -> dict[str, Any]:
        return self._on_owner(room_id, rooms.describe, DESCRIBE)

    # -- acting ----------------------------------------------------------------------------
    def dispose(self, room_id: str) -> None:
        self._on_owner(room_id, rooms.dispose, DISPOSE, timeout=10.0)  # it waits for the room

    def kick(self, room_id: str, session_id: str, code: int) -> None:
        rooms.check_close_code(code)
        self._on_owner(room_id, rooms.kick, KICK, session_id, code)

    def send(self, room_id: str, message_type: Any, message: Any,
             session_id: str | None = None) -> int:
        return self._on_owner(room_id, rooms.send, SEND, message_type, message, session_id)

    # -- dispatch --------------------------------------------------------------------------
    def _on_owner(self, room_id: str, here: Any, method: str, *args: Any,
                  timeout: float | None = None) -> Any:
        room = self.matchmaker.get_room(room_id)
        if room is not None:
            return here(room, *args)
        rpc = self.matchmaker.rpc
        listing = self.matchmaker.driver.get(room_id) if rpc is not None else None
        if listing is None or listing.process_id == self.process_id:
            raise RoomNotFound(f"room {room_id} not found")
        try:
            return rpc.call(listing.process_id, method, room_id, *args, timeout=timeout)
        except RemoteCallError as exc:
            known = _REMOTE_ERRORS.get(exc.remote_type)
            if known is not None:
                raise known(exc.remote_message) from None
            raise OwnerUnreachable(f"process {listing.process_id} failed {method}: {exc}") from None
        except RemoteCallFailed as exc:
            raise OwnerUnreachable(str(exc)) from None
