"""Presence on Redis (redis-py), shared by every process of a deployment.

Two connection pools, because their jobs conflict:

* commands go through a ``BlockingConnectionPool`` (the default pool fails outright past its
  size) whose responses are decoded to ``str``;
* pub/sub owns one undecoded connection (messages are msgpack bytes), read by ONE greenlet per
  process that fans each message out to the local callbacks. It reads with
  ``get_message(timeout=...)`` so it notices shutdown and dead connections (``listen()`` would
  block forever on an idle socket), and after an outage it resubscribes every channel itself.

``brpop`` blocks one pooled command connection in slices of at most ``_BLOCK_SLICE`` seconds, so
neither the pub/sub connection nor the socket timeout is involved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.lock
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .. import keepalive
from ..metrics import record
from ..redis_options import pool_options
from ..urls import redact_url
from .base import Listener, Presence, PresenceUnavailable
from .local import pack, unpack

_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_CLAIM = """
local held = redis.call('GET', KEYS[1])
if not held then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""

_EXTEND_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

log = logging.getLogger(__name__)

T = TypeVar("T")

_BLOCK_SLICE = 1.0
_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)


class RedisPresence(Presence):
    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 64,
        pool_timeout: float = 5.0,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        subscribe_timeout: float = 5.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.url = url
        self.safe_url = redact_url(url)
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._socket_timeout = max(socket_timeout, _BLOCK_SLICE * 2)
        self._connect_timeout = connect_timeout
        self._subscribe_timeout = subscribe_timeout
        self._poll_interval = poll_interval
        self._client: redis.Redis | None = None
        self._hincrbyex_script: Any = None
        self._delete_if_script: Any = None
        self._extend_if_script: Any = None
        self._claim_script: Any = None
        self._pubsub_client: redis.Redis | None = None
        self._pubsub: Any = None
        self._pubsub_lock = gevent.lock.RLock()
        self._callbacks: dict[str, list[Listener]] = {}
        self._confirmed: dict[str, gevent.event.Event] = {}
        self._reader: gevent.Greenlet | None = None
        self._wake = gevent.event.Event()
        self._broken = False
        self._closed = False

    # -- connections ---------------------------------------------------------------------
    @property
    def client(self) -> redis.Redis:
        """The command client, created on first use (never before a fork: docs/architecture.md, "Processes and leases")."""
        if self._client is None:
            pool = redis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self._max_connections,
                timeout=self._pool_timeout,
                decode_responses=True,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._connect_timeout,
                # One quick retry replaces a pooled connection the server dropped (restart,
                # idle timeout); more would only delay the 503 during a real outage.
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
                **pool_options(),
            )
            self._client = redis.Redis(connection_pool=pool)
        return self._client

    def _pubsub_connection(self) -> Any:
        if self._pubsub is None:
            pool = redis.ConnectionPool.from_url(
                self.url,
                max_connections=2,
                decode_responses=False,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._connect_timeout,
                retry=Retry(NoBackoff(), 0),  # the reader greenlet reconnects, with backoff
                **pool_options(),
                **self._keepalive(),
            )
            self._pubsub_client = redis.Redis(connection_pool=pool)
            self._pubsub = self._pubsub_client.pubsub()
        return self._pubsub

    def _keepalive(self) -> dict[str, Any]:
        """An idle subscriber never writes: only TCP keepalive notices a peer that vanished
        without closing the connection (host down, network partition). Not for Unix sockets."""
        if self.url.startswith("unix:"):
            return {}
        return {"socket_keepalive": True, "socket_keepalive_options": keepalive.OPTIONS}

    @contextmanager
    def _available(self, what: str) -> Iterator[None]:
        try:
            yield
        except _REDIS_DOWN as exc:
            record.active.backend_error("presence")
            raise PresenceUnavailable(
                f"Redis at {self.safe_url} unavailable ({what}): {exc}"
            ) from exc

    def _run(self, command: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._available(getattr(command, "__name__", "script")):
            return command(*args, **kwargs)

    def ping(self) -> None:
        """Raise PresenceUnavailable unless the server answers: a start-up check."""
        self._run(self.client.ping)

    # -- pub/sub -------------------------------------------------------------------------
    def subscribe(self, channel: str, callback: Listener) -> None:
        if self._closed:
            raise RuntimeError("RedisPresence is closed")
        self._start_reader()
        callbacks = self._callbacks.get(channel)
        if callbacks is not None:
            callbacks.append(callback)
        else:
            self._callbacks[channel] = [callback]
            self._confirmed[channel] = gevent.event.Event()
            try:
                self._send_subscribe(channel)
            except _REDIS_DOWN as exc:
                self._forget(channel, callback)
                record.active.backend_error("presence")
                raise PresenceUnavailable(
                    f"Redis at {self.safe_url} unavailable (subscribe {channel!r}): {exc}"
                ) from exc
        self._await_confirmation(channel, callback)

    def _send_subscribe(self, channel: str) -> None:
        with self._pubsub_lock:
            if self._broken:
                raise redis.ConnectionError("pub/sub connection is being re-established")
            self._pubsub_connection().subscribe(channel)
        self._wake.set()

    def _await_confirmation(self, channel: str, callback: Listener) -> None:
        """Return once Redis acknowledged SUBSCRIBE, so a publish right after is received."""
        confirmed = self._confirmed.get(channel)
        if confirmed is None or gevent.getcurrent() is self._reader:
            return  # the reader cannot wait for a reply only it can read
        if not confirmed.wait(self._subscribe_timeout):
            self._forget(channel, callback)
            record.active.backend_error("presence")
            raise PresenceUnavailable(
                f"Redis at {self.safe_url} did not confirm SUBSCRIBE {channel!r} within "
                f"{self._subscribe_timeout:g}s"
            )

    def _forget(self, channel: str, callback: Listener) -> None:
        callbacks = self._callbacks.get(channel, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            self._drop_channel(channel)

    def unsubscribe(self, channel: str, callback: Listener | None = None) -> None:
        callbacks = self._callbacks.get(channel)
        if callbacks is None:
            return
        if callback is None:
            callbacks.clear()
        elif callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            self._drop_channel(channel)

    def _drop_channel(self, channel: str) -> None:
        self._callbacks.pop(channel, None)
        self._confirmed.pop(channel, None)
        try:
            with self._pubsub_lock:
                if self._pubsub is not None and self._pubsub.connection is not None:
                    self._pubsub.unsubscribe(channel)
        except _REDIS_DOWN as exc:
            # The channel is no longer ours: the reader will not resubscribe it after the outage.
            log.debug("presence: UNSUBSCRIBE %r on %s failed: %s", channel, self.safe_url, exc)

    def publish(self, channel: str, message: Any) -> int:
        return int(self._run(self.client.publish, channel, pack(message)))

    def channels(self, pattern: str | None = None) -> list[str]:
        return list(self._run(self.client.pubsub_channels, pattern or "*"))

    # -- the reader greenlet -------------------------------------------------------------
    def _start_reader(self) -> None:
        if self._reader is None or self._reader.dead:
            self._reader = gevent.spawn(self._read_forever)

    def _read_forever(self) -> None:
        backoff = 0.05
        while not self._closed:
            try:
                if self._broken:
                    self._resubscribe()
                    backoff = 0.05
                self._read_once()
            except _REDIS_DOWN as exc:
                self._connection_lost(exc)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                # Never let the only reader of this process die: a bug here would silently stop
                # every room from hearing its IPC. Log, start over on a fresh connection.
                log.exception("presence: pub/sub reader for %s failed; reconnecting", self.safe_url)
                self._broken = True
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _read_once(self) -> None:
        pubsub = self._pubsub
        if not self._callbacks or pubsub is None or not pubsub.subscribed:
            # Nothing to read yet: park on our own event, which subscribe() sets, rather than
            # in redis-py's wait for its first subscription.
            self._wake.clear()
            self._wake.wait(self._poll_interval)
            return
        message = pubsub.get_message(timeout=self._poll_interval)
        if message is not None:
            self._dispatch(message)

    def _connection_lost(self, exc: BaseException) -> None:
        if not self._broken:
            log.warning(
                "presence: pub/sub connection to %s lost (%s); resubscribing %d channel(s) "
                "when it is back",
                self.safe_url,
                exc,
                len(self._callbacks),
            )
        self._broken = True

    def _resubscribe(self) -> None:
        """Start again on a fresh connection with every channel this process listens to."""
        with self._pubsub_lock:
            pubsub = self._pubsub_connection()
            pubsub.reset()
            channels = list(self._callbacks)
            if channels:
                pubsub.subscribe(*channels)
            self._broken = False
        log.warning(
            "presence: pub/sub connection to %s re-established; resubscribed %d channel(s)",
            self.safe_url,
            len(channels),
        )

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = _text(message.get("channel"))
        if kind == "subscribe":
            confirmed = self._confirmed.get(channel)
            if confirmed is not None:
                confirmed.set()
            return
        if kind != "message":
            return
        callbacks = self._callbacks.get(channel)
        if not callbacks:
            return
        try:
            payload = unpack(message["data"])
        except Exception as exc:
            log.warning(
                "presence: skipped a malformed message on channel %r from %s: %s",
                channel,
                self.safe_url,
                exc,
            )
            return
        for callback in list(callbacks):
            try:
                callback(payload)
            except Exception:
                log.exception("presence: callback %r for channel %r raised", callback, channel)

    # -- keys ----------------------------------------------------------------------------
    def set(self, key: str, value: str) -> None:
        self._run(self.client.set, key, value)

    def setex(self, key: str, value: str, seconds: float) -> None:
        self._run(self.client.set, key, value, px=_ms(seconds))

    def get(self, key: str) -> str | None:
        return self._run(self.client.get, key)

    def delete(self, key: str) -> None:
        self._run(self.client.delete, key)

    def exists(self, key: str) -> bool:
        return bool(self._run(self.client.exists, key))

    def setnx_ex(self, key: str, value: str, seconds: float) -> bool:
        return bool(self._run(self.client.set, key, value, nx=True, px=_ms(seconds)))

    def claim(self, key: str, value: str, seconds: float) -> bool:
        if self._claim_script is None:
            self._claim_script = self.client.register_script(_CLAIM)
        return bool(self._run(self._claim_script, keys=[key], args=[value, _ms(seconds)]))

    def delete_if(self, key: str, value: str) -> bool:
        if self._delete_if_script is None:
            self._delete_if_script = self.client.register_script(_DELETE_IF)
        return bool(self._run(self._delete_if_script, keys=[key], args=[value]))

    def extend_if(self, key: str, value: str, seconds: float) -> bool:
        if self._extend_if_script is None:
            self._extend_if_script = self.client.register_script(_EXTEND_IF)
        return bool(self._run(self._extend_if_script, keys=[key], args=[value, _ms(seconds)]))

    def expire(self, key: str, seconds: float) -> None:
        self._run(self.client.pexpire, key, _ms(seconds))

    def incr(self, key: str) -> int:
        return self._run(self.client.incr, key)

    def decr(self, key: str) -> int:
        return self._run(self.client.decr, key)

    # -- sets ----------------------------------------------------------------------------
    def sadd(self, key: str, value: str) -> None:
        self._run(self.client.sadd, key, value)

    def smembers(self, key: str) -> set[str]:
        return set(self._run(self.client.smembers, key))

    def sismember(self, key: str, value: str) -> bool:
        return bool(self._run(self.client.sismember, key, value))

    def srem(self, key: str, value: str) -> None:
        self._run(self.client.srem, key, value)

    def scard(self, key: str) -> int:
        return self._run(self.client.scard, key)

    def sinter(self, *keys: str) -> set[str]:
        return set(self._run(self.client.sinter, list(keys))) if keys else set()

    # -- hashes --------------------------------------------------------------------------
    def hset(self, key: str, field: str, value: str) -> None:
        self._run(self.client.hset, key, field, value)

    def hget(self, key: str, field: str) -> str | None:
        return self._run(self.client.hget, key, field)

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self._run(self.client.hgetall, key))

    def hdel(self, key: str, field: str) -> bool:
        return bool(self._run(self.client.hdel, key, field))

    def hlen(self, key: str) -> int:
        return self._run(self.client.hlen, key)

    def hincrby(self, key: str, field: str, amount: int = 1) -> int:
        return self._run(self.client.hincrby, key, field, amount)

    def hincrbyex(self, key: str, field: str, amount: int, seconds: float) -> int:
        if self._hincrbyex_script is None:
            self._hincrbyex_script = self.client.register_script(_HINCRBYEX)
        return int(
            self._run(self._hincrbyex_script, keys=[key], args=[field, amount, _ms(seconds)])
        )

    # -- lists ---------------------------------------------------------------------------
    def lpush(self, key: str, *values: str) -> int:
        return self._run(self.client.lpush, key, *values)

    def rpush(self, key: str, *values: str) -> int:
        return self._run(self.client.rpush, key, *values)

    def lpop(self, key: str) -> str | None:
        return self._run(self.client.lpop, key)

    def rpop(self, key: str) -> str | None:
        return self._run(self.client.rpop, key)

    def llen(self, key: str) -> int:
        return self._run(self.client.llen, key)

    def brpop(self, *keys: str, timeout: float = 0) -> tuple[str, str] | None:
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            remaining = _BLOCK_SLICE if deadline is None else deadline - time.monotonic()
            block = min(_BLOCK_SLICE, max(remaining, 0.01))
            found = self._run(self.client.brpop, list(keys), timeout=block)
            if found is not None:
                return found[0], found[1]
            if deadline is not None and time.monotonic() >= deadline:
                return None

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop the reader and drop both pools.

        The reader is killed rather than awaited: it may sit in ``get_message`` for up to
        ``poll_interval``, and the connection it would leave half-read is discarded here anyway.
        """
        self._closed = True
        self._wake.set()
        if self._reader is not None and gevent.getcurrent() is not self._reader:
            self._reader.kill(timeout=self._socket_timeout)
        self._callbacks.clear()
        with self._pubsub_lock:
            if self._pubsub is not None:
                self._pubsub.reset()
        for client in (self._client, self._pubsub_client):
            if client is not None:
                client.connection_pool.disconnect()


_HINCRBYEX = """
local value = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return value
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
