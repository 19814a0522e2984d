"""The reference EchoRoom of the Colyseus captures, in greenroom, state included.

    greenroom serve examples/echo.py:server

Any official Colyseus client can then ``joinOrCreate("echo")``: colyseus.js 0.16 and
@colyseus/sdk 0.17 on ws://127.0.0.1:2567, @colyseus/sdk 0.18 (the newer wire dialect, v5) on
ws://127.0.0.1:2567/v18. ``greenroom serve ... --dialect-path /v18=v5`` does the same for any
application without a code change.
"""

from greenroom import Room, Server
from greenroom.schema import Schema, field


class Player(Schema):
    name = field("string", default="")
    x = field("number", default=0)
    y = field("number", default=0)


class State(Schema):
    tick = field("uint16", default=0)
    title = field("string", default="lobby")
    players = field({"map": Player})
    log = field(["string"])


class EchoRoom(Room):
    max_clients = 4

    def on_create(self, options):
        self.state = State()
        self.on_message("move", self.move)
        self.on_message("log", lambda client, message: self.state.log.append(str(message)))
        self.on_message("echo", lambda client, message: client.send("echo", message))
        self.on_message(7, lambda client, message: client.send(7, message))
        self.on_message("bytes", lambda client, message: client.send_bytes("bytes", [1, 2, 3]))
        self.on_message("kick", lambda client, message: client.leave(4123, "kicked by request"))
        self.on_message("drop", lambda client, message: client.terminate())  # a network failure
        self.on_message("add", lambda client, message: message["a"] + message["b"])  # request (sdk 0.18)
        self.on_message("*", self.on_unknown)

    def move(self, client, message):
        player = self.state.players.get(client.session_id)
        if player is not None:
            player.x, player.y = message["x"], message["y"]

    def on_unknown(self, client, message_type, message):
        client.send("unknown", {"type": message_type, "msg": message})

    def on_auth(self, client, options, request):
        if options.get("deny"):
            raise ValueError("denied by onAuth")  # any exception refuses: code 526, as in Colyseus
        return True

    def on_join(self, client, options, auth):
        self.state.players[client.session_id] = Player(name=options.get("name") or "anon")
        self.state.tick += 1
        client.send("welcome", {"sessionId": client.session_id, "n": len(self.clients)})

    def on_drop(self, client, code):
        # Hold the seat of a client that lost its connection; on_leave follows if it doesn't return.
        self.allow_reconnection(client, 20)

    def on_leave(self, client, consented):
        self.state.players.pop(client.session_id, None)


server = Server(dialects={"/v18": "v5"})  # ws://host -> v3, ws://host/v18 -> v5 (sdk 0.18)
server.define("echo", EchoRoom)
application = server.wsgi_app  # gunicorn -c python:greenroom.gunicorn.conf -w 4 (README, "Under gunicorn")
