"""Browser origins and request bodies (README, "Configuration"): the optional Origin allow-list
on room sockets and matchmaking (CORS preflights included), and the bound on a matchmaking body;
each refused with its status and one log line, the worker serving on. One process and
``--workers 2``."""

import json
import logging
import os
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
from cluster_process import Cluster, Gunicorn

from greenroom import Server
from greenroom.client import Client, SeatReservation
from greenroom.web.origins import OriginPolicy

from conftest import ROOT, free_port, greenroom_command, load_example

pytestmark = pytest.mark.timeout(180)

GAME = "https://game.example.com"
EVIL = "https://evil.example.net"


def request(url, method="POST", body=b"{}", headers=None):
    """(status, headers, JSON body or None) of one HTTP request."""
    req = urllib.request.Request(url, data=body if method != "OPTIONS" else None, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as response:
            raw = response.read()
            return response.status, response.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, exc.headers, json.loads(raw) if raw else None


def upgrade(port, path, origin=None):
    """The status line a WebSocket upgrade of ``path`` gets (raw socket: nothing else sent)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
    if origin:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return head.split(b"\r\n", 1)[0].decode()


def room_path(seat):
    seat = SeatReservation.from_json(seat) if isinstance(seat, dict) else seat
    return f"/{seat.process_id}/{seat.room_id}?sessionId={seat.session_id}"


@pytest.fixture
def echo(greenroom_boot):
    """echo(**Server options) -> a running server of the reference EchoRoom."""
    def start(**kwargs):
        server = Server(**kwargs)
        server.define("echo", load_example("echo").EchoRoom)
        return greenroom_boot(server)

    return start


# -- the policy itself ---------------------------------------------------------------------------
def test_origins_are_compared_as_browsers_write_them():
    policy = OriginPolicy(["HTTPS://Game.Example.com:443", "http://localhost:5173/"])
    assert policy.allowed == {GAME, "http://localhost:5173"}
    assert policy.refused({"HTTP_ORIGIN": GAME}) is None
    assert policy.refused({"HTTP_ORIGIN": "http://localhost:5173"}) is None
    assert policy.refused({}) is None  # not a browser
    for other in (EVIL, "http://game.example.com", "https://game.example.com:8443", "null"):
        assert policy.refused({"HTTP_ORIGIN": other}) == other
    assert OriginPolicy(["*"]).refused({"HTTP_ORIGIN": EVIL}) is None
    assert OriginPolicy().refused({"HTTP_ORIGIN": EVIL}) is None  # the default: all


@pytest.mark.parametrize("value", ["game.example.com", "https://game.example.com/play",
                                   "ftp://files.example.com", ","])
def test_a_bad_allow_list_stops_greenroom_serve_with_one_line(value):
    for workers in ("1", "2"):
        proc = subprocess.run(
            [*greenroom_command(), "serve", "examples/echo.py:server", "--workers", workers,
             "--bind", f"127.0.0.1:{free_port()}"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "GREENROOM_ALLOWED_ORIGINS": value})
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (workers, proc.stderr)
        assert "GREENROOM_ALLOWED_ORIGINS" in lines[0] and "scheme://host[:port]" in lines[0]


# -- matchmaking ---------------------------------------------------------------------------------
def test_matchmaking_from_an_origin_not_listed_is_403_and_creates_no_room(echo, caplog):
    running = echo(allowed_origins=[GAME])
    url = f"{running.http_url}/matchmake/joinOrCreate/echo"
    caplog.set_level(logging.INFO)
    status, headers, body = request(url, headers={"Origin": EVIL})
    assert (status, body) == (403, {"code": 403, "error": "origin not allowed"})
    assert headers.get("Access-Control-Allow-Origin") is None  # the page cannot read it
    assert running.rooms == []
    lines = [r for r in caplog.records if EVIL in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None

    status, headers, _ = request(url, method="OPTIONS", headers={"Origin": EVIL})
    assert status == 403 and headers.get("Access-Control-Allow-Origin") is None
    status, headers, _ = request(url, method="OPTIONS", headers={"Origin": GAME})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == GAME

    status, headers, seat = request(url, headers={"Origin": GAME})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == GAME
    status, _, other = request(url)  # no Origin: not a browser, the list does not apply
    assert status == 200 and other["roomId"] == seat["roomId"] and len(running.rooms) == 1


# -- room sockets --------------------------------------------------------------------------------
def test_a_room_socket_from_an_origin_not_listed_is_403_before_the_upgrade(echo, caplog):
    running = echo(allowed_origins=[GAME])
    seat = running.matchmaker.join_or_create("echo", {})
    path = room_path(seat)
    caplog.set_level(logging.INFO)
    assert upgrade(running.port, path, EVIL) == "HTTP/1.1 403 Forbidden"
    lines = [r for r in caplog.records if EVIL in r.getMessage()]
    assert len(lines) == 1 and "403" in lines[0].getMessage()
    room = running.rooms[0]
    assert room._gr.seats_taken == 1 and room.clients == []  # the reservation is still there
    assert upgrade(running.port, "/", EVIL) == "HTTP/1.1 403 Forbidden"  # the latency socket too
    assert upgrade(running.port, path, GAME) == "HTTP/1.1 101 Switching Protocols"


def test_sockets_without_origin_and_the_default_policy_are_served(echo):
    running = echo()
    client = Client(running.endpoint)
    room = client.join_or_create("echo", {})  # no Origin header (not a browser)
    room.send("echo", "hi")
    assert room.wait_for_message("echo", timeout=5) == "hi"
    seat = running.server.matchmaker.join_or_create("echo", {})
    assert upgrade(running.port, room_path(seat), EVIL) == "HTTP/1.1 101 Switching Protocols"
    room.leave()


# -- body size -----------------------------------------------------------------------------------
def test_a_body_over_the_default_64_kib_is_413_and_the_worker_serves_on(echo, caplog):
    running = echo()
    url = f"{running.http_url}/matchmake/joinOrCreate/echo"
    fits = json.dumps({"pad": "x" * (64 * 1024 - 20)}).encode()
    assert len(fits) <= 64 * 1024
    caplog.set_level(logging.INFO)
    status, _, body = request(url, body=json.dumps({"pad": "x" * (64 * 1024)}).encode())
    assert (status, body) == (413, {"code": 413, "error": "request body over 65536 bytes"})
    assert running.rooms == []
    assert len([r for r in caplog.records if "413" in r.getMessage()]) == 1
    status, _, seat = request(url, body=fits)
    assert status == 200 and seat["roomId"]


def test_max_body_size_is_a_setting(echo):
    running = echo(max_body_size=100)
    url = f"{running.http_url}/matchmake/joinOrCreate/echo"
    status, _, body = request(url, body=json.dumps({"pad": "x" * 100}).encode())
    assert (status, body["error"]) == (413, "request body over 100 bytes")
    assert request(url, body=b'{"name": "ok"}')[0] == 200


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_a_bad_max_body_size_stops_greenroom_serve_with_one_line(value):
    proc = subprocess.run(
        [*greenroom_command(), "serve", "examples/echo.py:server", "--workers", "2",
         "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GREENROOM_MAX_BODY_SIZE": value})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "GREENROOM_MAX_BODY_SIZE" in lines[0], \
        proc.stderr


# -- --workers 2 ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    running = Cluster(2, env={"GREENROOM_ALLOWED_ORIGINS": f"{GAME},http://localhost:5173",
                              "GREENROOM_MAX_BODY_SIZE": "2048"})
    try:
        running.wait_serving(2)
        yield running
    finally:
        running.stop()


def test_both_workers_refuse_a_foreign_origin_on_matchmaking_and_sockets(cluster):
    url = f"{cluster.http}/matchmake/create/table"
    rooms_before = sum(w["rooms"] for w in cluster.workers())
    for _ in range(10):  # connections land on either worker
        assert request(url, headers={"Origin": EVIL})[0] == 403
        assert request(url, method="OPTIONS", headers={"Origin": EVIL})[0] == 403
    assert sum(w["rooms"] for w in cluster.workers()) == rooms_before
    seats = [request(url, headers={"Origin": GAME})[2] for _ in range(8)]
    assert len({seat["processId"] for seat in seats}) == 2  # rooms in both workers
    for seat in seats:  # each socket may reach the other worker first: handed off or not, refused
        assert upgrade(cluster.port, room_path(seat), EVIL) == "HTTP/1.1 403 Forbidden"
    for seat in seats:
        assert upgrade(cluster.port, room_path(seat), GAME) == "HTTP/1.1 101 Switching Protocols"
    cluster.wait_for_log(r"WebSocket handshake refused \(403 Forbidden\): Origin 'https://evil", 8)


def test_both_workers_bound_the_body_and_serve_on(cluster):
    url = f"{cluster.http}/matchmake/joinOrCreate/table"
    for _ in range(6):
        status, _, body = request(url, body=json.dumps({"pad": "x" * 2048}).encode())
        assert (status, body["error"]) == (413, "request body over 2048 bytes")
    room = Client(cluster.endpoint).join_or_create("table", {"pad": "x" * 1000})
    room.send("echo", "still here")
    assert room.wait_for_message("echo", timeout=10) == "still here"
    room.leave()
    cluster.wait_for_log(r"-> 413 request body over 2048 bytes", 6)


def test_gunicorn_workers_refuse_a_foreign_origin_too():
    running = Gunicorn(2, env={"GREENROOM_ALLOWED_ORIGINS": GAME})
    try:
        running.wait_serving(2)
        url = f"{running.http}/matchmake/create/table"
        assert request(url, headers={"Origin": EVIL})[0] == 403
        seat = request(url, headers={"Origin": GAME})[2]
        assert upgrade(running.port, room_path(seat), EVIL) == "HTTP/1.1 403 Forbidden"
        assert upgrade(running.port, room_path(seat), GAME) == "HTTP/1.1 101 Switching Protocols"
    finally:
        running.stop()
