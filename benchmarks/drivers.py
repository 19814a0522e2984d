"""joinOrCreate query latency of each driver, as the number of rooms of OTHER names grows.

A matchmaker asks "an available 'chat' room with mode=duel, fullest first". Its cost must
depend on the 'chat' rooms only: with 0, 1,000 or 10,000 rooms of other names listed, p50 and
p99 should stay flat (Colyseus' Redis driver reads every listing per query, so it would not).

    python benchmarks/drivers.py [--queries 500] [--sizes 0,1000,10000]

Starts its own redis-server and SecantusDB (tests/servers.py). Not a test: prints numbers.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent.pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from greenroom.drivers import Driver, LocalDriver  # noqa: E402
from greenroom.drivers.listing import RoomListing  # noqa: E402
from greenroom.drivers.mongo import MongoDriver  # noqa: E402
from greenroom.drivers.redis import RedisDriver  # noqa: E402

from servers import MongoServer, RedisServer, running  # noqa: E402

CHAT_ROOMS = 50


def fill(driver: Driver, others: int, start: int) -> None:
    """Add rooms of other names (numbered from ``start``) with a few greenlets at a time."""
    pool = gevent.pool.Pool(16)
    for n in range(start, others):
        listing = RoomListing(
            name=f"other-{n % 100}",
            room_id=f"o{n}",
            process_id=f"p{n % 8}",
            clients=n % 5,
            max_clients=4,
            filters={"mode": "duel"},
            metadata={"elo": n % 2000},
        )
        pool.spawn(driver.register, listing)
    pool.join(raise_error=True)


def add_chat_rooms(driver: Driver) -> None:
    for n in range(CHAT_ROOMS):
        driver.register(
            RoomListing(
                name="chat",
                room_id=f"c{n}",
                process_id=f"p{n % 8}",
                clients=n % 5,  # a fifth of them full
                max_clients=4,
                locked=n % 7 == 0,
                filters={"mode": "duel" if n % 2 else "ffa"},
            )
        )


def measure(driver: Driver, queries: int) -> tuple[float, float]:
    def join_or_create_query() -> None:
        found = driver.query(
            "chat", filters={"mode": "duel"}, available=True, sort=[("clients", -1)], limit=1
        )
        assert found, "the chat rooms went missing"

    for _ in range(20):  # warm up: connections, scripts, caches
        join_or_create_query()
    samples = []
    for _ in range(queries):
        started = time.perf_counter()
        join_or_create_query()
        samples.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49], cuts[98]


def bench(label: str, driver: Driver, sizes: list[int], queries: int) -> None:
    driver.clear()
    add_chat_rooms(driver)
    listed = 0
    for size in sizes:
        started = time.perf_counter()
        fill(driver, size, listed)
        listed = max(listed, size)
        filled = time.perf_counter() - started
        p50, p99 = measure(driver, queries)
        print(
            f"{label:<7} {size:>7,} other rooms   p50 {p50:7.3f} ms   p99 {p99:7.3f} ms"
            f"   (filled in {filled:.1f}s)",
            flush=True,
        )
    driver.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--sizes", default="0,1000,10000")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))

    print(
        f"query('chat', filters=mode, available, sort clients desc, limit 1); {CHAT_ROOMS} chat rooms"
    )
    bench("local", LocalDriver(), sizes, args.queries)
    with running(RedisServer) as redis_server:
        bench("redis", RedisDriver(redis_server.url), sizes, args.queries)
    with running(MongoServer) as mongo_server:
        bench("mongo", MongoDriver(mongo_server.uri), sizes, args.queries)


if __name__ == "__main__":
    main()
