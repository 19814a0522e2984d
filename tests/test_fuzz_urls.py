"""Fuzzed room-socket URLs (issue 13): paths, query strings, session ids and reconnection
tokens, random and near-miss (a real room with a made-up session or token, a real session
on the wrong room).

The property: the upgrade is answered (never a 500), a socket that names no seat gets ERROR 524
and close 4002 (4003 when it carried a reconnection token), the bare endpoint answers PING, the
room's bystander keeps echoing and nothing is logged as a traceback.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import gevent
import pytest
from hostile import Arena, fuzzing
from hypothesis import given
from hypothesis import strategies as st

from greenroom import Server
from greenroom.client import parse_error
from greenroom.protocol.codes import Code
from greenroom.wsclient import ConnectionClosed, HandshakeError, connect

FUZZ = fuzzing(200)


@pytest.fixture(scope="module")
def arena():
    arena = Arena(Server())
    yield arena
    arena.close()


ids = st.one_of(st.from_regex(r"[A-Za-z0-9_-]{9}", fullmatch=True), st.text(max_size=12),
                st.just(""), st.just("x" * 2000))
tokens = st.one_of(ids, st.tuples(ids, ids).map(":".join), st.text(max_size=40))
segments = st.one_of(ids, st.sampled_from(["..", ".", "%2e%2e", "matchmake", "health"]))


@st.composite
def urls(draw, arena) -> tuple[str, bool, bool]:
    """A socket URL; whether it has a token; whether it is the latency endpoint."""
    real_room = arena.room.room_id
    path = [quote(s, safe="") for s in draw(st.lists(segments, max_size=3))]
    if draw(st.booleans()):
        path += [arena.room.process_id, real_room]  # a real room, a made-up seat
    query: list[tuple[str, str]] = []
    if draw(st.booleans()) or len(path) >= 2:
        query.append(("sessionId", draw(st.one_of(ids, st.just(arena.bystander.room.session_id)))))
    if draw(st.booleans()):
        query.append(("reconnectionToken", draw(st.one_of(
            tokens, st.just(f"{real_room}:" + draw(ids))))))
    if draw(st.booleans()):
        query.append(("skipHandshake", draw(st.sampled_from(["true", "1", "", "0", "no"]))))
    query += draw(st.lists(st.tuples(st.text(max_size=6), st.text(max_size=10)), max_size=2))
    # Under two path segments (as the server decodes them) is the latency socket, not a room's.
    bare = len([s for s in unquote("/".join(path)).split("/") if s]) < 2
    url = f"{arena.running.endpoint}/{'/'.join(path)}"
    if query:
        url += "?" + urlencode(query)
    if draw(st.booleans()):
        url += "&" + draw(st.from_regex(r"[%=&;+A-Za-z0-9]{0,20}", fullmatch=True))
    # As the server reads the query: the last of repeated keys; a blank value is no value.
    token = bool(parse_qs(urlsplit(url).query).get("reconnectionToken", [""])[-1])
    return url, token, bare


@FUZZ
@given(data=st.data())
def test_any_socket_url_is_answered_by_the_protocol(arena, data):
    url, token, bare = data.draw(urls(arena))
    with gevent.Timeout(10):
        try:
            ws = connect(url, timeout=5)
        except HandshakeError as refused:
            assert 400 <= refused.status < 500, refused  # never a 500
            arena.after_example()
            return
        if bare:
            ws.send(bytes([Code.PING]))
            assert ws.recv(5) == bytes([Code.PING])
            ws.close()
        else:
            _refused_or_joined(ws, arena, token)
    arena.after_example()


def _refused_or_joined(ws, arena, token: bool) -> None:
    """A made-up seat is refused with the protocol's ERROR and close; the bystander's own
    session id on a second socket is a seat already claimed, refused the same way."""
    frame = ws.recv(5)
    if frame[0] == Code.ERROR:
        code, message = parse_error(frame)
        assert code == 524, (code, message)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(5)
        assert closed.value.code == (4003 if token else 4002), (closed.value, ws.url)
        return
    # The only seat that exists is the bystander's, and it is taken: nothing may join.
    raise AssertionError(f"a socket joined with a made-up seat: {ws.url} -> {frame[:40]!r}")


def test_every_fuzzed_socket_left_the_room_as_it_was(arena):
    arena.assert_only_the_bystander_left()
    arena.after_example()
