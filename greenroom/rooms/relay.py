"""RelayRoom: relays every message to the other clients as ``[senderSessionId, message]``,
keeps ``players`` (sessionId, name, connected) in its state and, with
``allow_reconnection_time``, holds a dropped player's seat (the behaviour of Colyseus'
RelayRoom; README, "RelayRoom")."""

from __future__ import annotations

from typing import Any

from ..protocol import frames
from ..room import Room
from ..schema import Schema, field
from ..session import Client

__all__ = ["RelayRoom"]

#: The longest hold a client may ask for, in seconds (Colyseus caps it at 40 too).
MAX_RECONNECTION_TIME = 40.0


class RelayPlayer(Schema):
    connected = field("boolean", default=False)
    name = field("string", default="")
    sessionId = field("string", default="")  # noqa: N815 - the wire name Colyseus uses


class RelayState(Schema):
    players = field({"map": RelayPlayer})


class RelayRoom(Room):
    """Options (from ``define`` or the creator's join): ``max_clients``,
    ``allow_reconnection_time`` (seconds, at most 40), ``metadata``."""

    allow_reconnection_time: float = 0.0

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = RelayState()
        if isinstance(options.get("max_clients"), int):
            self.max_clients = options["max_clients"]
        seconds = options.get("allow_reconnection_time")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            self.allow_reconnection_time = max(0.0, min(float(seconds), MAX_RECONNECTION_TIME))
        if isinstance(options.get("metadata"), dict):
            self.set_metadata(options["metadata"])
        self.on_message("*", self._relay)

    def _relay(self, client: Client, message_type: Any, message: Any) -> None:
        payload = None if message is frames.UNDEFINED else message
        self.broadcast(message_type, [client.session_id, payload], except_=client)

    def on_join(self, client: Client, options: dict[str, Any], auth: Any) -> None:
        name = options.get("name") if isinstance(options, dict) else None
        self.state.players[client.session_id] = RelayPlayer(
            connected=True, sessionId=client.session_id, name=name if isinstance(name, str) else "")

    def on_drop(self, client: Client, code: int) -> None:
        if self.allow_reconnection_time <= 0:
            return
        player = self.state.players.get(client.session_id)
        if player is not None:
            player.connected = False
        self.allow_reconnection(client, self.allow_reconnection_time)

    def on_reconnect(self, client: Client) -> None:
        player = self.state.players.get(client.session_id)
        if player is not None:
            player.connected = True

    def on_leave(self, client: Client, consented: bool) -> None:
        self.state.players.pop(client.session_id, None)
