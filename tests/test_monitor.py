"""The monitor's JSON API: auth, the deployment's rooms, a room's clients and state, actions;
across two processes sharing the real Redis, details and actions go to the room's owner."""

import base64
import configparser
import fnmatch
import os

import pytest

from greenroom import Room, Server
from greenroom.monitor import Monitor, from_env
from greenroom.monitor.api import STATIC
from greenroom.schema import MapSchema, Schema, field
from greenroom.wsclient import ConnectionClosed
from greenroom.wsclient import connect as ws_connect

from conftest import ROOT

TOKEN = "a-monitor-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


class Player(Schema):
    name = field("string", default="")
    hp = field("uint8", default=100)


class Arena(Schema):
    players = field({"map": Player})
    log = field(["string"])


class ArenaRoom(Room):
    max_clients = 8

    def on_create(self, options):
        self.state = Arena(players=MapSchema())
        self.set_metadata({"mode": options.get("mode", "ffa")})

    def on_join(self, client, options, auth):
        self.state.players[client.session_id] = Player(name=options.get("name", "anon"))
        self.state.log.append(f"{options.get('name', 'anon')} joined")
        client.user_data = {"team": options.get("team")}

    def on_leave(self, client, consented):
        self.state.players.pop(client.session_id, None)


def arena_server(**options):
    server = Server(monitor=Monitor(token=TOKEN), **options)
    server.define("arena", ArenaRoom)
    return server


@pytest.fixture
def arena(greenroom_boot):
    return greenroom_boot(arena_server())


def api(test, path, body=None, headers=BEARER):
    if body is None:
        return test.get("/monitor/api/" + path, headers)
    return test.post("/monitor/api/" + path, body, headers)


def test_refused_without_the_token_and_served_with_it(arena):
    refused = arena.get("/monitor/api/rooms")
    assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic ")
    assert arena.get("/monitor/", {"Authorization": "Bearer wrong-token"}).status == 401
    assert arena.get("/monitor/", {"Authorization": "Basic !!"}).status == 401
    assert arena.post("/monitor/api/rooms/x/dispose", {}).status == 401
    basic = base64.b64encode(f"admin:{TOKEN}".encode()).decode()
    page = arena.get("/monitor/", {"Authorization": f"Basic {basic}"})
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert b'src="monitor.js"' in page.body and b"http" not in page.body.split(b"<body>")[1]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = arena.get("/monitor/monitor.js", BEARER)
    assert script.status == 200 and b"fetch(\"api/\" + path" in script.body
    assert arena.get("/monitor/monitor.css", BEARER).status == 200
    assert arena.get("/monitor", BEARER).status == 308  # relative URLs need the slash


def test_no_cors_no_files_outside_the_list_no_socket(arena):
    answer = arena.get("/monitor/api/rooms", {**BEARER, "Origin": "https://evil.example"})
    assert answer.status == 200 and "Access-Control-Allow-Origin" not in answer.headers
    assert arena.request("OPTIONS", "/monitor/api/rooms", headers=BEARER).headers.get(
        "Access-Control-Allow-Origin") is None
    for path in ("/monitor/../setup.cfg", "/monitor/static/index.html", "/monitor/%2e%2e/setup.cfg",
                 "/monitor/__init__.py", "/monitor/api/../../README.rst"):
        assert arena.get(path, BEARER).status == 404, path
    # A WebSocket on the monitor's path is a room socket, refused as one: no monitor behind it.
    ws = ws_connect(f"{arena.endpoint}/monitor/api/rooms", timeout=5, headers=BEARER)
    first = ws.recv(timeout=5)
    assert first[0] == 11 and b"expired" in first  # ERROR 524, as for any unknown room
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=5)


def test_rooms_clients_and_state(arena):
    alice = arena.connect("arena", {"name": "alice", "team": "red", "mode": "ctf"})
    listing = api(arena, "rooms").json()
    assert listing["processId"] == arena.server.process_id
    [room] = listing["rooms"]
    assert room["roomId"] == alice.room_id and room["name"] == "arena"
    assert (room["clients"], room["maxClients"], room["locked"], room["private"]) == (1, 8, False, False)
    assert room["metadata"] == {"mode": "ctf"} and room["createdAt"] <= listing["time"]
    assert listing["processes"][0]["processId"] == arena.server.process_id
    bob = arena.connect(alice, {"name": "bob", "team": "blue"})
    details = api(arena, f"rooms/{alice.room_id}").json()
    assert [c["sessionId"] for c in details["clients"]] == [alice.session_id, bob.session_id]
    assert details["clients"][1]["userData"] == {"team": "blue"}
    assert details["clients"][0]["state"] == "joined" and details["clients"][0]["ip"] == "127.0.0.1"
    assert details["stateType"] == "Arena"
    assert details["state"] == alice.wait_for_state(lambda s: len(s["players"]) == 2)
    assert details["state"]["log"] == ["alice joined", "bob joined"]
    assert api(arena, "rooms?name=nothing").json()["rooms"] == []
    assert api(arena, "rooms/nope").status == 404


def test_send_kick_and_dispose(arena):
    alice = arena.connect("arena", {"name": "alice"})
    bob = arena.connect(alice, {"name": "bob"})
    sent = api(arena, f"rooms/{alice.room_id}/message", {"type": "announce", "message": {"n": 1}})
    assert sent.json() == {"ok": True, "clients": 2}
    assert alice.wait_for_message("announce") == {"n": 1} == bob.wait_for_message("announce")
    to_bob = {"type": "whisper", "message": "psst", "sessionId": bob.session_id}
    assert api(arena, f"rooms/{alice.room_id}/message", to_bob).json()["clients"] == 1
    assert bob.wait_for_message("whisper") == "psst"
    assert api(arena, f"rooms/{alice.room_id}/clients/{bob.session_id}/kick", {"code": 4100}).json() == {"ok": True}
    assert bob.wait_closed() == (4100, "")
    assert api(arena, f"rooms/{alice.room_id}").json()["clients"][0]["sessionId"] == alice.session_id
    room = arena.room_of(alice)
    assert api(arena, f"rooms/{alice.room_id}/dispose", {}).json() == {"ok": True}
    assert alice.wait_closed()[0] == 4000
    arena.wait_for_dispose(room)
    assert api(arena, "rooms").json()["rooms"] == []


def test_bad_actions_get_a_reason_and_change_nothing(arena):
    alice = arena.connect("arena", {"name": "alice"})
    base = f"rooms/{alice.room_id}"
    cases = [
        (f"{base}/clients/{alice.session_id}/kick", {"code": 99}, 400, "close code"),
        (f"{base}/clients/nobody/kick", {}, 404, "no client"),
        (f"{base}/message", {"message": 1}, 400, "type"),
        (f"{base}/message", {"type": True}, 400, "type"),
        (f"{base}/message", {"type": "x", "sessionId": "nobody"}, 404, "no client"),
        ("rooms/nope/dispose", {}, 404, "not found"),
        (f"{base}/explode", {}, 404, "no monitor API"),
    ]
    for path, body, status, words in cases:
        answer = api(arena, path, body)
        assert answer.status == status and words in answer.json()["error"], (path, answer)
    form = arena.request("POST", f"/monitor/api/{base}/dispose", b"x=1",
                         {**BEARER, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 415  # what a cross-site form would send
    assert arena.get(f"/monitor/api/{base}/dispose", BEARER).status == 404
    assert api(arena, base).json()["clients"][0]["sessionId"] == alice.session_id
    alice.send("still", "here")  # the room and the client are untouched
    assert not alice.closed


def test_off_unless_enabled_and_configured_from_the_environment(greenroom_boot, monkeypatch):
    server = Server()
    assert server.monitor is None
    assert greenroom_boot(server).get("/monitor/", BEARER).status == 404
    monkeypatch.setenv("GREENROOM_MONITOR_TOKEN", TOKEN)
    monkeypatch.setenv("GREENROOM_MONITOR_PATH", "/ops/monitor/")
    assert from_env() == Monitor(token=TOKEN, path="/ops/monitor")
    test = greenroom_boot(Server())
    assert test.get("/ops/monitor/api/rooms", BEARER).json()["rooms"] == []
    assert greenroom_boot(Server(monitor=False)).get("/ops/monitor/", BEARER).status == 404
    for bad in ({"token": "short"}, {"token": TOKEN, "path": "/"}, {"token": TOKEN, "path": "ready"},
                {"token": TOKEN, "path": "/health"}, {"token": TOKEN, "path": "/a/matchmake"}):
        with pytest.raises(ValueError):
            Monitor(**bad)
    monkeypatch.setenv("GREENROOM_MONITOR_TOKEN", "short")
    with pytest.raises(ValueError, match="GREENROOM_MONITOR_TOKEN.*at least 8 characters"):
        Server()


def test_rooms_of_another_process_are_listed_and_handled_by_their_owner(greenroom_boot, redis_server):
    import redis

    redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    watcher = greenroom_boot(arena_server(redis_url=redis_server.url))
    owner = greenroom_boot(arena_server(redis_url=redis_server.url))
    # Both processes share Redis; the room is made on the owner, the monitor asked on the watcher.
    alice = owner.connect("arena", {"name": "alice"}, method="create")
    assert alice.process_id == owner.server.process_id != watcher.server.process_id
    listing = api(watcher, "rooms").json()
    assert [r["roomId"] for r in listing["rooms"]] == [alice.room_id]
    assert listing["rooms"][0]["processId"] == owner.server.process_id
    assert {p["processId"] for p in listing["processes"]} == {owner.server.process_id,
                                                               watcher.server.process_id}
    details = api(watcher, f"rooms/{alice.room_id}").json()  # over RPC, from the owner
    assert details["processId"] == owner.server.process_id
    assert details["state"]["players"][alice.session_id]["name"] == "alice"
    sent = api(watcher, f"rooms/{alice.room_id}/message", {"type": "announce", "message": "hi"})
    assert sent.json()["clients"] == 1 and alice.wait_for_message("announce") == "hi"
    assert api(watcher, f"rooms/{alice.room_id}/clients/nobody/kick", {}).status == 404
    assert api(watcher, f"rooms/{alice.room_id}/dispose", {}).json() == {"ok": True}
    assert alice.wait_closed()[0] == 4000


def test_the_page_is_shipped_as_package_data():
    """An installed (non-editable) greenroom has the page only if setup.cfg lists its files."""
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    patterns = config["options.package_data"]["greenroom.monitor"].split()
    static = os.path.join(ROOT, "greenroom", "monitor", "static")
    served = sorted(name for name, _ in STATIC.values())
    assert sorted(os.listdir(static)) == served  # every file shipped is served, and only those
    for name in served:
        assert any(fnmatch.fnmatch(f"static/{name}", p) for p in patterns), name
