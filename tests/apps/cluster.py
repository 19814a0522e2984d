"""The test application of the cluster tests (tests/test_cluster*.py).

``table``: rooms of four that say which worker holds them, echo to the sender, broadcast to the
room, hold a dropped client's seat, and record each ``on_dispose`` in the file named by
GREENROOM_TEST_DISPOSE_LOG. ``echo``: the reference EchoRoom (examples/echo.py) that the official
clients' scenarios expect; 0.18 clients use the ``/v18`` prefix.
"""

import os
import sys

from greenroom import Room, Server

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))
from echo import EchoRoom  # noqa: E402


class Table(Room):
    max_clients = 4

    def on_create(self, options):
        self.on_message("echo", lambda client, message: client.send("echo", message))
        self.on_message("shout", lambda client, message: self.broadcast("shout", message))
        self.on_message("drop", lambda client, message: client.terminate())

    def on_join(self, client, options, auth):
        client.send("welcome", {"processId": self.process_id, "pid": os.getpid()})

    def on_drop(self, client, code):
        self.allow_reconnection(client, 20)

    def on_dispose(self):
        path = os.environ.get("GREENROOM_TEST_DISPOSE_LOG")
        if path:
            with open(path, "a") as f:
                f.write(f"{self.room_id}\n")


server = Server(dialects={"/v18": "v5"}, heartbeat=0.5, lease=2.0, rpc_timeout=2.0)
server.define("table", Table)
server.define("echo", EchoRoom)
application = server.wsgi_app  # gunicorn: tests/apps/cluster.py exposes both
