"""A room and its listing: a room that cannot be listed does not run on unseen, a failed
on_create leaves nothing behind, listing writes land in order, and a disposed room is never
listed again (issue 16, defect 2 and "Also fix"). Against every real driver where it matters."""

import gevent
import pytest
from gevent.event import Event

from greenroom import MatchMakeError, Room, Server, ServiceUnavailable
from greenroom.client import Client
from greenroom.drivers import DriverUnavailable, LocalDriver

from servers import wait_until


class Ticking(Room):
    """A room that runs by itself (an interval), and reports its disposal."""

    disposed: list

    def on_create(self, options):
        self.ticks = 0
        self.clock.set_interval(self.tick, 5)

    def tick(self):
        self.ticks += 1

    def on_dispose(self):
        type(self).disposed.append(self.room_id)


def ticking():
    return type("TickingRoom", (Ticking,), {"disposed": []})


class RegisterFails(LocalDriver):
    """A driver whose outage starts at the next registration (the rest keeps working)."""

    def register(self, listing):
        raise DriverUnavailable("listing store at test:0 unavailable (register): outage")


def test_a_room_whose_listing_fails_to_register_is_disposed():
    cls = ticking()
    server = Server(driver=RegisterFails())
    server.define("t", cls)
    with pytest.raises(ServiceUnavailable, match="outage"):
        server.matchmaker.join_or_create("t", {})
    assert len(cls.disposed) == 1, "the room ran on, owned by nobody"
    assert server.matchmaker.rooms == {}


def test_a_mongo_filter_value_the_driver_refuses_disposes_the_room(mongo_driver):
    """{"$gt": 1} as a filter value: MongoEngine refuses the listing. The creator gets an error
    and the room, which could never be found, is gone (on_dispose ran)."""
    cls = ticking()
    server = Server(driver=mongo_driver)
    server.define("t", cls).filter_by("level")
    with pytest.raises(MatchMakeError) as err:
        server.matchmaker.join_or_create("t", {"level": {"$gt": 1}})
    assert err.value.code == 523 and "could not be listed" in err.value.message
    assert len(cls.disposed) == 1
    assert server.matchmaker.rooms == {} and mongo_driver.query("t") == []
    assert server.matchmaker.join_or_create("t", {"level": 2}).room_id  # others are unaffected


def test_failed_creates_leave_no_subscriptions(presence):
    class Broken(Room):
        def on_create(self, options):
            self.subscribe("greenroom:test:lobby", lambda message: None)
            raise RuntimeError("no map")

    server = Server(presence=presence)
    server.define("broken", Broken)
    for _ in range(100):
        with pytest.raises(MatchMakeError):
            server.matchmaker.create("broken", {})
    assert "greenroom:test:lobby" not in presence.channels()


class Gated:
    """Wraps a real driver: once armed, the first call of ``method`` waits on ``gate``."""

    def __init__(self, driver, method):
        self.driver = driver
        self.method = method
        self.gate = Event()
        self.entered = Event()
        self.armed = False

    def __getattr__(self, name):
        target = getattr(self.driver, name)
        if name != self.method:
            return target

        def gated(*args, **kwargs):
            if self.armed:
                self.armed = False
                self.entered.set()
                self.gate.wait(10)
            return target(*args, **kwargs)

        return gated


def test_listing_writes_land_in_order(driver):
    """The first seat's write is slow, the second's fast: the listing must end with 2 clients,
    not with the first write landing last."""
    class Capped(Room):
        max_clients = 4

    gated = Gated(driver, "update")
    server = Server(driver=gated)
    server.define("c", Capped)
    mm = server.matchmaker
    listing = mm.create_room("c", {})
    gated.armed = True
    first = gevent.spawn(mm.reserve_seat, listing.room_id, {})
    assert gated.entered.wait(5)
    second = gevent.spawn(mm.reserve_seat, listing.room_id, {})
    second.join(5)
    gated.gate.set()
    gevent.joinall([first, second], raise_error=True, timeout=10)
    assert driver.get(listing.room_id).clients == 2


class Recording:
    """Wraps a real driver and records the changes of every ``update``."""

    def __init__(self, driver):
        self.driver = driver
        self.updates = []

    def __getattr__(self, name):
        return getattr(self.driver, name)

    def update(self, room_id, **changes):
        self.updates.append(changes)
        return self.driver.update(room_id, **changes)


def test_a_join_writes_the_seat_count_once_at_its_reservation(driver):
    """The join takes the seat its reservation counted: writing the same count again cost each
    join one more listing write (a third of the Redis commands of a join and leave)."""
    class Capped(Room):
        max_clients = 4

    recording = Recording(driver)
    server = Server(driver=recording)
    server.define("c", Capped)
    port = server.listen("127.0.0.1", 0).server_port
    try:
        client = Client(f"ws://127.0.0.1:{port}")
        rooms = [client.join_or_create("c") for _ in range(3)]
        assert len({room.room_id for room in rooms}) == 1
        counts = [changes["clients"] for changes in recording.updates if "clients" in changes]
        assert counts == [1, 2, 3], recording.updates  # each seat once, not again at its join
        assert driver.get(rooms[0].room_id).clients == 3
        rooms[2].leave()
        wait_until(lambda: driver.get(rooms[0].room_id).clients == 2, 5)
    finally:
        server.shutdown()


def test_a_room_disposed_while_it_is_listed_again_stays_unlisted(driver):
    """After an outage the heartbeat lists rooms again; one disposed during that I/O must not
    come back as a ghost listing (the heartbeat would renew it forever)."""
    disposed = Event()

    class Short(Room):
        def on_dispose(self):
            disposed.set()

    gated = Gated(driver, "get")
    server = Server(driver=gated)
    server.define("c", Short)
    mm = server.matchmaker
    listing = mm.create_room("c", {})
    driver.remove(listing.room_id)  # the outage lost it
    gated.armed = True
    resync = gevent.spawn(mm.resync_listings)
    assert gated.entered.wait(5)
    mm.get_room(listing.room_id).disconnect()  # no clients: it is disposed at once
    assert disposed.wait(5)
    gated.gate.set()
    resync.get(timeout=10)
    assert driver.get(listing.room_id) is None
