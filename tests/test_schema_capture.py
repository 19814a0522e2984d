"""Byte-for-byte comparison with the frames the real Colyseus servers sent (tests/vectors).

The echo room of the captures: State{tick uint16, title string, players map<Player{name,x,y}>,
log array<string>}. Each test replays the room's mutations on greenroom's schema and checks the
handshake, every full state and every patch the reference server produced. 0.16 (schema 3, v3
wire) and 0.18 (schema 5, v5 wire) differ in the handshake, in the structure order of full
states, and in that 0.16 does not resend the state's initial contents as a patch.
"""

from __future__ import annotations

from test_schema_support import load_capture, number_vectors

from greenroom.protocol.dialect import Dialect
from greenroom.protocol.primitives import decode_number, encode_number, encode_string
from greenroom.schema import (
    ChangeTracker,
    Schema,
    encode_all,
    encode_patch,
    encode_reflection,
    field,
)
from greenroom.schema.decoder import StateDecoder


class Player(Schema):
    name = field("string", default="")
    x = field("number", default=0)
    y = field("number", default=0)


class State(Schema):
    tick = field("uint16", default=0)
    title = field("string", default="lobby")
    players = field({"map": Player})
    log = field(["string"])


def server_frames(capture: str) -> list[tuple[int, bytes]]:
    """(connection, body) of every JOIN_ROOM / ROOM_STATE / ROOM_STATE_PATCH the server sent."""
    frames = []
    for row in load_capture(capture):
        if row.get("kind") == "ws" and row["dir"] == "S->C":
            data = bytes.fromhex(row["hex"])
            if data[0] in (0x0A, 0x0E, 0x0F):
                frames.append((row["id"], data))
    return frames


def handshake_of(join_room: bytes, dialect: Dialect) -> bytes:
    pos = 1
    pos += 1 + join_room[pos]  # reconnection token
    pos += 1 + join_room[pos]  # serializer id
    if dialect == Dialect.V3:
        return join_room[pos:]
    length, pos = decode_number(join_room, pos)
    return join_room[pos : pos + length]


def session_ids(capture: str) -> list[str]:
    """Session ids in join order, read from the WebSocket URLs of the capture."""
    ids: list[str] = []
    for row in load_capture(capture):
        if row.get("kind") == "ws-open" and "sessionId=" in row["url"]:
            sid = row["url"].split("sessionId=")[1].split("&")[0]
            if sid not in ids:
                ids.append(sid)
    return ids


class EchoRoom:
    """The reference server's room logic, on greenroom's schema."""

    def __init__(self, discard_initial: bool) -> None:
        self.state = State()
        self.tracker = ChangeTracker(self.state)
        if discard_initial:
            self.tracker.discard_changes()

    def join(self, sid: str, name: str) -> None:
        self.state.players[sid] = Player(name=name)
        self.state.tick += 1

    def move(self, sid: str, x: float, y: float) -> None:
        player = self.state.players[sid]
        player.x = x
        player.y = y


def replay(capture: str, dialect: Dialect, discard_initial: bool) -> list[tuple[str, bytes, bytes]]:
    """(what, expected body, greenroom body) for every comparable state frame of the capture."""
    frames = server_frames(capture)
    alice, bob, _denied, carol = (session_ids(capture) + [""] * 4)[:4]
    room = EchoRoom(discard_initial)
    out: list[tuple[str, bytes, bytes]] = []
    it = iter(frames)

    def expect(what: str, produced: bytes, code: int) -> None:
        _, data = next(it)
        assert data[0] == code, f"{what}: capture has frame 0x{data[0]:02x} here"
        body = handshake_of(data, dialect) if code == 0x0A else data[1:]
        out.append((what, body, produced))

    def patch(what: str, receivers: int) -> None:
        produced = encode_patch(room.tracker)
        for _ in range(receivers):
            expect(what, produced, 0x0F)

    handshake = encode_reflection(State, dialect)
    expect("handshake alice", handshake, 0x0A)
    room.join(alice, "alice")
    expect("full state alice", encode_all(room.tracker, dialect), 0x0E)
    patch("patch alice joined", 1)
    room.move(alice, 10, 20.5)
    patch("patch move", 1)
    room.state.log.append("first")
    patch("patch log", 1)
    expect("handshake bob", handshake, 0x0A)
    room.join(bob, "bob")
    expect("full state bob", encode_all(room.tracker, dialect), 0x0E)
    patch("patch bob joined", 2)
    del room.state.players[bob]
    patch("patch bob left", 1)
    if dialect == Dialect.V5:  # alice's auto-reconnection (skipHandshake: empty handshake)
        expect("handshake alice again", b"", 0x0A)
        expect("full state alice again", encode_all(room.tracker, dialect), 0x0E)
    expect("handshake carol", handshake, 0x0A)
    room.join(carol, "carol")
    expect("full state carol", encode_all(room.tracker, dialect), 0x0E)
    patch("patch carol joined", 2)
    expect("handshake carol reconnect", handshake, 0x0A)
    expect("full state carol reconnect", encode_all(room.tracker, dialect), 0x0E)
    del room.state.players[carol]
    patch("patch carol left", 1)
    assert next(it, None) is None, "capture has state frames the replay did not produce"
    return out


def _check(results: list[tuple[str, bytes, bytes]]) -> None:
    mismatches = [
        f"{what}:\n  server    {want.hex()}\n  greenroom {got.hex()}"
        for what, want, got in results
        if want != got
    ]
    assert not mismatches, "\n".join(mismatches)


def test_v5_frames_identical_to_colyseus_018() -> None:
    results = replay("capture018.jsonl", Dialect.V5, discard_initial=False)
    assert len(results) == 19
    _check(results)


def test_v3_frames_identical_to_colyseus_016() -> None:
    results = replay("capture016.jsonl", Dialect.V3, discard_initial=True)
    assert len(results) == 17
    _check(results)


def test_python_decoder_reads_the_captured_frames() -> None:
    for capture, dialect in (("capture016.jsonl", Dialect.V3), ("capture018.jsonl", Dialect.V5)):
        frames = server_frames(capture)
        decoder = StateDecoder.from_handshake(handshake_of(frames[0][1], dialect))
        first_client = frames[0][0]
        for conn, data in frames[1:]:
            if conn == first_client and data[0] in (0x0E, 0x0F):
                decoder.decode(data[1:])
            if conn != first_client:
                break
        alice = session_ids(capture)[0]
        assert decoder.state == {
            "tick": 1,
            "title": "lobby",
            "log": ["first"],
            "players": {alice: {"name": "alice", "x": 10, "y": 20.5}},
        }


def test_number_and_string_vectors() -> None:
    vectors = number_vectors()
    for text, hexed in vectors["number"]:
        value = float(text) if any(c in text for c in ".eIN") else int(text)
        assert encode_number(value).hex() == hexed, text
    for js_length, hexed in vectors["string"]:
        data = bytes.fromhex(hexed)
        payload = data[1:] if 0xA0 <= data[0] <= 0xBF else data[2:] if data[0] == 0xD9 else data[3:]
        complete = 0xA0 <= data[0] <= 0xBF and len(payload) == data[0] & 0x1F
        # complete vectors carry their text; truncated ones are runs of "x"
        text = payload.decode("utf-8") if complete else "x" * js_length
        assert encode_string(text).hex().startswith(hexed), (js_length, hexed)
