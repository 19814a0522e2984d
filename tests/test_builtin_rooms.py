"""LobbyRoom and RelayRoom with the official clients (colyseus.js 0.16, @colyseus/sdk 0.17 and
0.18), against real ``greenroom serve`` processes: two single processes sharing the suite's
Redis, then ``greenroom serve --workers 2`` (README, "LobbyRoom", "RelayRoom"; issue 14).

The clients are driven by tests/js/lobby.mjs and tests/js/relay.mjs, which record what each
client saw; the checks below are the behaviour of Colyseus' LobbyRoom and RelayRoom.
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest
import redis
from cluster_process import Cluster

from greenroom.client import Client

from conftest import JS_DIR
from servers import wait_until

APP = os.path.join("tests", "apps", "builtin_rooms.py") + ":server"
CLIENTS = [("colyseusjs", ""), ("sdk17", ""), ("sdk18", "/v18")]

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def two_processes(serve_process, redis_url):
    redis.Redis.from_url(redis_url).flushall()
    a = serve_process(APP, "--redis-url", redis_url)
    b = serve_process(APP, "--redis-url", redis_url)
    return a[1], b[1]


@pytest.fixture
def cluster():
    started = Cluster(2, "--graceful-timeout", "30", target=APP,
                      env={"GREENROOM_TEST_ROUND_ROBIN": "1"})
    try:
        started.wait_serving(2)
        yield started
    finally:
        started.stop()


# == LobbyRoom ====================================================================================
def states(events, room_id):
    """What a lobby client saw of one room, in order: (clients, locked, mode) for each ``+``
    (consecutive repeats merged: a change may be published more than once), ``-`` for each
    removal."""
    seen = []
    for e in events:
        if e["roomId"] != room_id:
            continue
        step = "-" if e["type"] == "-" else (e["listing"]["clients"], e["listing"]["locked"],
                                             (e["listing"]["metadata"] or {}).get("mode"))
        if not seen or seen[-1] != step:
            seen.append(step)
    return seen


def check_lobby(seen, game_ports, started):
    assert seen["error"] is None, seen
    # createdAt as Colyseus sends it: an ISO 8601 string, which new Date() reads
    for listing in seen["rooms"]["all"]:  # the rooms listed before the lobby's client joined
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", listing["createdAt"])
    for e in seen["events"]["all"]:
        if e["type"] == "+":
            assert started - 1 <= e["createdAtMs"] / 1000 <= time.time() + 1, e
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["listing"]["createdAt"])
    assert [w for w in seen["warnings"]] == []
    before = seen["before"]["roomId"]
    # the first "rooms": every listed room (the one made before, not the lobby itself) ...
    assert [r["roomId"] for r in seen["rooms"]["all"]] == [before]
    assert seen["rooms"]["duel"] == []  # ... and nothing for a filter it does not match
    ids = [g["roomId"] for g in seen["games"]]
    for room_id in ids:
        # created, joined, metadata, locked, private (gone), public (back), metadata, left,
        # disposed (gone: no empty room first)
        assert states(seen["events"]["all"], room_id) == [
            (1, False, None), (2, False, None), (2, False, "duel"), (2, True, "duel"), "-",
            (2, True, "duel"), (2, True, "ffa"), (1, True, "ffa"), "-"]
        # the filtered client: the room appears when it matches, goes when it stops matching,
        # then (its filter changed to ffa) changes and goes when disposed
        assert states(seen["events"]["duel"], room_id) == [
            (2, False, "duel"), (2, True, "duel"), "-", (2, True, "duel"), "-", (1, True, "ffa"),
            "-"]
    assert states(seen["events"]["all"], before) == ["-"]
    lobby_ids = set(seen["lobbyRoomIds"].values())
    assert all(e["roomId"] not in lobby_ids for es in seen["events"].values() for e in es)
    # the filter message: "rooms" again, for the new filter (a filter without name: any name)
    assert [r["roomId"] for r in seen["filtered"]["all"]] == [before, *ids]
    assert [r["roomId"] for r in seen["filtered"]["duel"]] == ids
    created = next(e["listing"] for e in seen["events"]["all"] if e["roomId"] == ids[0])
    assert created["name"] == "game" and created["maxClients"] == 4 and created["private"] is False
    if game_ports:  # separate processes: each its own address (workers share one)
        assert created["publicAddress"].endswith(f":{game_ports[0]}")
    else:
        assert "publicAddress" not in created
    assert {g["processId"] for g in seen["games"]} == {
        e["listing"]["processId"] for e in seen["events"]["all"] if e["type"] == "+"}
    return seen


@pytest.mark.parametrize("client,prefix", CLIENTS)
def test_lobby_sees_rooms_of_both_processes_created_joined_changed_locked_and_disposed(
        two_processes, run_js, client, prefix):
    """The lobby in process A; a room made in B before the lobby joined, then one room in B
    and one in A, each joined, given metadata, locked and disposed."""
    port_a, port_b = two_processes
    a, b = f"ws://127.0.0.1:{port_a}{prefix}", f"ws://127.0.0.1:{port_b}{prefix}"
    started = time.time()
    seen = check_lobby(run_js("lobby.mjs", "--client", client, "--lobby", a, "--before", b,
                              "--games", f"{b},{a}", timeout=60), [port_b, port_a], started)
    processes = [g["processId"] for g in seen["games"]]
    assert len(set(processes)) == 2 and seen["before"]["processId"] == processes[0]


@pytest.mark.parametrize("client,prefix", CLIENTS)
def test_under_two_workers_the_lobby_sees_the_rooms_of_both_workers(cluster, run_js, client,
                                                                    prefix):
    endpoint, started = cluster.endpoint + prefix, time.time()
    seen = check_lobby(run_js("lobby.mjs", "--client", client, "--lobby", endpoint, "--before",
                              endpoint, "--games", f"{endpoint},{endpoint}", timeout=60), None,
                       started)
    workers = {w["processId"] for w in cluster.workers()}
    assert {g["processId"] for g in seen["games"]} == workers and len(workers) == 2


@pytest.fixture(params=[1, 2], ids=["one process", "--workers 2"])
def example(request, serve_process):
    """examples/builtin_rooms.py as it is, served by one process or by ``--workers 2`` (as
    README's command line does)."""
    target = "examples/builtin_rooms.py:server"
    if request.param == 1:
        yield f"ws://127.0.0.1:{serve_process(target)[1]}"
        return
    started = Cluster(2, target=target)
    try:
        started.wait_serving(2)
        yield started.endpoint
    finally:
        started.stop()


def test_the_example_lobby_lists_its_battle_rooms(example, run_js):
    """The example's ``battle`` rooms, seen from its lobby by 0.18 under /v18."""
    endpoint = example + "/v18"
    seen = run_js("lobby.mjs", "--client", "sdk18", "--room", "battle", "--lobby", endpoint,
                  "--before", endpoint, "--games", f"{endpoint},{endpoint}", timeout=60)
    assert seen["error"] is None, seen
    for game in seen["games"]:
        assert states(seen["events"]["all"], game["roomId"])[-1] == "-"
    assert [r["roomId"] for r in seen["filtered"]["all"]] == [
        seen["before"]["roomId"], *(g["roomId"] for g in seen["games"])]


# == RelayRoom ====================================================================================
def messages(seen, label):
    return [(m["type"], m["sender"], "undefined" if m["payloadUndefined"] else m["payload"])
            for m in seen["messages"][label]]


def check_relay(seen, client, hosts=0):
    assert seen["error"] is None, seen
    assert seen["warnings"] == []
    sid = seen["sessionIds"]
    alice, bob, carol = sid["alice"], sid["bob"], sid["carol"]
    # players, as every client's state shows them
    assert seen["players"] == {s: {"connected": True, "name": name, "sessionId": s}
                               for name, s in sid.items()}
    # relayed as [sender, message] to the others, never back to the sender; no payload stays
    # undefined; numeric types too
    assert all(m["isArray"] for ms in seen["messages"].values() for m in ms)
    moves = [("move", alice, {"x": 1, "y": "two"})]
    assert messages(seen, "bob") == [*moves, ("ping", alice, "undefined"), (7, alice, "numeric")]
    assert messages(seen, "carol")[:4] == [*moves, ("ack", bob, "from bob"),
                                           ("ping", alice, "undefined"), (7, alice, "numeric")]
    assert all(m["sender"] != alice for m in seen["messages"]["alice"])
    assert all(m["sender"] != bob for label in ("bob", "bob2") for m in seen["messages"][label])
    # manual reconnection: the seat was held (bob still a player, disconnected), then the same
    # session came back, connected again in everybody's state, and messages flow both ways
    manual = seen["manual"]
    assert manual["leaveCode"] == 1005
    assert manual["whileAway"] == {"connected": False, "name": "bob", "sessionId": bob}
    assert manual["sessionId"] == bob and manual["roomId"] == seen["roomId"] and manual["newToken"]
    assert seen["connected"][f"alice:{bob}"] == [True, False, True]
    assert seen["connected"][f"carol:{bob}"] == [True, False, True]
    assert all(p["connected"] for p in manual["players"].values())
    assert len(manual["players"]) == 3 + hosts
    assert ("after", alice, 1) in messages(seen, "bob2")
    assert ("back", bob, 2) in messages(seen, "alice")
    # automatic reconnection of the 0.17 / 0.18 SDKs after a 1006
    if client == "colyseusjs":
        assert "skipped" in seen["auto"]
    else:
        assert seen["auto"]["drops"] == [1006] and seen["auto"]["sessionId"] == carol
        assert seen["auto"]["players"][carol]["connected"] is True
        assert ("here", carol, 4) in messages(seen, "alice")
        assert ("again", alice, 3) in messages(seen, "carol")
    # Colyseus' camelCase options: maxClients 2 (a third join refused), allowReconnectionTime 1:
    # eve held, disconnected, then removed when the hold ran out, her token refused afterwards
    plain = seen["plain"]
    assert plain["third"]["joined"] is False and plain["third"]["code"] == 522
    assert seen["connected"][f"dora:{plain['eve']}"] == [True, False]
    assert plain["eve"] not in plain["players"] and len(plain["players"]) == 1
    assert plain["reconnect"]["joined"] is False and plain["reconnect"]["code"] == 524
    return seen


@pytest.mark.parametrize("client,prefix", CLIENTS)
def test_relay_room_with_the_official_clients(serve_process, run_js, client, prefix):
    _, port = serve_process(APP)
    check_relay(run_js("relay.mjs", "--client", client, "--endpoint",
                       f"ws://127.0.0.1:{port}{prefix}", timeout=60), client)


def test_the_example_relay_with_colyseus_options_from_the_client(example, run_js):
    """The example's ``relay`` holds seats 20 s, unless the creating client asks otherwise
    (its options win over define's, as in Colyseus)."""
    check_relay(run_js("relay.mjs", "--client", "sdk17", "--endpoint", example, "--plain-room",
                       "relay", timeout=60), "sdk17")


def relay_owned_by_the_oldest_worker(cluster, endpoint):
    """A relay room (with a Python player in it) in the first worker: ``SIGTTOU`` retires that
    one, so every connection after it is accepted by the other worker and handed to the owner."""
    client = Client(endpoint)
    for _ in range(8):  # rooms go to the workers in turn
        room = client.create("relay", {"name": "host"})
        if room.reservation.process_id.endswith("-w1"):
            return room
        room.leave()
    raise AssertionError("no relay room was placed in the first worker")


@pytest.mark.parametrize("client,prefix", CLIENTS)
def test_under_two_workers_relay_reconnections_land_on_the_other_worker(cluster, node_modules,
                                                                       client, prefix):
    """The relay room's worker retires after the players joined (it keeps its rooms, accepts
    nothing): the reconnections reach it only through the other worker's socket hand-off."""
    host = relay_owned_by_the_oldest_worker(cluster, cluster.endpoint)
    owner = host.reservation.process_id
    probe = subprocess.Popen(["node", os.path.join(JS_DIR, "relay.mjs"), "--client", client,
                              "--endpoint", cluster.endpoint + prefix, "--room-id", host.room_id,
                              "--pause"], cwd=JS_DIR, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = probe.stdout.readline()
        assert line.startswith("paused "), line + probe.stdout.read()
        cluster.signal(signal.SIGTTOU)
        wait_until(lambda: any(w["processId"] == owner and w["state"] == "draining"
                               for w in cluster.workers()), 10)
        before = next(w for w in cluster.workers() if w["processId"] == owner)["handoffs"]
        probe.stdin.write("go\n")
        probe.stdin.flush()
        output = probe.communicate(timeout=60)[0]
    finally:
        if probe.poll() is None:
            probe.kill()
    seen = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    seen["players"] = {s: p for s, p in seen["players"].items() if p["name"] != "host"}
    check_relay(seen, client, hosts=1)
    after = next(w for w in cluster.workers() if w["processId"] == owner)["handoffs"]
    # bob's reconnection, and carol's automatic one with the SDKs, were handed to the owner
    expected = 1 if client == "colyseusjs" else 2
    assert after.get("received", 0) >= before.get("received", 0) + expected
    host.leave()
