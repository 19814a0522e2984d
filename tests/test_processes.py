"""Several greenroom processes sharing Redis (and MongoDB): one deployment (issue 4).

Every server here is a real ``greenroom serve`` process; presence is a real redis-server and
the Mongo listings live in a real MongoDB-protocol server, both started by the fixtures.
"""

import math
import os
import signal
import time

import gevent
import pytest
import redis

from greenroom.client import Client, MatchMakeError
from greenroom.drivers import from_url as driver_from_url

APP = os.path.join("tests", "apps", "capped.py") + ":server"


@pytest.fixture
def clean_backends(redis_url, mongo_uri):
    redis.Redis.from_url(redis_url).flushall()
    import pymongo

    pymongo.MongoClient(mongo_uri).drop_database("greenroom_test")
    return redis_url, mongo_uri + ("" if mongo_uri.rstrip("/").count("/") > 2 else "/greenroom_test")


@pytest.fixture(params=["redis", "mongo"])
def cluster(request, serve_process, clean_backends):
    """Two processes, A and B, sharing presence; listings in Redis or in MongoDB."""
    redis_url, mongo_uri = clean_backends
    args = ["--redis-url", redis_url]
    if request.param == "mongo":
        args += ["--mongo-uri", mongo_uri]
    a = serve_process(APP, *args)
    b = serve_process(APP, *args)
    return request.param, a, b, (mongo_uri if request.param == "mongo" else redis_url)


def welcome_pid(room):
    return room.wait_for_message("welcome")["pid"]


def test_matchmaking_on_a_joins_a_room_owned_by_b(cluster):
    _, (proc_a, port_a), (proc_b, port_b), _ = cluster
    on_a, on_b = Client(f"ws://127.0.0.1:{port_a}"), Client(f"ws://127.0.0.1:{port_b}")
    owner = on_b.create("capped")
    assert welcome_pid(owner) == proc_b.pid
    by_id = on_a.join_by_id(owner.room_id)
    assert by_id.room_id == owner.room_id and welcome_pid(by_id) == proc_b.pid
    assert by_id.reservation.process_id == owner.reservation.process_id
    assert by_id.reservation.public_address == f"127.0.0.1:{port_b}"
    matched = on_a.join_or_create("capped")  # B's room has a free seat: A sends us there
    assert matched.room_id == owner.room_id and welcome_pid(matched) == proc_b.pid
    by_id.send("echo", "across processes")
    assert by_id.wait_for_message("echo") == "across processes"


def test_200_concurrent_joins_over_two_processes_fill_exactly_50_rooms(cluster):
    _, (_, port_a), (_, port_b), _ = cluster
    clients = [Client(f"ws://127.0.0.1:{port_a}"), Client(f"ws://127.0.0.1:{port_b}")]
    jobs = [gevent.spawn(clients[i % 2].join_or_create, "capped", {}, 60) for i in range(200)]
    gevent.joinall(jobs, timeout=120)
    errors = [repr(job.exception) for job in jobs if not job.successful()]
    assert errors == []
    rooms = {}
    for job in jobs:
        rooms.setdefault(job.value.room_id, []).append(job.value)
    assert len(rooms) == math.ceil(200 / 4)
    assert {len(members) for members in rooms.values()} == {4}
    gevent.joinall([gevent.spawn(job.value.leave) for job in jobs], timeout=60)


def test_kill_9_drops_a_process_listings_within_the_lease_and_joins_go_on(cluster):
    kind, (_, port_a), (proc_b, port_b), url = cluster
    on_a, on_b = Client(f"ws://127.0.0.1:{port_a}"), Client(f"ws://127.0.0.1:{port_b}")
    doomed = on_b.create("capped")
    survivor = on_a.create("capped")
    driver = driver_from_url(url)
    assert {item.room_id for item in driver.query("capped")} == {doomed.room_id, survivor.room_id}
    proc_b.send_signal(signal.SIGKILL)
    proc_b.wait(10)
    killed_at = time.monotonic()
    with gevent.Timeout(10, AssertionError("the dead process's listing outlived its lease")):
        while doomed.room_id in {item.room_id for item in driver.query("capped")}:
            gevent.sleep(0.1)
    assert time.monotonic() - killed_at <= 2.0 + 1.0  # the lease (2 s) plus one heartbeat
    joined = on_a.join_or_create("capped")
    assert joined.room_id == survivor.room_id
    with pytest.raises(MatchMakeError) as err:
        on_a.join_by_id(doomed.room_id)
    assert err.value.code == 522
    driver.close()


def test_simultaneous_first_joins_on_both_processes_open_one_room(cluster):
    """4 joins, 2 per process, while on_create takes 0.3 s: one room, not one per process."""
    _, (_, port_a), (_, port_b), _ = cluster
    clients = [Client(f"ws://127.0.0.1:{port_a}"), Client(f"ws://127.0.0.1:{port_b}")]
    jobs = [gevent.spawn(clients[i % 2].join_or_create, "slow", {}, 30) for i in range(4)]
    gevent.joinall(jobs, timeout=60, raise_error=True)
    assert len({job.value.room_id for job in jobs}) == 1


def test_a_new_room_is_created_on_the_least_loaded_process(cluster, redis_url):
    from greenroom.presence import RedisPresence
    from greenroom.registry import ProcessRegistry

    _, (proc_a, port_a), (proc_b, port_b), _ = cluster
    on_a = Client(f"ws://127.0.0.1:{port_a}")
    first = on_a.create("capped")
    assert welcome_pid(first) == proc_a.pid  # equal load: the process asked creates it
    presence = RedisPresence(redis_url)
    observer = ProcessRegistry(presence, "observer")
    try:
        with gevent.Timeout(10, AssertionError("A's heartbeat never reported its client")):
            while not any(info.ccu >= 1 for info in observer.alive_processes()):
                gevent.sleep(0.1)
    finally:
        presence.close()
    second = on_a.create("capped")  # A now carries a client, B none: B creates the room
    assert welcome_pid(second) == proc_b.pid
    assert second.reservation.public_address == f"127.0.0.1:{port_b}"
