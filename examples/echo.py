"""The reference EchoRoom of the Colyseus captures, in greenroom.

    greenroom serve examples/echo.py:server

Any official Colyseus client can then ``joinOrCreate("echo")`` on ws://127.0.0.1:2567.
"""

from greenroom import Room, Server


class EchoRoom(Room):
    max_clients = 4

    def on_create(self, options):
        self.on_message("echo", lambda client, message: client.send("echo", message))
        self.on_message(7, lambda client, message: client.send(7, message))
        self.on_message("bytes", lambda client, message: client.send_bytes("bytes", [1, 2, 3]))
        self.on_message("kick", lambda client, message: client.leave(4123, "kicked by request"))
        self.on_message("drop", lambda client, message: client.terminate())  # a network failure
        self.on_message("add", lambda client, message: message["a"] + message["b"])  # request (sdk 0.18)
        self.on_message("*", self.on_unknown)

    def on_unknown(self, client, message_type, message):
        client.send("unknown", {"type": message_type, "msg": message})

    def on_auth(self, client, options, request):
        if options.get("deny"):
            raise ValueError("denied by onAuth")  # any exception refuses: code 526, as in Colyseus
        return True

    def on_join(self, client, options, auth):
        client.send("welcome", {"sessionId": client.session_id, "n": len(self.clients)})

    def on_drop(self, client, code):
        # Hold the seat of a client that lost its connection; on_leave follows if it doesn't return.
        self.allow_reconnection(client, 20)


server = Server()
server.define("echo", EchoRoom)
application = server.wsgi_app  # for gunicorn: gunicorn -k greenroom.web.gunicorn_worker.GeventWebSocketWorker
