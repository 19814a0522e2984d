"""The application of tests/test_migration.py, copied to a temporary file that the test edits
between generations (VERSION "v1" -> "v2") before sending SIGHUP.

``board``: rooms of four with a Schema state (players' positions, a log) that say which code
answers ("version") and record every on_join, on_leave and on_restore in GREENROOM_TEST_EVENTS.
``stubborn``: the same, but its on_snapshot raises: it must stay on the old code.
"""

import os

from greenroom import Room, Server
from greenroom.schema import Schema, field

VERSION = "v1"


class Player(Schema):
    name = field("string")
    x = field("number", default=0)


class Board(Schema):
    players = field({"map": Player})
    log = field(["string"])


def record(*words):
    path = os.environ.get("GREENROOM_TEST_EVENTS")
    if path:
        with open(path, "a") as f:
            f.write(" ".join(map(str, words)) + "\n")


class BoardRoom(Room):
    max_clients = 4

    def on_create(self, options):
        self.state = Board()
        self.moves = 0
        self.on_message("move", self.move)
        self.on_message("log", lambda client, text: self.state.log.append(str(text)))
        self.on_message("version", lambda client, _: client.send("version", [VERSION, os.getpid()]))

    def on_join(self, client, options, auth):
        self.state.players[client.session_id] = Player(name=str(options.get("name", "")))
        record("join", self.room_id, client.session_id, VERSION)

    def on_leave(self, client, consented):
        self.state.players.pop(client.session_id, None)
        record("leave", self.room_id, client.session_id, VERSION)

    def move(self, client, _):
        self.state.players[client.session_id].x += 1
        self.moves += 1

    def on_snapshot(self):
        return {"moves": self.moves}

    def on_restore(self, data):
        self.moves = data["moves"]
        record("restore", self.room_id, self.moves, VERSION)


class StubbornRoom(BoardRoom):
    def on_snapshot(self):
        raise RuntimeError("this room keeps its timers to itself")


server = Server(dialects={"/v18": "v5"}, heartbeat=0.5, lease=2.0, rpc_timeout=2.0)
server.define("board", BoardRoom)
server.define("stubborn", StubbornRoom)
application = server.wsgi_app  # under gunicorn (tests/test_gunicorn.py)
