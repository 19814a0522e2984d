"""Slow and hostile peers (issue 13): slowloris connections, clients that never read, peers
that vanish without a FIN. Each is closed by the server within its documented limit (the test
waits on the socket's EOF, the event), resources stay bounded, and the room's other client is
served all along. Limits are set short here (tenths of a second) so that the tests wait on
events, not on the production defaults.
"""

from __future__ import annotations

import json
import socket

import gevent
import pytest
from gevent.queue import Queue
from hostile import Bystander, Echo, LogWatch
from peers import raw_join
from proxy import BlackholeProxy

from greenroom import Server
from greenroom.client import Client

HEADER_TIMEOUT = 0.3


class Watched(Echo):
    """Echo, and reports drops and leaves; sends a flood on request."""

    events: Queue
    send_timeout = 0.3
    send_backlog = 4 * 1024 * 1024

    def on_create(self, options):
        super().on_create(options)
        self.on_message("flood", self.flood)

    def flood(self, client, count):
        """``count`` 64 KiB blobs to everyone, one every 2 ms: a reader keeps up, a peer
        that reads nothing fills its socket, then its queue, and is dropped."""
        sent = 0

        def tick():
            nonlocal sent
            self.broadcast("blob", bytes(64 * 1024))
            sent += 1
            if sent == count:
                timer.clear()

        timer = self.clock.set_interval(tick, 2)

    def on_drop(self, client, code):
        type(self).events.put(("drop", client.session_id, code))

    def on_leave(self, client, consented):
        type(self).events.put(("leave", client.session_id))


@pytest.fixture
def arena(greenroom_boot):
    """start(max_connections=..., **room attributes) -> (TestServer, bystander, events, watch)."""
    watches = []

    def start(max_connections=1000, **attributes):
        cls = type("WatchedRoom", (Watched,), {"events": Queue(), **attributes})
        server = Server()
        server.define("echo", cls)
        server.set_connection_limits(header_timeout=HEADER_TIMEOUT, max_connections=max_connections)
        running = greenroom_boot(server)
        watch = LogWatch().start()
        watches.append(watch)
        return running, Bystander(running.connect("echo")), cls.events, watch

    yield start
    for watch in watches:
        watch.stop()


def _wait_eof(sock: socket.socket, timeout: float = 5.0) -> None:
    """Read until the server closes its side (b""); fails if that takes over ``timeout``."""
    with gevent.Timeout(timeout, AssertionError(f"not closed by the server within {timeout} s")):
        while True:
            try:
                if not sock.recv(65536):
                    return
            except ConnectionResetError:
                return


def test_slowloris_connections_are_closed_at_the_header_timeout(arena):
    """50 connections send their HTTP head one byte every tenth of a second: each is closed
    once header_timeout has passed, well before its head would be complete; meanwhile a new
    player matchmakes, joins and plays, and the bystander keeps echoing."""
    running, bystander, events, watch = arena()
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 40 + b"\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(50)]
    mark = watch.mark()

    def drip(sock: socket.socket) -> int:
        sent = 0
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return sent  # closed by the server
            sent += 1
            gevent.sleep(0.1)  # the slowloris's pace, not a synchronisation
        return sent

    drips = [gevent.spawn(drip, sock) for sock in socks]
    player = running.connect("echo")
    player.send("echo", "served meanwhile")
    assert player.wait_for_message("echo") == "served meanwhile"
    bystander.check()
    for sock in socks:
        _wait_eof(sock)
    gevent.joinall(drips, timeout=10)
    assert all(job.value < len(head) for job in drips)  # no head was ever completed
    lines = [line for line in watch.since(mark) if "no complete request head" in line]
    assert len(lines) == 50
    watch.assert_no_traceback()
    bystander.check()


def test_a_matchmaking_body_sent_a_byte_at_a_time_is_a_408_at_the_header_timeout(arena):
    """The slow-body variant (R.U.D.Y.): the head is complete, the body drips. The route waits
    header_timeout for it, answers 408 in the protocol's shape with one log line, and closes
    the connection (its stream is no longer at a request boundary)."""
    running, bystander, events, watch = arena()
    body = b'{"name": "' + b"x" * 80 + b'"}'
    sock = socket.create_connection(("127.0.0.1", running.port))
    sock.sendall(b"POST /matchmake/joinOrCreate/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    mark = watch.mark()

    def drip() -> None:
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            gevent.sleep(0.1)  # the attacker's pace, not a synchronisation

    dripping = gevent.spawn(drip)
    bystander.check()
    answer = b""
    with gevent.Timeout(5, AssertionError("no answer to the slow body")):
        while chunk := sock.recv(65536):
            answer += chunk
    dripping.kill()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"Connection: close" in head, head
    assert json.loads(payload) == {"code": 408, "error": f"request body not received within "
                                                          f"{HEADER_TIMEOUT:g} s"}
    assert len([line for line in watch.since(mark) if "408" in line]) == 1
    watch.assert_no_traceback()
    bystander.check()


def test_an_idle_keep_alive_connection_is_closed_at_the_header_timeout(arena):
    running, bystander, events, watch = arena()
    sock = socket.create_connection(("127.0.0.1", running.port))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    _wait_eof(sock)  # no second request: the connection does not stay open forever
    watch.assert_no_traceback()


def test_at_max_connections_the_server_stops_accepting_until_one_closes(arena):
    """The count is bounded: silent connections fill it, the limit is logged once, a newcomer
    waits in the listen backlog and is served once the header timeout frees the slots."""
    running, bystander, events, watch = arena(max_connections=20)
    pool = running.server.connection_limits.pool
    silent = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(30)]
    status = gevent.spawn(lambda: running.get("/health").status)
    assert status.get(timeout=10) == 200
    assert len(pool) <= 20
    for sock in silent:
        _wait_eof(sock)
    assert sum("the limit (GREENROOM_MAX_CONNECTIONS)" in line for line in watch.since(0)) >= 1
    watch.assert_no_traceback()
    bystander.check()


def test_clients_that_never_read_are_dropped_and_the_room_plays_on(arena):
    """Ten players stop reading while the room broadcasts 16 MiB: each is dropped (nothing read
    for send_timeout while its queue holds the rest, or the queue overflows) and its connection
    is reset, so the kernel frees the megabytes it still held for it (a plain close left them
    retransmitting in FIN-WAIT-1); the bystander, who reads, gets every blob and keeps echoing."""
    running, bystander, events, watch = arena()
    stalled = [raw_join(running.endpoint, "echo") for _ in range(10)]
    for peer in stalled:
        peer.ws._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    bystander.room.send("flood", 256)
    for _ in range(256):
        assert bystander.room.wait_for_message("blob", 10) == bytes(64 * 1024)
    left = {events.get(timeout=10)[1:2] for _ in range(20)}  # a drop and a leave each
    assert {(peer.session_id,) for peer in stalled} <= left
    for peer in stalled:
        _wait_eof(peer.ws._sock)  # reset: what the kernel held for it is discarded
    watch.assert_no_traceback()
    bystander.check()


def test_a_peer_that_vanishes_without_a_fin_is_dropped_by_the_ping_check(arena):
    """Through a proxy that stops forwarding and closes nothing: the server's pings go
    unanswered, it cuts the connection after pong_timeout (1006, on_drop) and the seat is free."""
    running, bystander, events, watch = arena(ping_interval=0.1, pong_timeout=0.3)
    proxy = BlackholeProxy(("127.0.0.1", running.port))
    try:
        vanished = Client(proxy.endpoint).join_or_create("echo")
        vanished.send("echo", "before")
        assert vanished.wait_for_message("echo") == "before"
        proxy.blackhole()
        assert proxy.server_closed.wait(5), "the server kept the half-open connection"
        assert events.get(timeout=5) == ("drop", vanished.session_id, 1006)
        assert events.get(timeout=5) == ("leave", vanished.session_id)
        vanished.drop()
    finally:
        proxy.close()
    watch.assert_no_traceback()
    bystander.check()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_greenroom_serve_applies_the_limits_it_is_given(serve_process, workers):
    """The settings reach the served process (and every worker of a cluster): a silent
    connection is closed at --header-timeout, and the process still serves."""
    proc, port = serve_process("examples/echo.py:server", "--workers", workers,
                               "--header-timeout", "0.3", "--max-connections", "100")
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    for sock in silent:
        _wait_eof(sock)
    room = Client(f"ws://127.0.0.1:{port}").join_or_create("echo")
    room.leave()


@pytest.mark.parametrize("option,value", [("--header-timeout", "-1"), ("--header-timeout", "0"),
                                          ("--max-connections", "0")])
def test_a_bad_limit_is_one_line_and_exit_2(option, value):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "greenroom.cli", "serve", "examples/echo.py:server",
                             option, value], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "expected a positive" in result.stderr, result.stderr
