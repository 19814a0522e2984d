"""The test application of tests/test_builtin_rooms.py: the built-in rooms (LobbyRoom,
RelayRoom) and the rooms they list; 0.18 clients use the ``/v18`` prefix.

``game``: realtime-listed rooms of four; a ``meta`` message sets the room's metadata, ``lock``
locks it, ``private`` true / false makes it private / public. Rooms are created by the process that took the request (``HereFirst``), so a test
decides which process holds which room; with GREENROOM_TEST_ROUND_ROBIN=1 (``--workers 2``)
they go to the serving processes in turn instead, so that both workers hold rooms whatever
worker took the request. ``relay`` holds a dropped player's seat 20 s; ``relay_plain`` takes
its options from the creating client (Colyseus' ``maxClients`` / ``allowReconnectionTime``).
"""

import os

from placements import HereFirst, RoundRobin

from greenroom import Room, Server
from greenroom.rooms import LobbyRoom, RelayRoom


class Game(Room):
    max_clients = 4

    def on_create(self, options):
        self.on_message("meta", lambda client, message: self.set_metadata(message))
        self.on_message("lock", lambda client, message: self.lock())
        self.on_message("private", lambda client, message: self.set_private(message is True))

    def on_join(self, client, options, auth):
        client.send("welcome", {"processId": self.process_id, "pid": os.getpid()})


server = Server(dialects={"/v18": "v5"}, heartbeat=0.5, lease=2.0, rpc_timeout=2.0)
if os.environ.get("GREENROOM_TEST_ROUND_ROBIN") == "1" and server.registry is not None:
    server.matchmaker.placement = RoundRobin(server)
else:
    server.matchmaker.placement = HereFirst(server)
server.define("game", Game).enable_realtime_listing()
server.define("lobby", LobbyRoom)
server.define("relay", RelayRoom, allow_reconnection_time=20)
server.define("relay_plain", RelayRoom)
