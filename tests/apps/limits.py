"""The test application of the limits tests (tests/test_limits_*.py, tests/test_singleton.py).

``ticker``: its state changes before every patch (so a patch goes out every ``patch_rate`` ms)
and each ``spam`` message costs the room ~0.3 ms of work, as a handler that validates a move
would: a flood that reached the room would stall its patches. ``capped``: rooms of four.
``/v18`` serves @colyseus/sdk 0.18. ``solo``: one room of ten in the whole deployment; ``per_mode``: one room of five per ``mode``.
"""

import hashlib

from capped_room import Capped

from greenroom import Room, Server
from greenroom.schema import Schema, field


class Ticks(Schema):
    tick = field("uint32", default=0)


class Ticker(Room):
    def on_create(self, options):
        self.max_messages_per_second = 100  # where Colyseus rooms set it
        self.state = Ticks()
        self.on_message("spam", self.spam)
        self.on_message("echo", lambda client, message: client.send("echo", message))

    def on_before_patch(self):
        self.state.tick += 1

    def spam(self, client, message):
        digest = b""
        for _ in range(800):  # ~0.3 ms of CPU
            digest = hashlib.sha256(digest + b"move").digest()


class Solo(Capped):
    max_clients = 10


class PerMode(Capped):
    max_clients = 5


server = Server(dialects={"/v18": "v5"}, heartbeat=0.5, lease=2.0, rpc_timeout=2.0)
server.define("ticker", Ticker)
server.define("capped", Capped)
server.define("solo", Solo).singleton()
server.define("per_mode", PerMode).filter_by("mode").singleton(per_filter=True)
