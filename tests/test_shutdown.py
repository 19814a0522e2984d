"""Graceful shutdown has one deadline for every room (issue 16, defect 8): rooms whose
on_before_shutdown keeps them open are closed with 4001 and disposed when it passes."""

import time

import gevent

from greenroom import Room, Server
from greenroom.client import Client

DEADLINE = 0.5
# The deadline, the 2 s grace rooms get after it (MatchMaker.shutdown_grace), and a generous
# margin for 2 shared cores. Waiting for the rooms one after the other took 200 x 0.5 s.
BOUND = DEADLINE + 2.0 + 10.0


class Stubborn(Room):
    """Ignores the shutdown request: it neither disconnects nor disposes by itself."""

    disposed: list

    def on_before_shutdown(self):
        pass

    def on_dispose(self):
        type(self).disposed.append(self.room_id)


def stubborn():
    return type("StubbornRoom", (Stubborn,), {"disposed": []})


def test_200_rooms_that_ignore_shutdown_are_disposed_by_one_deadline():
    cls = stubborn()
    server = Server()
    server.define("stubborn", cls)
    for _ in range(200):
        server.matchmaker.create_room("stubborn", {})
    started = time.monotonic()
    with gevent.Timeout(BOUND, AssertionError("shutdown waited for the rooms one by one")):
        server.shutdown(timeout=DEADLINE)
    assert time.monotonic() - started < BOUND
    assert len(cls.disposed) == 200
    assert server.matchmaker.rooms == {}


def test_clients_of_a_room_that_ignores_shutdown_get_4001(serve):
    cls = stubborn()
    server = Server()
    server.define("stubborn", cls)
    running = serve(server)
    room = Client(running.endpoint).join_or_create("stubborn")
    with gevent.Timeout(BOUND):
        server.shutdown(timeout=DEADLINE)
    assert room.wait_closed(5)[0] == 4001
    assert cls.disposed == [room.room_id]
