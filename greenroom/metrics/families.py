"""The metric families greenroom counts in each process, defined once per process.

Every family works in prometheus_client's multiprocess mode (see ``multiprocess.py``): the
gauges say how their values of several processes add up (``livesum``: the sum over the
processes alive now, so a dead worker's rooms vanish with it), counters and histograms are
summed over every process that ever wrote them (a dead worker's joins still happened).
README "Operating" lists them with their meaning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["families"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ENCODE = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_SIZES = (16, 64, 256, 1024, 4096, 16384, 65536, 262144)


def _define() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "rooms": Gauge("greenroom_rooms", "Rooms open in this host's workers", ["name"],
                       multiprocess_mode="livesum"),
        "clients": Gauge("greenroom_clients", "Client sockets admitted to rooms (joined or "
                         "acknowledging the join)", ["name"], multiprocess_mode="livesum"),
        "joins": Counter("greenroom_joins", "Seats reserved by matchmaking requests", ["name"]),
        "join_failures": Counter("greenroom_join_failures", "Matchmaking requests and room "
                                 "sockets refused, by error code", ["method", "code"]),
        "matchmaking_seconds": Histogram("greenroom_matchmaking_seconds", "Time to answer a "
                                         "matchmaking request", ["method"], buckets=_LATENCY),
        "reservations_expired": Counter("greenroom_seat_reservations_expired", "Seats reserved "
                                        "but never claimed by a socket in time", ["name"]),
        "messages_in": Counter("greenroom_messages_received", "Frames received on room sockets",
                               ["name"]),
        "messages_out": Counter("greenroom_messages_sent", "Frames sent on room sockets", ["name"]),
        "bytes_in": Counter("greenroom_received_bytes", "Bytes of the frames received on room "
                            "sockets", ["name"]),
        "bytes_out": Counter("greenroom_sent_bytes", "Bytes of the frames sent on room sockets",
                             ["name"]),
        "patch_seconds": Histogram("greenroom_patch_encode_seconds", "Time to encode one state "
                                   "patch (all its views)", ["name"], buckets=_ENCODE),
        "patch_bytes": Histogram("greenroom_patch_bytes", "Size of an encoded state patch, one "
                                 "per view", ["name"], buckets=_SIZES),
        "backlog_drops": Counter("greenroom_send_backlog_drops", "Clients dropped because they "
                                 "did not read what was sent to them fast enough", ["name"]),
        "handoffs": Counter("greenroom_handoffs", "Room sockets handed between the workers of "
                            "a host: sent, received, failed (the owner was gone)", ["outcome"]),
        "rpc_calls": Counter("greenroom_rpc_calls", "Calls to other processes", ["method"]),
        "rpc_timeouts": Counter("greenroom_rpc_timeouts", "Calls to other processes that got "
                                "no answer in time", ["method"]),
        "backend_errors": Counter("greenroom_backend_errors", "Presence or driver operations "
                                  "that failed because the backend was unreachable", ["backend"]),
        "worker_restarts": Counter("greenroom_worker_restarts", "Workers respawned by the "
                                   "master after an unexpected exit"),
    }


_families: dict[str, Any] | None = None


def families() -> dict[str, Any]:
    """The process's families, defined on first use (prometheus_client refuses a second
    definition of a name in one registry)."""
    global _families
    if _families is None:
        _families = _define()
    return _families
