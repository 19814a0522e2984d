"""Fuzzed room messages (issue 13): MessagePack payloads (plain, msgpackr records, mutated,
random), and whole client frames of random bytes, on a room socket.

The oracle for a plain payload is msgpack itself: what it decodes (within greenroom's depth
limit) the echo room must send back equal, what it refuses must be answered ERROR 4217 and
close 4002. A payload that uses msgpackr records may go either way, but only one of those two.
A random frame may be anything: the connection then either stays usable (a PING is answered)
or ends with the protocol's answer. Always: the bystander notices nothing, no traceback.
"""

from __future__ import annotations

import json
import math

import gevent
import msgpack
import pytest
from hostile import Arena, fuzzing
from hypothesis import given
from hypothesis import strategies as st
from peers import raw_join

from greenroom import Server
from greenroom.client import parse_error, parse_message
from greenroom.protocol.codes import Code
from greenroom.protocol.depth import within_depth
from greenroom.wsclient import ConnectionClosed

FUZZ = fuzzing(200)
ECHO = bytes([Code.ROOM_DATA]) + b"\xa4echo"


@pytest.fixture(scope="module")
def arena():
    arena = Arena(Server())
    yield arena
    arena.close()


class _Records(Exception):
    pass


def _reference(payload: bytes):
    """msgpack's verdict: ("ok", value), ("bad", None), or ("records", None) when the payload
    uses msgpackr records, which msgpack does not know."""
    def ext_hook(code, data):
        if code == 0x72:
            raise _Records
        return None if code == 0 else msgpack.ExtType(code, data)

    if not payload:
        return "ok", None  # a message without a payload: the handler gets None
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=ext_hook,
                                timestamp=3)
    except _Records:
        return "records", None
    except Exception:  # msgpack raises several unrelated classes for bad input
        return "bad", None
    return ("ok", value) if within_depth(value) else ("bad", None)


def _same(a, b) -> bool:
    """Equal as MessagePack values (NaN equals NaN; a float32 comes back as a float64)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _outcome(peer):
    """What the server did with one message: ("echo", value) or ("refused", message)."""
    frame = peer.ws.recv(5)
    if frame[0] == Code.ERROR:
        code, message = parse_error(frame)
        assert code == 4217, (code, message)
        with pytest.raises(ConnectionClosed) as closed:
            peer.ws.recv(5)
        assert closed.value.code == 4002
        return "refused", message
    message_type, value = parse_message(frame)
    assert message_type == "echo"
    return "echo", value


def _send_payload(arena, payload: bytes):
    peer = raw_join(arena.running.endpoint, "echo")
    with gevent.Timeout(10):
        peer.send(ECHO + payload)
        outcome = _outcome(peer)
        if outcome[0] == "echo":
            peer.ws.close()
    return outcome


def _check(outcome, verdict) -> None:
    kind, reference = verdict
    if kind == "ok":
        assert outcome[0] == "echo" and _same(outcome[1], _echoed(reference)), (outcome, reference)
    elif kind == "bad":
        assert outcome[0] == "refused", outcome


def _echoed(value):
    """What the echo sends back for a decoded value: as msgpack would re-read its own packing
    of it (a timestamp comes back to microseconds, as a datetime holds it)."""
    from greenroom.protocol import frames

    return msgpack.unpackb(frames.pack(value), raw=False, strict_map_key=False)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.binary(max_size=40))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(st.one_of(st.text(max_size=10), st.integers(-5, 5)),
                                            inner, max_size=6)),
    max_leaves=30)


@FUZZ
@given(value=values)
def test_any_messagepack_value_is_echoed_equal(arena, value):
    payload = msgpack.packb(value, use_bin_type=True)
    outcome = _send_payload(arena, payload)
    assert outcome[0] == "echo" and _same(outcome[1], value), (outcome, value)
    arena.after_example()


@st.composite
def mutated(draw) -> bytes:
    """A valid payload (plain or with records), then bytes flipped, cut, inserted or removed."""
    if draw(st.booleans()):
        data = bytearray(msgpack.packb(draw(values), use_bin_type=True))
    else:
        data = bytearray(draw(st.sampled_from(RECORD_PAYLOADS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif data:
            del data[at]
    return bytes(data)


# What @colyseus/sdk's msgpackr sends for objects: records (d4 72 <id> + keys + values), with
# references back to them (tests/test_msgpackr.py has the decoding side of each).
RECORD_PAYLOADS = [bytes.fromhex(h) for h in [
    "d4724093a178a179a46e616d65cb402900000000000007a8706c617965722d31",
    "d4724092a161a16293010203c0",
    "d4724091a16181a162c3",
    "d4724091a1704001",
    "d4724092a161a1629140010203",
    "d4724092a170a171d4724191a17a014102",
    "d4724091a164d6ff00000000",
    "d4724091a175d40000",
    "92d4724091a17801d4724091a1780240" + "02",
]]


@FUZZ
@given(payload=st.one_of(mutated(), st.binary(min_size=1, max_size=64)))
def test_a_broken_payload_is_refused_with_4217_or_echoed_as_msgpack_reads_it(arena, payload):
    outcome = _send_payload(arena, payload)
    _check(outcome, _reference(payload))
    arena.after_example()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=25)


@fuzzing(4)
@given(batch=st.lists(json_values, min_size=50, max_size=50))
def test_payloads_packed_by_the_official_msgpackr_are_echoed_equal(arena, run_js, tmp_path, batch):
    """What the SDK's own packer makes of any JSON value (records for every object, nested and
    repeated) decodes to that value: one Node run packs a batch of 50."""
    values = tmp_path / "values.json"
    values.write_text(json.dumps(batch))
    packed = run_js("pack_msgpackr.mjs", values)["packed"]
    assert len(packed) == len(batch)
    for value, hexdata in zip(batch, packed, strict=True):
        outcome = _send_payload(arena, bytes.fromhex(hexdata))
        assert outcome == ("echo", value), (value, hexdata, outcome)
    arena.after_example()


def _probe(peer):
    """After a frame: the connection answers a PING (True), or it ended with a protocol close."""
    try:
        peer.ws.send(bytes([Code.PING]))
    except ConnectionClosed:
        pass
    errors = []
    while True:
        try:
            frame = peer.ws.recv(5)
        except ConnectionClosed as closed:
            assert closed.code in (4000, 4002), closed
            assert closed.code == 4000 or any(code == 4217 for code, _ in errors), (closed, errors)
            return False
        if frame == bytes([Code.PING]):
            return True
        if frame[0] == Code.ERROR:
            errors.append(parse_error(frame))


@FUZZ
@given(frame=st.one_of(
    st.binary(min_size=1, max_size=48),
    st.tuples(st.sampled_from([Code.ROOM_DATA, Code.ROOM_DATA_BYTES, Code.ROOM_REQUEST,
                               Code.JOIN_ROOM, Code.LEAVE_ROOM, Code.PING, 0x80 | Code.ROOM_DATA,
                               Code.ROOM_STATE, Code.ERROR]),
              st.binary(max_size=40)).map(lambda t: bytes([t[0]]) + t[1])))
def test_any_client_frame_is_served_or_refused_by_the_protocol(arena, frame):
    peer = raw_join(arena.running.endpoint, "echo")
    with gevent.Timeout(10):
        peer.send(frame)
        if _probe(peer):
            peer.ws.close()
    arena.after_example()


def test_every_fuzzed_peer_gave_its_seat_back(arena):
    arena.assert_only_the_bystander_left()
    arena.after_example()
