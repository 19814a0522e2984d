"""RelayRoom: relays every message to the other clients as ``[senderSessionId, message]``,
keeps ``players`` (sessionId, name, connected) in its state and, with
``allow_reconnection_time``, holds a dropped player's seat (the behaviour of Colyseus'
RelayRoom; README, "RelayRoom")."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from ..room import Room
from ..schema import Schema, field
from ..session import Client

__all__ = ["RelayRoom"]

log = logging.getLogger("greenroom.relay")

#: The longest hold a client may ask for, in seconds (Colyseus caps it at 40 too).
MAX_RECONNECTION_TIME = 40.0


class RelayPlayer(Schema):
    connected = field("boolean", default=False)
    name = field("string", default="")
    sessionId = field("string", default="")  # noqa: N815 - the wire name Colyseus uses


class RelayState(Schema):
    players = field({"map": RelayPlayer})


def _option(options: Mapping[str, Any], defined: Mapping[str, Any], snake: str, camel: str) -> Any:
    """A Colyseus front end passes ``maxClients`` / ``allowReconnectionTime`` (its RelayRoom's
    names), Python code the snake_case ones. The creating client's value, in either spelling,
    wins over ``define``'s, as for any option (they are merged under the client's); ``defined``
    tells them apart."""
    names = [name for name in (snake, camel) if name in options]
    mine = [name for name in names if name not in defined or defined[name] != options[name]]
    return options[(mine or names)[0]] if names else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class RelayRoom(Room):
    """Options (from ``define`` or the creator's join; snake_case or Colyseus' camelCase):
    ``max_clients``, ``allow_reconnection_time`` (seconds, at most 40), ``metadata``."""

    allow_reconnection_time: float = 0.0

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = RelayState()
        defined = self._defined_options()
        max_clients = _option(options, defined, "max_clients", "maxClients")
        if _number(max_clients) and max_clients >= 1 and max_clients == int(max_clients):
            self.max_clients = int(max_clients)
        elif max_clients is not None:
            log.info("relay %s: max_clients %.60r is not an integer >= 1; ignored", self.room_id,
                     max_clients)
        seconds = _option(options, defined, "allow_reconnection_time", "allowReconnectionTime")
        if _number(seconds) and seconds >= 0:
            self.allow_reconnection_time = min(float(seconds), MAX_RECONNECTION_TIME)
        elif seconds is not None:
            log.info("relay %s: allow_reconnection_time %.60r is not a number >= 0; ignored",
                     self.room_id, seconds)
        if isinstance(options.get("metadata"), dict):
            self.set_metadata(options["metadata"])
        self.on_message("*", self._relay)

    def _defined_options(self) -> Mapping[str, Any]:
        definitions = getattr(self._gr.host, "definitions", {})
        definition = definitions.get(self.room_name)
        return definition.default_options if definition is not None else {}

    def _relay(self, client: Client, message_type: Any, message: Any) -> None:
        # A message sent without payload stays without one (``UNDEFINED``): the others get
        # ``[sessionId, undefined]``, as from Colyseus, not ``null``.
        self.broadcast(message_type, [client.session_id, message], except_=client)

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
