"""Room listings in Redis, indexed so a query reads only the listings of its room name.

Colyseus' Redis driver keeps every listing in one hash and decodes all of them on every query;
with many rooms each joinOrCreate gets slower. Here (``P`` is the key prefix):

* ``P listing:<room_id>`` hash: one field per RoomListing attribute, each JSON-encoded;
* ``P name:<name>`` sorted set of that name's room ids, scored by creation time;
* ``P avail:<name>`` the same for the rooms a matchmaker may fill (not locked, not private,
  not full), kept in step by every write, so joinOrCreate never even looks at full rooms;
* ``P proc:<process_id>`` set, for ``renew`` and ``cleanup``; ``P all`` for name-less queries.

Every write is one Lua script (atomic: the indexes never disagree with the listing). Queries
are a Lua script too: filters, lease check and sort run inside Redis over one index; only the
listings returned cross the network. Redis itself deletes a listing ``retention`` seconds after
its lease ran out (a crashed owner's debris); queries drop index entries left dangling.
Not for Redis Cluster: scripts touch keys derived inside them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..metrics import record
from ..presence import redact_url
from ..redis_options import pool_options
from .base import Driver, DriverUnavailable, SortSpec
from .listing import RoomListing
from .local import check_changes, check_sort

log = logging.getLogger(__name__)

_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)
FIELDS = tuple(RoomListing.__dataclass_fields__)

_LIB = r"""
local P = ARGV[1]

local function jget(key, field)
  local raw = redis.call('HGET', key, field)
  if not raw then return nil end
  local ok, value = pcall(cjson.decode, raw)
  if not ok or value == cjson.null then return nil end
  return value
end

local function available(key)
  local v = redis.call('HMGET', key, 'locked', 'private', 'clients', 'max_clients')
  if v[1] == 'true' or v[2] == 'true' then return false end
  if not v[4] or v[4] == 'null' then return true end
  local clients, max = tonumber(v[3]), tonumber(v[4])
  return clients ~= nil and max ~= nil and clients < max
end

local function set_expiry(key)
  local lease = tonumber(redis.call('HGET', key, 'lease_expires_at') or '')
  if lease then
    redis.call('PEXPIREAT', key, math.floor((lease + tonumber(ARGV[2])) * 1000))
  else
    redis.call('PERSIST', key)
  end
end

local function index(id, key)
  local name, pid = jget(key, 'name'), jget(key, 'process_id')
  local created = tonumber(redis.call('HGET', key, 'created_at')) or 0
  redis.call('ZADD', P .. 'name:' .. name, created, id)
  redis.call('ZADD', P .. 'all', created, id)
  redis.call('SADD', P .. 'proc:' .. pid, id)
  if available(key) then
    redis.call('ZADD', P .. 'avail:' .. name, created, id)
  else
    redis.call('ZREM', P .. 'avail:' .. name, id)
  end
  set_expiry(key)
end

local function unindex(id, key)
  local name, pid = jget(key, 'name'), jget(key, 'process_id')
  if name then
    redis.call('ZREM', P .. 'name:' .. name, id)
    redis.call('ZREM', P .. 'avail:' .. name, id)
  end
  if pid then redis.call('SREM', P .. 'proc:' .. pid, id) end
  redis.call('ZREM', P .. 'all', id)
end
"""

# ARGV: prefix, retention, room_id, field, value, ...
_REGISTER = (
    _LIB
    + r"""
local id = ARGV[3]
local key = P .. 'listing:' .. id
if redis.call('EXISTS', key) == 1 then
  -- the very same listing again is a retried call whose reply was lost (redis-py retries once
  -- on a dropped connection): it is done already. Anything else is a second room with this id.
  -- Its lease is not compared: the owner's heartbeat may have renewed it in between.
  if redis.call('HLEN', key) * 2 ~= #ARGV - 3 then return 0 end
  for i = 4, #ARGV, 2 do
    if ARGV[i] ~= 'lease_expires_at' and redis.call('HGET', key, ARGV[i]) ~= ARGV[i + 1] then
      return 0
    end
  end
  return 1
end
redis.call('HSET', key, unpack(ARGV, 4))
index(id, key)
return 1
"""
)

_UPDATE = (
    _LIB
    + r"""
local id = ARGV[3]
local key = P .. 'listing:' .. id
if redis.call('EXISTS', key) == 0 then return 0 end
-- A seat count, lock or metadata change (nearly every update) moves the listing in or out of
-- its name's availability index only; the other indexes are keyed on what it keeps for life.
local keyed, lease = false, false
for i = 4, #ARGV, 2 do
  local field = ARGV[i]
  if field == 'name' or field == 'process_id' or field == 'created_at' then keyed = true end
  if field == 'lease_expires_at' then lease = true end
end
if keyed then
  unindex(id, key)
  redis.call('HSET', key, unpack(ARGV, 4))
  index(id, key)
  return 1
end
redis.call('HSET', key, unpack(ARGV, 4))  -- HSET keeps the key's expiry
local name = jget(key, 'name')
if name then
  if available(key) then
    local created = tonumber(redis.call('HGET', key, 'created_at')) or 0
    redis.call('ZADD', P .. 'avail:' .. name, created, id)
  else
    redis.call('ZREM', P .. 'avail:' .. name, id)
  end
end
if lease then set_expiry(key) end
return 1
"""
)

_REMOVE = (
    _LIB
    + r"""
local id = ARGV[3]
local key = P .. 'listing:' .. id
if redis.call('EXISTS', key) == 0 then return 0 end
unindex(id, key)
redis.call('DEL', key)
return 1
"""
)

# ARGV: prefix, retention, process_id, lease (JSON number)
_RENEW = (
    _LIB
    + r"""
local ids = redis.call('SMEMBERS', P .. 'proc:' .. ARGV[3])
local renewed = 0
for _, id in ipairs(ids) do
  local key = P .. 'listing:' .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'lease_expires_at', ARGV[4])
    set_expiry(key)
    renewed = renewed + 1
  else
    redis.call('SREM', P .. 'proc:' .. ARGV[3], id)
  end
end
return renewed
"""
)

_CLEANUP = (
    _LIB
    + r"""
local ids = redis.call('SMEMBERS', P .. 'proc:' .. ARGV[3])
local removed = 0
for _, id in ipairs(ids) do
  local key = P .. 'listing:' .. id
  if redis.call('EXISTS', key) == 1 then
    unindex(id, key)
    redis.call('DEL', key)
    removed = removed + 1
  else
    redis.call('ZREM', P .. 'all', id)
  end
end
redis.call('DEL', P .. 'proc:' .. ARGV[3])
return removed
"""
)

# ARGV: prefix, retention, index key suffix, check availability ('1'/'0'), now,
#       filters JSON ('' = none), sort JSON ('' = none), limit (0 = none)
# Returns {listings as flat HGETALL arrays..., ids of malformed listings}.
_QUERY = (
    _LIB
    + r"""
local index_key = P .. ARGV[3]
local check_available = ARGV[4] == '1'
local now = tonumber(ARGV[5])
local filters = ARGV[6] ~= '' and cjson.decode(ARGV[6]) or nil
local sort = ARGV[7] ~= '' and cjson.decode(ARGV[7]) or nil
local limit = tonumber(ARGV[8])
local malformed = {}

local function same(want, have)
  if want == cjson.null then return have == nil or have == cjson.null end
  if type(want) == 'table' then
    return type(have) == 'table' and cjson.encode(want) == cjson.encode(have)
  end
  return want == have
end

local function matches(id, key)
  if not filters then return true end
  local raw = redis.call('HGET', key, 'filters')
  local ok, have = pcall(cjson.decode, raw or '')
  if not ok or type(have) ~= 'table' then
    table.insert(malformed, id)
    return false
  end
  for k, want in pairs(filters) do
    if not same(want, have[k]) then return false end
  end
  return true
end

local function leased(id, key)
  local raw = redis.call('HGET', key, 'lease_expires_at')
  if raw == 'null' then return true end
  local lease = tonumber(raw or '')
  if lease == nil then
    table.insert(malformed, id)
    return false
  end
  return lease > now
end

local function sort_value(key, name)
  local meta = string.match(name, '^metadata%.(.+)$')
  local value
  if meta then
    local m = jget(key, 'metadata')
    if type(m) == 'table' then value = m[meta] end
  else
    value = jget(key, name)
  end
  if value == nil or value == cjson.null then return 0, 0 end
  local t = type(value)
  if t == 'number' then return 1, value end
  if t == 'string' then return 2, value end
  if t == 'boolean' then return 4, value and 1 or 0 end
  return 3, 0
end

local rows = {}
local ids = redis.call('ZRANGE', index_key, 0, -1, 'WITHSCORES')
for i = 1, #ids, 2 do
  local id, created = ids[i], tonumber(ids[i + 1])
  local key = P .. 'listing:' .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', index_key, id)
  elseif leased(id, key) and (not check_available or available(key)) and matches(id, key) then
    local row = {id = id, key = key, created = created, ranks = {}, values = {}}
    if sort then
      for s, spec in ipairs(sort) do row.ranks[s], row.values[s] = sort_value(key, spec[1]) end
    end
    table.insert(rows, row)
    if not sort and limit > 0 and #rows >= limit then break end
  end
end

if sort then
  table.sort(rows, function(a, b)
    for s, spec in ipairs(sort) do
      local ra, rb, va, vb = a.ranks[s], b.ranks[s], a.values[s], b.values[s]
      if ra ~= rb or va ~= vb then
        local less
        if ra ~= rb then less = ra < rb else less = va < vb end
        if spec[2] < 0 then return not less end
        return less
      end
    end
    if a.created ~= b.created then return a.created < b.created end
    return a.id < b.id
  end)
end

local out = {}
local n = #rows
if limit > 0 and limit < n then n = limit end
for i = 1, n do table.insert(out, redis.call('HGETALL', rows[i].key)) end
table.insert(out, malformed)
return out
"""
)


class RedisDriver(Driver):
    def __init__(
        self,
        url_or_client: str | redis.Redis | Any,
        *,
        prefix: str = "greenroom:rooms:",
        retention: float = 300.0,
        max_connections: int = 64,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        """``url_or_client``: a redis:// URL, a redis.Redis, or a RedisPresence to share its pool.

        ``retention``: how long after its lease ran out Redis keeps a listing before deleting it.
        """
        self.prefix = prefix
        self.retention = retention
        self._client: redis.Redis | None = None
        self._url: str | None = None
        self._scripts: dict[str, Any] = {}
        self._pool_options = {
            "max_connections": max_connections,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        if isinstance(url_or_client, str):
            self._url = url_or_client
        elif isinstance(url_or_client, redis.Redis):
            self._client = url_or_client
        elif hasattr(url_or_client, "client"):  # a RedisPresence
            self._url = getattr(url_or_client, "url", None)
            self._client = url_or_client.client
        else:
            raise TypeError(f"expected a Redis URL or client, not {type(url_or_client).__name__}")
        self._owns_client = self._client is None  # a shared pool is its owner's to close
        self.safe_url = redact_url(self._url) if self._url else repr(self._client)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            pool = redis.BlockingConnectionPool.from_url(
                self._url,
                decode_responses=True,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
                **pool_options(),
                **self._pool_options,
            )
            self._client = redis.Redis(connection_pool=pool)
        return self._client

    @contextmanager
    def _available(self, what: str) -> Iterator[None]:
        try:
            yield
        except _REDIS_DOWN as exc:
            record.active.backend_error("driver")
            raise DriverUnavailable(
                f"Redis at {self.safe_url} unavailable ({what}): {exc}"
            ) from exc

    def _script(self, name: str, source: str, *args: Any) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(source)
        with self._available(name):
            return script(args=[self.prefix, self.retention, *args])

    def ping(self) -> None:
        """Raise DriverUnavailable unless the server answers: a start-up check."""
        with self._available("ping"):
            self.client.ping()

    # -- writes --------------------------------------------------------------------------
    def register(self, listing: RoomListing) -> None:
        listing.validate()
        if not self._script("register", _REGISTER, listing.room_id, *_encode(listing.to_dict())):
            raise ValueError(f"room {listing.room_id} is already listed")

    def update(self, room_id: str, **changes: Any) -> None:
        check_changes(changes)
        if changes:
            self._script("update", _UPDATE, room_id, *_encode(changes))

    def remove(self, room_id: str) -> None:
        self._script("remove", _REMOVE, room_id)

    def renew(self, process_id: str, ttl: float) -> int:
        return int(self._script("renew", _RENEW, process_id, json.dumps(time.time() + ttl)))

    def cleanup(self, process_id: str) -> int:
        return int(self._script("cleanup", _CLEANUP, process_id))

    def clear(self) -> None:
        with self._available("clear"):
            batch = []
            for key in self.client.scan_iter(match=f"{self.prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self.client.delete(*batch)
                    batch = []
            if batch:
                self.client.delete(*batch)

    # -- reads ---------------------------------------------------------------------------
    def get(self, room_id: str) -> RoomListing | None:
        with self._available("get"):
            fields = self.client.hgetall(f"{self.prefix}listing:{room_id}")
        if not fields:
            return None
        listing = self._decode(room_id, fields)
        return None if listing is None or listing.is_expired() else listing

    def query(
        self,
        name: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        available: bool = False,
        sort: SortSpec = (),
        limit: int | None = None,
    ) -> list[RoomListing]:
        sort = check_sort(sort)
        if limit is not None and limit <= 0:
            return []
        if name is None:
            index, check_available = "all", available
        else:
            index, check_available = f"{'avail' if available else 'name'}:{name}", False
        reply = self._script(
            "query",
            _QUERY,
            index,
            "1" if check_available else "0",
            repr(time.time()),
            json.dumps(dict(filters)) if filters else "",
            json.dumps([[key, direction] for key, direction in sort]) if sort else "",
            limit or 0,
        )
        *rows, malformed = reply
        for room_id in malformed:
            self._skipped(_text(room_id), "unreadable lease or filters")
        return [listing for row in rows if (listing := self._decode_row(row)) is not None]

    def _decode_row(self, row: list[Any]) -> RoomListing | None:
        fields = {_text(k): v for k, v in zip(row[::2], row[1::2], strict=True)}
        try:
            room_id = str(json.loads(fields.get("room_id", '"?"')))
        except ValueError:
            room_id = "?"
        return self._decode(room_id, fields)

    def _decode(self, room_id: str, fields: Mapping[Any, Any]) -> RoomListing | None:
        try:
            data = {_text(k): json.loads(v) for k, v in fields.items()}
            return RoomListing.from_dict(data).validate()
        except (ValueError, TypeError) as exc:
            self._skipped(room_id, str(exc))
            return None

    def _skipped(self, room_id: str, reason: str) -> None:
        log.warning(
            "driver: skipped malformed room listing %s in Redis at %s: %s",
            room_id,
            self.safe_url,
            reason,
        )

    def close(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.connection_pool.disconnect()


def _encode(values: Mapping[str, Any]) -> list[str]:
    flat: list[str] = []
    for key, value in values.items():
        flat += [key, json.dumps(value, separators=(",", ":"))]
    return flat


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
