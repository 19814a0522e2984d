"""Fuzzed WebSocket frames on a room socket (issue 13): lengths and their encodings, masks,
fragmentation with control frames in between, reserved bits and opcodes, control frames that
break the rules, close payloads. A small model of RFC 6455 says what the server must do with
each sequence: echo every complete message, answer pings, and end a broken connection with the
right close code (1002, 1007, 1009, or the client's own code echoed). The room and its other
client must notice nothing, and nothing may be logged as a traceback.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import gevent
import msgpack
import pytest
from hostile import Arena, fuzzing
from hypothesis import given
from hypothesis import strategies as st
from peers import raw_join

from greenroom import Server
from greenroom.client import parse_message
from greenroom.protocol.codes import Code
from greenroom.wsclient import ConnectionClosed

FUZZ = fuzzing(300)
MAX_MESSAGE = 64 * 1024  # Room.max_message_size's default
WIRE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}


@pytest.fixture(scope="module")
def arena():
    arena = Arena(Server())
    yield arena
    arena.close()


# -- frames -------------------------------------------------------------------------------------

@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0
    mask: bytes | None = b"\x00\x00\x00\x00"
    width: int = 0          # length encoding: 0 shortest, else 126 or 127 (non-minimal, allowed)
    declared: int | None = None  # a length header that lies (the payload is cut short or missing)

    def encode(self) -> bytes:
        length = len(self.payload) if self.declared is None else self.declared
        b0 = (0x80 if self.fin else 0) | (self.rsv << 4) | self.opcode
        mbit = 0x80 if self.mask is not None else 0
        width = self.width or (0 if length < 126 else 126 if length < 0x10000 else 127)
        if width == 0:
            head = bytes([b0, mbit | length])
        elif width == 126:
            head = bytes([b0, mbit | 126]) + struct.pack("!H", length)
        else:
            head = bytes([b0, mbit | 127]) + struct.pack("!Q", length)
        if self.mask is None:
            return head + self.payload
        key = self.mask
        body = bytes(b ^ key[i % 4] for i, b in enumerate(self.payload))
        return head + key + body


masks = st.binary(min_size=4, max_size=4)
widths = st.sampled_from([0, 0, 0, 126, 127])
control_payloads = st.binary(max_size=125)


@st.composite
def controls(draw) -> Frame:
    """A ping or a pong the server must take anywhere, even between fragments."""
    return Frame(draw(st.sampled_from([0x9, 0xA])), draw(control_payloads), mask=draw(masks))


@st.composite
def echo_messages(draw, n: int) -> list[Frame]:
    """Room message n (echo "m<n>"), fragmented at random with control frames between."""
    data = bytes([Code.ROOM_DATA]) + b"\xa4echo" + msgpack.packb(f"m{n}")
    cuts = sorted(draw(st.sets(st.integers(1, len(data) - 1), max_size=3)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    out: list[Frame] = []
    for i, piece in enumerate(pieces):
        if i and draw(st.booleans()):
            out.append(draw(controls()))
        out.append(Frame(0x2 if i == 0 else 0x0, piece, fin=i == len(pieces) - 1,
                         mask=draw(masks), width=draw(widths)))
    return out


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def endings(draw) -> tuple[list[Frame], int, bool]:
    """The last frames of a connection and the close code the server must answer with; the bool
    says whether the client then half-closes (a frame cut short, the peer gone)."""
    kind = draw(st.sampled_from([
        "unmasked", "rsv", "opcode", "long-control", "wide-control", "fragmented-control", "stray-continuation",
        "data-inside-fragments", "text-not-utf8", "close", "close-empty", "close-1-byte", "too-big",
        "length-msb", "truncated",
    ]))
    mask = draw(masks)
    data = bytes([Code.PING])
    if kind == "unmasked":
        return [Frame(draw(st.sampled_from([0x2, 0x9, 0x8])), data, mask=None)], 1002, False
    if kind == "rsv":
        return [Frame(0x2, data, rsv=draw(st.integers(1, 7)), mask=mask)], 1002, False
    if kind == "opcode":
        opcode = draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]))
        return [Frame(opcode, data, mask=mask)], 1002, False
    if kind == "long-control":
        opcode = draw(st.sampled_from([0x8, 0x9, 0xA]))
        payload = struct.pack("!H", 1000) + draw(st.binary(min_size=124, max_size=200))
        return [Frame(opcode, payload, mask=mask)], 1002, False
    if kind == "wide-control":  # a length in 16 or 64 bits: not minimal (5.2), so over 125 (5.5)
        opcode = draw(st.sampled_from([0x8, 0x9, 0xA]))
        return [Frame(opcode, draw(control_payloads), mask=mask, width=draw(st.sampled_from([126, 127])))], \
            1002, False
    if kind == "fragmented-control":
        return [Frame(draw(st.sampled_from([0x8, 0x9, 0xA])), b"", fin=False, mask=mask)], 1002, False
    if kind == "stray-continuation":
        return [Frame(0x0, data, fin=draw(st.booleans()), mask=mask)], 1002, False
    if kind == "data-inside-fragments":
        return [Frame(0x2, b"\x0d", fin=False, mask=mask), Frame(0x2, data, mask=mask)], 1002, False
    if kind == "text-not-utf8":
        text = draw(st.binary(min_size=1, max_size=40).filter(lambda b: not _valid_utf8(b)))
        return [Frame(0x1, text, mask=mask)], 1007, False
    if kind == "close":
        edges = {999, 1004, 1005, 1006, 1015, 1016, 2999, 3000, 4000, 4999, 5000}
        code = draw(st.one_of(st.sampled_from(sorted(WIRE_CODES | edges)), st.integers(0, 0xFFFF)))
        reason = draw(st.one_of(st.text(max_size=30).map(str.encode), st.binary(max_size=30)))
        reason = reason[:123]
        payload = struct.pack("!H", code) + reason
        if not (code in WIRE_CODES or 3000 <= code <= 4999):
            return [Frame(0x8, payload, mask=mask)], 1002, False
        return [Frame(0x8, payload, mask=mask)], code if _valid_utf8(reason) else 1007, False
    if kind == "close-empty":  # no status: echoed as such, which the client reads as 1005
        return [Frame(0x8, b"", mask=mask)], 1005, False
    if kind == "close-1-byte":
        return [Frame(0x8, draw(st.binary(min_size=1, max_size=1)), mask=mask)], 1002, False
    if kind == "too-big":
        declared = draw(st.integers(MAX_MESSAGE + 1, (1 << 63) - 1))
        return [Frame(0x2, b"", mask=mask, declared=declared)], 1009, False
    if kind == "length-msb":
        return [Frame(0x2, b"", mask=mask, width=127,
                      declared=draw(st.integers(1 << 63, (1 << 64) - 1)))], 1002, False
    # truncated: the header promises more than ever comes, then the peer half-closes
    payload = draw(st.binary(max_size=50))
    return [Frame(0x2, payload, mask=mask, declared=len(payload) + draw(st.integers(1, 100)))], \
        1006, True


@st.composite
def connections(draw) -> tuple[list[Frame], int, tuple[int, bool] | None]:
    """Frames of one connection, how many echo messages they hold, and how it ends (None: the
    connection must still be open and answer a PING)."""
    out: list[Frame] = []
    messages = 0
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            out += draw(echo_messages(messages))
            messages += 1
        else:
            out.append(draw(controls()))
    ending = None
    if draw(st.booleans()):
        frames, code, half_close = draw(endings())
        out += frames
        ending = code, half_close
    return out, messages, ending


# -- the property -------------------------------------------------------------------------------

@FUZZ
@given(connection=connections(), chunk=st.sampled_from([0, 1, 7]))
def test_any_frame_sequence_gets_what_rfc_6455_asks(arena, connection, chunk):
    frames, messages, ending = connection
    peer = raw_join(arena.running.endpoint, "echo")
    stream = b"".join(frame.encode() for frame in frames)
    with gevent.Timeout(10):
        if chunk:  # the same bytes, in small writes: the server must reassemble across reads
            for i in range(0, len(stream), chunk):
                peer.ws.write_raw(stream[i:i + chunk])
        else:
            peer.ws.write_raw(stream)
        if ending is None:
            peer.ws.write_raw(Frame(0x2, bytes([Code.PING])).encode())
        elif ending[1]:
            peer.ws._sock.shutdown(socket.SHUT_WR)
        echoes, pinged, closed = _read(peer, messages)
    assert echoes == [f"m{n}" for n in range(len(echoes))]
    if ending is None:
        assert closed is None and pinged and len(echoes) == messages
        peer.ws.close()
    else:
        # The room may answer a message after the socket ended: a prefix of the echoes is enough.
        assert closed is not None and len(echoes) <= messages
        code, half_close = ending
        assert closed.code == code, (closed, ending)
        assert closed.received is not half_close  # a close frame, except to a vanished peer
    arena.after_example()


def _read(peer, messages: int):
    """Echoes (in order) and whether the PING was answered, until the connection ends (then
    its close) or until all ``messages`` echoes and the PING answer are in (None)."""
    echoes: list[str] = []
    pinged = False
    while not (pinged and len(echoes) == messages):
        try:
            message = peer.ws.recv(5)
        except ConnectionClosed as closed:
            return echoes, pinged, closed
        if message == bytes([Code.PING]):
            pinged = True
        else:
            message_type, payload = parse_message(message)
            assert message_type == "echo", message
            echoes.append(payload)
    return echoes, pinged, None


def test_every_fuzzed_peer_gave_its_seat_back(arena):
    """Runs after the fuzzing above, on the same room: only the bystander is left in it."""
    arena.assert_only_the_bystander_left()
    arena.after_example()
