"""What a hand-off adds to a join: ``greenroom serve --workers 2``, one room held open, N joins.

    python -m benchmarks.handoff_latency [--joins 2000] [--rounds 3] [--out FILE]

One client stays in an ``echo`` room (benchmarks/greenroom_app.py) so that it lives in one
worker; N clients then join it and leave, one after the other. The kernel gives each room socket
to either worker, so about half are handed to the owner. Reported, per round:

- the owner's own measure of each hand-off it received (``/health`` ``cluster.handoffLatencyMs``:
  from the accepting worker's send to the owner's handler starting on the connection), p50/p99;
- the joins' end-to-end latency seen by the client (matchmake, connect, JOIN_ROOM, ack), p50/p99,
  beside the same with ``--workers 1`` (no hand-off, in-memory backends) and ``--workers 1`` with
  a Redis (no hand-off, the backends of a cluster), rounds alternating between the three.

Bounded: every join has a 10 s timeout; each server is stopped at the end of its round.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "benchmarks/greenroom_app.py:server"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        return json.load(response)


def _start(workers: int, port: int, redis_url: str | None) -> subprocess.Popen[bytes]:
    extra = ["--redis-url", redis_url] if redis_url else []
    proc = subprocess.Popen(["greenroom", "serve", APP, "--workers", str(workers), "--bind",
                             f"127.0.0.1:{port}", "--log-level", "warning", *extra], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            health = _health(port)
            if workers == 1 or health.get("cluster", {}).get("workersAlive") == workers:
                return proc
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"greenroom --workers {workers} did not start")
        time.sleep(0.05)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_round(mode: str, joins: int) -> dict[str, Any]:
    from greenroom.client import Client

    workers = int(mode[0])
    port = _free_port()
    redis = _Redis() if mode == "1+redis" else None
    proc = _start(workers, port, redis.url if redis else None)
    try:
        client = Client(f"ws://127.0.0.1:{port}")
        anchor = client.join_or_create("echo")
        latencies = []
        for _ in range(joins):
            started = time.perf_counter()
            room = client.join_by_id(anchor.room_id, timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
            room.leave()
        result: dict[str, Any] = {"mode": mode, "joins": joins,
                                  "join_p50_ms": round(_percentile(latencies, 0.5), 3),
                                  "join_p99_ms": round(_percentile(latencies, 0.99), 3)}
        if workers > 1:
            result["handoff"] = _owner_handoffs(port, anchor.reservation.process_id)
        anchor.leave()
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
        if redis is not None:
            redis.stop()


class _Redis:
    """A private redis-server on a Unix socket, as the cluster's master starts one."""

    def __init__(self) -> None:
        import tempfile

        from greenroom.cluster.redis_embedded import find_redis_server

        self.dir = tempfile.mkdtemp(prefix="greenroom-bench-")
        self.path = os.path.join(self.dir, "redis.sock")
        self.url = f"unix://{self.path}?db=0"
        self.proc = subprocess.Popen([find_redis_server(), "--port", "0", "--unixsocket", self.path,
                                      "--save", "", "--appendonly", "no", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL)
        while not os.path.exists(self.path):
            time.sleep(0.01)

    def stop(self) -> None:
        import shutil

        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _owner_handoffs(port: int, owner: str) -> dict[str, Any]:
    """The owner's /health (asked until the owner is the worker that answers)."""
    for _ in range(200):
        health = _health(port)
        if health["processId"] == owner:
            return {"received": health["cluster"]["handoffs"]["received"],
                    **health["cluster"]["handoffLatencyMs"]}
    raise RuntimeError("the room's owner never answered /health")


def main(argv: list[str] | None = None) -> int:
    from gevent import monkey

    monkey.patch_all()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.handoff_latency")
    parser.add_argument("--joins", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    rounds = []
    for _ in range(args.rounds):
        for mode in ("2", "1+redis", "1"):
            result = run_round(mode, args.joins)
            rounds.append(result)
            print(json.dumps(result), flush=True)
    summary: dict[str, Any] = {}
    for mode in ("1", "1+redis", "2"):
        mine = [r for r in rounds if r["mode"] == mode]
        summary[f"workers {mode}"] = {
            key: statistics.median(r[key] for r in mine) for key in ("join_p50_ms", "join_p99_ms")}
    cluster = [r["handoff"] for r in rounds if r["mode"] == "2"]
    summary["handoff_p50_ms"] = statistics.median(h["p50"] for h in cluster)
    summary["handoff_p99_ms"] = statistics.median(h["p99"] for h in cluster)
    summary["handed_off_share"] = statistics.median(h["received"] / args.joins for h in cluster)
    print(json.dumps({"median": summary}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "joins": args.joins,
                       "rounds": rounds, "median": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
