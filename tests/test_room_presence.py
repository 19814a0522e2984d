"""What rooms do with presence, on every backend: subscriptions run in the room's line of
execution and end with the room."""

import logging

import gevent
import pytest
from gevent.event import Event
from gevent.queue import Queue

from greenroom import Room, Server
from greenroom.client import Client
from greenroom.schema import Schema, StateDecoder, field


def test_room_subscription_is_delivered_in_the_room_and_dropped_on_dispose(presence, serve):
    received = Queue()
    disposed = Event()

    class Listener(Room):
        def on_create(self, options):
            self.subscribe("greenroom:test:news", self.on_news)

        def on_news(self, message):
            received.put((message, self._gr.in_room))

        def on_dispose(self):
            disposed.set()

    server = Server(presence=presence)  # a Redis presence brings the Redis driver
    server.define("listener", Listener)
    running = serve(server)
    room = Client(running.endpoint).join_or_create("listener")
    assert "greenroom:test:news" in presence.channels()
    presence.publish("greenroom:test:news", {"headline": "hello"})
    assert received.get(timeout=5) == ({"headline": "hello"}, True)
    room.leave()
    assert disposed.wait(5)
    with gevent.Timeout(5, AssertionError("the room's subscription outlived it")):
        while "greenroom:test:news" in presence.channels():
            gevent.sleep(0.05)


class Score(Schema):
    points = field("int32", default=0)


class Scoring(Room):
    patch_rate = 20

    def on_create(self, options):
        self.state = Score()
        self.on_message("score", self.score)
        self.on_message("echo", lambda client, message: client.send("echo", message))

    def score(self, client, message):
        self.state.points += 1


@pytest.fixture
def scoring(serve):
    server = Server()
    server.define("scoring", Scoring)
    return serve(server)


def test_a_state_that_cannot_be_encoded_is_logged_with_the_room_id(scoring, caplog, monkeypatch):
    client = Client(scoring.endpoint, state_decoder=StateDecoder)
    room = client.join_or_create("scoring")
    server_room = scoring.matchmaker.get_room(room.room_id)

    def broken(clients):
        raise RuntimeError("cannot encode this")

    with caplog.at_level(logging.ERROR, logger="greenroom.room"):
        monkeypatch.setattr(server_room._gr.serializer, "encode_patches", broken)
        room.send("score")
        room.send("echo", "room still alive")
        assert room.wait_for_message("echo") == "room still alive"
        with gevent.Timeout(5, AssertionError("the encoding failure was not logged")):
            while not any("cannot encode the state patch" in r.getMessage() for r in caplog.records):
                gevent.sleep(0.02)
    line = next(r for r in caplog.records if "cannot encode the state patch" in r.getMessage())
    assert room.room_id in line.getMessage()
    monkeypatch.undo()  # the encoder works again: the pending change reaches the client
    assert room.wait_for_state(lambda s: s["points"] == 1)["points"] == 1
