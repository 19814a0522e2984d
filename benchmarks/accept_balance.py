"""How connections spread over the workers of one port: shared socket vs SO_REUSEPORT.

    python -m benchmarks.accept_balance [--workers 2] [--connections 200] [--rounds 3]

Forks N gevent workers the way the cluster master does and lets each answer a connection with
its pid after ``--work-ms`` of CPU (what a handshake or a join costs), then counts which worker took each of N sequential and N concurrent connections, for:

- ``shared, max_accept=100``: one listening socket in every worker, gevent's default;
- ``shared, max_accept=1``: the same, one accept per wake-up (what greenroom's workers use);
- ``SO_REUSEPORT``: one socket per worker on the same port; the kernel hashes each connection
  to one of them.

Results (medians per round) go to stdout and, with --out, to a JSON file. Bounded: the workers
exit when the run ends, and every connection has a 5 s timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import time
from collections import Counter
from typing import Any


def _worker(sockets: list[socket.socket], max_accept: int, ready_w: int, work: float) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.server import StreamServer

    answer = f"{os.getpid()}\n".encode()

    def handle(conn: Any, address: Any) -> None:
        until = time.perf_counter() + work  # CPU a real request costs (a handshake, a join)
        while time.perf_counter() < until:
            pass
        conn.sendall(answer)

    servers = []
    for sock in sockets:
        server = StreamServer(socket.socket(fileno=os.dup(sock.fileno())), handle)
        server.max_accept = max_accept
        server.start()
        servers.append(server)
    os.write(ready_w, b"r")
    gevent.wait()


def _listener(port: int, reuseport: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


def _ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.makefile().readline().strip()


def run_mode(mode: str, workers: int, connections: int, work: float) -> dict[str, list[int]]:
    reuseport = mode == "reuseport"
    max_accept = 100 if mode == "shared-100" else 1
    first = _listener(0, reuseport)
    port = first.getsockname()[1]
    per_worker = ([first] + [_listener(port, True) for _ in range(workers - 1)]) if reuseport else None
    ready_r, ready_w = os.pipe()
    pids = []
    for i in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                _worker([per_worker[i]] if per_worker else [first], max_accept, ready_w, work)
            finally:
                os._exit(0)
        pids.append(pid)
    for _ in range(workers):
        os.read(ready_r, 1)
    try:
        sequential = Counter(_ask(port) for _ in range(connections))
        concurrent = _concurrent(port, connections)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for sock in per_worker or [first]:
            sock.close()
    order = [str(pid) for pid in pids]
    return {"sequential": sorted((sequential[p] for p in order), reverse=True),
            "concurrent": sorted((concurrent[p] for p in order), reverse=True)}


def _concurrent(port: int, connections: int) -> Counter[str]:
    """``connections`` connections opened at once, then all answers read."""
    socks = [socket.socket() for _ in range(connections)]
    for sock in socks:
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
    answers: Counter[str] = Counter()
    for sock in socks:
        sock.setblocking(True)
        sock.settimeout(5)
        answers[sock.makefile().readline().strip()] += 1
        sock.close()
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accept_balance")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-ms", type=float, default=1.0,
                        help="CPU each worker spends per connection before answering (default 1)")
    parser.add_argument("--out", help="write the results as JSON there")
    args = parser.parse_args(argv)
    modes = ["shared-100", "shared-1", "reuseport"]
    rounds: dict[str, list[dict[str, list[int]]]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:  # alternate the modes within each round
            rounds[mode].append(run_mode(mode, args.workers, args.connections, args.work_ms / 1000))
    summary = {}
    for mode, results in rounds.items():
        summary[mode] = {kind: [statistics.median(r[kind][i] for r in results)
                                for i in range(args.workers)] for kind in ("sequential", "concurrent")}
        print(f"{mode:12s} sequential {summary[mode]['sequential']}  concurrent "
              f"{summary[mode]['concurrent']}  (busiest worker first; median of {args.rounds})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"workers": args.workers, "connections": args.connections,
                       "rounds": args.rounds, "work_ms": args.work_ms, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "median": summary, "all": rounds}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
