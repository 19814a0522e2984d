"""Singleton rooms (``server.define(...).singleton()``, ``.singleton(per_filter=True)``): however
many joinOrCreate and create arrive at once, on however many processes, one room of the name (or
of each filter value) exists in the deployment. joinOrCreate joins it; a ``create`` while it
exists, or a joinOrCreate it cannot seat, answers 523 saying which room it is."""

import json
import os
import urllib.request
from collections import Counter

import gevent
import pytest
from cluster_process import Cluster

from greenroom import MatchMakeError, Room, Server
from greenroom.client import Client
from greenroom.client import MatchMakeError as ClientMatchMakeError

from servers import wait_until

APP = os.path.join("tests", "apps", "limits.py") + ":server"
TOKEN = "singleton-test-token"


@pytest.fixture
def cluster():
    cluster = Cluster(2, target=APP, env={"GREENROOM_MONITOR_TOKEN": TOKEN})
    try:
        cluster.wait_serving(2)
        yield cluster
    finally:
        cluster.stop()


def monitor(cluster, path="rooms"):
    request = urllib.request.Request(f"{cluster.http}/monitor/api/{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def live_rooms(cluster):
    """Rooms the workers themselves hold, as their last heartbeats told the registry."""
    return sum(process["rooms"] for process in monitor(cluster)["processes"])


def official(run_js, cluster, method, room, n=100):
    return run_js("concurrent.mjs", "--client", "sdk17", "--endpoint", cluster.endpoint,
                  "--n", n, "--room", room, "--method", method, timeout=120)


def test_100_join_or_create_over_workers_2_open_one_room_and_seat_its_ten(cluster, run_js):
    result = official(run_js, cluster, "joinOrCreate", "solo")
    assert result.get("error") is None, result
    assert result["ok"] == 10 and result["roomCount"] == 1, result
    assert len(result["errors"]) == 90
    assert {e["code"] for e in result["errors"]} == {523}
    assert all("is a singleton and already exists" in e["message"] for e in result["errors"])


def test_100_create_over_workers_2_make_one_room_the_others_get_523(cluster, run_js):
    result = official(run_js, cluster, "create", "solo")
    assert result.get("error") is None, result
    assert result["ok"] == 1 and result["roomCount"] == 1, result
    assert {e["code"] for e in result["errors"]} == {523} and len(result["errors"]) == 99
    assert all("join it (joinOrCreate or joinById)" in e["message"] for e in result["errors"])


def test_one_room_per_filter_value_over_workers_2(cluster):
    """100 joinOrCreate over four modes, then 100 create: four rooms in all, listed and live."""
    client = Client(cluster.endpoint)
    modes = "abcd"

    def attempt(method, mode):
        try:
            return getattr(client, method)("per_mode", {"mode": mode}, 60)
        except ClientMatchMakeError as exc:
            return exc

    jobs = [gevent.spawn(attempt, method, modes[i % 4])
            for method in ("join_or_create", "create") for i in range(100)]
    gevent.joinall(jobs, timeout=120, raise_error=True)
    seated = [job.value for job in jobs if not isinstance(job.value, ClientMatchMakeError)]
    errors = [job.value for job in jobs if isinstance(job.value, ClientMatchMakeError)]
    assert {e.code for e in errors} == {523} and len(errors) == 180
    by_room = Counter(room.room_id for room in seated)
    assert len(by_room) == 4 and set(by_room.values()) == {5}, by_room
    listed = [r for r in monitor(cluster)["rooms"] if r["name"] == "per_mode"]
    assert sorted(r["roomId"] for r in listed) == sorted(by_room)
    wait_until(lambda: live_rooms(cluster) == 4, timeout=10)
    gevent.joinall([gevent.spawn(room.leave) for room in seated], timeout=30)


class Lobby(Room):
    pass


def test_create_of_an_existing_singleton_says_which_room_and_a_disposed_one_can_be_made_again():
    server = Server()
    server.define("lobby", Lobby).singleton()
    matchmaker = server.matchmaker
    first = matchmaker.create("lobby")
    with pytest.raises(MatchMakeError) as refused:
        matchmaker.create("lobby")
    assert refused.value.code == 523 and first.room_id in refused.value.message
    with pytest.raises(MatchMakeError):
        matchmaker.create_room("lobby")
    assert matchmaker.join_or_create("lobby").room_id == first.room_id
    assert [listing.room_id for listing in matchmaker.query("lobby")] == [first.room_id]
    matchmaker.engine(first.room_id).dispose()
    again = matchmaker.create("lobby")
    assert again.room_id != first.room_id
    server.shutdown(timeout=2)
