"""One conformance suite for every Presence backend (``presence`` runs each test per backend),
then what only Redis can do wrong: malformed wire messages and outages."""

from __future__ import annotations

import logging
import time

import gevent
import gevent.event
import pytest
from proxy import SlowProxy

from greenroom.presence import PresenceUnavailable, from_env, from_url
from greenroom.presence.local import LocalPresence
from greenroom.presence.redis import RedisPresence

from servers import wait_until


class Inbox:
    """Collects messages; ``wait(n)`` returns once n arrived (an event, not a sleep)."""

    def __init__(self) -> None:
        self.messages: list = []
        self._arrived = gevent.event.Event()

    def __call__(self, message) -> None:
        self.messages.append(message)
        self._arrived.set()

    def wait(self, count: int = 1, timeout: float = 5.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._arrived.wait(remaining):
                raise AssertionError(
                    f"got {len(self.messages)} of {count} messages: {self.messages}"
                )
        return self.messages


# -- keys --------------------------------------------------------------------------------
def test_strings_and_counters(presence):
    assert presence.get("k") is None
    presence.set("k", "v")
    assert presence.get("k") == "v"
    assert presence.exists("k")
    presence.delete("k")
    assert not presence.exists("k")
    assert presence.incr("n") == 1
    assert presence.incr("n") == 2
    assert presence.decr("n") == 1
    assert presence.get("n") == "1"


def test_keys_expire(presence):
    presence.setex("short", "1", 0.15)
    presence.set("long", "1")
    presence.expire("long", 0.15)
    presence.setex("kept", "1", 30)
    assert presence.get("short") == "1"
    wait_until(lambda: not presence.exists("short") and presence.get("long") is None, timeout=3)
    assert presence.get("kept") == "1"


def test_set_removes_an_expiry(presence):
    presence.setex("k", "1", 0.1)
    presence.set("k", "2")
    gevent.sleep(0.2)  # waiting for an expiry that must NOT happen: nothing could signal it
    assert presence.get("k") == "2"


# -- sets and hashes ---------------------------------------------------------------------
def test_sets(presence):
    presence.sadd("s", "a")
    presence.sadd("s", "b")
    presence.sadd("s", "b")
    presence.sadd("t", "b")
    assert presence.smembers("s") == {"a", "b"}
    assert presence.scard("s") == 2
    assert presence.sismember("s", "a") and not presence.sismember("s", "z")
    assert presence.sinter("s", "t") == {"b"}
    presence.srem("s", "a")
    presence.srem("s", "b")
    assert presence.smembers("s") == set()
    assert not presence.exists("s")  # an empty set is no key at all, as in Redis


def test_hashes(presence):
    presence.hset("h", "a", "1")
    presence.hset("h", "b", "x")
    assert presence.hget("h", "a") == "1"
    assert presence.hget("h", "zz") is None
    assert presence.hgetall("h") == {"a": "1", "b": "x"}
    assert presence.hlen("h") == 2
    assert presence.hincrby("h", "a", 5) == 6
    assert presence.hincrby("h", "new") == 1
    assert presence.hdel("h", "b") is True
    assert presence.hdel("h", "b") is False
    assert presence.hgetall("missing") == {}


def test_hincrbyex_counts_and_expires(presence):
    assert presence.hincrbyex("seats", "room", 1, 30) == 1
    assert presence.hincrbyex("seats", "room", 2, 0.2) == 3
    assert presence.hget("seats", "room") == "3"
    wait_until(lambda: not presence.exists("seats"), timeout=3)


def test_hincrbyex_is_atomic_under_concurrency(presence):
    jobs = [gevent.spawn(presence.hincrbyex, "c", "f", 1, 30) for _ in range(100)]
    gevent.joinall(jobs, raise_error=True)
    assert sorted(job.value for job in jobs) == list(range(1, 101))


# -- lists -------------------------------------------------------------------------------
def test_lists(presence):
    assert presence.rpush("l", "a", "b") == 2
    assert presence.lpush("l", "z") == 3
    assert presence.llen("l") == 3
    assert presence.lpop("l") == "z"
    assert presence.rpop("l") == "b"
    assert presence.rpop("l") == "a"
    assert presence.rpop("l") is None
    assert not presence.exists("l")


def test_brpop_returns_at_once_when_an_item_is_there(presence):
    presence.rpush("b", "1")
    assert presence.brpop("empty", "b", timeout=1) == ("b", "1")


def test_brpop_times_out(presence):
    started = time.monotonic()
    assert presence.brpop("nothing", timeout=0.3) is None
    assert 0.25 <= time.monotonic() - started < 2


def test_brpop_blocks_only_its_greenlet(presence):
    popper = gevent.spawn(presence.brpop, "jobs", timeout=5)
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(5)])
    ticker.join(2)
    assert len(ticks) == 5 and not popper.ready()  # the process kept running meanwhile
    presence.lpush("jobs", "job-1")
    assert popper.get(timeout=3) == ("jobs", "job-1")


def test_brpop_without_timeout_waits_past_one_block_slice(presence):
    popper = gevent.spawn(presence.brpop, "later")
    gevent.spawn_later(1.2, presence.rpush, "later", "x")
    assert popper.get(timeout=5) == ("later", "x")


# -- pub/sub -----------------------------------------------------------------------------
def test_publish_right_after_subscribe_is_received(presence):
    inbox = Inbox()
    presence.subscribe("room:1", inbox)
    presence.publish("room:1", {"op": "join", "seats": [1, 2], "blob": b"\x00\xff"})
    assert inbox.wait(1) == [{"op": "join", "seats": [1, 2], "blob": b"\x00\xff"}]


def test_every_callback_gets_each_message_in_order(presence):
    first, second = Inbox(), Inbox()
    presence.subscribe("c", first)
    presence.subscribe("c", second)
    for n in range(20):
        presence.publish("c", n)
    assert first.wait(20) == list(range(20))
    assert second.wait(20) == list(range(20))


def test_unsubscribe_one_callback_then_all(presence):
    kept, dropped = Inbox(), Inbox()
    presence.subscribe("c", kept)
    presence.subscribe("c", dropped)
    presence.unsubscribe("c", dropped)
    presence.publish("c", 1)
    kept.wait(1)
    presence.unsubscribe("c")
    presence.publish("c", 2)
    marker = Inbox()
    presence.subscribe("marker", marker)
    presence.publish("marker", "done")  # delivered after anything published before it
    marker.wait(1)
    assert kept.messages == [1] and dropped.messages == []


def test_a_failing_callback_is_logged_and_others_still_run(presence, caplog):
    inbox = Inbox()

    def broken(message):
        raise RuntimeError("boom")

    presence.subscribe("c", broken)
    presence.subscribe("c", inbox)
    presence.publish("c", "a")
    presence.publish("c", "b")
    assert inbox.wait(2) == ["a", "b"]
    assert "boom" in caplog.text


def test_channels_lists_subscribed_channels(presence):
    presence.subscribe("rpc:p1", Inbox())
    presence.subscribe("rpc:p2", Inbox())
    presence.subscribe("room:9", Inbox())
    assert sorted(presence.channels("rpc:*")) == ["rpc:p1", "rpc:p2"]
    assert "room:9" in presence.channels()


def test_unserialisable_message_is_refused_at_publish(presence):
    with pytest.raises(TypeError):
        presence.publish("c", object())


def test_many_greenlets_subscribe_and_publish_at_once(presence):
    inboxes = [Inbox() for _ in range(50)]
    gevent.joinall(
        [gevent.spawn(presence.subscribe, f"ch:{n}", inbox) for n, inbox in enumerate(inboxes)],
        raise_error=True,
    )
    gevent.joinall(
        [gevent.spawn(presence.publish, f"ch:{n}", n) for n in range(50)], raise_error=True
    )
    for n, inbox in enumerate(inboxes):
        assert inbox.wait(1) == [n]


def test_a_callback_may_subscribe(presence):
    later = Inbox()
    presence.subscribe("first", lambda message: presence.subscribe("second", later))
    presence.publish("first", 1)
    wait_until(lambda: "second" in presence.channels("second"))
    presence.publish("second", 2)
    assert later.wait(1) == [2]


# -- configuration -----------------------------------------------------------------------
def test_from_url_and_env(redis_server):
    local = from_url(None)
    assert isinstance(local, LocalPresence)
    remote = from_env({"REDIS_URL": redis_server.url})
    assert isinstance(remote, RedisPresence)
    remote.close()
    with pytest.raises(ValueError):
        from_url("http://example.com")


def test_unreachable_redis_at_start_names_the_url():
    with pytest.raises(PresenceUnavailable, match=r"redis://:\*\*\*@127\.0\.0\.1:1/0"):
        from_url("redis://:secret@127.0.0.1:1/0", connect_timeout=0.5)


# -- Redis only --------------------------------------------------------------------------
def test_a_malformed_message_is_logged_and_skipped(redis_presence, caplog):
    inbox = Inbox()
    redis_presence.subscribe("c", inbox)
    with caplog.at_level(logging.WARNING):
        redis_presence.client.publish("c", b"\xc1 not msgpack")
        redis_presence.publish("c", "fine")
        assert inbox.wait(1) == ["fine"]
    assert "malformed message on channel 'c'" in caplog.text


def test_brpop_does_not_hold_the_pubsub_connection(redis_presence):
    inbox = Inbox()
    redis_presence.subscribe("c", inbox)
    poppers = [gevent.spawn(redis_presence.brpop, f"q{n}", timeout=3) for n in range(5)]
    gevent.sleep(0.05)  # let the poppers block in Redis before publishing
    redis_presence.publish("c", "still flowing")
    assert inbox.wait(1, timeout=1) == ["still flowing"]
    for n in range(5):
        redis_presence.rpush(f"q{n}", "x")
    assert [p.get(timeout=3) for p in poppers] == [(f"q{n}", "x") for n in range(5)]


def test_redis_outage_raises_then_recovers_without_a_new_object(
    redis_server, redis_presence, caplog
):
    inbox = Inbox()
    redis_presence.subscribe("survivor", inbox)
    redis_presence.publish("survivor", "before")
    inbox.wait(1)
    reader = redis_presence._reader

    redis_server.stop()
    with pytest.raises(PresenceUnavailable, match=redis_server.url):
        redis_presence.set("k", "v")
    with pytest.raises(PresenceUnavailable):
        redis_presence.publish("survivor", "lost")
    with pytest.raises(PresenceUnavailable):
        redis_presence.subscribe("newcomer", Inbox())
    wait_until(lambda: "pub/sub connection" in caplog.text, timeout=5)
    assert not reader.dead

    redis_server.start()
    redis_presence.set("k", "v")
    assert redis_presence.get("k") == "v"
    # The reader resubscribes by itself; publish until a message gets through.
    wait_until(
        lambda: redis_presence.publish("survivor", "after") or "after" in inbox.messages, timeout=10
    )
    assert redis_presence._reader is reader and not reader.dead
    newcomer = Inbox()
    redis_presence.subscribe("newcomer", newcomer)
    redis_presence.publish("newcomer", "hello")
    assert newcomer.wait(1) == ["hello"]


def test_subscribe_returns_only_after_redis_confirmed_it(redis_presence):
    for n in range(20):
        redis_presence.subscribe(f"confirmed:{n}", Inbox())
        assert redis_presence._confirmed[f"confirmed:{n}"].is_set()


def test_redis_over_a_unix_socket(redis_server):
    presence = from_url(redis_server.unix_url)
    try:
        inbox = Inbox()
        presence.subscribe("c", inbox)
        presence.publish("c", "via socket")
        assert inbox.wait(1) == ["via socket"]
        assert presence.brpop("nothing", timeout=0.05) is None
    finally:
        presence.close()


def test_lock_is_exclusive_and_released(presence):
    with presence.lock("greenroom:test:lock", ttl=5, wait=1) as first:
        assert first
        with presence.lock("greenroom:test:lock", ttl=5, wait=0.05) as second:
            assert not second
    with presence.lock("greenroom:test:lock", ttl=5, wait=0.05) as third:
        assert third


def test_lock_expires_with_its_holder(presence):
    assert presence.setnx_ex("greenroom:test:lease", "dead-holder", 0.05)
    with presence.lock("greenroom:test:lease", ttl=5, wait=2) as acquired:
        assert acquired
    assert not presence.delete_if("greenroom:test:lease", "dead-holder")


def test_a_claim_is_idempotent_for_its_holder_and_refused_to_another(presence):
    """What a resent SET of the lock finds: the key set by itself."""
    assert presence.claim("greenroom:test:claim", "me", 5)
    assert presence.claim("greenroom:test:claim", "me", 5)  # the resend: still mine
    assert not presence.claim("greenroom:test:claim", "other", 5)
    assert presence.delete_if("greenroom:test:claim", "me")
    assert presence.claim("greenroom:test:claim", "other", 5)


def test_a_lock_whose_reply_was_lost_is_held_not_orphaned(redis_server):
    """Redis ran the SET of the lock but the reply was lost with its connection; redis-py
    resends it on a new one. With SET NX the resend found the key taken (by us) and the name
    stayed locked by nobody until its ttl ran out: every creation of that room name waited."""
    proxy = SlowProxy(("127.0.0.1", redis_server.port))
    presence = RedisPresence(proxy.url)
    try:
        presence.ping()
        proxy.lose_reply_to(b"greenroom:test:lost-reply")
        with presence.lock("greenroom:test:lost-reply", ttl=30, wait=1) as lease:
            assert proxy.dropped == 1  # the fault happened: one reply lost, its connection cut
            assert lease, "the resent claim of our own lock was taken for another's"
        assert not presence.exists("greenroom:test:lost-reply")  # released, not left to expire
    finally:
        presence.close()
        proxy.close()


def test_100_greenlets_serialise_on_the_lock(presence):
    inside = []
    overlaps = []

    def worker():
        with presence.lock("greenroom:test:many", ttl=5, wait=30) as acquired:
            assert acquired
            if inside:
                overlaps.append(1)
            inside.append(1)
            gevent.sleep(0)
            inside.pop()

    gevent.joinall([gevent.spawn(worker) for _ in range(100)], raise_error=True)
    assert overlaps == []
