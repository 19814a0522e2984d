"""greenroom in front of a Flask app, in one WSGI server (examples/flask_mount.py)."""

import http.client

from greenroom.client import Client

from conftest import load_example


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read().decode()


def test_flask_routes_and_rooms_share_one_server(serve):
    example = load_example("flask_mount")
    running = serve(example.server)
    assert get(running.port, "/") == (200, "the game's web site, served by Flask")
    assert get(running.port, "/nothing-here")[0] == 404  # Flask's own 404
    status, body = get(running.port, "/health")
    assert status == 200 and '"status":"ok"' in body
    room = Client(running.endpoint).join_or_create("lobby")
    assert room.wait_for_message("hello") == "from greenroom"
    room.leave()
