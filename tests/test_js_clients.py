"""The official Colyseus clients, unmodified, against greenroom (docs/protocol.md; tests/js/README.md).

Each scenario's observations are compared with what the same script saw against the real
Colyseus servers (tests/js/expected/), step by step.
"""

import json
import os

import pytest

from conftest import JS_DIR, load_example

# Fields that describe the room state; the echo example carries no state until the schema
# serializer lands, so they are compared only when both sides have a state.
STATE_KEYS = {"state", "stateReceived", "serializerId", "eventOrder"}

V3_CLIENTS = [("colyseusjs", "colyseusjs-ref017.json"), ("sdk17", "sdk17-ref017.json")]


def expected(name):
    with open(os.path.join(JS_DIR, "expected", name)) as f:
        return json.load(f)


def strip_state(value):
    if isinstance(value, dict):
        return {k: strip_state(v) for k, v in value.items() if k not in STATE_KEYS}
    if isinstance(value, list):
        return [strip_state(v) for v in value]
    return value


def compare_steps(ours, reference, stateful):
    mismatches = {}
    for step, ref in reference["steps"].items():
        got = ours["steps"].get(step)
        if not stateful and step == "state":
            continue
        a, b = (got, ref) if stateful else (strip_state(got), strip_state(ref))
        if a != b:
            mismatches[step] = {"greenroom": a, "colyseus": b}
    return mismatches


@pytest.fixture
def echo_v3(serve):
    server = load_example("echo").server
    return serve(server), server


@pytest.fixture
def echo_both(serve):
    """One server: v3 on the root endpoint, v5 (@colyseus/sdk 0.18) under /v18."""
    module = load_example("echo")
    server = module.Server(dialects={"/v18": "v5"})
    server.define("echo", module.EchoRoom)
    return serve(server)


def test_sdk18_scenario_matches_the_reference_server_on_a_v5_endpoint(echo_both, run_js):
    ours = run_js("scenario.mjs", "--client", "sdk18", "--endpoint", echo_both.endpoint + "/v18",
                  timeout=90)
    assert "error" not in ours, ours
    ref = expected("sdk18-ref018.json")
    assert compare_steps(ours, ref, stateful=True) == {}
    assert ours["warnings"] == ref["warnings"]


def test_one_deployment_serves_016_017_and_018_clients_in_one_room(echo_both, run_js):
    """The path prefix picks the dialect; the room and its state are shared."""
    js = run_js("mixed_dialects.mjs", "--endpoint", echo_both.endpoint, timeout=60)
    assert js.get("error") is None, js
    assert js["sameRoom"] is True
    assert js["players"] == ["colyseusjs", "sdk17", "sdk18"]
    assert js["warnings"] == []


@pytest.mark.parametrize("client,reference", V3_CLIENTS)
def test_scenario_matches_the_reference_server(echo_v3, run_js, client, reference):
    running, server = echo_v3
    ours = run_js("scenario.mjs", "--client", client, "--endpoint", running.endpoint, timeout=90)
    assert "error" not in ours, ours
    ref = expected(reference)
    stateful = ours["steps"]["join"].get("serializerId") == "schema"
    assert compare_steps(ours, ref, stateful) == {}
    assert ours["warnings"] == ref["warnings"]


@pytest.mark.parametrize("client", ["colyseusjs", "sdk17"])
def test_100_concurrent_official_clients_make_exactly_25_rooms(echo_v3, run_js, client):
    running, _ = echo_v3
    result = run_js("concurrent.mjs", "--client", client, "--endpoint", running.endpoint,
                    "--n", 100, timeout=90)
    assert result["errors"] == []
    assert result["ok"] == 100
    assert result["roomCount"] == 25
    assert set(result["rooms"].values()) == {4}


def read_stats(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def test_official_load_tester_runs_bots_against_greenroom(echo_v3, node_modules, tmp_path):
    """@colyseus/loadtest 0.17.8 with 8 bots: all join 2 rooms, every echo comes back."""
    import subprocess

    import gevent

    running, _ = echo_v3
    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen(
        ["node", os.path.join(node_modules, "loadtest_bot.mjs"), "--endpoint", running.endpoint,
         "--room", "echo", "--numClients", "8", "--output", str(tmp_path / "run.log"),
         "--stats", str(stats_file)],
        cwd=node_modules, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # The bot writes its counters every second: wait (bounded) until every bot joined and echoed.
        with gevent.Timeout(30, AssertionError(f"bots did not all join and echo: {read_stats(stats_file)}")):
            while True:
                stats = read_stats(stats_file)
                if stats and stats["joined"] == 8 and stats["echoReceived"] >= 16:
                    break
                gevent.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(15)
    stats = read_stats(stats_file)
    assert stats["joinFailed"] == 0 and stats["roomErrors"] == []
    assert stats["echoMismatched"] == 0
    assert sorted(stats["rooms"].values()) == [4, 4]
    assert stats["serializerIds"] == {"schema": 8}
    assert stats["stateChanges"] >= 8
    assert "Successful connections" in (tmp_path / "run.log").read_text()
