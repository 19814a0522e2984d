"""The presence interface: what rooms and matchmakers share across processes
(docs/architecture.md, "Processes and leases").

Mirrors the Colyseus presence API in Python naming. Every method is blocking-style and safe to
call from any greenlet. Values are strings (bytes from Redis are decoded as UTF-8); pub/sub
messages are any msgpack-serialisable value.
"""

from __future__ import annotations

import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import gevent.event

Listener = Callable[[Any], None]

log = logging.getLogger("greenroom.presence")


class PresenceUnavailable(RuntimeError):
    """The shared store cannot be reached: the server answers 503 instead of guessing."""


class Lease:
    """A lock held across processes (``Presence.lock``): true while it is held.

    The key expires ``ttl`` seconds after its last renewal, so a crashed holder blocks others for
    ``ttl`` at most; while the holder lives, a greenlet renews it every ``ttl / 3`` seconds, so
    work inside the lock may take longer than ``ttl``. If a renewal finds the key gone or taken
    (the holder stalled past ``ttl``, or Redis was unreachable that long), the lease is *lost*:
    it becomes false, and the holder must check it before any step that needs exclusivity.
    """

    def __init__(self, presence: Presence, key: str, token: str, ttl: float, held: bool) -> None:
        self.presence = presence
        self.key = key
        self.ttl = ttl
        self.held = held
        self.lost = False
        self._token = token
        self._done = gevent.event.Event()
        self._renewer = gevent.spawn(self._renew_forever) if held else None

    def __bool__(self) -> bool:
        return self.held and not self.lost

    def release(self) -> None:
        self._done.set()  # the renewer is never killed: it may be inside a Redis call
        if self.held and not self.lost:
            try:
                self.presence.delete_if(self.key, self._token)
            except Exception as exc:  # noqa: BLE001 - it expires by itself within ttl
                log.warning("presence: lock %s not released (%s); it expires within %g s",
                            self.key, exc, self.ttl)
        self.held = False

    def _renew_forever(self) -> None:
        renewed_at = time.monotonic()
        while not self._done.wait(self.ttl / 3):
            try:
                still_ours = self.presence.extend_if(self.key, self._token, self.ttl)
            except Exception as exc:  # noqa: BLE001 - retried until the key would have expired
                if time.monotonic() - renewed_at < self.ttl:
                    continue
                still_ours = False
                log.warning("presence: lock %s could not be renewed for %g s (%s)", self.key,
                            self.ttl, exc)
            if self._done.is_set():
                return
            if not still_ours:
                self.lost = True
                log.warning("presence: lock %s was lost while held (expired or taken over)",
                            self.key)
                return
            renewed_at = time.monotonic()


class Presence(ABC):
    # -- pub/sub -------------------------------------------------------------------------
    @abstractmethod
    def subscribe(self, channel: str, callback: Listener) -> None:
        """Call ``callback(message)`` for every message published on ``channel`` from now on.

        Returns once the subscription is active, so a publish that follows is received.
        Callbacks run in a presence-owned greenlet: they must not block for long.
        """

    @abstractmethod
    def unsubscribe(self, channel: str, callback: Listener | None = None) -> None:
        """Remove one callback, or every callback of the channel when ``callback`` is None."""

    @abstractmethod
    def publish(self, channel: str, message: Any) -> int | None:
        """Send ``message`` to the subscribers of ``channel``; returns how many received it
        (subscribed connections: one per process), or None when the backend cannot tell.
        0 tells at once that nobody listens, e.g. the process a request was meant for is gone."""

    @abstractmethod
    def channels(self, pattern: str | None = None) -> list[str]:
        """Channels with at least one subscriber (in any process), optionally glob-filtered."""

    # -- keys ----------------------------------------------------------------------------
    @abstractmethod
    def set(self, key: str, value: str) -> None: ...
    @abstractmethod
    def setex(self, key: str, value: str, seconds: float) -> None: ...
    @abstractmethod
    def get(self, key: str) -> str | None: ...
    @abstractmethod
    def delete(self, key: str) -> None: ...
    @abstractmethod
    def exists(self, key: str) -> bool: ...
    @abstractmethod
    def expire(self, key: str, seconds: float) -> None: ...
    @abstractmethod
    def incr(self, key: str) -> int: ...
    @abstractmethod
    def decr(self, key: str) -> int: ...

    # -- sets ----------------------------------------------------------------------------
    @abstractmethod
    def sadd(self, key: str, value: str) -> None: ...
    @abstractmethod
    def smembers(self, key: str) -> set[str]: ...
    @abstractmethod
    def sismember(self, key: str, value: str) -> bool: ...
    @abstractmethod
    def srem(self, key: str, value: str) -> None: ...
    @abstractmethod
    def scard(self, key: str) -> int: ...
    @abstractmethod
    def sinter(self, *keys: str) -> set[str]: ...

    # -- hashes --------------------------------------------------------------------------
    @abstractmethod
    def hset(self, key: str, field: str, value: str) -> None: ...
    @abstractmethod
    def hget(self, key: str, field: str) -> str | None: ...
    @abstractmethod
    def hgetall(self, key: str) -> dict[str, str]: ...
    @abstractmethod
    def hdel(self, key: str, field: str) -> bool: ...
    @abstractmethod
    def hlen(self, key: str) -> int: ...
    @abstractmethod
    def hincrby(self, key: str, field: str, amount: int = 1) -> int: ...
    @abstractmethod
    def hincrbyex(self, key: str, field: str, amount: int, seconds: float) -> int:
        """HINCRBY and set the key's expiry in one step."""

    # -- lists ---------------------------------------------------------------------------
    @abstractmethod
    def lpush(self, key: str, *values: str) -> int: ...
    @abstractmethod
    def rpush(self, key: str, *values: str) -> int: ...
    @abstractmethod
    def lpop(self, key: str) -> str | None: ...
    @abstractmethod
    def rpop(self, key: str) -> str | None: ...
    @abstractmethod
    def llen(self, key: str) -> int: ...
    @abstractmethod
    def brpop(self, *keys: str, timeout: float = 0) -> tuple[str, str] | None:
        """Block until one of ``keys`` has an item; (key, value), or None after ``timeout`` s."""

    # -- locks ---------------------------------------------------------------------------
    @abstractmethod
    def setnx_ex(self, key: str, value: str, seconds: float) -> bool:
        """Set ``key`` with an expiry only if it does not exist (SET NX PX); True if it was set."""

    def claim(self, key: str, value: str, seconds: float) -> bool:
        """Set ``key`` to ``value`` with an expiry unless it holds another value; True if it
        holds ``value`` now. A lock is taken with this, not ``setnx_ex``: when the reply to a
        SET NX is lost and the client resends it, the resent one finds the key set, by us, and
        would say "taken"; the name would stay locked, by nobody, until the lock expired.

        This default takes two steps; backends with retries override it with one atomic step.
        """
        return self.setnx_ex(key, value, seconds) or self.extend_if(key, value, seconds)

    @abstractmethod
    def delete_if(self, key: str, value: str) -> bool:
        """Delete ``key`` only if it still holds ``value`` (so an expired lock's late owner
        cannot release its successor's lock)."""

    def extend_if(self, key: str, value: str, seconds: float) -> bool:
        """Set ``key``'s expiry to ``seconds`` only if it still holds ``value``; True if it did.

        This default reads then writes; backends override it with one atomic step.
        """
        if self.get(key) != value:
            return False
        self.expire(key, seconds)
        return True

    @contextmanager
    def lock(self, key: str, ttl: float = 10.0, wait: float = 15.0) -> Iterator[Lease]:
        """Hold a lock across processes, renewed while held; yields a false Lease if it could not
        be had in ``wait`` seconds (the caller decides what to do without it), and a Lease that
        becomes false if it is lost while held (see Lease)."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        delay = 0.002
        acquired = self.claim(key, token, ttl)
        while not acquired and time.monotonic() < deadline:
            gevent.sleep(delay)
            delay = min(delay * 2, 0.05)
            acquired = self.claim(key, token, ttl)
        lease = Lease(self, key, token, ttl, acquired)
        try:
            yield lease
        finally:
            lease.release()

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop background greenlets and release connections."""
