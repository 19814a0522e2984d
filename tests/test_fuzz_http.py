"""Fuzzed matchmaking HTTP requests (issue 13): methods, paths, headers and bodies, written as
raw bytes on a socket so that nothing in between tidies them up, against each listings backend
(in memory, the suite's real Redis, its real MongoDB-protocol server).

The property: every request gets a complete HTTP answer; never a 500; a matchmaking answer that
is not a seat has the protocol's shape ``{"code": <status>, "error": <text>}`` and the status is
a client error or one of the matchmaking codes; a seat has its ids; the room's bystander keeps
echoing and nothing is logged as a traceback. A room filtered by an option gets every kind of
JSON value as that option, so the listings' queries see them all.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import quote

import gevent
import pytest
from hostile import Arena, Echo, fuzzing
from hypothesis import event, given
from hypothesis import strategies as st

from greenroom import Server

FUZZ = fuzzing(120)
MATCHMAKE_CODES = {520, 521, 522, 523, 524, 525, 526}


@pytest.fixture(scope="module", params=["local", "redis", "mongo"])
def arena(request):
    if request.param == "redis":
        server = Server(redis_url=request.getfixturevalue("redis_url"))
    elif request.param == "mongo":
        server = Server(mongo_uri=request.getfixturevalue("mongo_uri"))
    else:
        server = Server()
    server.define("filtered", Echo).filter_by("mode").sort_by(clients=-1)
    arena = Arena(server)
    yield arena
    arena.close()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
              st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["options", "filter", "json", "bytes", "empty", "token"]))
    if kind == "options":
        return json.dumps(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=5))).encode()
    if kind == "filter":
        return json.dumps({"mode": draw(json_values)}).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "token":
        token = draw(st.one_of(json_values, st.from_regex(r"[A-Za-z0-9_-]{9}:[A-Za-z0-9_-]{0,12}",
                                                          fullmatch=True)))
        return json.dumps({"reconnectionToken": token}).encode()
    if kind == "empty":
        return b""
    return draw(st.binary(max_size=80))


segment = st.one_of(
    st.sampled_from(["echo", "filtered", "matchmake", "..", ".", "%2e%2e", "health", "", "x" * 300]),
    st.text(max_size=12).map(lambda s: quote(s, safe="")),
    st.from_regex(r"[A-Za-z0-9._~!$&'()*+,;=:@%-]{1,12}", fullmatch=True))
methods = st.one_of(st.sampled_from(["joinOrCreate", "create", "join", "joinById", "reconnect"]),
                    segment)
header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda name: name.lower() not in ("content-length", "transfer-encoding", "connection",
                                      "expect", "upgrade"))
header_values = st.from_regex(r"[ -~]{0,40}", fullmatch=True).map(str.strip)


@st.composite
def requests(draw) -> tuple[bytes, bool]:
    """Raw request bytes, and whether they are framed correctly (a lying or broken length may
    get the HTTP server's own plain 400 instead of a matchmaking answer)."""
    verb = draw(st.one_of(st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "OPTIONS",
                                                          "HEAD", "PATCH"]),
                          st.from_regex(r"[A-Z]{1,8}", fullmatch=True)))
    prefix = "/".join(draw(st.lists(segment, max_size=2)))
    target = draw(st.one_of(st.sampled_from(["echo", "filtered"]), segment))
    path = "/" + (prefix + "/" if prefix else "") + f"matchmake/{draw(methods)}/{target}"
    if draw(st.booleans()):
        path += "?" + quote(draw(st.text(max_size=20)), safe="=&")
    body = draw(bodies())
    headers = [("Host", "127.0.0.1"), ("Connection", "close")]
    headers += draw(st.lists(st.tuples(header_names, header_values), max_size=4))
    if draw(st.booleans()):
        headers.append(("Content-Type", draw(st.sampled_from(["application/json", "text/plain",
                                                              "application/json; charset=latin-1"]))))
    framing = draw(st.sampled_from(["exact"] * 5 + ["short", "long", "none", "junk", "negative"]))
    length = {"exact": len(body), "short": max(len(body) - 3, 0), "long": len(body) + 5,
              "none": None, "junk": "12ab", "negative": -1}[framing]
    # pywsgi refuses a HEAD with a Content-Length (its own 400), whatever the length says
    well_framed = framing in ("exact", "short") and not (verb == "HEAD" and length)
    if length is not None:
        headers.append(("Content-Length", str(length)))
    head = f"{verb} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body, well_framed


def _exchange(arena, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", arena.running.port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)  # a lying Content-Length must not leave the server waiting
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@FUZZ
@given(request=requests())
def test_any_matchmaking_request_gets_a_protocol_answer(arena, request):
    raw, well_framed = request
    with gevent.Timeout(15):
        status, headers, body = _exchange(arena, raw)
    verb = raw.split(b" ", 1)[0]
    event(f"HTTP {status}")  # --hypothesis-show-statistics: what the fuzzing reached
    assert status != 500, body
    if verb == b"HEAD":
        assert body == b"", body  # headers alone, or a keep-alive client reads this body next
    elif status == 200:
        seat = json.loads(body)
        assert seat["sessionId"] and seat["roomId"] and seat["room"]["processId"], seat
    elif status == 204:
        assert verb == b"OPTIONS"
    elif "application/json" in headers.get("content-type", ""):
        if verb != b"HEAD":
            error = json.loads(body)
            assert error["code"] == status and isinstance(error["error"], str) and error["error"]
        assert 400 <= status < 500 or status in MATCHMAKE_CODES, (status, body)
    else:  # the HTTP server's own answer to a request it could not read
        assert status == 400 and not well_framed, (status, body, raw[:300])
    arena.after_example()


def test_a_body_cut_short_is_a_400_with_one_line(arena):
    """Found by the fuzzing: pywsgi raised OSError from wsgi.input, which became a 500 and a
    traceback; a peer that half-closes before its announced body is the client's error."""
    mark = arena.watch.mark()
    raw = (b"POST /matchmake/joinOrCreate/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"Content-Length: 7\r\n\r\n{}")
    status, _, body = _exchange(arena, raw)
    assert (status, json.loads(body)) == (400, {"code": 400, "error": "request body shorter than "
                                                                      "its Content-Length"})
    assert len(arena.watch.since(mark)) == 1
    arena.after_example()


@pytest.mark.parametrize("path", ["/matchmake/joinOrCreate/echo", "/health", "/", "/nowhere"])
def test_a_head_gets_headers_alone(arena, path):
    """Found by the fuzzing: the answer to a HEAD carried its body, which a keep-alive client
    reads as the start of its next response."""
    status, headers, body = _exchange(arena, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n"
                                             "Connection: close\r\n\r\n".encode())
    assert body == b"" and int(headers["content-length"]) > 0, (status, headers)
    arena.after_example()


def test_the_rooms_fuzzing_created_are_all_listed_and_the_bystander_kept_its_seat(arena):
    """Every room the fuzzing made is in the catalogue (none lost, none left unlisted) and the
    bystander's room holds only the bystander."""
    listed = {listing.room_id for listing in arena.running.matchmaker.query()}
    assert set(arena.running.matchmaker.rooms) <= listed
    assert [c.session_id for c in arena.room.clients] == [arena.bystander.room.session_id]
    arena.after_example()
