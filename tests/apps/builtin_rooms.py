"""The test application of tests/test_builtin_rooms.py: the built-in rooms (LobbyRoom,
RelayRoom, QueueRoom) and the rooms they list or fill; 0.18 clients use the ``/v18`` prefix.

``game``: realtime-listed rooms of four; a ``meta`` message sets the room's metadata, ``lock``
locks it. Rooms are created by the process that took the request (``HereFirst``), so a test
decides which process holds which room.
"""

import os

from greenroom import Room, Server


class Game(Room):
    max_clients = 4

    def on_create(self, options):
        self.on_message("meta", lambda client, message: self.set_metadata(message))
        self.on_message("lock", lambda client, message: self.lock())

    def on_join(self, client, options, auth):
        client.send("welcome", {"processId": self.process_id, "pid": os.getpid()})


class HereFirst:
    """Placement: new rooms in the process that took the request."""

    def __init__(self):
        self.process_id = None

    def choose(self, name, options):
        return self.process_id


placement = HereFirst()
server = Server(dialects={"/v18": "v5"}, heartbeat=0.5, lease=2.0, rpc_timeout=2.0,
                placement=placement)
placement.process_id = server.process_id
server.define("game", Game).enable_realtime_listing()

from greenroom.rooms import LobbyRoom  # noqa: E402

server.define("lobby", LobbyRoom)

from greenroom.rooms import RelayRoom  # noqa: E402

server.define("relay", RelayRoom, allow_reconnection_time=20)
