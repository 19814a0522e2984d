"""The room of benchmarks/migration_pause.py: ``lobby`` rooms of 20 with a Schema state (one entry
per player) that changes only on joins and leaves. A moved client's pause ends with the full
state it gets on its reconnection, so nothing needs to tick, and 2,000 clients stay within what
one Node load generator can read on this machine (bcast's 20 Hz patches to 2,000 clients cannot)."""

from __future__ import annotations

from typing import Any

from greenroom import Room, Server
from greenroom.schema import Schema, field


class Player(Schema):
    seat = field("number", default=0)


class Lobby(Schema):
    players = field({"map": Player})


class LobbyRoom(Room):
    max_clients = 20

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = Lobby()

    def on_join(self, client: Any, options: dict[str, Any], auth: Any) -> None:
        self.state.players[client.session_id] = Player(seat=len(self.state.players))
        client.send("welcome", {})

    def on_leave(self, client: Any, consented: bool) -> None:
        self.state.players.pop(client.session_id, None)


server = Server()
server.define("lobby", LobbyRoom).filter_by("group")
