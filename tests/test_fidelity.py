"""Wire fidelity found by running the official clients (issue 14): a message without payload
round-trips as no payload, so the clients see `undefined`, as from the real Colyseus servers."""

import msgpack

from greenroom.protocol import frames
from tests.conftest import load_example


def test_a_frame_without_payload_is_undefined_and_echoes_without_payload():
    frame = frames.parse_client_frame(bytes([13]) + frames.encode_type("echo"))
    assert frame.payload is frames.UNDEFINED
    assert not frame.payload
    assert frames.room_data("echo", frame.payload) == bytes([13]) + frames.encode_type("echo")
    # None stays `null`: msgpack nil after the type.
    assert frames.room_data("echo", None).endswith(b"\xc0")


def test_undefined_nested_in_a_payload_packs_as_msgpackr_undefined():
    packed = frames.pack({"msg": frames.UNDEFINED})
    assert msgpack.unpackb(packed) == {"msg": msgpack.ExtType(0, b"\x00")}


def test_official_clients_receive_an_echo_without_payload_as_undefined(serve, run_js):
    module = load_example("echo")
    server = module.Server(dialects={"/v18": "v5"})
    server.define("echo", module.EchoRoom)
    running = serve(server)
    out = run_js("no_payload.mjs", "--endpoint", running.endpoint, timeout=40)
    assert out.get("error") is None, out
    assert out["results"] == {name: {"type": "undefined", "isUndefined": True}
                              for name in ("colyseusjs", "sdk17", "sdk18")}
