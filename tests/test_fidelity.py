"""Wire fidelity found by running the official clients (issue 14): a message without payload
round-trips as no payload, so the clients see `undefined`, as from the real Colyseus servers."""

import os
import subprocess

import msgpack
import pytest
from cluster_process import Cluster

from greenroom.protocol import frames
from greenroom.protocol.dialect import Dialect, from_environment

from conftest import ROOT, free_port, greenroom_command, load_example


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
    """examples/echo.py as it is: v3 on the root, 0.18 (v5) under /v18."""
    running = serve(load_example("echo").server)
    out = run_js("no_payload.mjs", "--endpoint", running.endpoint, timeout=40)
    assert out.get("error") is None, out
    assert out["results"] == {name: {"type": "undefined", "isUndefined": True}
                              for name in ("colyseusjs", "sdk17", "sdk18")}


def test_serve_dialect_flags_change_the_wire_without_a_code_change(serve_process, run_js):
    """``--dialect v5`` makes the root 0.18's, ``--dialect-path /old=v3`` serves 0.16/0.17
    under /old: the official clients of both dialects then get their echo."""
    proc, port = serve_process("examples/echo.py:server", "--dialect", "v5",
                               "--dialect-path", "/old=v3")
    out = run_js("no_payload.mjs", "--endpoint", f"ws://127.0.0.1:{port}", "--v3", "/old",
                 "--v5", "", timeout=40)
    assert out.get("error") is None, out
    assert set(out["results"]) == {"colyseusjs", "sdk17", "sdk18"}


@pytest.mark.parametrize("flags, v3, v5", [
    ((), "", "/v18"),  # examples/echo.py as it is
    (("--dialect", "v5", "--dialect-path", "/old=v3"), "/old", ""),
])
def test_under_two_workers_both_fixes_hold_for_the_official_clients(run_js, flags, v3, v5):
    """``--workers 2``: the workers get the dialect flags from the master, and a message
    without payload stays ``undefined`` whichever worker holds the room."""
    cluster = Cluster(2, *flags, target="examples/echo.py:server")
    try:
        cluster.wait_serving(2)
        out = run_js("no_payload.mjs", "--endpoint", cluster.endpoint, "--v3", v3, "--v5", v5,
                     timeout=40)
    finally:
        cluster.stop()
    assert out.get("error") is None, out
    assert out["results"] == {name: {"type": "undefined", "isUndefined": True}
                              for name in ("colyseusjs", "sdk17", "sdk18")}


def test_dialect_settings_from_the_environment_override_the_code():
    root, paths = from_environment("v3", {"/v18": "v5"},
                                   {"GREENROOM_DIALECT": "v5", "GREENROOM_DIALECT_PATHS": "old=v3"})
    assert root is Dialect.V5 and paths == {"/v18": Dialect.V5, "/old": Dialect.V3}


@pytest.mark.parametrize("flags, says", [
    (["--dialect", "v4"], "unknown wire dialect 'v4'"),
    (["--dialect-path", "v18"], "'v18' is not PREFIX=DIALECT"),
])
def test_a_bad_dialect_flag_is_one_line_and_exit_2(flags, says):
    result = subprocess.run([*greenroom_command(), "serve", "examples/echo.py:server", "--bind",
                             f"127.0.0.1:{free_port()}", *flags], cwd=ROOT, env=dict(os.environ),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
