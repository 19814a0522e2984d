"""LobbyRoom's own rules (greenroom/rooms/lobby.py, greenroom/lobby_channel.py): a client's bad
filter, events that arrive late or are not events, and 100 clients creating, filling and
leaving rooms at once, in one process and under ``greenroom serve --workers 2``, while a lobby
client follows: what it ends up seeing is what the driver lists, and a disposed room never
comes back. (The official clients: tests/test_builtin_rooms.py.)"""

import logging
import os
import time

import gevent
import gevent.event
import pytest
from cluster_process import Cluster

from greenroom import Room, Server
from greenroom.client import Client
from greenroom.lobby_channel import LOBBY_CHANNEL
from greenroom.protocol.codes import ErrorCode
from greenroom.rooms import LobbyRoom
from greenroom.rooms.lobby import listing_matches

APP = os.path.join("tests", "apps", "builtin_rooms.py") + ":server"
PLAYERS = 100

pytestmark = pytest.mark.timeout(240)


class Game(Room):
    max_clients = 4


def lobby_server():
    server = Server()
    server.define("lobby", LobbyRoom)
    server.define("game", Game).enable_realtime_listing()
    return server


def test_a_filter_matches_by_name_and_metadata_and_without_name_any_name():
    listing = {"name": "game", "metadata": {"mode": "duel", "map": "x"}}
    assert listing_matches(listing, None) and listing_matches(listing, {})
    assert listing_matches(listing, {"name": "game", "metadata": {"mode": "duel"}})
    assert listing_matches(listing, {"metadata": {"mode": "duel"}})
    assert not listing_matches(listing, {"name": "other"})
    assert not listing_matches(listing, {"metadata": {"mode": "ffa"}})
    assert not listing_matches({"name": "game", "metadata": None}, {"metadata": {"mode": "duel"}})


def test_a_bad_filter_message_is_an_error_to_that_client_and_one_log_line(greenroom_boot, caplog):
    caplog.set_level(logging.INFO)
    test = greenroom_boot(lobby_server())
    client = Client(test.endpoint)
    game = client.create("game")
    lobby = client.join_or_create("lobby")
    other = client.join_or_create("lobby")
    assert [r["roomId"] for r in lobby.wait_for_message("rooms")] == [game.room_id]
    errors = gevent.event.AsyncResult()
    lobby.on_error(lambda code, message: errors.set((code, message)))
    lobby.send("filter", ["not", "an", "object"])
    assert errors.get(timeout=5) == (ErrorCode.INVALID_PAYLOAD,
                                     "filter must be an object: {name, metadata}")
    lines = [r for r in caplog.records if r.name == "greenroom.lobby"]
    assert len(lines) == 1 and "not an object" in lines[0].getMessage() and not lines[0].exc_info
    # the lobby goes on, for this client (its filter unchanged, a good one then works) and others
    lobby.send("filter", {"name": "nothing"})
    assert lobby.wait_for_message("rooms") == []
    second = client.create("game")
    assert other.wait_for_message("+")[0] == second.room_id


def test_late_events_and_foreign_messages_on_the_channel_change_nothing(greenroom_boot):
    """An event older than the last one applied for its room (a listing write that finished
    after the disposal) does not bring the room back; what is not an event is ignored."""
    test = greenroom_boot(lobby_server())
    client = Client(test.endpoint)
    lobby = client.join_or_create("lobby")
    assert lobby.wait_for_message("rooms") == []
    game = client.create("game")
    room_id, listing = lobby.wait_for_message("+")
    game.leave()
    while lobby.wait_for_message("*") != ("-", room_id):  # its "+"s, then its "-"
        pass
    presence = test.server.presence
    stale = time.time_ns() - 10**9  # before the removal's sequence number
    presence.publish(LOBBY_CHANNEL, {"roomId": room_id, "seq": stale, "listing": listing})
    for foreign in ("r1,0", {"roomId": 7, "seq": 1}, {"roomId": "x", "seq": "1"},
                    {"roomId": "x", "seq": time.time_ns(), "listing": [1]}):
        presence.publish(LOBBY_CHANNEL, foreign)
    marker = {**listing, "roomId": "marker"}
    presence.publish(LOBBY_CHANNEL, {"roomId": "marker", "seq": time.time_ns(), "listing": marker})
    # events reach the lobby in publication order: the marker comes after all of the above
    assert lobby.wait_for_message("*") == ("+", ["marker", marker])


# == 100 players at once ==========================================================================
def follow(lobby, view, history, until, timeout=60):
    """Apply the lobby's messages to ``view`` (its rooms by id) until ``until(view)``, and
    append to ``history`` what it saw of each room, in order."""
    deadline = time.monotonic() + timeout
    while not until(view):
        kind, data = lobby.wait_for_message("*", timeout=max(0.1, deadline - time.monotonic()))
        if kind == "rooms":
            view.clear()
            view.update({listing["roomId"]: listing for listing in data})
        elif kind == "+":
            view[data[0]] = data[1]
            history.setdefault(data[0], []).append(("+", data[1]["clients"]))
        elif kind == "-":
            view.pop(data, None)
            history.setdefault(data, []).append(("-", None))


def play_at_once(endpoint, count):
    client = Client(endpoint)
    jobs = [gevent.spawn(client.join_or_create, "game", {}, 60) for _ in range(count)]
    gevent.joinall(jobs, timeout=90)
    assert [repr(j.exception) for j in jobs if not j.successful()] == []
    return [j.value for j in jobs]


def check_rush(endpoint, listed):
    lobby = Client(endpoint).join_or_create("lobby")
    players = play_at_once(endpoint, PLAYERS)
    rooms = {p.room_id for p in players}
    assert len(rooms) == PLAYERS // 4
    view, history = {}, {}
    follow(lobby, view, history, lambda v: len(v) == len(rooms) and all(
        r["clients"] == 4 for r in v.values()))
    assert set(view) == rooms == {listing.room_id for listing in listed()}
    full = dict(view)
    gevent.joinall([gevent.spawn(p.leave) for p in players], timeout=30)
    follow(lobby, view, history, lambda v: v == {})
    for room_id in rooms:
        seen = history[room_id]
        assert seen[-1] == ("-", None) and seen.count(("-", None)) == 1, seen  # never back
        assert ("+", 0) not in seen, seen  # straight from its last player to "-"
        print(seen)
    assert listed() == []
    lobby.leave()
    return full


def test_100_players_at_once_the_lobby_sees_every_room_filled_then_gone(greenroom_boot):
    test = greenroom_boot(lobby_server())
    check_rush(test.endpoint, lambda: test.matchmaker.query("game"))


def test_under_two_workers_100_players_at_once_in_rooms_of_both_workers():
    import redis

    from greenroom.drivers.redis import RedisDriver

    cluster = Cluster(2, target=APP, env={"GREENROOM_TEST_ROUND_ROBIN": "1"})
    try:
        cluster.wait_serving(2)
        path = cluster.wait_for_log(r"listening on unix:(\S+redis\.sock)")[0].group(1)
        driver = RedisDriver(redis.Redis(unix_socket_path=path))
        view = check_rush(cluster.endpoint, lambda: driver.query("game"))
        workers = {w["processId"] for w in cluster.workers()}
        assert {r["processId"] for r in view.values()} == workers and len(workers) == 2
    finally:
        cluster.stop()


def test_a_reload_moves_the_lobby_with_its_clients_filters(greenroom_boot):
    """What ``--migrate`` does to a lobby, step by step in this process: snapshot in the old
    server, restore in another; its client, back through its token, gets ``rooms`` afresh,
    then the events its filter lets through."""
    from greenroom.migration import restore, snapshot
    from greenroom.protocol.codes import CloseCode

    old, new = greenroom_boot(lobby_server()), greenroom_boot(lobby_server())
    new.server.define("other", Game).enable_realtime_listing()
    watcher = Client(old.endpoint).join_or_create("lobby", {"filter": {"name": "game"}})
    assert watcher.wait_for_message("rooms") == []
    lobby = old.room_of(watcher)
    data = old.in_room(lobby, snapshot, lobby)
    old.in_room(lobby, lobby.disconnect, CloseCode.MAY_TRY_RECONNECT)
    assert restore(new.matchmaker, data) == {"processId": new.matchmaker.process_id}
    client = Client(new.endpoint)
    before = client.create("game")  # made while the lobby moved: no event told the client
    moved = Client(new.endpoint).reconnect(watcher.reconnection_token)
    assert moved.session_id == watcher.session_id
    assert [r["roomId"] for r in moved.wait_for_message("*")[1]] == [before.room_id]  # "rooms"
    client.create("other")  # not for this filter
    game = client.create("game")
    kind, data = moved.wait_for_message("*")  # "other" came first, but is filtered out
    assert kind == "+" and data[0] == game.room_id and data[1]["name"] == "game"
