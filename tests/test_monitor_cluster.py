"""The monitor and /ready under ``greenroom serve --workers 2``: whichever worker the kernel
gives a request to lists the rooms of both, and a room's details and actions reach its owner
in the sibling worker. Real master, workers and embedded Redis (tests/cluster_process.py)."""

import base64
import json
import urllib.error
import urllib.request

import pytest
from cluster_process import Cluster
from test_cluster import join_many, leave_all, rooms_by_worker

from greenroom.client import Client

pytestmark = pytest.mark.timeout(180)

TOKEN = "a-monitor-token"


@pytest.fixture
def cluster():
    running = Cluster(2, env={"GREENROOM_MONITOR_TOKEN": TOKEN})
    try:
        running.wait_serving(2)
        yield running
    finally:
        running.stop()


def call(cluster, path, body=None, token=TOKEN):
    request = urllib.request.Request(
        f"{cluster.http}/monitor/api/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(f"ops:{token}".encode()).decode(),
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_every_worker_lists_both_and_acts_on_the_siblings_rooms(cluster):
    rooms = join_many(Client(cluster.endpoint), 16)
    by_worker = rooms_by_worker(rooms)
    assert len(by_worker) == 2, "every room landed on one worker"
    room_ids = {room.room_id for room in rooms}
    answered_by = set()
    for _ in range(8):  # several requests: the kernel gives them to either worker
        status, listing = call(cluster, "rooms")
        assert status == 200
        assert {r["roomId"] for r in listing["rooms"]} == room_ids
        assert {r["processId"] for r in listing["rooms"]} == set(by_worker)
        assert {p["processId"] for p in listing["processes"]} == set(by_worker)
        answered_by.add(listing["processId"])
    assert call(cluster, "rooms", token="wrong-token")[0] == 401

    for owner, members in by_worker.items():  # each worker's rooms, asked of any worker
        room = members[0]
        status, details = call(cluster, f"rooms/{room.room_id}")
        assert status == 200 and details["processId"] == owner
        assert room.session_id in {c["sessionId"] for c in details["clients"]}
        status, sent = call(cluster, f"rooms/{room.room_id}/message",
                            {"type": "announce", "message": owner})
        assert status == 200 and room.wait_for_message("announce", timeout=5) == owner

    victims = [r for r in rooms if r.room_id == rooms[0].room_id]
    assert call(cluster, f"rooms/{rooms[0].room_id}/dispose", {}) == (200, {"ok": True})
    assert all(room.wait_closed(10)[0] == 4000 for room in victims)
    assert rooms[0].room_id not in {r["roomId"] for r in call(cluster, "rooms")[1]["rooms"]}
    leave_all([r for r in rooms if r not in victims])


def test_ready_is_200_on_every_worker_with_the_embedded_redis(cluster):
    for _ in range(6):
        with urllib.request.urlopen(cluster.http + "/ready", timeout=5) as response:
            assert response.status == 200
            assert json.load(response)["status"] == "ready"
