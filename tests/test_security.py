"""Security (issue 13): a seat reservation or a reconnection token opens its own seat in its
own room and nothing else; ids come from ``secrets``; the monitor and /metrics stay closed
without their token; no route serves a file outside the list the package ships.
"""

from __future__ import annotations

import base64
import socket

import gevent
import pytest
from gevent.queue import Queue
from peers import RawPeer, raw_join, resume_url_params

from greenroom import Room, Server
from greenroom import ids as ids_module
from greenroom.client import Client, MatchMakeError, SeatReservation, parse_error
from greenroom.metrics import Metrics
from greenroom.monitor import Monitor
from greenroom.protocol.codes import Code
from greenroom.wsclient import ConnectionClosed

MONITOR_TOKEN = "a-monitor-token"
METRICS_TOKEN = "a-metrics-token"


class Held(Room):
    """Holds a dropped client's seat for 20 s; reports drops. No pings: the test drops."""

    ping_interval = None
    events: Queue

    def on_create(self, options):
        self.on_message("echo", lambda client, message: client.send("echo", message))

    def on_drop(self, client, code):
        self.allow_reconnection(client, 20)
        type(self).events.put(("drop", client.session_id))


@pytest.fixture
def rooms(greenroom_boot):
    """Two rooms of one name, A and B, on one server: (TestServer, events)."""
    cls = type("HeldRoom", (Held,), {"events": Queue()})
    server = Server(monitor=Monitor(token=MONITOR_TOKEN), metrics=Metrics(token=METRICS_TOKEN))
    server.define("held", cls)
    return greenroom_boot(server), cls.events


def _refusal(peer: RawPeer) -> tuple[int, int]:
    """(ERROR code, close code) of a socket the server refuses."""
    with gevent.Timeout(10):
        code, _ = parse_error(peer.ws.recv(5))
        with pytest.raises(ConnectionClosed) as closed:
            peer.ws.recv(5)
    return code, closed.value.code


def _moved(reservation: SeatReservation, room_id: str) -> SeatReservation:
    return SeatReservation(reservation.name, room_id, reservation.process_id,
                           reservation.session_id, reservation.public_address)


def _dropped(running, events, name: str = "held", room_id: str | None = None) -> RawPeer:
    """A joined client whose connection was lost; its seat is held for it."""
    if room_id is None:
        peer = raw_join(running.endpoint, name)
    else:
        peer = RawPeer(running.endpoint, Client(running.endpoint).matchmake("joinById", room_id))
        peer.read_join_room()
        peer.ack()
    peer.abort()
    assert events.get(timeout=5) == ("drop", peer.session_id)
    return peer


def test_a_seat_reservation_opens_its_own_room_only_and_only_once(rooms):
    running, events = rooms
    room_a, room_b = running.create_room("held"), running.create_room("held")
    client = Client(running.endpoint)
    seat = client.matchmake("joinById", room_a.room_id)
    assert _refusal(RawPeer(running.endpoint, _moved(seat, room_b.room_id))) == (524, 4002)
    # The attempt on B consumed nothing: the seat opens A, once.
    owner = RawPeer(running.endpoint, seat)
    assert owner.read_join_room().token
    assert _refusal(RawPeer(running.endpoint, seat)) == (524, 4002)
    assert [c.session_id for c in room_b.clients] == []
    assert [c.session_id for c in room_a.clients] == [seat.session_id]
    _leave(owner)


def _leave(peer: RawPeer) -> None:
    """Leave with consent: no seat is held, so the server's shutdown does not wait for it."""
    peer.send(bytes([Code.LEAVE_ROOM]))
    assert peer.read_until_closed().code == 4000


def test_a_reconnection_token_reclaims_its_own_seat_in_its_own_room_only(rooms):
    running, events = rooms
    room_a, room_b = running.create_room("held").room_id, running.create_room("held")
    victim = _dropped(running, events, room_id=room_a)
    token = victim.join.token
    client = Client(running.endpoint)
    # Over HTTP: the token names a seat of A, not of B.
    with pytest.raises(MatchMakeError) as refused:
        client.matchmake("reconnect", room_b.room_id, {"reconnectionToken": token})
    assert refused.value.code == 524
    # On B's socket, with the victim's session id: refused as a token (4003).
    on_b = RawPeer(running.endpoint, _moved(victim.reservation, room_b.room_id),
                   resume_url_params(victim))
    assert _refusal(on_b) == (524, 4003)
    # On A's socket with another session id (a made-up one, then a real seat of someone else):
    # the token does not open the victim's seat for them.
    made_up = SeatReservation("held", room_a, victim.reservation.process_id, "madeUpId1", None)
    assert _refusal(RawPeer(running.endpoint, made_up, resume_url_params(victim))) == (524, 4003)
    other_seat = client.matchmake("joinById", room_a)
    other = RawPeer(running.endpoint, other_seat, resume_url_params(victim))
    assert other.read_join_room().token != token  # its own seat, as if no token were given
    assert other_seat.session_id != victim.session_id
    _leave(other)
    # Through all that, the victim's seat stayed held for the victim alone.
    back = client.reconnect(f"{room_a}:{token}")
    assert back.session_id == victim.session_id
    back.send("echo", "mine again")
    assert back.wait_for_message("echo") == "mine again"
    back.leave()


def test_ids_come_from_secrets(rooms, monkeypatch):
    """Room ids, session ids and reconnection tokens are all made of secrets.token_bytes'
    output (a spy records it), so none comes from a guessable generator."""
    running, events = rooms
    drawn: set[str] = set()
    real = ids_module.secrets.token_bytes

    def spy(n: int) -> bytes:
        data = real(n)
        drawn.add("".join(ids_module._ALPHABET[b & 63] for b in data))
        return data

    monkeypatch.setattr(ids_module.secrets, "token_bytes", spy)
    peer = raw_join(running.endpoint, "held")
    assert {peer.reservation.room_id, peer.session_id, peer.join.token} <= drawn, drawn


def test_ids_do_not_collide():
    """200,000 ids of 54 random bits: a collision here has odds near 1e-6; a generator with
    little entropy (a clock, a counter) collides or repeats at once."""
    generated = [ids_module.generate_id() for _ in range(200_000)]
    assert len(set(generated)) == len(generated)
    assert all(len(value) == 9 and ids_module.is_valid_id(value) for value in generated[:1000])


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("path,token", [("/monitor/", MONITOR_TOKEN),
                                        ("/monitor/api/rooms", MONITOR_TOKEN),
                                        ("/metrics", METRICS_TOKEN)])
def test_operator_routes_refuse_anything_but_their_token(rooms, path, token):
    running, _ = rooms
    wrong = [None, "Bearer", "Bearer ", f"Bearer {token[:-1]}", f"Bearer {token}x",
             f"Bearer {token.upper()}", _basic(token, "nope"), _basic("", token[:-1]),
             "Basic !!notbase64", f"Token {token}", token,
             f"Bearer {METRICS_TOKEN if token == MONITOR_TOKEN else MONITOR_TOKEN}"]
    for header in wrong:
        answer = running.get(path, {"Authorization": header} if header else None)
        assert answer.status == 401 and answer.headers["WWW-Authenticate"].startswith("Basic "), header
        assert b"greenroom_" not in answer.body and b"roomId" not in answer.body
    assert running.get(path, {"Authorization": f"Bearer {token}"}).status == 200
    assert running.get(path, {"Authorization": _basic("anyone", token)}).status == 200


TRAVERSALS = [
    "../../../../etc/passwd", "..%2f..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2fsetup.cfg", "..\\..\\setup.cfg", "..%5c..%5csetup.cfg",
    "%c0%ae%c0%ae/%c0%ae%c0%ae/setup.cfg", "....//....//setup.cfg", "static/../../setup.cfg",
    "static/index.html", "__init__.py", "api.py", "static/monitor.js%00.html",
    "/etc/passwd", "//etc/passwd", "..;/..;/setup.cfg", "%252e%252e/setup.cfg",
    "monitor.js/../../__init__.py", "./monitor.css/..%2f..%2fapi.py",
]


def _get_raw(port: int, target: str, authorization: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client normalises it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("prefix,token", [("/monitor/", MONITOR_TOKEN), ("/metrics/", METRICS_TOKEN),
                                          ("/", MONITOR_TOKEN), ("/health/", MONITOR_TOKEN),
                                          ("/matchmake/joinOrCreate/", MONITOR_TOKEN)])
def test_no_route_serves_a_file_outside_its_list(rooms, prefix, token):
    """Every HTTP route, with its credentials, asked for files by traversal and encoding tricks:
    never a 200 with a file's contents (/etc/passwd, setup.cfg, the package's own sources)."""
    running, _ = rooms
    for traversal in TRAVERSALS:
        status, body = _get_raw(running.port, prefix + traversal, f"Bearer {token}")
        assert b"root:" not in body and b"[metadata]" not in body and b"import " not in body, \
            (prefix + traversal, status, body[:200])
        assert status in (400, 401, 404, 405, 308), (prefix + traversal, status, body[:200])
