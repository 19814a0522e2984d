"""The echo example served for real, driven over HTTP and WebSocket by the Python client."""

import http.client
import json
import logging

import gevent
import pytest
from gevent.queue import Queue

from greenroom import Room, Server
from greenroom.client import Client, MatchMakeError
from greenroom.schema import speedups


@pytest.fixture
def client(echo_server):
    return Client(echo_server.endpoint)


def post(running, path, body, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    conn.request("POST", path, body=body, headers=headers or {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_join_welcome_echo_numeric_bytes_wildcard(client):
    room = client.join_or_create("echo", {"name": "alice"})
    assert room.wait_for_message("welcome") == {"sessionId": room.session_id, "n": 1}
    payload = {"x": 1, "y": "two", "z": [1, 2, 3], "nested": {"a": True}}
    room.send("echo", payload)
    assert room.wait_for_message("echo") == payload
    room.send(7, "numeric type")
    assert room.wait_for_message(7) == "numeric type"
    room.send("bytes")
    assert bytes(room.wait_for_message("bytes")) == b"\x01\x02\x03"
    room.send("whatever", {"k": 1})
    assert room.wait_for_message("unknown") == {"type": "whatever", "msg": {"k": 1}}
    assert room.ping() >= 0
    assert room.leave() == 4000


def test_kick_closes_with_the_application_code(client):
    room = client.join_or_create("echo")
    room.send("kick")
    assert room.wait_closed() == (4123, "kicked by request")


def test_on_auth_refusal_is_526_with_its_message(client):
    with pytest.raises(MatchMakeError) as err:
        client.join_or_create("echo", {"deny": True})
    assert (err.value.code, err.value.message, err.value.close_code) == (526, "denied by onAuth", 4002)


def test_unknown_room_name_is_520(client):
    with pytest.raises(MatchMakeError) as err:
        client.join_or_create("nosuchroom")
    assert err.value.code == 520


def test_join_by_id_missing_and_full_are_522(client):
    with pytest.raises(MatchMakeError) as err:
        client.join_by_id("nosuchid")
    assert err.value.code == 522
    first = client.create("echo")
    others = [client.join_by_id(first.room_id) for _ in range(3)]
    with pytest.raises(MatchMakeError) as err:
        client.join_by_id(first.room_id)
    assert err.value.code == 522
    for room in [first, *others]:
        room.leave()


def test_a_used_seat_is_refused_with_524_and_close_4002(echo_server, client):
    reservation = client.matchmake("joinOrCreate", "echo", {})
    room = client.consume_seat_reservation(reservation)
    with pytest.raises(MatchMakeError) as err:
        client.consume_seat_reservation(reservation)
    assert (err.value.code, err.value.close_code) == (524, 4002)
    assert "seat reservation expired" in err.value.message
    room.send("echo", "still here")
    assert room.wait_for_message("echo") == "still here"


def test_an_expired_seat_is_refused_with_524(serve):
    disposed = gevent.event.Event()

    class Short(Room):
        seat_reservation_timeout = 0.1

        def on_dispose(self):
            disposed.set()

    server = Server()
    server.define("short", Short)
    running = serve(server)
    client = Client(running.endpoint)
    reservation = client.matchmake("joinOrCreate", "short", {})
    assert disposed.wait(5)
    with pytest.raises(MatchMakeError) as err:
        client.consume_seat_reservation(reservation)
    assert (err.value.code, err.value.close_code) == (524, 4002)


def test_malformed_json_is_400_and_non_object_options_too(echo_server):
    response, data = post(echo_server, "/matchmake/joinOrCreate/echo", b"{not json")
    assert response.status == 400
    assert json.loads(data) == {"code": 400, "error": "malformed request body"}
    response, data = post(echo_server, "/matchmake/joinOrCreate/echo", b"[1, 2]")
    assert response.status == 400
    response, data = post(echo_server, "/matchmake/teleport/echo", b"{}")
    assert response.status == 520 and "teleport" in json.loads(data)["error"]


def test_cors_preflight_and_origin_echo(echo_server):
    conn = http.client.HTTPConnection("127.0.0.1", echo_server.port, timeout=10)
    conn.request("OPTIONS", "/matchmake/joinOrCreate/echo", headers={"Origin": "https://game.example"})
    response = conn.getresponse()
    response.read()
    assert response.status == 204
    assert response.getheader("Access-Control-Allow-Origin") == "https://game.example"
    assert response.getheader("Access-Control-Allow-Credentials") == "true"
    assert "Authorization" in response.getheader("Access-Control-Allow-Headers")
    response, _ = post(echo_server, "/matchmake/joinOrCreate/echo", b"{}",
                       {"Content-Type": "application/json", "Origin": "https://game.example"})
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Access-Control-Allow-Origin") == "https://game.example"


def test_health(echo_server, client):
    room = client.join_or_create("echo")
    conn = http.client.HTTPConnection("127.0.0.1", echo_server.port, timeout=10)
    conn.request("GET", "/health")
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 200
    assert body["status"] == "ok" and body["rooms"] == 1 and body["clients"] == 1
    assert body["processId"] == echo_server.server.process_id
    assert body["encoder"] == speedups.implementation()
    room.leave()


class Recorder(Room):
    """Records leaves; 'boom' raises inside the handler."""

    max_message_size = 1024
    leaves: Queue

    def on_create(self, options):
        self.on_message("echo", lambda client, message: client.send("echo", message))
        self.on_message("boom", self.boom)

    def boom(self, client, message):
        raise RuntimeError("boom from the handler")

    def on_leave(self, client, consented):
        type(self).leaves.put((client.session_id, consented))


@pytest.fixture
def recorder(serve):
    class Rec(Recorder):
        leaves = Queue()

    server = Server()
    server.define("rec", Rec)
    running = serve(server)
    return running, Rec.leaves


def test_oversized_message_closes_1009_and_calls_on_leave(recorder):
    running, leaves = recorder
    client = Client(running.endpoint)
    big = client.join_or_create("rec")
    other = client.join_or_create("rec")
    assert big.room_id == other.room_id
    big.send("echo", "x" * 2000)
    assert big.wait_closed()[0] == 1009
    assert leaves.get(timeout=5) == (big.session_id, False)
    other.send("echo", "fine")
    assert other.wait_for_message("echo") == "fine"


@pytest.mark.parametrize("frame", [
    bytes.fromhex("0da46563686fc1"),        # a MessagePack byte that starts nothing
    bytes.fromhex("0da46563686fd4724093"),  # a record cut short
    bytes.fromhex("0dd9"),                  # a type cut short
    bytes.fromhex("63"),                    # no such protocol code
])
def test_undecodable_frames_get_error_4217_and_close_4002_room_unaffected(recorder, frame):
    running, leaves = recorder
    client = Client(running.endpoint)
    bad = client.join_or_create("rec")
    good = client.join_or_create("rec")
    errors = Queue()
    bad.on_error(lambda code, message: errors.put(code))
    bad.send_raw(frame)
    assert errors.get(timeout=5) == 4217
    assert bad.wait_closed()[0] == 4002
    assert leaves.get(timeout=5) == (bad.session_id, False)
    good.send("echo", "after")
    assert good.wait_for_message("echo") == "after"


def test_handler_exception_is_logged_in_one_entry_and_the_room_runs_on(recorder, caplog):
    running, _ = recorder
    client = Client(running.endpoint)
    room = client.join_or_create("rec")
    with caplog.at_level(logging.ERROR, logger="greenroom.room"):
        room.send("boom")
        room.send("echo", "after boom")
        assert room.wait_for_message("echo") == "after boom"
    records = [r for r in caplog.records if "boom from the handler" in r.getMessage()]
    assert len(records) == 1
    line = records[0].getMessage()
    assert room.room_id in line and room.session_id in line and "Traceback" in line


def test_unknown_message_type_without_wildcard_gets_4217_and_stays(recorder):
    running, _ = recorder
    room = Client(running.endpoint).join_or_create("rec")
    errors = Queue()
    room.on_error(lambda code, message: errors.put((code, message)))
    room.send("nope", 1)
    code, message = errors.get(timeout=5)
    assert code == 4217 and "nope" in message
    room.send("echo", "still joined")
    assert room.wait_for_message("echo") == "still joined"


def test_100_concurrent_python_clients_make_exactly_25_rooms(echo_server, client):
    jobs = [gevent.spawn(client.join_or_create, "echo", {"name": f"bot{i}"}, 30) for i in range(100)]
    gevent.joinall(jobs, timeout=60)
    failed = [job.exception for job in jobs if not job.successful()]
    assert failed == []
    rooms = {}
    for job in jobs:
        rooms.setdefault(job.value.room_id, []).append(job.value)
    assert len(rooms) == 25
    assert all(len(members) == 4 for members in rooms.values())
    for members in rooms.values():
        welcomes = sorted(m.wait_for_message("welcome")["n"] for m in members)
        assert welcomes == [1, 2, 3, 4]
    server_rooms = list(echo_server.matchmaker.rooms.values())
    assert all(len(r.clients) == 4 for r in server_rooms)
    gevent.joinall([gevent.spawn(job.value.leave) for job in jobs], timeout=30)
    for room in server_rooms:
        room._gr.wait_ended(10)  # the room's greenlet ends when it is disposed
    assert echo_server.matchmaker.rooms == {}


BLOB = 65536


def blob(i: int) -> bytes:
    return i.to_bytes(4, "big") + bytes([i % 251]) * (BLOB - 4)


class Flood(Room):
    """Sends ``count`` numbered 64 KiB blobs to the client that asks; echoes for the others."""

    send_timeout = 0.5
    events: Queue

    def on_create(self, options):
        self.on_message("flood", self.flood)
        self.on_message("echo", lambda client, message: client.send("echo", message))

    def flood(self, client, count):
        for i in range(count):
            client.send_bytes("blob", blob(i))
        type(self).events.put(("flooded", client.session_id))

    def on_leave(self, client, consented):
        type(self).events.put(("leave", client.session_id))


def flood_room(serve, **attributes):
    """(running server, a playing client's room, a bare socket joined to it that reads nothing)."""
    from greenroom.wsclient import connect

    cls = type("FloodRoom", (Flood,), {"events": Queue(), **attributes})
    server = Server()
    server.define("flood", cls)
    running = serve(server)
    client = Client(running.endpoint)
    other = client.join_or_create("flood")
    seat = client.matchmake("joinById", other.room_id, {})
    stalled = connect(client.room_url(seat))  # a bare socket: reads only when the test says
    stalled.send(b"\x0a")  # the join ack (JOIN_ROOM itself stays unread in the buffer)
    return running, other, stalled, seat.session_id, cls.events


@pytest.mark.parametrize("backlog", [256 * 1024, 64 * 1024 * 1024, None],
                         ids=["backlog-overflows", "nothing-read-for-send_timeout", "no-backlog"])
def test_a_client_that_stops_reading_is_dropped_and_the_room_plays_on(serve, caplog, backlog):
    """Dropped when its queue overflows, when it reads nothing for send_timeout while its queue
    holds the rest, or (no queue) when a send waited send_timeout; the others keep playing."""
    from greenroom.client import encode_message

    caplog.set_level(logging.INFO, "greenroom.web.wsfixes")
    running, other, stalled, session_id, events = flood_room(serve, send_backlog=backlog)
    stalled.send(encode_message("flood", 512))  # 32 MiB to a client that reads nothing
    seen = [events.get(timeout=20), events.get(timeout=20)]
    assert ("leave", session_id) in seen and ("flooded", session_id) in seen
    other.send("echo", "still here")
    assert other.wait_for_message("echo") == "still here"
    if backlog is not None:
        assert "it is not reading" in caplog.text


def test_a_slow_client_does_not_stall_its_room_and_gets_everything_in_order(serve):
    """What its socket does not take waits in its queue: the room answers others at once, and
    once the client reads, every frame arrives whole and in order."""
    from greenroom.client import encode_message
    from greenroom.protocol import frames

    running, other, stalled, session_id, events = flood_room(
        serve, send_timeout=60, send_backlog=64 * 1024 * 1024)
    count = 256  # 16 MiB: more than loopback's socket buffers hold
    stalled.send(encode_message("flood", count))
    assert events.get(timeout=20) == ("flooded", session_id)   # the room did not wait
    [server_room] = running.matchmaker.rooms.values()
    [slow] = [c for c in server_room.clients if c.session_id == session_id]
    assert slow.transport.ws._backlog_bytes > 0, "the flood fitted in the socket buffers"
    other.send("echo", "not stalled")
    assert other.wait_for_message("echo") == "not stalled"
    assert events.empty()                                      # nobody left
    assert stalled.recv(timeout=10)[0] == frames.Code.JOIN_ROOM
    for i in range(count):
        assert stalled.recv(timeout=10) == frames.room_data_bytes("blob", blob(i)), i
    stalled.close()
    assert events.get(timeout=10) == ("leave", session_id)
