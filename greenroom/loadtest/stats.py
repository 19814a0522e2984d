"""What a load test counts, and how it reports it: a live line and a JSON summary."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

# Live figures cover the last few seconds, the summary the whole run.
RECENT_SECONDS = 5.0
_MAX_SAMPLES = 1_000_000  # RTT and join samples kept for the summary's percentiles


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when it is empty)."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), int(fraction * len(ordered) + 0.999999)))
    return ordered[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def distribution(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {"samples": len(ordered), "p50": _ms(percentile(ordered, 0.50)),
            "p90": _ms(percentile(ordered, 0.90)), "p99": _ms(percentile(ordered, 0.99)),
            "max": _ms(ordered[-1] if ordered else None)}


@dataclass
class Stats:
    clients: int
    started_at: float = field(default_factory=time.monotonic)
    started: int = 0          # bots that began to join
    connected: int = 0        # bots that joined (whether or not they are still in)
    failed: int = 0           # joins that failed
    open: int = 0             # bots in a room right now
    dropped: int = 0          # bots the server disconnected before the end
    messages_in: int = 0
    messages_out: int = 0
    state_frames: int = 0
    ping_timeouts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[int] = field(default_factory=Counter)
    script_errors: Counter[str] = field(default_factory=Counter)
    join_times: list[float] = field(default_factory=list)
    rtts: list[float] = field(default_factory=list)
    _recent_rtts: deque[tuple[float, float]] = field(default_factory=deque)
    _rate_mark: tuple[float, int] = (0.0, 0)

    # -- recording (from any greenlet: gevent never switches inside these) ---------------------
    def joined(self, seconds: float) -> None:
        self.connected += 1
        self.open += 1
        if len(self.join_times) < _MAX_SAMPLES:
            self.join_times.append(seconds)

    def join_failed(self, error: BaseException) -> None:
        self.failed += 1
        self.errors[describe_error(error)] += 1

    def left(self, code: int | None, expected: bool) -> None:
        self.open -= 1
        if code is not None:
            self.close_codes[code] += 1
        if not expected:
            self.dropped += 1

    def rtt(self, seconds: float) -> None:
        if len(self.rtts) < _MAX_SAMPLES:
            self.rtts.append(seconds)
        self._recent_rtts.append((time.monotonic(), seconds))

    # -- reporting -------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def progress_line(self) -> str:
        """One line for a terminal: where the run is now (messages/s since the last line)."""
        now = time.monotonic()
        last_time, last_count = self._rate_mark
        rate = (self.messages_in - last_count) / (now - last_time) if last_time else 0.0
        self._rate_mark = (now, self.messages_in)
        while self._recent_rtts and self._recent_rtts[0][0] < now - RECENT_SECONDS:
            self._recent_rtts.popleft()
        recent = sorted(rtt for _, rtt in self._recent_rtts)
        p50, p99 = (_ms(percentile(recent, q)) for q in (0.5, 0.99))
        rtt = f"rtt p50 {p50:.1f} ms p99 {p99:.1f} ms" if p50 is not None else "rtt -"
        return (f"{self.elapsed():6.1f}s  connected {self.open}/{self.clients}  "
                f"failed {self.failed}  dropped {self.dropped}  msgs/s {rate:,.0f}  {rtt}")

    def summary(self, config: dict[str, Any], duration: float, interrupted: bool) -> dict[str, Any]:
        return {
            **config,
            "duration_s": round(duration, 3),
            "interrupted": interrupted,
            "started": self.started,
            "connected": self.connected,
            "failed": self.failed,
            "dropped": self.dropped,
            "errors": dict(self.errors.most_common(20)),
            "close_codes": {str(code): n for code, n in sorted(self.close_codes.items())},
            "join_ms": distribution(self.join_times),
            "rtt_ms": distribution(self.rtts),
            "ping_timeouts": self.ping_timeouts,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "messages_in_per_s": round(self.messages_in / duration, 1) if duration else 0.0,
            "state_frames": self.state_frames,
            "script_errors": dict(self.script_errors.most_common(20)),
        }


def describe_error(error: BaseException) -> str:
    """A failure as one line, the same for every bot that failed the same way."""
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "…"
