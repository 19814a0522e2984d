"""Room sockets handed between the workers of one host, in the handshake, before the 101.

A room socket ``ws://host/[prefix/]{processId}/{roomId}`` may be accepted by any worker of a
cluster. :meth:`HandOff.take` runs in :class:`~greenroom.web.handler.Handler` once the request
head is parsed: when the processId is a sibling's (same cluster, see
:mod:`greenroom.cluster.naming`), the connection's fd and the bytes already read are sent to
that sibling's endpoint and this worker forgets the connection. The owner replays those bytes
through its own handler (:meth:`HandOff._adopt`), which answers the handshake and serves the
WebSocket natively: nothing is proxied per message.

When the processId's endpoint is gone (the worker died, or its generation retired), the room's
current owner is looked up in the listings (``locate``): a room that moved to another worker
is still reached. Failing that, this worker serves the socket itself, and the room socket code
refuses it with ERROR 524 and close 4002 at once. A processId of another host (or of no
cluster) is never handed off: it is answered as by a single process.
"""

from __future__ import annotations

import collections
import io
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent

from ..cluster import handoff as channel
from ..cluster.naming import ProcessName, endpoint_path
from ..metrics import record
from .limits import ConnectionPool

__all__ = ["HandOff"]

log = logging.getLogger("greenroom.handoff")

#: Messages read from one sibling before the receiving greenlet yields: recvmsg on a busy
#: socket never blocks, so a burst would otherwise starve every other greenlet.
_YIELD_EVERY = 16

Locate = Callable[[str], "str | None"]


class _Replay(io.RawIOBase):
    """A connection's bytes: first those the sender had already read, then the socket's."""

    def __init__(self, prefix: bytes, sock: socket.socket) -> None:
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._sock.recv_into(buffer)


def _is_upgrade(environ: dict[str, Any]) -> bool:
    return (environ.get("REQUEST_METHOD") == "GET"
            and environ.get("HTTP_UPGRADE", "").strip().lower() == "websocket")


class HandOff:
    """One worker's end of the hand-off: sends sockets to siblings, adopts those sent to it."""

    def __init__(self, process_id: str, run_dir: str, *, locate: Locate | None = None,
                 on_exited: Callable[[str], None] | None = None,
                 has_room: Callable[[str], bool] | None = None) -> None:
        self.process_id = process_id
        name = ProcessName.parse(process_id)
        if name is None:
            raise ValueError(f"{process_id!r} is not a cluster processId")
        self.cluster = name.cluster
        self.run_dir = run_dir
        self.locate = locate
        self.on_exited = on_exited
        self.has_room = has_room
        #: Shown in /health and the registry: sockets sent to siblings, received from them, and
        #: sockets for a sibling that could not be delivered (answered 524 here).
        self.counts = {"sent": 0, "received": 0, "failed": 0}
        #: Seconds from a sibling's decision to hand a socket over to its handler starting here,
        #: for the last few hundred received (see latency()).
        self.delays: collections.deque[float] = collections.deque(maxlen=500)
        self.server: Any = None
        self._sender = channel.Sender()
        self._endpoint: channel.Endpoint | None = None
        self._greenlets: list[gevent.Greenlet] = []

    # -- sending --------------------------------------------------------------------------------
    def sibling_endpoint(self, process_id: str) -> str | None:
        """The endpoint of a sibling worker; None for this worker or a process elsewhere."""
        if process_id == self.process_id:
            return None
        name = ProcessName.parse(process_id)
        if name is None or name.cluster != self.cluster:
            return None
        return endpoint_path(self.run_dir, process_id)

    def take(self, handler: Any) -> bool:
        """Hand the handler's connection to its owner; True when it left this worker."""
        environ = handler.environ
        if not _is_upgrade(environ):
            return False
        segments = [s for s in environ.get("PATH_INFO", "").split("/") if s]
        if len(segments) < 2:
            return False
        process_id, room_id = segments[-2], segments[-1]
        if getattr(handler, "handed_in", False) or process_id == self.process_id:
            return self._follow_move(handler, room_id)
        path = self.sibling_endpoint(process_id)
        if path is None:
            return False
        if self._send(handler, path):
            return True
        owner = self._current_owner(room_id)
        if owner == self.process_id:
            return False  # the room moved here
        moved = self.sibling_endpoint(owner) if owner and owner != process_id else None
        if moved is not None and self._send(handler, moved):
            return True
        self.counts["failed"] += 1
        record.active.handoff("failed")
        log.info("socket for room %s of %s: that worker is gone; refused here", room_id, process_id)
        return False

    def _follow_move(self, handler: Any, room_id: str) -> bool:
        """A socket for a room that is not (or no longer) here: a room that moved to a sibling
        (a migration, greenroom.migration) is followed there, once; anything else is answered
        here (524). The listings say where it lives, and every worker reads the same ones."""
        if self.has_room is None or self.has_room(room_id):
            return False
        owner = self._current_owner(room_id)
        path = self.sibling_endpoint(owner) if owner else None
        return path is not None and self._send(handler, path)

    def _current_owner(self, room_id: str) -> str | None:
        if self.locate is None:
            return None
        try:
            return self.locate(room_id)
        except Exception as exc:  # noqa: BLE001 - the backend is down: the client gets 524
            log.warning("locating room %s failed: %s", room_id, exc)
            return None

    def _send(self, handler: Any, path: str) -> bool:
        sock = handler.socket
        payload = channel.encode(channel.CONNECTION, _request_bytes(handler),
                                 handler.client_address or "")
        try:
            self._sender.send(path, payload, sock.fileno())
        except channel.EndpointGone:
            return False
        except (OSError, ValueError) as exc:
            log.warning("hand-off to %s failed: %s", path, exc)
            return False
        self.counts["sent"] += 1
        record.active.handoff("sent")
        handler.handed_off = True
        handler.close_connection = True
        handler.socket = None  # pywsgi's clean-up would read from the socket the owner now has
        handler.rfile.close()
        sock.close()  # only our descriptor: no shutdown, the connection lives on in the owner
        return True

    # -- receiving ------------------------------------------------------------------------------
    def serve(self, server: Any) -> None:
        """Listen on this worker's endpoint; adopted connections are served by ``server``.

        Binding the endpoint is the last step of a worker's boot: the master and the siblings
        take its existence to mean 'serving'.
        """
        self.server = server
        self._endpoint = channel.Endpoint(endpoint_path(self.run_dir, self.process_id))
        self._greenlets.append(gevent.spawn(self._accept_forever, self._endpoint))

    def _accept_forever(self, endpoint: channel.Endpoint) -> None:
        while True:
            try:
                conn = endpoint.accept()
            except OSError:
                return  # closed
            self._greenlets.append(gevent.spawn(self._receive_from, conn))

    def _receive_from(self, conn: socket.socket) -> None:
        received = 0
        with conn:
            while True:
                try:
                    message = channel.Endpoint.receive(conn)
                except ValueError as exc:
                    log.warning("hand-off: dropped a malformed message: %s", exc)
                    continue
                except OSError:
                    return
                if message is None:
                    return
                if message.kind == channel.CONNECTION:
                    self._adopt(message)
                elif self.on_exited is not None:
                    gevent.spawn(self.on_exited, message.body.decode("ascii", "replace"))
                received += 1
                if received % _YIELD_EVERY == 0:
                    gevent.sleep(0)

    def _adopt(self, message: channel.Message) -> None:
        if message.fd is None:
            log.warning("hand-off: a connection message came without its descriptor")
            return
        sock = socket.socket(fileno=message.fd)
        self.counts["received"] += 1
        record.active.handoff("received")
        pool = getattr(self.server, "pool", None)
        if not isinstance(pool, ConnectionPool):  # gunicorn's worker: its own count (README)
            gevent.spawn(self._serve_adopted, sock, message.address, message.body, message.sent_at)
        elif pool.full():  # it says so once; the sibling could not know
            _refuse_full(sock, pool.size)
        else:  # counted with the connections this worker accepted itself; not full: no wait
            pool.spawn(self._serve_adopted, sock, message.address, message.body, message.sent_at)

    def _serve_adopted(self, sock: socket.socket, address: Any, replay: bytes, sent_at: float) -> None:
        rfile = io.BufferedReader(_Replay(replay, sock))
        handler = self.server.handler_class(sock, address, self.server, rfile=rfile)
        self.delays.append(time.monotonic() - sent_at)
        handler.handed_in = True  # never handed on again, whatever its URL says
        try:
            handler.handle()
        finally:
            sock.close()

    def latency(self) -> dict[str, float | int]:
        """p50/p99 in ms of the recent hand-offs received (what a hand-off adds to a join,
        the owner's parsing of the replayed request head aside)."""
        delays = sorted(self.delays)
        if not delays:
            return {"n": 0}
        pick = lambda q: round(delays[min(len(delays) - 1, int(q * len(delays)))] * 1000, 3)  # noqa: E731
        return {"n": len(delays), "p50": pick(0.5), "p99": pick(0.99)}

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
        gevent.killall([g for g in self._greenlets if not g.dead], block=False)
        self._greenlets = []
        self._sender.close()


def _request_bytes(handler: Any) -> bytes:
    """The request head as received (request line and headers, in order), then whatever the
    client sent after it that pywsgi had already buffered."""
    lines = [handler.requestline]
    lines += [f"{name}: {value}" for name, value in handler.headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + _buffered(handler)


def _buffered(handler: Any) -> bytes:
    sock = handler.socket
    timeout = sock.gettimeout()
    sock.settimeout(0.0)  # peek() must not wait for bytes that are not there
    try:
        return bytes(handler.rfile.peek())
    except OSError:
        return b""
    finally:
        sock.settimeout(timeout)


def _refuse_full(sock: socket.socket, limit: int) -> None:
    """A handed-in connection when this worker serves ``limit`` already: 503 and close, as its
    own accept loop would have kept it waiting but a hand-off cannot wait (the whole channel
    would). The client's join fails with a status it can retry on."""
    body = f'{{"code": 503, "error": "this worker serves {limit} connections, its limit"}}'.encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        sock.sendall(head + body)
    except OSError:
        pass
    finally:
        sock.close()
