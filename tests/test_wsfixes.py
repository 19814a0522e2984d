"""greenroom.web.wsfixes: gevent-websocket 0.10.1 fixed (docs/architecture.md, "gevent-websocket"), over real sockets.

Every test of a D7 defect also runs in a "stock" flavour -- gevent-websocket's own
WebSocketHandler with the class patches reverted -- marked ``xfail(strict=True)``: if a test stops
detecting the defect it was written for, the stock run passes and the suite fails.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):  # tests/conftest.py normally did it first
    monkey.patch_all()

import base64  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from urllib.parse import parse_qsl  # noqa: E402

import gevent  # noqa: E402
import gevent.queue  # noqa: E402
import geventwebsocket.handler  # noqa: E402
import pytest  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from geventwebsocket.exceptions import WebSocketError  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402
from geventwebsocket.utf8validator import Utf8Validator  # noqa: E402
from geventwebsocket.websocket import Header  # noqa: E402
from websockets.exceptions import ConnectionClosed as ClientConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from greenroom.web import unmask, wsfixes  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3 sample
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
EVENT_TIMEOUT = 5.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# --------------------------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------------------------


def _route_echo(ws, served, query):
    while True:
        try:
            message = ws.receive()
        except WebSocketError as exc:
            served.events.put(("raised", exc))
            return []
        if message is None:
            served.events.put(
                ("end", getattr(ws, "close_code", None), getattr(ws, "close_reason", None))
            )
            return []
        if isinstance(message, str) and message.startswith("kick:"):
            ws.close(int(message[5:]), "kicked")
            continue
        ws.send(message)


def _route_crash(ws, served, query):
    ws.receive()
    raise RuntimeError("room code crashed")


def _route_receive_after_end(ws, served, query):
    while ws.receive() is not None:
        pass
    served.events.put(("end",))
    try:
        ws.receive()  # the connection is over: raises, and must not be reported as a server error
    except WebSocketError as exc:
        served.events.put(("raised", type(exc).__name__))
        raise


def _route_returns_none(ws, served, query):
    while ws.receive() is not None:
        pass
    served.events.put(("end",))
    return None


def _route_kick_from_other_greenlet(ws, served, query):
    # The spawned greenlet runs once this one blocks inside receive(): a room closing a client
    # while the client's own greenlet is reading.
    gevent.spawn(ws.close, 4002, "replaced")
    return _route_echo(ws, served, query)


def _route_ping(ws, served, query):
    ws.send_frame(b"hb", OP_PING)  # bytes payload, as a heartbeat would send
    while ws.receive() is not None:
        pass
    served.events.put(("pong", getattr(ws, "last_pong", None) is not None))
    return []


def _route_concurrent_senders(ws, served, query):
    ws.handler.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    size = int(query["size"])
    senders = [gevent.spawn(ws.send, bytes([n]) * size) for n in (1, 2)]
    gevent.joinall(senders)
    served.events.put(("sent", [repr(g.exception) for g in senders if g.exception]))
    return _route_echo(ws, served, query)


def _route_nodelay(ws, served, query):
    served.events.put(("nodelay", ws.handler.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
    return _route_echo(ws, served, query)


def _route_stalled_reader(ws, served, query):
    ws.handler.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        ws.send(b"x" * (8 << 20))
    except WebSocketError as exc:
        served.events.put(("send-failed", exc))
    return []


ROUTES = {
    "/echo": _route_echo,
    "/crash": _route_crash,
    "/again": _route_receive_after_end,
    "/none": _route_returns_none,
    "/kick-later": _route_kick_from_other_greenlet,
    "/ping": _route_ping,
    "/concurrent": _route_concurrent_senders,
    "/stalled": _route_stalled_reader,
    "/nodelay": _route_nodelay,
}


def make_app(served):
    def app(environ, start_response):
        ws = environ.get("wsgi.websocket")
        if ws is None:
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
            return [b"plain"]
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        for name, cast in (("max", int), ("close_timeout", float), ("send_timeout", float)):
            if name in query:
                setattr(ws, "max_message_size" if name == "max" else name, cast(query[name]))
        return ROUTES[environ["PATH_INFO"]](ws, served, query)

    return app


class Served:
    """A WSGIServer on a real socket plus what the test observes from the server side."""

    def __init__(self, handler_base, listener, client_timeout):
        self.events = gevent.queue.Queue()
        self.errors = []  # exceptions that reached pywsgi's handle_error (logged as server errors)
        self.finished = gevent.queue.Queue()
        self.client_timeout = client_timeout
        self.clients = []
        served = self

        class Recording(handler_base):
            def handle_error(self, t, v, tb):
                served.errors.append(v)
                super().handle_error(t, v, tb)

            def handle(self):
                try:
                    super().handle()
                finally:
                    served.finished.put(self)

        self.server = WSGIServer(
            listener,
            make_app(self),
            handler_class=Recording,
            log=None,
            error_log=None,
            environ={"SERVER_NAME": "localhost"},
        )
        self.server.start()
        self.address = listener if isinstance(listener, str) else self.server.address

    def client(self, path="/echo", **handshake):
        client = RawClient(self.address, self.client_timeout)
        self.clients.append(client)
        if path is not None:
            client.handshake(path, **handshake)
        return client

    def next_event(self):
        try:
            return self.events.get(timeout=EVENT_TIMEOUT)
        except gevent.queue.Empty:
            raise AssertionError("the server reported nothing") from None

    def wait_finished(self, count=1):
        for _ in range(count):
            try:
                self.finished.get(timeout=EVENT_TIMEOUT)
            except gevent.queue.Empty:
                raise AssertionError("a connection handler did not finish") from None

    def stop(self):
        for client in self.clients:
            client.sock.close()
        self.server.stop(timeout=1)


@pytest.fixture
def start_server():
    """start_server(flavour, listener=...) -> Served; "stock" is gevent-websocket unfixed."""
    started = []
    reverted = []

    def start(flavour="fixed", listener=("127.0.0.1", 0)):
        if flavour == "stock":
            wsfixes.revert()
            reverted.append(True)
            served = Served(WebSocketHandler, listener, client_timeout=1.0)
        else:
            wsfixes.apply()
            served = Served(wsfixes.Handler, listener, client_timeout=5.0)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()
    if reverted:
        wsfixes.apply()


FLAVOURS = [
    "fixed",
    pytest.param(
        "stock",
        marks=pytest.mark.xfail(
            strict=True, raises=(AssertionError, OSError), reason="gevent-websocket 0.10.1 defect"
        ),
    ),
]


@pytest.fixture(params=FLAVOURS)
def flavour(request):
    return request.param


@pytest.fixture
def server(start_server):
    return start_server("fixed")


@pytest.fixture
def any_server(start_server, flavour):
    return start_server(flavour)


# --------------------------------------------------------------------------------------------
# A raw client: hand-built frames, so that it can also break the protocol
# --------------------------------------------------------------------------------------------


def mask_bytes(data, key):
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


class RawClient:
    def __init__(self, address, timeout, rcvbuf=None):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buffer = b""

    def send_request(self, path="/echo", key=KEY, version="13", http="HTTP/1.1", extra=()):
        lines = [f"GET {path} {http}", "Host: localhost", "Upgrade: websocket"]
        lines.append("Connection: Upgrade")
        if key is not None:
            lines.append(f"Sec-WebSocket-Key: {key}")
        if version is not None:
            lines.append(f"Sec-WebSocket-Version: {version}")
        lines.extend(extra)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def read_response(self):
        """(status, headers, body): the body is whatever arrives until EOF."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        body = b""
        if status != 101:
            body = self.read_until_eof()
        return status, headers, body

    def handshake(self, path="/echo", **kwargs):
        self.send_request(path, **kwargs)
        status, headers, _ = self.read_response()
        assert status == 101, status
        assert headers["sec-websocket-accept"] == ACCEPT

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.buffer += data

    def _exact(self, n):
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_until_eof(self):
        chunks = [self.buffer]
        self.buffer = b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    def send_frame(self, opcode, payload=b"", *, fin=True, masked=True, length=None):
        n = len(payload) if length is None else length
        first = (0x80 if fin else 0) | opcode
        mask_bit = 0x80 if masked else 0
        if n < 126:
            head = bytes((first, mask_bit | n))
        elif n < 65536:
            head = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
        else:
            head = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
        if masked:
            key = os.urandom(4)
            head += key
            payload = mask_bytes(payload, key)
        self.sock.sendall(head + payload)

    def send_close(self, code=None, reason=b""):
        payload = b"" if code is None else struct.pack("!H", code) + reason
        self.send_frame(OP_CLOSE, payload)

    def recv_frame(self):
        b0, b1 = self._exact(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._exact(8))
        return bool(b0 & 0x80), b0 & 0x0F, self._exact(n)

    def recv_message(self):
        fin, opcode, payload = self.recv_frame()
        assert fin and opcode in (OP_TEXT, OP_BINARY), (opcode, payload[:40])
        return payload.decode() if opcode == OP_TEXT else payload

    def recv_close(self):
        """The next frame must be a close frame: (code or None, reason)."""
        fin, opcode, payload = self.recv_frame()
        assert opcode == OP_CLOSE, (opcode, payload[:40])
        if not payload:
            return None, ""
        (code,) = struct.unpack("!H", payload[:2])
        return code, payload[2:].decode()


# --------------------------------------------------------------------------------------------
# 1. Unmasking in C, text validated once
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,impl", wsfixes.mask_implementations(), ids=[n for n, _ in wsfixes.mask_implementations()]
)
def test_every_unmask_implementation_matches_the_rfc_definition(name, impl):
    key = bytes((0x37, 0xFA, 0x21, 0x3D))
    for size in (0, 1, 3, 4, 5, 7, 125, 126, 4097, 65536 + 3):
        data = os.urandom(size)
        assert impl(data, key) == mask_bytes(data, key), (name, size)
        assert impl(bytearray(data), key) == mask_bytes(data, key), (name, size)


def test_a_c_unmasker_is_used_when_available():
    assert wsfixes.UNMASK_IMPL in ("websockets.speedups", "wsaccel")
    assert wsfixes.apply_mask is wsfixes.mask_implementations()[0][1]


def test_server_unmasks_with_apply_mask(any_server, monkeypatch):
    calls = []
    real = wsfixes.apply_mask

    def spy(data, key):
        calls.append(len(data))
        return real(data, key)

    monkeypatch.setattr(unmask, "apply_mask", spy)
    client = any_server.client()
    payload = os.urandom(4000)
    client.send_frame(OP_BINARY, payload)
    assert client.recv_message() == payload
    assert 4000 in calls


def test_text_is_validated_once_by_the_codec(any_server, monkeypatch):
    validations = []
    real = Utf8Validator.validate
    monkeypatch.setattr(
        Utf8Validator, "validate", lambda self, data: validations.append(1) or real(self, data)
    )
    client = any_server.client()
    client.send_frame(OP_TEXT, "héllo wörld".encode())
    assert client.recv_message() == "héllo wörld"
    # "é" split across two fragments is still valid UTF-8.
    client.send_frame(OP_TEXT, b"h\xc3", fin=False)
    client.send_frame(OP_CONT, b"\xa9llo", fin=True)
    assert client.recv_message() == "héllo"
    assert validations == []


@pytest.mark.parametrize("fragmented", [False, True])
def test_invalid_utf8_closes_1007(server, fragmented):
    client = server.client()
    # Fragmented: the bad byte is in the first fragment and the message is never finished --
    # the incremental decoder fails fast.
    client.send_frame(OP_TEXT, b"ok\xff", fin=not fragmented)
    assert client.recv_close()[0] == 1007
    kind, exc = server.next_event()
    assert kind == "raised" and isinstance(exc, wsfixes.InvalidUTF8) and exc.code == 1007


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_binary_round_trip(server, size):
    client = server.client()
    payload = os.urandom(size)
    client.send_frame(OP_BINARY, payload)
    assert client.recv_message() == payload


def test_binary_comes_back_as_bytes_and_text_as_str(server):
    client = server.client()
    client.send_frame(OP_BINARY, b"\x00\x01")
    client.send_frame(OP_TEXT, "ü".encode())
    assert client.recv_message() == b"\x00\x01"
    assert client.recv_message() == "ü"


def test_fragmented_message_with_a_ping_between_fragments(server):
    client = server.client()
    parts = [os.urandom(1000), os.urandom(70), os.urandom(3000)]
    client.send_frame(OP_BINARY, parts[0], fin=False)
    client.send_frame(OP_PING, b"mid")
    client.send_frame(OP_CONT, parts[1], fin=False)
    client.send_frame(OP_CONT, parts[2], fin=True)
    assert client.recv_frame() == (True, OP_PONG, b"mid")
    assert client.recv_message() == b"".join(parts)


@pytest.mark.parametrize(
    "frames",
    [
        [(OP_CONT, True)],  # continuation with nothing to continue
        [(OP_BINARY, False), (OP_TEXT, True)],  # new message inside a fragmented one
        [(0x3, True)],  # reserved opcode
    ],
)
def test_fragmentation_errors_close_1002(server, frames):
    client = server.client()
    for opcode, fin in frames:
        client.send_frame(opcode, b"x", fin=fin)
    assert client.recv_close()[0] == 1002


def test_round_trip_with_the_websockets_client(server):
    with connect(f"ws://127.0.0.1:{server.address[1]}/echo", open_timeout=5) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        blob = os.urandom(65536)
        ws.send(blob)
        assert ws.recv(timeout=5) == blob
    assert server.next_event() == ("end", 1000, "")


# --------------------------------------------------------------------------------------------
# 2. Close codes on the wire
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [4000, 4001, 4002, 4123])
def test_server_close_code_and_reason_reach_the_client(any_server, code):
    client = any_server.client()
    client.send_frame(OP_TEXT, f"kick:{code}".encode())
    assert client.recv_close() == (code, "kicked")
    client.send_close(code)  # the client's answer completes the handshake
    assert any_server.next_event() == ("end", code, "")
    assert client.read_until_eof() == b""


def test_websockets_client_sees_4123_kicked(any_server):
    port = any_server.address[1]
    with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=5, close_timeout=2) as ws:
        ws.send("kick:4123")
        with pytest.raises(ClientConnectionClosed):
            ws.recv(timeout=any_server.client_timeout)
    assert (ws.close_code, ws.close_reason) == (4123, "kicked")


def test_peer_close_code_is_echoed_and_exposed(any_server):
    client = any_server.client()
    client.send_close(4001, b"bye")
    assert client.recv_close()[0] == 4001
    assert any_server.next_event() == ("end", 4001, "bye")


def test_websockets_client_close_code_is_exposed(server):
    with connect(f"ws://127.0.0.1:{server.address[1]}/echo", open_timeout=5) as ws:
        ws.close(4002, "leaving")
    assert ws.close_code == 4002  # the server's answer carries the same code
    assert server.next_event() == ("end", 4002, "leaving")


def test_close_without_code_is_answered_without_code(server):
    client = server.client()
    client.send_close()
    assert client.recv_close() == (None, "")
    assert server.next_event() == ("end", 1005, "")


@pytest.mark.parametrize(
    "payload",
    [b"\x03", struct.pack("!H", 1005), struct.pack("!H", 999), struct.pack("!H", 2500)],
    ids=["one-byte", "1005", "999", "2500"],
)
def test_invalid_close_frames_close_1002(server, payload):
    client = server.client()
    client.send_frame(OP_CLOSE, payload)
    assert client.recv_close()[0] == 1002


def test_close_reason_with_invalid_utf8_closes_1007(server):
    client = server.client()
    client.send_close(1000, b"\xff")
    assert client.recv_close()[0] == 1007


def test_close_api_validates_and_truncates():
    with pytest.raises(ValueError):
        wsfixes._close_payload(1006, "")
    payload = wsfixes._close_payload(4000, "é" * 100)  # 200 bytes of reason
    assert len(payload) <= 125
    assert payload[:2] == struct.pack("!H", 4000)
    payload[2:].decode("utf-8")  # cut on a character boundary


# --------------------------------------------------------------------------------------------
# 3. Message size limit
# --------------------------------------------------------------------------------------------


def _expect_1009(served, client):
    assert client.recv_close()[0] == 1009
    kind, exc = served.next_event()
    assert kind == "raised" and isinstance(exc, wsfixes.MessageTooBig) and exc.code == 1009
    assert isinstance(exc, WebSocketError)


def test_2_62_length_header_closes_1009(any_server):
    client = any_server.client()
    client.send_frame(OP_BINARY, b"", length=2**62)  # header and mask only
    _expect_1009(any_server, client)


def test_size_is_checked_on_the_header_before_the_payload(any_server):
    client = any_server.client()
    # No payload follows: a server that tried to read it would never answer.
    client.send_frame(OP_BINARY, b"", length=64 * 1024 + 1)
    _expect_1009(any_server, client)


def test_fragmented_total_over_the_limit_closes_1009(any_server):
    client = any_server.client()
    client.send_frame(OP_BINARY, os.urandom(40000), fin=False)
    client.send_frame(OP_CONT, b"", fin=True, length=30000)
    _expect_1009(any_server, client)


def test_per_connection_limit(any_server):
    client = any_server.client("/echo?max=1024")
    client.send_frame(OP_BINARY, b"a" * 1024)
    assert client.recv_message() == b"a" * 1024
    client.send_frame(OP_BINARY, b"a" * 1025)
    _expect_1009(any_server, client)


def test_oversized_message_sent_in_full_still_delivers_1009(server):
    # The client has sent 200 KiB the server will never read: closing with that unread makes the
    # kernel answer RST, which can destroy the 1009 in flight and turns a clean close into a reset.
    client = server.client()
    client.send_frame(OP_BINARY, os.urandom(200 * 1024))
    _expect_1009(server, client)
    client.sock.shutdown(socket.SHUT_WR)
    assert client.read_until_eof() == b""


def test_default_limit_is_64_kib():
    assert wsfixes.WebSocket.max_message_size == 64 * 1024


# --------------------------------------------------------------------------------------------
# 4. Unmasked client frames
# --------------------------------------------------------------------------------------------


def test_unmasked_frame_closes_1002(any_server):
    client = any_server.client()
    client.send_frame(OP_BINARY, b"hello", masked=False)
    assert client.recv_close()[0] == 1002
    kind, exc = any_server.next_event()
    assert kind == "raised" and isinstance(exc, wsfixes.UnmaskedFrame) and exc.code == 1002


def test_stock_handler_gets_the_frame_fixes_on_request():
    """apply(patch_stock_handler=True): gevent-websocket's own WebSocketHandler builds the fixed
    WebSocket (for deployments still on geventwebsocket's gunicorn worker)."""
    served = None
    try:
        report = wsfixes.apply(patch_stock_handler=True)
        assert all(report.values()), report
        served = Served(WebSocketHandler, ("127.0.0.1", 0), client_timeout=5.0)
        client = served.client()
        client.send_frame(OP_BINARY, b"hello", masked=False)
        assert client.recv_close()[0] == 1002
    finally:
        if served is not None:
            served.stop()
        wsfixes.revert()
        wsfixes.apply()
    assert geventwebsocket.handler.WebSocket is geventwebsocket.websocket.WebSocket


# --------------------------------------------------------------------------------------------
# 5. Handshake
# --------------------------------------------------------------------------------------------


def _response(served, **request):
    client = served.client(path=None)
    client.send_request("/echo", **request)
    return client.read_response()


def _assert_short_reason(headers, body, *words):
    assert int(headers["content-length"]) == len(body), "the body must arrive complete"
    assert 0 < len(body) < 200
    for word in words:
        assert word.encode() in body


@pytest.mark.parametrize(
    "key",
    [
        "!!!notbase64!!!!!!!!!!!!",
        "abc",
        "dGhlIHNhbXBsZSBub25jZQ",
        base64.b64encode(b"x" * 15).decode(),
        base64.b64encode(b"x" * 17).decode(),
        "dGhlIHNhbXBsZSBub25jZQ=é",
    ],
    ids=["not-base64", "short", "unpadded", "15-bytes", "17-bytes", "non-ascii"],
)
def test_bad_key_is_400(any_server, key):
    status, headers, body = _response(any_server, key=key)
    assert status == 400
    _assert_short_reason(headers, body, "Sec-WebSocket-Key")
    assert not any_server.errors


def test_missing_key_is_400(any_server):
    status, headers, body = _response(any_server, key=None)
    assert status == 400
    _assert_short_reason(headers, body, "Sec-WebSocket-Key")


@pytest.mark.parametrize("version", ["12", "8", None])
def test_unsupported_version_is_426_with_version_13(any_server, version):
    status, headers, body = _response(any_server, version=version)
    assert status == 426
    assert headers["sec-websocket-version"] == "13"
    _assert_short_reason(headers, body, "Sec-WebSocket-Version")


def test_http_1_0_upgrade_is_400(any_server):
    status, headers, body = _response(any_server, http="HTTP/1.0")
    assert status == 400
    _assert_short_reason(headers, body, "HTTP/1.1")


def test_valid_handshake_and_plain_http_still_work(server):
    server.client()  # asserts 101 and the RFC sample accept token
    client = server.client(path=None)
    client.sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, _, body = client.read_response()
    assert (status, body) == (200, b"plain")


def test_connections_are_served_with_nagle_off(server):
    # pywsgi sends a response's headers and body in two writes: with Nagle's algorithm on, the
    # body of every keep-alive request after the first waits for the client's delayed ACK
    # (~40 ms on Linux; measured in benchmarks/). The Handler turns it off on every connection.
    server.client("/nodelay")
    kind, value = server.next_event()
    assert kind == "nodelay" and value != 0


def test_requests_reach_the_access_log_only_when_the_server_has_one(caplog):
    # WSGIServer(log=None) means no access log; the base class logged each request at INFO anyway
    for log in (None, logging.getLogger("test.access")):
        server = WSGIServer(("127.0.0.1", 0), make_app(None), handler_class=wsfixes.Handler,
                            log=log, error_log=None)
        server.start()
        with caplog.at_level(logging.INFO):
            caplog.clear()
            client = RawClient(server.address, 5.0)
            client.sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            client.read_response()
            server.stop(timeout=5)  # waits for the handler, which logs after its response
            lines = [r for r in caplog.records if "GET /echo" in r.getMessage()]
        assert len(lines) == (0 if log is None else 1)
        if log is not None:
            assert lines[0].name == "test.access"


# --------------------------------------------------------------------------------------------
# 6. Unix sockets
# --------------------------------------------------------------------------------------------


def test_unix_socket_server_with_concurrent_clients(start_server, flavour, tmp_path):
    path = str(tmp_path / "ws.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    served = start_server(flavour, listener=listener)
    served.address = path
    first, second = served.client(), served.client()
    for n, client in enumerate((first, second)):
        client.send_frame(OP_BINARY, bytes([n]) * 10)
        assert client.recv_message() == bytes([n]) * 10
    for client in (first, second):  # every AF_UNIX peer has the address ''
        client.send_close(1000)
        client.recv_close()
    served.wait_finished(2)
    assert served.errors == []


# --------------------------------------------------------------------------------------------
# 7. Production hazards
# --------------------------------------------------------------------------------------------


def test_app_crash_after_upgrade_closes_1011_without_http_500(any_server):
    client = any_server.client("/crash")
    client.send_frame(OP_TEXT, b"go")
    code, _ = client.recv_close()
    rest = client.read_until_eof()
    assert code == 1011
    assert b"HTTP/1.1 500" not in rest
    any_server.wait_finished()
    assert [type(e) for e in any_server.errors] == [RuntimeError]  # a real bug is still logged


def test_receive_after_the_end_raises_but_is_not_a_server_error(any_server):
    client = any_server.client("/again")
    client.send_close(1000)
    client.recv_close()
    assert any_server.next_event() == ("end",)
    # Raising rather than returning None forever keeps a careless loop from spinning.
    assert any_server.next_event() == ("raised", "ConnectionClosed")
    any_server.wait_finished()
    assert any_server.errors == []


def test_app_returning_none_is_not_a_server_error(any_server):
    client = any_server.client("/none")
    client.send_close(1000)
    client.recv_close()
    any_server.wait_finished()
    assert any_server.errors == []


def test_close_from_another_greenlet_while_receiving(any_server):
    client = any_server.client("/kick-later")
    assert client.recv_close() == (4002, "replaced")
    client.send_frame(OP_TEXT, b"in flight")  # data after the server's close is dropped
    client.send_close(4002)
    assert any_server.next_event() == ("end", 4002, "")
    any_server.wait_finished()
    assert any_server.errors == []


def test_silent_peer_after_close_is_dropped_after_close_timeout(any_server):
    client = any_server.client("/echo?close_timeout=0.2")
    client.send_frame(OP_TEXT, b"kick:4000")
    assert client.recv_close()[0] == 4000
    # The client never answers; the server gives up after close_timeout.
    assert any_server.next_event() == ("end", 1006, None)
    assert client.read_until_eof() == b""


def test_peer_vanishing_ends_receive_with_1006(server):
    client = server.client()
    client.send_frame(OP_TEXT, b"x")
    assert client.recv_message() == "x"
    client.sock.close()
    assert server.next_event() == ("end", 1006, None)
    server.wait_finished()
    assert server.errors == []


def test_ping_pong(any_server):
    client = any_server.client("/ping")
    assert client.recv_frame() == (True, OP_PING, b"hb")
    client.send_frame(OP_PONG, b"hb")
    client.send_frame(OP_PING, b"\x00\xffabc")
    assert client.recv_frame() == (True, OP_PONG, b"\x00\xffabc")
    client.send_close(1000)
    assert client.recv_close()[0] == 1000
    assert any_server.next_event() == ("pong", True)


def test_concurrent_senders_do_not_interleave(any_server):
    size = 2 << 20  # far more than the socket buffers: the first sender blocks mid-frame
    client = RawClient(any_server.address, any_server.client_timeout, rcvbuf=4096)
    any_server.clients.append(client)
    client.handshake(f"/concurrent?size={size}")
    received = {client.recv_message(), client.recv_message()}
    assert received == {b"\x01" * size, b"\x02" * size}
    assert any_server.next_event() == ("sent", [])


def test_send_timeout_drops_a_client_that_stopped_reading(server):
    client = RawClient(server.address, 5.0, rcvbuf=4096)
    server.clients.append(client)
    client.handshake("/stalled?send_timeout=0.2")
    kind, exc = server.next_event()  # the client reads nothing
    assert kind == "send-failed" and isinstance(exc, WebSocketError)


# --------------------------------------------------------------------------------------------
# apply / fixes_applied / version pin
# --------------------------------------------------------------------------------------------


def test_apply_is_idempotent_and_fixes_applied_reports_every_fix():
    first = wsfixes.apply()
    header_funcs = (Header.mask_payload, Header.unmask_payload)
    second = wsfixes.apply()
    assert first == second == wsfixes.fixes_applied()
    assert all(first.values()), first
    assert set(first) == {
        "fast_unmask",
        "single_utf8_validation",
        "close_codes",
        "message_size_limit",
        "reject_unmasked",
        "handshake_validation",
        "unix_socket_clients",
        "robust_connection",
    }
    assert (Header.mask_payload, Header.unmask_payload) == header_funcs
    # By default gevent-websocket's own handler keeps building its own WebSocket: other servers
    # in the process that chose it keep their behaviour (no 64 KiB limit imposed on them).
    assert geventwebsocket.handler.WebSocket is geventwebsocket.websocket.WebSocket


def test_fixes_applied_notices_when_the_patches_are_gone(monkeypatch):
    try:
        wsfixes.revert()
        assert not wsfixes.fixes_applied()["fast_unmask"]
    finally:
        wsfixes.apply()
    assert all(wsfixes.fixes_applied().values())
    with monkeypatch.context() as m:
        m.setattr(wsfixes.Handler, "websocket_class", geventwebsocket.websocket.WebSocket)
        m.setattr(wsfixes.Handler, "upgrade_connection", WebSocketHandler.upgrade_connection)
        m.setattr(wsfixes.Handler, "run_websocket", WebSocketHandler.run_websocket)
        report = wsfixes.fixes_applied()
        assert not any(report.values()), report
    assert all(wsfixes.fixes_applied().values())


def test_patched_header_unmasks_correctly():
    wsfixes.apply()
    header = Header(length=10)
    header.mask = b"\x01\x02\x03\x04"
    assert header.unmask_payload(b"\x00" * 10) == mask_bytes(b"\x00" * 10, header.mask)


def test_version_pin_warns(monkeypatch):
    assert wsfixes.check_pinned_version()
    monkeypatch.setattr(wsfixes, "installed_version", lambda: "0.10.2")
    with pytest.warns(wsfixes.GeventWebSocketVersionWarning, match="0.10.1"):
        wsfixes.apply()
    assert all(wsfixes.fixes_applied().values())


# --------------------------------------------------------------------------------------------
# gunicorn
# --------------------------------------------------------------------------------------------

GUNICORN_APP = textwrap.dedent(
    """
    import json
    from greenroom.web import wsfixes

    def application(environ, start_response):
        ws = environ["wsgi.websocket"]
        while True:
            message = ws.receive()
            if message is None:
                return []
            if message == "fixes":
                ws.send(json.dumps(wsfixes.fixes_applied()))
            elif message == "kick":
                ws.close(4123, "kicked")
            else:
                ws.send(message)
    """
)


def test_gunicorn_worker_serves_websockets(tmp_path):
    (tmp_path / "wsapp.py").write_text(GUNICORN_APP)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "greenroom.web.gunicorn_worker.GeventWebSocketWorker",
        "--bind",
        f"fd://{listener.fileno()}",
        "--workers",
        "1",
        "--graceful-timeout",
        "2",
        "--no-control-socket",  # gunicorn 27 otherwise shares ~/.gunicorn/gunicorn.ctl across runs
        "--pythonpath",
        f"{tmp_path},{REPO}",
        "wsapp:application",
    ]
    proc = subprocess.Popen(
        command,
        pass_fds=[listener.fileno()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=str(tmp_path),
    )
    listener.close()  # the kernel queues connections until the worker accepts them
    try:
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=30, close_timeout=5) as ws:
            ws.send(b"\x01" * 1000)
            assert ws.recv(timeout=10) == b"\x01" * 1000
            ws.send("fixes")
            assert all(json.loads(ws.recv(timeout=10)).values())
            ws.send("kick")
            with pytest.raises(ClientConnectionClosed):
                ws.recv(timeout=10)
        assert (ws.close_code, ws.close_reason) == (4123, "kicked")
        client = RawClient(("127.0.0.1", port), 10.0)
        client.send_request("/", key="not a key")
        status, _, body = client.read_response()
        client.sock.close()
        assert (status, body) == (400, b"Invalid Sec-WebSocket-Key")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output = proc.communicate(timeout=15)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0].decode(errors="replace")
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
