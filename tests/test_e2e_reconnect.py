"""Manual reconnection served for real: a held seat is one seat, before and after the client's
``POST /matchmake/reconnect`` (reservation) and until its socket arrives or the hold ends."""

import time

import gevent
import pytest
from gevent.queue import Empty, Queue

from greenroom import Room, Server
from greenroom.client import Client, MatchMakeError, SeatReservation
from greenroom.protocol.codes import ErrorCode


class Held(Room):
    """Holds the seat of a dropped client for ``reconnect_window`` seconds; reports every hook."""

    reconnect_window = 20.0
    events: Queue

    def on_create(self, options):
        self.on_message("echo", lambda client, message: client.send("echo", message))

    def on_drop(self, client, code):
        self.allow_reconnection(client, self.reconnect_window)
        type(self).events.put(("drop", client.session_id))

    def on_reconnect(self, client):
        type(self).events.put(("reconnect", client.session_id))

    def on_leave(self, client, consented):
        type(self).events.put(("leave", client.session_id, consented))

    def on_dispose(self):
        type(self).events.put(("dispose",))


@pytest.fixture
def held(serve):
    """held(**class attributes) -> (RunningServer, Client, events) for a fresh "held" room type."""

    def start(**attributes):
        cls = type("HeldRoom", (Held,), {"events": Queue(), **attributes})
        server = Server()
        server.define("held", cls)
        running = serve(server)
        return running, Client(running.endpoint), cls.events

    return start


def seats(running, room_id):
    """(clients, locked) of the room's listing: what matchmaking sees."""
    [listing] = [item for item in running.matchmaker.query("held") if item.room_id == room_id]
    return listing.clients, listing.locked


def wait_until(predicate, timeout=5.0, what="condition"):
    """Poll ``predicate`` (for timers that have no event of their own) until a bounded deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        gevent.sleep(0.01)


def assert_refused_as_full(client, room_id):
    with pytest.raises(MatchMakeError) as err:
        client.join_by_id(room_id)
    assert err.value.code == ErrorCode.MATCHMAKE_INVALID_ROOM_ID


def drop_and_reserve_reconnection(client, room, events):
    """Cut ``room``'s connection (the server holds its seat), then reserve the seat again over
    HTTP the way a manual reconnect starts, without opening the socket yet."""
    room.drop()
    assert events.get(timeout=5) == ("drop", room.session_id)
    token = room.reconnection_token.partition(":")[2]
    reservation = client.matchmake("reconnect", room.room_id, {"reconnectionToken": token})
    assert reservation.session_id == room.session_id
    reservation.reconnection_token = token  # as Client.reconnect: the token goes in the URL
    return reservation


def test_a_reserved_reconnection_takes_no_second_seat(held):
    running, client, events = held(max_clients=3)
    a = client.create("held")
    b = client.join_by_id(a.room_id)
    room_id = a.room_id
    assert seats(running, room_id) == (2, False)

    reservation = drop_and_reserve_reconnection(client, b, events)
    # A and B (held, reconnecting) are two seats of three: the room is neither full nor locked.
    assert seats(running, room_id) == (2, False)
    c = client.join_by_id(room_id)  # the third seat is free
    assert seats(running, room_id) == (3, True)
    assert_refused_as_full(client, room_id)  # but there is no fourth

    again = client.consume_seat_reservation(reservation)  # B's socket arrives
    assert events.get(timeout=5) == ("reconnect", b.session_id)
    assert again.session_id == b.session_id
    assert seats(running, room_id) == (3, True)
    assert_refused_as_full(client, room_id)
    again.send("echo", "back")
    assert again.wait_for_message("echo") == "back"

    for room in (a, again, c):
        assert room.leave() == 4000
    assert [events.get(timeout=5) for _ in range(4)] == [
        ("leave", a.session_id, True), ("leave", b.session_id, True),
        ("leave", c.session_id, True), ("dispose",)]
    assert events.empty()


def test_a_socket_without_the_token_cannot_claim_a_reserved_reconnection(held):
    running, client, events = held(max_clients=2)
    a = client.create("held")
    b = client.join_by_id(a.room_id)
    reservation = drop_and_reserve_reconnection(client, b, events)
    assert seats(running, a.room_id) == (2, True)

    bare = SeatReservation(reservation.name, reservation.room_id, reservation.process_id,
                           reservation.session_id, reservation.public_address)
    with pytest.raises(MatchMakeError) as err:
        client.consume_seat_reservation(bare)  # the session id alone reclaims nothing
    assert err.value.code == ErrorCode.MATCHMAKE_EXPIRED
    assert seats(running, a.room_id) == (2, True)
    assert events.empty()

    again = client.consume_seat_reservation(reservation)  # the reservation is still B's
    assert events.get(timeout=5) == ("reconnect", b.session_id)
    assert seats(running, a.room_id) == (2, True)
    again.send("echo", "back")
    assert again.wait_for_message("echo") == "back"


def test_a_retried_manual_reconnection_is_served(held):
    """The first POST /matchmake/reconnect succeeded but the socket that followed failed: the
    retry must get the held seat again, not 524 (issue 16, defect 3)."""
    running, client, events = held(max_clients=2)
    a = client.create("held")
    b = client.join_by_id(a.room_id)
    first = drop_and_reserve_reconnection(client, b, events)  # its socket never opens
    token = b.reconnection_token.partition(":")[2]
    retry = client.matchmake("reconnect", a.room_id, {"reconnectionToken": token})
    assert retry.session_id == first.session_id == b.session_id
    assert seats(running, a.room_id) == (2, True)  # still one seat for B
    again = client.reconnect(b.reconnection_token)  # a third POST, and this time the socket
    assert events.get(timeout=5) == ("reconnect", b.session_id)
    assert again.session_id == b.session_id
    again.send("echo", "back")
    assert again.wait_for_message("echo") == "back"
    assert seats(running, a.room_id) == (2, True)
    for room in (a, again):
        assert room.leave() == 4000


WINDOW = 4.0  # seconds B's seat is held; the checks made during it take well under that


def held_pair(held):
    """A 2-seat room with a short reservation timeout, and its clients A and B."""
    running, client, events = held(max_clients=2, seat_reservation_timeout=0.2,
                                   reconnect_window=WINDOW)
    a = client.create("held")
    b = client.join_by_id(a.room_id)
    return running, client, events, a, b, running.matchmaker.get_room(a.room_id)


def test_an_unused_reconnection_reservation_keeps_the_seat_held_until_the_hold_ends(held):
    window = WINDOW
    running, client, events, a, b, room = held_pair(held)
    room_id = a.room_id
    assert seats(running, room_id) == (2, True)

    dropped = time.monotonic()
    drop_and_reserve_reconnection(client, b, events)
    assert seats(running, room_id) == (2, True)
    assert_refused_as_full(client, room_id)

    # B's socket never comes: its reservation expires, but the seat stays held for B.
    wait_until(lambda: not room._gr.seats.reserved, what="expiry of the reconnection reservation")
    assert seats(running, room_id) == (2, True)
    assert_refused_as_full(client, room_id)
    assert time.monotonic() - dropped < window, "the checks above ran after the hold ended"
    assert events.empty() and running.matchmaker.get_room(room_id) is room

    # The hold ends: B leaves once, its seat is free once.
    assert events.get(timeout=window + 5) == ("leave", b.session_id, False)
    assert seats(running, room_id) == (1, False)
    c = client.join_by_id(room_id)
    assert seats(running, room_id) == (2, True)
    with pytest.raises(MatchMakeError) as err:
        client.reconnect(b.reconnection_token)
    assert err.value.code == ErrorCode.MATCHMAKE_EXPIRED

    for joined in (a, c):
        assert joined.leave() == 4000
    assert [events.get(timeout=5) for _ in range(3)] == [
        ("leave", a.session_id, True), ("leave", c.session_id, True), ("dispose",)]
    with pytest.raises(Empty):
        events.get(timeout=0.1)


def test_a_room_with_only_a_held_seat_outlives_its_unused_reservation(held):
    window = WINDOW
    running, client, events, a, b, room = held_pair(held)
    room_id = a.room_id
    assert a.leave() == 4000
    assert events.get(timeout=5) == ("leave", a.session_id, True)

    dropped = time.monotonic()
    drop_and_reserve_reconnection(client, b, events)
    assert seats(running, room_id) == (1, False)
    wait_until(lambda: not room._gr.seats.reserved, what="expiry of the reconnection reservation")
    assert seats(running, room_id) == (1, False)
    assert running.matchmaker.get_room(room_id) is room  # not disposed: B's seat is held
    assert time.monotonic() - dropped < window, "the checks above ran after the hold ended"
    assert events.empty()

    assert events.get(timeout=window + 5) == ("leave", b.session_id, False)
    assert events.get(timeout=5) == ("dispose",)
    assert running.matchmaker.get_room(room_id) is None
    with pytest.raises(Empty):
        events.get(timeout=0.1)
