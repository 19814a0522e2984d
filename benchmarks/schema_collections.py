"""Patch encoding of map and array changes (greenroom only): what schema_encode.py does not move.

A state with a ``{"map": "number"}`` of 1,000 scores (100 changed per tick), an array of 200
numbers (10 REPLACEs and an append per tick, a pop of the first item every 50 ticks: CLEAR and
re-ADD), a map of 1,000 players (one replaced by a new Player every tick, one deleted every 3rd).
Prints the p10 and median µs of ``encode_patch`` and a SHA-256 of every patch and the final full
state, so that two builds (compiled, ``GREENROOM_PURE_PYTHON=1``, another commit) can be checked
for identical bytes. A benchmark, not a test: run it by hand.

    python benchmarks/schema_collections.py [--ticks 3000]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from greenroom.schema import ChangeTracker, Schema, encode_all, encode_patch, field, speedups  # noqa: E402


class Player(Schema):
    name = field("string", default="")
    x = field("number", default=0)


class State(Schema):
    scores = field({"map": "number"})
    players = field({"map": Player})
    log = field(["number"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=3000)
    args = parser.parse_args()
    state = State()
    for i in range(1000):
        state.scores[f"k{i}"] = i
        state.players[f"p{i}"] = Player(name=f"n{i}")
    for i in range(200):
        state.log.append(i)
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    digest = hashlib.sha256()
    samples = []
    gc.disable()
    for tick in range(1, args.ticks + 1):
        for k in range(100):
            state.scores[f"k{(tick * 37 + k * 10) % 1000}"] = tick + k + 0.5
        for k in range(10):
            state.log[(tick + k * 13) % 200] = tick * k
        state.log.append(tick)
        if tick % 50 == 0:
            state.log.pop(0)
        state.players[f"p{tick % 1000}"] = Player(name=f"m{tick}")
        if tick % 3 == 0:
            state.players.pop(f"p{(tick * 7) % 1000}", None)
        start = time.perf_counter_ns()
        patch = encode_patch(tracker)
        samples.append((time.perf_counter_ns() - start) / 1000)
        digest.update(patch)
    gc.enable()
    digest.update(encode_all(tracker))
    samples.sort()
    print(f"{speedups.implementation()} encoder, {args.ticks} ticks: patch p10 "
          f"{samples[len(samples) // 10]:.1f} µs, median {samples[len(samples) // 2]:.1f} µs; "
          f"bytes sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
