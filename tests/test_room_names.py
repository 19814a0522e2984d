"""A game's Room subclass may use any attribute or method name of its own (issue 16, "Internal
names a game can break"): greenroom keeps its machinery in ``room._gr`` only."""

import pytest
from gevent.queue import Queue

from greenroom import Room, Server
from greenroom.client import Client
from greenroom.schema import Schema, StateDecoder, field

# Names the room machinery used to keep on the Room itself.
ATTRIBUTES = ("_state", "_clients", "_handlers", "_byte_handlers", "_clock", "_serializer",
              "_inbox", "_reserved", "_reconnections", "_host", "_closing", "_disposing",
              "_locked_manually", "_locked_full", "_private", "_subscriptions", "_patch_timer",
              "_simulation", "_after_patch", "_seats", "_engine", "_listing")
METHODS = ("_attach", "_join", "_ack", "_message", "_request", "_closed", "_resume",
           "_reserve_seat", "_reserve_reconnection", "_expire_seat", "_release_reservation",
           "_seats_changed", "_sync_listing", "_patch_tick", "_broadcast_patch",
           "_broadcast_frame", "_maybe_dispose", "_dispose_now", "_run_handler", "_report",
           "_authenticate", "_call_hook", "_send_join_room", "_fail_reconnection",
           "_handler_failed", "_has_free_seat", "_reset_patch_timer")


class Score(Schema):
    points = field("number", default=0)


def _game_method(self, *args, **kwargs):
    type(self).events.put(("game method called by greenroom", args))


class Game(Room):
    """Uses the obvious names for its own things, as a game developer would."""

    events: Queue

    def on_create(self, options):
        self.state = Score()
        self.on_message("score", self.score)
        self.on_message("echo", lambda client, message: client.send("echo", message))
        for name in ATTRIBUTES:
            setattr(self, name, f"the game's own {name}")
        self._clients = {}  # e.g. the game's player registry, by session id

    def on_join(self, client, options, auth):
        self._clients[client.session_id] = client

    def score(self, client, points):
        self.state.points += points

    def on_leave(self, client, consented):
        self._clients.pop(client.session_id, None)
        type(self).events.put(("leave", client.session_id))

    def on_dispose(self):
        type(self).events.put(("dispose",))


for _name in METHODS:
    setattr(Game, _name, _game_method)


def test_a_room_using_greenroom_internal_names_still_works(serve):
    cls = type("GameRoom", (Game,), {"events": Queue()})
    server = Server()
    server.define("game", cls)
    running = serve(server)
    client = Client(running.endpoint, state_decoder=StateDecoder)
    room = client.join_or_create("game")
    other = client.join_by_id(room.room_id)
    server_room = running.matchmaker.get_room(room.room_id)
    assert set(server_room._clients) == {room.session_id, other.session_id}

    room.send("echo", "routed")
    assert room.wait_for_message("echo") == "routed"
    room.send("score", 5)
    state = other.wait_for_state(lambda s: s is not None and s.get("points") == 5)
    assert state == {"points": 5}

    room.leave()
    assert cls.events.get(timeout=5) == ("leave", room.session_id)
    other.leave()
    assert cls.events.get(timeout=5) == ("leave", other.session_id)
    assert cls.events.get(timeout=5) == ("dispose",)
    assert cls.events.empty(), "greenroom called one of the game's own methods"
    for name in ATTRIBUTES:
        if name != "_clients":
            assert getattr(server_room, name) == f"the game's own {name}"
    assert running.matchmaker.rooms == {}


def test_greenroom_s_one_attribute_cannot_be_overwritten_by_mistake():
    class Careless(Room):
        def on_create(self, options):
            self._gr = "mine"

    server = Server()
    server.define("careless", Careless)
    with pytest.raises(Exception, match="_gr"):
        server.matchmaker.create("careless", {})
