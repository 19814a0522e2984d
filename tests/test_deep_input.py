"""Deeply nested client input (issue 13, the known case): a matchmaking body of 5,000 nested
JSON objects was answered 500 with a RecursionError traceback; MessagePack nested past what
msgpack can pack again reached the room and failed in its handler. Both are the client's error:
400 / ERROR 4217, one log line, no traceback, the server and its other clients untouched."""

import gevent
import pytest
from hostile import Bystander, Echo, LogWatch
from peers import raw_join

from greenroom import Server
from greenroom.client import parse_error, parse_message
from greenroom.protocol.codes import Code
from greenroom.protocol.depth import MAX_DEPTH
from greenroom.wsclient import ConnectionClosed


@pytest.fixture
def arena(greenroom_boot):
    server = Server()
    server.define("echo", Echo)
    running = greenroom_boot(server)
    watch = LogWatch().start()
    yield running, Bystander(running.connect("echo")), watch
    watch.stop()


def _post(running, body: bytes):
    return running.request("POST", "/matchmake/joinOrCreate/echo", body,
                           {"Content-Type": "application/json"})


@pytest.mark.parametrize("body", [
    b'{"a":' * 5000 + b"1" + b"}" * 5000,          # the reported case
    b"[" * 5000 + b"]" * 5000,                     # arrays: not an object either way
    b'{"a":' * 200 + b"1" + b"}" * 200,            # under json's limit, over greenroom's
    b'{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
], ids=["5000-objects", "5000-arrays", "200-objects", "10000-arrays-in-an-object"])
def test_a_deeply_nested_matchmaking_body_is_a_400_with_one_line(arena, body):
    running, bystander, watch = arena
    mark = watch.mark()
    response = _post(running, body)
    assert response.status == 400
    assert response.json() == {"code": 400, "error": f"request body nests deeper than {MAX_DEPTH} levels"}
    lines = watch.since(mark)
    assert len(lines) == 1 and "400 request body nests deeper" in lines[0], lines
    watch.assert_no_traceback()
    bystander.check()


def test_nesting_up_to_the_limit_is_accepted(arena):
    running, bystander, watch = arena
    body = b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert _post(running, body).status == 200
    watch.assert_no_traceback()


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 600, 1000, 5000])
def test_a_deeply_nested_message_is_refused_and_the_room_plays_on(arena, depth):
    """600 levels passed msgpack's C decoder (it takes 1024) and reached the echo handler, whose
    send could not pack it again (msgpack packs 512): a traceback in the room."""
    running, bystander, watch = arena
    peer = raw_join(running.endpoint, "echo")
    mark = watch.mark()
    peer.send(bytes([Code.ROOM_DATA]) + b"\xa4echo" + b"\x91" * depth + b"\xc0")
    with gevent.Timeout(10):
        code, message = parse_error(peer.ws.recv(5))
        assert code == 4217 and "nests deeper than" in message
        with pytest.raises(ConnectionClosed) as closed:
            peer.ws.recv(5)
    assert closed.value.code == 4002
    assert sum("invalid frame" in line for line in watch.since(mark)) == 1
    watch.assert_no_traceback()
    bystander.check()


def test_a_message_nested_up_to_the_limit_is_echoed(arena):
    running, bystander, watch = arena
    peer = raw_join(running.endpoint, "echo")
    peer.send(bytes([Code.ROOM_DATA]) + b"\xa4echo" + b"\x91" * MAX_DEPTH + b"\xc0")
    message_type, payload = parse_message(peer.ws.recv(5))
    depth = 0
    while isinstance(payload, list):
        payload, depth = payload[0] if payload else None, depth + 1
    assert (message_type, depth) == ("echo", MAX_DEPTH)
    watch.assert_no_traceback()
    bystander.check()
