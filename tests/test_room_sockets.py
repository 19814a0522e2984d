"""Room sockets that misbehave: undecodable frames, peers that vanish without closing, peers that
never acknowledge their join (issue 16, defects 1, 4 and 7). Served for real over TCP, with raw
WebSocket clients that do exactly what a broken or half-open client does."""

import logging
import socket
import struct

import pytest
from gevent.queue import Empty, Queue

from greenroom import Room, Server
from greenroom.client import Client, parse_error, parse_join_room
from greenroom.protocol.codes import Code, ErrorCode
from greenroom.wsclient import ConnectionClosed
from greenroom.wsclient import connect as ws_connect

NAN = struct.pack("<d", float("nan"))


class Reporting(Room):
    """Reports every hook on the class's ``events`` queue."""

    events: Queue
    hold_seconds: float | None = None

    def on_create(self, options):
        self.on_message("echo", lambda client, message: client.send("echo", message))

    def on_join(self, client, options, auth):
        self.events.put(("join", client.session_id))

    def on_drop(self, client, code):
        self.events.put(("drop", client.session_id, code))
        if self.hold_seconds:
            self.allow_reconnection(client, self.hold_seconds)

    def on_reconnect(self, client):
        self.events.put(("reconnect", client.session_id))

    def on_leave(self, client, consented):
        self.events.put(("leave", client.session_id, consented))

    def on_dispose(self):
        self.events.put(("dispose",))


@pytest.fixture
def room_type(serve):
    """room_type(**class attributes) -> (RunningServer, Client, events)."""

    def start(base=Reporting, **attributes):
        cls = type("Probe", (base,), {"events": Queue(), **attributes})
        server = Server()
        server.define("probe", cls)
        running = serve(server)
        return running, Client(running.endpoint), cls.events

    return start


def open_seat(client, extra=None):
    """Reserve a seat over HTTP and open its socket by hand: (reservation, ws, JOIN_ROOM)."""
    reservation = client.matchmake("joinOrCreate", "probe", {})
    ws = ws_connect(client.room_url(reservation, extra))
    frame = ws.recv(timeout=5)
    assert frame[0] == Code.JOIN_ROOM, frame
    return reservation, ws, parse_join_room(frame)


def next_event(events, timeout=10):
    return events.get(timeout=timeout)


# -- defect 1: a malformed frame ------------------------------------------------------------
HOSTILE = {
    "NaN message type": bytes([Code.ROOM_DATA, 0xCB]) + NAN,
    "NaN request id": bytes([Code.ROOM_REQUEST, 0xCB]) + NAN + b"\xa1a",
    "list as a map key": bytes([Code.ROOM_DATA]) + b"\xa1a" + b"\x81\x91\x01\x02",
    "bad timestamp in a record": bytes([Code.ROOM_DATA]) + b"\xa1a\xd4\x72\x40\x91\xa1x"
                                 + b"\xd7\xff" + b"\xff" * 8,
    "huge timestamp": bytes([Code.ROOM_DATA]) + b"\xa1a" + b"\xc7\x0c\xff" + b"\x00" * 4
                      + b"\x7f" + b"\xff" * 7,
}


@pytest.mark.parametrize("frame", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_malformed_frame_is_4217_and_the_seat_is_freed(room_type, frame, caplog):
    running, client, events = room_type()
    reservation, ws, _ = open_seat(client)
    assert next_event(events) == ("join", reservation.session_id)
    ws.send(bytes([Code.JOIN_ROOM]))
    with caplog.at_level(logging.WARNING, logger="greenroom.socket"):
        ws.send(frame)
        error = ws.recv(timeout=5)
        assert error[0] == Code.ERROR
        assert parse_error(error)[0] == ErrorCode.INVALID_PAYLOAD
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.code == 4002
        # The room hears of it: the seat is free and the room is disposed.
        assert next_event(events) == ("drop", reservation.session_id, 4002)
        assert next_event(events) == ("leave", reservation.session_id, False)
        assert next_event(events) == ("dispose",)
    assert running.matchmaker.get_room(reservation.room_id) is None
    lines = [r for r in caplog.records if "invalid frame" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None  # one line, no traceback


def test_other_rooms_play_on_after_a_malformed_frame(room_type):
    running, client, events = room_type()
    healthy = client.create("probe")
    assert next_event(events) == ("join", healthy.session_id)
    _, ws, _ = open_seat(client)
    next_event(events)
    ws.send(bytes([Code.JOIN_ROOM]))
    ws.send(HOSTILE["NaN message type"])
    assert next_event(events)[0] == "drop"
    assert next_event(events)[0] == "leave"
    healthy.send("echo", "still here")
    assert healthy.wait_for_message("echo") == "still here"
    healthy.leave()


# -- defect 4: liveness -------------------------------------------------------------------------
def test_a_peer_that_stops_answering_pings_is_dropped_and_its_seat_held(room_type):
    """The peer stays connected (TCP is fine) but reads nothing: a phone out of coverage. The
    room hears a drop (1006), holds the seat, and the client's token brings it back."""
    running, client, events = room_type(ping_interval=0.1, pong_timeout=0.3, hold_seconds=30)
    reservation, ws, join = open_seat(client)
    assert next_event(events) == ("join", reservation.session_id)
    ws.send(bytes([Code.JOIN_ROOM]))
    # From now on nothing reads this socket, so no ping gets its pong.
    assert next_event(events) == ("drop", reservation.session_id, 1006)
    back = ws_connect(client.room_url(reservation, {"reconnectionToken": join.token,
                                                   "skipHandshake": "true"}))
    assert back.recv(timeout=5)[0] == Code.JOIN_ROOM
    assert next_event(events) == ("reconnect", reservation.session_id)
    back.send(bytes([Code.JOIN_ROOM]))
    back.close()
    ws.abort()


def test_a_peer_that_answers_pings_is_kept(room_type):
    running, client, events = room_type(ping_interval=0.05, pong_timeout=0.2)
    room = client.join_or_create("probe")  # its reader answers pings as every client does
    assert next_event(events) == ("join", room.session_id)
    for _ in range(10):  # well past several pong deadlines, measured in round trips
        assert room.ping() >= 0
        room.send("echo", "alive")
        assert room.wait_for_message("echo") == "alive"
    assert events.empty()
    room.leave()


def test_a_reconnection_token_replaces_a_still_open_stale_socket(room_type):
    """Pings off, so nothing notices that the first socket is dead; the SDK comes back with its
    token. The stale socket is closed, counts as a drop, and the new one resumes the seat."""
    running, client, events = room_type(ping_interval=None, hold_seconds=30)
    reservation, stale, join = open_seat(client)
    assert next_event(events) == ("join", reservation.session_id)
    stale.send(bytes([Code.JOIN_ROOM]))
    fresh = ws_connect(client.room_url(reservation, {"reconnectionToken": join.token,
                                                    "skipHandshake": "true"}))
    assert fresh.recv(timeout=5)[0] == Code.JOIN_ROOM
    assert next_event(events) == ("drop", reservation.session_id, 1006)
    assert next_event(events) == ("reconnect", reservation.session_id)
    with pytest.raises(ConnectionClosed):  # the server shut the stale socket
        while True:
            stale.recv(timeout=5)
    fresh.send(bytes([Code.JOIN_ROOM]))
    fresh.send(bytes([Code.ROOM_DATA]) + b"\xa4echo\xa2hi")
    while (frame := fresh.recv(timeout=5))[0] != Code.ROOM_DATA:
        pass
    assert frame == bytes([Code.ROOM_DATA]) + b"\xa4echo\xa2hi"
    [server_room] = running.matchmaker.rooms.values()
    assert len(server_room.clients) == 1
    fresh.close()


def test_room_sockets_have_tcp_keepalive(room_type):
    running, client, events = room_type()
    room = client.join_or_create("probe")
    next_event(events)
    [server_room] = running.matchmaker.rooms.values()
    sock = server_room.clients[0].transport.ws._sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    room.leave()


# -- defect 7: before the join acknowledgement -------------------------------------------------
class Flood(Reporting):
    """Broadcasts 200 KiB as soon as a client has joined."""

    def on_join(self, client, options, auth):
        super().on_join(client, options, auth)
        self.clock.set_timeout(self.flood, 0)

    def flood(self):
        for _ in range(200):
            self.broadcast("news", "x" * 1024)


def test_the_queue_before_the_join_ack_is_bounded(room_type):
    """A socket that never acknowledges JOIN_ROOM while the room broadcasts: past send_backlog
    bytes it is dropped, instead of the room keeping every message for it."""
    running, client, events = room_type(Flood, send_backlog=64 * 1024,
                                        seat_reservation_timeout=60)  # not the ack deadline
    reservation, ws, _ = open_seat(client)
    assert next_event(events) == ("join", reservation.session_id)
    assert next_event(events) == ("leave", reservation.session_id, False)
    assert next_event(events) == ("dispose",)
    ws.abort()


def test_a_client_that_never_acknowledges_its_join_is_closed(room_type):
    running, client, events = room_type(seat_reservation_timeout=0.3)
    reservation, ws, _ = open_seat(client)
    assert next_event(events) == ("join", reservation.session_id)
    assert next_event(events) == ("leave", reservation.session_id, False)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    assert closed.value.code == 4002
    assert next_event(events) == ("dispose",)


def test_an_acknowledged_client_is_not_closed_by_the_ack_deadline(room_type):
    running, client, events = room_type(seat_reservation_timeout=0.3)
    room = client.join_or_create("probe")
    assert next_event(events) == ("join", room.session_id)
    with pytest.raises(Empty):  # three ack deadlines pass: nothing happens to a joined client
        events.get(timeout=1.0)
    room.send("echo", 1)
    assert room.wait_for_message("echo") == 1
    room.leave()
