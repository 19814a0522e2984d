"""The built-in rooms with the official clients, against real ``greenroom serve`` processes
sharing the suite's Redis (README, "Built-in rooms")."""

import os

import pytest
import redis

APP = os.path.join("tests", "apps", "builtin_rooms.py") + ":server"


@pytest.fixture
def two_processes(serve_process, redis_url):
    redis.Redis.from_url(redis_url).flushall()
    a = serve_process(APP, "--redis-url", redis_url)
    b = serve_process(APP, "--redis-url", redis_url)
    return a[1], b[1]


@pytest.mark.parametrize("client,prefix", [("colyseusjs", ""), ("sdk17", ""), ("sdk18", "/v18")])
def test_lobby_sees_a_room_of_another_process_created_changed_and_disposed(two_processes, run_js,
                                                                            client, prefix):
    port_a, port_b = two_processes
    seen = run_js("lobby.mjs", "--client", client, "--lobby", f"ws://127.0.0.1:{port_a}{prefix}",
                  "--game", f"ws://127.0.0.1:{port_b}{prefix}", timeout=40)
    assert seen["error"] is None, seen
    assert seen["rooms"] == []  # the lobby does not list itself
    game = seen["game"]["roomId"]
    kinds = [(e["type"], e["data"] if e["type"] == "-" else e["data"][0]) for e in seen["events"]]
    assert kinds[0] == ("+", game) and kinds[-1] == ("-", game)
    created = seen["events"][0]["data"][1]
    assert created["name"] == "game" and created["roomId"] == game and created["maxClients"] == 4
    assert created["processId"] != "" and created["publicAddress"].endswith(f":{port_b}")
    assert any(e["type"] == "+" and e["data"][1]["metadata"] == {"mode": "duel"}
               for e in seen["events"])


def test_relay_room_relays_with_the_sender_and_holds_a_dropped_players_seat(two_processes):
    from greenroom.client import Client

    port_a, _ = two_processes
    client = Client(f"ws://127.0.0.1:{port_a}")
    alice = client.join_or_create("relay", {"name": "alice"})
    bob = client.join_or_create("relay", {"name": "bob"})
    assert bob.room_id == alice.room_id
    alice.send("move", {"x": 1})
    assert bob.wait_for_message("move") == [alice.session_id, {"x": 1}]
    bob.drop()
    back = client.reconnect(bob.reconnection_token)
    assert back.session_id == bob.session_id
    alice.send("hi", "again")
    assert back.wait_for_message("hi") == [alice.session_id, "again"]
    back.send("yo", 2)
    assert alice.wait_for_message("yo") == [bob.session_id, 2]
