"""greenroom beside a Flask app in one WSGI process.

    pip install flask
    greenroom serve examples/flask_mount.py:server        # greenroom serves both
    gunicorn -c python:greenroom.gunicorn.conf -w 3 --chdir examples flask_mount:application

Matchmaking (``/matchmake/...``), room sockets and ``/health`` go to greenroom; every other
request goes to Flask.
"""

from flask import Flask

from greenroom import Room, Server

app = Flask(__name__)


@app.route("/")
def index():
    return "the game's web site, served by Flask"


class LobbyRoom(Room):
    def on_join(self, client, options, auth):
        client.send("hello", "from greenroom")


server = Server(dialects={"/v18": "v5"})  # @colyseus/sdk 0.18 on ws://host/v18
server.define("lobby", LobbyRoom)
server.wsgi_app = server.wsgi_middleware(app.wsgi_app)
application = server.wsgi_app
