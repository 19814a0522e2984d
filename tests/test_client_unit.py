"""greenroom.client: frame codecs on captured vectors, and the whole join path against a fake server.

The vectors are frames captured between the official clients and the real Colyseus 0.17 (v3
dialect) and 0.18 (v5 dialect) servers (shared/protocol/captures, copied here). The fake server
below is gevent pywsgi + gevent-websocket replaying those frames, so ``join_or_create`` is
exercised end to end (HTTP matchmaking, URL building, JOIN_ROOM, ack, state, messages, close
codes) without the real greenroom server.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import msgpack  # noqa: E402
import pytest  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402
from geventwebsocket.websocket import Header  # noqa: E402

from greenroom.client import (  # noqa: E402
    Client,
    ClientConnectionError,
    ClientTimeout,
    MatchMakeError,
    ProtocolError,
    RawStateDecoder,
    RequestError,
    RoomClosed,
    SeatReservation,
    encode_bytes_message,
    encode_message,
    encode_request,
    parse_error,
    parse_join_room,
    parse_message,
    parse_response,
)
from greenroom.protocol.primitives import decode_number, decode_string, encode_number, encode_string  # noqa: E402

TIMEOUT = 5
h = bytes.fromhex

# --- captured vectors ----------------------------------------------------------------------------
# capture_merge017.jsonl (Colyseus 0.17.51 server, v3 dialect), connection 3.
V3_RESERVATION = ('{"name":"echo","sessionId":"2FA23ri_C","roomId":"4g9wblSPV","processId":"mUykce4X9",'
                  '"room":{"name":"echo","roomId":"4g9wblSPV","processId":"mUykce4X9"}}')
V3_JOIN = h(
    "0a0934644f61757242384d06736368656d61"
    "8001ff01800002800108ff0282038000ff03800004800105800206800307ff0480a47469636b81a675696e743136"
    "ff0580a57469746c6581a6737472696e67ff0680a7706c6179657273820181a36d6170ff0780a36c6f6782ff81ac"
    "61727261793a737472696e67ff0882098001ff0980000a80010b80020cff0a80a46e616d6581a6737472696e67ff"
    "0b80a17881a66e756d626572ff0c80a17981a66e756d626572")
V3_STATE = h(
    "0e80040081a56c6f62627982018302ff018000a978377347677a6b3861038001a94c46586d66304b327704800"
    "2a96e3664503167355339058003a9324641323372695f4306ff0380a4626f7430812e82caf8800742ff0480a462"
    "6f7431814882ca5172ad41ff0580a4626f7432811782ca00094242ff0680a5616c69636581008200")
V3_WELCOME = h("0da777656c636f6d65de0002a973657373696f6e4964a9324641323372695f43a16e01")
V3_PATCH = h("0fff018003a9324641323372695f4306ff0680a5616c69636581008200ff00800400")

# capture018.jsonl (Colyseus 0.18.17 server, v5 dialect), connections 4 and 9 (auto-reconnect).
V5_RESERVATION = '{"name":"echo","sessionId":"WMp3g0WkJ","roomId":"0ICzbPcTB","processId":"CKBlWg2LU"}'
V5_JOIN = h(
    "0a097447496b627549485506736368656d61cca4"
    "8001ff01800002800108ff0280008203ff03800004800105800206800307ff0480a47469636b81a675696e743136"
    "ff0580a57469746c6581a6737472696e67ff0680a7706c617965727381a36d61708201ff0780a36c6f6781a56172"
    "72617982ff83a6737472696e67ff0880018209ff0980000a80010b80020cff0a80a46e616d6581a6737472696e67"
    "ff0b80a17881a66e756d626572ff0c80a17981a66e756d626572")
V5_STATE = h("0e80010081a56c6f62627982018302ff018000a9574d70336730576b4a03ff0380a5616c69636581008200")
V5_WELCOME = h("0da777656c636f6d65de0002a973657373696f6e4964a9574d70336730576b4aa16e01")
V5_PATCH = h("0f80010081a56c6f62627982018302ff018000a9574d70336730576b4a03ff0380a5616c69636581008200")
V5_RESUME_JOIN = h("0a09396b3158346751547306736368656d6100")  # skipHandshake=true: L = 0
V5_RESUME_STATE = h("0e80020081a56c6f62627982018302ff018000a9574d70336730576b4a03ff0380a5616c69"
                    "6365810a82ca0000a441ff028000a56669727374")

# Both dialects produced these identically.
ECHO_OBJECT = {"hello": "world", "n": 1, "f": 1.5, "arr": [1, 2, 3], "nested": {"ok": True}}
ECHO_REPLY = h("0da46563686fde0005a568656c6c6fa5776f726c64a16e01a166cb3ff8000000000000a36172729301"
               "0203a66e6573746564de0001a26f6bc3")
NUMERIC = h("0d07ac6e756d657269632074797065")  # type 7, "numeric type"; same bytes both ways
ECHO_EMPTY = h("0da46563686f")  # room.send("echo"): no payload; echoed as is
LOG_FIRST = h("0da36c6f67a56669727374")
BYTES_ASK = h("0da56279746573")
BYTES_REPLY = h("11a56279746573010203")
RAW_BYTES = h("11a3726177090807")  # room.sendBytes("raw", [9, 8, 7])
UNKNOWN_REPLY = h("0da7756e6b6e6f776ede0002a474797065a3726177a36d7367c403090807")
MOVE_PATCH = h("0fff03810a82ca0000a441")
ADD_REQUEST_RECORD = h("1500a3616464d4724092a161a1620203")  # msgpackr record form, from the SDK
ADD_RESPONSE = h("16000005")
ERROR_DENIED = h("0bcd0e02b064656e696564206279206f6e41757468")
KICK = h("0da46b69636b")
ERROR_520 = '{"code":520,"error":"provided room name \\"nosuchroom\\" not defined"}'

CAPTURE = {
    "v3": {"reservation": V3_RESERVATION, "join": V3_JOIN, "state": V3_STATE, "welcome": V3_WELCOME,
           "patch": V3_PATCH, "token": "4dOaurB8M", "handshake": V3_JOIN[18:]},
    "v5": {"reservation": V5_RESERVATION, "join": V5_JOIN, "state": V5_STATE, "welcome": V5_WELCOME,
           "patch": V5_PATCH, "token": "tGIkbuIHU", "handshake": V5_JOIN[20:]},
}


# --- codecs ----------------------------------------------------------------------------------------


def test_parse_join_room_v3():
    join = parse_join_room(V3_JOIN, "v3")
    assert (join.token, join.serializer_id, join.sections) == ("4dOaurB8M", "schema", {})
    assert join.handshake == V3_JOIN[18:] and join.handshake[:4] == h("8001ff01")


def test_parse_join_room_v5():
    join = parse_join_room(V5_JOIN, "v5")
    assert (join.token, join.serializer_id, join.sections) == ("tGIkbuIHU", "schema", {})
    assert len(join.handshake) == 164 and join.handshake == V5_JOIN[20:]


def test_parse_join_room_v5_skip_handshake():
    join = parse_join_room(V5_RESUME_JOIN, "v5")
    assert (join.token, join.serializer_id, join.handshake) == ("9k1X4gQTs", "schema", b"")


def test_parse_join_room_v5_sections_and_unknown_tags():
    frame = V5_JOIN + h("0103aabbcc") + h("0200") + h("07cc80") + bytes(128)
    join = parse_join_room(frame, "v5")
    assert join.handshake == V5_JOIN[20:]
    assert join.sections == {1: h("aabbcc"), 2: b"", 7: bytes(128)}


@pytest.mark.parametrize("frame, dialect", [
    (V3_JOIN, "v5"),                      # a v3 frame read as v5: 0x80 is no length
    (V5_JOIN[:30], "v5"),                 # truncated handshake
    (V5_JOIN + h("01cc"), "v5"),          # section length cut off
    (V5_JOIN + h("0105aa"), "v5"),        # section longer than the frame
    (h("0a09414243"), "v3"),              # token runs past the end
    (h("0b00a0"), "v3"),                  # not a JOIN_ROOM at all
])
def test_parse_join_room_rejects_malformed(frame, dialect):
    with pytest.raises(ProtocolError):
        parse_join_room(frame, dialect)


@pytest.mark.parametrize("frame, expected", [
    (ECHO_REPLY, ("echo", ECHO_OBJECT)),
    (NUMERIC, (7, "numeric type")),
    (ECHO_EMPTY, ("echo", None)),
    (BYTES_REPLY, ("bytes", b"\x01\x02\x03")),
    (UNKNOWN_REPLY, ("unknown", {"type": "raw", "msg": b"\t\x08\x07"})),
    (V5_WELCOME, ("welcome", {"sessionId": "WMp3g0WkJ", "n": 1})),
    (h("0dcb") + struct.pack("<d", 7.0) + h("c0"), (7, None)),  # 7.0 is the type 7
    (h("0dd1e803") + h("01"), (1000, 1)),
])
def test_parse_message(frame, expected):
    assert parse_message(frame) == expected


@pytest.mark.parametrize("frame", [h("0d"), h("0dc1"), h("0da46563686fc1"), h("0e00")])
def test_parse_message_rejects_malformed(frame):
    with pytest.raises(ProtocolError):
        parse_message(frame)


def test_parse_error_and_response():
    assert parse_error(ERROR_DENIED) == (526, "denied by onAuth")
    assert parse_response(ADD_RESPONSE) == (0, 0, 5)
    assert parse_response(h("16cd2c0101") + msgpack.packb("nope")) == (300, 1, "nope")
    assert parse_response(h("160700")) == (7, 0, None)


def test_encoders_match_the_sdk_bytes():
    assert encode_message(7, "numeric type") == NUMERIC
    assert encode_message("echo") == ECHO_EMPTY
    assert encode_message("log", "first") == LOG_FIRST
    assert encode_message("bytes") == BYTES_ASK
    assert encode_message("kick") == KICK
    assert encode_bytes_message("raw", b"\t\x08\x07") == RAW_BYTES
    assert encode_message("echo", None) == ECHO_EMPTY + h("c0")  # None is nil, not "no payload"
    # Payloads are plain MessagePack where the SDK sends a msgpackr record: same prefix, and the
    # payload decodes to the same object the record stands for.
    request = encode_request(0, "add", {"a": 2, "b": 3})
    assert request[:6] == ADD_REQUEST_RECORD[:6]
    assert msgpack.unpackb(request[6:]) == {"a": 2, "b": 3}
    with pytest.raises(ValueError):
        encode_message("", 1)
    with pytest.raises(TypeError):
        encode_message(None, 1)


def test_seat_reservation_shapes():
    flat = SeatReservation.from_json(json.loads(V5_RESERVATION))
    merged = SeatReservation.from_json(json.loads(V3_RESERVATION))
    nested = SeatReservation.from_json({"sessionId": "s", "room": {"name": "n", "roomId": "r", "processId": "p",
                                                                   "publicAddress": "example.org:80"}})
    assert (flat.name, flat.room_id, flat.process_id, flat.session_id) == ("echo", "0ICzbPcTB", "CKBlWg2LU", "WMp3g0WkJ")
    assert (merged.room_id, merged.session_id) == ("4g9wblSPV", "2FA23ri_C")
    assert (nested.room_id, nested.process_id, nested.public_address) == ("r", "p", "example.org:80")
    with pytest.raises(ProtocolError):
        SeatReservation.from_json({"name": "echo", "roomId": "r", "processId": "p"})


def test_room_urls():
    reservation = SeatReservation.from_json(json.loads(V5_RESERVATION))
    client = Client("http://example.org:8080/game/?region=eu", auth_token="t0k")
    assert client.http_base == "http://example.org:8080/game"
    assert client.room_url(reservation) == ("ws://example.org:8080/game/CKBlWg2LU/0ICzbPcTB"
                                            "?region=eu&sessionId=WMp3g0WkJ&_authToken=t0k")
    secure = Client("wss://example.org")
    reservation.public_address = "node7.example.org:2567"
    reservation.reconnection_token = "abc"
    assert secure.room_url(reservation) == ("wss://node7.example.org:2567/CKBlWg2LU/0ICzbPcTB"
                                            "?sessionId=WMp3g0WkJ&reconnectionToken=abc")
    assert Client("ws://[::1]:2567").ws_base == "ws://[::1]:2567"
    with pytest.raises(ValueError):
        Client("ftp://example.org")


def test_raw_state_decoder_keeps_whole_frames():
    decoder = RawStateDecoder(keep=2)
    decoder.handshake(b"hs")
    for frame in (V5_STATE, V5_PATCH, MOVE_PATCH):
        (decoder.full if frame[0] == 0x0E else decoder.patch)(frame[1:])
    assert list(decoder.frames) == [V5_PATCH, MOVE_PATCH] and decoder.state == MOVE_PATCH[1:]
    silent = RawStateDecoder(keep=0)
    silent.full(b"x")
    assert len(silent.frames) == 0 and silent.state == b"x"


# --- fake Colyseus server replaying the captures ---------------------------------------------------


def _close_frame(code: int, reason: str = "") -> bytes:
    payload = struct.pack("!H", code) + reason.encode()
    return bytes(Header.encode_header(True, 0x8, b"", len(payload), 0)) + payload


def _server_close(ws, code: int, reason: str = "") -> None:
    """Close with a code (gevent-websocket 0.10.1 cannot: D7) and wait for the client's answer."""
    ws.raw_write(_close_frame(code, reason))
    with gevent.Timeout(TIMEOUT, False):
        while ws.read_frame()[0].opcode != 0x8:
            pass
    ws.closed = True


def _json(start_response, status: str, body: str, content_type: str = "application/json"):
    data = body.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


class FakeColyseus:
    """/v3/... serves the 0.17 capture, /v5/... the 0.18 one (a path prefix per dialect)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.sockets: list[dict] = []

    def __call__(self, environ, start_response):
        _, dialect, rest = environ["PATH_INFO"].split("/", 2)
        ws = environ.get("wsgi.websocket")
        if ws is not None:
            self.room_socket(ws, dialect, rest, {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()})
            return []
        _, method, name = rest.split("/")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"null")
        self.requests.append({"dialect": dialect, "method": method, "name": name, "body": body,
                              "authorization": environ.get("HTTP_AUTHORIZATION"),
                              "query": environ["QUERY_STRING"]})
        if name == "nosuchroom":
            return _json(start_response, "520 unknown", ERROR_520)
        if name == "error-in-200":
            return _json(start_response, "200 OK", '{"code":523,"error":"oops"}')
        if name == "not-json":
            return _json(start_response, "200 OK", "hello", "text/plain")
        reservation = json.loads(CAPTURE[dialect]["reservation"])
        if body.get("deny"):
            reservation["sessionId"] = "deny"
        elif "sid" in body:
            reservation["sessionId"] = body["sid"]
        if method == "reconnect":
            assert name == reservation["roomId"]
            reservation["sessionId"] = "again-" + body["reconnectionToken"]
        return _json(start_response, "200 OK", json.dumps(reservation))

    def room_socket(self, ws, dialect: str, path: str, query: dict) -> None:
        capture = CAPTURE[dialect]
        conn = {"dialect": dialect, "path": path, "query": query, "frames": []}
        self.sockets.append(conn)
        sid = query["sessionId"]
        if sid == "deny":
            ws.send(ERROR_DENIED)
            return _server_close(ws, 4002)
        if sid == "early":
            return _server_close(ws, 4010, "restarting")
        if sid == "silent":
            ws.receive()
            return
        if sid == "eager":  # a message right behind JOIN_ROOM, before the ack, in one TCP write
            early = encode_string_message("early")
            ws.raw_write(b"".join(bytes(Header.encode_header(True, 0x2, b"", len(f), 0)) + f
                                  for f in (capture["join"], early)))
        elif query.get("skipHandshake") == "true":  # v3 has no length prefix to set to 0
            ws.send(V5_RESUME_JOIN if dialect == "v5" else V5_RESUME_JOIN[:-1])
        else:
            ws.send(capture["join"])
        ack = ws.receive()
        if ack is None:
            return
        conn["frames"].append(bytes(ack))
        ws.send(V5_RESUME_STATE if query.get("skipHandshake") else capture["state"])
        ws.send(capture["welcome"])
        ws.send(capture["patch"])
        while True:
            frame = ws.receive()
            if frame is None:
                return
            frame = bytes(frame)
            conn["frames"].append(frame)
            if self.answer(ws, frame) == "closed":
                return

    def answer(self, ws, frame: bytes) -> str | None:
        if frame == b"\x12":
            ws.send(b"\x12")
        elif frame == b"\x0c":
            _server_close(ws, 4000)
            return "closed"
        elif frame.startswith(ECHO_EMPTY):
            payload = frame[len(ECHO_EMPTY):]
            ws.send(ECHO_REPLY if payload and msgpack.unpackb(payload) == ECHO_OBJECT else frame)
        elif frame.startswith(NUMERIC[:2]):
            ws.send(frame)
        elif frame == BYTES_ASK:
            ws.send(BYTES_REPLY)
        elif frame == RAW_BYTES:
            ws.send(UNKNOWN_REPLY)
        elif frame.startswith(h("0da46d6f7665")):  # "move"
            ws.send(MOVE_PATCH)
        elif frame == KICK:
            _server_close(ws, 4123, "kicked by request")
            return "closed"
        elif frame == encode_string_message("please-leave"):
            ws.send(b"\x0c")  # LEAVE_ROOM from the server: the client must answer with its own
        elif frame == encode_string_message("error"):
            ws.send(b"\x0b" + encode_number(4217) + encode_string('room onMessage for "x" not registered.'))
        elif frame == encode_string_message("junk"):
            ws.send(h("6301"))
        elif frame[0] == 0x15:
            request_id, pos = decode_number(frame, 1)
            msg_type, pos = decode_string(frame, pos)
            payload = msgpack.unpackb(frame[pos:]) if pos < len(frame) else None
            head = b"\x16" + encode_number(request_id)
            if msg_type == "add":
                ws.send(head + b"\x00" + msgpack.packb(payload["a"] + payload["b"]))
            elif msg_type == "nope":
                ws.send(head + b"\x01" + msgpack.packb("not allowed"))
            elif msg_type == "boom":
                ws.send(head + b"\x02" + msgpack.packb({"name": "Error", "message": "boom"}))
        return None


def encode_string_message(msg_type: str) -> bytes:
    """The fake's own encoding of a payload-less ROOM_DATA (not the client's, on purpose)."""
    return b"\x0d" + encode_string(msg_type)


@pytest.fixture(scope="module")
def fake():
    app = FakeColyseus()
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler, log=None)
    server.start()
    app.port = server.server_port
    yield app
    server.stop(timeout=1)


@pytest.fixture(params=["v3", "v5"])
def dialect(request):
    return request.param


@pytest.fixture
def client(fake, dialect):
    return Client(f"http://127.0.0.1:{fake.port}/{dialect}", dialect=dialect)


def _socket_of(fake, room) -> dict:
    return next(s for s in reversed(fake.sockets) if s["query"].get("sessionId") == room.session_id)


# --- end to end ------------------------------------------------------------------------------------


def test_join_or_create_end_to_end(fake, client, dialect):
    capture = CAPTURE[dialect]
    room = client.join_or_create("echo", {"name": "alice"}, timeout=TIMEOUT)
    states = []
    room.on_state_change(states.append)  # registered after the join: must still see the first state

    reservation = json.loads(capture["reservation"])
    assert (room.name, room.room_id, room.session_id) == ("echo", reservation["roomId"], reservation["sessionId"])
    assert room.reconnection_token == f"{reservation['roomId']}:{capture['token']}"
    assert room.serializer_id == "schema" and room.handshake == capture["handshake"]
    request = fake.requests[-1]
    assert (request["method"], request["name"], request["body"]) == ("joinOrCreate", "echo", {"name": "alice"})

    welcome = {"sessionId": reservation["sessionId"], "n": 1}
    assert room.wait_for_message("welcome", TIMEOUT) == welcome  # arrived before the call: buffered
    room.wait_for_state(lambda state: room.state_version >= 2, TIMEOUT)
    assert list(room.state_frames)[:2] == [capture["state"], capture["patch"]]
    assert states[:2] == [capture["state"][1:], capture["patch"][1:]]

    socket_ = _socket_of(fake, room)
    assert socket_["path"] == f"{reservation['processId']}/{reservation['roomId']}"
    assert socket_["frames"][0] == b"\x0a"  # the JOIN_ROOM ack
    assert room.leave() == 4000
    assert socket_["frames"][-1] == b"\x0c"
    assert room.protocol_errors == []


def test_messages_both_ways(fake, client):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    echoed = gevent.event.AsyncResult()
    room.on_message("echo", echoed.set)
    wildcard = []
    room.on_message("*", lambda msg_type, payload: wildcard.append(msg_type))

    room.send("echo", ECHO_OBJECT)
    assert echoed.get(timeout=TIMEOUT) == ECHO_OBJECT
    room.send(7, "numeric type")
    assert room.wait_for_message(7, TIMEOUT) == "numeric type"
    room.send("bytes")
    assert room.wait_for_message("bytes", TIMEOUT) == b"\x01\x02\x03"
    room.send_bytes("raw", b"\t\x08\x07")
    assert room.wait_for_message("unknown", TIMEOUT) == {"type": "raw", "msg": b"\t\x08\x07"}
    # Handlers registered right after the join see everything after JOIN_ROOM, welcome included.
    assert wildcard == ["welcome", 7, "bytes", "unknown"]
    room.send("move", {"x": 10, "y": 20.5})
    room.wait_for_state(lambda state: state == MOVE_PATCH[1:], TIMEOUT)
    assert 0 < room.ping(TIMEOUT) < TIMEOUT
    room.leave()


def test_handlers_registered_after_join_see_frames_sent_before_the_ack(fake, client):
    room = client.join_or_create("echo", {"sid": "eager"}, timeout=TIMEOUT)
    early = []
    room.on_message("early", early.append)
    room.ping(TIMEOUT)
    assert early == [None]
    room.leave()


def test_wildcard_gets_only_types_without_a_handler(fake, client):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    seen = []
    done = gevent.event.AsyncResult()
    room.on_message("*", lambda msg_type, payload: seen.append(msg_type))
    room.on_message("unknown", done.set)
    room.send(7, "x")
    room.send_bytes("raw", b"\t\x08\x07")
    assert done.get(timeout=TIMEOUT) == {"type": "raw", "msg": b"\t\x08\x07"}
    assert seen == ["welcome", 7]  # "unknown" has its own handler
    room.leave()


def test_wait_for_message_buffer_order_and_wildcard(fake, client):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    room.send(7, "a")
    room.send(7, "b")
    room.send("echo", "c")
    assert room.wait_for_message("*", TIMEOUT)[0] == "welcome"  # oldest first, whatever its type
    assert room.wait_for_message(7, TIMEOUT) == "a"
    assert room.wait_for_message("echo", TIMEOUT) == "c"  # skips the buffered 7 "b"
    assert room.wait_for_message(7, TIMEOUT) == "b"
    with pytest.raises(ClientTimeout) as info:
        room.wait_for_message("never", timeout=0.05)
    assert "'never'" in str(info.value) and isinstance(info.value, TimeoutError)
    room.leave()


def test_request_response(fake, fake_v5_client):
    room = fake_v5_client.join_or_create("echo", timeout=TIMEOUT)
    assert room.request("add", {"a": 2, "b": 3}, TIMEOUT) == 5
    assert room.request("add", {"a": 40, "b": 2}, TIMEOUT) == 42
    with pytest.raises(RequestError) as rejected:
        room.request("nope", timeout=TIMEOUT)
    assert (rejected.value.status, rejected.value.payload) == (1, "not allowed")
    with pytest.raises(RequestError) as failed:
        room.request("boom", timeout=TIMEOUT)
    assert failed.value.status == 2 and failed.value.payload["message"] == "boom"
    with pytest.raises(ClientTimeout):
        room.request("unanswered", timeout=0.05)
    frames = _socket_of(fake, room)["frames"]
    assert frames[1] == h("1500a3616464") + msgpack.packb({"a": 2, "b": 3})
    room.leave()


@pytest.fixture
def fake_v5_client(fake):
    return Client(f"ws://127.0.0.1:{fake.port}/v5", dialect="v5")


def test_errors_after_join_go_to_on_error(fake, client):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    errors = gevent.event.AsyncResult()
    room.on_error(lambda code, message: errors.set((code, message)))
    room.send("error")
    assert errors.get(timeout=TIMEOUT) == (4217, 'room onMessage for "x" not registered.')
    assert room.errors == [(4217, 'room onMessage for "x" not registered.')]
    room.leave()


def test_kick_reports_close_code_to_on_leave(fake, client):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    left = gevent.event.AsyncResult()
    room.on_leave(lambda code, reason: left.set((code, reason)))
    room.send("kick")
    assert left.get(timeout=TIMEOUT) == (4123, "kicked by request")
    assert room.wait_closed(TIMEOUT) == (4123, "kicked by request")
    with pytest.raises(RoomClosed):
        room.send("echo", 1)
    with pytest.raises(RoomClosed):
        room.wait_for_message("nothing", TIMEOUT)


def test_leave_room_from_server_is_answered(fake, client):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    room.send("please-leave")
    assert room.wait_closed(TIMEOUT)[0] == 4000
    assert _socket_of(fake, room)["frames"][-1] == b"\x0c"


def test_non_consented_leave_sends_close_without_code(fake, client):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    assert room.leave(consented=False) == 1005  # gevent-websocket answers with an empty close frame
    assert b"\x0c" not in _socket_of(fake, room)["frames"]


def test_matchmake_error(fake, client):
    with pytest.raises(MatchMakeError) as info:
        client.join_or_create("nosuchroom", timeout=TIMEOUT)
    assert (info.value.code, info.value.message) == (520, 'provided room name "nosuchroom" not defined')


def test_error_in_a_200_and_non_json_are_reported(fake, client):
    with pytest.raises(MatchMakeError) as info:
        client.join_or_create("error-in-200", timeout=TIMEOUT)
    assert info.value.code == 523 and "non-2xx" in info.value.message
    with pytest.raises(ProtocolError):
        client.join_or_create("not-json", timeout=TIMEOUT)


def test_error_frame_during_join(fake, client):
    with pytest.raises(MatchMakeError) as info:
        client.join_or_create("echo", {"deny": True}, timeout=TIMEOUT)
    assert (info.value.code, info.value.message, info.value.close_code) == (526, "denied by onAuth", 4002)


def test_close_before_join_room(fake, client):
    with pytest.raises(MatchMakeError) as info:
        client.join_or_create("echo", {"sid": "early"}, timeout=TIMEOUT)
    assert (info.value.code, info.value.close_code) == (4010, 4010) and "restarting" in info.value.message


def test_join_timeout(fake, client):
    with pytest.raises(ClientTimeout) as info:
        client.join_or_create("echo", {"sid": "silent"}, timeout=0.3)
    assert "JOIN_ROOM" in str(info.value)


def test_dialect_mismatch_is_detected(fake, dialect):
    other = "v5" if dialect == "v3" else "v3"
    client = Client(f"ws://127.0.0.1:{fake.port}/{dialect}", dialect=other)
    if other == "v5":  # v3 bytes read as v5: the handshake has no length prefix
        with pytest.raises(ProtocolError):
            client.join_or_create("echo", timeout=TIMEOUT)
    else:  # v5 bytes read as v3: parses, but the length prefix gives it away
        room = client.join_or_create("echo", timeout=TIMEOUT)
        assert any("v5 dialect" in error for error in room.protocol_errors)
        room.leave()


def test_manual_reconnect(fake, client, dialect):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    room.leave(consented=False)
    again = client.reconnect(room.reconnection_token, timeout=TIMEOUT)
    request = fake.requests[-1]
    token = CAPTURE[dialect]["token"]
    assert (request["method"], request["name"], request["body"]) == ("reconnect", room.room_id, {"reconnectionToken": token})
    assert again.session_id == f"again-{token}"
    assert _socket_of(fake, again)["query"]["reconnectionToken"] == token
    again.leave()


def test_drop_and_resume_like_the_sdk(fake, fake_v5_client):
    room = fake_v5_client.join_or_create("echo", timeout=TIMEOUT)
    echoes = []
    room.on_message(7, echoes.append)
    room.drop()
    assert room.wait_closed(TIMEOUT)[0] == 1006
    room.resume(TIMEOUT)
    query = _socket_of(fake, room)["query"]
    assert (query["reconnectionToken"], query["skipHandshake"]) == ("tGIkbuIHU", "true")
    assert room.reconnection_token == "0ICzbPcTB:9k1X4gQTs" and room.last_join.handshake == b""
    assert room.handshake == CAPTURE["v5"]["handshake"]  # kept from the first join
    room.wait_for_state(lambda state: state == V5_RESUME_STATE[1:], TIMEOUT)
    room.send(7, "still here")
    assert room.wait_for_message(7, TIMEOUT) == "still here" and echoes == ["still here"]
    room.leave()


def test_auth_token_reaches_http_and_socket(fake, dialect):
    client = Client(f"ws://127.0.0.1:{fake.port}/{dialect}?region=eu", dialect=dialect, auth_token="s3cret")
    room = client.join_or_create("echo", timeout=TIMEOUT)
    assert fake.requests[-1]["authorization"] == "Bearer s3cret" and fake.requests[-1]["query"] == "region=eu"
    query = _socket_of(fake, room)["query"]
    assert (query["_authToken"], query["region"]) == ("s3cret", "eu")
    room.leave()


def test_send_raw_and_unknown_frames(fake, client):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    room.send_raw(h("fe01"))
    room.send("junk")  # the fake answers with a frame of unknown code 0x63
    room.ping(TIMEOUT)  # frames are handled in order: both are processed once the ping returns
    assert h("fe01") in _socket_of(fake, room)["frames"]
    assert any("0x63" in error for error in room.protocol_errors)
    room.leave()


def test_callbacks_cannot_wait_on_their_own_room_but_can_leave(fake, client):
    room = client.join_or_create("echo", timeout=TIMEOUT)
    outcome = []

    def callback(payload):
        try:
            room.ping(1)
        except RuntimeError as exc:
            outcome.append(exc)
        outcome.append(room.leave())  # only starts leaving: returns None at once

    room.on_message(7, callback)
    room.send(7, "go")
    assert room.wait_closed(TIMEOUT)[0] == 4000
    assert "callback" in str(outcome[0]) and outcome[1:] == [None]


def test_matchmaking_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ClientConnectionError):
        Client(f"ws://127.0.0.1:{port}").join_or_create("echo", timeout=TIMEOUT)


def test_100_concurrent_clients(fake, client):
    def bot(i: int) -> int:
        room = client.join_or_create("echo", {"name": f"bot{i}"}, timeout=TIMEOUT)
        room.send(7, i)
        value = room.wait_for_message(7, TIMEOUT)
        assert room.leave() == 4000
        return value

    greenlets = [gevent.spawn(bot, i) for i in range(100)]
    gevent.joinall(greenlets, timeout=20, raise_error=True)
    assert [g.value for g in greenlets] == list(range(100))
