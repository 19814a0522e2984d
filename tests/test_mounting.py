"""greenroom under someone else's WSGI server (issue 16, "also fix").

* An app mounted behind ``Server.wsgi_middleware`` (Flask-Sock, say) receives its own WebSocket
  upgrades: greenroom takes only its room sockets and its latency socket.
* Under a foreign WSGI server (gunicorn) greenroom joins the deployment on the first request;
  when Redis is down then, that request gets 503 and a later one tries again, instead of the
  server being marked started for good with no heartbeat and no RPC.
"""

import json
import urllib.error
import urllib.request

import pytest
from gevent.pywsgi import WSGIServer

from greenroom import Room, Server
from greenroom.web.wsfixes import Handler
from greenroom.wsclient import connect

from servers import RedisServer, free_port


class Table(Room):
    pass


def mounted_app(environ, start_response):
    """A stand-in for the user's own app: a WebSocket echo on /chat, text elsewhere."""
    ws = environ.get("wsgi.websocket")
    if ws is not None and environ["PATH_INFO"] == "/chat":
        while (message := ws.receive()) is not None:
            ws.send("app: " + (message if isinstance(message, str) else message.decode()))
        return []
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app"]


def serve(app):
    wsgi = WSGIServer(("127.0.0.1", 0), app, handler_class=Handler, log=None)
    wsgi.start()
    return wsgi


def test_a_mounted_app_receives_its_own_websocket_upgrades():
    server = Server()
    server.define("table", Table)
    wsgi = serve(server.wsgi_middleware(mounted_app))
    try:
        ws = connect(f"ws://127.0.0.1:{wsgi.server_port}/chat", timeout=5)
        ws.send("hello")
        assert ws.recv(timeout=5) == "app: hello"
        ws.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{wsgi.server_port}/health", timeout=5) as r:
            assert json.load(r)["status"] == "ok"  # greenroom's own routes still answer
    finally:
        wsgi.stop()
        server.shutdown(1)


def join(port):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/matchmake/joinOrCreate/table",
                                     data=b"{}", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_a_first_request_during_a_redis_outage_is_retried_on_the_next(tmp_path):
    redis = RedisServer(free_port(), tmp_path)
    redis.start()
    server = Server(redis_url=redis.url)  # the app is imported while Redis answers...
    server.define("table", Table)
    wsgi = serve(server.wsgi_app)  # a foreign WSGI server: nothing calls server.listen()
    try:
        redis.stop()  # ...and is down when the first request arrives
        status, body = join(wsgi.server_port)
        assert status == 503, body
        redis.start()
        status, body = join(wsgi.server_port)
        assert status == 200, body
        assert body["room"]["name"] == "table"
        assert server.registry.is_alive(server.process_id)  # heartbeating: it joined
    finally:
        wsgi.stop()
        server.shutdown(1)
        redis.stop()


@pytest.fixture(autouse=True)
def _no_env_backends(monkeypatch):
    for name in ("GREENROOM_REDIS_URL", "REDIS_URL", "GREENROOM_MONGO_URI", "MONGO_URI"):
        monkeypatch.delenv(name, raising=False)
