"""The compiled frame parse and reply encode (greenroom/protocol/_wire.c) against frames.py.

Every other test runs with whatever implementation is active; these run the compiled functions
and the Python references on the same inputs -- valid frames and values, the usual msgpackr
records, and mutated, truncated and random bytes -- and require the same result or the same
error (type and message). Floats are compared by their bits, so a NaN or a -0.0 counts too.
"""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from typing import Any

import msgpack
import pytest
from hostile import fuzzing
from hypothesis import given
from hypothesis import strategies as st

from greenroom.protocol import frames, native
from greenroom.protocol.codes import Code

compiled = native.compiled
needs_compiled = pytest.mark.skipif(compiled is None, reason="switched off (GREENROOM_PURE_PYTHON)")
FUZZ = fuzzing(1500)


def test_the_extension_is_built_unless_switched_off() -> None:
    """CI builds it: a silently failed compile must fail here, not fall back unnoticed."""
    if native.switched_off():
        assert compiled is None
        assert frames.parse_client_frame is frames.py_parse_client_frame
        assert frames.room_data is frames.py_room_data
        return
    assert compiled is not None, "greenroom.protocol._wire was not built (is a C compiler there?)"
    assert frames.parse_client_frame is compiled.parse_client_frame
    assert frames.room_data is compiled.room_data


def canonical(value: Any) -> Any:
    """``value`` with every type made visible (1, 1.0 and True differ) and floats as bits."""
    kind = type(value)
    if kind is float:
        return ("float", struct.pack(">d", value))
    if kind is dict:
        return ("dict", [(canonical(k), canonical(v)) for k, v in value.items()])
    if kind in (list, tuple):
        return (kind.__name__, [canonical(v) for v in value])
    if isinstance(value, frames.ClientFrame):
        return ("frame", value.code, canonical(value.type), canonical(value.payload), value.request_id)
    return (kind.__name__, value)


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", canonical(fn(*args)))
    except Exception as exc:  # noqa: BLE001 - the error is the outcome compared
        return ("error", type(exc), str(exc))


# -- values and frames ------------------------------------------------------------------------

KEYS = st.text(max_size=40) | st.integers(-(2**70), 2**70)
SCALARS = (st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True)
           | st.floats(width=32) | st.sampled_from([0, 1, -1, 31, -32, -33, 127, 128, 255, 256,
                                                    -128, -129, 32767, 32768, -32768, -32769,
                                                    65535, 65536, 2**31 - 1, 2**31, -(2**31),
                                                    -(2**31) - 1, 2**32 - 1, 2**32, 2**63 - 1,
                                                    2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
           | st.integers() | st.text(max_size=300) | st.binary(max_size=8))
VALUES = st.recursive(
    SCALARS,
    lambda inner: (st.lists(inner, max_size=20) | st.tuples(inner, inner)
                   | st.dictionaries(KEYS, inner, max_size=20)),
    max_leaves=60,
)


def deep(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def record(keys: list[Any], values: list[bytes], record_id: int = 0x40) -> bytes:
    """A msgpackr record definition, as the SDKs send an object: ``d4 72 id [keys] values``."""
    return bytes([0xD4, 0x72, record_id]) + packed(keys) + b"".join(values)


def packed(value: Any) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return b"\xc0"


EDGE_PAYLOADS = [
    b"", b"\xd4\x00\x00", b"\xd4\x72", b"\xd4\x72\x40", b"\xd4\x72\x40\x90", b"\x40", b"\xc1",
    b"\xd9", b"\xdc\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdd\x7f\xff\xff\xff\x01",
    b"\xa3\xff\xfe\xfd", b"\xa3\xed\xa0\x80", b"\xca\x7f\x80\x00\x01", b"\xca\xff\xc0\x00\x00",
    b"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x01", b"\x82\xa1a\x01\xa1a\x02", b"\x81\x91\x01\x02",
    b"\xc7\x00\x05", b"\xd6\xff\x00\x00\x00\x01", b"\xc4\x01a",
    packed(deep(31)), packed(deep(32)), packed(deep(33)), packed(deep(63)), packed(deep(64)),
    packed(deep(65)), packed(deep(200)),
    record(["a"], [packed(deep(30))]), record(["a"], [packed(deep(61))]),
    record(["a"], [packed(deep(62))]), record(["a"], [packed(deep(63))]),
    record(["a", "a"], [b"\x01", b"\x02"]), record(["a"], [b"\x40"]),
    record(["a"], [b"\x01", b"\x02"]), record(["a", "b"], [b"\x01"]),
    record(["a"], [record(["b"], [b"\x01"])]), record([1], [b"\x01"]), record(["a"], [b"\xd4\x00\x07"]),
    record([str(i) for i in range(15)], [b"\x01"] * 15), record([str(i) for i in range(16)], [b"\x01"] * 16),
]

PAYLOADS = st.one_of(
    VALUES.map(packed),
    st.builds(lambda d: record(list(d), [packed(v) for v in d.values()]),
              st.dictionaries(st.text(max_size=20), VALUES, max_size=16)),
    st.builds(lambda keys, values: record(keys, [packed(v) for v in values]),
              st.lists(KEYS | st.none(), max_size=16), st.lists(VALUES, max_size=17)),
    st.binary(max_size=80),
    st.sampled_from(EDGE_PAYLOADS),
)


def mutate(data: bytes, where: int, byte: int, cut: int) -> bytes:
    if not data:
        return bytes([byte])
    where %= len(data)
    data = data[:where] + bytes([byte]) + data[where + 1 :]
    return data[: len(data) - cut % (len(data) + 1)] if cut else data


TYPES = st.one_of(
    st.text(min_size=1, max_size=40).map(lambda t: frames.encode_type(t)),
    st.integers(-5, 300).map(lambda n: frames.encode_type(n)),
    st.sampled_from([b"\xa0", b"\xd9\x00", b"\xd9\x05ab", b"\xd9\x02ok", b"\xda\x00\x02ok",
                     b"\xa2\xff\xfe", b"\xa1", b"\xcb" + struct.pack(">d", 1.5), b"\xc1", b""]),
)
CODES = st.sampled_from([Code.ROOM_DATA, Code.ROOM_DATA | 0x80, Code.ROOM_DATA | 0x40,
                         Code.ROOM_DATA | 0x20, Code.ROOM_DATA_BYTES, Code.ROOM_REQUEST,
                         Code.JOIN_ROOM, Code.LEAVE_ROOM, Code.PING, 0, 99, 0xFF])


@st.composite
def client_frames(draw: Any) -> bytes:
    frame = bytes([draw(CODES)]) + draw(TYPES) + draw(PAYLOADS)
    if draw(st.integers(0, 3)) == 0:
        frame = mutate(frame, draw(st.integers(0, 999)), draw(st.integers(0, 255)),
                       draw(st.integers(0, 4)))
    return frame


# -- the parse ----------------------------------------------------------------------------------

@needs_compiled
@FUZZ
@given(client_frames())
def test_parse_gives_the_reference_result_or_error(frame: bytes) -> None:
    assert outcome(compiled.parse_client_frame, frame) == outcome(frames.py_parse_client_frame, frame)


@needs_compiled
@FUZZ
@given(st.binary(max_size=64))
def test_parse_of_random_bytes_gives_the_reference_result_or_error(frame: bytes) -> None:
    assert outcome(compiled.parse_client_frame, frame) == outcome(frames.py_parse_client_frame, frame)


@needs_compiled
@pytest.mark.parametrize("frame", [b"", b"\x0d", b"\x0d\xa4echo", b"\x0d\xa4ech", bytearray(b"\x0d\xa1a"),
                                   memoryview(b"\x0d\xa1a\x01"), "\x0d\xa1a"])
def test_parse_of_short_and_odd_inputs_gives_the_reference_result_or_error(frame: Any) -> None:
    assert outcome(compiled.parse_client_frame, frame) == outcome(frames.py_parse_client_frame, frame)


@needs_compiled
@pytest.mark.parametrize("payload", EDGE_PAYLOADS)
def test_parse_of_edge_payloads_gives_the_reference_result_or_error(payload: bytes) -> None:
    """Depth limits, record shapes, duplicate keys, float bits, extensions, truncations."""
    for frame in (b"\x0d\xa4echo" + payload, b"\x4d\xd9\x01e" + payload):
        assert outcome(compiled.parse_client_frame, frame) == outcome(frames.py_parse_client_frame,
                                                                      frame)


ECHO_FRAME = bytes.fromhex("0da46563686fd4724093a178a179a46e616d65cb402900000000000007a8706c617965722d31")


@needs_compiled
@pytest.mark.parametrize("frame", [
    ECHO_FRAME,                                   # what @colyseus/sdk sends for {x, y, name}
    b"\x0d\xa4move" + msgpack.packb({"x": 1, "y": [1.5, None, True, "s"]}),
    b"\x8d\xa4move" + msgpack.packb([1, -1, 2**64 - 1, -(2**63)]),
    b"\x0d\xa4ping",                              # no payload: UNDEFINED
    b"\x0d\xa1a\xd4\x00\x00",                     # msgpackr's undefined
])
def test_the_usual_frames_take_the_compiled_path(frame: bytes) -> None:
    """Without this, C code that hands every frame to the reference would pass the tests above."""
    calls = []

    def spy(data: bytes) -> frames.ClientFrame:
        calls.append(data)
        return frames.py_parse_client_frame(data)

    compiled.configure(frames.ClientFrame, frames.UNDEFINED, spy, frames.py_room_data)
    try:
        result = compiled.parse_client_frame(frame)
    finally:
        compiled.configure(frames.ClientFrame, frames.UNDEFINED, frames.py_parse_client_frame,
                           frames.py_room_data)
    assert calls == []
    assert canonical(result) == canonical(frames.py_parse_client_frame(frame))


# -- the reply ----------------------------------------------------------------------------------

REPLY_TYPES = (st.text(max_size=300) | st.text(alphabet=st.characters(min_codepoint=0xD800,
                                                                        max_codepoint=0xDFFF),
                                               min_size=1, max_size=2)
               | st.integers(-5, 2**40) | st.booleans() | st.none() | st.floats())
ODD = st.sampled_from([deep(31), deep(32), deep(33), deep(600), {(1, 2): 3}, {frozenset(): 1},
                       [frames.UNDEFINED], {"u": frames.UNDEFINED}, frames.UNDEFINED, object(),
                       "\ud800", {"\udfff": 1}, [2**64], [-(2**63) - 1], bytearray(b"ab"),
                       {"d": __import__("datetime").datetime(2020, 1, 1)}, math.nan, -0.0,
                       "x" * 70000, list(range(70000)), {str(i): i for i in range(70000)}])


@needs_compiled
@FUZZ
@given(REPLY_TYPES, VALUES | ODD)
def test_room_data_gives_the_reference_bytes_or_error(message_type: Any, payload: Any) -> None:
    assert outcome(compiled.room_data, message_type, payload) == outcome(frames.py_room_data,
                                                                         message_type, payload)


@needs_compiled
@pytest.mark.parametrize("call", [(), ("a",), ("a", 1, 2), ("",), ("", 1)])
def test_room_data_with_odd_arguments_gives_the_reference_result_or_error(call: tuple) -> None:
    assert outcome(compiled.room_data, *call) == outcome(frames.py_room_data, *call)
    assert outcome(lambda: compiled.room_data("a", payload=1)) == outcome(
        lambda: frames.py_room_data("a", payload=1))


@needs_compiled
def test_room_data_of_a_plain_payload_takes_the_compiled_path() -> None:
    calls = []

    def spy(*args: Any) -> bytes:
        calls.append(args)
        return frames.py_room_data(*args)

    payload = {"x": 12.5, "y": 7, "name": "player-1", "l": [None, True, -3, (1, 2)]}
    compiled.configure(frames.ClientFrame, frames.UNDEFINED, frames.py_parse_client_frame, spy)
    try:
        got = [compiled.room_data("echo", payload), compiled.room_data("echo")]
    finally:
        compiled.configure(frames.ClientFrame, frames.UNDEFINED, frames.py_parse_client_frame,
                           frames.py_room_data)
    assert calls == []
    assert got == [frames.py_room_data("echo", payload), frames.py_room_data("echo")]


def test_switched_off_the_python_reference_runs() -> None:
    """GREENROOM_PURE_PYTHON=1: frames.py's functions, and the same results."""
    script = (
        "from greenroom.protocol import frames, native\n"
        "assert native.compiled is None\n"
        "assert frames.parse_client_frame is frames.py_parse_client_frame\n"
        "assert frames.room_data is frames.py_room_data\n"
        f"f = frames.parse_client_frame({ECHO_FRAME!r})\n"
        "print(frames.room_data(f.type, f.payload).hex())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "GREENROOM_PURE_PYTHON": "1"})
    assert out.returncode == 0, out.stderr
    frame = frames.parse_client_frame(ECHO_FRAME)
    assert out.stdout.split() == [frames.room_data(frame.type, frame.payload).hex()]
