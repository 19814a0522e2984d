"""The built-in rooms, ready to join: ``greenroom serve examples/builtin_rooms.py:server``.

* ``lobby`` (LobbyRoom): ``rooms``, then ``+`` / ``-`` as ``battle`` rooms come and go.
* ``battle``: rooms of four with realtime listing; a ``meta`` message sets their metadata,
  ``lock`` locks them, ``private`` true / false hides / shows them (the lobby sees each change).
* ``relay`` (RelayRoom): each message relayed to the others as ``[sender, message]``.

@colyseus/sdk 0.18 clients use ``ws://host/v18``.
"""

from greenroom import Room, Server
from greenroom.rooms import LobbyRoom, RelayRoom


class Battle(Room):
    max_clients = 4

    def on_create(self, options):
        self.on_message("meta", lambda client, message: self.set_metadata(message))
        self.on_message("lock", lambda client, message: self.lock())
        self.on_message("private", lambda client, message: self.set_private(message is True))


server = Server(dialects={"/v18": "v5"})
server.define("lobby", LobbyRoom)
server.define("battle", Battle).enable_realtime_listing()
server.define("relay", RelayRoom, allow_reconnection_time=20)
