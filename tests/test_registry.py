"""The process registry on every presence backend: leases, stalls, death, reaping."""

from __future__ import annotations

import logging
import time

import pytest
from gevent import monkey

from greenroom.drivers.listing import RoomListing
from greenroom.drivers.local import LocalDriver
from greenroom.registry import ProcessRegistry

from servers import wait_until

# Blocks the whole process, hub included: a real stall, as a long GC pause or a CPU-bound handler.
stall = monkey.get_original("time", "sleep")


@pytest.fixture
def registries(presence):
    made: list[ProcessRegistry] = []

    def make(process_id: str, **options) -> ProcessRegistry:
        options.setdefault("heartbeat", 0.1)
        options.setdefault("lease", 0.6)
        registry = ProcessRegistry(presence, process_id, **options)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.stop(unregister=False)


def test_processes_announce_address_and_load(registries):
    a = registries(
        "pA", address="10.0.0.1:2567", public_address="eu1.example.com", load=lambda: (3, 40)
    )
    b = registries("pB", address="10.0.0.2:2567")
    a.start()
    b.start()
    b.set_load(1, 5)
    b.beat()
    alive = a.alive_processes()
    assert [info.process_id for info in alive] == ["pB", "pA"]  # least loaded first
    info = b.get("pA")
    assert (info.address, info.public_address, info.rooms, info.ccu) == (
        "10.0.0.1:2567",
        "eu1.example.com",
        3,
        40,
    )
    assert a.is_alive("pB") and not a.is_alive("pZ")


def test_unregister_on_stop_is_immediate(registries):
    a, observer = registries("pA"), registries("observer")
    a.start()
    a.stop()
    assert not observer.is_alive("pA")
    assert observer.alive_processes() == []


def test_a_process_that_stops_renewing_drops_out_within_the_lease(registries):
    a, observer = registries("pA"), registries("observer")
    a.start()
    a.stop(unregister=False)  # as if killed
    stopped = time.monotonic()
    assert observer.is_alive("pA")
    wait_until(lambda: not observer.is_alive("pA"), timeout=3)
    assert time.monotonic() - stopped <= a.lease + 0.3


def test_a_short_stall_is_not_death(registries):
    a = registries("pA", heartbeat=0.1, lease=1.0)
    observer = registries("observer")
    a.start()
    stall(0.6)  # longer than several heartbeats, shorter than the lease
    assert observer.is_alive("pA")
    assert [info.process_id for info in observer.alive_processes()] == ["pA"]


def test_heartbeat_renews_listing_leases_and_reaping_cleans_up(registries):
    driver = LocalDriver()
    a = registries("pA", driver=driver)
    b = registries("pB", driver=driver)
    driver.register(RoomListing("chat", "r1", "pA", lease_expires_at=time.time() + 0.6))
    driver.register(RoomListing("chat", "r2", "pB", lease_expires_at=time.time() + 0.6))
    a.start()
    b.start()
    first_lease = driver.get("r1").lease_expires_at
    wait_until(lambda: driver.get("r1").lease_expires_at > first_lease + 0.15)

    a.stop(unregister=False)
    wait_until(lambda: [r.room_id for r in driver.query("chat")] == ["r2"], timeout=3)
    assert b.dead_processes() == []  # not gone long enough to be forgotten
    wait_until(lambda: not b.is_alive("pA"), timeout=3)
    assert b.reap(after=0) == ["pA"]
    assert driver.cleanup("pA") == 0  # already removed by the reaper
    assert [r.room_id for r in driver.query("chat")] == ["r2"]
    assert b.reap(after=0) == []


def test_lease_must_cover_two_heartbeats(presence):
    with pytest.raises(ValueError):
        ProcessRegistry(presence, "p", heartbeat=5, lease=6)


def test_heartbeat_survives_a_redis_outage(redis_server, redis_presence, caplog):
    a = ProcessRegistry(redis_presence, "pA", heartbeat=0.1, lease=0.6)
    a.start()
    try:
        with caplog.at_level(logging.WARNING):
            redis_server.stop()
            wait_until(lambda: "heartbeat of process pA failed" in caplog.text, timeout=3)
            redis_server.start()  # empty again: the next beats must announce pA anew
            wait_until(lambda: "heartbeat of process pA recovered" in caplog.text, timeout=5)
        assert a._beater is not None and not a._beater.dead
        wait_until(lambda: a.is_alive("pA"), timeout=3)
    finally:
        a.stop()
