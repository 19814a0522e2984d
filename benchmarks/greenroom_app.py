"""The benchmark's rooms, greenroom side: ``greenroom serve benchmarks/greenroom_app.py:server``.

``colyseus_server.mjs`` holds the same two rooms for Colyseus, line for line: a comparison is
only fair when both servers run the same room logic, so change one, change the other.

- ``echo`` (50 seats): answers each ``echo`` message with the same payload. The joins, echo and
  idle scenarios use it.
- ``quiet`` (4 seats, only the ``welcome``): the quiet scenario fills 500 of them and sends nothing.
- ``bcast`` (20 seats, filtered by ``group``): a schema state of players; before every patch
  (20 Hz) each player moves, so every patch carries 2 fields per player. Should
  ``greenroom.schema`` be missing, the room broadcasts the positions as a message at the same
  rate instead, and says so in its ``welcome`` (the report marks the result "no schema yet").

Both rooms send ``welcome`` from ``on_join``. The server queues it until the client's JOIN_ROOM
ack has been processed, so the load generator takes its arrival as "join complete".
"""

from __future__ import annotations

from typing import Any

from greenroom import Room, Server

try:
    from greenroom.schema import Schema, field
except ImportError:  # state sync not there yet: broadcast an equivalent message instead
    Schema = None  # type: ignore[assignment,misc]

BROADCAST_MODE = "schema" if Schema is not None else "message"

if Schema is not None:

    class Player(Schema):
        x = field("number", default=0)
        y = field("number", default=0)

    class BroadcastState(Schema):
        players = field({"map": Player})


class EchoRoom(Room):
    max_clients = 50

    def on_create(self, options: dict[str, Any]) -> None:
        self.on_message("echo", self.echo)

    def echo(self, client: Any, message: Any) -> None:
        client.send("echo", message)

    def on_join(self, client: Any, options: dict[str, Any], auth: Any) -> None:
        client.send("welcome", {"mode": "echo"})


class BroadcastRoom(Room):
    max_clients = 20
    patch_rate = 50

    def on_create(self, options: dict[str, Any]) -> None:
        self.ticks = 0
        self.positions: dict[str, list[float]] = {}  # only without schema
        if Schema is not None:
            self.state = BroadcastState()

    def on_join(self, client: Any, options: dict[str, Any], auth: Any) -> None:
        if Schema is not None:
            self.state.players[client.session_id] = Player(x=0, y=0)
        else:
            self.positions[client.session_id] = [0, 0]
        client.send("welcome", {"mode": BROADCAST_MODE})

    def on_leave(self, client: Any, consented: bool) -> None:
        if Schema is not None:
            del self.state.players[client.session_id]
        else:
            self.positions.pop(client.session_id, None)

    def on_before_patch(self) -> None:
        # Same arithmetic as colyseus_server.mjs. x always takes the float32 path on the wire
        # and y always a one-byte integer, so that every patch has the same size whatever the
        # tick count: the bytes/frame column then compares encoders, not room ages.
        self.ticks += 1
        t = self.ticks
        if Schema is not None:
            for i, player in enumerate(self.state.players.values()):
                player.x = (t + i) % 500 + 0.5
                player.y = (t + 2 * i) % 100
        else:
            for i, position in enumerate(self.positions.values()):
                position[0] = (t + i) % 500 + 0.5
                position[1] = (t + 2 * i) % 100
            if self.positions:
                self.broadcast("state", self.positions)


class QuietRoom(Room):
    """4 seats, no state, no handler: the quiet scenario's 500 rooms, which should cost nothing."""

    max_clients = 4

    def on_join(self, client: Any, options: dict[str, Any], auth: Any) -> None:
        client.send("welcome", {"mode": "quiet"})


server = Server()
server.define("echo", EchoRoom)
server.define("quiet", QuietRoom)
server.define("bcast", BroadcastRoom).filter_by("group")
