"""One conformance suite for every Driver backend (``driver`` runs each test on Local, Redis and
MongoDB), then malformed stored listings and outages against the real servers."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

import gevent
import pytest
from proxy import SlowProxy

from greenroom.drivers import DriverUnavailable, LocalDriver, from_env, from_url
from greenroom.drivers.listing import RoomListing
from greenroom.drivers.mongo import (
    MongoDriver,
    RoomListingDocument,
    _criteria,
    filter_key,
    filter_keys,
)
from greenroom.drivers.redis import RedisDriver

from servers import wait_until


def listing(room_id: str, name: str = "chat", **fields) -> RoomListing:
    fields.setdefault("process_id", "p1")
    digits = "".join(c for c in room_id if c.isdigit())
    fields.setdefault("created_at", 1_700_000_000 + int(digits or 0))
    return RoomListing(name=name, room_id=room_id, **fields)


def ids(listings: list[RoomListing]) -> list[str]:
    return [item.room_id for item in listings]


@pytest.fixture
def rooms(driver):
    """Six chat rooms and two of another name, with varied seats, filters and metadata."""
    for item in [
        listing("r1", clients=0, max_clients=4, filters={"mode": "duel"}, metadata={"elo": 1200}),
        listing("r2", clients=3, max_clients=4, filters={"mode": "duel"}, metadata={"elo": 900}),
        listing("r3", clients=4, max_clients=4, filters={"mode": "duel"}, metadata={"elo": 1500}),
        listing("r4", clients=1, max_clients=8, filters={"mode": "ffa", "map": "dust"}),
        listing("r5", clients=2, max_clients=None, filters={"mode": "ffa"}, metadata={"elo": 1000}),
        listing("r6", clients=0, max_clients=4, locked=True, metadata={"elo": 1100}),
        listing("r7", name="lobby", clients=9, process_id="p2"),
        listing("r8", name="lobby", clients=2, process_id="p2", private=True),
    ]:
        driver.register(item)
    return driver


# -- writing and reading back ------------------------------------------------------------
def test_register_and_get_round_trip(driver):
    original = listing(
        "r1",
        clients=2,
        max_clients=6,
        unlisted=True,
        metadata={"title": "Ünïcode", "tags": ["a"]},
        filters={"mode": "duel", "rank": 3},
        public_address="eu1.example.com:443",
        lease_expires_at=time.time() + 60,
    )
    driver.register(original)
    found = driver.get("r1")
    assert found.created_at == pytest.approx(original.created_at, abs=0.002)
    assert found.lease_expires_at == pytest.approx(original.lease_expires_at, abs=0.002)
    found.created_at, found.lease_expires_at = original.created_at, original.lease_expires_at
    assert found == original
    assert driver.get("nope") is None


def test_room_ids_are_unique(driver):
    driver.register(listing("r1"))
    with pytest.raises(ValueError, match="r1"):
        driver.register(listing("r1", name="other"))


def test_concurrent_registration_of_one_room_lets_exactly_one_win(driver):
    def attempt(n):
        try:
            driver.register(listing("r1", process_id=f"p{n}"))
            return True
        except ValueError:
            return False

    jobs = [gevent.spawn(attempt, n) for n in range(10)]
    gevent.joinall(jobs, raise_error=True)
    assert sum(job.value for job in jobs) == 1


def test_returned_listings_are_copies(driver):
    driver.register(listing("r1", metadata={"a": 1}))
    found = driver.get("r1")
    found.metadata["a"] = 2
    found.clients = 99
    assert driver.get("r1").metadata == {"a": 1} and driver.get("r1").clients == 0


def test_update(rooms):
    rooms.update("r1", clients=2, metadata={"elo": 5}, locked=True)
    found = rooms.get("r1")
    assert (found.clients, found.metadata, found.locked) == (2, {"elo": 5}, True)
    rooms.update("missing", clients=1)  # ignored
    with pytest.raises(AttributeError):
        rooms.update("r1", colour="red")


def test_update_of_name_moves_the_listing(rooms):
    rooms.update("r1", name="lobby")
    assert "r1" not in ids(rooms.query("chat"))
    assert "r1" in ids(rooms.query("lobby", available=True))


def test_remove(rooms):
    rooms.remove("r1")
    rooms.remove("r1")
    assert rooms.get("r1") is None
    assert "r1" not in ids(rooms.query("chat"))
    assert "r1" not in ids(rooms.query(available=True))


def test_concurrent_updates_all_land(rooms):
    jobs = [gevent.spawn(rooms.update, f"r{n}", clients=n, metadata={"n": n}) for n in range(1, 7)]
    gevent.joinall(jobs, raise_error=True)
    assert [(r.clients, r.metadata) for r in rooms.query("chat")] == [
        (n, {"n": n}) for n in range(1, 7)
    ]


# -- querying ----------------------------------------------------------------------------
def test_query_by_name(rooms):
    assert ids(rooms.query("chat")) == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert ids(rooms.query("lobby")) == ["r7", "r8"]
    assert ids(rooms.query("nobody")) == []
    assert ids(rooms.query()) == [f"r{n}" for n in range(1, 9)]


def test_filters(rooms):
    assert ids(rooms.query("chat", filters={"mode": "duel"})) == ["r1", "r2", "r3"]
    assert ids(rooms.query("chat", filters={"mode": "ffa", "map": "dust"})) == ["r4"]
    assert ids(rooms.query("chat", filters={"mode": "ffa", "map": None})) == ["r5"]
    assert ids(rooms.query("chat", filters={"mode": "nope"})) == []
    assert ids(rooms.query(filters={"mode": "ffa"})) == ["r4", "r5"]


def test_filter_values_are_literals_not_operators(rooms):
    assert rooms.query("chat", filters={"mode": {"$ne": None}}) == []
    assert rooms.query("chat", filters={"mode": {"$in": ["duel", "ffa"]}}) == []


def test_available(rooms):
    # r3 is full, r6 locked, r8 private; r5 has no seat limit.
    assert ids(rooms.query("chat", available=True)) == ["r1", "r2", "r4", "r5"]
    assert ids(rooms.query(available=True)) == ["r1", "r2", "r4", "r5", "r7"]
    rooms.update("r3", clients=3)
    rooms.update("r2", clients=4)
    rooms.update("r6", locked=False)
    assert ids(rooms.query("chat", available=True)) == ["r1", "r3", "r4", "r5", "r6"]
    rooms.update("r1", max_clients=0)
    rooms.update("r5", private=True)
    assert ids(rooms.query("chat", available=True, filters={"mode": "duel"})) == ["r3"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ([("clients", 1)], ["r1", "r6", "r4", "r5", "r2", "r3"]),
        ([("clients", -1)], ["r3", "r2", "r5", "r4", "r1", "r6"]),
        ([("created_at", -1)], ["r6", "r5", "r4", "r3", "r2", "r1"]),
        ([("created_at", 1)], ["r1", "r2", "r3", "r4", "r5", "r6"]),
        ([("metadata.elo", 1)], ["r4", "r2", "r5", "r6", "r1", "r3"]),
        ([("metadata.elo", -1)], ["r3", "r1", "r6", "r5", "r2", "r4"]),
        ([("max_clients", -1), ("clients", 1)], ["r4", "r1", "r6", "r2", "r3", "r5"]),
    ],
)
def test_sort(rooms, sort, expected):
    assert ids(rooms.query("chat", sort=sort)) == expected


def test_sort_limit_and_find_one(rooms):
    assert ids(rooms.query("chat", sort=[("clients", -1)], limit=2)) == ["r3", "r2"]
    assert ids(rooms.query("chat", limit=3)) == ["r1", "r2", "r3"]
    assert ids(rooms.query("chat", limit=0)) == []
    best = rooms.find_one("chat", available=True, filters={"mode": "duel"}, sort=[("clients", -1)])
    assert best.room_id == "r2"
    assert rooms.find_one("chat", filters={"mode": "none"}) is None


def test_unknown_sort_key_is_refused(rooms):
    with pytest.raises(ValueError):
        rooms.query("chat", sort=[("password", 1)])
    with pytest.raises(ValueError):
        rooms.query("chat", sort=[("clients", 0)])


# -- ownership and leases ----------------------------------------------------------------
def test_cleanup_removes_one_process(rooms):
    assert rooms.cleanup("p2") == 2
    assert rooms.cleanup("p2") == 0
    assert ids(rooms.query("lobby")) == []
    assert len(rooms.query("chat")) == 6


def test_clear(rooms):
    rooms.clear()
    assert rooms.query() == []


def test_expired_leases_hide_listings_until_renewed(driver):
    driver.register(listing("r1", lease_expires_at=time.time() + 0.3))
    driver.register(listing("r2", lease_expires_at=time.time() + 30, process_id="p2"))
    driver.register(listing("r3"))  # no lease: never expires
    assert ids(driver.query("chat", available=True)) == ["r1", "r2", "r3"]
    wait_until(lambda: ids(driver.query("chat")) == ["r2", "r3"], timeout=3)
    assert driver.get("r1") is None
    assert ids(driver.query(available=True)) == ["r2", "r3"]

    assert driver.renew("p1", 30) == 2  # r1 and r3: a stalled owner's listings come back
    assert ids(driver.query("chat", available=True)) == ["r1", "r2", "r3"]
    assert driver.get("r3").lease_expires_at == pytest.approx(time.time() + 30, abs=2)
    assert driver.renew("nobody", 30) == 0


def test_lease_can_be_set_by_update(driver):
    driver.register(listing("r1"))
    driver.update("r1", lease_expires_at=time.time() - 1)
    assert driver.query("chat") == [] and driver.get("r1") is None
    driver.update("r1", lease_expires_at=None)
    assert ids(driver.query("chat")) == ["r1"]


# -- configuration -----------------------------------------------------------------------
def test_from_url_and_env(redis_server, mongo_server):
    assert isinstance(from_url(None), LocalDriver)
    assert isinstance(from_env({}), LocalDriver)
    assert isinstance(from_env({"GREENROOM_REDIS_URL": redis_server.url}), RedisDriver)
    both = {"REDIS_URL": redis_server.url, "MONGO_URI": mongo_server.uri}
    mongo = from_env(both)
    assert isinstance(mongo, MongoDriver)
    mongo.close()
    with pytest.raises(DriverUnavailable, match="127.0.0.1:1"):
        from_url("redis://127.0.0.1:1/0", connect_timeout=0.5)


# -- malformed listings ------------------------------------------------------------------
def test_malformed_redis_listings_are_logged_and_skipped(redis_driver, caplog):
    for n in range(1, 5):
        redis_driver.register(listing(f"r{n}", filters={"mode": "duel"}))
    client, key = redis_driver.client, redis_driver.prefix + "listing:"
    client.hset(key + "r1", "clients", json.dumps("lots"))
    client.hset(key + "r2", "filters", "{not json")
    client.hset(key + "r3", "lease_expires_at", "soon")
    with caplog.at_level(logging.WARNING):
        assert ids(redis_driver.query("chat", filters={"mode": "duel"}, sort=[("clients", 1)])) == [
            "r4"
        ]
        assert redis_driver.get("r1") is None
    for room_id in ("r1", "r2", "r3"):
        assert f"malformed room listing {room_id}" in caplog.text


def test_malformed_mongo_listings_are_logged_and_skipped(mongo_driver, caplog):
    mongo_driver.register(listing("good", clients=1))
    far = datetime(9999, 1, 1, tzinfo=timezone.utc)
    base = {
        "name": "chat",
        "processId": "p1",
        "locked": False,
        "private": False,
        "open": True,
        "filterKeys": ["{}"],
        "createdAt": datetime.now(timezone.utc),
        "leaseExpiresAt": far,
    }
    mongo_driver.collection.insert_many(
        [
            {**base, "roomId": "bad-clients", "clients": "lots"},
            {**base, "roomId": "bad-metadata", "clients": 0, "metadata": [1, 2]},
            {**base, "roomId": "bad-date", "clients": 0, "createdAt": "yesterday"},
            {
                **{k: v for k, v in base.items() if k != "processId"},
                "roomId": "no-owner",
                "clients": 0,
            },
        ]
    )
    with caplog.at_level(logging.WARNING):
        assert ids(mongo_driver.query("chat", available=True, sort=[("clients", -1)])) == ["good"]
        assert mongo_driver.get("bad-clients") is None
    for room_id in ("bad-clients", "bad-metadata", "bad-date", "no-owner"):
        assert f"malformed room listing '{room_id}'" in caplog.text


# -- MongoDB specifics -------------------------------------------------------------------
def test_mongo_queries_run_on_an_index(mongo_driver):
    for n in range(1, 30):
        mongo_driver.register(
            listing(
                f"r{n}",
                name="chat" if n % 3 else "other",
                max_clients=4,
                filters={"mode": "duel", "map": "dust" if n % 2 else "nuke"},
            )
        )
    shapes = [
        ({"mode": "duel"}, True, "greenroom_open"),
        ({"mode": "duel", "map": "dust"}, True, "greenroom_open"),
        ({}, True, "greenroom_open"),
        ({"map": "nuke"}, False, "greenroom_name"),
        ({}, False, "greenroom_name"),
    ]
    for filters, available, index in shapes:
        cursor = mongo_driver.collection.find(_criteria("chat", filters, available))
        stages, stage = [], cursor.sort("clients", -1).explain()["queryPlanner"]["winningPlan"]
        while stage:
            stages.append(f"{stage['stage']}:{stage.get('indexName', '')}")
            stage = stage.get("inputStage")
        assert f"IXSCAN:{index}" in stages, (filters, available, stages)
    assert len(mongo_driver.query("chat", filters={"mode": "duel"}, available=True)) == 20
    assert len(mongo_driver.query("chat", filters={"mode": "duel", "map": "dust"})) == 10


def test_mongo_filter_keys_cover_every_subset():
    keys = filter_keys({"mode": "duel", "map": "dust", "rank": 2.0, "gone": None})
    assert len(keys) == 8
    assert filter_key({}) in keys
    assert filter_key({"rank": 2, "mode": "duel"}) in keys
    assert filter_key({"mode": "duel", "gone": "x"}) not in keys


def test_mongo_uses_its_own_connection_alias(mongo_driver, mongo_server):
    import mongoengine

    mongo_driver.register(listing("r1"))
    assert RoomListingDocument._meta["db_alias"] == "greenroom"
    assert "default" not in mongoengine.connection._connection_settings
    document = RoomListingDocument.objects.get(room_id="r1")
    assert (document.name, document.process_id) == ("chat", "p1")


# -- outages -----------------------------------------------------------------------------
def test_during_a_mongo_outage_calls_fail_at_once_after_the_first_timed_out(mongo_server,
                                                                             mongo_driver):
    """One server-selection timeout, then the same error at once (the joins queued behind the
    creation lock each waited that timeout); asked again after the cooldown."""
    mongo_driver.register(listing("r1"))
    mongo_server.stop()
    try:
        with pytest.raises(DriverUnavailable) as first:
            mongo_driver.query("chat")
        assert "asked again in" not in str(first.value)  # this one waited for a server
        for _ in range(20):
            with pytest.raises(DriverUnavailable, match=r"\(asked again in [01]\.\d s\)"):
                mongo_driver.register(listing("r2"))
    finally:
        mongo_server.start()
    wait_until(lambda: _answers(mongo_driver), timeout=15)
    assert ids(mongo_driver.query("chat")) == ["r1"]


def test_mongo_outage_raises_then_recovers(mongo_server, mongo_driver):
    mongo_driver.register(listing("r1"))
    mongo_server.stop()
    started = time.monotonic()
    with pytest.raises(DriverUnavailable, match=f"127.0.0.1:{mongo_server.port}"):
        mongo_driver.query("chat")
    with pytest.raises(DriverUnavailable):
        mongo_driver.register(listing("r2"))
    assert time.monotonic() - started < 5
    mongo_server.start()
    wait_until(lambda: _answers(mongo_driver), timeout=15)
    assert ids(mongo_driver.query("chat")) == ["r1"]  # same object, same data
    mongo_driver.register(listing("r2"))
    assert ids(mongo_driver.query("chat")) == ["r1", "r2"]


@pytest.fixture
def lossy_mongo(mongo_server):
    """A MongoDriver behind a proxy that can lose one reply (tests/proxy.py)."""
    proxy = SlowProxy(("127.0.0.1", mongo_server.port))
    driver = MongoDriver(f"mongodb://127.0.0.1:{proxy.port}/greenroom_test",
                         server_selection_timeout=1.0)
    driver.clear()
    try:
        yield proxy, driver
    finally:
        driver.close()
        proxy.close()


def test_a_mongo_register_whose_reply_was_lost_is_listed_once_and_succeeds(lossy_mongo):
    """MongoDB ran the insert; its reply was lost with the connection. pymongo retries writes
    only on a replica set: the room being created used to answer 503 for one dropped
    connection. Retried, the insert meets its own first write and takes it for done."""
    proxy, driver = lossy_mongo
    proxy.lose_reply_to(b"lost-room-1")
    driver.register(listing("lost-room-1", process_id="p1"))
    assert proxy.dropped == 1  # the fault happened
    assert ids(driver.query("chat")) == ["lost-room-1"]
    assert driver.get("lost-room-1").process_id == "p1"


def test_a_mongo_register_retried_still_refuses_another_processes_room(lossy_mongo):
    proxy, driver = lossy_mongo
    driver.register(listing("taken-room-1", process_id="p2"))
    proxy.lose_reply_to(b"taken-room-1")
    with pytest.raises(ValueError, match="already listed"):
        driver.register(listing("taken-room-1", process_id="p1"))
    assert proxy.dropped == 1
    assert driver.get("taken-room-1").process_id == "p2"


def test_mongo_updates_and_queries_survive_one_lost_reply(lossy_mongo):
    proxy, driver = lossy_mongo
    driver.register(listing("busy-room-1", max_clients=4))
    proxy.lose_reply_to(b"busy-room-1")
    driver.update("busy-room-1", clients=3)
    assert proxy.dropped == 1
    proxy.lose_reply_to(b"chat")
    assert [(item.room_id, item.clients) for item in driver.query("chat")] == [("busy-room-1", 3)]
    assert proxy.dropped == 2


def test_a_redis_register_retried_after_its_reply_was_lost_is_not_a_second_room(redis_driver):
    """redis-py sends a command again when its connection drops before the reply: the retried
    register of the very same listing succeeds (it is done already) instead of refusing the
    room as a duplicate (the storm with a flaky Redis, tests/test_storms_backends.py, got
    "room ... is already listed" for a room it had just created). Any other listing with that
    id is still refused (test_room_ids_are_unique)."""
    item = listing("r1", clients=1, max_clients=4, lease_expires_at=time.time() + 30)
    redis_driver.register(item)
    redis_driver.register(item)
    assert ids(redis_driver.query("chat")) == ["r1"]
    assert ids(redis_driver.query("chat", available=True)) == ["r1"]
    with pytest.raises(ValueError, match="r1"):
        redis_driver.register(listing("r1", clients=2, max_clients=4,
                                      lease_expires_at=item.lease_expires_at))


def test_a_register_retried_after_a_heartbeat_renewed_its_lease_is_not_a_second_room(redis_driver):
    """The retry may come after the owner's heartbeat renewed the listing it had written (a
    slow, flaky Redis: the storm then got 523 "the room could not be listed")."""
    item = listing("r1", process_id="p1", clients=1, max_clients=4,
                   lease_expires_at=time.time() + 30)
    redis_driver.register(item)
    assert redis_driver.renew("p1", 60) == 1  # the heartbeat, between the write and its retry
    redis_driver.register(item)
    assert ids(redis_driver.query("chat")) == ["r1"]


def test_redis_driver_outage_raises_then_recovers(redis_server, redis_driver):
    redis_driver.register(listing("r1"))
    redis_server.stop()
    with pytest.raises(DriverUnavailable, match=redis_server.url):
        redis_driver.query("chat")
    redis_server.start()  # started empty: --save ''
    redis_driver.register(listing("r2"))
    assert ids(redis_driver.query("chat")) == ["r2"]


def _answers(driver) -> bool:
    try:
        driver.query("chat")
        return True
    except DriverUnavailable:
        return False


def test_redis_driver_can_share_a_presence_pool(redis_presence):
    shared = RedisDriver(redis_presence)
    assert shared.client is redis_presence.client
    shared.register(listing("r1"))
    assert ids(shared.query("chat")) == ["r1"]
    connections = redis_presence.client.connection_pool._connections
    assert any(c._sock is not None for c in connections)
    shared.close()  # must not close the presence's connections
    assert any(c._sock is not None for c in connections)


def test_redis_driver_over_a_unix_socket(redis_server, redis_driver):
    over_socket = from_url(redis_server.unix_url)
    over_socket.register(listing("r1"))
    assert ids(redis_driver.query("chat")) == ["r1"]
    over_socket.close()
