"""Matchmaking over HTTP, then a room: the Python client's entry point."""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from ..protocol.dialect import Dialect
from ..wsclient import (
    DEFAULT_MAX_SIZE,
    open_socket,
)
from .errors import (
    ClientConnectionError,
    ClientTimeout,
    MatchMakeError,
    ProtocolError,
)
from .reader import _remaining
from .room import Room
from .wire import (
    RawStateDecoder,
    SeatReservation,
    StateDecoder,
)

log = logging.getLogger("greenroom.client")


class _HTTPConnection(http.client.HTTPConnection):
    """http.client over a gevent socket, so matchmaking never blocks the hub unpatched."""

    ssl_context: Any = None
    secure = False

    def connect(self) -> None:
        self.sock = open_socket(self.host, self.port, self.timeout, self.secure, self.ssl_context)


class Client:
    """Entry point: matchmaking plus room connections for one server endpoint.

    ``endpoint`` is ``ws://``, ``wss://``, ``http://`` or ``https://`` host[:port] with an
    optional path prefix and query, both put in front of every request as the SDKs do.
    ``state_decoder`` is a zero-argument factory called once per room (default
    :class:`RawStateDecoder`; ``functools.partial(RawStateDecoder, keep=0)`` for load tests).
    ``message_buffer`` caps, per room, the messages kept for :meth:`Room.wait_for_message`
    (oldest dropped first; 0 keeps none). ``headers`` go on matchmaking requests only, as a
    browser cannot put headers on a WebSocket. The client object holds no connection and can
    be shared by many greenlets; a room holds its socket and reader greenlet until it is
    closed, so leave() or drop() rooms you are done with.
    """

    def __init__(self, endpoint: str = "ws://127.0.0.1:2567", *, dialect: Dialect | str = Dialect.V3,
                 auth_token: str | None = None, headers: dict[str, str] | None = None,
                 state_decoder: Callable[[], StateDecoder] | None = None,
                 max_message_size: int | None = DEFAULT_MAX_SIZE, message_buffer: int = 1000,
                 ssl_context: Any = None) -> None:
        parts = urlsplit(endpoint)
        scheme = parts.scheme.lower()
        if scheme not in ("ws", "wss", "http", "https"):
            raise ValueError(f"endpoint must be ws://, wss://, http:// or https://, not {endpoint!r}")
        if not parts.hostname:
            raise ValueError(f"endpoint has no host: {endpoint!r}")
        self.secure = scheme in ("wss", "https")
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.path = parts.path.rstrip("/")
        self.query = parts.query
        self.dialect = Dialect.parse(dialect)
        self.auth_token = auth_token
        self.headers = dict(headers or {})
        self.state_decoder = state_decoder or RawStateDecoder
        self.max_message_size = max_message_size
        self.message_buffer = message_buffer
        self.ssl_context = ssl_context
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        self.netloc = f"{netloc}:{self.port}"
        self.http_base = f"{'https' if self.secure else 'http'}://{self.netloc}{self.path}"
        self.ws_base = f"{'wss' if self.secure else 'ws'}://{self.netloc}{self.path}"

    def __repr__(self) -> str:
        return f"<Client {self.ws_base} {self.dialect.value}>"

    # -------------------------------------------------------------- matchmaking

    def join_or_create(self, name: str, options: dict | None = None, timeout: float = 10.0) -> Room:
        """Matchmake, open the room socket and return once JOIN_ROOM was acknowledged.

        ``timeout`` bounds the whole join (HTTP, upgrade, JOIN_ROOM). Refusals raise
        :class:`MatchMakeError`, whether they come as HTTP errors, as an ERROR frame or as a
        close before JOIN_ROOM; ``create``, ``join`` and ``join_by_id`` behave alike.
        """
        return self._join("joinOrCreate", name, options, timeout)

    def create(self, name: str, options: dict | None = None, timeout: float = 10.0) -> Room:
        return self._join("create", name, options, timeout)

    def join(self, name: str, options: dict | None = None, timeout: float = 10.0) -> Room:
        return self._join("join", name, options, timeout)

    def join_by_id(self, room_id: str, options: dict | None = None, timeout: float = 10.0) -> Room:
        return self._join("joinById", room_id, options, timeout)

    def reconnect(self, reconnection_token: str, timeout: float = 10.0) -> Room:
        """Reclaim a seat with ``room.reconnection_token`` ("roomId:token"), as after a page reload."""
        room_id, _, token = reconnection_token.partition(":")
        if not room_id or not token:
            raise ValueError("reconnection token must look like 'roomId:token' (room.reconnection_token)")
        deadline = time.monotonic() + timeout
        reservation = self.matchmake("reconnect", room_id, {"reconnectionToken": token}, timeout)
        reservation.reconnection_token = token  # the SDKs put the token they posted in the URL (§8)
        return self.consume_seat_reservation(reservation, _remaining(deadline))

    def _join(self, method: str, name: str, options: dict | None, timeout: float) -> Room:
        deadline = time.monotonic() + timeout
        reservation = self.matchmake(method, name, options, timeout)
        return self.consume_seat_reservation(reservation, _remaining(deadline))

    def matchmake(self, method: str, name: str, options: dict | None = None,
                  timeout: float = 10.0) -> SeatReservation:
        """``POST {base}/matchmake/{method}/{name}`` and return the seat reservation.

        Non-2xx answers raise :class:`MatchMakeError` with the body's ``code`` (else the HTTP
        status) and its ``error``/``message`` text.
        """
        path = f"{self.path}/matchmake/{method}/{quote(name, safe='')}"
        if self.query:
            path += f"?{self.query}"
        status, reason, content_type, body = self._post_json(path, {} if options is None else options, timeout)
        url = f"{self.http_base}/matchmake/{method}/{name}"
        data: Any = None
        if "json" in content_type:
            try:
                data = json.loads(body or b"null")
            except ValueError:
                if 200 <= status < 300:
                    raise ProtocolError(f"POST {url}: HTTP {status} with a body that is not JSON: {body[:200]!r}") from None
        if not 200 <= status < 300:
            code: Any = data.get("code") if isinstance(data, dict) else None
            message = None
            if isinstance(data, dict):
                message = data.get("error") or data.get("message")
            raise MatchMakeError(code if isinstance(code, int) else status,
                                 str(message or reason or f"HTTP {status}"))
        if "json" not in content_type:
            raise ProtocolError(f"POST {url}: HTTP {status} with Content-Type {content_type!r}; "
                                "the official clients only read JSON bodies")
        if isinstance(data, dict) and "error" in data and "roomId" not in data:
            # The 0.17/0.18 SDKs would mistake this for a reservation (docs/protocol.md, "Matchmaking"): report it.
            raise MatchMakeError(data.get("code") if isinstance(data.get("code"), int) else status,
                                 f"{data['error']} (sent with HTTP {status}; errors need a non-2xx status)")
        return SeatReservation.from_json(data)

    def _post_json(self, path: str, payload: Any, timeout: float) -> tuple[int, str, str, bytes]:
        body = json.dumps(payload).encode("utf-8")
        headers = {"Accept": "application/json", "Content-Type": "application/json",
                   "Content-Length": str(len(body))}
        if self.auth_token:
            headers["Authorization"] = f"Bearer {self.auth_token}"
        headers.update(self.headers)
        conn = _HTTPConnection(self.host, self.port, timeout=timeout)
        conn.secure = self.secure
        conn.ssl_context = self.ssl_context
        url = f"{self.http_base}{path[len(self.path):]}"
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheader("Content-Type") or "", data
        except TimeoutError:
            raise ClientTimeout(f"no matchmaking response from POST {url} within {timeout} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ClientConnectionError(f"POST {url} failed: {exc!r}") from exc
        finally:
            conn.close()

    # -------------------------------------------------------------- rooms

    def room_url(self, reservation: SeatReservation, extra: dict[str, str] | None = None) -> str:
        """The room socket URL the SDKs would open for ``reservation`` (docs/protocol.md, "Endpoints")."""
        scheme = "wss" if self.secure else "ws"
        base = f"{scheme}://{reservation.public_address}" if reservation.public_address else self.ws_base
        params = {"sessionId": reservation.session_id}
        if reservation.reconnection_token:
            params["reconnectionToken"] = reservation.reconnection_token
        if self.auth_token:
            params["_authToken"] = self.auth_token
        params.update(extra or {})
        query = "&".join(filter(None, (self.query, urlencode(params))))
        return f"{base}/{reservation.process_id}/{reservation.room_id}?{query}"

    def consume_seat_reservation(self, reservation: SeatReservation | dict, timeout: float = 10.0) -> Room:
        """Open the room socket for a reservation and return once JOIN_ROOM was acknowledged."""
        if isinstance(reservation, dict):
            reservation = SeatReservation.from_json(reservation)
        room = Room(self, reservation)
        room._connect(self.room_url(reservation), timeout)
        return room
