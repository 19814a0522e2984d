"""The matchmaker in one process, without the wire: seat arithmetic and its concurrency."""

import gevent
import pytest
from gevent.event import Event

from greenroom import MatchMakeError, Room, Server
from greenroom.protocol.codes import ErrorCode


class Capped(Room):
    max_clients = 4


def make_server(**rooms):
    server = Server()
    for name, cls in rooms.items():
        server.define(name, cls)
    return server


def test_100_concurrent_join_or_create_fill_25_rooms_of_4():
    mm = make_server(echo=Capped).matchmaker
    seats = [gevent.spawn(mm.join_or_create, "echo", {}) for _ in range(100)]
    gevent.joinall(seats, raise_error=True)
    per_room = {}
    for g in seats:
        per_room[g.value.room_id] = per_room.get(g.value.room_id, 0) + 1
    assert len(per_room) == 25
    assert set(per_room.values()) == {4}
    assert len({g.value.session_id for g in seats}) == 100
    assert all(listing.clients == 4 and listing.locked for listing in mm.query("echo"))


def test_concurrent_creation_blocks_only_in_a_slow_on_create():
    """While one greenlet runs a blocking on_create, the others wait for that room, not make more."""
    release = Event()

    class Slow(Capped):
        def on_create(self, options):
            release.wait()

    mm = make_server(slow=Slow).matchmaker
    seats = [gevent.spawn(mm.join_or_create, "slow", {}) for _ in range(8)]
    release.set()
    gevent.joinall(seats, raise_error=True)
    assert len({g.value.room_id for g in seats}) == 2


def test_filter_by_separates_rooms_and_sort_by_prefers_fullest():
    server = Server()
    server.define("game", Capped).filter_by("mode").sort_by(clients=-1)
    mm = server.matchmaker
    a1 = mm.create("game", {"mode": "a"})
    a2 = mm.create("game", {"mode": "a"})
    mm.join_by_id(a2.room_id, {"mode": "a"})  # a2 now has 2 seats, a1 has 1
    b = mm.join_or_create("game", {"mode": "b"})
    assert b.room_id not in (a1.room_id, a2.room_id)
    assert mm.join_or_create("game", {"mode": "a"}).room_id == a2.room_id


def test_join_needs_an_existing_room():
    mm = make_server(echo=Capped).matchmaker
    with pytest.raises(MatchMakeError) as err:
        mm.join("echo", {})
    assert err.value.code == ErrorCode.MATCHMAKE_INVALID_CRITERIA


def test_unknown_room_name_is_520():
    mm = make_server(echo=Capped).matchmaker
    with pytest.raises(MatchMakeError) as err:
        mm.join_or_create("nosuchroom", {})
    assert err.value.code == 520
    assert "nosuchroom" in err.value.message


def test_join_by_id_refuses_missing_full_and_locked_rooms_with_522():
    mm = make_server(echo=Capped).matchmaker
    with pytest.raises(MatchMakeError) as err:
        mm.join_by_id("nosuchid", {})
    assert err.value.code == 522
    full = mm.create("echo", {})
    for _ in range(3):
        mm.join_by_id(full.room_id, {})
    with pytest.raises(MatchMakeError) as err:
        mm.join_by_id(full.room_id, {})
    assert err.value.code == 522
    locked = mm.create("echo", {})
    mm.get_room(locked.room_id).lock()
    with pytest.raises(MatchMakeError) as err:
        mm.join_by_id(locked.room_id, {})
    assert err.value.code == 522
    assert mm.join_or_create("echo", {}).room_id not in (full.room_id, locked.room_id)


def test_private_rooms_are_skipped_by_join_or_create_but_joinable_by_id():
    class Private(Capped):
        def on_create(self, options):
            self.set_private()

    mm = make_server(p=Private).matchmaker
    first = mm.create("p", {})
    assert mm.join_or_create("p", {}).room_id != first.room_id
    assert mm.join_by_id(first.room_id, {}).room_id == first.room_id


def test_expired_seat_frees_the_room_and_disposes_it():
    disposed = Event()

    class Quick(Capped):
        seat_reservation_timeout = 0.05

        def on_dispose(self):
            disposed.set()

    mm = make_server(q=Quick).matchmaker
    seat = mm.join_or_create("q", {})
    assert mm.driver.get(seat.room_id).clients == 1
    assert disposed.wait(5), "room was not disposed after its only seat expired"
    assert mm.get_room(seat.room_id) is None
    assert mm.driver.get(seat.room_id) is None


def test_on_create_failure_is_526_and_leaves_no_listing():
    class Broken(Room):
        def on_create(self, options):
            raise RuntimeError("no map named " + options["map"])

    mm = make_server(broken=Broken).matchmaker
    with pytest.raises(MatchMakeError) as err:
        mm.join_or_create("broken", {"map": "atlantis"})
    assert err.value.code == 526
    assert "atlantis" in err.value.message
    assert mm.query("broken") == [] and mm.rooms == {}


def test_options_must_be_an_object():
    mm = make_server(echo=Capped).matchmaker
    with pytest.raises(MatchMakeError) as err:
        mm.join_or_create("echo", ["not", "an", "object"])
    assert err.value.code == 400


def test_default_options_are_merged_under_client_options():
    seen = []

    class Opts(Room):
        def on_create(self, options):
            seen.append(options)

    server = Server()
    server.define("o", Opts, map="forest", size=2)
    server.matchmaker.create("o", {"size": 3})
    assert seen == [{"map": "forest", "size": 3}]


def test_server_side_api_create_query_reserve():
    mm = make_server(echo=Capped).matchmaker
    listing = mm.create_room("echo", {})
    assert listing.clients == 0
    assert [item.room_id for item in mm.query("echo", available=True)] == [listing.room_id]
    seat = mm.reserve_seat(listing.room_id, {})
    assert seat.room_id == listing.room_id and mm.driver.get(listing.room_id).clients == 1


def test_seat_reservation_json_carries_both_shapes():
    mm = make_server(echo=Capped).matchmaker
    body = mm.join_or_create("echo", {}).to_json()
    assert body["room"]["roomId"] == body["roomId"] and body["room"]["processId"] == body["processId"]
    assert body["name"] == body["room"]["name"] == "echo"
    assert len(body["sessionId"]) == 9
