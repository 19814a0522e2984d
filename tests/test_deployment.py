"""Two Servers of one deployment, in this process, sharing a real Redis: room creation stays
serialised across them even when it is slow or an owner does not answer, a dead owner is counted
at once, and a shared presence brings a shared catalogue (issue 16, defects 9 and 10)."""

import gevent
import pytest
import redis
from gevent.event import Event

from greenroom import MatchMakeError, Room, Server, ServiceUnavailable
from greenroom.drivers import LocalDriver, RedisDriver
from greenroom.presence import RedisPresence


class Capped(Room):
    max_clients = 4


class Slow(Room):
    """on_create blocks until the test releases it (a slow database read, say)."""

    entered: Event
    release: Event

    def on_create(self, options):
        type(self).entered.set()
        assert type(self).release.wait(30)


def slow():
    return type("SlowRoom", (Slow,), {"entered": Event(), "release": Event()})


@pytest.fixture
def deployment(redis_server):
    """deployment(**rooms, **server options) -> a started Server on the shared Redis."""
    redis.Redis.from_url(redis_server.url).flushall()
    started = []

    def start(rooms, **options):
        server = Server(redis_url=redis_server.url, heartbeat=0.5, lease=2.0, **options)
        for name, cls in rooms.items():
            server.define(name, cls)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown(timeout=2)


def listed(server, name):
    return server.matchmaker.query(name)


def test_100_concurrent_join_or_create_over_two_servers_fill_25_rooms(deployment):
    a, b = deployment({"capped": Capped}), deployment({"capped": Capped})
    jobs = [gevent.spawn((a, b)[i % 2].matchmaker.join_or_create, "capped", {}) for i in range(100)]
    gevent.joinall(jobs, timeout=60)
    assert [job.exception for job in jobs if not job.successful()] == []
    rooms = {}
    for job in jobs:
        rooms.setdefault(job.value.room_id, []).append(job.value)
    assert len(rooms) == 25
    assert {len(seats) for seats in rooms.values()} == {4}
    assert {seat.process_id for seat in (job.value for job in jobs)} <= {a.process_id, b.process_id}
    assert len(listed(a, "capped")) == 25


def test_the_creation_lock_outlives_its_ttl_and_is_never_skipped(deployment):
    """B's on_create takes longer than three lock TTLs: the lock is renewed meanwhile, so A can
    neither take it nor create without it; A answers 503 and no second room is made."""
    cls = slow()
    a = deployment({"slow": cls})
    b = deployment({"slow": cls})
    for server in (a, b):
        server.matchmaker.creation_lock_ttl = 0.2
    a.matchmaker.creation_lock_wait = 0.7
    first = gevent.spawn(b.matchmaker.join_or_create, "slow", {})
    assert cls.entered.wait(10)
    with pytest.raises(ServiceUnavailable, match="busy"):
        a.matchmaker.join_or_create("slow", {})
    cls.release.set()
    seat = first.get(timeout=10)
    assert [item.room_id for item in listed(a, "slow")] == [seat.room_id]
    assert a.matchmaker.join_or_create("slow", {}).room_id == seat.room_id


def test_requests_queued_in_one_process_behind_a_slow_creation_get_503_in_time(deployment):
    """The in-process half of the creation lock is bounded by the same wait as the Redis half:
    a request queued behind a creation that takes too long (Redis slowed, a slow on_create)
    answers 503 within ``creation_lock_wait``, not when its client gives up (issue 13's storm
    with a slow Redis found requests waiting there unbounded)."""
    cls = slow()
    a = deployment({"slow": cls})
    a.matchmaker.creation_lock_wait = 0.7
    first = gevent.spawn(a.matchmaker.join_or_create, "slow", {})
    assert cls.entered.wait(10)
    with gevent.Timeout(5, AssertionError("the queued request waited past creation_lock_wait")):
        with pytest.raises(ServiceUnavailable, match="busy"):
            a.matchmaker.join_or_create("slow", {})
    cls.release.set()
    seat = first.get(timeout=10)
    assert a.matchmaker.join_or_create("slow", {}).room_id == seat.room_id


def test_a_seat_request_delivered_twice_reserves_one_seat(deployment):
    """redis-py sends a PUBLISH again when its connection drops before the reply, so another
    process can receive a reserve_seat twice (the storm with a flaky Redis left rooms a seat
    short). The request carries an id: the owner reserves once and answers both alike."""
    a = deployment({"capped": Capped})
    b = deployment({"capped": Capped})
    listing = b.matchmaker.create_room("capped", {})
    publish = a.presence.publish

    def twice(channel, message):
        publish(channel, message)
        return publish(channel, message)

    a.presence.publish = twice
    seat = a.matchmaker.join_by_id(listing.room_id)
    assert seat.process_id == b.process_id
    a.presence.publish = publish
    # one more call on the same channel: once it is answered, B has served both deliveries
    # (pub/sub keeps a channel's order, and B serves requests in the order they arrive)
    assert a.matchmaker.rpc.call(b.process_id, "reserve_reconnection", listing.room_id, "none",
                                 timeout=5) is None
    assert b.matchmaker.engine(listing.room_id).seats_taken == 1


def test_a_create_its_target_did_not_answer_is_not_made_a_second_time(deployment):
    """A asks B (the least loaded) to create the room; B is slow and A's calls time out. B may
    have made the room, so A must not make one of its own: 503, and the retry joins B's."""
    cls = slow()
    a = deployment({"slow": cls, "capped": Capped}, rpc_timeout=0.3)
    b = deployment({"slow": cls, "capped": Capped})
    a.matchmaker.create_room("capped", {})
    a.registry.beat()  # A now reports a room, B none: B is where new rooms go
    with pytest.raises(ServiceUnavailable, match="did not answer"):
        a.matchmaker.join_or_create("slow", {})
    assert cls.entered.is_set()  # B was creating it
    cls.release.set()
    with gevent.Timeout(10, AssertionError("B never listed the room it was asked for")):
        while not listed(a, "slow"):
            gevent.sleep(0.02)
    [made] = listed(a, "slow")
    assert made.process_id == b.process_id
    retry = a.matchmaker.join_or_create("slow", {})
    assert retry.room_id == made.room_id
    assert len(listed(a, "slow")) == 1


def test_a_room_whose_owner_is_gone_is_skipped_at_once(deployment):
    """B stops listening (it died; its lease has not run out yet). A does not wait out its
    30 s RPC timeout to find that out: PUBLISH reached nobody."""
    a = deployment({"capped": Capped}, rpc_timeout=30)
    b = deployment({"capped": Capped})
    orphan = b.matchmaker.create_room("capped", {})
    b.matchmaker.rpc.close()
    assert orphan.room_id in {item.room_id for item in listed(a, "capped")}
    with gevent.Timeout(10, AssertionError("A waited for a reply from a process that is gone")):
        with pytest.raises(MatchMakeError) as err:
            a.matchmaker.join_by_id(orphan.room_id, {})
        assert err.value.code == 522
        seat = a.matchmaker.join_or_create("capped", {})
    assert seat.room_id != orphan.room_id and seat.process_id == a.process_id


def test_a_redis_presence_alone_brings_the_shared_catalogue(redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    servers = [Server(presence=RedisPresence(redis_server.url), heartbeat=0.5, lease=2.0)
               for _ in range(2)]
    try:
        for server in servers:
            server.define("capped", Capped)
            server.start()
        a, b = servers
        assert isinstance(a.driver, RedisDriver)
        room = a.matchmaker.create_room("capped", {})
        seat = b.matchmaker.join_by_id(room.room_id, {})  # the room is A's: B sees it
        assert seat.process_id == a.process_id
        assert b.matchmaker.join_or_create("capped", {}).room_id == room.room_id
    finally:
        for server in servers:
            server.shutdown(timeout=2)


def test_a_shared_presence_with_a_local_driver_is_refused(redis_server):
    presence = RedisPresence(redis_server.url)
    try:
        with pytest.raises(ValueError, match="LocalDriver.*each process lists only its own"):
            Server(presence=presence, driver=LocalDriver())
    finally:
        presence.close()
