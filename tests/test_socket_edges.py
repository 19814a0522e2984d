"""Room sockets, edge cases beside tests/test_room_sockets.py (issue 16, defects 1 and 4): a
manual reconnection over HTTP while the old socket is still open, a token refused when the room
does not hold the seat, and a bug in the read loop that must still free the seat."""

import pytest
from gevent.queue import Queue
from peers import RawPeer, raw_join, resume_url_params

from greenroom import Room, Server
from greenroom.client import Client
from greenroom.web import socket as room_socket


class Watched(Room):
    """Holds a dropped client's seat; reports every hook. No pings: a silent peer stays open."""

    ping_interval = None
    events: Queue

    def on_create(self, options):
        self.on_message("echo", lambda client, message: client.send("echo", message))

    def on_drop(self, client, code):
        self.allow_reconnection(client, 20)
        type(self).events.put(("drop", client.session_id, code))

    def on_reconnect(self, client):
        type(self).events.put(("reconnect", client.session_id))

    def on_leave(self, client, consented):
        type(self).events.put(("leave", client.session_id))

    def on_dispose(self):
        type(self).events.put(("dispose",))


class Strict(Watched):
    """Holds no seat: a drop is a leave."""

    def on_drop(self, client, code):
        type(self).events.put(("drop", client.session_id, code))


@pytest.fixture
def watched(serve):
    """watched(base=Watched) -> (RunningServer, events) for a fresh room type "watched"."""

    def start(base=Watched):
        cls = type("WatchedRoom", (base,), {"events": Queue()})
        server = Server()
        server.define("watched", cls)
        return serve(server), cls.events

    return start


def test_manual_reconnect_over_http_while_the_old_socket_is_still_open(watched):
    running, events = watched()
    stale = raw_join(running.endpoint, "watched")
    client = Client(running.endpoint)
    room = client.reconnect(f"{stale.reservation.room_id}:{stale.join.token}")
    assert room.session_id == stale.session_id
    assert events.get(timeout=5) == ("drop", stale.session_id, 1006)
    assert events.get(timeout=5) == ("reconnect", stale.session_id)
    room.send("echo", "on the new socket")
    assert room.wait_for_message("echo") == "on the new socket"
    room.leave()


def test_a_token_is_refused_if_the_room_does_not_hold_the_seat(watched):
    """Without allow_reconnection, the stale socket's drop is a leave: the token is no longer
    valid, and the new socket is refused as for any expired token (close 4003)."""
    running, events = watched(Strict)
    stale = raw_join(running.endpoint, "watched")
    fresh = RawPeer(running.endpoint, stale.reservation, resume_url_params(stale))
    assert fresh.read_until_closed(timeout=5).code == 4003
    assert events.get(timeout=5) == ("drop", stale.session_id, 1006)
    assert events.get(timeout=5) == ("leave", stale.session_id)


def test_a_failure_inside_the_read_loop_still_frees_the_seat(watched, monkeypatch):
    """Whatever escapes the socket's read loop (here: a bug), the room hears of the close."""
    running, events = watched(Strict)

    def broken(*args):
        raise RuntimeError("a bug in the read loop")

    monkeypatch.setattr(room_socket, "_decode", broken)
    room = Client(running.endpoint).join_or_create("watched")
    room.send("echo", "this frame reaches the broken decoder")
    room.wait_closed(5)
    assert events.get(timeout=5) == ("drop", room.session_id, 1011)
    assert events.get(timeout=5) == ("leave", room.session_id)
    assert events.get(timeout=5) == ("dispose",)
    assert running.matchmaker.rooms == {}
