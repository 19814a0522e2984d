"""What rooms do with presence, on every backend: subscriptions run in the room's line of
execution and end with the room."""

import logging

import pytest
from gevent.queue import Queue

from greenroom import Room, Server
from greenroom.schema import Schema, field

from servers import wait_until


def test_room_subscription_is_delivered_in_the_room_and_dropped_on_dispose(presence, greenroom_boot):
    received = Queue()

    class Listener(Room):
        def on_create(self, options):
            self.subscribe("greenroom:test:news", self.on_news)

        def on_news(self, message):
            received.put((message, self._gr.in_room))

    server = Server(presence=presence)  # a Redis presence brings the Redis driver
    server.define("listener", Listener)
    test = greenroom_boot(server)
    client = test.connect("listener")
    room = test.room_of(client)
    assert "greenroom:test:news" in presence.channels()
    presence.publish("greenroom:test:news", {"headline": "hello"})
    assert received.get(timeout=5) == ({"headline": "hello"}, True)
    client.leave()
    test.wait_for_dispose(room)
    # Unsubscribing follows on_dispose; no event says it is done.
    wait_until(lambda: "greenroom:test:news" not in presence.channels())


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
def scoring(greenroom_boot):
    server = Server()
    server.define("scoring", Scoring)
    return greenroom_boot(server)


def test_a_state_that_cannot_be_encoded_is_logged_with_the_room_id(scoring, caplog, monkeypatch):
    room = scoring.connect("scoring")
    server_room = scoring.room_of(room)

    def broken(clients):
        raise RuntimeError("cannot encode this")

    def encoding_failure():
        return next((r for r in caplog.records if "cannot encode the state patch" in r.getMessage()), None)

    with caplog.at_level(logging.ERROR, logger="greenroom.room"):
        monkeypatch.setattr(server_room._gr.serializer, "encode_patches", broken)
        room.send("score")
        room.send("echo", "room still alive")
        assert room.wait_for_message("echo") == "room still alive"
        assert scoring.sync(room).state.points == 1
        line = wait_until(encoding_failure)  # at the room's next patch tick, which nothing signals
    assert room.room_id in line.getMessage()
    monkeypatch.undo()  # the encoder works again: the pending change reaches the client
    assert room.wait_for_state(lambda s: s["points"] == 1)["points"] == 1
