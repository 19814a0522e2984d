"""greenroom in front of a Flask app, in one WSGI server (examples/flask_mount.py)."""

from conftest import load_example


def test_flask_routes_and_rooms_share_one_server(greenroom_boot):
    test = greenroom_boot(load_example("flask_mount").server)
    home = test.get("/")
    assert (home.status, home.body) == (200, b"the game's web site, served by Flask")
    assert test.get("/nothing-here").status == 404  # Flask's own 404
    health = test.get("/health")
    assert health.status == 200 and health.json()["status"] == "ok"
    assert test.get("/ready").json()["status"] == "ready"  # greenroom's routes come first
    room = test.connect("lobby", state_decoder=None)
    assert room.wait_for_message("hello") == "from greenroom"
    room.leave()
