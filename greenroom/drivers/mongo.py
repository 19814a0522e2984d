"""Room listings in MongoDB, as a MongoEngine document queried server-side with indexes.

Everything a query asks (name, filters, availability, lease, sort, limit) is evaluated by
MongoDB: only the listings returned cross the network. Two derived fields make every
joinOrCreate one equality-plus-range on an index, with no predicate left outside it (some
servers, SecantusDB among them, fall back to a collection scan for anything else, and a hint
there is slower still):

* ``open``: not locked, not private and not full. Recomputed by the same atomic pipeline update
  that changes ``clients``, ``maxClients``, ``locked`` or ``private`` (a ``$expr`` comparing
  two fields could not use an index).
* ``filterKeys``: the canonical JSON of every subset of the listing's filters (a room created
  with mode=duel, map=dust is found by {}, {mode}, {map} and {mode, map}), so the filters of
  any query are one equality on this multikey field. A filter asking for ``None`` ("the room
  has no such option") is the one shape checked outside the index.

Listings without a lease are stored with a lease ending in year 9999, so that every query has
the same indexable shape ``leaseExpiresAt > now`` and the TTL index deletes a crashed owner's
listings ``RETENTION`` seconds after their lease ran out.

The connection uses the MongoEngine alias ``greenroom``, so an application's own default
connection (and its database) is left alone.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

import mongoengine as me
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)
from pymongo.uri_parser import parse_uri

from ..metrics import record
from ..presence import redact_url
from .base import Driver, DriverUnavailable, SortSpec
from .listing import RoomListing
from .local import check_changes, check_sort, is_available

log = logging.getLogger(__name__)
T = TypeVar("T")

ALIAS = "greenroom"
OPEN_INDEX = "greenroom_open"
NAME_INDEX = "greenroom_name"
RETENTION = 300
# 2**8 subsets per listing at most; Colyseus' filterBy rarely names more than three options.
MAX_FILTERS = 8
FOREVER = datetime(9999, 12, 31, tzinfo=timezone.utc)

DB_FIELDS = {
    "name": "name",
    "room_id": "roomId",
    "process_id": "processId",
    "clients": "clients",
    "max_clients": "maxClients",
    "locked": "locked",
    "private": "private",
    "unlisted": "unlisted",
    "metadata": "metadata",
    "filters": "filters",
    "public_address": "publicAddress",
    "created_at": "createdAt",
    "lease_expires_at": "leaseExpiresAt",
}


class RoomListingDocument(me.Document):
    """The listing as stored; the matchmaker works with the RoomListing dataclass."""

    name = me.StringField(required=True)
    room_id = me.StringField(db_field="roomId", required=True, unique=True)
    process_id = me.StringField(db_field="processId", required=True)
    clients = me.IntField(default=0, min_value=0)
    max_clients = me.IntField(db_field="maxClients", null=True)
    open = me.BooleanField(default=True)
    filter_keys = me.ListField(me.StringField(), db_field="filterKeys")
    locked = me.BooleanField(default=False)
    private = me.BooleanField(default=False)
    unlisted = me.BooleanField(default=False)
    metadata = me.DictField()
    filters = me.DictField()
    public_address = me.StringField(db_field="publicAddress", null=True)
    created_at = me.DateTimeField(db_field="createdAt", required=True)
    lease_expires_at = me.DateTimeField(db_field="leaseExpiresAt", required=True)

    meta = {
        "db_alias": ALIAS,
        "collection": "room_listings",
        "auto_create_index": False,  # created once by the driver, not on every first save
        "indexes": [
            # Equality fields first, the lease range last: a query is one index range.
            {"fields": ["name", "open", "filter_keys", "lease_expires_at"], "name": OPEN_INDEX},
            {"fields": ["name", "filter_keys", "lease_expires_at"], "name": NAME_INDEX},
            {"fields": ["process_id"], "name": "greenroom_process"},
            {
                "fields": ["lease_expires_at"],
                "name": "greenroom_lease_ttl",
                "expireAfterSeconds": RETENTION,
            },
        ],
    }


_connected: dict[str, str] = {}


class MongoDriver(Driver):
    def __init__(
        self,
        uri: str,
        *,
        server_selection_timeout: float = 3.0,
        socket_timeout: float = 10.0,
        outage_cooldown: float = 1.0,
    ) -> None:
        """``server_selection_timeout`` bounds how long a call waits for an unreachable server
        before raising DriverUnavailable (pymongo's default of 30 s would hang joins).

        For ``outage_cooldown`` seconds after a call found no server, calls fail at once with
        the same error instead of each waiting that timeout again: the joins queued behind the
        creation lock during an outage got their 503 one server-selection timeout after the
        other (a queue of seconds, then the "busy" 503), and now get it in milliseconds.
        """
        self.uri = uri
        self._cooldown = outage_cooldown
        self._down_until = 0.0  # monotonic; before it, calls fail fast
        self._down_reason = ""
        self.safe_url = redact_url(uri)
        self._options = {
            "serverSelectionTimeoutMS": int(server_selection_timeout * 1000),
            "connectTimeoutMS": int(min(server_selection_timeout, 5.0) * 1000),
            "socketTimeoutMS": int(socket_timeout * 1000),
        }
        self._ready = False

    # -- connection ----------------------------------------------------------------------
    @property
    def collection(self) -> Any:
        """The pymongo collection, connecting on first use (after fork: docs/architecture.md, "Boot order")."""
        if _connected.get(ALIAS) != self.uri:
            self._connect()
        collection = RoomListingDocument._get_collection()
        if not self._ready:
            with self._available("create indexes"):
                RoomListingDocument.ensure_indexes()
            self._ready = True
        return collection

    def _connect(self) -> None:
        if ALIAS in _connected:
            me.disconnect(ALIAS)
        database = parse_uri(self.uri).get("database") or "greenroom"
        me.connect(
            db=database,
            alias=ALIAS,
            host=self.uri,
            tz_aware=True,
            uuidRepresentation="standard",
            **self._options,
        )
        _connected[ALIAS] = self.uri

    @contextmanager
    def _available(self, what: str) -> Iterator[None]:
        remaining = self._down_until - time.monotonic()
        if remaining > 0:
            record.active.backend_error("driver")
            raise DriverUnavailable(f"MongoDB at {self.safe_url} unavailable ({what}): "
                                    f"{self._down_reason} (asked again in {remaining:.1f} s)")
        try:
            yield
        except ConnectionFailure as exc:
            record.active.backend_error("driver")
            if isinstance(exc, ServerSelectionTimeoutError):
                self._down_until = time.monotonic() + self._cooldown
                self._down_reason = str(exc).split(", Timeout:")[0]
            raise DriverUnavailable(
                f"MongoDB at {self.safe_url} unavailable ({what}): {exc}"
            ) from exc

    def _once_more(self, what: str, operation: Callable[[], T]) -> T:
        """Run ``operation``, again once if its connection was lost under it.

        pymongo retries a write only on a replica set; on a standalone server (and on
        SecantusDB) one dropped connection, a restarted load balancer's say, made the room
        being created answer 503. Only a lost connection is retried: a server not found or
        not answering in time is an outage, and waiting twice for it would only delay the 503.
        Every operation here is idempotent, or (``register``) recognises its own first write.
        """
        with self._available(what):
            try:
                return operation()
            except (ServerSelectionTimeoutError, NetworkTimeout):
                raise
            except AutoReconnect as exc:
                log.info("MongoDB at %s: connection lost during %s (%s); retrying once",
                         self.safe_url, what, exc)
                return operation()

    def ping(self) -> None:
        """Raise DriverUnavailable unless the server answers: a start-up check."""
        collection = self.collection
        with self._available("ping"):
            collection.database.command("ping")

    # -- writes --------------------------------------------------------------------------
    def register(self, listing: RoomListing) -> None:
        listing.validate()
        document = RoomListingDocument(
            **{
                k: v
                for k, v in listing.to_dict().items()
                if k not in ("created_at", "lease_expires_at")
            },
            created_at=_date(listing.created_at),
            lease_expires_at=_lease_date(listing.lease_expires_at),
            open=is_available(listing),
            filter_keys=filter_keys(listing.filters),
        )
        document.validate()
        collection = self.collection
        fields = document.to_mongo().to_dict()
        attempts = 0

        def insert() -> None:
            nonlocal attempts
            attempts += 1
            try:
                collection.insert_one(dict(fields))
            except DuplicateKeyError:
                if attempts > 1 and self._listed_by(listing.room_id, listing.process_id):
                    return  # our first insert landed; only its reply was lost
                raise ValueError(f"room {listing.room_id} is already listed") from None

        self._once_more("register", insert)

    def _listed_by(self, room_id: str, process_id: str) -> bool:
        """Whether ``room_id`` is listed by ``process_id``: room ids are drawn at random by
        their process, so that listing can only be the process's own earlier write."""
        stored = self.collection.find_one({"roomId": {"$eq": room_id}}, {"processId": 1})
        return stored is not None and stored.get("processId") == process_id

    def update(self, room_id: str, **changes: Any) -> None:
        check_changes(changes)
        if not changes:
            return
        values = {
            DB_FIELDS[key]: {"$literal": _to_db(key, value)} for key, value in changes.items()
        }
        if "filters" in changes:
            values["filterKeys"] = {"$literal": filter_keys(changes["filters"])}
        pipeline = [{"$set": values}, {"$set": {"open": _OPEN}}]
        collection = self.collection
        self._once_more("update", lambda: collection.update_one({"roomId": {"$eq": room_id}},
                                                                pipeline))

    def remove(self, room_id: str) -> None:
        collection = self.collection
        self._once_more("remove", lambda: collection.delete_one({"roomId": {"$eq": room_id}}))

    def renew(self, process_id: str, ttl: float) -> int:
        collection = self.collection
        result = self._once_more("renew", lambda: collection.update_many(
            {"processId": {"$eq": process_id}},
            {"$set": {"leaseExpiresAt": _date(time.time() + ttl)}},
        ))
        return result.matched_count

    def cleanup(self, process_id: str) -> int:
        collection = self.collection
        return self._once_more("cleanup", lambda: collection.delete_many(
            {"processId": {"$eq": process_id}}).deleted_count)

    def clear(self) -> None:
        collection = self.collection
        with self._available("clear"):
            collection.delete_many({})

    # -- reads ---------------------------------------------------------------------------
    def get(self, room_id: str) -> RoomListing | None:
        collection = self.collection
        document = self._once_more("get", lambda: collection.find_one(
            {"roomId": {"$eq": room_id}, "leaseExpiresAt": {"$gt": _date(time.time())}},
            {"_id": 0},
        ))
        return None if document is None else self._decode(document)

    def query(
        self,
        name: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        available: bool = False,
        sort: SortSpec = (),
        limit: int | None = None,
    ) -> list[RoomListing]:
        if limit is not None and limit <= 0:
            return []
        projection = {"_id": 0, "open": 0, "filterKeys": 0}
        collection = self.collection

        def find() -> list[Any]:
            cursor = collection.find(_criteria(name, filters, available), projection)
            cursor = cursor.sort(_sort_spec(sort))
            return list(cursor.limit(limit) if limit is not None else cursor)

        documents = self._once_more("query", find)
        return [
            listing for document in documents if (listing := self._decode(document)) is not None
        ]

    def _decode(self, document: Mapping[str, Any]) -> RoomListing | None:
        try:
            return _listing(document)
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
            log.warning(
                "driver: skipped malformed room listing %r in MongoDB at %s: %s",
                document.get("roomId"),
                self.safe_url,
                exc,
            )
            return None

    def close(self) -> None:
        if _connected.pop(ALIAS, None) is not None:
            me.disconnect(ALIAS)
        self._ready = False


_OPEN = {
    "$and": [
        {"$ne": ["$locked", True]},
        {"$ne": ["$private", True]},
        {
            "$or": [
                {"$eq": [{"$ifNull": ["$maxClients", None]}, None]},
                {"$lt": ["$clients", "$maxClients"]},
            ]
        },
    ]
}


def filter_key(filters: Mapping[str, Any]) -> str:
    """One canonical string per set of (name, value) pairs; 1 and 1.0 are the same value."""
    return json.dumps(
        {key: _canonical(value) for key, value in filters.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def filter_keys(filters: Mapping[str, Any]) -> list[str]:
    """The key of every subset of ``filters`` (pairs whose value is None count as absent)."""
    present = sorted((k, v) for k, v in filters.items() if v is not None)
    if len(present) > MAX_FILTERS:
        raise ValueError(f"a listing may carry at most {MAX_FILTERS} filters, not {len(present)}")
    return [
        filter_key(dict(subset))
        for size in range(len(present) + 1)
        for subset in itertools.combinations(present, size)
    ]


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _criteria(
    name: str | None, filters: Mapping[str, Any] | None, available: bool
) -> dict[str, Any]:
    """The query document: plain equalities and one range, all on one index.

    No client-supplied value reaches MongoDB where it could be read as an operator: filter
    values travel inside the ``filterKeys`` string, and a name must be a string.
    """
    filters = dict(filters or {})
    if any(not isinstance(key, str) or not key for key in filters):
        raise ValueError(f"invalid filter names in {list(filters)!r}")
    criteria: dict[str, Any] = {}
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"room name must be a string, not {type(name).__name__}")
        criteria["name"] = name
    if available:
        criteria["open"] = True
    criteria["filterKeys"] = filter_key({k: v for k, v in filters.items() if v is not None})
    criteria["leaseExpiresAt"] = {"$gt": _date(time.time())}
    for key in (k for k, v in filters.items() if v is None):
        criteria[f"filters.{key}"] = None  # "missing or null": outside the index, and rare
    return criteria


def _sort_spec(sort: SortSpec) -> list[tuple[str, int]]:
    spec = []
    for key, direction in check_sort(sort):
        field = key if key.startswith("metadata.") else DB_FIELDS[key]
        if "$" in field:
            raise ValueError(f"cannot sort room listings by {key!r}")
        spec.append((field, direction))
    # Ties in creation order then room id, as the other drivers.
    spec += [(f, 1) for f in ("createdAt", "roomId") if f not in dict(spec)]
    return spec


def _listing(document: Mapping[str, Any]) -> RoomListing:
    lease = document["leaseExpiresAt"]
    return RoomListing(
        name=document["name"],
        room_id=document["roomId"],
        process_id=document["processId"],
        clients=document.get("clients", 0),
        max_clients=document.get("maxClients"),
        locked=document.get("locked", False),
        private=document.get("private", False),
        unlisted=document.get("unlisted", False),
        metadata=document.get("metadata", {}),
        filters=document.get("filters", {}),
        public_address=document.get("publicAddress"),
        created_at=_timestamp(document["createdAt"]),
        lease_expires_at=None if lease >= FOREVER else _timestamp(lease),
    ).validate()


def _to_db(key: str, value: Any) -> Any:
    if key == "created_at":
        return _date(value)
    if key == "lease_expires_at":
        return _lease_date(value)
    return value


def _date(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def _lease_date(timestamp: float | None) -> datetime:
    return FOREVER if timestamp is None else _date(timestamp)


def _timestamp(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()
