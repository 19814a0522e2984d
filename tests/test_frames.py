"""Frame layouts against bytes captured from the real servers (docs/protocol.md, "Frames" and "Joining")."""

import pytest

from greenroom.protocol import frames
from greenroom.protocol.codes import Code
from greenroom.protocol.dialect import Dialect


def test_error_frame_matches_capture():
    assert frames.error(526, "denied by onAuth").hex() == "0bcd0e02b064656e696564206279206f6e41757468"


def test_room_data_string_type_without_payload():
    assert frames.room_data("echo").hex() == "0da46563686f"


def test_room_data_numeric_type_with_payload():
    assert frames.room_data(7, "numeric type").hex() == "0d07ac6e756d657269632074797065"


def test_bytes_frame_matches_capture():
    assert frames.room_data_bytes("bytes", [1, 2, 3]).hex() == "11a5627974657301 0203".replace(" ", "")


def test_response_frame_matches_capture():
    assert frames.room_response(0, 0, 5).hex() == "16000005"


def test_join_room_v3_and_v5_framing():
    handshake = bytes(range(200))
    v3 = frames.join_room(Dialect.V3, "tok", "schema", handshake)
    v5 = frames.join_room(Dialect.V5, "tok", "schema", handshake)
    head = bytes([Code.JOIN_ROOM, 3]) + b"tok" + bytes([6]) + b"schema"
    assert v3 == head + handshake
    assert v5 == head + b"\xcc\xc8" + handshake  # number L = 200 before the handshake


def test_parse_captured_client_frames():
    req = frames.parse_client_frame(bytes.fromhex("1500a3616464d4724092a161a1620203"))
    assert (req.code, req.request_id, req.type, req.payload) == (Code.ROOM_REQUEST, 0, "add", {"a": 2, "b": 3})
    msg = frames.parse_client_frame(bytes.fromhex("0d07ac6e756d657269632074797065"))
    assert (msg.type, msg.payload) == (7, "numeric type")
    raw = frames.parse_client_frame(bytes.fromhex("11a562797465730a0b"))
    assert (raw.type, raw.payload) == ("bytes", b"\x0a\x0b")


def test_modifier_bits_are_ignored():
    assert frames.parse_client_frame(bytes([0x80 | Code.ROOM_DATA]) + bytes.fromhex("a161")).type == "a"


@pytest.mark.parametrize("hexdata", [
    "", "63", "0d", "0dd9", "0dca00", "0dc1", "15a1",
    "0dcb000000000000f87f",          # message type NaN (issue 16, defect 1)
    "0dcb000000000000f07f",          # message type +Infinity
    "11cb000000000000f0ff",          # bytes message, type -Infinity
    "15cb000000000000f87fa161",      # request id NaN
    "15cb000000000000f07fa161",      # request id +Infinity
    "15cb000000000000e03fa161",      # request id 0.5
])
def test_bad_frames_raise(hexdata):
    with pytest.raises((frames.FrameError, frames.PayloadError)):
        frames.parse_client_frame(bytes.fromhex(hexdata))


def test_empty_string_type_is_refused():
    with pytest.raises(ValueError):
        frames.room_data("", 1)
