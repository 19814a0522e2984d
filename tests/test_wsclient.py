"""greenroom.wsclient against a real gevent-websocket server (pywsgi + WebSocketHandler).

gevent-websocket 0.10.1 drops close codes when it closes (docs/architecture.md, "gevent-websocket"), so the routes that test
close codes read and write close frames themselves instead of calling ``ws.close()``.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.queue  # noqa: E402
import pytest  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402
from geventwebsocket.websocket import Header  # noqa: E402

from greenroom.wsclient import (  # noqa: E402
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ConnectionClosed,
    HandshakeError,
    PayloadTooBig,
    WebSocket,
    WebSocketTimeout,
    connect,
)

TIMEOUT = 5


class Reports:
    """What the server side saw, per route, for the test to assert on."""

    def __init__(self) -> None:
        self.queues: dict[str, gevent.queue.Queue] = {}
        self.release = gevent.event.Event()

    def put(self, route: str, value: object) -> None:
        self.queues.setdefault(route, gevent.queue.Queue()).put(value)

    def get(self, route: str) -> object:
        return self.queues.setdefault(route, gevent.queue.Queue()).get(timeout=TIMEOUT)


def _raw_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return bytes(Header.encode_header(fin, opcode, b"", len(payload), 0)) + payload


def _close_payload(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        return 1005, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def _read_until_close(ws) -> tuple[int, str] | None:
    while True:
        header, payload = ws.read_frame()
        if header.opcode == OP_CLOSE:
            return _close_payload(payload)


def make_app(reports: Reports):
    def echo(ws):
        while True:
            message = ws.receive()
            if message is None:
                return
            ws.send(message, binary=not isinstance(message, str))

    def close_echo(ws):
        # Send the client's close frame back verbatim: a close-code round trip.
        header, payload = ws.read_frame()
        while header.opcode != OP_CLOSE:
            header, payload = ws.read_frame()
        reports.put("close-echo", _close_payload(payload))
        ws.raw_write(_raw_frame(OP_CLOSE, payload))
        ws.closed = True

    def server_close(ws):
        ws.raw_write(_raw_frame(OP_CLOSE, struct.pack("!H", 4123) + b"kicked by request"))
        reports.put("server-close", _read_until_close(ws))
        ws.closed = True

    def ping(ws):
        ws.raw_write(_raw_frame(OP_PING, b"are you there"))
        header, payload = ws.read_frame()
        reports.put("ping", (header.opcode, payload))
        ws.send("after ping")

    def fragments(ws):
        # A text message in two fragments with a ping in between, then a binary one in three.
        ws.raw_write(_raw_frame(OP_TEXT, "hé".encode(), fin=False) + _raw_frame(OP_PING, b"mid")
                     + _raw_frame(OP_CONTINUATION, b"llo", fin=True))
        ws.raw_write(_raw_frame(OP_BINARY, b"\x01", fin=False) + _raw_frame(OP_CONTINUATION, b"\x02", fin=False)
                     + _raw_frame(OP_CONTINUATION, b"\x03", fin=True))
        header, payload = ws.read_frame()
        reports.put("fragments", (header.opcode, payload))
        _read_until_close(ws)

    def big(ws):
        ws.send(b"x" * 2000)
        reports.put("big", _read_until_close(ws))
        ws.closed = True

    def header(ws):
        # Look at the client's first frame as it is on the wire.
        raw = Header.decode_header(ws.stream)
        payload = ws.raw_read(raw.length)
        unmasked = raw.unmask_payload(payload) if raw.mask else payload
        ws.send(f"mask={bool(raw.mask)} payload={bytes(unmasked)!r} masked_payload_differs={payload != unmasked}")
        _read_until_close(ws)

    def split(ws):
        # Half a frame, then wait: a recv() timeout in the middle must not lose the first half.
        frame = _raw_frame(OP_BINARY, bytes(range(200)))
        ws.raw_write(frame[:100])
        reports.release.wait(TIMEOUT)
        ws.raw_write(frame[100:])
        _read_until_close(ws)

    def eof(ws):
        reports.put("eof", ws.receive())

    routes = {"/echo": echo, "/close-echo": close_echo, "/server-close": server_close, "/ping": ping,
              "/fragments": fragments, "/big": big, "/header": header, "/split": split, "/eof": eof}

    def app(environ, start_response):
        ws = environ.get("wsgi.websocket")
        route = routes.get(environ["PATH_INFO"])
        if ws is None or route is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such websocket"]
        route(ws)
        return []

    return app


def _start(app, **ssl_args) -> WSGIServer:
    server = WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler, log=None, **ssl_args)
    server.start()
    return server


@pytest.fixture(scope="module")
def reports():
    return Reports()


@pytest.fixture(scope="module")
def base(reports):
    server = _start(make_app(reports))
    yield f"ws://127.0.0.1:{server.server_port}"
    server.stop(timeout=1)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70 * 1024])
def test_binary_round_trip(base, size):
    data = os.urandom(size)
    with connect(base + "/echo", timeout=TIMEOUT) as ws:
        ws.send(data)
        assert ws.recv(TIMEOUT) == data


def test_text_round_trip(base):
    with connect(base + "/echo", timeout=TIMEOUT) as ws:
        ws.send("héllo wörld ✓")
        reply = ws.recv(TIMEOUT)
        assert reply == "héllo wörld ✓" and isinstance(reply, str)


def test_fragmented_send_is_reassembled_by_the_server(base):
    data = os.urandom(1000)
    with connect(base + "/echo", timeout=TIMEOUT) as ws:
        ws.send(data, fragment_size=128)
        assert ws.recv(TIMEOUT) == data
        ws.send("fragmented text", fragment_size=4)
        assert ws.recv(TIMEOUT) == "fragmented text"


def test_fragmented_receive_with_interleaved_ping(base, reports):
    with connect(base + "/fragments", timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "héllo"
        assert ws.recv(TIMEOUT) == b"\x01\x02\x03"
    assert reports.get("fragments") == (OP_PONG, b"mid")


def test_client_frames_are_masked(base):
    with connect(base + "/header", timeout=TIMEOUT) as ws:
        ws.send(b"abcdefgh")
        assert ws.recv(TIMEOUT) == "mask=True payload=b'abcdefgh' masked_payload_differs=True"


def test_close_code_round_trip(base, reports):
    ws = connect(base + "/close-echo", timeout=TIMEOUT)
    assert ws.close(4001, "bye now", timeout=TIMEOUT) == (4001, "bye now")
    assert reports.get("close-echo") == (4001, "bye now")
    assert ws.closed and ws.close_code == 4001
    with pytest.raises(ConnectionClosed):
        ws.send(b"too late")


def test_close_without_code(base, reports):
    ws = connect(base + "/close-echo", timeout=TIMEOUT)
    assert ws.close(None, timeout=TIMEOUT) == (1005, "")
    assert reports.get("close-echo") == (1005, "")


def test_server_close_code_reaches_recv_and_is_echoed(base, reports):
    ws = connect(base + "/server-close", timeout=TIMEOUT)
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(TIMEOUT)
    assert (info.value.code, info.value.reason, info.value.received) == (4123, "kicked by request", True)
    assert reports.get("server-close") == (4123, "")
    with pytest.raises(ConnectionClosed):  # every later read reports the same closure
        ws.recv(TIMEOUT)


def test_server_ping_gets_pong(base, reports):
    with connect(base + "/ping", timeout=TIMEOUT) as ws:
        assert ws.recv(TIMEOUT) == "after ping"
    assert reports.get("ping") == (OP_PONG, b"are you there")


def test_client_ping_pong_is_consumed_by_recv(base):
    pongs = []
    with connect(base + "/echo", timeout=TIMEOUT) as ws:
        ws.on_pong = pongs.append
        ws.ping(b"p1")
        ws.send(b"after")
        assert ws.recv(TIMEOUT) == b"after"  # the pong came first and was not returned
        assert pongs == [b"p1"] and ws.last_pong == b"p1"


def test_max_size_closes_with_1009(base, reports):
    ws = connect(base + "/big", timeout=TIMEOUT, max_size=1000)
    with pytest.raises(PayloadTooBig) as info:
        ws.recv(TIMEOUT)
    assert info.value.code == 1009
    assert reports.get("big")[0] == 1009


def test_recv_timeout_mid_frame_loses_nothing(base, reports):
    with connect(base + "/split", timeout=TIMEOUT) as ws:
        with pytest.raises(WebSocketTimeout) as info:
            ws.recv(timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        reports.release.set()
        assert ws.recv(TIMEOUT) == bytes(range(200))


def test_abort_is_seen_as_eof_by_the_server(base, reports):
    ws = connect(base + "/eof", timeout=TIMEOUT)
    ws.abort()
    assert reports.get("eof") is None
    assert ws.close_code == 1006


def test_close_while_another_greenlet_reads(base):
    ws = connect(base + "/echo", timeout=TIMEOUT)
    reader = gevent.spawn(ws.recv)
    gevent.sleep(0)  # a yield, not a delay: the spawned reader runs until it blocks in recv()
    assert ws._reading
    ws.send_close(4000)
    with pytest.raises(ConnectionClosed):
        reader.get(timeout=TIMEOUT)
    assert ws.wait_closed(TIMEOUT)


def test_100_concurrent_connections(base):
    def session(i: int) -> bool:
        with connect(base + "/echo", timeout=TIMEOUT) as ws:
            for j in range(5):
                payload = f"{i}:{j}".encode() * (i + 1)
                ws.send(payload)
                if ws.recv(TIMEOUT) != payload:
                    return False
        return True

    greenlets = [gevent.spawn(session, i) for i in range(100)]
    gevent.joinall(greenlets, timeout=20, raise_error=True)
    assert [g.value for g in greenlets] == [True] * 100


def test_plain_http_server_refusal_carries_status_and_body():
    def app(environ, start_response):
        start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", "7")])
        return [b"go away"]

    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    try:
        with pytest.raises(HandshakeError) as info:
            connect(f"ws://127.0.0.1:{server.server_port}/x", timeout=TIMEOUT)
        assert info.value.status == 403 and info.value.body == b"go away"
    finally:
        server.stop(timeout=1)


def test_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(f"ws://127.0.0.1:{port}/", timeout=TIMEOUT)


def test_frame_encoding_lengths_and_unmasked():
    assert WebSocket._build(OP_BINARY, b"ab", True, 0, False) == b"\x82\x02ab"
    assert WebSocket._build(OP_TEXT, b"a" * 126, False, 0, False)[:4] == b"\x01\x7e\x00\x7e"
    assert WebSocket._build(OP_BINARY, b"a" * 65536, True, 0, False)[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")
    masked = WebSocket._build(OP_BINARY, b"abcd", True, 0, True)
    assert masked[1] == 0x84 and len(masked) == 2 + 4 + 4


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is needed to make a test certificate")
def test_wss(tmp_path, reports):
    from gevent import ssl as gevent_ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server_context = gevent_ssl.create_default_context(gevent_ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(cert), str(key))
    server = _start(make_app(reports), ssl_context=server_context)
    try:
        context = gevent_ssl.create_default_context(cafile=str(cert))
        with connect(f"wss://127.0.0.1:{server.server_port}/echo", timeout=TIMEOUT, ssl_context=context) as ws:
            ws.send(b"over tls" * 1000)
            assert ws.recv(TIMEOUT) == b"over tls" * 1000
    finally:
        server.stop(timeout=1)
