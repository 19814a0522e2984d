"""A chat room: the smallest useful greenroom application.

    greenroom serve examples/chat.py:server

Clients join with ``client.joinOrCreate("chat", {name: "ada"})``, send ``room.send("say", "hi")``
and receive "said" messages. Rooms are split by the "channel" option.
"""

from greenroom import Room, Server


class ChatRoom(Room):
    max_clients = 50

    def on_create(self, options):
        self.history = []  # the last messages, for newcomers
        self.on_message("say", self.say)

    def on_auth(self, client, options, request):
        name = str(options.get("name", "")).strip()
        if not name:
            raise ValueError("a name is required")
        return {"name": name[:32]}

    def on_join(self, client, options, auth):
        client.send("history", self.history)
        self.broadcast("joined", auth["name"], except_=client)

    def say(self, client, text):
        line = {"from": client.auth["name"], "text": str(text)[:500]}
        self.history = (self.history + [line])[-20:]
        self.broadcast("said", line)

    def on_leave(self, client, consented):
        self.broadcast("left", client.auth["name"])


server = Server(dialects={"/v18": "v5"})  # @colyseus/sdk 0.18 on ws://host/v18
server.define("chat", ChatRoom).filter_by("channel")
application = server.wsgi_app  # gunicorn -c python:greenroom.gunicorn.conf -w 4 (README, "Under gunicorn")
