"""The presence interface: what rooms and matchmakers share across processes (DESIGN D3).

Mirrors the Colyseus presence API in Python naming. Every method is blocking-style and safe to
call from any greenlet. Values are strings (bytes from Redis are decoded as UTF-8); pub/sub
messages are any msgpack-serialisable value.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gevent

Listener = Callable[[Any], None]


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
    def publish(self, channel: str, message: Any) -> None: ...

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

    @abstractmethod
    def delete_if(self, key: str, value: str) -> bool:
        """Delete ``key`` only if it still holds ``value`` (so an expired lock's late owner
        cannot release its successor's lock)."""

    @contextmanager
    def lock(self, key: str, ttl: float = 10.0, wait: float = 15.0) -> Iterator[bool]:
        """Hold a lease-based lock across processes; yields False if it could not be had in
        ``wait`` seconds (the caller decides whether to go on without it).

        The lease bounds how long a crashed holder blocks others.
        """
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        delay = 0.002
        acquired = self.setnx_ex(key, token, ttl)
        while not acquired and time.monotonic() < deadline:
            gevent.sleep(delay)
            delay = min(delay * 2, 0.05)
            acquired = self.setnx_ex(key, token, ttl)
        try:
            yield acquired
        finally:
            if acquired:
                self.delete_if(key, token)

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop background greenlets and release connections."""
