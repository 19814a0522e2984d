"""Authentication (README, "Authentication"): ``Room.on_auth_request`` judges a client in its
matchmaking request, before any room or seat; its value is ``client.auth`` in whichever worker
the room lives; examples/auth_jwt.py with real JWTs and the official clients, one process and
``--workers 2``."""

import collections
import json
import logging
import time
import urllib.error
import urllib.request

import gevent
import jwt
import pytest
from cluster_process import Cluster

from greenroom import AuthError, Room, Server
from greenroom.client import Client, MatchMakeError
from greenroom.errors import GreenroomError

from conftest import load_example

pytestmark = pytest.mark.timeout(180)

SECRET = "test-secret-of-the-auth-suite-32-bytes-at-least"
CLIENTS = [("colyseusjs", ""), ("sdk17", ""), ("sdk18", "/v18")]


def token(sub, seconds=3600, **claims):
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + seconds, **claims}, SECRET,
                      algorithm="HS256")


def post(url, body=None, headers=None):
    """(status, JSON body) of one POST."""
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture
def jwt_example(monkeypatch):
    monkeypatch.setenv("GREENROOM_JWT_SECRET", SECRET)
    return load_example("auth_jwt")


class Guarded(Room):
    """Admits the token "good"; each other token is refused its own way."""

    created = 0
    max_clients = 4

    @classmethod
    def on_auth_request(cls, token, options, request):
        if token == "good":
            return {"user": options.get("user", "u"), "ip": request.ip if request else None}
        if token == "raise":
            raise ValueError("the identity service said no")
        if token == "teapot":
            raise AuthError("banned", 418)
        if token == "not-http":
            raise AuthError("refused", 4217)  # not an HTTP status: 525
        return None

    def on_create(self, options):
        type(self).created += 1

    def on_join(self, client, options, auth):
        client.send("welcome", {"auth": client.auth, "same": auth is client.auth})


@pytest.fixture
def guarded(greenroom_boot):
    Guarded.created = 0
    server = Server()
    server.define("guarded", Guarded)
    return greenroom_boot(server)


def listed(server, name):
    return server.matchmaker.query(name)


# -- the class-level hook, one process -----------------------------------------------------------
@pytest.mark.parametrize("bearer,code,message", [
    (None, 525, "onAuth failed"),
    ("wrong", 525, "onAuth failed"),
    ("raise", 526, "the identity service said no"),
    ("teapot", 418, "banned"),
    ("not-http", 525, "refused"),
])
@pytest.mark.parametrize("method", ["joinOrCreate", "create", "join"])
def test_a_refusal_in_the_class_hook_answers_its_code_and_creates_no_room(
        guarded, caplog, bearer, code, message, method):
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    status, body = post(f"{guarded.http_url}/matchmake/{method}/guarded", {}, headers)
    assert (status, body) == (code, {"code": code, "error": message})
    assert guarded.rooms == [] and listed(guarded.server, "guarded") == [] and Guarded.created == 0
    lines = [r for r in caplog.records if r.levelno >= logging.INFO and "guarded" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in lines]


def test_100_concurrent_refused_joins_create_no_room_and_admitted_ones_fill_rooms_of_4(guarded):
    url = f"{guarded.http_url}/matchmake/joinOrCreate/guarded"
    refused = [gevent.spawn(post, url, {}, {"Authorization": "Bearer wrong"}) for _ in range(100)]
    gevent.joinall(refused, timeout=60)
    assert collections.Counter(job.value[0] for job in refused) == {525: 100}
    assert guarded.rooms == [] and Guarded.created == 0

    client = Client(guarded.endpoint, auth_token="good")
    jobs = [gevent.spawn(client.join_or_create, "guarded", {"user": f"p{i}"}, 30) for i in range(100)]
    gevent.joinall(jobs, timeout=90)
    rooms = [job.get() for job in jobs]
    welcomes = [room.wait_for_message("welcome", timeout=10) for room in rooms]
    assert sorted(w["auth"]["user"] for w in welcomes) == sorted(f"p{i}" for i in range(100))
    assert all(w["same"] and w["auth"]["ip"] == "127.0.0.1" for w in welcomes)
    assert Guarded.created == 25 and set(collections.Counter(r.room_id for r in rooms).values()) == {4}
    for room in rooms:
        room.leave()


def test_a_refused_join_by_id_takes_no_seat_in_the_room(guarded):
    member = guarded.connect("guarded", {}, auth_token="good")
    room = guarded.room_of(member)
    status, body = post(f"{guarded.http_url}/matchmake/joinById/{room.room_id}", {},
                        {"Authorization": "Bearer wrong"})
    assert (status, body["code"]) == (525, 525)
    assert room._gr.seats_taken == 1 and len(room.clients) == 1
    with pytest.raises(MatchMakeError) as refused:
        Client(guarded.endpoint, auth_token="nope").join_by_id(room.room_id)
    assert refused.value.code == 525


def test_the_python_api_runs_the_hook_without_a_request_or_takes_the_callers_auth(guarded):
    matchmaker = guarded.server.matchmaker
    with pytest.raises(GreenroomError) as refused:
        matchmaker.join_or_create("guarded", {})  # no request: no token
    assert refused.value.code == 525 and Guarded.created == 0
    seat = matchmaker.join_or_create("guarded", {}, auth={"user": "from-the-lobby"})
    joined = Client(guarded.endpoint).consume_seat_reservation(seat.to_json())
    assert joined.wait_for_message("welcome", timeout=10)["auth"] == {"user": "from-the-lobby"}
    joined.leave()


def test_a_hook_that_is_not_a_classmethod_is_refused_at_define_time():
    class Forgot(Room):
        def on_auth_request(self, token, options, request):
            return True

    with pytest.raises(TypeError, match="@classmethod"):
        Server().define("forgot", Forgot)


def test_a_value_that_cannot_travel_with_the_seat_is_refused_with_526(greenroom_boot, caplog):
    class Objecty(Room):
        @classmethod
        def on_auth_request(cls, token, options, request):
            return object()

    server = Server()
    server.define("objecty", Objecty)
    running = greenroom_boot(server)
    status, body = post(f"{running.http_url}/matchmake/joinOrCreate/objecty")
    assert (status, body["error"]) == (526, "on_auth_request returned a value that is not JSON")
    assert running.rooms == []
    assert any("must be JSON" in r.getMessage() for r in caplog.records)


# -- examples/auth_jwt.py with the official clients ------------------------------------------------
@pytest.mark.parametrize("client,prefix", CLIENTS)
def test_a_valid_jwt_puts_its_claims_in_client_auth(greenroom_boot, jwt_example, run_js, client,
                                                     prefix):
    running = greenroom_boot(jwt_example.server)
    signed = token("ada", role="captain")
    seen = run_js("auth.mjs", "--client", client, "--endpoint", running.endpoint + prefix,
                  "--room", "game", "--token", signed)
    assert seen["error"] is None and seen["joined"], seen
    claims = jwt.decode(signed, SECRET, algorithms=["HS256"])
    assert seen["welcome"]["sub"] == "ada" and seen["welcome"]["claims"] == claims


@pytest.mark.parametrize("client,prefix", CLIENTS)
@pytest.mark.parametrize("signed,message", [
    (lambda: token("ada", seconds=-10), "token expired"),
    (lambda: jwt.encode({"sub": "ada", "exp": int(time.time()) + 60}, "another-secret-of-32-bytes-or-more!",
                        algorithm="HS256"), "invalid token: Signature verification failed"),
    (lambda: "", "no token: set client.auth.token"),
])
def test_an_expired_or_forged_jwt_is_refused_with_its_reason_and_no_room(
        greenroom_boot, jwt_example, run_js, client, prefix, signed, message):
    running = greenroom_boot(jwt_example.server)
    args = ["--token", signed()] if signed() else []
    seen = run_js("auth.mjs", "--client", client, "--endpoint", running.endpoint + prefix,
                  "--room", "game", *args)
    assert not seen["joined"] and seen["error"]["code"] == 525, seen
    assert seen["error"]["message"] == message
    assert running.rooms == [] and listed(jwt_example.server, "game") == []


class SocketToken(Room):
    """No class hook: on_auth runs on the socket and sees the token of ``_authToken``."""

    def on_auth(self, client, options, request):
        return {"token": request.token, "query": request.query.get("_authToken")}

    def on_join(self, client, options, auth):
        client.send("welcome", auth)


@pytest.mark.parametrize("client,prefix", CLIENTS)
def test_the_socket_token_reaches_on_auth_as_request_token(greenroom_boot, run_js, client, prefix):
    server = Server(dialects={"/v18": "v5"})
    server.define("sockettoken", SocketToken)
    running = greenroom_boot(server)
    seen = run_js("auth.mjs", "--client", client, "--endpoint", running.endpoint + prefix,
                  "--room", "sockettoken", "--token", "t0k.en-1")
    assert seen["error"] is None, seen
    assert seen["welcome"] == {"token": "t0k.en-1", "query": "t0k.en-1"}


# -- --workers 2 ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jwt_cluster():
    cluster = Cluster(2, target="examples/auth_jwt.py:server",
                      env={"GREENROOM_JWT_SECRET": SECRET})
    try:
        cluster.wait_serving(2)
        yield cluster
    finally:
        cluster.stop()


def cluster_rooms(cluster):
    return sum(w["rooms"] for w in cluster.workers())


def test_claims_reach_client_auth_in_either_worker_for_100_concurrent_players(jwt_cluster):
    """Seats are reserved locally, over RPC in the other worker's rooms, in rooms the other
    worker creates; sockets land on either worker and are handed over: each player's own claims
    must be its client.auth, whatever the path."""
    jobs = [gevent.spawn(Client(jwt_cluster.endpoint, auth_token=token(f"p{i}", n=i)).join_or_create,
                         "game", {}, 60) for i in range(100)]
    gevent.joinall(jobs, timeout=120)
    rooms = [job.get() for job in jobs]
    welcomes = [room.wait_for_message("welcome", timeout=20) for room in rooms]
    assert [w["sub"] for w in welcomes] == [f"p{i}" for i in range(100)]
    assert [w["claims"]["n"] for w in welcomes] == list(range(100))
    assert len({w["processId"] for w in welcomes}) == 2  # rooms in both workers
    assert set(collections.Counter(room.room_id for room in rooms).values()) == {4}
    gevent.joinall([gevent.spawn(room.leave) for room in rooms], timeout=30)


def test_expired_tokens_are_refused_by_both_workers_and_cost_no_room(jwt_cluster):
    before = cluster_rooms(jwt_cluster)
    expired = token("late", seconds=-5)
    url = f"{jwt_cluster.http}/matchmake/joinOrCreate/game"
    jobs = [gevent.spawn(post, url, {}, {"Authorization": f"Bearer {expired}"}) for _ in range(100)]
    gevent.joinall(jobs, timeout=60)
    assert collections.Counter(map(str, (job.get() for job in jobs))) == {
        str((525, {"code": 525, "error": "token expired"})): 100}
    assert cluster_rooms(jwt_cluster) == before
    jwt_cluster.wait_for_log(r"matchmake joinOrCreate/game from .* -> 525 token expired", 2)


@pytest.mark.parametrize("client,prefix", CLIENTS)
def test_official_clients_authenticate_against_two_workers(jwt_cluster, run_js, client, prefix):
    signed = token("bea", team="red")
    seen = run_js("auth.mjs", "--client", client, "--endpoint", jwt_cluster.endpoint + prefix,
                  "--room", "game", "--token", signed, "--method", "create")
    assert seen["error"] is None, seen
    assert seen["welcome"]["claims"] == jwt.decode(signed, SECRET, algorithms=["HS256"])
    expired = run_js("auth.mjs", "--client", client, "--endpoint", jwt_cluster.endpoint + prefix,
                     "--room", "game", "--token", token("bea", seconds=-1))
    assert (expired["error"]["code"], expired["error"]["message"]) == (525, "token expired")


def test_a_reserved_seat_keeps_its_auth_when_the_room_moves_to_new_code(greenroom_boot):
    """``--migrate`` moves rooms with their unclaimed reservations: the auth goes with them."""
    from greenroom import migration
    from greenroom.definitions import SeatReservation

    old, new = Server(), Server()
    for server in (old, new):
        server.define("guarded", Guarded)
    old_running, new_running = greenroom_boot(old), greenroom_boot(new)
    seat = old.matchmaker.create("guarded", {}, auth={"user": "moved"})
    room = old.matchmaker.get_room(seat.room_id)
    data = json.loads(json.dumps(old_running.in_room(room, migration.snapshot, room)))
    assert migration.restore(new.matchmaker, data) == {"processId": new.process_id}
    moved = SeatReservation(seat.name, seat.room_id, new.process_id, seat.session_id)
    joined = Client(new_running.endpoint).consume_seat_reservation(moved.to_json())
    assert joined.wait_for_message("welcome", timeout=10)["auth"] == {"user": "moved"}
    joined.leave()
