"""Arena: players run around and tag each other. A complete small game on greenroom.

    greenroom serve examples/arena/arena.py:server
    open http://127.0.0.1:2567/

The page (index.html) uses the official @colyseus/sdk 0.17 browser bundle: served from
``examples/arena/node_modules`` after ``npm install`` in this folder, else loaded from unpkg.
Whoever is "it" tags someone by touching them; the tagged player becomes "it" and the tagger
scores. The server simulates at 20 Hz; clients only send the direction they want to go.
"""

import math
import mimetypes
import os
import random

from greenroom import Room, Server
from greenroom.schema import MapSchema, Schema, field

WIDTH, HEIGHT = 800, 600
SPEED, IT_SPEED = 180.0, 210.0  # px/s: "it" is a little faster, or nobody would ever be caught
RADIUS = 14.0  # as drawn by the page: players stay fully inside the arena
TAG_DISTANCE = 2 * RADIUS
IMMUNITY_MS = 1500  # a tagged player cannot tag back at once
COLORS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"]


class Player(Schema):
    name = field("string", default="")
    color = field("string", default="#ffffff")
    x = field("number", default=0)
    y = field("number", default=0)
    it = field("boolean", default=False)
    score = field("uint16", default=0)


class ArenaState(Schema):
    width = field("uint16", default=WIDTH)
    height = field("uint16", default=HEIGHT)
    players = field({"map": Player})


class ArenaRoom(Room):
    max_clients = 8

    def on_create(self, options):
        self.state = ArenaState(players=MapSchema())
        self.inputs = {}  # session id -> (dx, dy), unit vector or zero
        self.immune_until = {}  # session id -> clock time (ms)
        self.on_message("input", self.on_input)
        self.set_simulation_interval(self.update, 50)

    def on_join(self, client, options, auth):
        name = str(options.get("name") or "player")[:16]
        color = COLORS[len(self.state.players) % len(COLORS)]
        player = Player(name=name, color=color, x=random.uniform(40, WIDTH - 40),
                        y=random.uniform(40, HEIGHT - 40))
        player.it = not any(p.it for p in self.state.players.values())
        self.state.players[client.session_id] = player
        self.inputs[client.session_id] = (0.0, 0.0)

    def on_input(self, client, message):
        try:
            dx, dy = float(message["x"]), float(message["y"])
        except (KeyError, TypeError, ValueError):
            return  # ignore malformed input rather than trusting it
        length = math.hypot(dx, dy)
        self.inputs[client.session_id] = (dx / length, dy / length) if length > 0 else (0.0, 0.0)

    def update(self, delta_ms):
        seconds = delta_ms / 1000.0
        for session_id, player in self.state.players.items():
            dx, dy = self.inputs.get(session_id, (0.0, 0.0))
            if dx or dy:
                speed = IT_SPEED if player.it else SPEED
                player.x = min(max(player.x + dx * speed * seconds, RADIUS), WIDTH - RADIUS)
                player.y = min(max(player.y + dy * speed * seconds, RADIUS), HEIGHT - RADIUS)
        self.check_tags()

    def check_tags(self):
        now = self.clock.elapsed_time
        chasers = [(sid, p) for sid, p in self.state.players.items() if p.it]
        for chaser_id, chaser in chasers:
            if self.immune_until.get(chaser_id, 0) > now:
                continue
            for target_id, target in self.state.players.items():
                if target is chaser or target.it:
                    continue
                if math.hypot(target.x - chaser.x, target.y - chaser.y) <= TAG_DISTANCE:
                    chaser.it, target.it = False, True
                    chaser.score += 1
                    self.immune_until[target_id] = now + IMMUNITY_MS
                    self.broadcast("tagged", {"by": chaser.name, "who": target.name})
                    return

    def on_leave(self, client, consented):
        player = self.state.players.pop(client.session_id, None)
        self.inputs.pop(client.session_id, None)
        if player is not None and player.it and len(self.state.players):
            next(iter(self.state.players.values())).it = True


HERE = os.path.dirname(os.path.abspath(__file__))
SDK_BUNDLE = os.environ.get("ARENA_SDK_BUNDLE") or os.path.join(
    HERE, "node_modules", "@colyseus", "sdk", "dist", "colyseus.js")
STATIC = {"/": os.path.join(HERE, "index.html"), "/sdk/colyseus.js": SDK_BUNDLE}


def static_files(environ, start_response):
    """The page and the SDK bundle; everything else is greenroom's (matchmaking, sockets)."""
    path = STATIC.get(environ.get("PATH_INFO", "/"))
    if path is None or not os.path.isfile(path):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    with open(path, "rb") as f:
        body = f.read()
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                              ("Cache-Control", "no-cache")])
    return [body]


server = Server(dialects={"/v18": "v5"})  # @colyseus/sdk 0.18 on ws://host/v18
server.define("arena", ArenaRoom)
server.wsgi_app = server.wsgi_middleware(static_files)
application = server.wsgi_app
