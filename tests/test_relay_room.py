"""RelayRoom's own rules (greenroom/rooms/relay.py) in one process, with greenroom's Python
client: its options in either spelling, a client's bad option, a ``--migrate`` reload. (The
official clients, one process and ``--workers 2``: tests/test_builtin_rooms.py.)"""

import logging

import msgpack
import pytest

from greenroom import Server
from greenroom.client import Client
from greenroom.rooms import RelayRoom

from servers import wait_until


def relay_server(**defined):
    server = Server()
    server.define("relay", RelayRoom, **defined)
    return server


@pytest.mark.parametrize("defined, asked, seats, hold", [
    ({}, {"maxClients": 3, "allowReconnectionTime": 5}, 3, 5.0),
    ({}, {"max_clients": 3, "allow_reconnection_time": 99}, 3, 40.0),  # capped at 40, as Colyseus
    ({"allow_reconnection_time": 20}, {"allowReconnectionTime": 2}, None, 2.0),  # the client's
    ({"allow_reconnection_time": 20, "max_clients": 2}, {}, 2, 20.0),
])
def test_relay_options_in_either_spelling_the_creators_winning(greenroom_boot, defined, asked,
                                                                seats, hold):
    test = greenroom_boot(relay_server(**defined))
    room = test.room_of(Client(test.endpoint).create("relay", asked))
    assert (room.max_clients, room.allow_reconnection_time) == (seats, hold)


def test_a_relay_clients_bad_option_is_ignored_with_one_log_line(greenroom_boot, caplog):
    caplog.set_level(logging.INFO)
    test = greenroom_boot(relay_server())
    client = Client(test.endpoint)
    alice = client.create("relay", {"maxClients": "many", "allowReconnectionTime": -1})
    room = test.room_of(alice)
    assert (room.max_clients, room.allow_reconnection_time) == (None, 0.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "greenroom.relay"]
    assert len(lines) == 2 and all("ignored" in line for line in lines), lines
    assert not any(r.exc_info for r in caplog.records)
    bob = client.join_by_id(alice.room_id, {"name": "bob"})
    alice.send("hi")
    # msgpackr's undefined, which greenroom's Python client leaves as the extension it is
    assert bob.wait_for_message("hi") == [alice.session_id, msgpack.ExtType(0, b"\x00")]
    bob.drop()  # no hold without allow_reconnection_time: the player goes at once
    wait_until(lambda: test.in_room(room, lambda: bob.session_id not in room.state.players), 5)


def test_a_reload_moves_the_relay_with_its_players_and_a_held_seat(greenroom_boot):
    """``--migrate``, step by step in this process: the players' state and a dropped player's
    held seat move to the new server; the dropped player comes back there, connected again."""
    from greenroom.migration import restore, snapshot
    from greenroom.protocol.codes import CloseCode

    old, new = greenroom_boot(relay_server()), greenroom_boot(relay_server())
    client = Client(old.endpoint)
    alice = client.create("relay", {"name": "alice", "allowReconnectionTime": 30})
    bob = client.join_by_id(alice.room_id, {"name": "bob"})
    relay = old.room_of(alice)
    bob.drop()
    wait_until(lambda: old.in_room(relay, lambda: not relay.state.players[bob.session_id].connected), 5)
    data = old.in_room(relay, snapshot, relay)
    old.in_room(relay, relay.disconnect, CloseCode.MAY_TRY_RECONNECT)
    restore(new.matchmaker, data)
    there = Client(new.endpoint)
    alice_there = there.reconnect(alice.reconnection_token)
    bob_there = there.reconnect(bob.reconnection_token)  # his held seat came along
    moved = new.room_of(alice_there)
    assert moved.allow_reconnection_time == 30.0  # on_create ran again with the same options
    players = new.in_room(moved, lambda: {s: (p.name, p.connected) for s, p in moved.state.players.items()})
    assert players == {alice.session_id: ("alice", True), bob.session_id: ("bob", True)}
    bob_there.send("hi", 1)
    assert alice_there.wait_for_message("hi") == [bob.session_id, 1]
