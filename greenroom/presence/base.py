"""The presence interface: what rooms and matchmakers share across processes (DESIGN D3).

Mirrors the Colyseus presence API in Python naming. Every method is blocking-style and safe to
call from any greenlet. Values are strings (bytes from Redis are decoded as UTF-8); pub/sub
messages are any msgpack-serialisable value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

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

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop background greenlets and release connections."""
