"""A real headless Chromium against the Origin allow-list and the class-level auth hook: a page
of an allowed origin joins with a JWT (its Authorization header makes the browser send a CORS
preflight first), a page of another origin is refused at matchmaking and on the room socket,
and no room is made for it (README, "Authentication")."""

import json
import logging
import os
import time
from urllib.parse import quote

import jwt
import pytest
from gevent.pywsgi import WSGIServer

import browser_driver
from conftest import JS_DIR, load_example

pytestmark = pytest.mark.timeout(180)

SECRET = "browser-test-secret-of-32-bytes-or-more"

PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>auth</title>
<div id="result">pending</div>
<script src="/colyseus.js"></script>
<script>
  const params = new URLSearchParams(location.search);
  const result = document.getElementById("result");
  const client = new Colyseus.Client(params.get("endpoint"));
  client.auth.token = params.get("token") || "";
  const seat = params.get("seat");
  const joining = seat ? client.consumeSeatReservation(JSON.parse(seat))
                       : client.joinOrCreate("game", {});
  joining.then(
    (room) => room.onMessage("welcome", (w) => { result.textContent = "joined " + w.sub; }),
    (e) => { result.textContent = "refused " + (e && e.message); });
</script>
"""


def page_server():
    """A second web server: the game's pages, on an origin of its own."""
    bundle = os.path.join(JS_DIR, "node_modules", "sdk17", "dist", "colyseus.js")

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/colyseus.js":
            with open(bundle, "rb") as f:
                body, kind = f.read(), "application/javascript"
        else:
            body, kind = PAGE, "text/html"
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]

    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    return server


@pytest.fixture(scope="module")
def browser():
    started = browser_driver.start()
    yield started
    started.close()


@pytest.fixture
def setup(greenroom_boot, node_modules, monkeypatch):
    pages = page_server()
    allowed = f"http://127.0.0.1:{pages.server_port}"
    monkeypatch.setenv("GREENROOM_JWT_SECRET", SECRET)
    monkeypatch.setenv("GREENROOM_ALLOWED_ORIGINS", allowed)
    running = greenroom_boot(load_example("auth_jwt").server)
    yield running, pages.server_port
    pages.stop()


def url(host, port, running, **params):
    query = "&".join(f"{k}={quote(v)}" for k, v in {"endpoint": running.endpoint, **params}.items())
    return f"http://{host}:{port}/?{query}"


def token(sub, seconds=3600):
    return jwt.encode({"sub": sub, "exp": int(time.time()) + seconds}, SECRET, algorithm="HS256")


def test_a_page_of_an_allowed_origin_joins_with_its_token(browser, setup):
    running, port = setup
    page = browser.new_page()
    assert page.goto(url("127.0.0.1", port, running, token=token("ada"))) == 200
    page.wait_for("#result", text="joined ada")
    assert len(running.rooms) == 1
    page.close()


def test_an_expired_token_is_refused_in_the_browser_without_a_room(browser, setup):
    running, port = setup
    page = browser.new_page()
    assert page.goto(url("127.0.0.1", port, running, token=token("ada", -5))) == 200
    page.wait_for("#result", text="refused token expired")
    assert running.rooms == []
    page.close()


def test_a_page_of_another_origin_is_refused_at_matchmaking_and_on_the_socket(browser, setup,
                                                                               caplog):
    running, port = setup
    caplog.set_level(logging.INFO)
    page = browser.new_page()  # localhost:PORT is another origin than 127.0.0.1:PORT
    assert page.goto(url("localhost", port, running, token=token("eve"))) == 200
    page.wait_for("#result", text="refused")
    assert running.rooms == []
    assert any("matchmake" in r.getMessage() and f"http://localhost:{port}" in r.getMessage()
               for r in caplog.records)

    # A seat reserved by another way: the page's own socket is refused before the upgrade.
    seat = running.matchmaker.join_or_create("game", {}, auth={"sub": "eve"}).to_json()
    page = browser.new_page()
    assert page.goto(url("localhost", port, running, seat=json.dumps(seat))) == 200
    page.wait_for("#result", text="refused")
    assert running.rooms[0].clients == []
    assert any("WebSocket handshake refused (403 Forbidden)" in r.getMessage()
               for r in caplog.records)
    page.close()
