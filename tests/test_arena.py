"""The arena example: a real little game, its page and the official SDK bundle, served by greenroom."""

import http.client
import importlib.util
import math
import os

import gevent
import pytest

from greenroom.client import Client
from greenroom.schema import StateDecoder

from conftest import EXAMPLES, JS_DIR


@pytest.fixture
def arena(serve, node_modules, monkeypatch):
    monkeypatch.setenv("ARENA_SDK_BUNDLE", os.path.join(JS_DIR, "node_modules", "sdk17", "dist", "colyseus.js"))
    spec = importlib.util.spec_from_file_location("arena_example", os.path.join(EXAMPLES, "arena", "arena.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return serve(module.server)


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.getheader("Content-Type"), response.read()


def test_page_and_sdk_bundle_are_served(arena):
    status, ctype, body = get(arena.port, "/")
    assert status == 200 and ctype.startswith("text/html")
    assert b'joinOrCreate("arena"' in body and b"/sdk/colyseus.js" in body
    status, ctype, body = get(arena.port, "/sdk/colyseus.js")
    assert status == 200 and "javascript" in ctype and b"Colyseus" in body
    assert get(arena.port, "/nothing")[0] == 404


def test_chaser_tags_the_other_player_and_scores(arena):
    client = Client(arena.endpoint, state_decoder=StateDecoder)
    chaser = client.join_or_create("arena", {"name": "chaser"})
    runner = client.join_or_create("arena", {"name": "runner"})
    assert chaser.room_id == runner.room_id
    state = chaser.wait_for_state(lambda s: len(s["players"]) == 2)
    assert state["players"][chaser.session_id]["it"] is True
    assert state["players"][runner.session_id]["it"] is False
    with gevent.Timeout(15, AssertionError("the chaser never caught the runner")):
        while True:
            me, them = (state["players"][chaser.session_id], state["players"][runner.session_id])
            if them["it"]:
                break
            chaser.send("input", {"x": them["x"] - me["x"], "y": them["y"] - me["y"]})
            version = chaser.state_version
            state = chaser.wait_for_state(lambda s, v=version: chaser.state_version > v)
    assert chaser.wait_for_message("tagged") == {"by": "chaser", "who": "runner"}
    final = runner.wait_for_state(lambda s: s["players"][chaser.session_id]["score"] == 1)
    assert final["players"][chaser.session_id]["it"] is False
    me, them = final["players"][chaser.session_id], final["players"][runner.session_id]
    assert math.hypot(me["x"] - them["x"], me["y"] - them["y"]) <= 28 + 15


def test_malformed_input_is_ignored_and_it_passes_on_when_it_leaves(arena):
    client = Client(arena.endpoint, state_decoder=StateDecoder)
    it = client.join_or_create("arena", {"name": "it"})
    other = client.join_or_create("arena", {"name": "other"})
    it.send("input", {"x": "left"})
    it.send("input", "nonsense")
    other.wait_for_state(lambda s: len(s["players"]) == 2)
    it.leave()
    state = other.wait_for_state(lambda s: len(s["players"]) == 1)
    assert state["players"][other.session_id]["it"] is True
