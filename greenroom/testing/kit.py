"""A Server booted inside the test process, and the waits a room test needs.

The server listens on a free loopback port and clients connect over real sockets: a test goes
through matchmaking, the wire protocol and the room's line of execution exactly as a player
does, at the cost of a millisecond or so per client. Every wait is on an event (a frame, a
reply, the room running a call), never a sleep.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gevent.event import Event

from ..client import Client
from ..client import Room as ClientRoom
from ..in_room import call_in_room
from ..room import Room

T = TypeVar("T")


@dataclass
class Response:
    """An HTTP answer of the test server (``TestServer.get`` / ``post``)."""

    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


class TestServer:
    """A running Server and the clients the test opened through it."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, server: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = server
        self.wsgi_server = server.listen(host, port)
        self.host = host
        self.port: int = self.wsgi_server.server_port
        self.endpoint = f"ws://{host}:{self.port}"
        self.http_url = f"http://{host}:{self.port}"
        self._rooms: list[ClientRoom] = []

    @property
    def matchmaker(self) -> Any:
        return self.server.matchmaker

    @property
    def rooms(self) -> list[Room]:
        """The server-side rooms of this process."""
        return list(self.server.matchmaker.rooms.values())

    # -- clients ---------------------------------------------------------------------------
    def client(self, **options: Any) -> Client:
        """A client of this server; state is decoded (``room.state`` is a dict) unless
        ``state_decoder`` says otherwise."""
        if "state_decoder" not in options:
            from ..schema import StateDecoder

            options["state_decoder"] = StateDecoder
        options.setdefault("dialect", self.server.dialect)
        return Client(self.endpoint, **options)

    def connect(self, room: str | Room | ClientRoom, options: dict[str, Any] | None = None, *,
                method: str = "join_or_create", timeout: float = 10.0,
                **client_options: Any) -> ClientRoom:
        """Join ``room`` and return the joined client room (dropped when the test ends).

        ``room`` is a room name (joined with ``method``: ``join_or_create`` by default,
        ``create``, ``join``), a server-side Room, or another client's room: those two are
        joined by id. ``client_options`` go to the Client (``dialect``, ``auth_token``...).
        """
        client = self.client(**client_options)
        if isinstance(room, (Room, ClientRoom)):
            joined = client.join_by_id(room.room_id, options, timeout)
        else:
            joined = getattr(client, method)(room, options, timeout)
        if len(self._rooms) >= 64:  # a long test (the soak) must not keep every room it closed
            self._rooms = [kept for kept in self._rooms if not kept.closed]
        self._rooms.append(joined)
        return joined

    # -- rooms -----------------------------------------------------------------------------
    def create_room(self, name: str, options: dict[str, Any] | None = None) -> Room:
        """Create a room without a client, as a lobby would; returns the server-side Room."""
        listing = self.matchmaker.create_room(name, options)
        return self.matchmaker.get_room(listing.room_id)

    def room_of(self, client_room: ClientRoom) -> Room:
        """The server-side Room a client is in."""
        room = self.matchmaker.get_room(client_room.room_id)
        if room is None:
            raise LookupError(f"room {client_room.room_id} is not on this server (disposed?)")
        return room

    def in_room(self, room: Room, fn: Callable[..., T], *args: Any, timeout: float = 5.0) -> T:
        """``fn(*args)`` in the room's line of execution, after every event it already had."""
        return call_in_room(room, fn, *args, timeout=timeout)

    def sync(self, client_room: ClientRoom, timeout: float = 5.0) -> Room:
        """Return once the room has handled everything ``client_room`` sent before this call.

        A PING follows the client's messages on its socket and the server answers it as it
        reads it, so once the reply is back every earlier message is queued in the room; a call
        run in the room then comes after them. Returns the server-side Room.
        """
        client_room.ping(timeout)
        room = self.room_of(client_room)
        call_in_room(room, lambda: None, timeout=timeout)
        return room

    def wait_for_dispose(self, room: Room, timeout: float = 5.0) -> None:
        """Wait until ``room`` is disposed (at once if it already is)."""
        if self.matchmaker.get_room(room.room_id) is not room:
            return
        disposed = Event()
        hook = room.on_dispose

        def on_dispose() -> None:
            try:
                hook()
            finally:
                disposed.set()

        room.on_dispose = on_dispose  # type: ignore[method-assign]
        if not disposed.wait(timeout):
            raise TimeoutError(f"room {room.room_id} not disposed within {timeout:g}s")

    @staticmethod
    def wait_for_next_patch(client_room: ClientRoom, timeout: float = 5.0) -> Any:
        """The client's state after its next state frame."""
        version = client_room.state_version
        return client_room.wait_for_state(lambda _: client_room.state_version > version, timeout)

    # -- HTTP ------------------------------------------------------------------------------
    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Response:
        data = b"" if body is None else json.dumps(body).encode()
        return self.request("POST", path, data, {"Content-Type": "application/json", **(headers or {})})

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Response(response.status, dict(response.getheaders()), response.read())
        finally:
            conn.close()

    # -- the end ---------------------------------------------------------------------------
    def shutdown(self, timeout: float = 5.0) -> None:
        """Drop the clients still open, then shut the server down."""
        for joined in self._rooms:
            if not joined.closed:
                joined.drop()
        self._rooms.clear()
        self.server.shutdown(timeout)

    def __enter__(self) -> TestServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def boot(server: Any, host: str = "127.0.0.1", port: int = 0) -> TestServer:
    """Serve ``server`` on a free port of ``host``; use as a context manager or call
    ``shutdown()``."""
    return TestServer(server, host, port)
