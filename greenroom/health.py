"""Liveness and readiness: what a load balancer or Kubernetes asks a process.

Liveness (``/health``) only says the process answers; it never waits on a backend, so a Redis
outage does not get healthy processes restarted. Readiness (``/ready``) says whether this
process can seat players now: presence and driver reachable, not shutting down. A process that
is live but not ready keeps its rooms playing while the balancer sends new players elsewhere.

Probes come in storms (every balancer node, every few seconds, times every process), so each
backend is checked by at most one greenlet at a time and its answer is kept ``max_age``
seconds. A backend that does not answer within ``timeout`` makes the process not ready at once,
while its check carries on in the background: the check is never killed, as a greenlet killed
inside a driver call can deadlock it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent

OK = "ok"

# Defaults: a Kubernetes probe times out after 1 s by default and runs every 10 s.
DEFAULT_MAX_AGE = 1.0
DEFAULT_TIMEOUT = 0.8


class BackendProbe:
    """The reachability of one backend: its last answer and the check in flight, if any."""

    def __init__(self, name: str, ping: Callable[[], Any], *, max_age: float = DEFAULT_MAX_AGE,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.name = name
        self._ping = ping
        self.max_age = max_age
        self.timeout = timeout
        self._answer: str | None = None  # OK, or why the backend is unreachable
        self._answered_at = 0.0
        self._check: gevent.Greenlet | None = None
        self._started_at = 0.0

    def state(self, *, wait: bool) -> str:
        """``"ok"`` or the reason the backend cannot be used; ``wait`` lets a readiness probe
        wait (``timeout`` at most) for a fresh answer, liveness takes what is known."""
        now = time.monotonic()
        if self._check is None and (self._answer is None or now - self._answered_at >= self.max_age):
            self._started_at = now
            self._check = gevent.spawn(self._run)
        check = self._check
        if check is not None and wait:
            check.join(max(0.0, self._started_at + self.timeout - time.monotonic()))
        if self._check is not None and time.monotonic() - self._started_at >= self.timeout:
            return f"no answer within {self.timeout:g}s"
        return self._answer if self._answer is not None else "checking"

    def _run(self) -> None:
        try:
            self._ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable", with its text
            answer = str(exc) or type(exc).__name__
        else:
            answer = OK
        self._answer, self._answered_at = answer, time.monotonic()
        self._check = None


class Readiness:
    """Readiness of one process: its backends (those with a ``ping()``) and its own state."""

    def __init__(self, backends: Mapping[str, Any], accepting: Callable[[], bool], *,
                 max_age: float = DEFAULT_MAX_AGE, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._accepting = accepting
        self.probes = {
            name: BackendProbe(name, backend.ping, max_age=max_age, timeout=timeout)
            for name, backend in backends.items()
            if callable(getattr(backend, "ping", None))
        }
        # In-memory backends cannot be unreachable: they are reported, never checked.
        self._local = [name for name in backends if name not in self.probes]

    def backends(self, *, wait: bool = False) -> dict[str, str]:
        states = {name: "ok (in memory)" for name in self._local}
        if wait:
            for probe in self.probes.values():  # start every check before waiting on any
                probe.state(wait=False)
        states.update({name: probe.state(wait=wait) for name, probe in self.probes.items()})
        return states

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details): details name every check and, when not ready, the first reason."""
        checks = self.backends(wait=True)
        reasons = [f"{name}: {state}" for name, state in checks.items()
                   if name in self.probes and state != OK]
        accepting = self._accepting()
        checks["accepting"] = OK if accepting else "shutting down"
        if not accepting:
            reasons.insert(0, "shutting down")
        body: dict[str, Any] = {"status": "ready" if not reasons else "not ready", "checks": checks}
        if reasons:
            body["reason"] = "; ".join(reasons)
        return not reasons, body
