"""Presence inside one process: the same semantics as Redis, without a server.

It mirrors Redis where callers could notice a difference: messages are msgpack round-tripped
and delivered later by a fan-out greenlet (not inside ``publish``), keys expire, empty sets,
hashes and lists disappear, and ``brpop`` parks only the calling greenlet.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections import deque
from typing import Any

import gevent
import gevent.event
import gevent.queue
import msgpack

from .base import Listener, Presence

log = logging.getLogger(__name__)

_SWEEP_EVERY = 5.0


def pack(message: Any) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


class LocalPresence(Presence):
    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}
        self._last_sweep = time.monotonic()
        self._callbacks: dict[str, list[Listener]] = {}
        self._outbox: gevent.queue.Queue = gevent.queue.Queue()
        self._fanout: gevent.Greenlet | None = None
        self._list_waiters: dict[str, set[gevent.event.Event]] = {}

    # -- pub/sub -------------------------------------------------------------------------
    def subscribe(self, channel: str, callback: Listener) -> None:
        self._start_fanout()
        self._callbacks.setdefault(channel, []).append(callback)

    def unsubscribe(self, channel: str, callback: Listener | None = None) -> None:
        callbacks = self._callbacks.get(channel)
        if callbacks is None:
            return
        if callback is None:
            callbacks.clear()
        elif callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            del self._callbacks[channel]

    def publish(self, channel: str, message: Any) -> int:
        raw = pack(message)
        receivers = tuple(self._callbacks.get(channel, ()))
        if receivers:
            self._start_fanout()
            self._outbox.put((channel, raw, receivers))
        return len(receivers)

    def channels(self, pattern: str | None = None) -> list[str]:
        names = list(self._callbacks)
        if pattern is None:
            return names
        return [name for name in names if fnmatch.fnmatchcase(name, pattern)]

    def _start_fanout(self) -> None:
        if self._fanout is None or self._fanout.dead:
            self._fanout = gevent.spawn(self._deliver_forever)

    def _deliver_forever(self) -> None:
        for channel, raw, receivers in self._outbox:
            self._deliver(channel, raw, receivers)

    def _deliver(self, channel: str, raw: bytes, receivers: tuple[Listener, ...]) -> None:
        try:
            message = unpack(raw)
        except Exception as exc:
            log.warning("presence: skipped a malformed message on channel %r: %s", channel, exc)
            return
        current = self._callbacks.get(channel, ())
        for callback in receivers:
            if callback not in current:
                continue
            try:
                callback(message)
            except Exception:
                log.exception("presence: callback %r for channel %r raised", callback, channel)

    # -- keys ----------------------------------------------------------------------------
    def set(self, key: str, value: str) -> None:
        self._store(key, str(value))

    def setex(self, key: str, value: str, seconds: float) -> None:
        self._store(key, str(value))
        self.expire(key, seconds)

    def get(self, key: str) -> str | None:
        return self._read(key, str)

    def delete(self, key: str) -> None:
        self._drop(key)

    def exists(self, key: str) -> bool:
        return self._live(key) is not None

    def setnx_ex(self, key: str, value: str, seconds: float) -> bool:
        if self._live(key) is not None:
            return False
        self.setex(key, value, seconds)
        return True

    def delete_if(self, key: str, value: str) -> bool:
        if self._read(key, str) != value:
            return False
        self._drop(key)
        return True

    def extend_if(self, key: str, value: str, seconds: float) -> bool:
        if self._read(key, str) != value:
            return False
        self.expire(key, seconds)
        return True

    def expire(self, key: str, seconds: float) -> None:
        if self._live(key) is not None:
            self._expiry[key] = time.monotonic() + seconds

    def incr(self, key: str) -> int:
        return self._add(key, 1)

    def decr(self, key: str) -> int:
        return self._add(key, -1)

    def _add(self, key: str, amount: int) -> int:
        current = self._read(key, str)
        value = (0 if current is None else _as_int(current, key)) + amount
        self._data[key] = str(value)  # INCR keeps the key's expiry, as Redis does
        return value

    # -- sets ----------------------------------------------------------------------------
    def sadd(self, key: str, value: str) -> None:
        self._container(key, set).add(str(value))

    def smembers(self, key: str) -> set[str]:
        return set(self._read(key, set) or ())

    def sismember(self, key: str, value: str) -> bool:
        return str(value) in (self._read(key, set) or ())

    def srem(self, key: str, value: str) -> None:
        members = self._read(key, set)
        if members is not None:
            members.discard(str(value))
            self._drop_if_empty(key)

    def scard(self, key: str) -> int:
        return len(self._read(key, set) or ())

    def sinter(self, *keys: str) -> set[str]:
        if not keys:
            return set()
        result = self.smembers(keys[0])
        for key in keys[1:]:
            result &= self.smembers(key)
        return result

    # -- hashes --------------------------------------------------------------------------
    def hset(self, key: str, field: str, value: str) -> None:
        self._container(key, dict)[field] = str(value)

    def hget(self, key: str, field: str) -> str | None:
        return (self._read(key, dict) or {}).get(field)

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self._read(key, dict) or {})

    def hdel(self, key: str, field: str) -> bool:
        fields = self._read(key, dict)
        if fields is None or field not in fields:
            return False
        del fields[field]
        self._drop_if_empty(key)
        return True

    def hlen(self, key: str) -> int:
        return len(self._read(key, dict) or ())

    def hincrby(self, key: str, field: str, amount: int = 1) -> int:
        fields = self._container(key, dict)
        value = _as_int(fields.get(field, "0"), key) + amount
        fields[field] = str(value)
        return value

    def hincrbyex(self, key: str, field: str, amount: int, seconds: float) -> int:
        value = self.hincrby(key, field, amount)
        self.expire(key, seconds)
        return value

    # -- lists ---------------------------------------------------------------------------
    def lpush(self, key: str, *values: str) -> int:
        items = self._container(key, deque)
        items.extendleft(str(v) for v in values)
        self._wake_poppers(key)
        return len(items)

    def rpush(self, key: str, *values: str) -> int:
        items = self._container(key, deque)
        items.extend(str(v) for v in values)
        self._wake_poppers(key)
        return len(items)

    def lpop(self, key: str) -> str | None:
        return self._pop(key, left=True)

    def rpop(self, key: str) -> str | None:
        return self._pop(key, left=False)

    def llen(self, key: str) -> int:
        return len(self._read(key, deque) or ())

    def brpop(self, *keys: str, timeout: float = 0) -> tuple[str, str] | None:
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            for key in keys:
                value = self.rpop(key)
                if value is not None:
                    return key, value
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._wait_for_push(keys, remaining)

    def _pop(self, key: str, *, left: bool) -> str | None:
        items = self._read(key, deque)
        if not items:
            return None
        value = items.popleft() if left else items.pop()
        self._drop_if_empty(key)
        return value

    def _wait_for_push(self, keys: tuple[str, ...], timeout: float | None) -> None:
        pushed = gevent.event.Event()
        for key in keys:
            self._list_waiters.setdefault(key, set()).add(pushed)
        try:
            pushed.wait(timeout)
        finally:
            for key in keys:
                waiters = self._list_waiters.get(key)
                if waiters is not None:
                    waiters.discard(pushed)
                    if not waiters:
                        del self._list_waiters[key]

    def _wake_poppers(self, key: str) -> None:
        for pushed in self._list_waiters.get(key, ()):
            pushed.set()

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        if self._fanout is not None:
            self._fanout.kill(block=False)
            self._fanout = None
        self._callbacks.clear()

    # -- storage with expiry -------------------------------------------------------------
    def _live(self, key: str) -> Any:
        self._sweep()
        deadline = self._expiry.get(key)
        if deadline is not None and deadline <= time.monotonic():
            self._drop(key)
            return None
        return self._data.get(key)

    def _read(self, key: str, kind: type) -> Any:
        value = self._live(key)
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"key {key!r} holds a {type(value).__name__}, not a {kind.__name__}")
        return value

    def _container(self, key: str, kind: type) -> Any:
        value = self._read(key, kind)
        if value is None:
            value = self._data[key] = kind()
        return value

    def _store(self, key: str, value: Any) -> None:
        self._drop(key)
        self._data[key] = value

    def _drop(self, key: str) -> None:
        self._data.pop(key, None)
        self._expiry.pop(key, None)

    def _drop_if_empty(self, key: str) -> None:
        if not self._data.get(key):
            self._drop(key)

    def _sweep(self) -> None:
        """Forget expired keys now and then, so keys nobody reads again do not pile up."""
        now = time.monotonic()
        if now - self._last_sweep < _SWEEP_EVERY:
            return
        self._last_sweep = now
        for key in [k for k, deadline in self._expiry.items() if deadline <= now]:
            self._drop(key)


def _as_int(value: str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"value of {key!r} is not an integer") from None
