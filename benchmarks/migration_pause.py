"""The pause a migrated client sees, from its close (4010) to its next patch (issue 12).

    python -m benchmarks.migration_pause [--per-worker 100 1000] [--out FILE]

``greenroom serve benchmarks/migration_app.py:server --workers 2 --migrate``; N official clients
per worker (@colyseus/sdk 0.17, benchmarks/migration_pause.mjs) in ``lobby`` rooms of 20 with a
schema state; once they are past the SDK's minUptime (5 s) the master gets SIGHUP and every
room moves to the new generation. The pause ends with the client's first state after its
reconnection. Reported: p50/p99/max of the pause, and the clients that did
not come back. The load generator shares the machine's cores with the workers.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "benchmarks")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_serving(port: int, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if len(json.load(response)["cluster"]["workers"]) == 2:
                    return
        except (OSError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster did not serve in time")
        time.sleep(0.2)


def measure(per_worker: int) -> dict:
    port = _free_port()
    log = open(f"/tmp/greenroom-migration-pause-{per_worker}.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        ["greenroom", "serve", "benchmarks/migration_app.py:server", "--workers", "2", "--migrate",
         "--graceful-timeout", "90", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT, stderr=log, text=True)
    try:
        _wait_serving(port)
        clients = subprocess.Popen(["node", "migration_pause.mjs", f"ws://127.0.0.1:{port}",
                                    str(2 * per_worker)], cwd=HERE, stdout=subprocess.PIPE, text=True)
        assert clients.stdout.readline().strip() == "ready"
        time.sleep(5.5)  # the SDKs reconnect by themselves only after minUptime (5 s)
        server.send_signal(signal.SIGHUP)
        result = json.loads(clients.stdout.read().strip().splitlines()[-1])
        clients.wait(30)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    pauses = sorted(result["pauses"])
    pick = lambda q: round(pauses[min(len(pauses) - 1, int(q * len(pauses)))], 1) if pauses else None  # noqa: E731
    return {"clientsPerWorker": per_worker, "clients": 2 * per_worker, "came back": len(pauses),
            "lost": result["lost"], "leaves": result["leaves"], "p50Ms": pick(0.5),
            "p99Ms": pick(0.99), "maxMs": round(pauses[-1], 1) if pauses else None,
            "meanMs": round(statistics.fmean(pauses), 1) if pauses else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-worker", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "migration", "pause.json"))
    args = parser.parse_args()
    results = [measure(n) for n in args.per_worker]
    for row in results:
        print(json.dumps(row))
    with open(args.out, "w") as f:
        json.dump({"command": "python -m benchmarks.migration_pause " + " ".join(sys.argv[1:]),
                   "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
