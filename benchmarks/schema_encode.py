"""Schema encoding cost: greenroom vs @colyseus/schema 5, same state and mutations, same run.

A room with PLAYERS players (name, x, y) where MOVING of them move every tick (the patch loop
runs every 50 ms per room, so this is the per-room budget that matters). Reports µs per patch
encode, bytes per patch, the full-state encode, and the ratio to Node. It is a benchmark, not a
test: run it by hand.

Full states are measured three ways: repeated with no change in between (greenroom then reuses
every structure's cached block), right after a tick (the blocks of the structures that changed
are rebuilt: what a client joining a running room costs), and with nothing cached (the first
client of a room; compared to Node's ordinary full encode, which caches nothing).

    python benchmarks/schema_encode.py [--players 1000] [--moving 100] [--ticks 500] [--rounds 5]

Each round measures greenroom, then @colyseus/schema in a fresh Node process; the table shows
each side's best round for every timing (on a shared VM the same code runs up to 2x slower for
seconds at a time, on either side), and the spread of the patch-encode ratio over the rounds.
Which implementation greenroom encoded with (compiled extension or the Python reference,
``GREENROOM_PURE_PYTHON=1``) is printed on the first line.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from greenroom.schema import (  # noqa: E402
    ChangeTracker,
    Schema,
    SchemaSerializer,
    StateView,
    encode_all,
    encode_patch,
    field,
    speedups,
)


class Player(Schema):
    name = field("string", default="")
    x = field("number", default=0)
    y = field("number", default=0)


class State(Schema):
    tick = field("uint16", default=0)
    players = field({"map": Player})


def run_python(players: int, moving: int, ticks: int, warmup: int) -> dict:
    state = State()
    for i in range(players):
        state.players[f"p{i}"] = Player(name=f"player{i}", x=i % 500, y=(i * 7) % 300)
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    keys = [f"p{i}" for i in range(players)]
    table = state.players

    full_hex = encode_all(tracker).hex()
    reps = 200
    for _ in range(20):
        encode_all(tracker)
    start = time.perf_counter_ns()
    for _ in range(reps):
        full = encode_all(tracker)
    full_us = (time.perf_counter_ns() - start) / 1000 / reps

    def mutate(tick: int) -> None:
        state.tick = tick % 65536
        for k in range(moving):
            p = table[keys[(tick * 37 + k * 10) % players]]
            p.x = (tick * 3 + k) % 500 + 0.5
            p.y = ((tick + k) % 300) * 2

    encode_us: list[float] = []
    mutate_us: list[float] = []
    total_bytes = 0
    sample = ""
    gc.disable()
    try:
        for tick in range(1, warmup + ticks + 1):
            m0 = time.perf_counter_ns()
            mutate(tick)
            e0 = time.perf_counter_ns()
            patch = encode_patch(tracker)
            e1 = time.perf_counter_ns()
            if tick == warmup + 1:
                sample = patch.hex()
            if tick > warmup:
                mutate_us.append((e0 - m0) / 1000)
                encode_us.append((e1 - e0) / 1000)
                total_bytes += len(patch)
    finally:
        gc.enable()
    # full state right after a tick (what a client joining a running room costs): encode_all
    # reuses the cached blocks of the structures that did not change since its last call
    full_tick_us: list[float] = []
    for tick in range(warmup + ticks + 1, warmup + ticks + 101):
        mutate(tick)
        encode_patch(tracker)
        start = time.perf_counter_ns()
        encode_all(tracker)
        full_tick_us.append((time.perf_counter_ns() - start) / 1000)

    # cold full state: no cached block at all (the first client of a room)
    nodes = [state._gr, table._gr] + [player._gr for player in table.values()]
    cold_us: list[float] = []
    for _ in range(50):
        for node in nodes:
            node.full = None
        start = time.perf_counter_ns()
        encode_all(tracker)
        cold_us.append((time.perf_counter_ns() - start) / 1000)
    return {"patch_us": statistics.median(encode_us), "patch_mean_us": statistics.fmean(encode_us),
            "mutate_us": statistics.median(mutate_us),
            "patch_bytes": total_bytes / ticks, "full_us": full_us, "full_bytes": len(full),
            "full_tick_us": statistics.median(full_tick_us), "full_cold_us": statistics.median(cold_us),
            "sample_patch": sample, "full_hex": full_hex}


class SecretPlayer(Schema):
    name = field("string", default="")
    x = field("number", default=0)
    y = field("number", default=0)
    secret = field("string", view=True)


class SecretState(Schema):
    tick = field("uint16", default=0)
    players = field({"map": SecretPlayer})


class _Client:
    def __init__(self, view: StateView) -> None:
        self.view = view
        self.dialect = "v5"


def run_views(players: int, moving: int, ticks: int, warmup: int, clients: int) -> float:
    """Median µs of one encode_patches() for ``clients`` clients, each seeing its player's secret."""
    state = SecretState()
    for i in range(players):
        state.players[f"p{i}"] = SecretPlayer(name=f"player{i}", x=i % 500, secret="s")
    serializer = SchemaSerializer(state)
    audience = [_Client(StateView().add(state.players[f"p{i}"])) for i in range(clients)]
    for client in audience:
        serializer.full_state(client)
    keys = [f"p{i}" for i in range(players)]
    samples = []
    for tick in range(1, warmup + ticks + 1):
        state.tick = tick % 65536
        for k in range(moving):
            p = state.players[keys[(tick * 37 + k * 10) % players]]
            p.x = (tick * 3 + k) % 500 + 0.5
            p.y = ((tick + k) % 300) * 2
        state.players[keys[tick % clients]].secret = f"secret {tick}"
        start = time.perf_counter_ns()
        serializer.encode_patches(audience)
        if tick > warmup:
            samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


def run_node(players: int, moving: int, ticks: int, warmup: int) -> dict | None:
    if shutil.which("node") is None:
        return None
    script = ROOT / "benchmarks" / "schema_encode.mjs"
    out = subprocess.run(["node", str(script), str(players), str(moving), str(ticks), str(warmup)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


_TIMINGS = ("patch_us", "patch_mean_us", "mutate_us", "full_us", "full_tick_us", "full_cold_us")


def _best(results: list[dict]) -> dict:
    """The first round's sizes and bytes with every timing at its minimum over the rounds."""
    best = dict(results[0])
    for key in _TIMINGS:
        if key in best:
            best[key] = min(r[key] for r in results)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--moving", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--views", type=int, nargs="*", default=[1, 10, 50],
                        help="client counts for the private-field (StateView) measurement")
    args = parser.parse_args()

    rounds = [(run_python(args.players, args.moving, args.ticks, args.warmup),
               run_node(args.players, args.moving, args.ticks, args.warmup))
              for _ in range(max(1, args.rounds))]
    py = _best([r[0] for r in rounds])
    node = _best([r[1] for r in rounds]) if all(r[1] for r in rounds) else None

    print(f"state: {args.players} players, {args.moving} moving per tick, {args.ticks} ticks "
          f"(after {args.warmup} warm-up ticks); Python {sys.version.split()[0]}, "
          f"{speedups.implementation()} encoder; best of {len(rounds)} rounds")
    print(f"{'':28}{'greenroom':>12}{'schema 5 (node)':>18}{'ratio':>8}")

    def row(label: str, key: str, unit: str, node_key: str | None = None) -> None:
        ours = py[key]
        theirs = node[node_key or key] if node else None
        ratio = f"{ours / theirs:7.1f}x" if theirs else "      -"
        theirs_text = f"{theirs:14.1f} {unit}" if theirs is not None else f"{'-':>16}"
        print(f"{label:28}{ours:9.1f} {unit}{theirs_text}{ratio}")

    row("patch encode (median)", "patch_us", "µs")
    row("patch encode (mean)", "patch_mean_us", "µs")
    row(f"{2 * args.moving + 1} assignments", "mutate_us", "µs")
    row("patch size", "patch_bytes", "B ")
    row("full state encode", "full_us", "µs")
    row("full state after a tick", "full_tick_us", "µs")
    # @colyseus/schema keeps no per-structure cache: its cold encode is its ordinary one
    row("full state, nothing cached", "full_cold_us", "µs", "full_us")
    row("full state size", "full_bytes", "B ")
    if node:
        same = py["sample_patch"] == node["sample_patch"]
        print(f"first measured patch byte-identical to schema 5: {'yes' if same else 'NO'}")
        same = py["full_hex"] == node["full_hex"]
        print(f"full state byte-identical to schema 5: {'yes' if same else 'NO'}")
        ratios = sorted(p["patch_us"] / n["patch_us"] for p, n in rounds)
        print(f"patch encode ratio per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    for clients in args.views:
        us = run_views(args.players, args.moving, min(args.ticks, 300), args.warmup, clients)
        print(f"with a private field, {clients:3} clients with views: {us:8.1f} µs per tick "
              f"(all clients' patches)")


if __name__ == "__main__":
    main()
