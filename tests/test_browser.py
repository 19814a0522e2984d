"""greenroom's pages in a real headless Chromium: the monitor (rooms appear live, a room is
disposed from the page, no entry without the token) and the arena example (the page joins,
plays, and two pages see each other).

GREENROOM_UPDATE_SCREENSHOTS=1 also writes the monitor's screenshot to docs/monitor.png.
"""

import importlib.util
import os
import shutil

import gevent
import pytest

from greenroom import Monitor, Room, Server
from greenroom.schema import MapSchema, Schema, field

import browser_driver
from conftest import EXAMPLES, JS_DIR, ROOT
from servers import wait_until

TOKEN = "monitor-secret"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def browser():
    started = browser_driver.start()
    yield started
    started.close()


class Player(Schema):
    name = field("string", default="")
    score = field("uint16", default=0)


class Table(Schema):
    round = field("uint8", default=1)
    players = field({"map": Player})


class CardTable(Room):
    max_clients = 4

    def on_create(self, options):
        self.state = Table(players=MapSchema())
        self.set_metadata({"stakes": options.get("stakes", "low")})
        if options.get("private"):
            self.set_private()

    def on_join(self, client, options, auth):
        self.state.players[client.session_id] = Player(name=options.get("name", "anon"))

    def on_leave(self, client, consented):
        self.state.players.pop(client.session_id, None)


class Lobby(Room):
    def on_create(self, options):
        self.lock()


@pytest.fixture
def monitored(greenroom_boot):
    server = Server(monitor=Monitor(token=TOKEN))
    server.define("cards", CardTable).filter_by("stakes")
    server.define("lobby", Lobby)
    return greenroom_boot(server)


def test_monitor_page_lists_rooms_live_and_disposes_one(browser, monitored, tmp_path):
    url = f"{monitored.http_url}/monitor/"
    stranger = browser.new_page()
    assert stranger.goto(url) == 401
    stranger.close()
    guesser = browser.new_page("ops", "not-the-token")
    assert guesser.goto(url) == 401
    guesser.close()

    page = browser.new_page("ops", TOKEN)
    assert page.goto(url) == 200
    page.wait_for("#status", text="updated")  # the first listing arrived
    assert page.texts("#rooms tbody tr") == []
    alice = monitored.connect("cards", {"name": "alice", "stakes": "high"})
    row = f'#rooms tbody tr[data-room-id="{alice.room_id}"]'
    page.wait_for(row)  # the page's next poll shows the room
    monitored.connect(alice, {"name": "bob", "stakes": "high"})
    monitored.create_room("cards", {"stakes": "low", "private": True})
    monitored.create_room("lobby")
    page.wait_for("#summary", text="3 rooms, 2 clients")
    page.click(row)
    page.wait_for(f'#d-clients tbody tr[data-session-id="{alice.session_id}"]')
    page.wait_for("#d-state", text='"name": "bob"')
    [cells] = [t for t in page.texts(f"{row} td") if "high" in t]
    assert "stakes" in cells
    shot = page.screenshot(tmp_path / "monitor.png")
    assert os.path.getsize(shot) > 10_000
    if os.environ.get("GREENROOM_UPDATE_SCREENSHOTS"):
        shutil.copy(shot, os.path.join(ROOT, "docs", "monitor.png"))

    page.click(f"{row} button.dispose")  # confirms in a dialog, which the browser accepts
    assert alice.wait_closed()[0] == 4000
    page.wait_gone(row)
    page.wait_for("#notice", text=f"room {alice.room_id} disposed")
    report = page.report()
    assert report["errors"] == []
    assert report["dialogs"] == [f"Dispose room {alice.room_id} (cards)? Its clients are disconnected."]


def test_monitor_page_polls_once_at_a_time_however_often_it_is_clicked(browser, monitored):
    routes = monitored.server.wsgi_app.routes
    api_route = routes["/monitor"]
    calls = {"now": 0, "most": 0, "done": 0}

    def slow_api(environ, rest):
        """Each API call takes 0.2 s, so that the clicks below land while one is on its way."""
        if not rest.startswith("/api/"):
            return api_route(environ, rest)
        calls["now"] += 1
        calls["most"] = max(calls["most"], calls["now"])
        try:
            gevent.sleep(0.2)
            return api_route(environ, rest)
        finally:
            calls["now"] -= 1
            calls["done"] += 1

    routes["/monitor"] = slow_api
    alice = monitored.connect("cards", {"name": "alice"})
    page = browser.new_page("ops", TOKEN)
    assert page.goto(f"{monitored.http_url}/monitor/") == 200
    row = f'#rooms tbody tr[data-room-id="{alice.room_id}"]'
    page.wait_for(row)
    for _ in range(5):
        page.click(row)  # each click asks for a refresh
    page.wait_for("#d-state", text='"name": "alice"')
    done = calls["done"]
    wait_until(lambda: calls["done"] >= done + 4)  # and the page polls on
    assert calls["most"] == 1
    assert page.report()["errors"] == []
    page.close()


@pytest.fixture
def arena(greenroom_boot, node_modules, monkeypatch):
    monkeypatch.setenv("ARENA_SDK_BUNDLE", os.path.join(JS_DIR, "node_modules", "sdk17", "dist", "colyseus.js"))
    spec = importlib.util.spec_from_file_location("arena_page_example",
                                                  os.path.join(EXAMPLES, "arena", "arena.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return greenroom_boot(module.server)


def test_arena_pages_join_play_and_see_each_other(browser, arena):
    alice = browser.new_page()
    assert alice.goto(f"{arena.http_url}/?name=alice") == 200
    alice.wait_for("#status", text="joined as alice")
    bob = browser.new_page()
    assert bob.goto(f"{arena.http_url}/?name=bob") == 200
    bob.wait_for("#status", text="joined as bob")
    for page in (alice, bob):
        page.wait_for("#scores span", text="alice")
        page.wait_for("#scores span", text="bob")

    observer = arena.connect("arena", {"name": "observer"})
    state = observer.wait_for_state(lambda s: len(s["players"]) == 3)
    alice_id = next(sid for sid, p in state["players"].items() if p["name"] == "alice")
    start = state["players"][alice_id]["x"]
    key, moved = ("ArrowLeft", lambda x: x < start - 30) if start > 400 else ("ArrowRight", lambda x: x > start + 30)
    alice.key(key, "down")  # the page sends its input; the server moves alice at 20 Hz
    try:
        observer.wait_for_state(lambda s: moved(s["players"][alice_id]["x"]))
    finally:
        alice.key(key, "up")
    for page in (alice, bob):
        assert page.report()["errors"] == []
        page.close()
    observer.wait_for_state(lambda s: len(s["players"]) == 1)  # closing a page leaves the room
